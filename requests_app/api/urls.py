"""URL layout of /api/v1/ (the paths are part of the published contract)."""
from django.urls import path, re_path

from requests_app.api import audit_export, lifecycle_views, request_sets, rules, token_views, views

app_name = "api"

urlpatterns = [
    path("accounts/", views.AccountListView.as_view(), name="accounts"),
    path("accounts/<str:account_id>/", views.AccountDetailView.as_view(), name="account-detail"),
    path("requests/", views.RequestListView.as_view(), name="requests"),
    # ids are parsed by the views: anything that is not a valid id is the API's 404.
    path("requests/<str:id>/", views.RequestDetailView.as_view(), name="request-detail"),
    path("requests/<str:id>/plan/", views.RequestPlanView.as_view(), name="request-plan"),
    path("requests/<str:id>/approve/", views.RequestApproveView.as_view(), name="request-approve"),
    path("requests/<str:id>/reject/", views.RequestRejectView.as_view(), name="request-reject"),
    path("requests/<str:id>/cancel/", views.RequestCancelView.as_view(), name="request-cancel"),
    path("requests/<str:id>/revoke/", views.RequestRevokeView.as_view(), name="request-revoke"),
    path("requests/<str:id>/retry/", views.RequestRetryView.as_view(), name="request-retry"),
    path("requests/<str:id>/repair/", lifecycle_views.RequestRepairView.as_view(), name="request-repair"),
    path(
        "requests/<str:id>/repair/approve/",
        lifecycle_views.RepairApproveView.as_view(),
        name="request-repair-approve",
    ),
    path(
        "requests/<str:id>/repair/reject/",
        lifecycle_views.RepairRejectView.as_view(),
        name="request-repair-reject",
    ),
    path("requests/<str:id>/extend/", lifecycle_views.RequestExtendView.as_view(), name="request-extend"),
    path(
        "requests/<str:id>/extension/approve/",
        lifecycle_views.ExtensionApproveView.as_view(),
        name="request-extension-approve",
    ),
    path(
        "requests/<str:id>/extension/reject/",
        lifecycle_views.ExtensionRejectView.as_view(),
        name="request-extension-reject",
    ),
    path("requests/<str:id>/export/", lifecycle_views.RequestExportView.as_view(), name="request-export"),
    path("requests/<str:id>/rule-decisions/", rules.RequestRuleDecisionsView.as_view(), name="request-rule-decisions"),
    path("request-sets/", request_sets.RequestSetListView.as_view(), name="request-sets"),
    path("request-sets/<str:id>/", request_sets.RequestSetDetailView.as_view(), name="request-set-detail"),
    path("request-sets/<str:id>/plan/", request_sets.RequestSetPlanView.as_view(), name="request-set-plan"),
    path("request-sets/<str:id>/approve/", request_sets.RequestSetApproveView.as_view(), name="request-set-approve"),
    path("request-sets/<str:id>/reject/", request_sets.RequestSetRejectView.as_view(), name="request-set-reject"),
    path("request-sets/<str:id>/revoke/", request_sets.RequestSetRevokeView.as_view(), name="request-set-revoke"),
    path("rules/", rules.RuleListView.as_view(), name="rules"),
    path("rules/<str:id>/", rules.RuleDetailView.as_view(), name="rule-detail"),
    path("rules/<str:id>/change/", rules.RuleChangeView.as_view(), name="rule-change"),
    path("rules/<str:id>/disable/", rules.RuleDisableView.as_view(), name="rule-disable"),
    path("rules/<str:id>/approve/", rules.RuleApproveView.as_view(), name="rule-approve"),
    path("rules/<str:id>/reject/", rules.RuleRejectView.as_view(), name="rule-reject"),
    path("audit-events/", views.AuditEventListView.as_view(), name="audit-events"),
    path("tokens/", token_views.ApiTokenListView.as_view(), name="tokens"),
    path("tokens/<str:id>/", token_views.ApiTokenDetailView.as_view(), name="token-detail"),
    path("audit-events/export/", audit_export.AuditEventExportView.as_view(), name="audit-events-export"),
    re_path(r"^.*$", views.ApiNotFoundView.as_view(), name="not-found"),
]
