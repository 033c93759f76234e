"""The portal's data: accounts, access requests, decisions, steps, audit events.

Models hold data, constraints and the allowed transitions. They never call AWS
or Celery and hold no business rule: the services in ``services.py`` do every
write.
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from knox.models import AbstractAuthToken
from knox.settings import CONSTANTS

from requests_app.encryption import EncryptedTextField

account_id_validator = RegexValidator(r"^\d{12}$", "An AWS account id is exactly 12 digits.")
# A token's name: printable text that does not start with a space. The pattern
# is the OpenAPI schema's; the validator says the same for Python, whose "$"
# would let a final newline through.
API_TOKEN_NAME_MAX_LENGTH = 64
API_TOKEN_NAME_PATTERN = r"^[^\x00-\x20\x7f][^\x00-\x1f\x7f]{0,%d}$" % (API_TOKEN_NAME_MAX_LENGTH - 1)
api_token_name_validator = RegexValidator(
    r"\A[^\x00-\x20\x7f][^\x00-\x1f\x7f]*\Z", "A name is printable text that does not start with a space."
)
# Slack's ids: a channel id (C... public, G... private; chat.update needs the
# id, not a #name) and a user id (U... or W... on Enterprise Grid).
SLACK_CHANNEL_PATTERN = r"^[CG][A-Z0-9]{8,20}$"
slack_channel_validator = RegexValidator(
    r"\A[CG][A-Z0-9]{8,20}\Z", "A Slack channel id: C or G and 8 to 20 capital letters or digits (not a #name)."
)
slack_user_id_validator = RegexValidator(
    r"\A[UW][A-Z0-9]{8,20}\Z", "A Slack user id: U or W and 8 to 20 capital letters or digits."
)


class AwsAccount(models.Model):
    """One AWS account the portal works in, and who may ask or approve for it."""

    account_id = models.CharField(max_length=12, unique=True, validators=[account_id_validator])
    name = models.CharField(max_length=100)
    is_datalake = models.BooleanField(default=False, help_text="DMS runs here; requesters file for it.")
    is_remote = models.BooleanField(default=False, help_text="Secrets live here; approvers decide for it.")
    provisioner_role_arn = models.CharField(max_length=2048, help_text="Role in this account the workers assume.")
    # Encrypted at rest (FIELD_ENCRYPTION_KEYS); never shown, logged or audited.
    external_id = EncryptedTextField(blank=True)
    default_region = models.CharField(max_length=32, default="eu-west-1")
    approvers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="approver_for", blank=True)
    requesters = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="requester_for", blank=True)
    # Groups (kept in step with the identity provider at each SSO login): their
    # members approve or file for the account as if listed one by one.
    approver_groups = models.ManyToManyField("auth.Group", related_name="approver_for", blank=True)
    requester_groups = models.ManyToManyField("auth.Group", related_name="requester_for", blank=True)
    required_approvals = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    allow_secret_shape_check = models.BooleanField(
        default=False, help_text="Preflight may read the secret once to check its key names (values are never kept)."
    )
    # Approval rules (ApprovalRule): off, a matching rule's approval is the
    # whole decision (the quorum spoke when it approved the rule); on, it
    # counts as one approval towards ``required_approvals`` beside people's.
    rules_count_alongside_people = models.BooleanField(
        default=False,
        help_text="An approval rule counts as one approval beside people's (off: a matching rule decides alone).",
    )
    slack_channel = models.CharField(
        max_length=21, blank=True, validators=[slack_channel_validator],
        help_text="Slack channel id where the portal's Slack app asks this (Remote) account's approvers; empty: none.",
    )
    # Nothing waits forever: a request pending approval reminds the approvers
    # every ``approval_reminder_hours``, is escalated (announced to the
    # escalation groups and users, who gain no right to approve) after
    # ``escalate_after_hours``, and expires after ``expire_pending_after_days``.
    approval_reminder_hours = models.PositiveSmallIntegerField(
        null=True, blank=True, default=24, validators=[MinValueValidator(1)],
        help_text="Remind the approvers every this many hours a request waits (blank: never).",
    )
    escalate_after_hours = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text="Escalate a request still pending after this many hours (blank: never).",
    )
    escalation_groups = models.ManyToManyField("auth.Group", related_name="escalation_for", blank=True)
    escalation_users = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="escalation_for", blank=True)
    expire_pending_after_days = models.PositiveSmallIntegerField(
        default=14, validators=[MinValueValidator(1)],
        help_text="A request still pending approval after this many days expires.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(required_approvals__gte=1), name="account_required_approvals_gte_1"),
            models.CheckConstraint(condition=Q(account_id__regex=r"^[0-9]{12}$"), name="account_id_12_digits"),
            models.CheckConstraint(
                condition=Q(expire_pending_after_days__gte=1), name="account_expire_pending_after_days_gte_1"
            ),
        ]
        permissions = [
            (
                "administer_portal",
                "Administer the portal: register accounts, set their approvers, requesters and rules, break glass",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id})"


class RequestState(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    APPROVED = "approved", "Approved"
    PROVISIONING = "provisioning", "Provisioning"
    ACTIVE = "active", "Active"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    REVOKING = "revoking", "Revoking"
    REVOKED = "revoked", "Revoked"
    # The worker found, before its first write, that AWS now gives another plan
    # than the approved one: nothing was written, the approvers decide again.
    NEEDS_REAPPROVAL = "needs_reapproval", "Needs re-approval"
    # Nobody decided within the Remote account's expire_pending_after_days.
    EXPIRED = "expired", "Expired"


# States in which a request holds (or is about to hold) a role name and an
# endpoint identifier in AWS: two such requests may not claim the same ones.
LIVE_STATES = ("pending_approval", "approved", "provisioning", "active", "failed", "revoking", "needs_reapproval")

# The lifecycle of DESIGN.md section 3: the only moves a request can make.
# Services check every change of state against this table.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    RequestState.PENDING_APPROVAL: frozenset(
        {RequestState.APPROVED, RequestState.REJECTED, RequestState.CANCELLED, RequestState.EXPIRED}
    ),
    RequestState.APPROVED: frozenset({RequestState.PROVISIONING}),
    RequestState.PROVISIONING: frozenset({RequestState.ACTIVE, RequestState.FAILED, RequestState.NEEDS_REAPPROVAL}),
    # Approving the new plan (quorum again) resumes the grant; revoking takes
    # out whatever an earlier run of the grant wrote.
    RequestState.NEEDS_REAPPROVAL: frozenset({RequestState.APPROVED, RequestState.REVOKING}),
    # active -> provisioning: a repair re-runs the (idempotent) grant steps.
    RequestState.ACTIVE: frozenset({RequestState.PROVISIONING, RequestState.REVOKING}),
    RequestState.FAILED: frozenset({RequestState.PROVISIONING, RequestState.REVOKING}),
    # A revoke step that fails leaves the request failed; retry or revoke again.
    RequestState.REVOKING: frozenset({RequestState.REVOKED, RequestState.FAILED}),
    RequestState.REJECTED: frozenset(),
    RequestState.CANCELLED: frozenset(),
    RequestState.REVOKED: frozenset(),
    RequestState.EXPIRED: frozenset(),
}


class RequestSet(models.Model):
    """One request naming several grants for one DataLake account.

    Each grant is an ``AccessRequest`` (``grants``): it is provisioned,
    retried, revoked and audited on its own. What the set adds is one plan
    for all of them, grouped by secret and key, that the approvers approve
    once (``requests_app.request_sets``), and one write per secret and per
    key when the grants are provisioned together.
    """

    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="request_sets")
    datalake_account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="+")
    remote_account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="+")
    justification = models.TextField()
    expires_at = models.DateTimeField(null=True, blank=True)
    # API retries: the same key from the same requester gives the same set.
    idempotency_key = models.CharField(max_length=255, blank=True)
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["requester", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="request_set_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"set #{self.pk}"


class AccessRequest(models.Model):
    """A request for DMS in a DataLake account to read one secret of a Remote account."""

    State = RequestState
    LIVE_STATES = LIVE_STATES

    class EndpointType(models.TextChoices):
        SOURCE = "source", "Source"
        TARGET = "target", "Target"

    class PreflightStatus(models.TextChoices):
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        NOT_RUN = "not_run", "Not run"

    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests")
    datalake_account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="datalake_requests")
    remote_account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="remote_requests")
    region = models.CharField(max_length=32)
    secret_arn = models.CharField(max_length=2048)
    kms_key_arn = models.CharField(max_length=2048, blank=True, help_text="As named by the requester; the plan holds the resolved key.")
    resolved_kms_key_arn = models.CharField(max_length=2048, blank=True, help_text="The secret's key, as preflight found it.")
    engine = models.CharField(max_length=32)
    endpoint_identifier = models.CharField(max_length=255)
    endpoint_type = models.CharField(max_length=6, choices=EndpointType.choices, default=EndpointType.SOURCE)
    database_name = models.CharField(max_length=255, blank=True)
    role_name = models.CharField(max_length=64)
    replication_instance_arn = models.CharField(max_length=2048, blank=True)
    justification = models.TextField()
    expires_at = models.DateTimeField(null=True, blank=True)
    # The multi-grant request this grant belongs to, if any.
    request_set = models.ForeignKey(
        RequestSet, on_delete=models.PROTECT, null=True, blank=True, related_name="grants"
    )

    state = models.CharField(max_length=20, choices=RequestState.choices, default=RequestState.PENDING_APPROVAL)
    plan = models.JSONField(default=dict, blank=True)
    plan_hash = models.CharField(max_length=64, blank=True)
    # Raised each time the worker hands a changed plan back to the approvers:
    # only decisions of the current round count, even if the plan's hash
    # returns to one approved in an earlier round.
    approval_round = models.PositiveIntegerField(default=0)
    preflight = models.JSONField(default=dict, blank=True)
    preflight_status = models.CharField(max_length=8, choices=PreflightStatus.choices, default=PreflightStatus.NOT_RUN)
    diagnosis = models.CharField(max_length=64, blank=True)
    role_arn = models.CharField(max_length=2048, blank=True)
    # The role's unique id (AROA...) as create_role last saw it: a live role
    # with another id was deleted and created again.
    role_id = models.CharField(max_length=128, blank=True)
    endpoint_arn = models.CharField(max_length=2048, blank=True)

    # The expiry reminder was sent for the current ``expires_at`` (an
    # extension clears it, so the new expiry gets its own reminder).
    reminded_at = models.DateTimeField(null=True, blank=True)
    # The latest drift check of an active grant (provisioning.drift.DriftReport.to_dict()).
    drift = models.JSONField(default=dict, blank=True)
    drift_checked_at = models.DateTimeField(null=True, blank=True)
    # While pending approval: how often the approvers were reminded, and when
    # the request was escalated (and to whom, by name, as then listed).
    approval_reminders = models.PositiveSmallIntegerField(default=0)
    approval_reminded_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.JSONField(default=list, blank=True)

    # API retries: the same key from the same requester gives the same request.
    idempotency_key = models.CharField(max_length=255, blank=True)
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # When the sweep last re-sent this request's lost work: it is not re-sent
    # again before a worker could have picked it up (requests_app.workflow.sweeper).
    lost_work_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(state__in=RequestState.values), name="request_state_valid"),
            models.CheckConstraint(
                condition=Q(endpoint_type__in=["source", "target"]), name="request_endpoint_type_valid"
            ),
            models.UniqueConstraint(
                fields=["requester", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="request_idempotency_key_unique",
            ),
            models.UniqueConstraint(
                fields=["datalake_account", "region", "endpoint_identifier"],
                condition=Q(state__in=LIVE_STATES),
                name="request_live_endpoint_identifier_unique",
            ),
            models.UniqueConstraint(
                fields=["datalake_account", "role_name"],
                condition=Q(state__in=LIVE_STATES),
                name="request_live_role_name_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "created_at"], name="request_state_created"),
            models.Index(fields=["remote_account", "state", "created_at"], name="request_remote_state"),
            models.Index(fields=["requester", "created_at"], name="request_requester_created"),
            # Every request list is newest first: its page is read off this index
            # instead of sorting every visible request.
            models.Index(fields=["-created_at", "-id"], name="request_newest_first"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.endpoint_identifier} ({self.get_state_display()})"

    def can_move_to(self, state: str) -> bool:
        return state in ALLOWED_TRANSITIONS[self.state]


class Decision(models.Model):
    """One approver's approve or reject, bound to the plan they saw."""

    class Outcome(models.TextChoices):
        APPROVE = "approve", "Approved"
        REJECT = "reject", "Rejected"

    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, related_name="decisions")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions")
    outcome = models.CharField(max_length=7, choices=Outcome.choices)
    comment = models.TextField(blank=True)
    plan_hash = models.CharField(max_length=64)
    approval_round = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(outcome__in=["approve", "reject"]), name="decision_outcome_valid"),
            models.UniqueConstraint(
                fields=["request", "approver", "plan_hash", "approval_round"], name="decision_once_per_plan"
            ),
        ]


class ExpiryExtension(models.Model):
    """A requester's ask to move an active grant's expiry, decided by the approvers.

    The plan and its hash stay as they are: only ``expires_at`` moves, and
    only once the Remote account's required number of approvers agreed.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, related_name="extensions")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    previous_expires_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    justification = models.TextField(blank=True)
    state = models.CharField(max_length=9, choices=State.choices, default=State.PENDING)
    approved_by = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+", blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "approved", "rejected"]), name="extension_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("previous_expires_at")), name="extension_moves_expiry_later"
            ),
            models.UniqueConstraint(fields=["request"], condition=Q(state="pending"), name="extension_one_pending"),
        ]


class RepairRequest(models.Model):
    """A requester's ask to put back a grant's statements that drifted in the Remote account.

    A portal statement removed from (or edited in) a Remote policy is the
    Remote account's decision until its approvers say otherwise: the repair
    runs only once the account's required number of them agreed. ``findings``
    are the drift findings the ask is about, as the approvers see them; the
    repair re-runs exactly the steps that put those back.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        # The drift it was about went away before anyone decided.
        CLOSED = "closed", "Closed"

    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, related_name="repairs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    findings = models.JSONField(default=list, blank=True)
    justification = models.TextField(blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    approved_by = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+", blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "approved", "rejected", "closed"]), name="repair_state_valid"
            ),
            models.UniqueConstraint(fields=["request"], condition=Q(state="pending"), name="repair_one_pending"),
        ]


class ProvisioningStep(models.Model):
    """One engine step of a request's grant or revoke, with its outcome."""

    class Phase(models.TextChoices):
        GRANT = "grant", "Grant"
        REVOKE = "revoke", "Revoke"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Done"
        FAILED = "failed", "Failed"

    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, related_name="steps")
    phase = models.CharField(max_length=6, choices=Phase.choices, default=Phase.GRANT)
    name = models.CharField(max_length=40)
    position = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    # While running: until when the claim of attempt ``attempts`` holds (the
    # database's clock). The worker renews it while the step runs; once it has
    # passed, another worker may take the step over.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    diagnosis = models.CharField(max_length=64, blank=True)
    aws_request_ids = models.JSONField(default=list, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    # Every target this step wrote, over all its runs: {"arn", "sid", "document"}
    # (the exact statement or document written). Never reset when the step is
    # run again, so revoke removes what was written even after the plan moved
    # to another key.
    targets = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["phase", "position"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "running", "succeeded", "failed"]), name="step_status_valid"
            ),
            models.CheckConstraint(condition=Q(phase__in=["grant", "revoke"]), name="step_phase_valid"),
            models.UniqueConstraint(fields=["request", "phase", "name"], name="step_once_per_phase"),
        ]


class ResourceLock(models.Model):
    """One row per AWS resource ARN whose policy the workers read-merge-write.

    Workers lock the row (SELECT ... FOR UPDATE) around the read, merge and put
    of that resource's policy, so concurrent grants never lose one another.
    """

    arn = models.CharField(max_length=2048, unique=True)


class AuditEvent(models.Model):
    """An append-only, hash-chained record of a transition or an AWS write.

    Written only through ``requests_app.audit.record_event``; the database
    refuses UPDATE and DELETE on this table.
    """

    created_at = models.DateTimeField()
    # No database FK on the actor: the label survives a deleted user, and a
    # cascading SET NULL would be an UPDATE, which the table refuses.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64)
    request = models.ForeignKey(
        AccessRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events")
    target_arn = models.CharField(max_length=2048, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # Which AUDIT_CHAIN_KEYS key made ``hash`` (an HMAC), or "sha256-legacy"
    # for the events written before the chain was keyed.
    key_id = models.CharField(max_length=32)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["request", "id"], name="audit_request_id"),
            models.Index(fields=["account", "id"], name="audit_account_id"),
            models.Index(fields=["actor_label", "id"], name="audit_actor_id"),
            models.Index(fields=["created_at"], name="audit_created_at"),
        ]


class AuditChainState(models.Model):
    """Where the incremental verification of the audit chain stopped, and how it went.

    One row. Only a shortcut and a status for the pages and metrics: what an
    operator with the database cannot rewrite are the signed checkpoints
    outside it (the log, the S3 bucket).
    """

    verified_through_id = models.BigIntegerField(default=0)
    verified_through_hash = models.CharField(max_length=64, blank=True)
    verified_through_key_id = models.CharField(max_length=32, blank=True)
    verified_count = models.BigIntegerField(default=0)
    checked_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    reason = models.TextField(blank=True)
    first_broken_id = models.BigIntegerField(null=True, blank=True)
    last_checkpoint = models.JSONField(default=dict, blank=True)


class SsoIdentity(models.Model):
    """A portal user's identity at the single sign-on provider: the ``(iss, sub)`` pair.

    Written at a user's first SSO login, or before it by an administrator (a
    pre-link): with the expected ``subject``, or with an ``expected_email``
    that the provider must vouch for (``email_verified``) and that the first
    login replaces with its subject. Logins match on ``(issuer, subject)`` only.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities")
    issuer = models.CharField(max_length=255, help_text="The provider's issuer (the id token's iss).")
    subject = models.CharField(
        max_length=255, blank=True,
        help_text="The provider's subject for this person (sub). Blank on a pre-link by e-mail until its first login.",
    )
    expected_email = models.EmailField(
        blank=True,
        help_text="Pre-link by e-mail: the first login whose verified e-mail is this one is linked to the user.",
    )
    linked_at = models.DateTimeField(null=True, blank=True, help_text="First single sign-on through this identity.")
    # The provider's refresh token of the latest login (encrypted at rest, never
    # shown or logged), so an operator can re-read the groups between logins.
    refresh_token = EncryptedTextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "subject"], condition=~Q(subject=""), name="sso_identity_issuer_subject_unique"
            ),
            # One identity per user at a provider, and an e-mail pre-link names one user.
            models.UniqueConstraint(fields=["user", "issuer"], name="sso_identity_one_per_user_and_issuer"),
            models.UniqueConstraint(
                models.functions.Lower("expected_email"), "issuer",
                condition=Q(subject=""), name="sso_identity_pending_email_unique",
            ),
            models.CheckConstraint(
                condition=~Q(subject="") | ~Q(expected_email=""), name="sso_identity_subject_or_email"
            ),
            models.CheckConstraint(condition=~Q(issuer=""), name="sso_identity_issuer_set"),
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.issuer}"


class ApiToken(AbstractAuthToken):
    """A personal API token: made by its owner (or for a service account at the
    server's console), named, always expiring, stored only as knox's SHA-512
    ``digest`` and the short ``token_key`` lookup prefix; revoking deletes it.

    Knox's own model keys tokens by their digest; this one has a plain id, so
    pages, the API and the audit trail can name a token without any part of it.
    """

    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=CONSTANTS.DIGEST_LENGTH, unique=True)
    name = models.CharField(max_length=API_TOKEN_NAME_MAX_LENGTH, validators=[api_token_name_validator])
    expiry = models.DateTimeField()

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="api_token_name_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"


class SlackIdentity(models.Model):
    """A portal user's Slack account, linked by an administrator: a Slack user
    acts as this portal user in the Slack app whatever e-mail Slack shows."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_identities")
    slack_user_id = models.CharField(max_length=21, unique=True, validators=[slack_user_id_validator])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "Slack identity"
        verbose_name_plural = "Slack identities"

    def __str__(self) -> str:
        return f"{self.user} as Slack user {self.slack_user_id}"


class SlackMessage(models.Model):
    """The Slack message that asks a request's Remote approvers, kept so it
    can be updated in place as the request moves."""

    request = models.OneToOneField(AccessRequest, on_delete=models.PROTECT, related_name="slack_message")
    channel = models.CharField(max_length=21)
    ts = models.CharField(max_length=32)
    posted_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "ts"], name="slack_message_channel_ts_unique")]


class SlackRequestSeen(models.Model):
    """A signed Slack request the portal accepted: the same signature again,
    within the five minutes a signature is valid, is a replay."""

    signature = models.CharField(max_length=80, unique=True)
    received_at = models.DateTimeField(db_index=True)


def slack_origin(user) -> dict | None:
    """The Slack user ``user`` acts through on this request ({"user_id", "team_id"}),
    or None. Set by the Slack interactions endpoint."""
    return getattr(user, "slack_origin", None)


def api_token_in_use(user) -> ApiToken | None:
    """The token ``user`` authenticated with on this request, or None (a
    session, the console, the worker). Set by the API's token authentication."""
    return getattr(user, "api_token", None)


class ApprovalRule(models.Model):
    """A Remote account's standing decision: requests that match the version
    in force are approved without a person (see ``services.rules``).

    The rule is a name; what it approves is in its versions. A version takes
    effect only once the account's approvers approved it, as they approve a
    request; a request approved by a rule keeps pointing at the version that
    approved it.
    """

    remote_account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="approval_rules")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["remote_account_id", "name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["remote_account", "name"], name="approval_rule_name_unique_per_account"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.remote_account.account_id})"


class ApprovalRuleVersion(models.Model):
    """One proposed or decided content of a rule: its criteria, or (``enabled``
    False) its disabling. Never changed once proposed, except by its decision."""

    class State(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        IN_FORCE = "in_force", "In force"
        SUPERSEDED = "superseded", "Superseded"
        REJECTED = "rejected", "Rejected"

    rule = models.ForeignKey(ApprovalRule, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PROPOSED)
    enabled = models.BooleanField(default=True, help_text="False: this version disables the rule.")
    datalake_accounts = models.ManyToManyField(AwsAccount, related_name="+")
    engines = models.JSONField(default=list)
    secret_name_prefix = models.CharField(max_length=512)
    max_expiry_days = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    comment = models.TextField(blank=True)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approved_by = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="+", blank=True)
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    rejection_comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rule_id", "number"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["proposed", "in_force", "superseded", "rejected"]),
                name="rule_version_state_valid",
            ),
            models.CheckConstraint(condition=Q(max_expiry_days__gte=1), name="rule_version_max_expiry_days_gte_1"),
            models.UniqueConstraint(fields=["rule", "number"], name="rule_version_number_unique"),
            models.UniqueConstraint(fields=["rule"], condition=Q(state="proposed"), name="rule_one_proposed_version"),
            models.UniqueConstraint(fields=["rule"], condition=Q(state="in_force"), name="rule_one_version_in_force"),
        ]

    def __str__(self) -> str:
        return f"{self.rule.name} v{self.number}"


class RuleDecision(models.Model):
    """A rule's approval of a request: the version that approved it, bound to
    the plan it approved (like a person's ``Decision``).

    ``whole_decision`` is the account's setting when it decided: True, it was
    the whole decision; False, it counted as one approval beside people's.
    """

    request = models.ForeignKey(AccessRequest, on_delete=models.PROTECT, related_name="rule_decisions")
    rule_version = models.ForeignKey(ApprovalRuleVersion, on_delete=models.PROTECT, related_name="decisions")
    plan_hash = models.CharField(max_length=64)
    approval_round = models.PositiveIntegerField(default=0)
    whole_decision = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "plan_hash", "approval_round"], name="rule_decision_once_per_plan"
            ),
        ]
