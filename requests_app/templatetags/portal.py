"""Template filters of the portal's pages."""
from django import template

from requests_app.cloudtrail import cloudtrail_hints as _cloudtrail_hints
from requests_app.web.policy_diff import policy_json

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
