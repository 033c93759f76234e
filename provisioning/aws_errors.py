"""Classify botocore failures into the engine's two error kinds.

Every AWS call the engine makes goes through :func:`translate_error` when it
fails, so the workflow only ever sees ``RetryableAwsError`` (try again later:
throttling, 5xx, connection trouble, a principal IAM has not propagated yet)
or ``PermanentAwsError`` (retrying cannot help: access denied, not found,
validation, a policy too large), each with a diagnosis code and the request
ids to quote to AWS support.
"""
from __future__ import annotations

import re

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError, ParamValidationError
from botocore.exceptions import ConnectionError as BotoConnectionError

from provisioning.errors import PermanentAwsError, ProvisioningError, RetryableAwsError

# botocore's standard retry mode already retried these before we see them;
# seeing one here means AWS is still overloaded, so the workflow retries later.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
        "TransactionInProgressException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceErrorException",
        "ServiceFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ConcurrentModification",
        "ConcurrentModificationException",
        "IDPCommunicationError",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AccessDeniedFault",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        # moto's IAM enforcement answers with an XML body botocore cannot
        # read a code from, so the HTTP status becomes the code.
        "403",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "NoSuchEntity",
        "NoSuchEntityException",
        "NotFoundException",
        "ResourceNotFoundException",
        "ResourceNotFoundFault",
    }
)
LIMIT_CODES = frozenset({"LimitExceeded", "LimitExceededException", "ResourceQuotaExceededFault"})
KEY_STATE_CODES = frozenset({"DisabledException", "KMSInvalidStateException", "KeyUnavailableException"})
MALFORMED_POLICY_CODES = frozenset({"MalformedPolicyDocument", "MalformedPolicyDocumentException"})

# Operations that upload a policy document: a limit error there means the
# document is too large (KMS: 32 KB key policy; IAM: 10,240 characters of
# inline policies, 2,048 of trust policy), not that a request quota was hit.
POLICY_UPLOAD_OPERATIONS = frozenset(
    {"PutKeyPolicy", "PutRolePolicy", "UpdateAssumeRolePolicy", "CreateRole", "PutResourcePolicy"}
)

# IAM needs a few seconds to make a new role visible to KMS and Secrets
# Manager, which reject it meanwhile with these messages.
_PRINCIPAL_NOT_VISIBLE = re.compile(r"(invalid|unsupported)\s+principal", re.IGNORECASE)
_DENIED_ACTION = re.compile(r"perform:\s*([A-Za-z0-9-]+:[A-Za-z0-9*]+)")

NOT_FOUND_DIAGNOSIS_BY_SERVICE = {"secretsmanager": "secret_not_found", "kms": "key_not_usable"}
GENERIC_REJECTION = "aws_request_rejected"


def error_code(error: ClientError) -> str:
    """The AWS error code of ``error`` (``""`` when the response had none)."""
    return str(error.response.get("Error", {}).get("Code") or "")


def error_message(error: ClientError) -> str:
    """The AWS error message of ``error``, whichever key the protocol used."""
    details = error.response.get("Error", {})
    return str(details.get("Message") or details.get("message") or "")


def request_id_of(response_or_error: dict | ClientError) -> str | None:
    """The AWS request id of a response dict or a ClientError, if AWS sent one."""
    response = response_or_error.response if isinstance(response_or_error, ClientError) else response_or_error
    metadata = (response or {}).get("ResponseMetadata") or {}
    request_id = metadata.get("RequestId")
    if not request_id:
        headers = metadata.get("HTTPHeaders") or {}
        request_id = headers.get("x-amzn-requestid") or headers.get("x-amz-request-id")
    return request_id or None


def is_not_found(error: BaseException) -> bool:
    """True when ``error`` says the resource does not exist."""
    return isinstance(error, ClientError) and error_code(error) in NOT_FOUND_CODES


def is_principal_not_visible(error: BaseException) -> bool:
    """True for the policy rejection IAM eventual consistency causes."""
    return (
        isinstance(error, ClientError)
        and error_code(error) in MALFORMED_POLICY_CODES
        and bool(_PRINCIPAL_NOT_VISIBLE.search(error_message(error)))
    )


def denied_action(error: ClientError, *, service: str, operation: str) -> str:
    """The IAM action the caller lacked: from AWS's message when it names one,
    else ``<service>:<operation>``."""
    match = _DENIED_ACTION.search(error_message(error))
    return match.group(1) if match else f"{service}:{operation}"


def translate_error(
    error: BaseException,
    *,
    service: str,
    operation: str,
    request_ids: list[str] | None = None,
    not_found_diagnosis: str | None = None,
) -> ProvisioningError:
    """Turn a botocore failure of ``service``/``operation`` into the engine error
    the workflow acts on.

    ``request_ids`` are the ids of the calls made before this one in the same
    step; the failed call's id is appended. ``not_found_diagnosis`` overrides
    the per-service default for a missing resource.
    """
    ids = list(request_ids or [])
    if isinstance(error, ProvisioningError):
        return error
    if isinstance(error, ClientError):
        request_id = request_id_of(error)
        if request_id:
            ids.append(request_id)
        return _translate_client_error(error, service=service, operation=operation, ids=ids,
                                       not_found_diagnosis=not_found_diagnosis)
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return RetryableAwsError(f"{service}:{operation} could not reach AWS: {error}",
                                 diagnosis="aws_unavailable", aws_request_ids=ids)
    if isinstance(error, NoCredentialsError):
        return PermanentAwsError("The portal has no base AWS credentials to assume the provisioner roles with.",
                                 diagnosis="provisioner_access_denied", aws_request_ids=ids)
    if isinstance(error, ParamValidationError):
        return PermanentAwsError(f"{service}:{operation} was given invalid parameters: {error}",
                                 diagnosis="invalid_input", aws_request_ids=ids)
    if isinstance(error, BotoCoreError):
        return PermanentAwsError(f"{service}:{operation} failed: {error}", diagnosis=GENERIC_REJECTION,
                                 aws_request_ids=ids)
    raise TypeError(f"not a botocore error: {error!r}")


def _translate_client_error(
    error: ClientError, *, service: str, operation: str, ids: list[str], not_found_diagnosis: str | None
) -> ProvisioningError:
    code = error_code(error)
    message = error_message(error)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    where = f"{service}:{operation}"

    if is_principal_not_visible(error):
        return RetryableAwsError(
            f"{where}: AWS does not see the new role as a principal yet ({message})",
            diagnosis="principal_not_visible", aws_request_ids=ids)
    if code in THROTTLING_CODES or code in TRANSIENT_CODES or status >= 500:
        return RetryableAwsError(f"{where} failed temporarily: {code} {message}".rstrip(),
                                 diagnosis="aws_unavailable", aws_request_ids=ids)
    if code in ACCESS_DENIED_CODES or code.startswith("AccessDenied"):
        action = denied_action(error, service=service, operation=operation)
        return PermanentAwsError(
            f"The provisioner role is not allowed to call {action}: {message or code}",
            diagnosis="provisioner_access_denied", aws_request_ids=ids)
    if code in LIMIT_CODES:
        if operation in POLICY_UPLOAD_OPERATIONS:
            return PermanentAwsError(f"{where}: the policy is larger than AWS allows ({message})",
                                     diagnosis="policy_too_large", aws_request_ids=ids)
        return PermanentAwsError(f"{where}: an AWS quota is exhausted ({message})",
                                 diagnosis=GENERIC_REJECTION, aws_request_ids=ids)
    if code in NOT_FOUND_CODES or status == 404:
        diagnosis = not_found_diagnosis or NOT_FOUND_DIAGNOSIS_BY_SERVICE.get(service, GENERIC_REJECTION)
        return PermanentAwsError(f"{where}: not found ({message or code})", diagnosis=diagnosis,
                                 aws_request_ids=ids)
    if code in KEY_STATE_CODES:
        return PermanentAwsError(f"{where}: the KMS key cannot be used ({message or code})",
                                 diagnosis="key_not_usable", aws_request_ids=ids)
    return PermanentAwsError(f"{where} was rejected: {code} {message}".rstrip(), diagnosis=GENERIC_REJECTION,
                             aws_request_ids=ids)
