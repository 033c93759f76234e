"""Parsing and checking the ARNs a grant names.

Every parser is strict on purpose: an ARN that is almost right (a Cyrillic
letter, a trailing space, an 11-digit account) would produce policies that
silently grant nothing, so it is refused here with the field name and the rule
it breaks. All patterns are ASCII-only; Python's ``\\d`` and ``\\w`` would accept
Unicode digits and letters.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from provisioning.errors import InvalidInput

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

# Service principals and kms:ViaService values end in the partition's DNS suffix.
_DNS_SUFFIX = {"aws": "amazonaws.com", "aws-us-gov": "amazonaws.com", "aws-cn": "amazonaws.com.cn"}

_ACCOUNT_RE = re.compile(r"[0-9]{12}")
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
_SECRET_NAME_RE = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_SECRET_SUFFIX_RE = re.compile(r"-[A-Za-z0-9]{6}")
_KEY_ID_RE = re.compile(
    r"(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
_ALIAS_RE = re.compile(r"[A-Za-z0-9/_-]{1,250}")
_ROLE_PATH_RE = re.compile(r"/(?:[\x21-\x7e]*/)?")
_DMS_ID_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,253}[A-Za-z0-9])?")

SECRET_ARN_RULE = (
    "must be a Secrets Manager secret ARN like "
    "arn:aws:secretsmanager:<region>:<12-digit account>:secret:<name>-<6 chars>"
)
KMS_KEY_ARN_RULE = (
    "must be a KMS key ARN like arn:aws:kms:<region>:<12-digit account>:key/<key id> "
    "or arn:aws:kms:<region>:<12-digit account>:alias/<name>"
)
ROLE_ARN_RULE = "must be an IAM role ARN like arn:aws:iam::<12-digit account>:role/<name>"
REPLICATION_INSTANCE_ARN_RULE = (
    "must be a DMS replication instance ARN like arn:aws:dms:<region>:<12-digit account>:rep:<id>"
)


@dataclass(frozen=True)
class Arn:
    """The six parts of an ARN, with the resource split into type and id.

    ``resource_type`` is the part before the first ``/`` or ``:`` of the
    resource (``secret``, ``key``, ``alias``, ``role``, ``rep``); ``resource_id``
    is everything after it (for a role this includes any path).
    """

    partition: str
    service: str
    region: str
    account: str
    resource_type: str
    resource_id: str
    raw: str

    @property
    def dns_suffix(self) -> str:
        """DNS suffix of this ARN's partition (``amazonaws.com`` outside China)."""
        return dns_suffix(self.partition)


def dns_suffix(partition: str) -> str:
    """The DNS suffix used by service principals and endpoints in ``partition``."""
    return _DNS_SUFFIX[partition]


def partition_of_region(region: str) -> str:
    """The partition a region belongs to (``cn-*`` China, ``us-gov-*`` GovCloud)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _require_text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput(field, "must not be empty")
    if not value.isascii():
        # Lookalike letters (Cyrillic 'а', full-width digits) would pass a
        # careless eye and then match nothing in AWS.
        bad = next(ch for ch in value if not ch.isascii())
        raise InvalidInput(field, f"must contain only ASCII characters (found {bad!r} U+{ord(bad):04X})")
    if any(ch.isspace() for ch in value):
        raise InvalidInput(field, "must not contain spaces, tabs or line breaks")
    return value


def check_account_id(value: object, field: str) -> str:
    """Return ``value`` if it is exactly 12 ASCII digits, else raise InvalidInput."""
    text = _require_text(value, field)
    if not _ACCOUNT_RE.fullmatch(text):
        raise InvalidInput(field, f"must be a 12-digit AWS account id (got {len(text)} characters)")
    return text


def check_region(value: object, field: str) -> str:
    """Return ``value`` if it looks like an AWS region name (``eu-west-1``), else raise."""
    text = _require_text(value, field)
    if not _REGION_RE.fullmatch(text):
        raise InvalidInput(field, "must be an AWS region name like eu-west-1 (lower case, ends in a number)")
    return text


def parse_arn(value: object, *, field: str) -> Arn:
    """Split any ARN into its parts, checking partition, account and region shape.

    The region and account may be empty (IAM ARNs have no region). Raises
    InvalidInput naming ``field`` when the text is not an ARN.
    """
    text = _require_text(value, field)
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise InvalidInput(field, "must be an ARN: arn:<partition>:<service>:<region>:<account>:<resource>")
    _, partition, service, region, account, resource = parts
    if partition not in PARTITIONS:
        raise InvalidInput(field, f"must use the partition aws, aws-cn or aws-us-gov (got {partition!r})")
    if not service or not re.fullmatch(r"[a-z0-9-]+", service):
        raise InvalidInput(field, f"must name an AWS service in lower case (got {service!r})")
    if region:
        check_region(region, field)
        if partition_of_region(region) != partition:
            raise InvalidInput(
                field,
                f"region {region} belongs to partition {partition_of_region(region)}, not {partition}",
            )
    if account:
        if not _ACCOUNT_RE.fullmatch(account):
            raise InvalidInput(field, f"must contain a 12-digit account id (got {account!r})")
    if not resource:
        raise InvalidInput(field, "must name a resource after the account id")
    match = re.match(r"([^/:]*)[/:]?(.*)", resource, re.DOTALL)
    assert match is not None  # the pattern matches every string
    return Arn(
        partition=partition,
        service=service,
        region=region,
        account=account,
        resource_type=match.group(1),
        resource_id=match.group(2),
        raw=text,
    )


def _expect(arn: Arn, *, field: str, service: str, rule: str, region: bool = True) -> None:
    if arn.service != service:
        raise InvalidInput(field, f"{rule} (service is {arn.service!r}, not {service!r})")
    if region and not arn.region:
        raise InvalidInput(field, f"{rule} (the region is missing)")
    if not region and arn.region:
        raise InvalidInput(field, f"{rule} (IAM ARNs have no region, got {arn.region!r})")
    if not arn.account:
        raise InvalidInput(field, f"{rule} (the account id is missing)")


def parse_secret_arn(value: object, *, field: str = "secret_arn") -> Arn:
    """Parse the full ARN of a Secrets Manager secret, including its 6-character suffix.

    Cross-account GetSecretValue needs the full ARN, so a name or partial ARN
    (without the random suffix) is refused.
    """
    arn = parse_arn(value, field=field)
    _expect(arn, field=field, service="secretsmanager", rule=SECRET_ARN_RULE)
    if not arn.raw.split(":", 5)[5].startswith("secret:"):
        raise InvalidInput(field, SECRET_ARN_RULE)
    name_and_suffix = arn.resource_id
    if not _SECRET_NAME_RE.fullmatch(name_and_suffix):
        raise InvalidInput(
            field, f"{SECRET_ARN_RULE}; a secret name uses only letters, digits and /_+=.@-"
        )
    if len(name_and_suffix) < 8 or not _SECRET_SUFFIX_RE.fullmatch(name_and_suffix[-7:]):
        raise InvalidInput(
            field,
            f"{SECRET_ARN_RULE}; the full ARN with the '-' and 6 random characters after the name "
            "is required for cross-account access",
        )
    return arn


def parse_kms_key_arn(value: object, *, field: str = "kms_key_arn") -> Arn:
    """Parse a KMS key ARN (``key/<uuid>``, ``key/mrk-...``) or alias ARN (``alias/<name>``)."""
    arn = parse_arn(value, field=field)
    _expect(arn, field=field, service="kms", rule=KMS_KEY_ARN_RULE)
    resource = arn.raw.split(":", 5)[5]
    if resource.startswith("key/"):
        if not _KEY_ID_RE.fullmatch(arn.resource_id):
            raise InvalidInput(
                field, f"{KMS_KEY_ARN_RULE}; a key id is a lower-case UUID or mrk-<32 hex digits>"
            )
    elif resource.startswith("alias/"):
        if not _ALIAS_RE.fullmatch(arn.resource_id):
            raise InvalidInput(
                field, f"{KMS_KEY_ARN_RULE}; an alias name uses only letters, digits and /_-"
            )
    else:
        raise InvalidInput(field, KMS_KEY_ARN_RULE)
    return arn


def is_key_id_arn(arn: Arn) -> bool:
    """True when ``arn`` names a key by id (``key/...``), not through an alias."""
    return arn.service == "kms" and arn.resource_type == "key" and arn.raw.split(":", 5)[5].startswith("key/")


def parse_role_arn(value: object, *, field: str) -> Arn:
    """Parse an IAM role ARN; the role name must follow IAM's role-name rules.

    ``resource_id`` keeps any path (``path/to/name``); use ``role_name_of`` for the name.
    """
    from provisioning.names import validate_role_name  # names imports this module

    arn = parse_arn(value, field=field)
    _expect(arn, field=field, service="iam", rule=ROLE_ARN_RULE, region=False)
    resource = arn.raw.split(":", 5)[5]
    if not resource.startswith("role/"):
        raise InvalidInput(field, ROLE_ARN_RULE)
    path_and_name = resource[len("role"):]
    path, _, name = path_and_name.rpartition("/")
    if not _ROLE_PATH_RE.fullmatch(path + "/") or len(path) + 1 > 512:
        raise InvalidInput(field, f"{ROLE_ARN_RULE}; the role path is not valid")
    try:
        validate_role_name(name, field=field)
    except InvalidInput as exc:
        raise InvalidInput(field, f"{ROLE_ARN_RULE}; the role name {exc.rule}") from None
    return arn


def role_name_of(arn: Arn) -> str:
    """The role name (last path segment) of a parsed role ARN."""
    return arn.resource_id.rpartition("/")[2]


def parse_replication_instance_arn(value: object, *, field: str = "replication_instance_arn") -> Arn:
    """Parse a DMS replication instance ARN ``arn:aws:dms:<region>:<account>:rep:<id>``."""
    arn = parse_arn(value, field=field)
    _expect(arn, field=field, service="dms", rule=REPLICATION_INSTANCE_ARN_RULE)
    resource = arn.raw.split(":", 5)[5]
    if not resource.startswith("rep:"):
        raise InvalidInput(field, REPLICATION_INSTANCE_ARN_RULE)
    rep_id = arn.resource_id
    if not _DMS_ID_RE.fullmatch(rep_id) or "--" in rep_id:
        raise InvalidInput(
            field,
            f"{REPLICATION_INSTANCE_ARN_RULE}; the id uses letters, digits and single hyphens "
            "and neither starts nor ends with a hyphen",
        )
    return arn
