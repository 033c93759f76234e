"""Reading live policies in every form AWS returns them."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from provisioning.resources import is_key_arn, parse_policy

POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


@pytest.mark.parametrize(
    "raw",
    [POLICY, json.dumps(POLICY), json.dumps(POLICY, indent=2), quote(json.dumps(POLICY))],
    ids=["dict", "json", "pretty json", "url-encoded json as IAM sends it"],
)
def test_a_policy_reads_the_same_in_every_form_aws_returns(raw):
    assert parse_policy(raw, what="policy") == POLICY


@pytest.mark.parametrize("raw", [None, ""])
def test_no_policy_is_none(raw):
    assert parse_policy(raw, what="policy") is None


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "%5B1%5D"])
def test_a_policy_that_is_not_a_json_object_is_refused(raw):
    with pytest.raises(ValueError, match="policy"):
        parse_policy(raw, what="key policy")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b", True),
        ("arn:aws:kms:eu-west-1:222222222222:alias/source-db", False),
        ("8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b", False),
        ("alias/source-db", False),
    ],
)
def test_only_a_key_arn_needs_no_lookup(value, expected):
    assert is_key_arn(value) is expected
