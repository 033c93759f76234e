"""Template filters of the portal's pages."""
from django import template

from requests_app.web.policy_diff import policy_json

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Indented JSON for a <pre> block, policy keys in the usual order; the template still escapes it."""
    return policy_json(value)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None
