"""The inputs of one grant, as plain frozen dataclasses.

A ``GrantSpec`` is everything the engine needs to know about one request: it is
built by the portal from a request row, and by tests directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# The owner tags and Sids are defined in provisioning.ownership; the names are
# also importable from here, where they were before instance ids.
from provisioning.ownership import INSTANCE_TAG_KEY, OWNER_TAG_KEY, SID_PREFIX, statement_sid  # noqa: F401


@dataclass(frozen=True)
class AccountAccess:
    """How the workers reach one AWS account: its provisioner role."""

    account_id: str
    provisioner_role_arn: str
    # Kept out of repr(): a spec in a log line or a traceback must not show it.
    external_id: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GrantSpec:
    """One grant: DMS in ``datalake`` reads ``secret_arn`` in ``remote``.

    ``instance_id`` names the portal deployment the grant belongs to; with
    ``grant_id`` it is what marks the grant's resources and statements as its
    own (see provisioning.ownership).
    """

    grant_id: str
    instance_id: str
    datalake: AccountAccess
    remote: AccountAccess
    region: str
    secret_arn: str
    engine: str
    endpoint_identifier: str
    role_name: str
    kms_key_arn: str | None = None
    endpoint_type: str = "source"
    database_name: str | None = None
    replication_instance_arn: str | None = None
    partition: str = "aws"

    @property
    def role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.datalake.account_id}:role/{self.role_name}"

    @property
    def session_name(self) -> str:
        """``RoleSessionName`` for AssumeRole: CloudTrail shows which portal instance and request acted.

        The provisioner roles' trust policies admit only sessions named
        ``portal-<their instance id>-req-*``, so a second portal holding the
        same role ARN and external id (a restored backup) is refused.
        """
        return f"portal-{self.instance_id}-req-{self.grant_id}"

    @property
    def statement_sid(self) -> str:
        """The Sid of the statements this grant owns in the secret and key policies."""
        return statement_sid(self.instance_id, self.grant_id)
