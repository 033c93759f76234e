"""Audit checkpoints in an S3 bucket with Object Lock.

The portal's signed checkpoints of its audit chain (requests_app) are kept
outside its database, in objects that nobody (not the portal, not an AWS
administrator) can overwrite or delete before their retention ends:
compliance-mode Object Lock. This module only moves bytes: it knows nothing
of the audit chain or of Django.
"""
from __future__ import annotations

import os
from datetime import datetime

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from provisioning.errors import PermanentAwsError

_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard"})


class CheckpointStoreError(PermanentAwsError):
    """The checkpoint bucket could not be written or read."""


def checkpoint_client(*, session: boto3.session.Session | None = None):
    """An S3 client with the process's base credentials (not a provisioner role)."""
    session = session or boto3.session.Session()
    return session.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None, config=_CONFIG)


def checkpoint_key(prefix: str, last_event_id: int, created_at: str) -> str:
    """Object keys sort by the event they anchor, so the newest is the last listed."""
    return f"{prefix}{last_event_id:020d}-{created_at}.json"


def put_checkpoint(*, client, bucket: str, key: str, body: bytes, retain_until: datetime) -> str:
    """Write ``body`` under ``key``, locked in compliance mode until ``retain_until``;
    returns the object's version id."""
    try:
        answer = client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=retain_until,
            ChecksumAlgorithm="SHA256",
            # Never replace a checkpoint that is already there.
            IfNoneMatch="*",
        )
    except (BotoCoreError, ClientError) as error:
        raise CheckpointStoreError(f"could not write checkpoint s3://{bucket}/{key}: {error}") from error
    return answer.get("VersionId", "")


def get_checkpoint(*, client, bucket: str, key: str) -> bytes:
    """The bytes of one checkpoint object."""
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as error:
        raise CheckpointStoreError(f"could not read checkpoint s3://{bucket}/{key}: {error}") from error


def latest_checkpoint_key(*, client, bucket: str, prefix: str) -> str | None:
    """The key of the newest checkpoint under ``prefix`` (by the event it anchors), or None."""
    latest = None
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith(".json") and (latest is None or item["Key"] > latest):
                    latest = item["Key"]
    except (BotoCoreError, ClientError) as error:
        raise CheckpointStoreError(f"could not list checkpoints in s3://{bucket}/{prefix}: {error}") from error
    return latest


def bucket_locks_objects(*, client, bucket: str) -> bool:
    """Whether ``bucket`` has Object Lock enabled (checked once when writing starts)."""
    try:
        configuration = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
            return False
        raise CheckpointStoreError(f"could not read the Object Lock configuration of {bucket}: {error}") from error
    except BotoCoreError as error:
        raise CheckpointStoreError(f"could not read the Object Lock configuration of {bucket}: {error}") from error
    return configuration.get("ObjectLockEnabled") == "Enabled"
