"""A file of requests to file: one request (a mapping) or a list of them, in YAML or JSON.

Keys are the API's field names (``POST /api/v1/requests/``). The file is read
and checked whole before anything is filed, so a typo in the tenth entry
files none, rather than nine.
"""
from __future__ import annotations

import json
from pathlib import Path
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


class _TextLoader(yaml.SafeLoader):
    """YAML whose unquoted scalars stay the text written: every field of the API is a string, and
    YAML 1.1 would read the account id 011111111111 as an octal number and a time as a datetime."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag.rsplit(":", 1)[-1] not in ("int", "float", "timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_requests(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageProblem(f"Cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.load(text, Loader=_TextLoader)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageProblem(f"{path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    entries = data if isinstance(data, list) else [data]
    if not entries:
        raise UsageProblem(f"{path} holds no request.")
    problems = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            problems.append(f"request {number}: not a mapping of field names to values")
            continue
        unknown = sorted(set(map(str, entry)) - set(SUBMIT_FIELDS))
        if unknown:
            problems.append(f"request {number}: unknown field(s) {', '.join(unknown)}")
    if problems:
        raise UsageProblem(
            f"{path}:\n  " + "\n  ".join(problems) + f"\n  (fields: {', '.join(SUBMIT_FIELDS)})"
        )
    return entries
