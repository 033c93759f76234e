"""The pages of a request naming several grants: filing it, its grants, its
one plan, and approving, rejecting or revoking it at once.

Filing takes the request's own fields once and one row per grant, each row
built from ``grant_input.GRANT_INPUT`` (``forms.GrantForm``); the filing
service validates every grant and its errors, keyed ``grants.<index>.<field>``,
are shown on the row and field they name. Adding or removing a row is a plain
form post that shows the form again with everything typed so far.

The action bodies are parsed by the API's parsers (``actions.SET_ACTIONS``),
so a page and the API accept and refuse the same things. Who may is checked
before the body is read; the services check again under each grant's lock.
"""
from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError as BodyInvalid

from requests_app import permissions, selectors, services
from requests_app.actions import SET_ACTIONS, offered_set_actions, set_action_arguments
from requests_app.errors import DomainError, NotAllowed, NotFoundForUser, PlanChanged, ValidationFailed
from requests_app.membership import accounts_requested_by
from requests_app.models import AccessRequest, Decision, RequestState
from requests_app.services.request_sets import MAX_GRANTS
from requests_app.set_plans import AWAITING, set_plan_for
from requests_app.throttling import aws_call_refusal
from requests_app.validation import validate_request_input
from requests_app.web.forms import GRANTS_PREFIX, GrantFormSet, RequestSetForm

# How many grant rows the form opens with.
FIRST_ROWS = 2
ADD = "add_grant"
REMOVE = "remove_grant"


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


# --- filing --------------------------------------------------------------------


def files_several(request) -> bool:
    """Whether the new-request page is asked for the form naming several grants."""
    if request.method == "POST":
        return f"{GRANTS_PREFIX}-TOTAL_FORMS" in request.POST
    return request.GET.get("several") == "1"


def _datalake_accounts(request):
    return accounts_requested_by(request.user).filter(is_datalake=True).order_by("name")


def _form_page(request, set_form, grants, *, errors=(), status: int = 200):
    return render(
        request,
        "web/request_form.html",
        {
            "several": True,
            "form": set_form,
            "grants": grants,
            "page_errors": list(errors),
            "max_grants": MAX_GRANTS,
            "can_add": grants.total_form_count() < MAX_GRANTS,
        },
        status=status,
    )


def _validate_url() -> str:
    return reverse("web:request_set_validate")


def _set_form(request, data=None, **kwargs) -> RequestSetForm:
    return RequestSetForm(data, datalake_accounts=_datalake_accounts(request), validate_url=_validate_url(), **kwargs)


def _grant_forms(data=None, **kwargs):
    return GrantFormSet(data, prefix=GRANTS_PREFIX, form_kwargs={"validate_url": _validate_url()}, **kwargs)


def _empty_form_page(request, *, status: int = 200):
    return _form_page(request, _set_form(request), _grant_forms(initial=[{}] * FIRST_ROWS), status=status)


def _rows_changed(request, set_form: RequestSetForm, grants):
    """The form again, one row more or one fewer, with everything as typed (and no errors yet)."""
    rows = [form.raw_values() for form in grants.forms]
    if ADD in request.POST and len(rows) < MAX_GRANTS:
        rows.append({})
    elif REMOVE in request.POST and len(rows) > 1:
        try:
            del rows[int(request.POST[REMOVE])]
        except (ValueError, IndexError):
            pass
    shared = {name: request.POST.get(name, "") for name in set_form.fields}
    return _form_page(request, _set_form(request, initial=shared), _grant_forms(initial=rows))


def _place_errors(errors: dict[str, list[str]], set_form, filed_rows: list, page_errors: list[str]) -> None:
    """Each error of the filing service on the row and field it names
    (``grants.<index>.<field>``, ``index`` counting the rows filed), the
    request's own fields' on theirs, the rest above the form."""
    for key, field_messages in errors.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "grants" and parts[1].isdigit() and int(parts[1]) < len(filed_rows):
            form = filed_rows[int(parts[1])]
            for message in field_messages:
                form.add_error(parts[2] if parts[2] in form.fields else None, message)
        elif key in set_form.fields:
            for message in field_messages:
                set_form.add_error(key, message)
        else:
            page_errors.extend(field_messages)


def request_set_new(request):
    """The new-request page's form for several grants (``views.request_new`` hands it over)."""
    if request.method != "POST":
        return _empty_form_page(request)
    if not permissions.can_file(request.user):
        # The empty form says why: no DataLake account lists them. Nothing they sent is read.
        return _empty_form_page(request, status=403)
    set_form = _set_form(request, request.POST)
    grants = _grant_forms(request.POST)
    if ADD in request.POST or REMOVE in request.POST:
        return _rows_changed(request, set_form, grants)
    # A preflight per grant: the rows draw on the AWS-call budget, as the API's grants do.
    if (refused := aws_call_refusal(request, weight=grants.total_form_count())) is not None:
        return refused
    page_errors: list[str] = []
    parsed = set_form.is_valid()
    parsed = grants.is_valid() and parsed
    page_errors.extend(grants.non_form_errors())
    if parsed:
        # A row left empty is no grant (an added row nobody filled in).
        filed_rows = [form for form in grants.forms if form.has_changed()]
        try:
            created = services.request_set_submit(
                requester=request.user,
                source_ip=_client_ip(request),
                grants=[form.grant_arguments() for form in filed_rows],
                **set_form.shared_arguments(),
            )
        except ValidationFailed as failure:
            _place_errors(failure.errors, set_form, filed_rows, page_errors)
        except DomainError as error:
            page_errors.append(error.message)
        else:
            filed = list(created.grants.order_by("pk"))
            failed = [grant for grant in filed if grant.preflight_status != AccessRequest.PreflightStatus.PASSED]
            if failed:
                names = ", ".join(f"#{grant.pk} ({grant.endpoint_identifier})" for grant in failed)
                messages.warning(
                    request, f"Request set #{created.pk} filed with {len(filed)} grants, but preflight failed for {names}: see below."
                )
            else:
                messages.success(
                    request, f"Request set #{created.pk} filed with {len(filed)} grants; preflight passed for each. It now waits for approval."
                )
            return redirect("web:request_set_detail", set_id=created.pk)
    return _form_page(request, set_form, grants, errors=page_errors, status=400)


@login_required
@require_POST
def request_set_validate(request):
    """Check one field of the form naming several grants, as the single
    request's form does (``views.request_validate``): the field that changed
    gets its messages, the other filled-in fields of its row and the request's
    own fields theirs (out of band). A row is checked with the request's own
    fields; what no row breaks alone (one endpoint named twice) is told on filing."""
    if not permissions.can_file(request.user):
        return HttpResponse(status=403)
    field = request.headers.get("HX-Trigger-Name", "")
    set_form = _set_form(request, request.POST)
    grants = _grant_forms(request.POST)
    rows = grants.forms  # none when the management form is missing or broken
    named = re.fullmatch(rf"{GRANTS_PREFIX}-(\d+)-(\w+)", field)
    if named and int(named.group(1)) < len(rows) and named.group(2) in rows[int(named.group(1))].fields:
        row = rows[int(named.group(1))]
    elif field in set_form.fields and rows:
        # The request's own fields are checked with the first row filled in.
        row = next((form for form in rows if form.has_changed()), rows[0])
    else:
        return HttpResponse(status=400)
    set_form.is_valid()
    row.is_valid()
    errors: dict[str, list[str]] = {name: list(messages_) for name, messages_ in set_form.errors.items()}
    errors.update({row.add_prefix(name): list(messages_) for name, messages_ in row.errors.items()})
    try:
        validate_request_input(**set_form.shared_arguments(), **row.grant_arguments())
    except ValidationFailed as failure:
        for key, messages_ in failure.errors.items():
            name = key if key in set_form.fields else row.add_prefix(key) if key in row.fields else None
            if name is not None:
                known = errors.setdefault(name, [])
                known.extend(message for message in messages_ if message not in known)
    names = [*set_form.fields, *(row.add_prefix(name) for name in row.fields)]
    others = [(name, errors.get(name, [])) for name in names if name != field and (request.POST.get(name) or "").strip()]
    return render(request, "web/partials/field_errors.html", {"errors": errors.get(field, []), "others": others})


# --- the set's page ---------------------------------------------------------------

# Each grant's own documents, shown under its row of the plan.
GRANT_DOCUMENTS = (
    ("role_trust_policy", "Role trust policy", "DataLake account: who may assume the role"),
    ("role_inline_policy", "Role inline policy", "DataLake account: what the role may do"),
    ("endpoint_settings", "Endpoint settings", "DataLake account: the DMS endpoint"),
)


def _labelled_plan(plan: dict) -> dict:
    """The plan with each statement labelled by its grant (id and endpoint)
    and each grant's documents in the order the page shows them."""
    endpoints = {row["request"]: row["endpoint_identifier"] for row in plan["grants"]}

    def labelled(groups):
        return [
            {**group, "statements": [{**item, "endpoint": endpoints.get(item["request"], "")} for item in group["statements"]]}
            for group in groups
        ]

    grants = [
        {**row, "documents": [(title, where, row[key]) for key, title, where in GRANT_DOCUMENTS if row.get(key)]}
        for row in plan["grants"]
    ]
    return {**plan, "grants": grants, "secrets": labelled(plan["secrets"]), "keys": labelled(plan["keys"])}


def _remember_decisions(user, grants: list[AccessRequest]) -> None:
    """Whether ``user`` decided on each grant's current plan, read in one
    query, so the actions offered on the grants cost none each."""
    decided = set(
        Decision.objects.filter(request__in=[grant.pk for grant in grants], approver_id=user.pk).values_list(
            "request_id", "plan_hash", "approval_round"
        )
    )
    for grant in grants:
        grant.__dict__.setdefault("_portal_decided", {})[user.pk] = (
            (grant.pk, grant.plan_hash, grant.approval_round) in decided
        )


def _set_context(request, set_id: int) -> dict:
    try:
        request_set, grants = selectors.request_set_detail_for(user=request.user, set_id=set_id)
    except NotFoundForUser:
        raise Http404("No such request.") from None
    _remember_decisions(request.user, grants)
    states: dict[str, int] = {}
    for grant in grants:
        states[grant.state] = states.get(grant.state, 0) + 1
    actions = offered_set_actions(request.user, grants)
    # Approving approves every awaiting grant or none: while one of them cannot
    # be approved (its preflight did not pass), the page says so instead of
    # offering an approval that could only be refused.
    blocked = [
        grant for grant in grants
        if grant.state in AWAITING and (grant.preflight_status != AccessRequest.PreflightStatus.PASSED or not grant.plan_hash)
    ]
    if blocked:
        actions.discard("approve")
    return {
        "request_set": request_set,
        "grants": grants,
        "blocked": blocked,
        # How many grants are in each state, in the states' own order.
        "state_counts": [(state, label, states[state]) for state, label in RequestState.choices if state in states],
        # The page's grants were read with whether this person approves for
        # their accounts; one who sees only some of them gets every one read.
        "plan": _labelled_plan(
            set_plan_for(request.user, request_set, grants if len(grants) == request_set.grants.count() else None)
        ),
        "actions": actions,
        "awaiting_any": any(grant.state in AWAITING for grant in grants),
        "awaiting_first": any(grant.state == RequestState.PENDING_APPROVAL for grant in grants),
    }


@login_required
def request_set_detail(request, set_id: int):
    return render(request, "web/request_set_detail.html", _set_context(request, set_id))


@login_required
@require_POST
def request_set_action(request, set_id: int, action: str):
    """One action of ``SET_ACTIONS``; a refusal shows the set's page as it is
    now with its reason (403, or 409 when the plan changed since it was shown)."""
    definition = SET_ACTIONS.get(action)
    if definition is None:
        raise Http404("No such action.")
    failed = f"Could not {action} request set #{set_id}"
    try:
        definition.check(user=request.user, set_id=set_id)
        definition.service(set_id=set_id, user=request.user, source_ip=_client_ip(request),
                           **set_action_arguments(definition, request.POST))  # fmt: skip
    except NotFoundForUser:
        raise Http404("No such request.") from None
    except PlanChanged:
        messages.error(
            request,
            f"{failed}: the plan changed since you opened it (a grant was added, changed or decided). "
            "Nothing was approved. Review the plan below, then approve again.",
        )
        return render(request, "web/request_set_detail.html", _set_context(request, set_id), status=409)
    except NotAllowed as error:
        messages.error(request, f"{failed}: {error.message}")
        return render(request, "web/request_set_detail.html", _set_context(request, set_id), status=403)
    except BodyInvalid as invalid:
        detail = invalid.detail
        if isinstance(detail, dict):
            problems = "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in detail.items())
        else:
            problems = " ".join(map(str, detail))
        messages.error(request, f"{failed}: {problems}")
    except DomainError as error:
        messages.error(request, f"{failed}: {error.message}")
    else:
        messages.success(request, f"Request set #{set_id}: {definition.done}")
    return redirect(reverse("web:request_set_detail", args=[set_id]))
