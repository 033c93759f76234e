"""The demo world: what quickstart seeds is the runbook's, and the portal can
take the runbook's request through it from filing to active."""
from __future__ import annotations

import io
import json
import urllib.request

import boto3
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from moto.server import ThreadedMotoServer

from provisioning.clients import ClientFactory
from provisioning.demo_world import DATALAKE_ACCOUNT_ID, REMOTE_ACCOUNT_ID, admin_client, seed_aws_world
from requests_app.workflow import runner
from requests_app.audit import verify_chain
from requests_app.aws import set_client_factory
from requests_app.demo import DEMO_USERS, demo_request, seed_portal
from requests_app.models import AccessRequest, AuditEvent, AwsAccount
from requests_app.services import access_request_approve, access_request_submit


# One session for the module: it parses each service's model once (the tests
# run in one thread, so sharing it is safe).
SESSION = boto3.session.Session(region_name="eu-west-1")


@pytest.fixture(scope="module")
def moto_url(monkeypatch_module):
    monkeypatch_module.delenv("AWS_ENDPOINT_URL", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def world(moto_url):
    """A freshly seeded world: moto is reset first (one server serves the
    whole process's moto state, so it cannot be split between tests)."""
    urllib.request.urlopen(urllib.request.Request(moto_url + "/moto-api/reset", method="POST")).close()
    set_client_factory(ClientFactory(endpoint_url=moto_url, base_session=SESSION))
    yield seed_aws_world(moto_url, session=SESSION)
    set_client_factory(None)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher is slow on purpose; these tests are about who exists.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_the_secret_is_under_a_customer_managed_key_whose_policy_keeps_the_root_statement(world):
    secretsmanager = admin_client("secretsmanager", REMOTE_ACCOUNT_ID, endpoint_url=world.endpoint_url, session=SESSION)
    kms = admin_client("kms", REMOTE_ACCOUNT_ID, endpoint_url=world.endpoint_url, session=SESSION)

    described = secretsmanager.describe_secret(SecretId=world.secret_arn)
    assert described["Name"] == "prod/source-db/credentials"
    assert kms.describe_key(KeyId=described["KmsKeyId"])["KeyMetadata"]["Arn"] == world.key_arn
    assert world.secret_arn.startswith(f"arn:aws:secretsmanager:eu-west-1:{REMOTE_ACCOUNT_ID}:secret:")
    value = json.loads(secretsmanager.get_secret_value(SecretId=world.secret_arn)["SecretString"])
    assert set(value) == {"username", "password", "host", "port"}
    policy = json.loads(kms.get_key_policy(KeyId=world.key_arn, PolicyName="default")["Policy"])
    assert policy["Statement"] == [
        {
            "Sid": "EnableRootPermissions",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{REMOTE_ACCOUNT_ID}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]


def test_the_legacy_secret_uses_the_aws_managed_key(world):
    secretsmanager = admin_client("secretsmanager", REMOTE_ACCOUNT_ID, endpoint_url=world.endpoint_url, session=SESSION)
    # DescribeSecret leaves KmsKeyId out exactly when the AWS-managed key is used.
    assert "KmsKeyId" not in secretsmanager.describe_secret(SecretId=world.managed_secret_arn)


def test_the_portal_reaches_each_account_through_its_provisioner_role(world):
    factory = ClientFactory(endpoint_url=world.endpoint_url, base_session=SESSION)
    from provisioning.spec import AccountAccess

    for account_id, role_arn in (
        (DATALAKE_ACCOUNT_ID, world.datalake_provisioner_role_arn),
        (REMOTE_ACCOUNT_ID, world.remote_provisioner_role_arn),
    ):
        sts = factory.client("sts", account=AccountAccess(account_id, role_arn), session_name="portal-req-1", region="eu-west-1")
        assert sts.get_caller_identity()["Account"] == account_id
        iam = admin_client("iam", account_id, endpoint_url=world.endpoint_url, session=SESSION)
        trust = iam.get_role(RoleName=role_arn.rsplit("/", 1)[1])["Role"]["AssumeRolePolicyDocument"]
        assert trust["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{world.portal_account_id}:root"}
    dms = admin_client("dms", DATALAKE_ACCOUNT_ID, endpoint_url=world.endpoint_url, session=SESSION)
    instances = dms.describe_replication_instances()["ReplicationInstances"]
    assert [i["ReplicationInstanceArn"] for i in instances] == [world.replication_instance_arn]


def test_seeding_again_finds_the_same_world(world):
    assert seed_aws_world(world.endpoint_url, session=SESSION) == world


def test_seeding_never_reaches_real_aws():
    with pytest.raises(ValueError):
        seed_aws_world("")


@pytest.mark.django_db
def test_seeding_the_portal_twice_keeps_one_of_each_user_and_account(world):
    first = seed_portal(world)
    again = seed_portal(world, passwords=first.passwords)

    users = get_user_model().objects.filter(username__in=DEMO_USERS)
    assert users.count() == 3 and again.passwords == first.passwords
    assert all(user.check_password(first.passwords[user.username]) for user in users)
    assert users.get(username="admin").is_superuser and users.get(username="admin").is_staff
    assert users.get(username="admin").user_permissions.filter(codename="administer_portal").exists()
    assert not users.get(username="requester").is_staff
    assert AwsAccount.objects.count() == 2
    datalake = AwsAccount.objects.get(account_id=DATALAKE_ACCOUNT_ID)
    remote = AwsAccount.objects.get(account_id=REMOTE_ACCOUNT_ID)
    assert (datalake.is_datalake, datalake.is_remote, remote.is_datalake, remote.is_remote) == (True, False, False, True)
    assert list(datalake.requesters.values_list("username", flat=True)) == ["requester"]
    assert list(remote.approvers.values_list("username", flat=True)) == ["approver"]
    assert remote.provisioner_role_arn == world.remote_provisioner_role_arn
    # Both are reached with an external id, and neither value is in the audit trail.
    assert remote.external_id and datalake.external_id and remote.external_id != datalake.external_id
    trail = json.dumps(list(AuditEvent.objects.values("details")))
    assert remote.external_id not in trail and datalake.external_id not in trail
    # Registered once, through the service, with its audit event.
    assert AuditEvent.objects.filter(action="account.registered").count() == 2


@pytest.mark.django_db
def test_known_password_hashes_spare_the_password_check(world, monkeypatch):
    first = seed_portal(world)
    monkeypatch.setattr(
        get_user_model(), "check_password", lambda *args: pytest.fail("checked a password whose hash was known")
    )
    again = seed_portal(world, passwords=first.passwords, password_hashes=first.password_hashes)
    assert again.password_hashes == first.password_hashes


@pytest.mark.django_db
def test_a_changed_demo_password_is_put_back(world):
    first = seed_portal(world)
    user = get_user_model().objects.get(username="approver")
    user.set_password("something-else")
    user.save()
    seed_portal(world, passwords=first.passwords)
    user.refresh_from_db()
    assert user.check_password(first.passwords["approver"])


@pytest.mark.django_db
def test_the_runbooks_request_goes_from_filing_to_active_in_the_demo_world(
    world, monkeypatch, django_capture_on_commit_callbacks, mailoutbox
):
    monkeypatch.setattr("requests_app.workflow.scheduling.enqueue_next_step", lambda *args: None)
    seeded = seed_portal(world)
    users = {user.username: user for user in get_user_model().objects.filter(username__in=DEMO_USERS)}

    with django_capture_on_commit_callbacks(execute=True):
        request = access_request_submit(requester=users["requester"], **demo_request(world))
    assert request.preflight_status == AccessRequest.PreflightStatus.PASSED, request.preflight
    assert request.resolved_kms_key_arn == world.key_arn
    # The approvers hear of the new request, the requester of the decision...
    assert [mail.to for mail in mailoutbox] == [[users["approver"].email]]
    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(request_id=request.pk, plan_hash=request.plan_hash, user=users["approver"], comment="As in the runbook.")
    assert mailoutbox[-1].to == [users["requester"].email] and "approved" in mailoutbox[-1].subject
    with django_capture_on_commit_callbacks(execute=True):
        while runner.run_step(request.pk, "grant") is not None:
            pass
    # ...and of the grant becoming active.
    assert mailoutbox[-1].to == [users["requester"].email] and "is active" in mailoutbox[-1].subject

    request.refresh_from_db()
    assert request.state == AccessRequest.State.ACTIVE, list(request.steps.values("name", "status", "error"))
    assert request.role_arn == f"arn:aws:iam::{DATALAKE_ACCOUNT_ID}:role/dms-cross-account-secret-access"
    assert request.endpoint_arn.startswith(f"arn:aws:dms:eu-west-1:{DATALAKE_ACCOUNT_ID}:endpoint:")
    assert seeded.remote_account.pk == request.remote_account_id
    assert verify_chain().ok


@pytest.mark.django_db
def test_the_secret_under_the_aws_managed_key_is_refused_at_filing(world):
    seed_portal(world)
    requester = get_user_model().objects.get(username="requester")
    fields = {**demo_request(world), "secret_arn": world.managed_secret_arn, "kms_key_arn": ""}
    fields["endpoint_identifier"] = "legacy-db-mysql"
    fields["role_name"] = "dms-legacy-db"

    request = access_request_submit(requester=requester, **fields)

    assert request.preflight_status == AccessRequest.PreflightStatus.FAILED
    assert request.diagnosis == "aws_managed_key"


@pytest.mark.django_db
def test_the_seed_demo_command_prints_logins_that_work(world):
    output = io.StringIO()
    call_command("seed_demo", "--aws-endpoint-url", world.endpoint_url, "--json", stdout=output)

    printed = json.loads(output.getvalue())
    assert printed["world"]["secret_arn"] == world.secret_arn
    users = get_user_model().objects.filter(username__in=DEMO_USERS)
    assert {user.username for user in users if user.check_password(printed["logins"][user.username])} == set(DEMO_USERS)


def test_the_seed_demo_command_refuses_without_a_moto_endpoint(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(CommandError, match="moto server only"):
        call_command("seed_demo", "--aws-endpoint-url", "")
