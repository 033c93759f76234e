"""The server-rendered pages.

Each view parses what the browser sent, calls one selector or one service,
and renders. Whether a button shows is decided by the same permission
functions the services check again, so a page never offers what the service
would refuse for the person's role.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import ValidationError as BodyInvalid

from requests_app import selectors, services, visibility
from requests_app.actions import ACTIONS, action_arguments, offered_actions
from requests_app.errors import DomainError, NotAllowed, NotFoundForUser, PlanChanged, ValidationFailed
from requests_app.grant_input import FIELD_NAMES, arguments_from
from requests_app.membership import ACCOUNT_PREFETCH, accounts_requested_by
from requests_app.models import AccessRequest, AwsAccount, RequestState
from requests_app.pagination import cursor_page
from requests_app.permissions import (
    allowed_actions, approves_for_any, can_approve, can_file, can_see_remote_documents, remember_standing,
)
from requests_app.throttling import aws_call_refusal
from requests_app.web import audit_export as exports
from requests_app.web import request_sets
from requests_app.web.forms import AccessRequestForm, AuditFilterForm
from requests_app.web.lifecycle import lifecycle_context
from requests_app.web.policy_diff import policy_diffs_for
from requests_app.web.progress import POLLING_STATES, WAITING_STATES, progress_for

PAGE_SIZE = 25


# Actions that make the portal call AWS (now, or through the workers): rate-limited per user.


def _page(request, items, size: int = PAGE_SIZE):
    return Paginator(items, size).get_page(request.GET.get("page"))


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _detail(request, request_id: int) -> AccessRequest:
    try:
        return selectors.request_detail_for(user=request.user, request_id=request_id)
    except NotFoundForUser:
        raise Http404("No such request.") from None


@login_required
@require_GET
def dashboard(request):
    mine = selectors.requests_visible_to(user=request.user).filter(requester=request.user)
    counts = selectors.dashboard_counts_for(user=request.user)
    # Panels by role: nobody sees a queue they can never be asked into, or a
    # "my requests" list when they cannot file and never did.
    approves = approves_for_any(request.user)
    files = can_file(request.user)
    my_requests = _page(request, mine, 10)
    return render(
        request,
        "web/dashboard.html",
        {
            "count_rows": [(state, label, counts["visible"][state]) for state, label in RequestState.choices],
            "awaiting_count": counts["awaiting_my_approval"],
            "my_requests": my_requests,
            "awaiting": list(selectors.approval_queue_for(user=request.user)[:10]) if approves else [],
            "approves": approves,
            "files": files,
            "shows_mine": files or my_requests.paginator.count > 0,
            "oldest_pending": selectors.oldest_pending_by_account(user=request.user) if approves else [],
        },
    )


@login_required
@require_GET
def request_list(request):
    requests = selectors.requests_visible_to(user=request.user)
    state = request.GET.get("state", "")
    if state in RequestState.values:
        requests = requests.filter(state=state)
    return render(
        request,
        "web/request_list.html",
        {
            "page": _page(request, requests),
            "state": state,
            "states": RequestState.choices,
            "query": f"state={state}" if state in RequestState.values else "",
        },
    )


def _request_form(request, data=None) -> AccessRequestForm:
    return AccessRequestForm(
        data,
        datalake_accounts=accounts_requested_by(request.user).filter(is_datalake=True).order_by("name"),
        validate_url=reverse("web:request_validate"),
    )


@login_required
def request_new(request):
    if request_sets.files_several(request):
        return request_sets.request_set_new(request)
    if request.method != "POST":
        return render(request, "web/request_form.html", {"form": _request_form(request)})
    if not can_file(request.user):
        # The empty form says why: no DataLake account lists them. Nothing they sent is read.
        return render(request, "web/request_form.html", {"form": _request_form(request)}, status=403)
    if (refused := aws_call_refusal(request)) is not None:
        return refused
    form = _request_form(request, request.POST)
    if form.is_valid():
        try:
            created = services.access_request_submit(
                requester=request.user, source_ip=_client_ip(request), **arguments_from(form.cleaned_data)
            )
        except ValidationFailed as failure:
            for field, field_messages in failure.errors.items():
                for message in field_messages:
                    form.add_error(field if field in form.fields else None, message)
        except DomainError as error:
            form.add_error(None, error.message)
        else:
            if created.preflight_status == AccessRequest.PreflightStatus.PASSED:
                messages.success(request, f"Request #{created.pk} filed; preflight passed. It now waits for approval.")
            else:
                messages.warning(request, f"Request #{created.pk} filed, but preflight failed: see the diagnosis below.")
            return redirect("web:request_detail", request_id=created.pk)
    return render(request, "web/request_form.html", {"form": form}, status=400)


@login_required
@require_POST
def request_validate(request):
    """Check the whole form, answer with the messages of the field that changed.

    The other fields that hold a value get their current messages too (out of
    band): a change to one field can make another valid or invalid (the
    account and the ARNs that must name it), and a mark stays only while its
    field's value is wrong. Empty fields nobody reached yet stay quiet.
    """
    if not can_file(request.user):
        return HttpResponse(status=403)
    field = request.headers.get("HX-Trigger-Name", "")
    if field not in FIELD_NAMES:
        return HttpResponse(status=400)
    form = _request_form(request, request.POST)
    form.is_valid()
    others = [
        (name, form.errors.get(name, []))
        for name in form.fields
        if name != field and (request.POST.get(name) or "").strip()
    ]
    return render(
        request, "web/partials/field_errors.html", {"errors": form.errors.get(field, []), "others": others}
    )


@login_required
@require_GET
def request_detail(request, request_id: int):
    access_request = _detail(request, request_id)
    return render(request, "web/request_detail.html", _detail_context(request, access_request))


@login_required
@require_GET
def request_live(request, request_id: int):
    """The part of the detail page that changes while the workers run.

    ``?shown=<state>`` asks only whether the state moved on: 204 (htmx keeps
    the page as it is, a comment being typed included) while it has not.
    """
    access_request = _detail(request, request_id)
    if request.GET.get("shown") == access_request.state and access_request.state in WAITING_STATES:
        return HttpResponse(status=204)
    return render(request, "web/partials/request_live.html", _detail_context(request, access_request))


@login_required
@require_GET
def request_policies(request, request_id: int):
    """The before/after diff of the two remote policies (may read AWS, so loaded on its own).

    For the Remote account's approvers and administrators only: anyone else
    who sees the request is refused before AWS is read.
    """
    access_request = _detail(request, request_id)
    if not can_see_remote_documents(request.user, access_request):
        return HttpResponseForbidden("The Remote account's policies are shown to its approvers.")
    if (refused := aws_call_refusal(request)) is not None:
        return refused
    return render(
        request,
        "web/partials/policy_diffs.html",
        {"request_obj": access_request, "diffs": policy_diffs_for(access_request)},
    )


def _detail_context(request, access_request: AccessRequest) -> dict:
    return {
        "request_obj": access_request,
        "progress": progress_for(access_request, user=request.user),
        "actions": _actions(request.user, access_request),
        "polling": access_request.state in POLLING_STATES,
        "waiting": access_request.state in WAITING_STATES,
        "plan_documents": _plan_documents(visibility.plan_for(request.user, access_request)),
        "preflight": visibility.preflight_for(request.user, access_request),
        "remote_documents": can_see_remote_documents(request.user, access_request),
        "key_arn": visibility.kms_key_arn_for(request.user, access_request),
        "secret_name": access_request.secret_arn.split(":secret:", 1)[-1],
        "key_name": visibility.kms_key_arn_for(request.user, access_request).rsplit(":", 1)[-1],
        **lifecycle_context(request.user, access_request),
        **_set_context(request.user, access_request),
    }


def _set_context(user, access_request: AccessRequest) -> dict:
    """For a grant of a multi-grant request: its set, how many grants it has,
    and whether this person approves it there (a grant is never approved alone)."""
    if access_request.request_set_id is None:
        return {}
    return {
        "set_grant_count": AccessRequest.objects.filter(request_set_id=access_request.request_set_id).count(),
        "approve_via_set": access_request.state in (RequestState.PENDING_APPROVAL, RequestState.NEEDS_REAPPROVAL)
        and can_approve(user, access_request),
    }


# The plan's documents in the runbook's order, with where each one goes.
PLAN_DOCUMENTS = (
    ("role_trust_policy", "Role trust policy", "DataLake account: who may assume the role"),
    ("role_inline_policy", "Role inline policy", "DataLake account: what the role may do"),
    ("secret_policy_statement", "Secret policy statement", "Remote account: merged into the secret's resource policy"),
    ("key_policy_statement", "Key policy statement", "Remote account: merged into the KMS key policy"),
    ("endpoint_settings", "Endpoint settings", "DataLake account: the DMS endpoint"),
)


def _actions(user, access_request: AccessRequest) -> set[str]:
    # The API's actions and the page-only ones (re-running preflight).
    return offered_actions(user, access_request, lifecycle=False, pages=True)


def _plan_documents(plan: dict) -> list[tuple[str, str, dict]]:
    plan = plan or {}
    return [(title, where, plan[key]) for key, title, where in PLAN_DOCUMENTS if key in plan]


@login_required
@require_POST
def request_action(request, request_id: int, action: str):
    """One action of the table (``requests_app.actions``): who may is checked
    before the body is read; a refusal re-renders the request's page with
    its reason (403, or 409 when the plan changed since the page showed it)."""
    found = ACTIONS.get(action)
    if found is None:
        raise Http404("No such action.")
    if found.calls_aws and (refused := aws_call_refusal(request)) is not None:
        return refused
    failed = f"Could not {found.verb} request #{request_id}"
    try:
        found.check(user=request.user, request_id=request_id)
        arguments = action_arguments(found, request.POST)
        updated = found.service(request_id=request_id, user=request.user, source_ip=_client_ip(request), **arguments)
    except NotFoundForUser:
        raise Http404("No such request.") from None
    except PlanChanged:
        messages.error(request, f"{failed}: the plan changed since you opened it. Review the new plan and its diff below, then decide again.")
        return _refused(request, request_id, status=409)
    except NotAllowed as error:
        messages.error(request, f"{failed}: {error.message}")
        return _refused(request, request_id, status=403)
    except BodyInvalid as invalid:
        problems = "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in invalid.detail.items())
        messages.error(request, f"{failed}: {problems}")
    except DomainError as error:
        messages.error(request, f"{failed}: {error.message}")
    else:
        state = updated.get_state_display().lower()
        messages.success(request, f"Request #{request_id}: {found.done} It is now {state}.")
    return redirect(_next_url(request) or reverse("web:request_detail", args=[request_id]))


def _refused(request, request_id: int, *, status: int):
    """The request's page as it is now, with the refusal's message."""
    return render(request, "web/request_detail.html", _detail_context(request, _detail(request, request_id)), status=status)


def _next_url(request) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return ""


@login_required
@require_GET
def approval_queue(request):
    # The queue is built from the accounts the person approves for and leaves
    # out the plans they decided on: handed to the permission functions, that
    # makes the buttons of every row cost no query.
    accounts = selectors.approver_account_ids(user=request.user)
    queue = selectors.approval_queue_for(user=request.user, approver_accounts=accounts)
    # The accounts' encrypted external ids are for AWS, not for this page: not decrypted for every row.
    page = _page(request, queue.defer("datalake_account__external_id", "remote_account__external_id"))
    rows = []
    for item in page:
        remember_standing(request.user, item, approves_for=accounts, decided=False)
        rows.append((item, allowed_actions(request.user, item)))
    # A row is a Remote account's request the person approves for.
    approves = bool(rows) or approves_for_any(request.user)
    return render(request, "web/approval_queue.html", {"page": page, "rows": rows, "approves": approves})


@login_required
@require_GET
def audit_log(request):
    form = AuditFilterForm(request.GET or None)
    # The page shows each event's account id: its encrypted external id is not decrypted for every row.
    events = selectors.audit_events_visible_to(user=request.user, **form.selector_filters()).defer("account__external_id")
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "web/audit_log.html",
        {
            "form": form, "page": cursor_page(request, events), "query": query.urlencode(),
            "chain": selectors.audit_chain_status(),
        },
    )


@login_required
@require_GET
def audit_export(request, fmt: str):
    if fmt not in exports.FORMATS:
        raise Http404("No such export format.")
    form = AuditFilterForm(request.GET or None)
    events = selectors.audit_events_visible_to(user=request.user, **form.selector_filters()).order_by("id")
    return exports.streaming_export(events, fmt, user=request.user)


@login_required
@require_GET
def account_list(request):
    accounts = AwsAccount.objects.prefetch_related(*ACCOUNT_PREFETCH).order_by("name")
    return render(request, "web/accounts.html", {"page": _page(request, accounts, 50)})
