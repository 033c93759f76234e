"""The grant's and the revoke's steps, declared once: the step graph.

Every step has a name, a phase, the account whose provisioner role it acts
as (and whose audit trail records it), the steps it waits for, the engine
function that carries it out, the ARN it targets (and locks, for the
read-merge-write of a policy shared with other grants), its audit action and
the title people read. Everything else (the runner, the scheduling, the
progress view and its diagram, the policy diff, the repair, the bench, the
tests) reads the names and the order from here.

The edges keep only the order AWS requires; steps whose dependencies have all
succeeded are *ready*, and ready steps run side by side.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from provisioning.preflight import preflight
from provisioning.steps.endpoint import create_endpoint, delete_endpoint
from provisioning.steps.key_policy import grant_key_policy, revoke_key_policy
from provisioning.steps.role import create_role, delete_role
from provisioning.steps.secret_policy import grant_secret_policy, revoke_secret_policy
from provisioning.steps.verify import verify

GRANT = "grant"
REVOKE = "revoke"
PHASES = (GRANT, REVOKE)

# The account a step acts in (its audit event is filed under that account).
DATALAKE = "datalake"
REMOTE = "remote"

# What a step's ARN is: the resource (the diagram's box) it builds or removes.
ROLE = "role"
SECRET = "secret"
KEY = "key"
ENDPOINT = "endpoint"
RESOURCES = (ROLE, SECRET, KEY, ENDPOINT)

PREFLIGHT = "preflight"
CREATE_ROLE = "create_role"
GRANT_SECRET_POLICY = "grant_secret_policy"
GRANT_KEY_POLICY = "grant_key_policy"
CREATE_ENDPOINT = "create_endpoint"
VERIFY = "verify"
DELETE_ENDPOINT = "delete_endpoint"
REVOKE_KEY_POLICY = "revoke_key_policy"
REVOKE_SECRET_POLICY = "revoke_secret_policy"
DELETE_ROLE = "delete_role"


@dataclass(frozen=True)
class Step:
    """One step of the graph.

    ``after``: the steps of the same phase that must have succeeded first.
    ``writes``: the step changes AWS (a grant's writing steps run only on the
    approved plan). ``locks``: the step read-merge-writes the policy of
    ``target``, shared with other grants; it is passed ``lock=`` and holds it
    on that ARN. ``undoes``: for a revoke step that removes what a grant step
    wrote, that grant step (the revoke is passed the targets it recorded).
    ``action``: the audit action of a run that changed (or checked) something;
    a run that found AWS already as planned is ``step.<name>.unchanged``.
    ``why``: the reason for the step's place in the graph.
    ``merges``: among the grants of one request set, the step writes (or, in
    a revoke, removes) in one put the statements of every grant on its target
    whose steps before it are done (it is passed ``companions=``); it waits
    until every grant of the set in the same phase has finished those steps.
    """

    name: str
    phase: str
    side: str
    after: tuple[str, ...]
    function: Callable[..., Any]
    target: str
    action: str
    title: str
    where: str
    why: str
    writes: bool = False
    locks: bool = False
    undoes: str | None = None
    merges: bool = False
    # The Remote account's policies are among what the step records.
    remote_documents: bool = False

    @property
    def resource(self) -> str | None:
        """The diagram box the step builds or removes (None: it only reads)."""
        return self.target if self.writes else None


STEPS: tuple[Step, ...] = (
    Step(
        name=PREFLIGHT, phase=GRANT, side=REMOTE, after=(), function=preflight, target=SECRET,
        action="step.preflight.passed", title="Preflight checks", where="Both accounts, read-only",
        why="Reads AWS as it is now and checks the plan is still the approved one, before the first write.",
    ),
    Step(
        name=CREATE_ROLE, phase=GRANT, side=DATALAKE, after=(PREFLIGHT,), function=create_role, target=ROLE,
        action="aws.create_role", title="Create the DMS role", where="DataLake account", writes=True,
        why="The role must exist before a policy names it as a principal (AWS refuses unknown principals).",
    ),
    Step(
        name=GRANT_SECRET_POLICY, phase=GRANT, side=REMOTE, after=(CREATE_ROLE,), function=grant_secret_policy,
        target=SECRET, action="aws.grant_secret_policy", title="Grant on the secret policy", where="Remote account",
        writes=True, locks=True, merges=True, remote_documents=True,
        why="Names the role; independent of the key policy, so the two run side by side.",
    ),
    Step(
        name=GRANT_KEY_POLICY, phase=GRANT, side=REMOTE, after=(CREATE_ROLE,), function=grant_key_policy,
        target=KEY, action="aws.grant_key_policy", title="Grant on the KMS key policy", where="Remote account",
        writes=True, locks=True, merges=True, remote_documents=True,
        why="Names the role; independent of the secret policy, so the two run side by side.",
    ),
    Step(
        name=CREATE_ENDPOINT, phase=GRANT, side=DATALAKE, after=(GRANT_SECRET_POLICY, GRANT_KEY_POLICY),
        function=create_endpoint, target=ENDPOINT, action="aws.create_endpoint", title="Create the DMS endpoint",
        where="DataLake account", writes=True,
        why=(
            "DMS validates the role and the secret when the endpoint is created (GetRole and PassRole on the role,"
            " DescribeSecret on the secret: reference/aws-facts.md §1), so the role and both policies that let it"
            " read the secret and decrypt it come first."
        ),
    ),
    Step(
        name=VERIFY, phase=GRANT, side=DATALAKE, after=(CREATE_ENDPOINT,), function=verify, target=ROLE,
        action="step.verify.passed", title="Verify access", where="Role, secret and key policies together",
        remote_documents=True,
        why="Evaluates the whole grant as it stands once everything is written.",
    ),
    Step(
        name=DELETE_ENDPOINT, phase=REVOKE, side=DATALAKE, after=(), function=delete_endpoint, target=ENDPOINT,
        action="aws.delete_endpoint", title="Delete the DMS endpoint", where="DataLake account", writes=True,
        why="Nothing uses the secret through the role once the endpoint is gone.",
    ),
    Step(
        name=REVOKE_KEY_POLICY, phase=REVOKE, side=REMOTE, after=(DELETE_ENDPOINT,), function=revoke_key_policy,
        target=KEY, action="aws.revoke_key_policy", title="Remove the KMS key policy statement",
        where="Remote account", writes=True, locks=True, undoes=GRANT_KEY_POLICY, merges=True, remote_documents=True,
        why="After the endpoint that used it; independent of the secret policy, so the two run side by side.",
    ),
    Step(
        name=REVOKE_SECRET_POLICY, phase=REVOKE, side=REMOTE, after=(DELETE_ENDPOINT,), function=revoke_secret_policy,
        target=SECRET, action="aws.revoke_secret_policy", title="Remove the secret policy statement",
        where="Remote account", writes=True, locks=True, undoes=GRANT_SECRET_POLICY, merges=True,
        remote_documents=True,
        why="After the endpoint that used it; independent of the key policy, so the two run side by side.",
    ),
    Step(
        name=DELETE_ROLE, phase=REVOKE, side=DATALAKE, after=(REVOKE_KEY_POLICY, REVOKE_SECRET_POLICY),
        function=delete_role, target=ROLE, action="aws.delete_role", title="Delete the DMS role",
        where="DataLake account", writes=True,
        why="Last: a policy naming a deleted role is left with an unusable principal until the statement goes.",
    ),
)

BY_NAME: dict[str, Step] = {step.name: step for step in STEPS}


def step(name: str) -> Step:
    """The step called ``name`` (KeyError if there is none)."""
    return BY_NAME[name]


def names(phase: str) -> tuple[str, ...]:
    """The names of ``phase``'s steps in an order that respects the graph (the runbook's)."""
    return tuple(s.name for s in STEPS if s.phase == phase)


def steps_of(phase: str) -> tuple[Step, ...]:
    return tuple(s for s in STEPS if s.phase == phase)


def for_resource(phase: str, resource: str) -> Step:
    """The step of ``phase`` that builds (grant) or removes (revoke) ``resource``."""
    [found] = [s for s in STEPS if s.phase == phase and s.resource == resource]
    return found


def merged(phase: str) -> tuple[str, ...]:
    """The steps of ``phase`` that write for several grants of one request set at once."""
    return tuple(s.name for s in steps_of(phase) if s.merges)


def upstream(name: str) -> frozenset[str]:
    """Every step that ``name`` waits for, directly or through others."""
    found: set[str] = set()
    waiting = list(step(name).after)
    while waiting:
        dependency = waiting.pop()
        if dependency not in found:
            found.add(dependency)
            waiting.extend(step(dependency).after)
    return frozenset(found)


def last(phase: str) -> str:
    """The step that ends ``phase``: every other step of the phase is upstream of it (checked below)."""
    [name] = [s.name for s in steps_of(phase) if not any(s.name in other.after for other in steps_of(phase))]
    return name


def ready(phase: str, succeeded: Collection[str], busy: Iterable[str] = ()) -> tuple[str, ...]:
    """The steps of ``phase`` that may start now: not succeeded, not ``busy``
    (running or failed), and every step upstream of them succeeded; in table order.

    Upstream, not only the steps named in ``after``: a repair puts some steps
    back to pending and leaves the others done, and ``verify`` must not run
    beside the policy write it is to check (its own ``after`` is done)."""
    done, taken = set(succeeded), set(busy)
    return tuple(
        s.name
        for s in steps_of(phase)
        if s.name not in done and s.name not in taken and upstream(s.name) <= done
    )


def _check(steps: tuple[Step, ...]) -> None:
    """Each name once; dependencies of the same phase and earlier in the table (so no cycle)."""
    seen: dict[str, Step] = {}
    for s in steps:
        if s.name in seen:
            raise ValueError(f"step {s.name} is declared twice")
        for dependency in s.after:
            if dependency not in seen or seen[dependency].phase != s.phase:
                raise ValueError(f"step {s.name} waits for {dependency}, not an earlier step of its phase")
        if s.undoes is not None and (s.undoes not in seen or seen[s.undoes].phase != GRANT):
            raise ValueError(f"step {s.name} undoes {s.undoes}, not a grant step")
        if s.merges and not s.locks:
            raise ValueError(f"step {s.name} merges grants' statements, so it must lock its target")
        seen[s.name] = s


_check(STEPS)
for _phase in (GRANT, REVOKE):
    # One step ends each phase and waits for all the others: once it has
    # succeeded, the phase is done (the runner reads nothing more to know).
    if upstream(last(_phase)) != set(names(_phase)) - {last(_phase)}:
        raise ValueError(f"the last step of {_phase} does not wait for every other step")
