"""The AWS calls of one step: request ids recorded, failures translated.

Every step and preflight makes its calls through one ``AwsCalls``. It keeps
the request id of each call (the step result and any error carry them, so a
person can quote them to AWS support or find them in CloudTrail) and turns
botocore failures into ``RetryableAwsError`` / ``PermanentAwsError``, so no
bare botocore error leaves the engine.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from provisioning.aws_errors import error_code, is_not_found, request_id_of, translate_error
from provisioning.errors import PermanentAwsError, ProvisioningError, RetryableAwsError
from provisioning.statements import check_policy_size


# Services whose CloudTrail events are recorded in us-east-1 whatever the
# client's region.
GLOBAL_SERVICES = frozenset({"iam"})


class AwsCalls:
    """Makes the AWS calls of one step and remembers their request ids."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []
        # For each request id, where CloudTrail records the call: its event
        # source and name, and the region (IAM's events are in us-east-1).
        self.calls: list[dict[str, str]] = []

    def _remember(self, request_id: str | None, client: Any, service: str, operation: str) -> None:
        if not request_id:
            return
        self.request_ids.append(request_id)
        region = "us-east-1" if service in GLOBAL_SERVICES else (client.meta.region_name or "")
        self.calls.append(
            {
                "request_id": request_id,
                "event_source": f"{client.meta.service_model.endpoint_prefix}.amazonaws.com",
                "event_name": operation,
                "region": region,
            }
        )

    def __call__(
        self,
        client: Any,
        operation: str,
        *,
        missing_ok: bool = False,
        taken_codes: Collection[str] = (),
        not_found_diagnosis: str | None = None,
        retry_codes: Mapping[str, str] | None = None,
        **params: Any,
    ) -> dict | None:
        """Call ``operation`` (AWS spelling, e.g. ``"GetRole"``) on ``client``.

        ``missing_ok``: a not-found error returns None instead of raising.
        ``taken_codes``: AWS error codes saying the name to create is taken
        (e.g. ``EntityAlreadyExists``); they return None instead of raising,
        so the caller reads what holds the name and checks whose it is.
        ``retry_codes``: AWS error codes to raise as ``RetryableAwsError`` with
        the mapped diagnosis (e.g. a resource another worker is creating).
        """
        service = client.meta.service_model.service_name
        try:
            response = getattr(client, xform_name(operation))(**params)
        except (ClientError, BotoCoreError) as error:
            request_id = request_id_of(error) if isinstance(error, ClientError) else None
            if (missing_ok and is_not_found(error)) or (
                isinstance(error, ClientError) and error_code(error) in taken_codes
            ):
                self._remember(request_id, client, service, operation)
                return None
            if isinstance(error, ClientError) and retry_codes and error_code(error) in retry_codes:
                self._remember(request_id, client, service, operation)
                raise self.retryable(
                    f"{service}:{operation} hit {error_code(error)}; the retry reads the state again",
                    diagnosis=retry_codes[error_code(error)],
                ) from error
            raise translate_error(
                error,
                service=service,
                operation=operation,
                request_ids=self.request_ids,
                not_found_diagnosis=not_found_diagnosis,
            ) from error
        self._remember(request_id_of(response), client, service, operation)
        return response

    def permanent(self, message: str, *, diagnosis: str) -> PermanentAwsError:
        """A permanent failure carrying this step's request ids."""
        return PermanentAwsError(message, diagnosis=diagnosis, aws_request_ids=self.request_ids)

    def retryable(self, message: str, *, diagnosis: str) -> RetryableAwsError:
        """A failure worth retrying, carrying this step's request ids."""
        return RetryableAwsError(message, diagnosis=diagnosis, aws_request_ids=self.request_ids)

    def check_size(self, kind: str, document: Any) -> int:
        """``statements.check_policy_size`` with this step's request ids on failure."""
        try:
            return check_policy_size(kind, document)
        except ProvisioningError as error:
            error.aws_request_ids = list(self.request_ids)
            raise
