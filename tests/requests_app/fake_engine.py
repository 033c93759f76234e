"""A stand-in for the engine's steps, for workflow tests without AWS.

Each step name maps to a script: a list of outcomes, one per call (the last
repeats). An outcome is an exception to raise or a dict of StepResult fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

ROLE_ARN = "arn:aws:iam::111111111111:role/dms-secret-orders"
ENDPOINT_ARN = "arn:aws:dms:eu-west-1:111111111111:endpoint:ORDERSXYZ"

DEFAULT_RESULTS: dict[str, dict] = {
    "create_role": {"changed": True, "before": None, "after": {"RoleName": "dms-secret-orders"}, "outputs": {"role_arn": ROLE_ARN}},
    "grant_secret_policy": {"changed": True, "before": None, "after": {"Statement": ["secret"]}},
    "grant_key_policy": {"changed": True, "before": {"Statement": ["root"]}, "after": {"Statement": ["root", "key"]}},
    "create_endpoint": {"changed": True, "before": None, "after": {"EndpointIdentifier": "orders"}, "outputs": {"endpoint_arn": ENDPOINT_ARN}},
    "verify": {"changed": False, "before": None, "after": {"allowed": True}},
    "delete_endpoint": {"changed": True, "before": {"EndpointIdentifier": "orders"}, "after": None},
    "revoke_key_policy": {"changed": True, "before": {"Statement": ["root", "key"]}, "after": {"Statement": ["root"]}},
    "revoke_secret_policy": {"changed": True, "before": {"Statement": ["secret"]}, "after": None},
    "delete_role": {"changed": True, "before": {"RoleName": "dms-secret-orders"}, "after": None},
}


def step_result(name: str, **fields) -> SimpleNamespace:
    values = {"changed": True, "before": None, "after": None, "aws_request_ids": [f"req-{name}"], "outputs": {}, "aws_calls": []}
    values.update(fields)
    return SimpleNamespace(name=name, **values)


def preflight_report(
    *, ok: bool = True, diagnosis: str | None = None, message: str = "", kms_key_arn: str = ""
) -> SimpleNamespace:
    checks = [SimpleNamespace(name="key_customer_managed", ok=ok, message=message or "customer-managed key", diagnosis=diagnosis)]
    report = SimpleNamespace(
        ok=ok,
        checks=checks,
        diagnosis=diagnosis,
        # The key of the rows' requests (tests.requests_app.rows.KEY_ARN): the plan stays the approved one.
        kms_key_arn=kms_key_arn or "arn:aws:kms:eu-west-1:222222222222:key/8d4f2a1c-7b6e-4f3d-9c2a-1e5b7d8f9a0b",
        secret_keys=None,
        aws_request_ids=["req-preflight"],
    )
    report.to_dict = lambda: {
        "ok": ok,
        "diagnosis": diagnosis,
        "kms_key_arn": report.kms_key_arn,
        "checks": [vars(check) for check in checks],
    }
    return report


@dataclass
class FakeEngine:
    scripts: dict[str, list] = field(default_factory=dict)
    calls: list[tuple[str, dict]] = field(default_factory=list)
    during_call: dict[str, Any] = field(default_factory=dict)

    def script(self, name: str, *outcomes) -> None:
        self.scripts[name] = list(outcomes)

    def names_called(self) -> list[str]:
        return [name for name, _ in self.calls]

    def step(self, phase: str, name: str):
        def run(spec, **kwargs):
            self.calls.append((name, kwargs))
            if name in self.during_call:
                self.during_call[name](spec)
            script = self.scripts.get(name)
            outcome = (script.pop(0) if len(script) > 1 else script[0]) if script else None
            if isinstance(outcome, BaseException):
                raise outcome
            if name == "preflight":
                return outcome or preflight_report()
            return step_result(name, **(outcome or DEFAULT_RESULTS[name]))

        return run
