"""The Slack app's settings that administrators write: an account's channel and
explicit links of Slack users to portal users. Each is audited."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from requests_app import permissions
from requests_app.audit import record_event
from requests_app.errors import NotAllowed, ValidationFailed
from requests_app.models import SlackIdentity, slack_channel_validator, slack_user_id_validator
from requests_app.services.accounts import _locked_account


def _valid(value: str, validator, field: str) -> str:
    value = (value or "").strip()
    if value:
        try:
            validator(value)
        except ValidationError as error:
            raise ValidationFailed({field: list(error.messages)}) from None
    return value


def account_slack_channel_set(
    *, actor, account_id: str, slack_channel: str, source_ip: str | None = None
) -> None:
    """Set (or, with "", clear) the Slack channel where the account's approvers are asked."""
    if not permissions.can_change_account_members(actor):
        raise NotAllowed("Only portal administrators may set an account's Slack channel.")
    slack_channel = _valid(slack_channel, slack_channel_validator, "slack_channel")
    with transaction.atomic():
        account = _locked_account(account_id)
        if account.slack_channel == slack_channel:
            return
        before = account.slack_channel
        account.slack_channel = slack_channel
        account.save(update_fields=["slack_channel", "updated_at"])
        record_event(
            action="account.slack_channel_changed",
            actor=actor,
            source_ip=source_ip,
            account=account,
            target_arn=account.provisioner_role_arn,
            details={"before": before, "after": slack_channel},
        )


def slack_identity_save(
    *, actor, user, slack_user_id: str, identity_id: int | None = None, source_ip: str | None = None
) -> SlackIdentity:
    """Link a Slack user to ``user`` (or change a link): that Slack user then acts as
    ``user`` in the Slack app. Audited with before and after."""
    slack_user_id = _valid(slack_user_id, slack_user_id_validator, "slack_user_id")
    if not slack_user_id:
        raise ValidationFailed({"slack_user_id": ["A Slack user id is required."]})
    try:
        with transaction.atomic():
            identity = None
            if identity_id is not None:
                identity = SlackIdentity.objects.select_for_update().select_related("user").get(pk=identity_id)
            for target in (user, identity.user if identity else None):
                if target is not None and not permissions.can_link_slack_identity(actor, target):
                    raise NotAllowed("Only a superuser may link a staff user or a superuser to a Slack account.")
            before = {"user": identity.user.get_username(), "slack_user_id": identity.slack_user_id} if identity else None
            identity = identity or SlackIdentity()
            identity.user, identity.slack_user_id = user, slack_user_id
            identity.save()
            after = {"user": user.get_username(), "slack_user_id": slack_user_id}
            record_event(
                action="slack.linked" if before is None else "slack.link_changed",
                actor=actor,
                source_ip=source_ip,
                details={"before": before, "after": after} if before else after,
            )
    except IntegrityError:
        raise ValidationFailed({"slack_user_id": ["This Slack user is already linked to a portal user."]}) from None
    return identity


def slack_identity_remove(*, actor, identity_id: int, source_ip: str | None = None) -> None:
    """Unlink a Slack user from its portal user."""
    with transaction.atomic():
        identity = SlackIdentity.objects.select_for_update().select_related("user").get(pk=identity_id)
        if not permissions.can_link_slack_identity(actor, identity.user):
            raise NotAllowed("Only a superuser may unlink a staff user or a superuser from a Slack account.")
        details = {"user": identity.user.get_username(), "slack_user_id": identity.slack_user_id}
        identity.delete()
        record_event(action="slack.unlinked", actor=actor, source_ip=source_ip, details=details)
