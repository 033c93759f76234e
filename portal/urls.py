from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from requests_app import health, metrics
from requests_app.slack import interactions as slack_interactions

login_view = auth_views.LoginView.as_view(
    redirect_authenticated_user=True, extra_context={"oidc_enabled": settings.OIDC_ENABLED}
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/v1/", include("requests_app.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file, so a strict
    # Content-Security-Policy (no inline scripts) still works.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("auth/login/", login_view, name="login"),
    path("auth/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Signed by Slack, not a session route (requests_app/slack/interactions.py).
    path("slack/interactions", slack_interactions.interactions, name="slack_interactions"),
    path("", include("requests_app.web.urls")),
]
if settings.OIDC_ENABLED:
    urlpatterns.insert(0, path("oidc/", include("mozilla_django_oidc.urls")))
