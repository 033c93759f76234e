"""Which deployment of the portal, and which of its requests, owns a resource.

Request ids are only unique inside one portal's database: a staging portal,
or a backup restored next to production, has its own request #42. So every
mark the portal leaves in AWS names both the deployment (its *instance id*,
``PORTAL_INSTANCE_ID``) and the request:

- roles and endpoints carry two tags, ``dms-access-portal:instance-id`` and
  ``dms-access-portal:request-id``; the provisioner roles' IAM conditions
  compare the first with the instance id they were deployed for;
- statements merged into secret and key policies have the Sid
  ``DmsAccessPortal<instance id>Request<request id>``.

An instance id is 1 to 32 lower-case letters and digits: a Sid may hold only
letters and digits, and with no upper case letter in the instance id the
``Request`` that follows it cannot be confused with part of it, so two
(instance, request) pairs never give the same Sid.

Marks made before instance ids existed (the request tag alone, the Sid
``DmsAccessPortal<request id>``) are recognised only by a portal whose
instance id is ``LEGACY_INSTANCE_ID``: the one deployment that made them
sets it when it upgrades. It adopts such a role or endpoint (adds its
instance tag) before it changes or deletes it, and replaces such a
statement by one with the new Sid when it merges, so its marks move to the
new form as grants are repaired or revoked.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from provisioning.errors import InvalidInput

if TYPE_CHECKING:
    from provisioning.spec import GrantSpec

# Tag naming the request a resource was created for.
OWNER_TAG_KEY = "dms-access-portal:request-id"
# Tag naming the portal deployment that created it.
INSTANCE_TAG_KEY = "dms-access-portal:instance-id"
# Prefix of every statement Sid the portal owns.
SID_PREFIX = "DmsAccessPortal"
# Between the instance id and the request id in a Sid.
SID_REQUEST_MARK = "Request"
INSTANCE_ID_PATTERN = re.compile(r"[a-z0-9]{1,32}")
INSTANCE_ID_RULE = "must be 1 to 32 lower-case letters (a-z) and digits (0-9)"
# The instance id under which marks made before instance ids existed count as one's own.
LEGACY_INSTANCE_ID = "legacy"


def validate_instance_id(value: object, *, field: str = "instance_id") -> str:
    """Return ``value`` if it is a valid instance id; raise InvalidInput otherwise."""
    if not isinstance(value, str) or not INSTANCE_ID_PATTERN.fullmatch(value):
        raise InvalidInput(field, INSTANCE_ID_RULE)
    return value


def _alnum(value: str) -> str:
    return "".join(ch for ch in value if ch.isascii() and ch.isalnum())


def statement_sid(instance_id: str, grant_id: str) -> str:
    """The Sid of the statements grant ``grant_id`` of portal ``instance_id`` owns."""
    return f"{SID_PREFIX}{validate_instance_id(instance_id)}{SID_REQUEST_MARK}{_alnum(grant_id)}"


def legacy_statement_sid(grant_id: str) -> str:
    """The Sid a portal without instance ids gave grant ``grant_id``'s statements."""
    return f"{SID_PREFIX}{_alnum(grant_id)}"


def owned_sids(spec: GrantSpec) -> tuple[str, ...]:
    """Every Sid that is ``spec``'s grant's: its own, then the legacy one if recognised."""
    if spec.instance_id == LEGACY_INSTANCE_ID:
        return (spec.statement_sid, legacy_statement_sid(spec.grant_id))
    return (spec.statement_sid,)


def owner_tags(spec: GrantSpec) -> list[dict[str, str]]:
    """The tags marking a resource as created by this portal for ``spec``'s grant."""
    return [
        {"Key": INSTANCE_TAG_KEY, "Value": spec.instance_id},
        {"Key": OWNER_TAG_KEY, "Value": spec.grant_id},
    ]


def instance_tag(spec: GrantSpec) -> list[dict[str, str]]:
    """The tag a legacy resource gets when this portal adopts it."""
    return [{"Key": INSTANCE_TAG_KEY, "Value": spec.instance_id}]


def is_owned(tags: Mapping[str, str], spec: GrantSpec) -> bool:
    """True when ``tags`` mark the resource as this portal's, for ``spec``'s grant."""
    if tags.get(OWNER_TAG_KEY) != spec.grant_id:
        return False
    instance = tags.get(INSTANCE_TAG_KEY)
    if instance is None:
        return spec.instance_id == LEGACY_INSTANCE_ID
    return instance == spec.instance_id


def needs_adoption(tags: Mapping[str, str], spec: GrantSpec) -> bool:
    """True for a resource of this grant made before instance ids (no instance tag yet)."""
    return is_owned(tags, spec) and INSTANCE_TAG_KEY not in tags


def describe_owner(tags: Mapping[str, str]) -> str:
    """Whose a resource is, in words, for error messages."""
    request = tags.get(OWNER_TAG_KEY)
    if request is None:
        return "someone outside the portal"
    instance = tags.get(INSTANCE_TAG_KEY)
    if instance is None:
        return f"request {request} of a portal without an instance id"
    return f"request {request} of the portal instance {instance}"
