"""What the OpenAPI schema adds to what drf-spectacular reads off the serializers.

Every text the API takes is a DRF ``CharField``, which refuses a NUL
character (the database cannot store one) and strips leading and trailing
whitespace before it checks that a required text is not blank. The schema
says so with a ``pattern`` on every such string, so what it allows is what
the server accepts: no NUL anywhere, and, where a text may not be blank, at
least one character that is not whitespace. A blank-allowed pattern field's
default moves out of its pattern branch, where it would not be valid.

Every operation may also answer 429 (``requests_app.throttling``): the
schema says so, with ``Retry-After``.
"""
from __future__ import annotations

import sys

# The characters ``str.strip()`` (so DRF's trim_whitespace) removes, listed
# rather than written ``\\s``: regex engines disagree on what ``\\s`` means.
_WHITESPACE = "".join(chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace())


def _escape(chars: str) -> str:
    return "".join(f"\\u{ord(ch):04x}" for ch in chars)


NO_NUL = "^[^\\u0000]*$"
NOT_BLANK_NO_NUL = f"^[^\\u0000]*[^\\u0000{_escape(_WHITESPACE)}][^\\u0000]*$"


def _constrain(schema: dict) -> None:
    """Give a free-text string schema the pattern the server applies; recurse into objects and arrays."""
    if not isinstance(schema, dict):
        return
    # drf-spectacular writes a blank-allowed pattern field as oneOf [pattern,
    # empty] with the blank default inside the pattern branch, where it is
    # not valid: the default belongs to the field.
    for branch in schema.get("oneOf") or ():
        if isinstance(branch, dict) and "default" in branch:
            schema.setdefault("default", branch.pop("default"))
    if schema.get("type") == "string" and not ({"enum", "format", "pattern"} & set(schema)):
        schema["pattern"] = NOT_BLANK_NO_NUL if schema.get("minLength", 0) >= 1 else NO_NUL
    for nested in (schema.get("properties") or {}).values():
        _constrain(nested)
    _constrain(schema.get("items"))


def constrain_text_inputs(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: patterns on the strings clients send.

    The components request bodies refer to, and query parameters; answers
    are left as they are.
    """
    components = result.get("components", {}).get("schemas") or {}
    bodies: set[str] = set()
    for operations in (result.get("paths") or {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query":
                    _constrain(parameter.get("schema"))
            for content in (operation.get("requestBody") or {}).get("content", {}).values():
                reference = (content.get("schema") or {}).get("$ref", "")
                if reference.startswith("#/components/schemas/"):
                    bodies.add(reference.rsplit("/", 1)[1])
    # A body's nested objects (the grants of a multi-grant request) are
    # components of their own: constrain every component a body reaches.
    pending, seen = sorted(bodies), set()
    while pending:
        name = pending.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        pending.extend(_references(components[name]))
    for name in sorted(seen):
        _constrain(components.get(name))
    return result


def _references(schema) -> list[str]:
    """The component names ``schema`` refers to, at any depth."""
    if isinstance(schema, dict):
        reference = str(schema.get("$ref", ""))
        found = [reference.rsplit("/", 1)[1]] if reference.startswith("#/components/schemas/") else []
        return found + [name for value in schema.values() for name in _references(value)]
    if isinstance(schema, list):
        return [name for value in schema for name in _references(value)]
    return []


RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 1},
}


def document_throttling(result, generator, request, public):
    """Every API operation may answer 429 (``requests_app.throttling``): say so, with ``Retry-After``."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation["responses"].setdefault(
                "429",
                {
                    "description": "Too many calls: the per-user rate limit, or the stricter one on calls that make "
                    "the portal call AWS. Nothing was done; try again after `Retry-After` seconds.",
                    "headers": {"Retry-After": RETRY_AFTER},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            )
    return result
