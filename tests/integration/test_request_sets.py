"""A multi-grant request carried out by real Celery workers against a moto server.

Twelve grants on three secrets under two keys, approved once: the workers run
the grants side by side, each on its own, and the statements of the grants
on one secret or key reach AWS in one put.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest

from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.models import AuditEvent, ProvisioningStep
from requests_app.services import request_set_approve, request_set_revoke, request_set_submit
from requests_app.set_plans import awaiting_grants, set_plan_hash
from tests.integration.outcomes import sids, steps, wait_until_final, wait_until_settled
from tests.integration.world import FOREIGN_SECRET_STATEMENT, ROOT_KEY_STATEMENT, SECRET_VALUE
from tests.requests_app.rows import APPROVER, DATALAKE_ID, REMOTE_ID, REQUESTER, portal_accounts, user

pytestmark = pytest.mark.django_db(transaction=True)


def _more_secrets(world) -> list[str]:
    """Besides the runbook's secret: one more under its key, one under a second key."""
    kms = world.admin(REMOTE_ID, "kms")
    policy = {"Version": "2012-10-17", "Statement": [ROOT_KEY_STATEMENT]}
    second_key = kms.create_key(Description="reporting credentials", Policy=json.dumps(policy))["KeyMetadata"]["Arn"]
    secrets = world.admin(REMOTE_ID, "secretsmanager")
    return [
        world.secret_arn,
        secrets.create_secret(Name="prod/orders-db/credentials", KmsKeyId=world.key_arn,
                              SecretString=json.dumps(SECRET_VALUE))["ARN"],
        secrets.create_secret(Name="prod/reporting-db/credentials", KmsKeyId=second_key,
                              SecretString=json.dumps(SECRET_VALUE))["ARN"],
    ]  # fmt: skip


def _calls(event_name: str, *, after: int = 0) -> int:
    return sum(
        1
        for details in AuditEvent.objects.filter(id__gt=after).values_list("details", flat=True)
        for call in details.get("aws_calls", [])
        if call["event_name"] == event_name
    )


def test_twelve_grants_approved_once_are_provisioned_with_one_write_per_secret_and_key(moto_world, workers):
    secrets = _more_secrets(moto_world)
    portal_accounts()
    request_set = request_set_submit(
        requester=user(REQUESTER), datalake_account_id=DATALAKE_ID, justification="Move three databases.",
        grants=[{"secret_arn": secrets[n % 3], "engine": "mysql", "endpoint_identifier": f"fleet-{n}"} for n in range(12)],
    )  # fmt: skip
    awaiting = awaiting_grants(request_set)
    assert [grant.preflight_status for grant in awaiting] == ["passed"] * 12
    request_set_approve(set_id=request_set.pk, user=user(APPROVER), plan_hash=set_plan_hash(awaiting))

    settled = wait_until_settled([grant.pk for grant in awaiting], workers, timeout=120)

    assert Counter(row.state for row in settled.values()) == {"active": 12}, {
        row.pk: [(s.name, s.status, s.error) for s in steps(row).values()] for row in settled.values() if row.state != "active"
    }
    # One put per secret and per key. A step retried (its lease lapsed under
    # load, or AWS asked to retry) may find its put already made by its
    # earlier attempt, which was not recorded: then there are fewer, never more.
    retried = ProvisioningStep.objects.filter(request__in=settled, attempts__gt=1).exists()
    puts = (_calls("PutResourcePolicy"), _calls("PutKeyPolicy"))
    if retried:
        assert puts[0] <= 3 and puts[1] <= 2, puts
    else:
        assert puts == (3, 2)
    secretsmanager = moto_world.admin(REMOTE_ID, "secretsmanager")
    for secret_arn in secrets:
        policy = json.loads(secretsmanager.get_resource_policy(SecretId=secret_arn)["ResourcePolicy"])
        expected = {grant_spec_for(row).statement_sid for row in settled.values() if row.secret_arn == secret_arn}
        assert expected <= set(sids(policy)) and len(expected) == 4
    assert FOREIGN_SECRET_STATEMENT in json.loads(
        secretsmanager.get_resource_policy(SecretId=secrets[0])["ResourcePolicy"]
    )["Statement"]

    # Revoked together, the twelve leave with one write per secret and per key: the
    # runbook's secret keeps its foreign statement (a put), the two others are left
    # with nothing (their policies deleted).
    before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    request_set_revoke(set_id=request_set.pk, user=user(REQUESTER))
    revoked = {pk: wait_until_final(pk, "revoked", workers, timeout=120) for pk in settled}
    retried = ProvisioningStep.objects.filter(request__in=revoked, phase="revoke", attempts__gt=1).exists()
    writes = tuple(_calls(name, after=before) for name in ("PutResourcePolicy", "DeleteResourcePolicy", "PutKeyPolicy"))
    if retried:
        assert all(count <= most for count, most in zip(writes, (1, 2, 2))), writes
    else:
        assert writes == (1, 2, 2)
    remaining = json.loads(secretsmanager.get_resource_policy(SecretId=secrets[0])["ResourcePolicy"])
    assert remaining["Statement"] == [FOREIGN_SECRET_STATEMENT]
    assert all("ResourcePolicy" not in secretsmanager.get_resource_policy(SecretId=arn) for arn in secrets[1:])
    assert verify_chain().ok
