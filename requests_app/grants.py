"""Turning a request row into the engine's ``GrantSpec``."""
from __future__ import annotations

from django.conf import settings

from provisioning.arns import partition_of_region
from provisioning.spec import AccountAccess, GrantSpec
from requests_app.models import AccessRequest, AwsAccount


def account_access(account: AwsAccount) -> AccountAccess:
    return AccountAccess(
        account_id=account.account_id,
        provisioner_role_arn=account.provisioner_role_arn,
        external_id=account.external_id or None,
    )


def grant_spec_for(request: AccessRequest, *, kms_key_arn: str | None = None) -> GrantSpec:
    """The engine's view of ``request``: the key preflight resolved, else the one named."""
    return GrantSpec(
        grant_id=str(request.pk),
        instance_id=settings.PORTAL_INSTANCE_ID,
        datalake=account_access(request.datalake_account),
        remote=account_access(request.remote_account),
        region=request.region,
        secret_arn=request.secret_arn,
        engine=request.engine,
        endpoint_identifier=request.endpoint_identifier,
        role_name=request.role_name,
        kms_key_arn=kms_key_arn or request.resolved_kms_key_arn or request.kms_key_arn or None,
        endpoint_type=request.endpoint_type,
        database_name=request.database_name or None,
        replication_instance_arn=request.replication_instance_arn or None,
        partition=partition_of_region(request.region),
    )
