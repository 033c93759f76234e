"""AWS misbehaving at the botocore layer, inside real worker processes.

Workers started by the harness import this module (``celery worker -I``). It
hooks every boto3 session the worker builds, so each HTTP attempt of every
AWS call the engine makes (botocore's own retries included) passes here:

- it is logged, one JSON line per attempt, to
  ``$PORTAL_TEST_FAULTS_DIR/aws-calls-<pid>.jsonl``: the request it was made
  for (from the provisioner session name ``portal-<instance>-req-<id>``), the operation,
  the worker process, and the fault injected, if any;
- it may be answered with a fault instead of reaching moto, as configured in
  ``$PORTAL_TEST_FAULTS_DIR/aws.json`` (read again whenever it changes):

    {"throttle": 0.3,             share of attempts answered "Rate exceeded"
     "server_error": 0.1,         share answered HTTP 500 without reaching AWS
     "lost_response": 0.05,       share that reach AWS, whose answer is lost (500)
     "principal_delay": 4,        seconds after CreateRole during which a key or
                                  secret policy naming the role is refused as an
                                  invalid principal
     "deny": {"<request id>": "PutKeyPolicy"},     AccessDenied, every time
     "invalid": {"<request id>": "CreateEndpoint"}} a validation error, every time

Random faults only hit requests (calls made under a provisioner session), so
the test's own administrator clients are never disturbed.
"""
from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import uuid
from pathlib import Path

import boto3
from botocore.awsrequest import AWSResponse
from botocore.httpsession import URLLib3Session

FAULTS_DIR = Path(os.environ.get("PORTAL_TEST_FAULTS_DIR", "/nonexistent"))
CONFIG = FAULTS_DIR / "aws.json"
ROLES_CREATED = FAULTS_DIR / "aws-roles-created.jsonl"
SESSION_NAME = re.compile(r"portal-[a-z0-9]+-req-(\d+)")
ROLE_ARN = re.compile(r"arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+")
POLICY_PUTS = {"PutKeyPolicy": "Policy", "PutResourcePolicy": "ResourcePolicy"}

_state = threading.local()
_random = random.Random()
_random_pid = [0]
_config: dict = {"mtime": None, "value": {}}
# access key id of an assumed provisioner session -> the request it serves
_request_by_access_key: dict[str, str] = {}
_http = None


def config() -> dict:
    try:
        mtime = CONFIG.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    if mtime != _config["mtime"]:
        _config["value"] = json.loads(CONFIG.read_text() or "{}")
        _config["mtime"] = mtime
    return _config["value"]


def _log(entry: dict) -> None:
    with open(FAULTS_DIR / f"aws-calls-{os.getpid()}.jsonl", "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def _on_params(params, **_):
    # before-call sees the serialised request; the call's own parameters come here first.
    _state.params = params


def _on_call(model, request_signer, context, **_):
    """Once per API call, before its first attempt: note what it is and whom it serves."""
    operation = model.name
    params = getattr(_state, "params", None) or {}
    if operation == "AssumeRole":
        match = SESSION_NAME.fullmatch(params.get("RoleSessionName", ""))
        request = context["portal_request"] = match.group(1) if match else None
    else:
        credentials = request_signer._credentials
        access_key = credentials.get_frozen_credentials().access_key if credentials else None
        request = _request_by_access_key.get(access_key)
    _state.call = {
        "call": uuid.uuid4().hex[:12],
        "request": request,
        "service": model.service_model.service_name,
        "operation": operation,
        "params": params,
    }


def _after_call(model, parsed, context, http_response, **_):
    if http_response.status_code >= 300:
        return
    if model.name == "AssumeRole" and context.get("portal_request"):
        _request_by_access_key[parsed["Credentials"]["AccessKeyId"]] = context["portal_request"]
    elif model.name == "CreateRole":
        with open(ROLES_CREATED, "a") as handle:
            handle.write(json.dumps({"arn": parsed["Role"]["Arn"], "at": time.time()}) + "\n")


def _on_send(request, **_):
    """Each HTTP attempt: log it, and answer with a fault when one is due."""
    call = getattr(_state, "call", None)
    if call is None:
        return None
    fault = _fault_for(call, request)
    _log(
        {
            "call": call["call"],
            "request": call["request"],
            "op": f"{call['service']}:{call['operation']}",
            "fault": fault[0] if fault else None,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "at": time.time(),
        }
    )
    if fault is None:
        return None
    kind, status, code, message = fault
    if kind == "lost_response":
        _send_for_real(request)
    return _error_response(request, status, code, message)


def _fault_for(call: dict, request) -> tuple[str, int, str, str] | None:
    settings = config()
    if not settings or call["request"] is None:
        return None
    operation, request_id = call["operation"], call["request"]
    if settings.get("deny", {}).get(request_id) == operation:
        action = f"{call['service']}:{operation}"
        return (
            "access_denied",
            400 if _is_json(request) else 403,
            "AccessDeniedException" if _is_json(request) else "AccessDenied",
            f"User: arn:aws:sts::000000000000:assumed-role/dms-access-portal-provisioner/portal-req-{request_id} "
            f"is not authorized to perform: {action} because no identity-based policy allows the {action} action",
        )
    if settings.get("invalid", {}).get(request_id) == operation:
        code = "InvalidParameterValueException" if call["service"] == "dms" else "ValidationException"
        return ("validation", 400, code if _is_json(request) else "ValidationError", "1 validation error detected")
    if operation in POLICY_PUTS and _names_a_fresh_role(call["params"].get(POLICY_PUTS[operation], ""), settings):
        message = (
            "Policy contains a statement with one or more invalid principals."
            if operation == "PutKeyPolicy"
            else "This resource policy contains an unsupported principal."
        )
        return ("invalid_principal", 400, "MalformedPolicyDocumentException", message)
    if _random_pid[0] != os.getpid():
        # Pool processes are forked from one parent: each draws its own faults.
        _random.seed(uuid.uuid4().int)
        _random_pid[0] = os.getpid()
    draw = _random.random()
    for kind in ("throttle", "server_error", "lost_response"):
        share = float(settings.get(kind, 0))
        if draw < share:
            if kind == "throttle":
                return ("throttle", 400, "ThrottlingException" if _is_json(request) else "Throttling", "Rate exceeded")
            code = "InternalFailure" if _is_json(request) else "ServiceFailure"
            return (kind, 500, code, "We encountered an internal error. Please try again.")
        draw -= share
    return None


def _names_a_fresh_role(policy: str, settings: dict) -> bool:
    delay = float(settings.get("principal_delay", 0))
    if not delay or not ROLES_CREATED.exists():
        return False
    named = set(ROLE_ARN.findall(policy))
    now = time.time()
    for line in ROLES_CREATED.read_text().splitlines():
        created = json.loads(line)
        if created["arn"] in named and now - created["at"] < delay:
            return True
    return False


def _is_json(request) -> bool:
    content_type = request.headers.get("Content-Type") or ""
    if isinstance(content_type, bytes):
        content_type = content_type.decode()
    return "json" in content_type


def _send_for_real(request) -> None:
    global _http
    if _http is None:
        _http = URLLib3Session()
    _http.send(request)


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_):
        yield self._data


def _error_response(request, status: int, code: str, message: str) -> AWSResponse:
    request_id = f"injected-{uuid.uuid4()}"
    if _is_json(request):
        headers = {"x-amzn-RequestId": request_id, "Content-Type": "application/x-amz-json-1.1"}
        body = json.dumps({"__type": code, "message": message}).encode()
    else:
        headers = {"Content-Type": "text/xml"}
        body = (
            "<ErrorResponse><Error><Type>Sender</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
    return AWSResponse(request.url, status, headers, _Body(body))


def _hook(session: boto3.session.Session) -> None:
    events = session.events
    events.register("before-parameter-build", _on_params)
    events.register_first("before-call", _on_call)
    events.register("after-call", _after_call)
    events.register_last("before-send", _on_send)


if FAULTS_DIR.is_dir():
    _original_init = boto3.session.Session.__init__

    def _hooked_init(self, *args, **kwargs):
        _original_init(self, *args, **kwargs)
        _hook(self)

    boto3.session.Session.__init__ = _hooked_init
