"""{% rule_decisions_of request as name %}: the rules' approvals of a request (one query)."""
from django import template

from requests_app.selectors import rule_decisions_of as _rule_decisions_of

register = template.Library()


@register.simple_tag
def rule_decisions_of(request):
    return _rule_decisions_of(request)
