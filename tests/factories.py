"""Rows for tests: users, accounts, requests, decisions.

Factories write rows directly (no services, no audit events): tests use them
to set the scene and then drive the services under test.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model

from requests_app.models import AccessRequest, ApiToken, AwsAccount, Decision, RequestState

REGION = "eu-west-1"


_token_numbers = itertools.count(1)


def api_token_for(user, *, name: str | None = None, days: int = 30) -> str:
    """A fresh API token for ``user`` (a row only, like the factories: no audit event)."""
    _, token = ApiToken.objects.create(
        user=user, name=name or f"test-{next(_token_numbers)}", expiry=timedelta(days=days)
    )
    return token


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    # Service-level tests never log in; pages use force_login.
    password = "!"
    is_active = True


def portal_admin_permission():
    """The ``administer_portal`` permission that makes a portal administrator."""
    from django.contrib.auth.models import Permission

    return Permission.objects.get(content_type__app_label="requests_app", codename="administer_portal")


class StaffFactory(UserFactory):
    """A portal administrator: staff (the Django admin) with the administer_portal permission."""

    is_staff = True

    @factory.post_generation
    def portal_admin(self, create, extracted, **kwargs):
        if create and extracted is not False:
            self.user_permissions.add(portal_admin_permission())


class PlainStaffFactory(UserFactory):
    """Staff without the portal permission: the Django admin, as far as model permissions go."""

    is_staff = True


class AwsAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AwsAccount
        skip_postgeneration_save = True

    account_id = factory.Sequence(lambda n: f"{300000000000 + n:012d}")
    name = factory.Sequence(lambda n: f"Account {n}")
    provisioner_role_arn = factory.LazyAttribute(
        lambda account: f"arn:aws:iam::{account.account_id}:role/dms-access-portal-provisioner"
    )
    default_region = REGION

    @factory.post_generation
    def approvers(self, create, extracted, **kwargs):
        if create and extracted:
            self.approvers.set(extracted)

    @factory.post_generation
    def requesters(self, create, extracted, **kwargs):
        if create and extracted:
            self.requesters.set(extracted)


class DataLakeAccountFactory(AwsAccountFactory):
    is_datalake = True
    name = factory.Sequence(lambda n: f"DataLake {n}")


class RemoteAccountFactory(AwsAccountFactory):
    is_remote = True
    name = factory.Sequence(lambda n: f"Remote {n}")
    # A Remote account is registered with an external id unless an operator said otherwise.
    external_id = factory.Sequence(lambda n: f"remote-external-id-{n}")


def fake_plan(request) -> dict:
    """A stand-in plan naming what makes the request distinct (the real one needs preflight)."""
    return {
        "role_name": request.role_name,
        "endpoint_identifier": request.endpoint_identifier,
        "secret_arn": request.secret_arn,
        "kms_key_arn": request.resolved_kms_key_arn,
    }


def hash_of(plan: dict) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class AccessRequestFactory(factory.django.DjangoModelFactory):
    """A request awaiting approval whose preflight passed."""

    class Meta:
        model = AccessRequest
        skip_postgeneration_save = True

    requester = factory.SubFactory(UserFactory)
    datalake_account = factory.SubFactory(DataLakeAccountFactory)
    remote_account = factory.SubFactory(RemoteAccountFactory)
    region = REGION
    resolved_kms_key_arn = factory.LazyAttribute(
        lambda r: f"arn:aws:kms:{r.region}:{r.remote_account.account_id}:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b"
    )
    engine = "mysql"
    endpoint_identifier = factory.Sequence(lambda n: f"source-db-{n}")
    role_name = factory.LazyAttribute(lambda r: f"dms-secret-{r.endpoint_identifier}")
    justification = "Nightly replication of the orders database into the data lake."
    state = RequestState.PENDING_APPROVAL
    preflight_status = AccessRequest.PreflightStatus.PASSED
    preflight = factory.LazyAttribute(lambda r: {"ok": True, "checks": [], "diagnosis": None, "kms_key_arn": r.resolved_kms_key_arn})
    plan = factory.LazyAttribute(fake_plan)
    plan_hash = factory.LazyAttribute(lambda r: hash_of(r.plan))

    @factory.lazy_attribute_sequence
    def secret_arn(self, n):
        return f"arn:aws:secretsmanager:{self.region}:{self.remote_account.account_id}:secret:prod/db-{n}-AbC{n % 10}eF"

    @factory.post_generation
    def real_plan(self, create, extracted, **kwargs):
        """The plan the worker would compute for the row (it names the request,
        so it is built once the row has its id), unless the test gave its own."""
        if not create or self.plan != fake_plan(self):
            return
        from provisioning.documents import build_plan, plan_hash
        from provisioning.errors import InvalidInput
        from requests_app.grants import grant_spec_for

        try:
            plan = build_plan(grant_spec_for(self))
        except InvalidInput:
            return  # not a complete request (no usable key): the stand-in stays
        AccessRequest.objects.filter(pk=self.pk).update(plan=plan, plan_hash=plan_hash(plan))
        self.plan, self.plan_hash = plan, plan_hash(plan)


class DecisionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Decision

    request = factory.SubFactory(AccessRequestFactory)
    approver = factory.SubFactory(UserFactory)
    outcome = Decision.Outcome.APPROVE
    plan_hash = factory.LazyAttribute(lambda d: d.request.plan_hash)
