"""What the detail page shows of a request's provisioning: steps and diagram.

Built from the rows the detail selector prefetched (steps), so rendering the
live part costs no query per step.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from provisioning.diagnoses import cdc_checklist, get_diagnosis
from provisioning.steps import table
from requests_app import visibility
from requests_app.models import AccessRequest, ProvisioningStep, RequestState

# While the request is in one of these states the workers are (about to be)
# busy, so the page asks for fresh progress; in any other state it stops.
POLLING_STATES = frozenset({RequestState.APPROVED, RequestState.PROVISIONING, RequestState.REVOKING})
# A request awaiting approval changes only when someone decides: the page asks
# now and then whether the state moved, and the answer is empty until it has.
WAITING_STATES = frozenset({RequestState.PENDING_APPROVAL, RequestState.NEEDS_REAPPROVAL})

# Which step builds (grant) and which removes (revoke) each box of the diagram.
NODE_STEPS = {
    resource: (table.for_resource(table.GRANT, resource).name, table.for_resource(table.REVOKE, resource).name)
    for resource in table.RESOURCES
}

# A failure is drawn on the box it is about, whichever step found it.
NODE_FOR_DIAGNOSIS = {
    "aws_managed_key": "key",
    "key_policy_denies": "key",
    "key_not_usable": "key",
    "key_mismatch": "key",
    "secret_policy_denies": "secret",
    "secret_shape_invalid": "secret",
    "secret_not_found": "secret",
    "principal_not_visible": "secret",
    "role_name_taken": "role",
    "identity_policy_denies": "role",
    "endpoint_identifier_taken": "endpoint",
    "connection_failed": "endpoint",
}


@dataclass
class StepView:
    step: ProvisioningStep
    title: str
    where: str
    diagnosis: object | None = None
    checklist: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Progress:
    grant: list[StepView]
    revoke: list[StepView]
    nodes: dict[str, str]
    verified: str
    diagnosis: object | None
    checklist: list[str]

    @property
    def phases(self) -> list[tuple[str, list[StepView]]]:
        return [("Grant", self.grant), ("Revoke", self.revoke)]


def _diagnosis(code: str):
    # An unknown code still gets a title and a pointer to the error text.
    return get_diagnosis(code) if code else None


def _step_view(step: ProvisioningStep, engine: str, error: str) -> StepView:
    definition = table.BY_NAME.get(step.name)
    title, where = (definition.title, definition.where) if definition is not None else (step.name, "")
    checklist = cdc_checklist(engine) if step.diagnosis == "connection_failed" else []
    return StepView(
        step=step, title=title, where=where, diagnosis=_diagnosis(step.diagnosis), checklist=checklist, error=error
    )


def _node_status(name: str, by_name: dict[tuple[str, str], ProvisioningStep]) -> str:
    grant_name, revoke_name = NODE_STEPS[name]
    revoke = by_name.get((ProvisioningStep.Phase.REVOKE, revoke_name))
    if revoke is not None and revoke.status != ProvisioningStep.Status.PENDING:
        return "removed" if revoke.status == ProvisioningStep.Status.SUCCEEDED else revoke.status
    grant = by_name.get((ProvisioningStep.Phase.GRANT, grant_name))
    return grant.status if grant is not None else "pending"


def progress_for(access_request: AccessRequest, *, user) -> Progress:
    """Steps of both phases with their diagnoses (and errors as ``user`` may read them),
    and the status of each diagram box."""
    steps = list(access_request.steps.all())
    errors = {step.pk: visibility.step_documents_for(user, access_request, step)[2] for step in steps}
    by_name = {(step.phase, step.name): step for step in steps}
    nodes = {name: _node_status(name, by_name) for name in NODE_STEPS}
    for step in steps:
        node = NODE_FOR_DIAGNOSIS.get(step.diagnosis)
        if step.status == ProvisioningStep.Status.FAILED and node:
            nodes[node] = "failed"
    # Preflight at submission has no step row yet; its diagnosis is on the request.
    request_node = NODE_FOR_DIAGNOSIS.get(access_request.diagnosis)
    if request_node and access_request.state in (RequestState.PENDING_APPROVAL, RequestState.FAILED):
        nodes[request_node] = "failed"
    verify = by_name.get((ProvisioningStep.Phase.GRANT, table.VERIFY))
    engine = access_request.engine
    return Progress(
        grant=[_step_view(s, engine, errors[s.pk]) for s in steps if s.phase == ProvisioningStep.Phase.GRANT],
        revoke=[_step_view(s, engine, errors[s.pk]) for s in steps if s.phase == ProvisioningStep.Phase.REVOKE],
        nodes=nodes,
        verified=verify.status if verify is not None else "pending",
        diagnosis=_diagnosis(access_request.diagnosis),
        checklist=cdc_checklist(engine) if access_request.state == RequestState.ACTIVE else [],
    )
