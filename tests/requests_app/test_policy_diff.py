"""The before/after of the two Remote policies, as the detail page shows them."""
from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from provisioning.errors import RetryableAwsError
from provisioning.statements import merge_statement
from requests_app.models import AccessRequest, ProvisioningStep
from requests_app.web.policy_diff import policy_diffs_for, unified_lines
from tests.aws_world import REMOTE_ID
from tests.requests_app.page_rows import make_accounts, make_request, make_users

pytestmark = pytest.mark.django_db

AUDITORS = {
    "Sid": "AuditorsMayDescribe",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::333333333333:role/auditor"},
    "Action": "secretsmanager:DescribeSecret",
    "Resource": "*",
}


def _request(portal_aws, **fields) -> AccessRequest:
    users = make_users()
    request = make_request(users["requester"], make_accounts(users), **fields)
    AccessRequest.objects.filter(pk=request.pk).update(
        secret_arn=portal_aws.secret_arn, resolved_kms_key_arn=portal_aws.key_arn
    )
    request = AccessRequest.objects.get(pk=request.pk)
    request.users = users
    return request


def _kinds(lines, kind):
    return [line.text for line in lines if line.kind == kind]


def test_before_approval_the_diff_is_against_the_live_policies(portal_aws):
    portal_aws.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=portal_aws.secret_arn, ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [AUDITORS]})
    )
    request = _request(portal_aws)
    secret, key = policy_diffs_for(request)

    assert secret.source.startswith("Before: the live document")
    added = "\n".join(_kinds(secret.lines, "add"))
    assert request.plan["secret_policy_statement"]["Sid"] in added
    assert "AuditorsMayDescribe" not in added and not _kinds(secret.lines, "del")  # the foreign statement stays
    assert any("AuditorsMayDescribe" in text for text in _kinds(secret.lines, "ctx"))
    # The key's default policy (root statement) is kept, the portal's statement added.
    assert request.plan["key_policy_statement"]["Sid"] in "\n".join(_kinds(key.lines, "add"))
    assert not _kinds(key.lines, "del")


def test_after_the_grant_the_diff_is_what_the_step_recorded(portal_aws):
    request = _request(portal_aws, state=AccessRequest.State.ACTIVE, with_steps=True)
    recorded = {"Version": "2012-10-17", "Statement": [AUDITORS]}
    request.steps.filter(name="grant_secret_policy").update(before=recorded, finished_at=timezone.now())
    # AWS now holds something else: the page must not show that as "before".
    portal_aws.admin(REMOTE_ID, "secretsmanager").put_resource_policy(
        SecretId=portal_aws.secret_arn, ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": []})
    )
    request = AccessRequest.objects.prefetch_related("steps").get(pk=request.pk)
    secret, _ = policy_diffs_for(request)
    assert "right before writing" in secret.source
    expected = unified_lines(recorded, merge_statement(recorded, request.plan["secret_policy_statement"]),
                             name="Secret resource policy")
    assert [line.text for line in secret.lines] == [line.text for line in expected]


def test_when_aws_cannot_be_read_the_page_says_so_and_still_shows_the_statement(portal_aws, monkeypatch):
    request = _request(portal_aws)

    def unreachable(*args, **kwargs):
        raise RetryableAwsError("sts:AssumeRole could not reach AWS", diagnosis="aws_unavailable")

    monkeypatch.setattr("requests_app.web.policy_diff.read_live_policies", unreachable)
    client = Client()
    client.force_login(request.users["approver"])
    response = client.get(reverse("web:request_policies", args=[request.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "AWS could not be read: sts:AssumeRole could not reach AWS" in body
    assert request.plan["secret_policy_statement"]["Sid"] in body


def test_removed_lines_are_marked_for_the_reader():
    before = {"Version": "2012-10-17", "Statement": [{"Sid": "Old", "Effect": "Allow"}]}
    after = {"Version": "2012-10-17", "Statement": [{"Sid": "New", "Effect": "Allow"}]}
    lines = unified_lines(before, after, name="p")
    assert any('"Sid": "Old"' in text for text in _kinds(lines, "del"))
    assert any('"Sid": "New"' in text for text in _kinds(lines, "add"))
    assert [line.kind for line in lines[:3]] == ["file", "file", "hunk"]
