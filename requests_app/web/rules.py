"""The approval rules pages: the rules of the Remote accounts a person
approves for, proposing one, and deciding a proposed version.

The bodies are parsed by the API's parsers (``actions.RULE_ACTIONS``), so a
page and the API accept and refuse the same things. Who may is checked
before the body is read; the services check again under the rule's lock.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError as BodyInvalid

from provisioning.names import ENGINES
from requests_app import selectors, services
from requests_app.actions import (
    RULE_ACTIONS,
    RuleProposeSerializer,
    check_rule_proposal,
    offered_rule_actions,
    rule_action_arguments,
)
from requests_app.errors import DomainError, NotAllowed, NotFoundForUser, ValidationFailed
from requests_app.membership import accounts_approved_by
from requests_app.models import AwsAccount
from requests_app.permissions import approves_for_any


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _messages(found) -> list[str]:
    # A list field's errors come per item ({0: [...]}): the page shows the words.
    if isinstance(found, dict):
        return [message for value in found.values() for message in _messages(value)]
    if isinstance(found, (list, tuple)):
        return [message for value in found for message in _messages(value)]
    return [str(found)]


def _problems(errors: dict) -> dict[str, str]:
    return {field: " ".join(_messages(found)) for field, found in errors.items()}


def _form_choices(user) -> dict:
    return {
        "remote_accounts": accounts_approved_by(user).filter(is_remote=True).order_by("name"),
        "datalake_accounts": AwsAccount.objects.filter(is_datalake=True).order_by("name"),
        "engines": sorted(ENGINES),
    }


def _list_page(request, *, errors: dict | None = None, status: int = 200):
    rules = [(rule, *selectors.rule_versions_of(rule)) for rule in selectors.rules_visible_to(user=request.user)]
    context = {
        "rules": rules,
        "may_propose": approves_for_any(request.user),
        "errors": errors or {},
        "posted": request.POST if request.method == "POST" else None,
        **_form_choices(request.user),
    }
    return render(request, "web/rules.html", context, status=status)


@login_required
def rule_list(request):
    if request.method != "POST":
        return _list_page(request)
    try:
        check_rule_proposal(user=request.user, data=request.POST)
    except NotAllowed as error:
        messages.error(request, error.message)
        return _list_page(request, status=403)
    body = RuleProposeSerializer(data=request.POST)
    if not body.is_valid():
        return _list_page(request, errors=_problems(body.errors), status=400)
    try:
        version = services.rule_propose(user=request.user, source_ip=_client_ip(request), **body.validated_data)
    except ValidationFailed as failure:
        return _list_page(request, errors=_problems(failure.errors), status=400)
    except NotAllowed as error:
        messages.error(request, error.message)
        return _list_page(request, status=403)
    messages.success(
        request, f"Rule “{version.rule.name}” proposed: it takes effect once the other approvers approve it."
    )
    return redirect("web:rule_detail", rule_id=version.rule_id)


def _detail_page(request, rule_id: int, *, status: int = 200):
    try:
        rule = selectors.rule_detail_for(user=request.user, rule_id=rule_id)
    except NotFoundForUser:
        raise Http404("No such rule.") from None
    in_force, proposed = selectors.rule_versions_of(rule)
    context = {
        "rule": rule,
        "in_force": in_force,
        "proposed": proposed,
        "versions": list(rule.versions.all()),
        "actions": offered_rule_actions(request.user, rule, in_force=in_force, proposed=proposed),
        "current_criteria": in_force or proposed,
        **_form_choices(request.user),
    }
    return render(request, "web/rule_detail.html", context, status=status)


@login_required
def rule_detail(request, rule_id: int):
    return _detail_page(request, rule_id)


@login_required
@require_POST
def rule_action(request, rule_id: int, action: str):
    found = RULE_ACTIONS.get(action)
    if found is None:
        raise Http404("No such action.")
    failed = f"Could not {action} rule #{rule_id}"
    try:
        found.check(user=request.user, rule_id=rule_id)
        arguments = rule_action_arguments(found, request.POST)
        found.service(rule_id=rule_id, user=request.user, source_ip=_client_ip(request), **arguments)
    except NotFoundForUser:
        raise Http404("No such rule.") from None
    except NotAllowed as error:
        messages.error(request, f"{failed}: {error.message}")
        return _detail_page(request, rule_id, status=403)
    except BodyInvalid as invalid:
        problems = "; ".join(f"{field}: {message}" for field, message in _problems(invalid.detail).items())
        messages.error(request, f"{failed}: {problems}")
    except ValidationFailed as failure:
        problems = "; ".join(f"{field}: {message}" for field, message in _problems(failure.errors).items())
        messages.error(request, f"{failed}: {problems}")
    except DomainError as error:
        messages.error(request, f"{failed}: {error.message}")
    else:
        messages.success(request, found.done)
    return redirect(reverse("web:rule_detail", args=[rule_id]))
