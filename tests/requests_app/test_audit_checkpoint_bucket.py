"""Audit checkpoints in an S3 bucket with Object Lock (moto), and verifying against them."""
from __future__ import annotations

import io
import json

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from requests_app.models import AuditChainState, AuditEvent
from requests_app.services import access_request_cancel
from requests_app.services.audit_chain import audit_chain_verify

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the tampering speaks Postgres")

BUCKET = "portal-audit-checkpoints"


@pytest.fixture
def bucket(aws, settings):
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}, ObjectLockEnabledForBucket=True
    )
    settings.AUDIT_CHECKPOINT_BUCKET = BUCKET
    settings.AUDIT_CHECKPOINT_PREFIX = "checkpoints/"
    return s3


@pytest.fixture
def trail(cast, enqueued):
    for _ in range(4):
        access_request_cancel(request_id=cast.request().pk, user=cast.requester)
    return list(AuditEvent.objects.order_by("id"))


def _checkpoint_now() -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("write_audit_checkpoint", stdout=out, stderr=err)
    return err.getvalue().strip().removeprefix("Stored as ")


def test_checkpoints_are_stored_locked_and_cannot_be_replaced(bucket, trail):
    address = _checkpoint_now()
    assert address.startswith(f"s3://{BUCKET}/checkpoints/")
    key = address.removeprefix(f"s3://{BUCKET}/")
    head = bucket.head_object(Bucket=BUCKET, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    body = json.loads(bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert (body["last_event_id"], body["count"]) == (trail[-1].pk, 4)
    with pytest.raises(bucket.exceptions.ClientError, match="AccessDenied"):
        bucket.delete_object(Bucket=BUCKET, Key=key, VersionId=head["VersionId"])
    call_command("verify_audit_chain", "--checkpoint", address, stdout=io.StringIO())


def test_the_periodic_run_stores_its_checkpoint_after_the_commit(bucket, trail, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        report, checkpoint = audit_chain_verify()
    [stored] = bucket.list_objects_v2(Bucket=BUCKET, Prefix="checkpoints/")["Contents"]
    assert stored["Key"].startswith(f"checkpoints/{checkpoint.last_event_id:020d}-")


def test_the_buckets_newest_checkpoint_finds_a_cut_trail_whatever_the_database_says(bucket, trail, cast):
    _checkpoint_now()
    access_request_cancel(request_id=cast.request().pk, user=cast.requester)
    newest = _checkpoint_now()
    # The operator cuts the tail and wipes the portal's own record of the checkpoints.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE requests_app_auditevent DISABLE TRIGGER USER")
        cursor.execute("DELETE FROM requests_app_auditevent WHERE id > %s", [trail[-1].pk])
        cursor.execute("ALTER TABLE requests_app_auditevent ENABLE TRIGGER USER")
    AuditChainState.objects.all().delete()

    for args in ([], ["--since-checkpoint"], ["--checkpoint", newest]):
        with pytest.raises(CommandError) as broken:
            call_command("verify_audit_chain", *args)
        assert "event" in str(broken.value) and broken.value.returncode == 1, args
