"""Which AWS failures the workflow retries, and what it tells the user about the others."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from provisioning.aws_errors import translate_error
from provisioning.errors import PermanentAwsError, RetryableAwsError


def client_error(code: str, message: str = "", *, status: int = 400, operation: str = "PutKeyPolicy",
                 request_id: str = "req-1") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message},
         "ResponseMetadata": {"RequestId": request_id, "HTTPStatusCode": status}},
        operation,
    )


@pytest.mark.parametrize(
    ("service", "operation", "message"),
    [
        ("kms", "PutKeyPolicy", "Policy contains a statement with one or more invalid principals."),
        ("secretsmanager", "PutResourcePolicy", "This resource policy contains an unsupported principal."),
        ("iam", "UpdateAssumeRolePolicy", 'Invalid principal in policy: "AWS":"arn:aws:iam::1:role/x"'),
    ],
)
def test_a_principal_aws_cannot_see_yet_is_retried(service, operation, message):
    code = "MalformedPolicyDocument" if service == "iam" else "MalformedPolicyDocumentException"
    error = translate_error(client_error(code, message, operation=operation), service=service, operation=operation)
    assert isinstance(error, RetryableAwsError)
    assert error.diagnosis == "principal_not_visible"
    assert error.aws_request_ids == ["req-1"]


def test_a_malformed_policy_for_another_reason_is_permanent():
    error = translate_error(client_error("MalformedPolicyDocumentException", "Policy has invalid JSON"),
                            service="kms", operation="PutKeyPolicy")
    assert isinstance(error, PermanentAwsError)
    assert error.diagnosis != "principal_not_visible"


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", 400), ("Throttling", 400), ("TooManyRequestsException", 429),
     ("InternalServiceError", 500), ("ServiceUnavailable", 503), ("KMSInternalException", 500),
     ("SomethingNew", 502), ("ConcurrentModification", 409)],
)
def test_throttling_and_server_errors_are_retried(code, status):
    error = translate_error(client_error(code, "slow down", status=status), service="kms", operation="GetKeyPolicy")
    assert isinstance(error, RetryableAwsError)
    assert error.diagnosis == "aws_unavailable"


@pytest.mark.parametrize(
    "error",
    [EndpointConnectionError(endpoint_url="https://kms.eu-west-1.amazonaws.com"),
     ReadTimeoutError(endpoint_url="https://kms.eu-west-1.amazonaws.com")],
)
def test_connection_trouble_is_retried(error):
    translated = translate_error(error, service="kms", operation="GetKeyPolicy", request_ids=["earlier"])
    assert isinstance(translated, RetryableAwsError)
    assert translated.diagnosis == "aws_unavailable"
    assert translated.aws_request_ids == ["earlier"]


def test_access_denied_names_the_action_aws_refused():
    message = ("User: arn:aws:sts::222222222222:assumed-role/dms-access-portal-provisioner/portal-req-1 is not "
               "authorized to perform: kms:PutKeyPolicy on resource: arn:aws:kms:eu-west-1:222222222222:key/k "
               "because no identity-based policy allows the kms:PutKeyPolicy action")
    error = translate_error(client_error("AccessDeniedException", message, status=400), service="kms",
                            operation="PutKeyPolicy", request_ids=["r0"])
    assert isinstance(error, PermanentAwsError)
    assert error.diagnosis == "provisioner_access_denied"
    assert "kms:PutKeyPolicy" in error.message
    assert error.aws_request_ids == ["r0", "req-1"]


def test_access_denied_without_an_action_in_the_message_names_the_operation():
    error = translate_error(client_error("AccessDeniedFault", "denied", operation="CreateEndpoint"),
                            service="dms", operation="CreateEndpoint")
    assert error.diagnosis == "provisioner_access_denied"
    assert "dms:CreateEndpoint" in error.message


def test_moto_access_denied_with_only_an_http_status_is_access_denied():
    error = translate_error(client_error("403", "", status=403), service="iam", operation="CreateRole")
    assert error.diagnosis == "provisioner_access_denied"
    assert "iam:CreateRole" in error.message


@pytest.mark.parametrize(
    ("operation", "diagnosis"),
    [("PutKeyPolicy", "policy_too_large"), ("PutRolePolicy", "policy_too_large"),
     ("CreateReplicationInstance", "aws_request_rejected")],
)
def test_limit_exceeded_means_a_policy_too_large_only_where_a_policy_is_uploaded(operation, diagnosis):
    error = translate_error(client_error("LimitExceededException", "too big", operation=operation),
                            service="kms", operation=operation)
    assert isinstance(error, PermanentAwsError)
    assert error.diagnosis == diagnosis


@pytest.mark.parametrize(
    ("service", "code", "diagnosis"),
    [("secretsmanager", "ResourceNotFoundException", "secret_not_found"),
     ("kms", "NotFoundException", "key_not_usable"),
     ("kms", "DisabledException", "key_not_usable"),
     ("iam", "NoSuchEntity", "aws_request_rejected")],
)
def test_not_found_and_unusable_are_permanent(service, code, diagnosis):
    error = translate_error(client_error(code, "nope", status=404 if "Found" in code else 400),
                            service=service, operation="Describe")
    assert isinstance(error, PermanentAwsError)
    assert error.diagnosis == diagnosis


def test_validation_errors_are_permanent_with_aws_words():
    error = translate_error(client_error("InvalidParameterValueException", "DatabaseName is not allowed"),
                            service="dms", operation="CreateEndpoint")
    assert isinstance(error, PermanentAwsError)
    assert "DatabaseName is not allowed" in error.message


def test_bad_parameters_from_botocore_are_permanent():
    error = translate_error(ParamValidationError(report="Invalid length for RoleName"), service="iam",
                            operation="GetRole")
    assert isinstance(error, PermanentAwsError)
    assert error.diagnosis == "invalid_input"
