"""Where to find an audit event's AWS calls in CloudTrail.

Step events carry the request ids of the step's AWS calls
(``details.aws_request_ids``) and, since the calls are recorded with them,
each call's CloudTrail event source, event name and region
(``details.aws_calls``). With the account that was called (from the event's
target ARN, else its account) and the time, an auditor finds the CloudTrail
event: ``aws cloudtrail lookup-events`` by event name in that account and
region around that time, then the record whose ``requestID`` matches (or one
query on ``requestID`` in CloudTrail Lake or Athena).
"""
from __future__ import annotations

import re
from typing import Any

_ACCOUNT_IN_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")


def _account_of(event: Any) -> str | None:
    match = _ACCOUNT_IN_ARN.match(getattr(event, "target_arn", "") or "")
    if match:
        return match.group(1)
    account = getattr(event, "account", None) if getattr(event, "account_id", None) else None
    return account.account_id if account is not None else None


def cloudtrail_hints(event: Any) -> list[dict[str, Any]]:
    """One lookup hint per AWS request id of ``event`` (an AuditEvent)."""
    details = event.details if isinstance(event.details, dict) else {}
    request_ids = details.get("aws_request_ids") or []
    if not request_ids:
        return []
    calls = {
        call.get("request_id"): call for call in details.get("aws_calls") or [] if isinstance(call, dict)
    }
    account = _account_of(event)
    hints = []
    for request_id in request_ids:
        call = calls.get(request_id, {})
        hints.append(
            {
                "request_id": request_id,
                "event_source": call.get("event_source"),
                "event_name": call.get("event_name"),
                "account": account,
                "region": call.get("region"),
                "event_time": event.created_at.isoformat(),
            }
        )
    return hints
