"""How the steps fail: retryable for what time cures, permanent with a diagnosis otherwise."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import EndpointConnectionError

from provisioning.clients import ClientFactory, GrantClients
from provisioning.errors import PermanentAwsError, RetryableAwsError
from provisioning.steps import create_role, grant_key_policy, grant_secret_policy
from tests.provisioning.botocore_hooks import inject_error
from tests.provisioning.conftest import DATALAKE_ID, FOREIGN_KEY_STATEMENT, REMOTE_ID, ROLE_NAME

ROLE_ARN = f"arn:aws:iam::{DATALAKE_ID}:role/{ROLE_NAME}"


def test_a_principal_not_yet_visible_is_retryable_and_the_retry_succeeds(world, spec, clients):
    inject_error(
        world.base_session,
        "PutResourcePolicy",
        "MalformedPolicyDocumentException",
        "This resource policy contains an unsupported principal.",
        times=1,
    )
    with pytest.raises(RetryableAwsError) as caught:
        grant_secret_policy(spec, clients=clients)
    assert caught.value.diagnosis == "principal_not_visible"
    # GetResourcePolicy to merge, then the refused put.
    assert len(caught.value.aws_request_ids) == 2
    assert world.secret_policy() is None

    assert grant_secret_policy(spec, clients=clients).changed
    assert world.secret_policy()["Statement"][0]["Principal"] == {"AWS": ROLE_ARN}


def test_kms_refusing_a_new_role_as_principal_is_retryable(world, spec, clients):
    inject_error(
        world.base_session,
        "PutKeyPolicy",
        "MalformedPolicyDocumentException",
        "Policy contains a statement with one or more invalid principals.",
    )
    with pytest.raises(RetryableAwsError) as caught:
        grant_key_policy(spec, clients=clients)
    assert caught.value.diagnosis == "principal_not_visible"


def test_aws_unreachable_mid_step_is_retryable_not_a_botocore_error(world, spec, clients):
    def unreachable(model, **_):
        if model.name == "PutRolePolicy":
            raise EndpointConnectionError(endpoint_url="https://iam.amazonaws.com/")

    world.base_session.events.register("before-call", unreachable)
    with pytest.raises(RetryableAwsError) as caught:
        create_role(spec, clients=clients)
    assert caught.value.diagnosis == "aws_unavailable"
    assert len(caught.value.aws_request_ids) == 1  # CreateRole made it

    # The retry (a new worker, AWS reachable again) finds its half-made role and finishes it.
    world.base_session.events.unregister("before-call", unreachable)
    retried = create_role(spec, clients=GrantClients(ClientFactory(base_session=world.base_session), spec))
    assert retried.changed and retried.before["inline_policy"] is None
    assert world.admin(DATALAKE_ID, "iam").list_role_policies(RoleName=ROLE_NAME)["PolicyNames"]


def test_a_provisioner_without_put_key_policy_gets_a_diagnosis_naming_it(world, spec, clients):
    inject_error(
        world.base_session,
        "PutKeyPolicy",
        "AccessDeniedException",
        f"User: arn:aws:sts::{REMOTE_ID}:assumed-role/dms-access-portal-provisioner/portal-req-1042 is not "
        "authorized to perform: kms:PutKeyPolicy on this resource because no identity-based policy "
        "allows the kms:PutKeyPolicy action",
    )
    key_before = world.key_policy()
    with pytest.raises(PermanentAwsError) as caught:
        grant_key_policy(spec, clients=clients)
    assert caught.value.diagnosis == "provisioner_access_denied"
    assert "kms:PutKeyPolicy" in caught.value.message
    assert world.key_policy() == key_before


def test_a_key_policy_that_would_outgrow_32_kb_is_not_sent(world, spec, clients, calls):
    policy = world.key_policy()
    policy["Statement"].append(
        {
            **FOREIGN_KEY_STATEMENT,
            "Sid": "Padding",
            "Condition": {"StringEquals": {"aws:PrincipalTag/team": "x" * 32400}},
        }
    )
    world.admin(REMOTE_ID, "kms").put_key_policy(KeyId=world.key_arn, PolicyName="default", Policy=json.dumps(policy))
    with calls.phase("grant"), pytest.raises(PermanentAwsError) as caught:
        grant_key_policy(spec, clients=clients)
    assert caught.value.diagnosis == "policy_too_large"
    assert calls.writes("grant") == {}


def test_aws_refusing_the_key_policy_size_is_policy_too_large(world, spec, clients):
    inject_error(world.base_session, "PutKeyPolicy", "LimitExceededException", "The key policy is too large.")
    with pytest.raises(PermanentAwsError) as caught:
        grant_key_policy(spec, clients=clients)
    assert caught.value.diagnosis == "policy_too_large"
