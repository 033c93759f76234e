"""Single sign-on identities: whom a provider's ``(iss, sub)`` signs in as.

A login matches a portal user by the id token's issuer and subject only,
never by what a provider user can set for themselves (``preferred_username``,
``email``). The first login of an identity links it:

- to the user an administrator pre-linked with that subject;
- else to the user an administrator pre-linked with the e-mail address the
  provider vouches for (``email_verified``), provided that user has no
  password of their own and is not staff: those are linked by subject only;
- else to a new user named after ``preferred_username`` (or the verified
  e-mail), refused when a user of that name already exists.

Every link, and every change an administrator makes to one, is audited. A
refusal raises ``SsoLoginRefused`` with a message for the login page.
"""
from __future__ import annotations

import hashlib
import logging
import re

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from requests_app import permissions
from requests_app.audit import record_event
from requests_app.errors import NotAllowed, SsoLoginRefused, ValidationFailed
from requests_app.models import SsoIdentity
from requests_app.services.sso_groups import sso_groups_apply, sso_refresh_token_store

logger = logging.getLogger(__name__)

# Derived user names stay ASCII, so a look-alike letter cannot make a second "omar".
_DERIVABLE_USERNAME = re.compile(r"[A-Za-z0-9.@+_-]{1,150}")

ASK_AN_ADMINISTRATOR = "Ask a portal administrator to link your single sign-on identity to your portal user."


def verified_email(claims: dict) -> str:
    """The ``email`` claim if the provider says it verified it, else ""."""
    email, verified = claims.get("email"), claims.get("email_verified")
    # Some providers send the flag as the string "true".
    if verified is True or (isinstance(verified, str) and verified.strip().lower() == "true"):
        if isinstance(email, str):
            return email.strip()
    return ""


def username_for(*, issuer: str, subject: str, claims: dict) -> str:
    """The name of a new portal user for this identity: ``preferred_username``,
    else the verified e-mail, else a name derived from ``(iss, sub)``."""
    for candidate in (claims.get("preferred_username"), verified_email(claims)):
        if isinstance(candidate, str) and _DERIVABLE_USERNAME.fullmatch(candidate.strip()):
            return candidate.strip()
    return "sso-" + hashlib.sha256(f"{issuer}\n{subject}".encode()).hexdigest()[:16]


def links_by_subject_only(user) -> bool:
    """A user who can sign in without the provider, or who administers the
    portal, is linked only to a subject an administrator named."""
    return user.has_usable_password() or user.is_staff or user.is_superuser or permissions.is_portal_admin(user)


def _claim_text(claims: dict, name: str, limit: int = 150) -> str:
    value = claims.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _refuse(message: str, *, reason: str, issuer: str, subject: str):
    # The subject and issuer identify the attempt; no token or claim value is logged.
    logger.warning("single sign-on refused (%s) for subject %r of issuer %r", reason, subject, issuer)
    raise SsoLoginRefused(message, reason=reason)


def _record_link(identity: SsoIdentity, *, via: str, source_ip: str | None) -> None:
    record_event(
        action="sso.linked",
        actor=identity.user,
        source_ip=source_ip,
        details={
            "user": identity.user.get_username(),
            "issuer": identity.issuer,
            "subject": identity.subject,
            "via": via,
        },
    )
    logger.info("single sign-on identity %r of %r linked to user %s (%s)",
                identity.subject, identity.issuer, identity.user.get_username(), via)


def _active(user, *, issuer: str, subject: str):
    if not user.is_active:
        _refuse("Your portal user is deactivated.", reason="inactive_user", issuer=issuer, subject=subject)
    return user


def sso_login(
    *, issuer: str, subject: str, claims: dict, source_ip: str | None = None, refresh_token: str = ""
):
    """The portal user the provider's identity ``(issuer, subject)`` signs in as,
    linking it at its first login. ``claims`` are the provider's user info
    (with the groups claim: see ``sso_groups``); ``refresh_token`` is kept so
    an operator can re-read the groups between logins."""
    if not issuer or not subject:
        raise SsoLoginRefused("The single sign-on provider did not say who you are.", reason="no_subject")
    try:
        with transaction.atomic():
            user = _linked_user(issuer=issuer, subject=subject, claims=claims, source_ip=source_ip)
            _after_login(user, issuer=issuer, subject=subject, claims=claims, source_ip=source_ip,
                         refresh_token=refresh_token)
            return user
    except IntegrityError:
        # Two first logins of one identity at once: the other one linked it.
        identity = SsoIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        if identity is None:
            _refuse("Single sign-on could not link your identity; try again. " + ASK_AN_ADMINISTRATOR,
                    reason="conflict", issuer=issuer, subject=subject)
        user = _active(identity.user, issuer=issuer, subject=subject)
        with transaction.atomic():
            _after_login(user, issuer=issuer, subject=subject, claims=claims, source_ip=source_ip,
                         refresh_token=refresh_token)
        return user


def _after_login(user, *, issuer: str, subject: str, claims: dict, source_ip: str | None, refresh_token: str) -> None:
    # The roles that come with the provider's groups follow it at every login.
    sso_groups_apply(user=user, claims=claims, via="login", source_ip=source_ip)
    identity = SsoIdentity.objects.select_for_update().get(issuer=issuer, subject=subject)
    sso_refresh_token_store(identity=identity, refresh_token=refresh_token)


def _linked_user(*, issuer: str, subject: str, claims: dict, source_ip: str | None):
    now = timezone.now()
    identity = (
        SsoIdentity.objects.select_for_update().select_related("user").filter(issuer=issuer, subject=subject).first()
    )
    if identity is not None:
        user = _active(identity.user, issuer=issuer, subject=subject)
        if identity.linked_at is None:  # pre-linked by subject: this is its first login
            identity.linked_at = now
            identity.save(update_fields=["linked_at"])
            _record_link(identity, via="expected_subject", source_ip=source_ip)
        return user

    email = verified_email(claims)
    if email:
        pending = (
            SsoIdentity.objects.select_for_update().select_related("user")
            .filter(issuer=issuer, subject="", expected_email__iexact=email).first()
        )
        if pending is not None:
            user = _active(pending.user, issuer=issuer, subject=subject)
            if links_by_subject_only(user):
                _refuse(
                    "Your portal user can be linked to single sign-on only by the subject of your identity, "
                    "not by e-mail. " + ASK_AN_ADMINISTRATOR,
                    reason="email_prelink_to_protected_user", issuer=issuer, subject=subject,
                )
            pending.subject = subject
            pending.linked_at = now
            pending.save(update_fields=["subject", "linked_at"])
            _record_link(pending, via="verified_email", source_ip=source_ip)
            return user

    User = get_user_model()
    username = username_for(issuer=issuer, subject=subject, claims=claims)
    if User.objects.filter(**{f"{User.USERNAME_FIELD}__iexact": username}).exists():
        _refuse(
            f"A portal user named “{username}” already exists and is not linked to your single sign-on "
            "identity. " + ASK_AN_ADMINISTRATOR,
            reason="username_taken", issuer=issuer, subject=subject,
        )
    # No password: this user signs in through the provider only.
    user = User.objects.create_user(
        username,
        email=email,
        first_name=_claim_text(claims, "given_name"),
        last_name=_claim_text(claims, "family_name"),
    )
    identity = SsoIdentity.objects.create(user=user, issuer=issuer, subject=subject, linked_at=now)
    _record_link(identity, via="new_user", source_ip=source_ip)
    return user


# --- Administrators' pre-links -------------------------------------------------


def sso_identity_problems(
    *, identity_id: int | None, user, issuer: str, subject: str, expected_email: str
) -> dict[str, list[str]]:
    """What is wrong with a pre-link (field -> messages); empty when it may be saved."""
    problems: dict[str, list[str]] = {}
    if not issuer:
        problems["issuer"] = ["Give the provider's issuer."]
    if not subject and not expected_email:
        problems["subject"] = ["Give the expected subject, or a verified e-mail address to link by."]
    if user is None or problems:
        return problems
    others = SsoIdentity.objects.exclude(pk=identity_id)
    if subject and (taken := others.filter(issuer=issuer, subject=subject).select_related("user").first()):
        problems["subject"] = [f"This identity is already linked to {taken.user.get_username()}."]
    if others.filter(user=user, issuer=issuer).exists():
        problems["user"] = ["This user already has an identity at this provider."]
    if not subject and expected_email:
        if links_by_subject_only(user):
            problems["expected_email"] = [
                "This user has a password of their own or is staff: link them by subject, not by e-mail."
            ]
        elif others.filter(issuer=issuer, subject="", expected_email__iexact=expected_email).exists():
            problems["expected_email"] = ["Another user is already pre-linked with this e-mail address."]
    return problems


def _identity_details(identity: SsoIdentity) -> dict:
    return {
        "user": identity.user.get_username(),
        "issuer": identity.issuer,
        "subject": identity.subject,
        "expected_email": identity.expected_email,
    }


def sso_identity_save(
    *,
    actor,
    user,
    issuer: str,
    subject: str = "",
    expected_email: str = "",
    identity_id: int | None = None,
    source_ip: str | None = None,
    actor_label: str | None = None,
) -> SsoIdentity:
    """Pre-link ``user`` to an identity at the provider, or change a link
    (``identity_id``): an administrator's decision, audited with before/after.

    ``actor`` None is an operator at the server's console (the ``sso_prelink``
    command), named by ``actor_label``.
    """
    issuer, subject, expected_email = issuer.strip(), subject.strip(), expected_email.strip()
    with transaction.atomic():
        identity = None
        if identity_id is not None:
            identity = SsoIdentity.objects.select_for_update().select_related("user").get(pk=identity_id)
        for target in (user, identity.user if identity else None):
            if actor is not None and target is not None and not permissions.can_link_sso_identity(actor, target):
                raise NotAllowed("Only a superuser may link a staff user or a superuser to single sign-on.")
        problems = sso_identity_problems(
            identity_id=identity_id, user=user, issuer=issuer, subject=subject, expected_email=expected_email
        )
        if problems:
            raise ValidationFailed(problems)
        before = _identity_details(identity) if identity else None
        if identity is None:
            identity = SsoIdentity(user=user)
        relinked = (identity.user_id, identity.issuer, identity.subject) != (user.pk, issuer, subject)
        identity.user, identity.issuer, identity.subject, identity.expected_email = user, issuer, subject, expected_email
        if relinked:
            identity.linked_at = None  # linked again at the next login of the identity now named
        identity.save()
        record_event(
            action="sso.prelinked" if before is None else "sso.link_changed",
            actor=actor,
            actor_label=actor_label if actor is None else None,
            source_ip=source_ip,
            details={"before": before, "after": _identity_details(identity)} if before else _identity_details(identity),
        )
    return identity


def sso_identity_remove(*, actor, identity_id: int, source_ip: str | None = None) -> None:
    """Unlink an identity: its next login is a first login again."""
    with transaction.atomic():
        identity = SsoIdentity.objects.select_for_update().select_related("user").get(pk=identity_id)
        if not permissions.can_link_sso_identity(actor, identity.user):
            raise NotAllowed("Only a superuser may unlink a staff user or a superuser from single sign-on.")
        details = _identity_details(identity)
        identity.delete()
        record_event(action="sso.unlinked", actor=actor, source_ip=source_ip, details=details)
