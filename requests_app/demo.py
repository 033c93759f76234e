"""The demo: the runbook's AWS world in moto, and the portal rows that go with it.

Used by ``manage.py quickstart`` and by the tests that need the same world.
``seed_aws_world`` (from ``provisioning.demo_world``) builds AWS; ``seed_portal``
adds the demo users and registers the two accounts. Both are safe to run
again: the quickstart re-seeds moto (in memory) at every start but keeps its
database, so existing users and accounts are found, never duplicated.
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction

from provisioning.demo_world import DemoWorld, seed_aws_world
from requests_app.models import AwsAccount
from requests_app.services import account_register

__all__ = ["DEMO_USERS", "DemoPortal", "demo_request", "seed_aws_world", "seed_portal"]

# username -> (first name, last name, portal administrator: staff, superuser and
# holder of the administer_portal permission)
DEMO_USERS = {
    "requester": ("Dana", "Requester", False),
    "approver": ("Remy", "Approver", False),
    "admin": ("Ada", "Admin", True),
}
DEMO_EMAIL_DOMAIN = "example.com"
DEMO_ENDPOINT_IDENTIFIER = "source-db-mysql"
DEMO_ROLE_NAME = "dms-cross-account-secret-access"


@dataclass(frozen=True)
class DemoPortal:
    """What ``seed_portal`` left in the database."""

    passwords: dict[str, str]
    # The users' stored password hashes: given back to seed_portal, they spare
    # it a deliberately slow password check for every user at every start.
    password_hashes: dict[str, str]
    datalake_account: AwsAccount
    remote_account: AwsAccount


def generate_passwords() -> dict[str, str]:
    """Fresh random passwords for the demo users."""
    return {username: secrets.token_urlsafe(12) for username in DEMO_USERS}


def seed_portal(
    world: DemoWorld,
    *,
    passwords: Mapping[str, str] | None = None,
    password_hashes: Mapping[str, str] | None = None,
) -> DemoPortal:
    """Make sure the demo users exist with ``passwords`` (generated when not
    given) and that the DataLake and Remote accounts of ``world`` are
    registered with requester and approver as members. ``password_hashes``
    from an earlier run's result skip re-checking unchanged passwords."""
    passwords = dict(passwords or generate_passwords())
    password_hashes = password_hashes or {}
    with transaction.atomic():
        users = {
            username: _ensure_user(username, passwords[username], known_hash=password_hashes.get(username))
            for username in DEMO_USERS
        }
        datalake = _ensure_account(
            world,
            account_id=world.datalake_account_id,
            name="DataLake",
            provisioner_role_arn=world.datalake_provisioner_role_arn,
            is_datalake=True,
            requesters=["requester"],
            external_id=_demo_external_id(),
            admin=users["admin"],
        )
        remote = _ensure_account(
            world,
            account_id=world.remote_account_id,
            name="Remote",
            provisioner_role_arn=world.remote_provisioner_role_arn,
            is_remote=True,
            approvers=["approver"],
            # The demo secret is well-formed, so the optional shape check
            # shows what it looks like when it passes.
            allow_secret_shape_check=True,
            external_id=_demo_external_id(),
            admin=users["admin"],
        )
    return DemoPortal(
        passwords=passwords,
        password_hashes={username: user.password for username, user in users.items()},
        datalake_account=datalake,
        remote_account=remote,
    )


def demo_request(world: DemoWorld) -> dict:
    """The runbook's request, as keyword arguments of ``access_request_submit``
    (without the requester): a MySQL source endpoint reading the CMK secret,
    with a connection test on the replication instance."""
    return {
        "datalake_account_id": world.datalake_account_id,
        "secret_arn": world.secret_arn,
        "kms_key_arn": world.key_arn,
        "engine": "mysql",
        "endpoint_identifier": DEMO_ENDPOINT_IDENTIFIER,
        "endpoint_type": "source",
        "role_name": DEMO_ROLE_NAME,
        "replication_instance_arn": world.replication_instance_arn,
        "justification": "Replicate the source database into the data lake (the runbook's example).",
    }


def _ensure_user(username: str, password: str, *, known_hash: str | None = None):
    first_name, last_name, is_admin = DEMO_USERS[username]
    user, created = get_user_model().objects.get_or_create(
        username=username,
        defaults={
            "first_name": first_name,
            "last_name": last_name,
            "email": f"{username}@{DEMO_EMAIL_DOMAIN}",
            "is_staff": is_admin,
            "is_superuser": is_admin,
        },
    )
    # Only when it differs: setting the same password again would still log
    # out every session of the user (the session hash covers the hash salt).
    unchanged = not created and (user.password == known_hash or user.check_password(password))
    if not unchanged:
        user.set_password(password)
        user.save(update_fields=["password"])
    if created and is_admin:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="requests_app", codename="administer_portal")
        )
    return user


def _demo_external_id() -> str:
    # moto does not check it; a real trust policy would require it. Random, so
    # that even the demo holds a value nobody can read back from the portal.
    return "demo-" + secrets.token_hex(16)


def _ensure_account(world: DemoWorld, *, account_id: str, admin, **fields) -> AwsAccount:
    # An account registered by an earlier run is left as the admin may have
    # changed it since.
    account = AwsAccount.objects.filter(account_id=account_id).first()
    if account is not None:
        return account
    flags = {"is_datalake": False, "is_remote": False}
    return account_register(actor=admin, account_id=account_id, default_region=world.region, **{**flags, **fields})
