"""Django admin: the portal administrators' break-glass view.

Accounts are registered and edited here through the account services (each
save is audited; the external id can be replaced, never read). Requests are read-only:
their state changes only through the services, which the two admin actions
call as the signed-in administrator. Audit events can be read, never added,
changed or deleted.
"""
from __future__ import annotations

from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.contrib.auth.models import Group

from requests_app import permissions, services
from requests_app.audit import record_event
from requests_app.errors import DomainError, ValidationFailed
from requests_app.models import (
    AccessRequest, ApiToken, AuditEvent, AwsAccount, Decision, ProvisioningStep, SlackIdentity, SsoIdentity,
)
from requests_app.services.sso import sso_identity_problems
from requests_app.validation import (
    EXTERNAL_ID_MAX_LENGTH,
    NO_EXTERNAL_ID,
    account_setup_errors,
    validate_account_members,
    validate_waiting_rules,
)


# Set only through the services (account_register, account_members_set,
# account_external_id_set), never by the model form itself.
MEMBER_FIELDS = (
    "approvers", "requesters", "approver_groups", "requester_groups", "required_approvals",
    "approval_reminder_hours", "escalate_after_hours", "escalation_groups", "escalation_users",
    "expire_pending_after_days",
)


class AwsAccountForm(forms.ModelForm):
    """The account's own fields, plus its members and external id as plain
    form fields that the admin hands to the services."""

    approvers = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("approvers", is_stacked=False),
        help_text="Decide requests that read this (Remote) account's secrets.",
    )
    requesters = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("requesters", is_stacked=False),
        help_text="May file requests for this (DataLake) account.",
    )
    approver_groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=FilteredSelectMultiple("approver groups", is_stacked=False),
        help_text="Their members approve as if listed one by one (groups follow the identity provider).",
    )
    requester_groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"),
        required=False,
        widget=FilteredSelectMultiple("requester groups", is_stacked=False),
        help_text="Their members may file for this (DataLake) account.",
    )
    required_approvals = forms.IntegerField(min_value=1, max_value=32767, initial=1)
    approval_reminder_hours = forms.IntegerField(
        min_value=0, max_value=32767, initial=24, required=False,
        help_text="Remind the approvers every this many hours a request waits (0 or empty: never).",
    )
    escalate_after_hours = forms.IntegerField(
        min_value=0, max_value=32767, required=False,
        help_text="Escalate a request still pending after this many hours (0 or empty: never).",
    )
    escalation_groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"), required=False,
        help_text="Told when a request is escalated (they gain no right to approve).",
    )
    escalation_users = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"), required=False,
        help_text="Told when a request is escalated (they gain no right to approve).",
    )
    expire_pending_after_days = forms.IntegerField(
        min_value=1, max_value=32767, initial=14, help_text="A request still pending after this many days expires."
    )
    new_external_id = forms.CharField(
        label="New external id",
        required=False,
        max_length=EXTERNAL_ID_MAX_LENGTH,
        strip=True,
        # Never sent back to the browser, not even after a failed save.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Replaces the ExternalId the workers pass when they assume the provisioner role. "
        "Leave empty to keep the current one. It is never shown again.",
    )
    remove_external_id = forms.BooleanField(required=False, help_text="Assume the role without an ExternalId.")
    no_external_id = forms.BooleanField(
        label="No external id (not recommended)",
        required=False,
        help_text="A Remote account without an external id is refused unless this is ticked.",
    )

    class Meta:
        model = AwsAccount
        exclude = ("external_id", *MEMBER_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["approvers"].initial = list(self.instance.approvers.all())
            self.fields["requesters"].initial = list(self.instance.requesters.all())
            self.fields["required_approvals"].initial = self.instance.required_approvals
            for name in ("approver_groups", "requester_groups", "escalation_groups", "escalation_users"):
                self.fields[name].initial = list(getattr(self.instance, name).all())
            for name in ("approval_reminder_hours", "escalate_after_hours", "expire_pending_after_days"):
                self.fields[name].initial = getattr(self.instance, name)

    def waiting_rules(self) -> dict:
        """The waiting rules as the services take them (names, 0 for off)."""
        cleaned = self.cleaned_data
        return {
            "approval_reminder_hours": cleaned.get("approval_reminder_hours") or 0,
            "escalate_after_hours": cleaned.get("escalate_after_hours") or 0,
            "escalation_groups": [group.name for group in cleaned.get("escalation_groups") or ()],
            "escalation_users": [user.get_username() for user in cleaned.get("escalation_users") or ()],
            "expire_pending_after_days": cleaned.get("expire_pending_after_days"),
        }

    def external_id_after(self) -> str | None:
        """The external id to store, "" to remove it, or None to leave it as it is."""
        new = self.cleaned_data.get("new_external_id") or ""
        if new:
            return new
        if self.cleaned_data.get("remove_external_id"):
            return ""
        return None

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("new_external_id") and cleaned.get("remove_external_id"):
            self.add_error("remove_external_id", "Either give a new external id or remove it, not both.")
        after = self.external_id_after()
        external_id = (self.instance.external_id if self.instance.pk else "") if after is None else after
        problems = account_setup_errors(
            account_id=cleaned.get("account_id"),
            is_datalake=cleaned.get("is_datalake"),
            is_remote=cleaned.get("is_remote"),
            provisioner_role_arn=cleaned.get("provisioner_role_arn"),
            external_id=external_id,
            default_region=cleaned.get("default_region"),
        )
        problems = {("new_external_id" if field == "external_id" else field): msgs for field, msgs in problems.items()}
        # A Remote account ends up without an external id only on purpose:
        # on registration, or when this save removes it or makes the account Remote.
        losing_it = not self.instance.pk or after == "" or "is_remote" in self.changed_data
        if cleaned.get("is_remote") and not external_id and losing_it and not cleaned.get("no_external_id"):
            problems.setdefault("new_external_id", []).append(NO_EXTERNAL_ID)
        try:
            validate_account_members(
                is_datalake=cleaned.get("is_datalake"),
                approvers=[user.get_username() for user in cleaned.get("approvers") or ()],
                requesters=[user.get_username() for user in cleaned.get("requesters") or ()],
                required_approvals=cleaned.get("required_approvals"),
                approver_groups=[group.name for group in cleaned.get("approver_groups") or ()],
                requester_groups=[group.name for group in cleaned.get("requester_groups") or ()],
            )
            validate_waiting_rules(**self.waiting_rules())
        except ValidationFailed as error:
            for field, field_messages in error.errors.items():
                problems.setdefault(field, []).extend(field_messages)
        for field, field_messages in problems.items():
            if field not in self.errors:  # the model's own validators may have spoken already
                for message in field_messages:
                    self.add_error(field if field in self.fields else None, message)
        return cleaned


@admin.register(AwsAccount)
class AwsAccountAdmin(admin.ModelAdmin):
    """Accounts: registered, and their members and external id changed, only
    through the services; the external id is never displayed."""

    form = AwsAccountForm
    list_display = (
        "name", "account_id", "is_datalake", "is_remote", "required_approvals", "default_region", "external_id_is_set"
    )
    list_filter = ("is_datalake", "is_remote")
    search_fields = ("name", "account_id")
    readonly_fields = ("external_id_is_set", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("account_id", "name", "is_datalake", "is_remote", "default_region")}),
        (
            "Provisioner role",
            {
                "fields": (
                    "provisioner_role_arn", "external_id_is_set", "new_external_id", "remove_external_id",
                    "no_external_id",
                )
            },
        ),
        (
            "Who decides",
            {
                "fields": (
                    "approvers", "approver_groups", "requesters", "requester_groups", "required_approvals",
                    "rules_count_alongside_people", "allow_secret_shape_check",
                )
            },
        ),
        (
            "Nothing waits forever",
            {
                "fields": (
                    "approval_reminder_hours", "escalate_after_hours", "escalation_groups", "escalation_users",
                    "expire_pending_after_days",
                )
            },
        ),
        ("Slack", {"fields": ("slack_channel",)}),
        (None, {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(boolean=True, description="External id set")
    def external_id_is_set(self, obj):
        return bool(obj.external_id) if obj is not None and obj.pk else False

    def has_view_permission(self, request, obj=None):
        return permissions.is_portal_admin(request.user) or super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        # Registering accounts and setting their rules is the portal
        # administrator's job, whatever model permissions a staff user holds.
        return permissions.is_portal_admin(request.user)

    def has_change_permission(self, request, obj=None):
        return permissions.is_portal_admin(request.user)

    def has_delete_permission(self, request, obj=None):
        # Requests and audit events keep pointing at an account for good.
        return False

    def save_model(self, request, obj, form, change):
        if change:
            # Only the account's own fields the form changed: the members and
            # the external id are the services' to write (save_related).
            columns = {field.name for field in AwsAccount._meta.concrete_fields} - {
                "external_id", "slack_channel", *MEMBER_FIELDS
            }
            own = [name for name in form.changed_data if name in columns]
            if own:
                obj.save(update_fields=[*own, "updated_at"])
            return
        data = form.cleaned_data
        account = services.account_register(
            actor=request.user,
            source_ip=request.META.get("REMOTE_ADDR"),
            account_id=data["account_id"],
            name=data["name"],
            is_datalake=data["is_datalake"],
            is_remote=data["is_remote"],
            provisioner_role_arn=data["provisioner_role_arn"],
            external_id=form.external_id_after() or "",
            external_id_required=not data["no_external_id"],
            default_region=data["default_region"],
            approvers=[user.get_username() for user in data["approvers"]],
            requesters=[user.get_username() for user in data["requesters"]],
            approver_groups=[group.name for group in data["approver_groups"]],
            requester_groups=[group.name for group in data["requester_groups"]],
            required_approvals=data["required_approvals"],
            allow_secret_shape_check=data["allow_secret_shape_check"],
            slack_channel=data.get("slack_channel", ""),
        )
        services.account_members_set(
            actor=request.user, source_ip=request.META.get("REMOTE_ADDR"), account_id=account.account_id,
            **form.waiting_rules(),
        )
        # The admin goes on (its log entry, its redirect) with the registered row.
        vars(obj).update(vars(account))

    def save_related(self, request, form, formsets, change):
        if not change:
            return  # account_register set the members and wrote the audit event
        account = form.instance
        source_ip = request.META.get("REMOTE_ADDR")
        data = form.cleaned_data
        own_fields = sorted(
            set(form.changed_data)
            - {*MEMBER_FIELDS, "new_external_id", "remove_external_id", "no_external_id", "slack_channel"}
        )
        if own_fields:
            record_event(
                action="account.changed",
                actor=request.user,
                source_ip=source_ip,
                account=account,
                target_arn=account.provisioner_role_arn,
                details={"via": "admin", "changed_fields": own_fields},
            )
        services.account_members_set(
            actor=request.user,
            source_ip=source_ip,
            account_id=account.account_id,
            approvers=[user.get_username() for user in data["approvers"]],
            requesters=[user.get_username() for user in data["requesters"]],
            approver_groups=[group.name for group in data["approver_groups"]],
            requester_groups=[group.name for group in data["requester_groups"]],
            required_approvals=data["required_approvals"],
            **form.waiting_rules(),
        )
        if "slack_channel" in form.changed_data:
            services.account_slack_channel_set(
                actor=request.user, source_ip=source_ip, account_id=account.account_id,
                slack_channel=data["slack_channel"],
            )
        external_id = form.external_id_after()
        if external_id is not None:
            services.account_external_id_set(
                actor=request.user,
                source_ip=source_ip,
                account_id=account.account_id,
                external_id=external_id,
                external_id_required=not data["no_external_id"],
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


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the admin shows but never adds, changes or deletes: what changes
    them goes through the audited services (as the admin's actions do)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AccessRequest)
class AccessRequestAdmin(_ReadOnlyAdmin):
    list_display = ("id", "endpoint_identifier", "state", "requester", "datalake_account", "remote_account", "created_at")
    list_filter = ("state", "preflight_status", "remote_account", "datalake_account")
    search_fields = ("endpoint_identifier", "role_name", "secret_arn", "requester__username")
    list_select_related = ("requester", "datalake_account", "remote_account")
    inlines = (DecisionInline, ProvisioningStepInline)
    actions = ("revoke_selected", "retry_selected")

    def has_view_permission(self, request, obj=None):
        return permissions.is_portal_admin(request.user) or super().has_view_permission(request, obj)

    def has_break_glass_permission(self, request):
        return permissions.is_portal_admin(request.user)

    @admin.action(description="Revoke the selected requests", permissions=["break_glass"])
    def revoke_selected(self, request, queryset):
        _run_on_selected(self, request, queryset, services.access_request_revoke, "Revoking")

    @admin.action(description="Retry the selected failed requests", permissions=["break_glass"])
    def retry_selected(self, request, queryset):
        _run_on_selected(self, request, queryset, services.access_request_retry, "Retrying")


@admin.register(AuditEvent)
class AuditEventAdmin(_ReadOnlyAdmin):
    list_display = ("id", "created_at", "actor_label", "action", "request", "account", "target_arn")
    list_filter = ("action",)
    search_fields = ("actor_label", "action", "target_arn")
    date_hierarchy = "created_at"

    def has_view_permission(self, request, obj=None):
        return permissions.is_portal_admin(request.user) or super().has_view_permission(request, obj)


class SsoIdentityForm(forms.ModelForm):
    actor = None  # the signed-in administrator, set by SsoIdentityAdmin.get_form

    class Meta:
        model = SsoIdentity
        fields = ("user", "issuer", "subject", "expected_email")

    def clean(self):
        cleaned = super().clean()
        user = cleaned.get("user")
        for target in (user, self.instance.user if self.instance.pk else None):
            if target is not None and not permissions.can_link_sso_identity(self.actor, target):
                raise forms.ValidationError("Only a superuser may link a staff user or a superuser to single sign-on.")
        problems = sso_identity_problems(
            identity_id=self.instance.pk,
            user=user,
            issuer=(cleaned.get("issuer") or "").strip(),
            subject=(cleaned.get("subject") or "").strip(),
            expected_email=(cleaned.get("expected_email") or "").strip(),
        )
        for field, field_messages in problems.items():
            if field not in self.errors:
                for message in field_messages:
                    self.add_error(field, message)
        return cleaned


class _IdentityLinkAdmin(admin.ModelAdmin):
    """A link of a portal user to an outside identity: deleting many goes one
    by one through ``delete_model`` (the audited service), each refusal said."""

    def delete_queryset(self, request, queryset):
        for identity in queryset.select_related("user"):
            try:
                self.delete_model(request, identity)
            except DomainError as error:
                self.message_user(request, f"{identity}: {error.message}", level=messages.WARNING)


@admin.register(SsoIdentity)
class SsoIdentityAdmin(_IdentityLinkAdmin):
    """Pre-link a portal user to a single sign-on identity, or change or remove a link.

    Every save and delete goes through the audited services.
    """

    form = SsoIdentityForm
    list_display = ("user", "issuer", "subject", "expected_email", "linked_at")
    search_fields = ("user__username", "subject", "expected_email")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("linked_at", "created_at")

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or permissions.can_link_sso_identity(request.user, obj.user))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or permissions.can_link_sso_identity(request.user, obj.user))

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.actor = request.user
        return form

    def get_changeform_initial_data(self, request):
        return {"issuer": getattr(settings, "OIDC_OP_ISSUER", ""), **super().get_changeform_initial_data(request)}

    def save_model(self, request, obj, form, change):
        saved = services.sso_identity_save(
            actor=request.user,
            identity_id=obj.pk if change else None,
            user=form.cleaned_data["user"],
            issuer=form.cleaned_data["issuer"],
            subject=form.cleaned_data["subject"],
            expected_email=form.cleaned_data["expected_email"],
            source_ip=request.META.get("REMOTE_ADDR"),
        )
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.sso_identity_remove(actor=request.user, identity_id=obj.pk, source_ip=request.META.get("REMOTE_ADDR"))


@admin.register(SlackIdentity)
class SlackIdentityAdmin(_IdentityLinkAdmin):
    """Link a Slack user to a portal user (the Slack app then needs no e-mail
    match for them); every save and delete goes through the audited services."""

    list_display = ("user", "slack_user_id", "created_at")
    search_fields = ("user__username", "slack_user_id")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    fields = ("user", "slack_user_id", "created_at")
    readonly_fields = ("created_at",)

    def has_view_permission(self, request, obj=None):
        return permissions.is_portal_admin(request.user)

    def has_module_permission(self, request):
        return permissions.is_portal_admin(request.user)

    def has_add_permission(self, request):
        return permissions.is_portal_admin(request.user)

    def has_change_permission(self, request, obj=None):
        allowed = permissions.is_portal_admin(request.user)
        return allowed and (obj is None or permissions.can_link_slack_identity(request.user, obj.user))

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        try:
            saved = services.slack_identity_save(
                actor=request.user,
                identity_id=obj.pk if change else None,
                user=form.cleaned_data["user"],
                slack_user_id=form.cleaned_data["slack_user_id"],
                source_ip=request.META.get("REMOTE_ADDR"),
            )
        except DomainError as error:
            # The form validated the id; what is left is who may link whom.
            raise PermissionDenied(error.message) from None
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.slack_identity_remove(actor=request.user, identity_id=obj.pk, source_ip=request.META.get("REMOTE_ADDR"))


@admin.register(ApiToken)
class ApiTokenAdmin(_ReadOnlyAdmin):
    """Staff list and revoke API tokens; nobody makes or changes one here: a
    token is made by its owner (or for a service account at the console)."""

    list_display = ("id", "name", "user", "created", "expiry")
    list_select_related = ("user",)
    search_fields = ("name", "user__username")
    fields = ("name", "user", "created", "expiry")
    readonly_fields = fields
    actions = ("revoke_selected",)

    def has_revoke_permission(self, request):
        return request.user.has_perm("requests_app.delete_apitoken")

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        done = 0
        for token_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                services.api_token_revoke(user=request.user, token_id=token_id, source_ip=request.META.get("REMOTE_ADDR"))
                done += 1
            except DomainError as error:
                self.message_user(request, f"Token {token_id}: {error.message}", level=messages.WARNING)
        if done:
            self.message_user(request, f"Revoked {done} token(s).", level=messages.SUCCESS)


@admin.register(AccessAttempt)
class LoginLockoutAdmin(_ReadOnlyAdmin):
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
