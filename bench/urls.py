"""The portal's URLs plus the bare views, served only while the pages benchmark runs."""
from django.urls import include, path

from bench import bare_views

urlpatterns = [
    path("bench/bare/approvals/", bare_views.approval_queue),
    path("bench/bare/requests/", bare_views.request_list),
    path("bench/bare/requests/<int:request_id>/", bare_views.request_detail),
    path("bench/bare/audit/", bare_views.audit_log),
    path("", include("portal.urls")),
]
