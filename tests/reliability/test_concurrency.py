"""Fifty grants on one secret and one key at the same moment, carried out by
two worker processes of three pool processes each against a moto server: every
grant's statement lands in both remote policies exactly once, every statement
someone else put there stays as it was, and revokes racing with grants on the
same policies take out exactly their own statements.
"""
from __future__ import annotations

import json
import time

import pytest
from django.db import transaction

from provisioning.spec import SID_PREFIX
from requests_app.audit import verify_chain
from requests_app.grants import grant_spec_for
from requests_app.models import AuditEvent, ProvisioningStep, ResourceLock
from requests_app.services import access_request_revoke
from tests.integration.outcomes import request_for, sids, wait_until_final, wait_until_settled
from tests.integration.world import FOREIGN_KEY_STATEMENT, FOREIGN_SECRET_STATEMENT, ROOT_KEY_STATEMENT
from tests.reliability.conftest import restore_remote_policies
from tests.requests_app.rows import REQUESTER, approve, user

pytestmark = pytest.mark.django_db(transaction=True)


def foreign_statements(moto_world) -> tuple[list[dict], list[dict]]:
    """The statements of the secret and key policies that no grant owns, in their order."""
    secret = [item for item in moto_world.secret_policy()["Statement"] if not _is_grant(item)]
    key = [item for item in moto_world.key_policy()["Statement"] if not _is_grant(item)]
    return secret, key


def _is_grant(statement: dict) -> bool:
    return statement.get("Sid", "").startswith(SID_PREFIX)


def most_steps_at_once(request_ids) -> int:
    """The largest number of these requests' steps that ran at the same moment."""
    moments = []
    for started, finished in ProvisioningStep.objects.filter(request_id__in=request_ids).values_list(
        "started_at", "finished_at"
    ):
        if started and finished:
            moments += [(started, 1), (finished, -1)]
    running = peak = 0
    for _, change in sorted(moments, key=lambda moment: (moment[0], moment[1])):
        running += change
        peak = max(peak, running)
    return peak


def who_worked(aws_faults, request_ids) -> tuple[int, int]:
    """(worker processes, pool processes) that made AWS calls for these requests."""
    attempts = aws_faults.attempts(request_ids)
    return len({entry["ppid"] for entry in attempts}), len({entry["pid"] for entry in attempts})


def test_fifty_grants_on_one_secret_and_key_all_keep_their_statements(moto_world, workers, aws_faults, figures):
    size = 50
    requests = [request_for(moto_world, f"fleet-{size}-{n:02d}") for n in range(size)]
    ids = [request.pk for request in requests]
    started = time.monotonic()
    # Approved together: all the tasks are sent at the same commit.
    with transaction.atomic():
        for request in requests:
            approve(request)

    settled = wait_until_settled(ids, workers, timeout=60 + 4 * size)
    seconds = time.monotonic() - started

    states = [row.state for row in settled.values()]
    expected = {grant_spec_for(request).statement_sid for request in requests}
    secret_policy, key_policy = moto_world.secret_policy(), moto_world.key_policy()
    secret_sids, key_sids = sids(secret_policy), sids(key_policy)
    lost = len(expected - set(secret_sids)) + len(expected - set(key_sids))
    worker_processes, pool_processes = who_worked(aws_faults, ids)
    figures.record(
        requests=size,
        active=states.count("active"),
        secret_policy_statements_of_these_grants=len(expected & set(secret_sids)),
        key_policy_statements_of_these_grants=len(expected & set(key_sids)),
        statements_lost=lost,
        worker_processes=worker_processes,
        pool_processes=pool_processes,
        most_steps_running_at_once=most_steps_at_once(ids),
        # AWS allows 20,480 characters of secret policy and 32 KB of key policy.
        secret_policy_characters=len(json.dumps(secret_policy)),
        key_policy_bytes=len(json.dumps(key_policy).encode()),
        seconds=round(seconds, 1),
    )
    assert states.count("active") == size, {pk: (row.state, row.diagnosis) for pk, row in settled.items()}
    assert lost == 0
    assert all(secret_sids.count(sid) == 1 and key_sids.count(sid) == 1 for sid in expected)
    assert foreign_statements(moto_world) == (
        [FOREIGN_SECRET_STATEMENT],
        [ROOT_KEY_STATEMENT, FOREIGN_KEY_STATEMENT],
    )
    # It was a race: two worker processes, more than one step at a time.
    assert worker_processes >= 2 and most_steps_at_once(ids) > 1
    # The workers serialised their merges on one lock row per shared policy.
    assert set(ResourceLock.objects.values_list("arn", flat=True)) >= {moto_world.secret_arn, moto_world.key_arn}
    assert verify_chain().ok


def test_revokes_racing_with_grants_on_one_secret_take_out_only_their_own(moto_world, workers, aws_faults, figures):
    restore_remote_policies(moto_world)  # room below AWS's policy size limits after the fifty
    first = [request_for(moto_world, f"race-old-{n}") for n in range(6)]
    with transaction.atomic():
        for request in first:
            approve(request)
    wait_until_settled([request.pk for request in first], workers)
    leaving, staying = first[:3], first[3:]
    arriving = [request_for(moto_world, f"race-new-{n}") for n in range(3)]

    # Three revokes and three grants on the same two policies, sent at one commit.
    with transaction.atomic():
        for request in leaving:
            access_request_revoke(request_id=request.pk, user=user(REQUESTER))
        for request in arriving:
            approve(request)

    for request in leaving:
        wait_until_final(request.pk, "revoked", workers)
    settled = wait_until_settled([request.pk for request in arriving], workers)

    sids_of = {request.pk: grant_spec_for(request).statement_sid for request in first + arriving}
    secret_sids, key_sids = sids(moto_world.secret_policy()), sids(moto_world.key_policy())
    kept = {sids_of[request.pk] for request in staying + arriving}
    gone = {sids_of[request.pk] for request in leaving}
    figures.record(
        grants_before=len(first),
        revoked=len(leaving),
        granted_during_the_revokes=len(arriving),
        statements_kept_per_policy=len(kept & set(secret_sids) & set(key_sids)),
        revoked_statements_left_behind=len(gone & (set(secret_sids) | set(key_sids))),
    )
    assert {row.state for row in settled.values()} == {"active"}
    assert kept <= set(secret_sids) and kept <= set(key_sids)
    assert not gone & (set(secret_sids) | set(key_sids))
    assert all(secret_sids.count(sid) == 1 and key_sids.count(sid) == 1 for sid in kept)
    assert foreign_statements(moto_world) == (
        [FOREIGN_SECRET_STATEMENT],
        [ROOT_KEY_STATEMENT, FOREIGN_KEY_STATEMENT],
    )
    assert all(moto_world.role(request.role_name) is None for request in leaving)
    assert verify_chain().ok


def test_console_edits_of_the_secret_policy_during_grants_are_counted(moto_world, workers, figures):
    """Twelve grants on one secret while its owner keeps editing the secret
    policy by hand (read, add a statement, put: what the console does, with no
    lock and no condition). Counts the statements lost on either side. A
    grant's statement that a console save dropped after the grant's own
    check is not put back by the grant; the drift check then flags it."""
    import threading

    from requests_app.services.drift import grant_check_drift

    size = 12
    requests = [request_for(moto_world, f"console-{n:02d}") for n in range(size)]
    ids = [request.pk for request in requests]
    secrets = moto_world.admin("222222222222", "secretsmanager")
    added: list[str] = []
    stop = threading.Event()

    def console() -> None:
        # At a brisk human pace, and few enough to stay under the secret policy's size limit.
        while not stop.is_set() and len(added) < 40:
            policy = json.loads(secrets.get_resource_policy(SecretId=moto_world.secret_arn)["ResourcePolicy"])
            sid = f"ConsoleEdit{len(added)}"
            policy["Statement"].append(
                {"Sid": sid, "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::333333333333:role/auditor"},
                 "Action": "secretsmanager:DescribeSecret", "Resource": "*"}
            )  # fmt: skip
            secrets.put_resource_policy(SecretId=moto_world.secret_arn, ResourcePolicy=json.dumps(policy))
            added.append(sid)
            time.sleep(0.1)

    editor = threading.Thread(target=console, daemon=True)
    editor.start()
    try:
        with transaction.atomic():
            for request in requests:
                approve(request)
        settled = wait_until_settled(ids, workers, timeout=120)
    finally:
        stop.set()
        editor.join(timeout=10)

    final = set(sids(moto_world.secret_policy()))
    expected = {grant_spec_for(request).statement_sid: request.pk for request in requests}
    lost_console = [sid for sid in added if sid not in final]
    lost_grants = [pk for sid, pk in expected.items() if sid not in final]
    states = {pk: (row.state, row.diagnosis) for pk, row in settled.items()}
    # A grant whose statement went before its verify step failed there; one that lost it later drifted.
    failed = [pk for pk in ids if states[pk][0] == "failed"]
    drifted = [
        pk for pk in lost_grants if states[pk][0] == "active" and grant_check_drift(request_id=pk).drift.get("drifted")
    ]
    merged_again = AuditEvent.objects.filter(
        request_id__in=ids, action="aws.grant_secret_policy", details__has_key="merges"
    ).count()
    figures.record(
        grants=size,
        console_edits=len(added),
        console_statements_lost=len(lost_console),
        grant_statements_lost=len(lost_grants),
        grants_failed_at_verify=len(failed),
        grants_flagged_as_drifted=len(drifted),
        grant_writes_merged_again=merged_again,
        states=sorted(set(states.values())),
    )
    # Put the policy back for the tests after this one.
    policy = moto_world.secret_policy()
    policy["Statement"] = [item for item in policy["Statement"] if not item.get("Sid", "").startswith("ConsoleEdit")]
    secrets.put_resource_policy(SecretId=moto_world.secret_arn, ResourcePolicy=json.dumps(policy))

    assert len(added) > size  # the edits really overlapped the grants
    # Whatever a console save took away from a grant is not silently missing:
    # its verify step failed, or the drift check flags it.
    assert all(states[pk][1] in ("secret_policy_denies", "policy_changed_concurrently") for pk in failed), states
    assert set(lost_grants) <= set(drifted) | set(failed)
    assert FOREIGN_SECRET_STATEMENT in moto_world.secret_policy()["Statement"]
