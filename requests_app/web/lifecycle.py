"""The detail page's lifecycle panel of an active grant: drift and repair
(and the repair requests the Remote approvers decide), expiry and
extensions, downloads of the change.

Repair, the repair and extension decisions and asking for an extension are
actions of the table in ``requests_app.actions`` (posted to
``views.request_action``); the downloads are read-only. What shows is decided
by ``lifecycle_actions``, the
same rules the services check again.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from provisioning.drift import finding_account

from requests_app import selectors
from requests_app.errors import DomainError, NotFoundForUser
from requests_app.export import FORMATS, grant_export_for
from requests_app.models import AccessRequest
from requests_app.permissions import has_remote_drift, lifecycle_actions
from requests_app.web.forms import ExtendForm

EXPORT_LINKS = (("cloudformation", "CloudFormation"), ("json", "JSON"), ("cli", "CLI"))


def lifecycle_context(user, access_request: AccessRequest) -> dict:
    """What the detail page's lifecycle panel shows ``user``."""
    pending = selectors.pending_extension_of(access_request)
    pending_repair = selectors.pending_repair_of(access_request) if access_request.state == "active" else None
    actions = lifecycle_actions(user, access_request, pending_extension=pending, pending_repair=pending_repair)
    drift = access_request.drift or {}
    findings = drift.get("findings", []) if drift.get("drifted") else []
    return {
        "lifecycle": actions,
        "pending_extension": pending,
        "pending_repair": pending_repair,
        "drift_findings": [
            {**finding, "account": finding_account(finding.get("kind", ""), finding.get("resource", ""))}
            for finding in findings
        ],
        "remote_drift": has_remote_drift(drift) if findings else False,
        "extend_form": ExtendForm() if "extend" in actions else None,
        "export_links": EXPORT_LINKS if "export" in actions and access_request.plan else (),
    }


@login_required
@require_GET
def request_export(request, request_id: int, fmt: str):
    if fmt not in FORMATS:
        raise Http404("No such export format.")
    try:
        exported = grant_export_for(user=request.user, request_id=request_id, fmt=fmt)
    except NotFoundForUser:
        raise Http404("No such request.") from None
    except DomainError as error:
        messages.error(request, f"Could not export request #{request_id}: {error.message}")
        return redirect("web:request_detail", request_id=request_id)
    response = HttpResponse(exported.content, content_type=f"{exported.content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{exported.filename}"'
    return response
