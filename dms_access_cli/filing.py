"""Filing requests (from flags or a file) and following them."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from dms_access_cli.app import Interval, Json, RequestId, Timeout, Wait, command, connect, finish, follow_one
from dms_access_cli.errors import ApiError, ExitCode, UsageProblem
from dms_access_cli.follow import Followed, follow
from dms_access_cli.output import consoles, emit_json, requests_table
from dms_access_cli.request_file import GRANT_FIELDS, SET_FIELDS, SUBMIT_FIELDS, read_request_file
from dms_access_cli.sets import finish_set, follow_set

@command
def request(
    datalake_account: Annotated[Optional[str], typer.Option(help="12-digit id of the DataLake account DMS runs in.")] = None,
    secret_arn: Annotated[Optional[str], typer.Option(help="Full ARN of the secret in the Remote account.")] = None,
    kms_key_arn: Annotated[Optional[str], typer.Option(help="The secret's KMS key (discovered when left out).")] = None,
    engine: Annotated[Optional[str], typer.Option(help="The DMS engine, e.g. postgres, mysql, oracle.")] = None,
    endpoint_identifier: Annotated[Optional[str], typer.Option(help="The DMS endpoint identifier.")] = None,
    endpoint_type: Annotated[Optional[str], typer.Option(help="source (default) or target.")] = None,
    database_name: Annotated[Optional[str], typer.Option(help="The database name.")] = None,
    role_name: Annotated[Optional[str], typer.Option(help="The IAM role's name (derived when left out).")] = None,
    replication_instance_arn: Annotated[
        Optional[str], typer.Option(help="A replication instance: verify runs a DMS connection test.")
    ] = None,
    justification: Annotated[Optional[str], typer.Option(help="Why DMS needs this secret.")] = None,
    expires_at: Annotated[Optional[str], typer.Option(help="When the grant is revoked (ISO 8601).")] = None,
    file: Annotated[
        Optional[Path],
        typer.Option(
            "--file", "-f",
            help="A YAML or JSON file of one request (a mapping) or a list of separate requests, keys as the flags "
            "with underscores; or of one multi-grant request: " + ", ".join(SET_FIELDS) + " once, and grants: a "
            "list of mappings of " + ", ".join(GRANT_FIELDS) + ".",
        ),
    ] = None,
    idempotency_key: Annotated[
        Optional[str],
        typer.Option(help="Idempotency-Key to send (a file's entries get KEY-1, KEY-2, …; a multi-grant request KEY): running the same command again files nothing new. Default: a fresh one per run."),
    ] = None,
    wait: Wait = False,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """File a request (flags), every request of a file, or a file's multi-grant request (--file);
    --wait follows them until active or failed.

    With --json: the request as the API answered (a file of requests: a list, one item per entry,
    the request or the API's error with its HTTP status; a multi-grant request: the request with
    its grants, as `dms-access set status` shows it). A multi-grant request is filed whole or not
    at all: the API's errors name each grant by its position in grants:, counting from 0
    (grants.0.engine). --wait follows every grant until all are active (0) or one fails (1).
    """
    arguments = locals()  # the flags named as the API's fields (SUBMIT_FIELDS)
    given = {name: arguments[name] for name in SUBMIT_FIELDS if arguments[name] is not None}
    if file is not None and given:
        raise UsageProblem("Give the request's fields as flags or in --file, not both.")
    if file is None and not given:
        raise UsageProblem("Give the request's fields as flags (see --help), or --file.")
    read = read_request_file(file) if file is not None else None
    base_key = idempotency_key or uuid.uuid4().hex
    if read is not None and read.request_set is not None:
        return _file_set(file, read.request_set, key=base_key, wait=wait, timeout=timeout, interval=interval,
                         json_output=json_output)  # fmt: skip
    bodies = read.requests if read is not None else [given]
    out, err = consoles(json_output)
    results: list[dict] = []
    codes: list[ExitCode] = []
    with connect() as portal:
        filed: list[Followed] = []
        for number, body in enumerate(bodies, start=1):
            key = base_key if file is None else f"{base_key}-{number}"
            label = f"request {number} of {file}" if file is not None else "request"
            try:
                detail = portal.post("/requests/", body, idempotency_key=key)
            except ApiError as exc:
                if file is None:
                    raise
                err.print(f"[red]{label}: refused:[/] {escape(exc.message)}")
                results.append(exc.body)
                codes.append(exc.exit_code)
                continue
            item = Followed(request_id=detail["id"], goal="active", detail=detail)
            filed.append(item)
            results.append(detail)
            err.print(
                f"Filed request {detail['id']} ({detail.get('endpoint_identifier')}): {detail.get('state')}, "
                f"preflight {detail.get('preflight_status')}",
                markup=False,
            )
        if wait and filed:
            follow(portal, filed, console=out, timeout=timeout, interval=interval)
            by_id = {item.request_id: item for item in filed}
            results = [by_id[row["id"]].detail if row.get("id") in by_id else row for row in results]
            codes.extend(item.exit_code for item in filed)
        else:
            codes.extend(ExitCode.DONE for _ in filed)
    code = max(codes, default=ExitCode.DONE)
    if file is None:
        return finish(results[0], code, json_output=json_output, goal="active")
    if json_output:
        emit_json(results)
    else:
        out.print(requests_table([row for row in results if "id" in row]))
        for item in filed:
            if wait and item.exit_code != ExitCode.DONE:
                err.print(f"request {item.request_id}: {item.detail.get('state')}", markup=False)
    return code


def _file_set(file: Path, body: dict, *, key: str, wait: bool, timeout, interval, json_output: bool) -> ExitCode:
    _, err = consoles(json_output)
    with connect() as portal:
        try:
            # With its Idempotency-Key, a lost answer is sent again: the portal gives back the set filed once.
            detail = portal.post("/request-sets/", body, idempotency_key=key)
        except ApiError as exc:
            if any(str(field).startswith("grants.") for field in (exc.body.get("errors") or {})):
                err.print(f"(grants.N is grant N of {file}, counting from 0.)", markup=False)
            raise
        states = ", ".join(f"{count} {state}" for state, count in sorted((detail.get("states") or {}).items()))
        err.print(
            f"Filed multi-grant request {detail['id']} with {len(detail.get('grants') or [])} grant(s): {states}",
            markup=False,
        )
        followed: list[Followed] = []
        code = ExitCode.DONE
        if wait:
            detail, code, followed = follow_set(portal, detail, goal="active", timeout=timeout, interval=interval,
                                                json_output=json_output)  # fmt: skip
    return finish_set(detail, code, json_output=json_output, followed=followed, goal="active")


@command
def wait(
    request_id: RequestId,
    until: Annotated[
        Optional[str],
        typer.Option("--for", help="active or revoked; default revoked for a request being revoked, else active."),
    ] = None,
    timeout: Timeout = None,
    interval: Interval = 2.0,
    json_output: Json = False,
) -> ExitCode:
    """Follow a request until it settles: 0 if it reached the state waited for, 1 if it ended otherwise."""
    if until not in (None, "active", "revoked"):
        raise UsageProblem("--for takes active or revoked.")
    with connect() as portal:
        detail = portal.get(f"/requests/{request_id}/")
        goal = until or ("revoked" if detail.get("state") in ("revoking", "revoked") else "active")
        detail, code = follow_one(portal, detail, goal=goal, timeout=timeout, interval=interval, json_output=json_output)
    return finish(detail, code, json_output=json_output, goal=goal)
