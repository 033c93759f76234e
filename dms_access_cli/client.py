"""The portal's REST API over HTTP (httpx), and nothing else.

Every answer is returned as the API gave it; an error answer becomes an
``ApiError`` carrying the API's body, so the command can show its words as they
are. Calls that the portal did not act on are retried a little: a 429 or 503
after its ``Retry-After``; a connection that never opened; and, for reads and
for creations sent with an ``Idempotency-Key`` (which makes a repeat give back
the first result), a connection lost before the answer.
"""
from __future__ import annotations

import time
from typing import Any

import httpx

from dms_access_cli import __version__
from dms_access_cli.config import Settings
from dms_access_cli.errors import ApiError, Unreachable, describe_api_error

API_PREFIX = "/api/v1"
ATTEMPTS = 3
RETRY_AFTER_MAX = 30.0  # seconds; a longer wait is the caller's to decide
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
_ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)


class Portal:
    def __init__(self, settings: Settings, *, timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.url = settings.url
        self._http = httpx.Client(
            base_url=settings.url + API_PREFIX,
            headers={
                "Authorization": f"Token {settings.token}",
                "Accept": "application/json",
                "User-Agent": f"dms-access/{__version__}",
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Portal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- calls ---------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._json(self._send("GET", path, params=_query(params), replayable=True))

    def get_raw(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        response = self._send("GET", path, params=_query(params), replayable=True)
        if response.is_error:
            self._json(response)  # raises the API's error
        return response

    def post(self, path: str, body: dict[str, Any] | None = None, *, idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self._send("POST", path, json=body or {}, headers=headers, replayable=bool(idempotency_key))
        return self._json(response)

    def pages(self, path: str, params: dict[str, Any] | None = None, *, limit: int | None = None) -> list[dict]:
        """The ``results`` of every page (page numbers or cursors: both give ``next``), up to ``limit`` rows."""
        rows: list[dict] = []
        body = self.get(path, params)
        while True:
            rows.extend(body.get("results", []))
            next_url = body.get("next")
            if not next_url or (limit is not None and len(rows) >= limit):
                break
            body = self._json(self._send("GET", next_url, replayable=True))
        return rows[:limit] if limit is not None else rows

    # --- transport -----------------------------------------------------------

    def _send(self, method: str, path: str, *, replayable: bool, **kwargs) -> httpx.Response:
        for attempt in range(1, ATTEMPTS + 1):
            last = attempt == ATTEMPTS
            try:
                response = self._http.request(method, path, **kwargs)
            except _NEVER_SENT as exc:
                if last:
                    raise Unreachable(f"Cannot reach the portal at {self.url}: {_reason(exc)}") from None
            except _ANSWER_LOST as exc:
                if last or not replayable:
                    raise Unreachable(
                        f"No answer from the portal at {self.url}: {_reason(exc)}"
                        + ("" if replayable else " (the call may or may not have been carried out)")
                    ) from None
            except httpx.HTTPError as exc:
                raise Unreachable(f"Cannot talk to the portal at {self.url}: {_reason(exc)}") from None
            else:
                if response.status_code not in (429, 503) or last:
                    return response
                time.sleep(_retry_after(response, attempt))
                continue
            time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_error:
            if not isinstance(body, dict):
                body = {"detail": f"The portal answered HTTP {response.status_code} without the API's error body."}
            raise ApiError(response.status_code, body, describe_api_error(response.status_code, body))
        if body is None:
            raise Unreachable(
                f"The portal's answer to {response.request.method} {response.request.url.path} is not JSON: "
                "is the URL the portal's?"
            )
        return body


def _query(params: dict[str, Any] | None) -> dict[str, str] | None:
    """Leave out what was not given; booleans as the API reads them."""
    if not params:
        return None
    out = {}
    for name, value in params.items():
        if value is None or value is False:
            continue
        out[name] = "true" if value is True else str(value)
    return out


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        seconds = float(attempt)
    return max(0.0, min(seconds, RETRY_AFTER_MAX))


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
