"""People, accounts and AWS for the security tests (see tests/security/actions.py for the roles)."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from moto import mock_aws

from requests_app.aws import set_client_factory
from requests_app.models import AwsAccount
from tests.factories import portal_admin_permission
from tests.security.actions import SIGNED_IN


@pytest.fixture
def people() -> dict:
    users = get_user_model().objects
    people = {role: users.create_user(role.replace("_", "."), password=None) for role in SIGNED_IN}
    people["staff"].is_staff = True
    people["staff"].save(update_fields=["is_staff"])
    people["staff"].user_permissions.add(portal_admin_permission())
    return people


@pytest.fixture
def site(people) -> dict:
    def account(account_id, name, **flags):
        return AwsAccount.objects.create(
            account_id=account_id,
            name=name,
            provisioner_role_arn=f"arn:aws:iam::{account_id}:role/dms-access-portal-provisioner",
            external_id=f"portal-{account_id}",
            **flags,
        )

    accounts = {
        "datalake": account("111111111111", "DataLake", is_datalake=True),
        "remote": account("222222222222", "Remote", is_remote=True),
        "other_datalake": account("333333333333", "Other DataLake", is_datalake=True),
        "other_remote": account("555555555555", "Other Remote", is_remote=True),
    }
    accounts["datalake"].requesters.add(people["requester"])
    accounts["remote"].approvers.add(people["approver"])
    accounts["other_datalake"].requesters.add(people["other_requester"])
    accounts["other_remote"].approvers.add(people["other_approver"])
    return accounts


@pytest.fixture
def fake_aws(monkeypatch):
    """AWS for the actions that read it (preflight, live policies): an empty moto."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        set_client_factory(None)
        yield
    set_client_factory(None)
