"""A file of requests to file, in YAML or JSON: one request (a mapping), a list
of separate requests, or one multi-grant request (a mapping with ``grants``).

Keys are the API's field names (``POST /api/v1/requests/``; for a multi-grant
request, ``POST /api/v1/request-sets/``: the request's own fields once, each
grant's fields in an item of ``grants``). The file is read and checked whole,
for its shape only, before anything is filed, so a typo in the tenth entry
files none, rather than nine; the rules (which fields are required, what
values are valid, how many grants) are the API's.
"""
from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import yaml

from dms_access_cli.errors import UsageProblem

# The body of POST /api/v1/requests/ (a test holds this to requests_app/grant_input.py).
SUBMIT_FIELDS = (
    "datalake_account",
    "secret_arn",
    "kms_key_arn",
    "engine",
    "endpoint_identifier",
    "endpoint_type",
    "database_name",
    "role_name",
    "replication_instance_arn",
    "justification",
    "expires_at",
)
# A multi-grant request: its own fields, given once, and each grant's (a test holds both to requests_app/grant_input.py).
SET_FIELDS = ("datalake_account", "justification", "expires_at")
GRANT_FIELDS = tuple(name for name in SUBMIT_FIELDS if name not in SET_FIELDS)


@dataclass(frozen=True)
class RequestFile:
    """What a file asks for: separate ``requests``, or one multi-grant request (``request_set``)."""

    requests: list[dict[str, Any]] | None = None
    request_set: dict[str, Any] | None = None


class _TextLoader(yaml.SafeLoader):
    """YAML whose unquoted scalars stay the text written: every field of the API is a string, and
    YAML 1.1 would read the account id 011111111111 as an octal number and a time as a datetime."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag.rsplit(":", 1)[-1] not in ("int", "float", "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_requests(path: Path) -> list[dict[str, Any]]:
    """The separate requests of a file (a multi-grant request's file is refused)."""
    read = read_request_file(path)
    if read.requests is None:
        raise UsageProblem(f"{path} holds a multi-grant request (grants:), not separate requests.")
    return read.requests


def read_request_file(path: Path) -> RequestFile:
    data = _load(path)
    if isinstance(data, dict) and "grants" in data:
        return RequestFile(request_set=_checked_set(path, data))
    entries = data if isinstance(data, list) else [data]
    if not entries:
        raise UsageProblem(f"{path} holds no request.")
    problems = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            problems.append(f"request {number}: not a mapping of field names to values")
            continue
        if "grants" in entry:
            problems.append(f"request {number}: a multi-grant request (grants:) is a file of its own")
            continue
        unknown = sorted(set(map(str, entry)) - set(SUBMIT_FIELDS))
        if unknown:
            problems.append(f"request {number}: unknown field(s) {', '.join(unknown)}")
    if problems:
        raise UsageProblem(
            f"{path}:\n  " + "\n  ".join(problems) + f"\n  (fields: {', '.join(SUBMIT_FIELDS)})"
        )
    return RequestFile(requests=entries)


def _load(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageProblem(f"Cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.load(text, Loader=_TextLoader)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageProblem(f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None


def _checked_set(path: Path, data: dict) -> dict[str, Any]:
    """A multi-grant request's shape: its own fields, and ``grants`` a non-empty list of mappings of a grant's fields."""
    problems = []
    for name in sorted(set(map(str, data)) - {"grants", *SET_FIELDS}):
        where = "belongs to each grant: put it in every item of grants" if name in GRANT_FIELDS else "is not a field"
        problems.append(f"{name}: {where}")
    grants = data["grants"]
    if not isinstance(grants, list) or not grants:
        problems.append("grants: must be a list of grants, one mapping each, at least one")
        grants = []
    for index, grant in enumerate(grants):
        # Numbered from 0, as the API names a grant in its errors (grants.0.engine).
        if not isinstance(grant, dict):
            problems.append(f"grants.{index}: not a mapping of field names to values")
            continue
        for name in sorted(set(map(str, grant)) - set(GRANT_FIELDS)):
            where = "is the request's own: give it once, beside grants" if name in SET_FIELDS else "is not a field of a grant"
            problems.append(f"grants.{index}.{name}: {where}")
    if problems:
        raise UsageProblem(
            f"{path} (a multi-grant request):\n  " + "\n  ".join(problems)
            + f"\n  (the request's fields: {', '.join(SET_FIELDS)}; each grant's: {', '.join(GRANT_FIELDS)})"
        )
    return data
