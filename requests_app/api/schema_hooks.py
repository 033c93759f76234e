"""Additions to the generated OpenAPI document that hold for every operation."""
from __future__ import annotations

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
