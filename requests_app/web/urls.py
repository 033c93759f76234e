from django.urls import path

from requests_app.web import lifecycle, request_sets, rules, tokens, views

app_name = "web"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("requests/", views.request_list, name="request_list"),
    path("requests/new/", views.request_new, name="request_new"),
    path("requests/new/validate/", views.request_validate, name="request_validate"),
    path("requests/new/validate-grants/", request_sets.request_set_validate, name="request_set_validate"),
    path("requests/<int:request_id>/", views.request_detail, name="request_detail"),
    path("requests/<int:request_id>/live/", views.request_live, name="request_live"),
    path("requests/<int:request_id>/policies/", views.request_policies, name="request_policies"),
    path("requests/<int:request_id>/extend/", views.request_action, {"action": "extend"}, name="request_extend"),
    path("requests/<int:request_id>/export/<str:fmt>/", lifecycle.request_export, name="request_export"),
    path("requests/<int:request_id>/<str:action>/", views.request_action, name="request_action"),
    path("request-sets/<int:set_id>/", request_sets.request_set_detail, name="request_set_detail"),
    path("request-sets/<int:set_id>/<str:action>/", request_sets.request_set_action, name="request_set_action"),
    path("approvals/", views.approval_queue, name="approval_queue"),
    path("audit/", views.audit_log, name="audit_log"),
    path("audit/export.<str:fmt>", views.audit_export, name="audit_export"),
    path("accounts/", views.account_list, name="accounts"),
    path("rules/", rules.rule_list, name="rules"),
    path("rules/<int:rule_id>/", rules.rule_detail, name="rule_detail"),
    path("rules/<int:rule_id>/<str:action>/", rules.rule_action, name="rule_action"),
    path("tokens/", tokens.api_tokens, name="api_tokens"),
    path("tokens/<int:token_id>/revoke/", tokens.api_token_revoke, name="api_token_revoke"),
]
