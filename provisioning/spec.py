"""The inputs of one grant, as plain frozen dataclasses.

A ``GrantSpec`` is everything the engine needs to know about one request: it is
built by the portal from a request row, and by tests directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Tag put on every resource the portal creates for a grant; its value is the
# grant id. A role or endpoint without this tag (or with another value) is
# never taken over.
OWNER_TAG_KEY = "dms-access-portal:request-id"
# Prefix of every statement Sid the portal owns; followed by the grant id.
SID_PREFIX = "DmsAccessPortal"


@dataclass(frozen=True)
class AccountAccess:
    """How the workers reach one AWS account: its provisioner role."""

    account_id: str
    provisioner_role_arn: str
    # Kept out of repr(): a spec in a log line or a traceback must not show it.
    external_id: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GrantSpec:
    """One grant: DMS in ``datalake`` reads ``secret_arn`` in ``remote``."""

    grant_id: str
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
        """``RoleSessionName`` for AssumeRole: CloudTrail shows which request acted."""
        return f"portal-req-{self.grant_id}"

    @property
    def statement_sid(self) -> str:
        """The Sid of the statements this grant owns in the secret and key policies."""
        return f"{SID_PREFIX}{''.join(ch for ch in self.grant_id if ch.isalnum())}"
