"""No secret value or external id ever lands in the database or in a log.

With the secret shape check on, the portal reads the secret's value twice
per request: at filing (in the web process) and in the worker's preflight.
After a grant, a revoke and a refused filing of a secret of the wrong shape,
a dump of the database, the answers of the pages and the API, and every log
line of the run (every worker and beat of this package, logging at DEBUG,
and this process's own) are searched for the values the secrets hold.
Likewise for the accounts' external ids, after a registration, a grant, a
revoke, every export and every page, answer and notification.
"""
from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from requests_app.export import FORMATS
from requests_app.models import AccessRequest, AuditEvent, AwsAccount
from requests_app.services import (
    access_request_revoke,
    access_request_submit,
    account_external_id_set,
    account_members_set,
    account_register,
)
from tests.live_system import test_database_url as database_url
from tests.integration.outcomes import new_request, wait_until_final
from tests.requests_app.rows import APPROVER, DATALAKE_ID, REMOTE_ID, REQUESTER, approve, portal_accounts, user

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


# --- the external ids -----------------------------------------------------------

DATALAKE_EXTERNAL_ID = "dl-ExtId-7f3a9c2e51b84d06"
REMOTE_EXTERNAL_ID = "rm-ExtId-c41d8e0b9a6f2537"


def _text(response) -> str:
    body = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
    return body.decode(errors="replace")


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump to dump the database")
def test_no_external_id_reaches_the_database_pages_api_exports_notifications_or_logs(
    moto_world, workers, worker_log_dir, caplog, capfd, mailoutbox, tmp_path, figures, django_user_model
):
    caplog.set_level(logging.DEBUG)
    values = {DATALAKE_EXTERNAL_ID, REMOTE_EXTERNAL_ID}
    admin = django_user_model.objects.create_user(
        "root.admin", email="root.admin@example.com", is_staff=True, is_superuser=True
    )
    for name in (REQUESTER, APPROVER):
        person = user(name)
        person.email = f"{name}@example.com"
        person.save(update_fields=["email"])
    # Registered through the service, as an operator would, with known values.
    account_register(
        actor=admin, account_id=DATALAKE_ID, name="DataLake", is_datalake=True, is_remote=False,
        provisioner_role_arn=f"arn:aws:iam::{DATALAKE_ID}:role/dms-access-portal-provisioner", external_id=DATALAKE_EXTERNAL_ID,
        requesters=[user(REQUESTER).username],
    )
    account_register(
        actor=admin, account_id=REMOTE_ID, name="Remote", is_datalake=False, is_remote=True,
        provisioner_role_arn=f"arn:aws:iam::{REMOTE_ID}:role/dms-access-portal-provisioner", external_id=REMOTE_EXTERNAL_ID,
        approvers=[user(APPROVER).username],
    )
    # A change of members and of the external id itself, each audited and (members) notified.
    account_members_set(actor=admin, account_id=REMOTE_ID, approvers=[APPROVER, "root.admin"])
    account_external_id_set(actor=admin, account_id=REMOTE_ID, external_id=REMOTE_EXTERNAL_ID)

    granted = new_request(moto_world, "external-id-kept")
    approve(granted)
    wait_until_final(granted.pk, "active", workers)
    access_request_revoke(request_id=granted.pk, user=user(REQUESTER))
    granted = wait_until_final(granted.pk, "revoked", workers)

    answers = []
    for viewer in (user(REQUESTER), user(APPROVER), admin):
        browser, api = Client(), APIClient()
        browser.force_login(viewer)
        api.force_authenticate(viewer)
        pages = [
            "/", "/requests/", f"/requests/{granted.pk}/", f"/requests/{granted.pk}/live/",
            f"/requests/{granted.pk}/policies/", "/approvals/", "/audit/", "/accounts/",
            "/audit/export.csv", "/audit/export.jsonl",
            *[f"/requests/{granted.pk}/export/{fmt}/" for fmt in FORMATS],
        ]
        if viewer is admin:
            account = AwsAccount.objects.get(account_id=REMOTE_ID)
            pages += [
                "/admin/requests_app/awsaccount/", f"/admin/requests_app/awsaccount/{account.pk}/change/",
                "/admin/requests_app/auditevent/", "/admin/requests_app/accessrequest/",
            ] + [f"/admin/requests_app/auditevent/{pk}/change/" for pk in AuditEvent.objects.values_list("pk", flat=True)]
        apis = [
            "/api/v1/accounts/", "/api/v1/requests/", f"/api/v1/requests/{granted.pk}/",
            f"/api/v1/requests/{granted.pk}/plan/", "/api/v1/audit-events/?page_size=500",
            *[f"/api/v1/requests/{granted.pk}/export/?format={fmt}" for fmt in FORMATS],
        ]
        for path in pages:
            response = browser.get(path)
            # 403: the live Remote policies are not the requester's to see.
            assert response.status_code in (200, 403, 404), (path, response.status_code)
            answers.append(_text(response))
        for path in apis:
            response = api.get(path)
            assert response.status_code in (200, 404), (path, response.status_code)
            answers.append(_text(response))
    exported = io.StringIO()
    for fmt in FORMATS:
        call_command("export_grant", str(granted.pk), "--format", fmt, "--output", str(tmp_path / fmt), stdout=exported)
    exports = exported.getvalue() + "".join(
        path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file()
    )
    notifications = "".join(f"{m.subject}\n{m.body}\n{m.to}" for m in mailoutbox)
    dump = database_dump()
    worker_logs = "".join(path.read_text(errors="replace") for path in sorted(worker_log_dir.glob("*.log")))
    own_logs = "\n".join(
        record.getMessage() + (record.exc_text or "") + json.dumps(vars(record), default=str)
        for record in caplog.records
    )
    captured = capfd.readouterr()
    everything_said = "".join(answers)

    figures.record(
        external_ids_searched=len(values),
        answers_searched=len(answers),
        database_dump_bytes=len(dump),
        found_in_database=found_in(dump, values),
        found_in_pages_api_and_exports=found_in(everything_said + exports, values),
        found_in_notifications=found_in(notifications, values),
        found_in_logs=found_in(worker_logs + own_logs + captured.out + captured.err, values),
    )
    assert mailoutbox, "the members change was notified"
    assert AuditEvent.objects.filter(action="account.external_id_changed").exists()
    assert found_in(dump, values) == []
    assert found_in(everything_said, values) == []
    assert found_in(exports, values) == []
    assert found_in(notifications, values) == []
    assert found_in(worker_logs, values) == []
    assert found_in(own_logs + captured.out + captured.err, values) == []
    # ...and yet the portal holds them, for the workers.
    assert AwsAccount.objects.get(account_id=REMOTE_ID).external_id == REMOTE_EXTERNAL_ID
