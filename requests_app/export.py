"""Downloading a request's change: CloudFormation, the Remote documents, AWS CLI commands.

Read-only. The documents come from the engine (``provisioning.export``),
built from the same spec the workers use, so what is downloaded is what the
portal applies. With ``live=True`` the Remote documents are merged into the
secret and key policies as AWS holds them now (read with the Remote
provisioner role), so applying them keeps every other statement.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from provisioning import export
from provisioning.errors import InvalidInput
from requests_app import permissions, visibility
from requests_app.aws import grant_clients_for
from requests_app.errors import InvalidTransition, NotAllowed, NotFoundForUser, ValidationFailed
from requests_app.grants import grant_spec_for
from requests_app.models import AccessRequest

FORMATS = ("cloudformation", "json", "cli")


@dataclass(frozen=True)
class GrantExport:
    """One download: its file name, media type and text, plus the files it refers to."""

    filename: str
    content_type: str
    content: str
    files: dict[str, str]


def _spec(request: AccessRequest):
    spec = grant_spec_for(request)
    if not request.plan or spec.kms_key_arn is None:
        raise InvalidTransition(
            f"Request #{request.pk} has no plan yet (its preflight could not resolve the secret's key): nothing to export."
        )
    return spec


def _json(document) -> str:
    return json.dumps(document, indent=2) + "\n"


def grant_export(request: AccessRequest, fmt: str, *, live: bool = False) -> GrantExport:
    """The change of ``request`` in format ``fmt`` (one of ``FORMATS``)."""
    if fmt not in FORMATS:
        raise ValidationFailed({"format": [f"Must be one of {', '.join(FORMATS)}."]})
    spec = _spec(request)
    current_secret, current_key = (None, None)
    if live and fmt != "cloudformation":
        current_secret, current_key = export.read_current_policies(spec, clients=grant_clients_for(spec))
    try:
        if fmt == "cloudformation":
            return GrantExport(f"dms-access-request-{request.pk}.yaml", "application/yaml",
                               export.cloudformation_template(spec), {})
        if fmt == "json":
            documents = export.remote_documents(
                spec, current_secret_policy=current_secret, current_key_policy=current_key
            )
            return GrantExport(f"dms-access-request-{request.pk}-remote.json", "application/json", _json(documents), {})
        files = export.cli_files(spec, current_secret_policy=current_secret, current_key_policy=current_key)
        return GrantExport(f"dms-access-request-{request.pk}.sh", "text/x-shellscript", export.cli_commands(spec),
                           {name: _json(document) for name, document in files.items()})
    except InvalidInput as error:
        raise ValidationFailed({error.field: [error.rule]}) from error


def grant_export_for(*, user, request_id, fmt: str, live: bool = False) -> GrantExport:
    """``grant_export`` for someone who may see the request (404 otherwise)."""
    request = (
        AccessRequest.objects.select_related("datalake_account", "remote_account").filter(pk=request_id).first()
        if str(request_id).isdigit() else None
    )
    if request is None or not permissions.can_export(user, request):
        raise NotFoundForUser()
    if live and not permissions.can_see_remote_documents(user, request):
        raise NotAllowed("The Remote account's live policies are shown to its approvers.")
    exported = grant_export(request, fmt, live=live)
    # Until approval, a requester who did not name the key does not learn it from a download either.
    return GrantExport(
        exported.filename,
        exported.content_type,
        visibility.redact_key(user, request, exported.content),
        visibility.redact_key(user, request, exported.files),
    )
