"""Reading a request's two Remote policies as they are in AWS right now.

Read-only, through the engine's readers and the process-wide client factory,
so the page shows approvers what the grant would change before any worker
has run. Used only for display: any failure becomes a message on the page.
"""
from __future__ import annotations

from provisioning.aws_calls import AwsCalls
from provisioning.resources import read_key_policy, read_secret_policy, resolve_key_arn
from requests_app.aws import grant_clients_for
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest


def read_live_policies(access_request: AccessRequest, *, kinds=("secret", "key")) -> dict[str, dict | None]:
    """``{"secret": policy or None, "key": policy or None}`` read from the Remote account
    (only the ``kinds`` asked for; the others are None).

    Raises the engine's ``ProvisioningError`` (or a subclass) when AWS refuses
    or cannot be reached.
    """
    spec = grant_spec_for(access_request)
    clients = grant_clients_for(spec)
    calls = AwsCalls()
    secret_policy = key_policy = None
    if "secret" in kinds:
        _, secret_policy = read_secret_policy(calls, clients.remote("secretsmanager"), spec.secret_arn)
    if "key" in kinds and spec.kms_key_arn:
        kms = clients.remote("kms")
        key_arn = resolve_key_arn(calls, kms, spec.kms_key_arn)
        _, key_policy = read_key_policy(calls, kms, key_arn)
    return {"secret": secret_policy, "key": key_policy}
