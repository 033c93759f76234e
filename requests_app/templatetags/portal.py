"""Template filters of the portal's pages."""
from django import template

from requests_app.cloudtrail import cloudtrail_hints as _cloudtrail_hints
from requests_app.web.policy_diff import policy_json
from requests_app.web.waiting import waiting_summary as _waiting_summary

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Indented JSON for a <pre> block, policy keys in the usual order; the template still escapes it."""
    return policy_json(value)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None


@register.filter
def cloudtrail_hints(event) -> list:
    """Where CloudTrail records each of the event's AWS calls (requests_app.cloudtrail)."""
    return _cloudtrail_hints(event)


@register.filter
def waiting_summary(request) -> str:
    """How long a pending (or expired) request waited, its reminders and escalation (requests_app.web.waiting)."""
    return _waiting_summary(request)
