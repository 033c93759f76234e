"""No secret value ever lands in the database or in a log.

With the secret shape check on, the portal reads the secret's value twice
per request: at filing (in the web process) and in the worker's preflight.
After a grant, a revoke and a refused filing of a secret of the wrong shape,
a dump of the database, the answers of the pages and the API, and every log
line of the run (every worker and beat of this package, logging at DEBUG,
and this process's own) are searched for the values the secrets hold.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess

import pytest
from django.test import Client
from rest_framework.test import APIClient

from requests_app.models import AccessRequest
from requests_app.services import access_request_revoke, access_request_submit
from tests.live_system import test_database_url as database_url
from tests.integration.outcomes import new_request, wait_until_final
from tests.requests_app.rows import DATALAKE_ID, REMOTE_ID, REQUESTER, approve, portal_accounts, user

pytestmark = pytest.mark.django_db(transaction=True)

# A secret DMS could not use: no host, and a port that is not a number.
WRONG_SHAPE = {"username": "legacy_app", "password": "Wr0ng-Shape-Pa55word", "port": "three-three-oh-six"}


def secret_values(moto_world, *secret_ids) -> set[str]:
    """Every string value (and the whole text) the secrets hold, as AWS stores them."""
    values = set()
    secrets = moto_world.admin(REMOTE_ID, "secretsmanager")
    for secret_id in secret_ids:
        text = secrets.get_secret_value(SecretId=secret_id)["SecretString"]
        values.add(text)
        values.update(str(value) for value in json.loads(text).values() if len(str(value)) >= 8)
    return values


def database_dump() -> str:
    dump = subprocess.run(
        ["pg_dump", "--data-only", "--dbname", database_url()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dump.stdout


def found_in(text: str, values: set[str]) -> list[str]:
    return sorted(value for value in values if value in text)


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump to dump the database")
def test_no_secret_value_reaches_the_database_pages_api_or_logs(
    moto_world, workers, aws_faults, worker_log_dir, caplog, capfd, figures
):
    caplog.set_level(logging.DEBUG)
    _, remote = portal_accounts()
    remote.allow_secret_shape_check = True
    remote.save(update_fields=["allow_secret_shape_check"])
    wrong_arn = (
        moto_world.admin(REMOTE_ID, "secretsmanager")
        .create_secret(
            Name="prod/legacy-app/credentials", KmsKeyId=moto_world.key_arn, SecretString=json.dumps(WRONG_SHAPE)
        )["ARN"]
    )
    values = secret_values(moto_world, moto_world.secret_arn, wrong_arn)

    granted = new_request(moto_world, "shape-checked")
    refused = access_request_submit(
        requester=user(REQUESTER),
        datalake_account_id=DATALAKE_ID,
        secret_arn=wrong_arn,
        kms_key_arn=moto_world.key_arn,
        engine="mysql",
        endpoint_identifier="wrong-shape",
        justification="the legacy application's database",
    )
    approve(granted)
    wait_until_final(granted.pk, "active", workers)
    access_request_revoke(request_id=granted.pk, user=user(REQUESTER))
    granted = wait_until_final(granted.pk, "revoked", workers)
    refused = AccessRequest.objects.get(pk=refused.pk)

    requester = user(REQUESTER)
    browser, api = Client(), APIClient()
    browser.force_login(requester)
    api.force_authenticate(requester)
    answers = "".join(
        response.content.decode()
        for request in (granted, refused)
        for response in (
            browser.get(f"/requests/{request.pk}/"),
            api.get(f"/api/v1/requests/{request.pk}/"),
            api.get(f"/api/v1/requests/{request.pk}/plan/"),
        )
    ) + api.get("/api/v1/audit-events/?page_size=500").content.decode()
    dump = database_dump()
    worker_logs = "".join(path.read_text(errors="replace") for path in sorted(worker_log_dir.glob("*.log")))
    own_logs = "\n".join(
        record.getMessage() + (record.exc_text or "") + json.dumps(vars(record), default=str)
        for record in caplog.records
    )
    captured = capfd.readouterr()
    own_output = captured.out + captured.err

    figures.record(
        secret_values_searched=len(values),
        database_dump_bytes=len(dump),
        worker_and_beat_log_bytes=len(worker_logs),
        log_records_of_this_process=len(caplog.records),
        debug_records_in_worker_logs=worker_logs.count('"level": "DEBUG"'),
        found_in_database=found_in(dump, values),
        found_in_pages_and_api=found_in(answers, values),
        found_in_logs=found_in(worker_logs + own_logs + own_output, values),
    )
    # The check really ran, both times, and kept the key names only.
    assert granted.preflight["secret_keys"] == ["host", "password", "port", "username"]
    assert (refused.preflight_status, refused.diagnosis) == ("failed", "secret_shape_invalid")
    assert "the key(s) host" in json.dumps(refused.preflight)
    # ...in this process at filing and again in the worker's preflight.
    assert "secretsmanager:GetSecretValue" in {entry["op"] for entry in aws_faults.attempts([granted.pk])}
    assert found_in(dump, values) == []
    assert found_in(answers, values) == []
    assert found_in(worker_logs, values) == []
    assert found_in(own_logs + own_output, values) == []
