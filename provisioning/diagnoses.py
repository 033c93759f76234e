"""Failure diagnoses: a stable code, a title and the remediation a person can act on.

A failed step records only the code; the UI and the API look it up here, so
the wording can improve without touching stored rows.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from provisioning.names import validate_engine


@dataclass(frozen=True)
class Diagnosis:
    """One known failure: ``code`` is stored, ``title`` and ``remediation`` are shown."""

    code: str
    title: str
    remediation: str

    def to_dict(self) -> dict:
        """The diagnosis as a JSON-serialisable dict."""
        return asdict(self)


_ENTRIES = [
    Diagnosis(
        "aws_managed_key",
        "The secret is encrypted with the AWS managed key aws/secretsmanager",
        "The AWS managed key cannot be shared with another account. The Remote account owner must "
        "re-encrypt the secret under a customer managed KMS key (UpdateSecret with KmsKeyId); the "
        "secret value stays the same. Then submit the request again.",
    ),
    Diagnosis(
        "secret_policy_denies",
        "The secret's resource policy does not let the role read the secret",
        "The secret's resource policy is missing, names another principal, or denies the role. The "
        "Principal must be the exact role ARN (case-sensitive, no trailing space). Re-run the "
        "grant_secret_policy step to put the portal's statement back.",
    ),
    Diagnosis(
        "key_policy_denies",
        "The KMS key policy does not let the role decrypt the secret",
        "GetSecretValue fails with a KMS reference when the key policy does not grant kms:Decrypt "
        "and kms:DescribeKey to the same role ARN through Secrets Manager in this region. Re-run the "
        "grant_key_policy step.",
    ),
    Diagnosis(
        "identity_policy_denies",
        "The role's own policy does not allow the action",
        "Cross-account access needs the role's identity policy too. Its inline policy must allow "
        "secretsmanager:GetSecretValue on the secret ARN and kms:Decrypt on the key ARN, with no "
        "Deny. Re-run the create_role step to restore the inline policy.",
    ),
    Diagnosis(
        "secret_shape_invalid",
        "The secret value is not what DMS expects",
        "DMS needs a JSON object with the lower-case keys username, password, host and port (plus "
        "asm_user, asm_password and asm_server for Oracle ASM). Ask the Remote account owner to fix "
        "the secret; RDS-managed master secrets lack host and port and cannot be used.",
    ),
    Diagnosis(
        "principal_not_visible",
        "AWS did not yet accept the new role as a principal",
        "IAM changes take time to reach KMS and Secrets Manager and the retries ran out. Retry the "
        "request in a few minutes; if it keeps failing, check that the role still exists.",
    ),
    Diagnosis(
        "role_name_taken",
        "A role with this name already exists and belongs to something else",
        "The portal never takes over a role it did not create for this request. Choose another role "
        "name, or remove the existing role if it is unused.",
    ),
    Diagnosis(
        "endpoint_identifier_taken",
        "A DMS endpoint with this identifier already exists and belongs to something else",
        "The portal never takes over an endpoint it did not create for this request. Choose another "
        "endpoint identifier.",
    ),
    Diagnosis(
        "provisioner_access_denied",
        "The portal's provisioner role lacks a permission",
        "The provisioner role of the named account is missing the permission in the error message. "
        "Redeploy the portal's provisioner role stack for that account, then retry.",
    ),
    Diagnosis(
        "connection_failed",
        "The DMS connection test failed",
        "The IAM, secret and key chain may be fine while the network is not: check VPC peering or "
        "Transit Gateway routes, security groups and that the database accepts connections from the "
        "replication instance's subnet. The DMS failure message is shown as reported.",
    ),
    Diagnosis(
        "policy_too_large",
        "The merged policy would exceed an AWS size limit",
        "Key policies hold 32 KB, secret resource policies 20,480 characters and a role's inline "
        "policies 10,240 non-whitespace characters. The Remote account owner must remove unused "
        "statements before this grant can be added.",
    ),
    Diagnosis(
        "key_not_usable",
        "The KMS key cannot be used",
        "The key must be an enabled, symmetric, customer managed key in the Remote account. Enable it "
        "or cancel its pending deletion, or re-encrypt the secret under a usable key.",
    ),
    Diagnosis(
        "key_mismatch",
        "The named KMS key is not the secret's key",
        "The request named a KMS key different from the one that encrypts the secret. Leave the key "
        "empty to use the secret's own key, or name that key.",
    ),
    Diagnosis(
        "plan_changed",
        "AWS changed since the approval: the plan is not the one approved",
        "Before its first write the worker computed the plan again from AWS as it is now (say the secret "
        "was re-encrypted under another key) and found another plan than the approvers approved. Nothing "
        "was written. The Remote account's approvers approve the new plan to resume, or revoke the request.",
    ),
    Diagnosis(
        "plan_not_approved",
        "The step would write something other than the approved plan",
        "The documents built from the request no longer hash to its approved plan, or the plan lacks the "
        "approvals it needs. Nothing was written. Retry: the worker checks the plan against AWS again first.",
    ),
    Diagnosis(
        "policy_changed_concurrently",
        "The policy kept changing while the portal merged into it",
        "Someone (or something) edited the secret or key policy outside the portal again and again while "
        "the portal was adding or removing its statement. Let those edits finish, then retry.",
    ),
    Diagnosis(
        "secret_not_found",
        "The secret does not exist",
        "No secret with this ARN exists in the Remote account, or it is scheduled for deletion. Check "
        "the full ARN, including the six characters after the name.",
    ),
    Diagnosis(
        "region_mismatch",
        "The resources are in different regions",
        "The secret, the key, the replication instance and the endpoint must all be in the request's "
        "region. Correct the ARN or the region.",
    ),
    Diagnosis(
        "account_mismatch",
        "A resource is in the wrong account",
        "The secret and key must be in the registered Remote account and the replication instance in "
        "the DataLake account. Correct the ARN or choose the right account.",
    ),
    Diagnosis(
        "aws_unavailable",
        "AWS did not answer",
        "Throttling, a service error or a network problem outlasted the retries. Retry later; nothing "
        "was left half-done because every step can run again safely.",
    ),
    Diagnosis(
        "aws_request_rejected",
        "AWS refused a call for another reason",
        "AWS refused the call with a reason the portal has no specific diagnosis for (a quota, a "
        "validation rule, a resource in use or in an unexpected state). The message quotes AWS; fix "
        "the cause, then retry the step.",
    ),
    Diagnosis(
        "invalid_input",
        "A field of the request is not valid",
        "The message names the field and the rule it breaks. Correct the field and submit again.",
    ),
    Diagnosis(
        "policy_lint_error",
        "A policy document of the plan fails the IAM policy linter",
        "The linter found an error in a document the portal generated (an unknown action, a resource "
        "of the wrong type for an action, a malformed principal): applied as it is, the grant would not "
        "work. The findings are in the preflight report. The request cannot be approved; correct the "
        "field the finding points at (the secret or key ARN, the region) and submit again, or report it "
        "to the portal's administrators.",
    ),
    Diagnosis(
        "replication_fails_after_test",
        "The endpoint test passes but replication fails",
        "The access chain works; the database is not ready for change data capture. Work through the "
        "engine's CDC checklist.",
    ),
]

DIAGNOSES: dict[str, Diagnosis] = {entry.code: entry for entry in _ENTRIES}


def get_diagnosis(code: str | None) -> Diagnosis | None:
    """The Diagnosis for ``code``; an unknown code gets a generic entry, None gives None."""
    if code is None:
        return None
    return DIAGNOSES.get(
        code,
        Diagnosis(code, "Unexpected failure", "See the error message and the AWS request ids of the failed step."),
    )


_MYSQL = [
    "binlog_format=ROW",
    "binlog_row_image=FULL",
    "binlog_checksum=NONE",
    "Binary logs kept for at least a day (on RDS: automated backups on and "
    "call mysql.rds_set_configuration('binlog retention hours', 24))",
    "log_slave_updates=TRUE when the source is a replica",
    "The user has REPLICATION SLAVE and REPLICATION CLIENT, and SELECT on the replicated tables",
]
_POSTGRES = [
    "wal_level=logical (on RDS/Aurora: rds.logical_replication=1, which needs a reboot)",
    "max_replication_slots and max_wal_senders above 1, at least one per task",
    "wal_sender_timeout 0 or at least 10000 ms",
    "The user has the replication role (on RDS/Aurora: rds_superuser and rds_replication) "
    "and SELECT on the replicated tables",
    "Replicated tables have a primary key; RDS read replicas cannot be CDC sources",
]
_ORACLE = [
    "The database runs in ARCHIVELOG mode",
    "Supplemental logging is enabled (minimal at database level, primary key or all columns on the tables)",
    "The user has the privileges the DMS guide lists for LogMiner or Binary Reader",
]
_SQLSERVER = [
    "The database uses the full recovery model and has a full backup",
    "MS-CDC is enabled on the database and tables, or MS-Replication distribution is configured",
    "The user has the permissions the DMS guide lists for ongoing replication",
]
_MONGO = [
    "The source runs as a replica set (change streams need the oplog)",
    "The user can read the oplog and the replicated databases",
]
_DOCDB = [
    "Change streams are enabled for the replicated collections",
    "The change stream log retention covers the full load's duration",
]
_CHECKLISTS: dict[str, list[str]] = {
    "mysql": _MYSQL,
    "mariadb": _MYSQL + ["After switching binlog_format to ROW, reboot the MariaDB instance"],
    "aurora": ["binlog_format=ROW is set in the DB cluster parameter group", *_MYSQL[1:]],
    "postgres": _POSTGRES,
    "aurora-postgresql": _POSTGRES,
    "oracle": _ORACLE,
    "sqlserver": _SQLSERVER,
    "mongodb": _MONGO,
    "docdb": _DOCDB,
    "sybase": [
        "The replication agent is enabled on the database and the tables are marked for replication",
        "The user has the roles the DMS guide lists for SAP ASE ongoing replication",
    ],
    "db2": [
        "Archive logging is enabled (LOGARCHMETH1), so DMS can read the transaction logs",
        "The user has the authorities the DMS guide lists for Db2 LUW ongoing replication",
    ],
    "redshift": [
        "Redshift is a DMS target only: change data capture is set up on the source endpoint",
    ],
}


def cdc_checklist(engine: str) -> list[str]:
    """What the database must have for change data capture, for "test passes, replication fails".

    Returns a new list; raises InvalidInput for an engine not in ``ENGINES``.
    """
    return list(_CHECKLISTS[validate_engine(engine)])

