"""Registering accounts: the service and the operators' command."""
from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from requests_app.errors import NotAllowed, ValidationFailed
from requests_app.models import AuditEvent, AwsAccount
from requests_app.services import account_register
from tests.factories import StaffFactory, UserFactory

ROLE = "arn:aws:iam::222222222222:role/dms-access-portal-provisioner"


def _register(actor, **overrides):
    fields = {
        "account_id": "222222222222",
        "name": "Remote",
        "is_datalake": False,
        "is_remote": True,
        "provisioner_role_arn": ROLE,
        "external_id": "remote-external-id",
    }
    return account_register(actor=actor, **{**fields, **overrides})


def test_staff_register_an_account_with_its_people_and_it_is_audited(db):
    admin = StaffFactory(username="sam")
    UserFactory(username="rami")
    UserFactory(username="rhea")
    account = _register(
        admin, approvers=["rami", "rhea"], required_approvals=2, external_id="ext-42", source_ip="10.9.9.9"
    )
    assert sorted(u.username for u in account.approvers.all()) == ["rami", "rhea"]
    assert (account.required_approvals, account.external_id, account.default_region) == (2, "ext-42", "eu-west-1")
    event = AuditEvent.objects.get(action="account.registered")
    assert (event.account, event.actor_label, event.source_ip) == (account, "sam", "10.9.9.9")
    assert event.details["approvers"] == ["rami", "rhea"]
    # That one is set, never which.
    assert event.details["external_id_set"] is True and "ext-42" not in json.dumps(event.details)


def test_only_staff_register_accounts(db):
    with pytest.raises(NotAllowed):
        _register(UserFactory())
    assert not AwsAccount.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"account_id": "22222222222"}, "account_id"),
        ({"name": "  "}, "name"),
        ({"is_remote": False}, "is_datalake"),
        ({"provisioner_role_arn": "arn:aws:iam::111111111111:role/dms-access-portal-provisioner"}, "provisioner_role_arn"),
        ({"provisioner_role_arn": "arn:aws:iam::222222222222:user/bob"}, "provisioner_role_arn"),
        ({"default_region": "moon-1"}, "default_region"),
        ({"approvers": ["nobody"]}, "approvers"),
        ({"requesters": ["rami"]}, "requesters"),  # not a DataLake account
        ({"required_approvals": 0}, "required_approvals"),
        ({"approvers": ["rami"], "required_approvals": 2}, "required_approvals"),
        ({"external_id": "x"}, "external_id"),
    ],
)
def test_bad_account_fields_are_refused_by_name(db, overrides, field):
    UserFactory(username="rami")
    with pytest.raises(ValidationFailed) as refused:
        _register(StaffFactory(), **overrides)
    assert field in refused.value.errors
    assert not AwsAccount.objects.exists()


def test_an_account_is_registered_once(db):
    admin = StaffFactory()
    _register(admin)
    with pytest.raises(ValidationFailed) as refused:
        _register(admin, name="Again")
    assert "already registered" in refused.value.errors["account_id"][0]


def test_the_command_registers_with_every_field(db, capsys):
    UserFactory(username="dana")
    UserFactory(username="erin")
    UserFactory(username="rami")
    call_command(
        "register_account",
        "--account-id=111111111111",
        "--name=DataLake",
        "--datalake",
        "--remote",
        "--provisioner-role-arn=arn:aws:iam::111111111111:role/portal",
        "--external-id=datalake-external-id",
        "--default-region=eu-central-1",
        "--requester=dana,erin",
        "--approver=rami",
        "--required-approvals=1",
        "--allow-secret-shape-check",
    )
    account = AwsAccount.objects.get(account_id="111111111111")
    assert account.is_datalake and account.is_remote and account.allow_secret_shape_check
    assert account.default_region == "eu-central-1"
    assert account.external_id == "datalake-external-id"
    assert sorted(u.username for u in account.requesters.all()) == ["dana", "erin"]
    assert [u.username for u in account.approvers.all()] == ["rami"]
    assert "Registered DataLake (111111111111)" in capsys.readouterr().out
    event = AuditEvent.objects.get(action="account.registered")
    assert event.actor_id is None and event.actor_label.startswith("console")


def test_the_command_reports_every_bad_field(db):
    with pytest.raises(CommandError) as refused:
        call_command(
            "register_account",
            "--account-id=111111111111",
            "--name=DataLake",
            "--provisioner-role-arn=arn:aws:iam::999999999999:role/portal",
            "--requester=ghost",
        )
    message = str(refused.value)
    for field in ("is_datalake", "provisioner_role_arn", "requesters"):
        assert f"{field}:" in message
    assert not AwsAccount.objects.exists()
