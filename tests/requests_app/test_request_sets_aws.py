"""One request for many databases, against the runbook's world in moto.

Forty grants across five secrets under two keys are filed as one request,
approved once, and provisioned as a set: each grant runs and is recorded on
its own, and the statements of the grants on one secret or key go into AWS
in one write. A failed grant leaves the others active and is retried alone;
revoke takes one grant or the whole set.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest

from provisioning.ownership import statement_sid
from provisioning.statements import statements_of
from requests_app.models import AccessRequest, AuditEvent, RequestState
from requests_app.services import (
    access_request_retry,
    access_request_revoke,
    request_set_approve,
    request_set_revoke,
    request_set_submit,
)
from requests_app.set_plans import awaiting_grants, set_plan, set_plan_hash
from requests_app.audit import verify_chain
from requests_app.errors import IdempotencyConflict
from tests.aws_world import DATALAKE_ID, REMOTE_ID, SECRET_VALUE
from tests.requests_app.test_apply_plan_aws import drive  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

SECRETS, KEYS, GRANTS = 5, 2, 40


@pytest.fixture
def databases(portal_aws):
    """Five secrets of the Remote account, the first three under one key, the other two under another."""
    kms = portal_aws.admin(REMOTE_ID, "kms")
    secretsmanager = portal_aws.admin(REMOTE_ID, "secretsmanager")
    keys = [kms.create_key(Description=f"databases {n}")["KeyMetadata"]["Arn"] for n in range(KEYS)]
    return [
        (
            secretsmanager.create_secret(
                Name=f"prod/db-{n}/credentials", KmsKeyId=keys[0 if n < 3 else 1], SecretString=json.dumps(SECRET_VALUE)
            )["ARN"],
            keys[0 if n < 3 else 1],
        )
        for n in range(SECRETS)
    ]


def _file(cast, databases, count=GRANTS, capture=None):
    grants = [
        {"secret_arn": databases[n % SECRETS][0], "engine": ("mysql", "postgres", "oracle")[n % 3],
         "endpoint_identifier": f"lake-db-{n}"}
        for n in range(count)
    ]  # fmt: skip
    with capture(execute=True):
        return request_set_submit(
            requester=cast.requester, datalake_account_id=DATALAKE_ID, justification="Migrate the fleet.", grants=grants
        )


def _approve(cast, request_set, capture):
    awaiting = awaiting_grants(request_set)
    with capture(execute=True):
        request_set_approve(set_id=request_set.pk, user=cast.approver, plan_hash=set_plan_hash(awaiting))


def _provision(grants, drive, phase="grant"):
    """Run each grant's task, round after round, as the workers would until none has work left."""
    for _ in range(4):
        for grant in grants:
            drive(grant, phase)
    return [AccessRequest.objects.get(pk=grant.pk) for grant in grants]


def _calls(event_name: str, *, after: int = 0) -> int:
    return sum(
        1
        for details in AuditEvent.objects.filter(id__gt=after).values_list("details", flat=True)
        for call in details.get("aws_calls", [])
        if call["event_name"] == event_name
    )


def _sids(policy) -> set[str]:
    return {statement.get("Sid") for statement in statements_of(policy)}


def _secret_policy(world, arn):
    found = world.admin(REMOTE_ID, "secretsmanager").get_resource_policy(SecretId=arn).get("ResourcePolicy")
    return json.loads(found) if found else None


def _key_policy(world, arn):
    return json.loads(world.admin(REMOTE_ID, "kms").get_key_policy(KeyId=arn, PolicyName="default")["Policy"])


def test_forty_grants_on_five_secrets_and_two_keys_are_approved_once_and_written_once_per_policy(
    cast, portal_aws, databases, drive, django_capture_on_commit_callbacks, settings  # noqa: F811
):
    request_set = _file(cast, databases, capture=django_capture_on_commit_callbacks)
    grants = awaiting_grants(request_set)
    assert len(grants) == GRANTS and all(g.preflight_status == "passed" for g in grants)
    plan = set_plan(grants)
    assert [len(secret["statements"]) for secret in plan["secrets"]] == [GRANTS // SECRETS] * SECRETS
    assert sorted(len(key["statements"]) for key in plan["keys"]) == [16, 24]

    _approve(cast, request_set, django_capture_on_commit_callbacks)
    grants = _provision(list(request_set.grants.order_by("pk")), drive)
    assert Counter(g.state for g in grants) == {RequestState.ACTIVE: GRANTS}

    # One write per secret and one per key, whichever grant made it.
    assert _calls("PutResourcePolicy") == SECRETS
    assert _calls("PutKeyPolicy") == KEYS
    for secret_arn, _ in databases:
        on_secret = [g for g in grants if g.secret_arn == secret_arn]
        expected = {statement_sid(settings.PORTAL_INSTANCE_ID, str(g.pk)) for g in on_secret}
        assert _sids(_secret_policy(portal_aws, secret_arn)) == expected
    for key_arn in {key for _, key in databases}:
        on_key = [g for g in grants if g.resolved_kms_key_arn == key_arn]
        assert {statement_sid(settings.PORTAL_INSTANCE_ID, str(g.pk)) for g in on_key} <= _sids(_key_policy(portal_aws, key_arn))
    # Each grant's trail has its own statements written, by its own step or with another grant's.
    for grant in grants:
        actions = Counter(AuditEvent.objects.filter(request=grant).values_list("action", flat=True))
        assert actions["aws.grant_secret_policy"] == 1 and actions["aws.grant_key_policy"] == 1, actions
        assert actions["request.active"] == 1

    # Revoking the set removes every grant's statements in one write per secret and per key too.
    before_revoke = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    with django_capture_on_commit_callbacks(execute=True):
        request_set_revoke(set_id=request_set.pk, user=cast.requester)
    grants = _provision(grants, drive, "revoke")
    assert Counter(g.state for g in grants) == {RequestState.REVOKED: GRANTS}
    assert _calls("DeleteResourcePolicy", after=before_revoke) == SECRETS  # nothing else was in them
    assert _calls("PutResourcePolicy", after=before_revoke) == 0
    assert _calls("PutKeyPolicy", after=before_revoke) == KEYS
    for secret_arn, key_arn in databases:
        assert _secret_policy(portal_aws, secret_arn) is None
        assert not any(sid.startswith("DmsAccessPortal") for sid in _sids(_key_policy(portal_aws, key_arn)))
    for grant in grants:
        actions = Counter(AuditEvent.objects.filter(request=grant, id__gt=before_revoke).values_list("action", flat=True))
        assert actions["aws.revoke_secret_policy"] == 1 and actions["aws.revoke_key_policy"] == 1, actions
    assert verify_chain().ok


def test_a_failed_grant_leaves_the_others_active_and_is_retried_alone_and_revoke_takes_one_or_all(
    cast, portal_aws, databases, drive, django_capture_on_commit_callbacks, settings  # noqa: F811
):
    request_set = _file(cast, databases, count=6, capture=django_capture_on_commit_callbacks)
    _approve(cast, request_set, django_capture_on_commit_callbacks)
    # Between the approval and the write, someone else's endpoint takes one
    # grant's identifier: that grant fails at create_endpoint.
    dms = portal_aws.admin(DATALAKE_ID, "dms")
    taken = dms.create_endpoint(EndpointIdentifier="lake-db-2", EndpointType="source", EngineName="mysql",
                                ServerName="elsewhere", Port=3306)["Endpoint"]["EndpointArn"]  # fmt: skip
    grants = _provision(list(request_set.grants.order_by("pk")), drive)
    states = {g.endpoint_identifier: g.state for g in grants}
    assert states.pop("lake-db-2") == RequestState.FAILED
    assert set(states.values()) == {RequestState.ACTIVE}
    failed = next(g for g in grants if g.endpoint_identifier == "lake-db-2")
    assert failed.steps.get(name="create_endpoint").status == "failed"

    dms.delete_endpoint(EndpointArn=taken)
    with django_capture_on_commit_callbacks(execute=True):
        access_request_retry(request_id=failed.pk, user=cast.requester)
    assert drive(failed).state == RequestState.ACTIVE

    # One grant revoked alone: its statement goes, its neighbour's on the same secret stays.
    one, neighbour = grants[0], grants[5]
    assert one.secret_arn == neighbour.secret_arn
    with django_capture_on_commit_callbacks(execute=True):
        access_request_revoke(request_id=one.pk, user=cast.requester)
    assert drive(one, "revoke").state == RequestState.REVOKED
    sids = _sids(_secret_policy(portal_aws, one.secret_arn))
    assert statement_sid(settings.PORTAL_INSTANCE_ID, str(one.pk)) not in sids
    assert statement_sid(settings.PORTAL_INSTANCE_ID, str(neighbour.pk)) in sids

    with django_capture_on_commit_callbacks(execute=True):
        request_set_revoke(set_id=request_set.pk, user=cast.approver)
    grants = _provision(grants, drive, "revoke")
    assert {g.state for g in grants} == {RequestState.REVOKED}
    for secret_arn, _ in databases:
        assert not any(sid.startswith("DmsAccessPortal") for sid in _sids(_secret_policy(portal_aws, secret_arn)))
    assert verify_chain().ok


def test_the_same_idempotency_key_files_one_set_and_another_body_is_refused(
    cast, portal_aws, databases, django_capture_on_commit_callbacks
):
    grants = [{"secret_arn": databases[0][0], "engine": "mysql", "endpoint_identifier": "retried-0"}]
    fields = {"requester": cast.requester, "datalake_account_id": DATALAKE_ID, "justification": "Pipeline run 7."}
    with django_capture_on_commit_callbacks(execute=True):
        first = request_set_submit(grants=grants, idempotency_key="pipeline-run-7", **fields)
        again = request_set_submit(grants=[dict(grant) for grant in grants], idempotency_key="pipeline-run-7", **fields)
    assert again.pk == first.pk and first.grants.count() == 1
    other = [{**grants[0], "endpoint_identifier": "retried-1"}]
    with pytest.raises(IdempotencyConflict, match=f"request #{first.pk}"):
        request_set_submit(grants=other, idempotency_key="pipeline-run-7", **fields)
    assert AccessRequest.objects.filter(endpoint_identifier="retried-1").count() == 0


def test_the_requester_is_told_once_when_every_grant_of_the_set_is_provisioned(
    cast, portal_aws, databases, drive, django_capture_on_commit_callbacks, mailoutbox  # noqa: F811
):
    request_set = _file(cast, databases, count=4, capture=django_capture_on_commit_callbacks)
    _approve(cast, request_set, django_capture_on_commit_callbacks)
    mailoutbox.clear()
    grants = _provision(list(request_set.grants.order_by("pk")), drive)
    assert {grant.state for grant in grants} == {RequestState.ACTIVE}
    [told] = mailoutbox
    assert told.to == [cast.requester.email] and f"Request set #{request_set.pk} is active (4 grants)" in told.subject
    assert all(f"Request #{grant.pk}:" in told.body for grant in grants)


def test_a_grants_statement_written_by_another_is_recorded_after_that_write_commits(
    cast, portal_aws, databases, drive, django_capture_on_commit_callbacks  # noqa: F811
):
    """The event in the companion's trail is not inserted inside the writer's
    record (which holds the audit trail's lock): there it would wait for the
    companion's own record, holding its row and waiting for the trail."""
    from requests_app.workflow import runner

    request_set = _file(cast, databases, count=2 * SECRETS, capture=django_capture_on_commit_callbacks)
    _approve(cast, request_set, django_capture_on_commit_callbacks)
    first, second = [grant for grant in request_set.grants.order_by("pk") if grant.secret_arn == databases[0][0]]
    for grant in request_set.grants.order_by("pk"):
        drive(grant)  # each stops before its policy writes once its role is made, until the last one's is
    carried = AuditEvent.objects.filter(request=first, action="aws.grant_secret_policy")
    assert not carried.exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert runner.run_step(second.pk, "grant") == "grant_secret_policy"
    assert not carried.exists() and callbacks
    for callback in callbacks:
        callback()
    assert carried.get().details["written_with_request"] == second.pk
