"""Groups from the identity provider's claim at each login, and the operator's re-sync.

The rules directly, on the service; the whole flow through the real
OpenID Connect provider is in tests/e2e/test_sso.py.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command

from requests_app import permissions
from requests_app.models import AuditEvent, SsoIdentity
from requests_app.services.sso import sso_login

ISSUER = "https://sso.example.test"

pytestmark = pytest.mark.django_db


def login(subject: str, groups=None, refresh_token: str = "", **claims):
    claims = {"sub": subject, "preferred_username": f"user-{subject}", **claims}
    if groups is not None:
        claims["groups"] = groups
    return sso_login(issuer=ISSUER, subject=subject, claims=claims, source_ip="10.1.1.1", refresh_token=refresh_token)


def names(user) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


@pytest.fixture
def known_groups(db):
    admins, _ = Group.objects.get_or_create(name="Portal administrators")
    admins.permissions.add(Permission.objects.get(codename="administer_portal"))
    return {name: Group.objects.get_or_create(name=name)[0] for name in ("remote-approvers", "datalake-requesters")}


def test_a_login_sets_the_known_groups_the_claim_names_and_a_later_one_takes_them_away(known_groups, cast):
    cast.remote.approver_groups.add(known_groups["remote-approvers"])
    user = login("s-1", groups=["remote-approvers", "datalake-requesters", "unknown-group"])
    assert names(user) == ["datalake-requesters", "remote-approvers"]
    assert not Group.objects.filter(name="unknown-group").exists()  # a claim never creates a group
    assert permissions.is_approver_for(type(user).objects.get(pk=user.pk), cast.remote)
    event = AuditEvent.objects.get(action="sso.groups_changed")
    assert event.details == {
        "user": "user-s-1", "added": ["datalake-requesters", "remote-approvers"], "removed": [], "via": "login",
    }
    assert (event.actor_id, event.source_ip) == (user.pk, "10.1.1.1")

    # Removed from a group at the provider: gone at the next login, with the role.
    user = login("s-1", groups=["datalake-requesters"])
    assert names(user) == ["datalake-requesters"]
    assert not permissions.is_approver_for(type(user).objects.get(pk=user.pk), cast.remote)
    assert AuditEvent.objects.filter(action="sso.groups_changed").last().details["removed"] == ["remote-approvers"]

    # Nothing changed: nothing audited.
    login("s-1", groups=["datalake-requesters"])
    assert AuditEvent.objects.filter(action="sso.groups_changed").count() == 2


def test_a_missing_or_malformed_claim_leaves_the_person_in_no_managed_group(known_groups):
    user = login("s-1", groups=["remote-approvers"])
    assert names(user) == ["remote-approvers"]
    assert names(login("s-1", groups={"remote-approvers": True})) == []
    login("s-1", groups=["remote-approvers"])
    assert names(login("s-1")) == []


def test_groups_holding_permissions_stay_hand_kept(known_groups):
    user = login("s-1", groups=["Portal administrators", "remote-approvers"])
    assert names(user) == ["remote-approvers"]
    assert not permissions.is_portal_admin(type(user).objects.get(pk=user.pk))
    # And an administrator put in that group by hand is not taken out by a login.
    user.groups.add(Group.objects.get(name="Portal administrators"))
    assert names(login("s-1", groups=[])) == ["Portal administrators"]


def test_a_prefix_limits_the_groups_the_provider_manages(known_groups, settings):
    settings.OIDC_GROUPS_PREFIX = "remote-"
    user = login("s-1", groups=["remote-approvers", "datalake-requesters"])
    assert names(user) == ["remote-approvers"]
    user.groups.add(known_groups["datalake-requesters"])  # set by hand: outside the prefix, kept
    assert names(login("s-1", groups=[])) == ["datalake-requesters"]


def test_another_claim_name_and_switching_off(known_groups, settings):
    settings.OIDC_GROUPS_CLAIM = "roles"
    assert names(login("s-1", roles=["remote-approvers"])) == ["remote-approvers"]
    settings.OIDC_GROUPS_CLAIM = ""
    assert names(login("s-1", roles=[])) == ["remote-approvers"]


def test_the_refresh_token_is_kept_encrypted_with_the_identity(known_groups):
    login("s-1", groups=[], refresh_token="rt-secret-1")
    identity = SsoIdentity.objects.get(subject="s-1")
    assert identity.refresh_token == "rt-secret-1"
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT refresh_token FROM requests_app_ssoidentity WHERE id = %s", [identity.pk])
        assert "rt-secret-1" not in cursor.fetchone()[0]
    assert "rt-secret-1" not in str(list(AuditEvent.objects.values_list("details", flat=True)))


def test_the_resync_command_says_clearly_when_it_cannot_ask_the_provider(known_groups, settings, capsys):
    settings.OIDC_ENABLED = True
    settings.OIDC_OP_ISSUER = ISSUER
    login("s-1", groups=["remote-approvers"])  # no refresh token from this provider
    call_command("sync_sso_groups", "--all")
    captured = capsys.readouterr()
    assert "user-s-1: not re-synced now: no refresh token is stored" in captured.out
    assert "set again at their next single sign-on" in captured.err
    with pytest.raises(CommandError, match="no single sign-on identity"):
        call_command("sync_sso_groups", "--username", "nobody")
    settings.OIDC_ENABLED = False
    with pytest.raises(CommandError, match="not configured"):
        call_command("sync_sso_groups", "--all")
