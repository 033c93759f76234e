"""Group membership from the identity provider.

At each single sign-on the user's groups are set from the provider's
``settings.OIDC_GROUPS_CLAIM`` claim (a list of group names), limited to the
groups the provider manages here:

- groups the portal knows already (an administrator created them; a claim
  never creates one),
- whose name starts with ``settings.OIDC_GROUPS_PREFIX`` when it is set,
- that hold no Django permission: a group such as "Portal administrators"
  grants rights the provider must not hand out, so it stays hand-kept.

A managed group the claim no longer names is taken away, so a person removed
from a group at the provider loses the role it gave at their next login (or
at an operator's re-sync). Groups outside the managed set are left as they
are. Every change is audited.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import QuerySet

from requests_app.audit import record_event
from requests_app.models import SsoIdentity

logger = logging.getLogger(__name__)


def groups_sync_enabled() -> bool:
    """Whether logins set groups at all (``OIDC_GROUPS_CLAIM`` set to "" turns it off)."""
    return bool(getattr(settings, "OIDC_GROUPS_CLAIM", "groups"))


def managed_groups() -> QuerySet[Group]:
    """The groups whose membership follows the provider (see the module's docstring)."""
    groups = Group.objects.filter(permissions__isnull=True)
    prefix = getattr(settings, "OIDC_GROUPS_PREFIX", "")
    if prefix:
        groups = groups.filter(name__startswith=prefix)
    return groups


def claimed_group_names(claims: dict) -> set[str]:
    """The group names the provider's claims give; a missing or malformed
    claim gives none (a person is never left in a group by a claim the
    provider stopped sending)."""
    value = claims.get(getattr(settings, "OIDC_GROUPS_CLAIM", "groups"))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return set()
    return {name.strip() for name in value if isinstance(name, str) and name.strip()}


def sso_groups_apply(
    *, user, claims: dict, via: str, source_ip: str | None = None, actor=None, actor_label: str | None = None
) -> tuple[list[str], list[str]]:
    """Set ``user``'s managed groups to those ``claims`` name; returns the
    (added, removed) group names. Audited when anything changed. Runs in the
    caller's transaction (the login's), or its own."""
    if not groups_sync_enabled():
        return [], []
    wanted_names = claimed_group_names(claims)
    with transaction.atomic():
        managed = list(managed_groups())
        wanted = {group for group in managed if group.name in wanted_names}
        current = set(user.groups.filter(pk__in=[group.pk for group in managed]))
        added, removed = sorted(wanted - current, key=str), sorted(current - wanted, key=str)
        if added:
            user.groups.add(*added)
        if removed:
            user.groups.remove(*removed)
        # permissions caches the person's groups on the object.
        user.__dict__.pop("_portal_group_ids", None)
        if added or removed:
            record_event(
                action="sso.groups_changed",
                actor=actor if actor is not None or actor_label else user,
                actor_label=actor_label if actor is None else None,
                source_ip=source_ip,
                details={
                    "user": user.get_username(),
                    "added": [group.name for group in added],
                    "removed": [group.name for group in removed],
                    "via": via,
                },
            )
            logger.info("groups of %s set from the identity provider (%s): +%s -%s", user.get_username(), via,
                        [group.name for group in added], [group.name for group in removed])
    return [group.name for group in added], [group.name for group in removed]


def sso_refresh_token_store(*, identity: SsoIdentity, refresh_token: str) -> None:
    """Keep the provider's latest refresh token for an identity (encrypted), so
    its groups can be re-read between logins; "" keeps none."""
    if (identity.refresh_token or "") != (refresh_token or ""):
        identity.refresh_token = refresh_token or ""
        identity.save(update_fields=["refresh_token"])


def sso_groups_resync(
    *, identity_id: int, claims: dict, refresh_token: str, actor_label: str
) -> tuple[list[str], list[str]]:
    """An operator's re-sync of one identity's groups from the provider's
    current user info (read with its stored refresh token). The user info
    must be about the identity's subject."""
    with transaction.atomic():
        identity = SsoIdentity.objects.select_for_update().select_related("user").get(pk=identity_id)
        if claims.get("sub") != identity.subject:
            raise ValueError("The provider's user info is about another subject.")
        sso_refresh_token_store(identity=identity, refresh_token=refresh_token)
        return sso_groups_apply(user=identity.user, claims=claims, via="resync", actor_label=actor_label)
