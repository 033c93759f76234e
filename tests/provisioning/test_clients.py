"""The client factory: who the clients act as, and how often it asks STS."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
from moto.server import ThreadedMotoServer

from provisioning.clients import REFRESH_MARGIN_SECONDS, ClientFactory, GrantClients
from provisioning.errors import PermanentAwsError
from provisioning.spec import AccountAccess
from tests.provisioning.botocore_hooks import inject_error
from tests.provisioning.conftest import DATALAKE_ID, REGION, REMOTE_ID


def _assume_role_params(session) -> list[dict]:
    seen: list[dict] = []
    session.events.register("provide-client-params.sts.AssumeRole", lambda params, **_: seen.append(dict(params)))
    return seen


def test_clients_act_in_the_account_of_their_provisioner_role(world, clients):
    assert clients.datalake("sts").get_caller_identity()["Account"] == DATALAKE_ID
    assert clients.remote("sts").get_caller_identity()["Account"] == REMOTE_ID


def test_each_account_is_assumed_once_per_request_with_the_request_session_name(world, factory, spec, calls):
    assumed = _assume_role_params(world.base_session)
    clients = GrantClients(factory, spec)
    for service in ("iam", "dms", "sts"):
        clients.datalake(service)
    for service in ("secretsmanager", "kms"):
        clients.remote(service)
    assert len(assumed) == 2
    by_role = {params["RoleArn"]: params for params in assumed}
    datalake = by_role[world.datalake.provisioner_role_arn]
    remote = by_role[world.remote.provisioner_role_arn]
    assert datalake["RoleSessionName"] == remote["RoleSessionName"] == f"portal-testportal-req-{spec.grant_id}"
    assert datalake["ExternalId"] == "datalake-external-id"
    assert "ExternalId" not in remote


def test_a_client_is_reused_for_the_same_account_service_region_and_session(world, factory, spec):
    clients = GrantClients(factory, spec)
    assert clients.datalake("iam") is clients.datalake("iam")
    assert clients.datalake("iam") is not clients.datalake("dms")
    other_request = GrantClients(factory, world.spec(grant_id="2001"))
    assert other_request.datalake("iam") is not clients.datalake("iam")


def test_another_request_assumes_the_role_again_under_its_own_session_name(world, factory):
    assumed = _assume_role_params(world.base_session)
    GrantClients(factory, world.spec(grant_id="1")).datalake("iam")
    GrantClients(factory, world.spec(grant_id="2")).datalake("iam")
    assert [params["RoleSessionName"] for params in assumed] == ["portal-testportal-req-1", "portal-testportal-req-2"]


def test_credentials_are_renewed_five_minutes_before_they_expire(world, spec):
    now = [0.0]
    factory = ClientFactory(base_session=world.base_session, clock=lambda: now[0])
    assumed = _assume_role_params(world.base_session)
    first = factory.credentials(account=spec.datalake, session_name=spec.session_name, region=REGION)
    client = factory.client("iam", account=spec.datalake, session_name=spec.session_name, region=REGION)

    now[0] = first.expires_at - REFRESH_MARGIN_SECONDS - 1
    assert factory.credentials(account=spec.datalake, session_name=spec.session_name, region=REGION) is first
    assert factory.client("iam", account=spec.datalake, session_name=spec.session_name, region=REGION) is client
    assert len(assumed) == 1

    now[0] = first.expires_at - REFRESH_MARGIN_SECONDS + 1
    renewed_client = factory.client("iam", account=spec.datalake, session_name=spec.session_name, region=REGION)
    assert len(assumed) == 2
    assert renewed_client is not client
    assert renewed_client.get_role(RoleName="dms-access-portal-provisioner")["Role"]["Arn"].startswith(
        f"arn:aws:iam::{DATALAKE_ID}:"
    )


def test_concurrent_steps_of_one_request_share_one_assume_role(world, factory, spec):
    assumed = _assume_role_params(world.base_session)
    barrier = threading.Barrier(8)
    built, errors = [], []

    def work():
        try:
            barrier.wait()
            built.append(GrantClients(factory, spec).remote("secretsmanager"))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(assumed) == 1
    assert len({id(client) for client in built}) == 1


def test_clients_use_timeouts_and_standard_retries(clients):
    config = clients.datalake("iam").meta.config
    assert config.connect_timeout == 5
    assert config.read_timeout == 30
    assert config.retries["mode"] == "standard"


def test_a_refused_assume_role_names_the_missing_permission(world, factory, spec):
    inject_error(
        world.base_session,
        "AssumeRole",
        "AccessDenied",
        "User: arn:aws:sts::123456789012:assumed-role/portal/i-1 is not authorized to perform: "
        "sts:AssumeRole on resource: arn:aws:iam::111111111111:role/dms-access-portal-provisioner",
        status=403,
    )
    with pytest.raises(PermanentAwsError) as caught:
        GrantClients(factory, spec).datalake("iam")
    assert caught.value.diagnosis == "provisioner_access_denied"
    assert "sts:AssumeRole" in caught.value.message
    assert caught.value.aws_request_ids == ["injected-AssumeRole"]


def test_aws_endpoint_url_from_the_environment_reaches_a_moto_server(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        factory = ClientFactory(base_session=boto3.session.Session(region_name=REGION))
        account = AccountAccess(account_id=REMOTE_ID, provisioner_role_arn=f"arn:aws:iam::{REMOTE_ID}:role/p")
        sts = factory.client("sts", account=account, session_name="portal-req-7", region=REGION)
        assert sts.meta.endpoint_url == f"http://{host}:{port}"
        assert sts.get_caller_identity()["Account"] == REMOTE_ID
    finally:
        server.stop()


def test_before_write_runs_before_every_write_and_can_stop_it(world, factory, spec):
    """Reads go straight through; a write asks ``before_write`` first, and
    nothing reaches AWS when it raises (the portal's lease check)."""
    asked: list[tuple[str, str]] = []
    refuse = {"now": False}

    def before_write(service: str, operation: str) -> None:
        asked.append((service, operation))
        if refuse["now"]:
            raise RuntimeError("lease lost")

    clients = GrantClients(factory, spec, before_write=before_write)
    secretsmanager = clients.remote("secretsmanager")
    iam = clients.datalake("iam")
    secretsmanager.describe_secret(SecretId=world.secret_arn)
    secretsmanager.get_resource_policy(SecretId=world.secret_arn)
    iam.list_roles()
    assert asked == []
    assert secretsmanager.meta.region_name == REGION

    secretsmanager.put_resource_policy(SecretId=world.secret_arn, ResourcePolicy=_policy_allowing_root())
    assert asked == [("secretsmanager", "PutResourcePolicy")]

    refuse["now"] = True
    with pytest.raises(RuntimeError, match="lease lost"):
        iam.create_role(RoleName="never-created", AssumeRolePolicyDocument=_policy_allowing_root())
    assert asked[-1] == ("iam", "CreateRole")
    admin_iam = world.admin(DATALAKE_ID, "iam")
    assert "never-created" not in [role["RoleName"] for role in admin_iam.list_roles()["Roles"]]


def _policy_allowing_root() -> str:
    import json

    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{DATALAKE_ID}:root"}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def test_threads_asking_for_both_accounts_at_once_assume_each_role_once(world, factory, spec):
    assumed = _assume_role_params(world.base_session)
    # A slow STS: every thread asks while the first AssumeRole of its account is still under way.
    world.base_session.events.register("before-call.sts.AssumeRole", lambda **_: time.sleep(0.2))
    barrier = threading.Barrier(8)
    clients = GrantClients(factory, spec)
    built, errors = [], []
    wanted = [
        lambda: clients.remote("secretsmanager"),
        lambda: clients.remote("kms"),
        lambda: clients.datalake("iam"),
        lambda: clients.datalake("dms"),
    ] * 2

    def work(want):
        try:
            barrier.wait()
            built.append(want())
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(want,)) for want in wanted]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(params["RoleArn"] for params in assumed) == sorted(
        [spec.datalake.provisioner_role_arn, spec.remote.provisioner_role_arn]
    )
    assert len({id(client) for client in built}) == 4


def test_the_two_policy_steps_run_at_once_on_one_requests_clients(world, factory, spec):
    from provisioning.steps import grant_key_policy, grant_secret_policy

    assumed = _assume_role_params(world.base_session)
    clients = GrantClients(factory, spec)
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def run(step):
        try:
            barrier.wait()
            results[step.__name__] = step(spec, clients=clients)
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(step,)) for step in (grant_secret_policy, grant_key_policy)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert results["grant_secret_policy"].changed and results["grant_key_policy"].changed
    assert [params["RoleArn"] for params in assumed] == [spec.remote.provisioner_role_arn]
    assert spec.statement_sid in json.dumps(world.secret_policy()) and spec.statement_sid in json.dumps(world.key_policy())
