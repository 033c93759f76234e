"""Template filters of the portal's pages."""
import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Indented JSON for a <pre> block; the template still escapes it."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None
