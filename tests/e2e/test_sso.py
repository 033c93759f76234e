"""Single sign-on through a real OpenID Connect provider, in a real browser.

Every login here is the whole authorization-code flow: the portal's button,
the provider's login page, the redirect back with a code, and the portal
process exchanging it (with PKCE) for signed tokens and the user info. Only
the provider's directory (what it says about a person) and the portal's
users are set up by the test.
"""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from requests_app.models import AuditEvent, SsoIdentity
from requests_app.services.sso import sso_identity_save
from tests.e2e.sso_world import start_sso_world
from tests.requests_app.rows import portal_accounts

pytestmark = pytest.mark.django_db(transaction=True)

IDP_PASSWORD = "idp-password-1"
LOCAL_PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def sso(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.conf import settings

    with django_db_blocker.unblock():
        world = start_sso_world(tmp_path_factory.mktemp("sso"), broker_url=settings.CELERY_BROKER_URL)
    yield world
    world.portal.stop()
    world.provider.stop()


@pytest.fixture
def sign_in(browser, sso):
    """Sign ``login`` in at the provider from the portal's login page, in a fresh browser."""
    contexts = []

    def _sign_in(login: str):
        context = browser.new_context(base_url=sso.portal_url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/auth/login/")
        page.click("text=Sign in with single sign-on")
        page.wait_for_url(f"{sso.issuer.rsplit('/', 1)[0]}/login/**")
        page.fill("#idp-username", login)
        page.fill("#idp-password", IDP_PASSWORD)
        page.click("#idp-submit")
        page.wait_for_url(f"{sso.portal_url}/**")
        page.wait_for_selector(".topbar .who, ul.messages li.error")
        return page

    yield _sign_in
    for context in contexts:
        context.close()


def signed_in_as(page) -> str | None:
    who = page.query_selector(".topbar .who span")
    return who.inner_text() if who else None


def refusal(page) -> str:
    return page.inner_text("ul.messages li.error")


def links(action: str = "sso.linked") -> list[dict]:
    return [event.details for event in AuditEvent.objects.filter(action=action).order_by("id")]


def test_first_login_creates_and_binds_a_user_then_later_logins_match_the_subject_only(sso, sign_in):
    sso.directory.put("kim", password=IDP_PASSWORD, sub="subject-kim",
                      preferred_username="kim.lee", email="kim@corp.example", email_verified=True)

    page = sign_in("kim")
    assert signed_in_as(page) == "kim.lee"
    user = get_user_model().objects.get(username="kim.lee")
    assert not user.has_usable_password() and not user.is_staff and user.email == "kim@corp.example"
    identity = SsoIdentity.objects.get(issuer=sso.issuer, subject="subject-kim")
    assert identity.user == user and identity.linked_at is not None
    assert links() == [{"user": "kim.lee", "issuer": sso.issuer, "subject": "subject-kim", "via": "new_user"}]
    assert page.context.request.get(f"{sso.portal_url}/auth/login/").headers["content-security-policy"]

    # Kim's name and address change at the provider; the subject does not.
    sso.directory.put("kim", password=IDP_PASSWORD, sub="subject-kim",
                      preferred_username="kimberly", email="kimberly@corp.example", email_verified=True)
    page = sign_in("kim")
    assert signed_in_as(page) == "kim.lee"
    assert not get_user_model().objects.filter(username="kimberly").exists()
    assert len(links()) == 1  # linked once


def test_claims_naming_an_approver_or_an_administrator_do_not_sign_in_as_them(sso, sign_in):
    users = get_user_model().objects
    approver = users.create_user("omar.approver", email="omar@corp.example", password=LOCAL_PASSWORD)
    _, remote = portal_accounts()
    remote.approvers.add(approver)
    root = users.create_superuser("root@corp.example", email="root@corp.example", password=LOCAL_PASSWORD)
    # A provider user who may choose their own user name takes the approver's ...
    sso.directory.put("mallory", password=IDP_PASSWORD, sub="subject-mallory",
                      preferred_username="omar.approver", email="mallory@corp.example", email_verified=True)
    # ... one has no user name and the administrator's (user name and) address ...
    sso.directory.put("eve", password=IDP_PASSWORD, sub="subject-eve",
                      email="root@corp.example", email_verified=True)
    # ... and one has a name of their own and the approver's address.
    sso.directory.put("frank", password=IDP_PASSWORD, sub="subject-frank",
                      preferred_username="frank", email="OMAR@corp.example", email_verified=True)

    page = sign_in("mallory")
    assert signed_in_as(page) is None
    assert "A portal user named “omar.approver” already exists" in refusal(page)
    assert "administrator" in refusal(page)

    page = sign_in("eve")
    assert signed_in_as(page) is None
    assert "“root@corp.example” already exists" in refusal(page)

    page = sign_in("frank")
    assert signed_in_as(page) == "frank"
    frank = users.get(username="frank")
    assert not (frank.is_staff or frank.is_superuser)
    assert not frank.approver_for.exists()

    assert not SsoIdentity.objects.filter(user__in=[approver, root]).exists()
    assert [link["user"] for link in links()] == ["frank"]
    assert users.count() == 4  # the two above, the runbook's approver, and frank
    log = sso.portal.log()
    assert "single sign-on refused (username_taken)" in log
    assert sso.client_secret not in log


def test_an_unverified_email_is_not_used_and_an_administrators_pre_link_by_verified_email_is(sso, sign_in):
    users = get_user_model().objects
    admin = users.create_superuser("admin", password=LOCAL_PASSWORD)
    pat = users.create_user("pat")  # no password: signs in only through the provider
    sso_identity_save(actor=admin, user=pat, issuer=sso.issuer, expected_email="pat@corp.example")
    sso.directory.put("pat-unverified", password=IDP_PASSWORD, sub="subject-pat-1",
                      preferred_username="pat.u", email="pat@corp.example", email_verified=False)
    sso.directory.put("pat", password=IDP_PASSWORD, sub="subject-pat-2",
                      preferred_username="pat.sso", email="Pat@corp.example", email_verified=True)

    page = sign_in("pat-unverified")
    assert signed_in_as(page) == "pat.u"  # a new user: the unverified address linked nothing
    assert users.get(username="pat.u").email == ""
    assert SsoIdentity.objects.get(user=pat).subject == ""

    page = sign_in("pat")
    assert signed_in_as(page) == "pat"
    identity = SsoIdentity.objects.get(user=pat)
    assert (identity.issuer, identity.subject) == (sso.issuer, "subject-pat-2")
    assert links()[-1] == {"user": "pat", "issuer": sso.issuer, "subject": "subject-pat-2", "via": "verified_email"}


def test_a_user_with_a_local_password_is_linked_only_to_the_subject_an_administrator_named(sso, sign_in):
    users = get_user_model().objects
    admin = users.create_superuser("admin", password=LOCAL_PASSWORD)
    lee = users.create_user("lee", email="lee@corp.example", password=LOCAL_PASSWORD)
    sso.directory.put("lee", password=IDP_PASSWORD, sub="subject-lee",
                      preferred_username="lee", email="lee@corp.example", email_verified=True)

    # Same name, same verified address: not linked.
    page = sign_in("lee")
    assert signed_in_as(page) is None
    assert "already exists" in refusal(page)

    # A pending pre-link by e-mail (made before Lee had a password) does not link either.
    SsoIdentity.objects.create(user=lee, issuer=sso.issuer, expected_email="lee@corp.example")
    page = sign_in("lee")
    assert signed_in_as(page) is None
    assert "only by the subject of your identity" in refusal(page)
    assert SsoIdentity.objects.get(user=lee).subject == ""

    # The administrator names the subject: now Lee's provider identity is Lee.
    identity = SsoIdentity.objects.get(user=lee)
    sso_identity_save(actor=admin, identity_id=identity.pk, user=lee, issuer=sso.issuer, subject="subject-lee")
    page = sign_in("lee")
    assert signed_in_as(page) == "lee"
    assert links() == [{"user": "lee", "issuer": sso.issuer, "subject": "subject-lee", "via": "expected_subject"}]
    assert users.count() == 2


def test_groups_follow_the_provider_at_each_login_and_an_operator_re_syncs_them_between(sso, sign_in, settings):
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from requests_app import permissions
    from requests_app.errors import NotFoundForUser
    from requests_app.services import access_request_approve
    from tests.factories import AccessRequestFactory

    datalake, remote = portal_accounts()
    approvers = Group.objects.create(name="remote-approvers")
    Group.objects.create(name="other-team")
    remote.approver_groups.add(approvers)
    request = AccessRequestFactory(datalake_account=datalake, remote_account=remote)
    sso.directory.put("gale", password=IDP_PASSWORD, sub="subject-gale", preferred_username="gale",
                      groups=["remote-approvers", "not-a-portal-group"])

    page = sign_in("gale")
    assert signed_in_as(page) == "gale"
    gale = get_user_model().objects.get(username="gale")
    assert list(gale.groups.values_list("name", flat=True)) == ["remote-approvers"]
    assert permissions.can_approve(gale, request)
    # The approval queue the provider's group opened shows the request.
    page.goto("/approvals/")
    assert page.query_selector(f'tr[data-request="{request.pk}"]') is not None
    events = [event.details for event in AuditEvent.objects.filter(action="sso.groups_changed")]
    assert events == [{"user": "gale", "added": ["remote-approvers"], "removed": [], "via": "login"}]
    # The provider's refresh token is kept for a re-sync (encrypted, never shown).
    assert SsoIdentity.objects.get(subject="subject-gale").refresh_token

    # Moved to another team at the provider: an operator re-syncs now, through
    # the provider's user info with the kept refresh token.
    sso.directory.put("gale", password=IDP_PASSWORD, sub="subject-gale", preferred_username="gale",
                      groups=["other-team"])
    settings.OIDC_ENABLED = True
    settings.OIDC_OP_ISSUER = sso.issuer
    settings.OIDC_RP_CLIENT_ID = "dms-access-portal"
    settings.OIDC_RP_CLIENT_SECRET = sso.client_secret
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{sso.issuer}/token/"
    settings.OIDC_OP_USER_ENDPOINT = f"{sso.issuer}/userinfo/"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{sso.issuer}/.well-known/jwks.json"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    call_command("sync_sso_groups", "--username", "gale")
    gale = get_user_model().objects.get(username="gale")
    assert list(gale.groups.values_list("name", flat=True)) == ["other-team"]
    assert not permissions.can_approve(gale, request)
    with pytest.raises(NotFoundForUser):  # she no longer even sees it
        access_request_approve(request_id=request.pk, user=gale, plan_hash=request.plan_hash)
    resync = AuditEvent.objects.filter(action="sso.groups_changed").last()
    assert resync.details == {"user": "gale", "added": ["other-team"], "removed": ["remote-approvers"], "via": "resync"}
    assert resync.actor_label.startswith("console")

    # Removed from every group at the provider: the next login takes the last one away.
    sso.directory.put("gale", password=IDP_PASSWORD, sub="subject-gale", preferred_username="gale", groups=[])
    page = sign_in("gale")
    assert signed_in_as(page) == "gale"
    assert not get_user_model().objects.get(username="gale").groups.exists()
    assert AuditEvent.objects.filter(action="sso.groups_changed").last().details["removed"] == ["other-team"]
