"""Django admin: the staff's break-glass view.

Accounts are edited here (each save is audited). Requests are read-only:
their state changes only through the services, which the two admin actions
call as the signed-in administrator. Audit events can be read, never added,
changed or deleted.
"""
from __future__ import annotations

from axes.models import AccessAttempt
from django import forms
from django.contrib import admin, messages

from requests_app import permissions, services
from requests_app.audit import record_event
from requests_app.errors import DomainError
from requests_app.models import AccessRequest, AuditEvent, AwsAccount, Decision, ProvisioningStep
from requests_app.validation import account_setup_errors


class AwsAccountForm(forms.ModelForm):
    class Meta:
        model = AwsAccount
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        problems = account_setup_errors(
            account_id=cleaned.get("account_id"),
            is_datalake=cleaned.get("is_datalake"),
            is_remote=cleaned.get("is_remote"),
            provisioner_role_arn=cleaned.get("provisioner_role_arn"),
            external_id=cleaned.get("external_id"),
            default_region=cleaned.get("default_region"),
        )
        for field, messages in problems.items():
            if field not in self.errors:  # the model's own validators may have spoken already
                for message in messages:
                    self.add_error(field, message)
        return cleaned


@admin.register(AwsAccount)
class AwsAccountAdmin(admin.ModelAdmin):
    form = AwsAccountForm
    list_display = ("name", "account_id", "is_datalake", "is_remote", "required_approvals", "default_region")
    list_filter = ("is_datalake", "is_remote")
    search_fields = ("name", "account_id")
    filter_horizontal = ("approvers", "requesters")
    readonly_fields = ("created_at", "updated_at")

    def has_delete_permission(self, request, obj=None):
        # Requests and audit events keep pointing at an account for good.
        return False

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        account = form.instance
        record_event(
            action="account.changed" if change else "account.registered",
            actor=request.user,
            source_ip=request.META.get("REMOTE_ADDR"),
            account=account,
            target_arn=account.provisioner_role_arn,
            details={
                "via": "admin",
                "changed_fields": sorted(form.changed_data),
                "required_approvals": account.required_approvals,
                "approvers": sorted(user.get_username() for user in account.approvers.all()),
                "requesters": sorted(user.get_username() for user in account.requesters.all()),
            },
        )


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return self.fields


class DecisionInline(_ReadOnlyInline):
    model = Decision
    fields = ("approver", "outcome", "comment", "plan_hash", "created_at")


class ProvisioningStepInline(_ReadOnlyInline):
    model = ProvisioningStep
    fields = ("phase", "position", "name", "status", "attempts", "diagnosis", "error", "started_at", "finished_at")


def _run_on_selected(modeladmin, request, queryset, service, verb: str) -> None:
    done = 0
    for access_request in queryset.order_by("id"):
        try:
            service(request_id=access_request.pk, user=request.user, source_ip=request.META.get("REMOTE_ADDR"))
            done += 1
        except DomainError as error:
            modeladmin.message_user(request, f"#{access_request.pk}: {error.message}", level=messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{verb} {done} request(s).", level=messages.SUCCESS)


@admin.register(AccessRequest)
class AccessRequestAdmin(admin.ModelAdmin):
    list_display = ("id", "endpoint_identifier", "state", "requester", "datalake_account", "remote_account", "created_at")
    list_filter = ("state", "preflight_status", "remote_account", "datalake_account")
    search_fields = ("endpoint_identifier", "role_name", "secret_arn", "requester__username")
    list_select_related = ("requester", "datalake_account", "remote_account")
    inlines = (DecisionInline, ProvisioningStepInline)
    actions = ("revoke_selected", "retry_selected")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_break_glass_permission(self, request):
        return permissions.is_staff_user(request.user)

    @admin.action(description="Revoke the selected requests", permissions=["break_glass"])
    def revoke_selected(self, request, queryset):
        _run_on_selected(self, request, queryset, services.access_request_revoke, "Revoking")

    @admin.action(description="Retry the selected failed requests", permissions=["break_glass"])
    def retry_selected(self, request, queryset):
        _run_on_selected(self, request, queryset, services.access_request_retry, "Retrying")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "actor_label", "action", "request", "account", "target_arn")
    list_filter = ("action",)
    search_fields = ("actor_label", "action", "target_arn")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AccessAttempt)
class LoginLockoutAdmin(admin.ModelAdmin):
    """Failed logins as django-axes counts them; lifting a lockout goes through the
    audited service, never a bare delete."""

    list_display = ("username", "ip_address", "failures_since_start", "attempt_time", "path_info")
    search_fields = ("username", "ip_address")
    fields = ("username", "ip_address", "user_agent", "path_info", "failures_since_start", "attempt_time")
    actions = ("unlock_selected",)

    def has_view_permission(self, request, obj=None):
        return permissions.can_unlock_logins(request.user)

    def has_module_permission(self, request):
        return permissions.can_unlock_logins(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_unlock_permission(self, request):
        return permissions.can_unlock_logins(request.user)

    @admin.action(description="Lift the lockout of the selected user names and addresses (audited)",
                  permissions=["unlock"])
    def unlock_selected(self, request, queryset):
        cleared = 0
        for username, ip_address in set(queryset.values_list("username", "ip_address")):
            try:
                cleared += services.login_lockout_reset(
                    actor=request.user, username=username or "", ip_address=ip_address or "",
                    source_ip=request.META.get("REMOTE_ADDR"),
                )
            except DomainError as error:
                self.message_user(request, error.message, level=messages.WARNING)
        self.message_user(request, f"Cleared {cleared} recorded failed login(s).", level=messages.SUCCESS)
