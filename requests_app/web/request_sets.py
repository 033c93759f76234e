"""The pages of a request naming several grants: its grants, its one plan,
and approving, rejecting or revoking it at once.

The bodies are parsed by the API's parsers (``actions.SET_ACTIONS``), so a
page and the API accept and refuse the same things. Who may is checked
before the body is read; the services check again under each grant's lock.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError as BodyInvalid

from requests_app import selectors
from requests_app.actions import SET_ACTIONS, offered_set_actions, set_action_arguments
from requests_app.api.request_sets import set_plan_for
from requests_app.errors import DomainError, NotFoundForUser


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


@login_required
def request_set_detail(request, set_id: int):
    try:
        request_set, grants = selectors.request_set_detail_for(user=request.user, set_id=set_id)
    except NotFoundForUser:
        raise Http404("No such request") from None
    context = {
        "request_set": request_set,
        "grants": grants,
        "plan": set_plan_for(request.user, request_set),
        "actions": offered_set_actions(request.user, grants),
    }
    return render(request, "web/request_set_detail.html", context)


@login_required
@require_POST
def request_set_action(request, set_id: int, action: str):
    definition = SET_ACTIONS.get(action)
    if definition is None:
        raise Http404("No such action")
    try:
        definition.check(user=request.user, set_id=set_id)
        definition.service(set_id=set_id, user=request.user, source_ip=_client_ip(request),
                           **set_action_arguments(definition, request.POST))  # fmt: skip
    except NotFoundForUser:
        raise Http404("No such request") from None
    except BodyInvalid as error:
        messages.error(request, f"Could not {action} request #{set_id}: {error.detail}")
    except DomainError as error:
        messages.error(request, f"Could not {action} request #{set_id}: {error}")
    else:
        messages.success(request, definition.done)
    return redirect(reverse("web:request_set_detail", args=[set_id]))
