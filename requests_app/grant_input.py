"""What a requester names to file a request, declared once.

Each row of ``SUBMIT_INPUT`` is one field: its name (as the API body, the
page's form, the error messages and the model's column spell it), its kind,
whether it must be given and what it is otherwise, its own rule, and the words
the API schema and the page show. From this table:

- the API's body is built (``requests_app.api.submit_serializers``),
- the page's form is built (``requests_app.web.forms``),
- the submit service takes its keywords (``requests_app.services.submission``),
- the validation runs each field's rule, then the rules across fields
  (``requests_app.validation``), and returns what ``AccessRequest`` stores.

Adding a field is a row here and its column on the model (with a migration);
a rule that needs other fields or the registry goes in ``validation``.

Some fields belong to the request as a whole (the DataLake account, why, until
when) and the others to the grant it asks for (``per_grant``): ``GRANT_INPUT``
is what a request naming several grants would repeat for each.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from provisioning import arns, names
from provisioning.errors import InvalidInput
from requests_app.models import AccessRequest

JUSTIFICATION_MAX = 4000
DATABASE_NAME_MAX = 255

# The API schema states these patterns; the API applies them to the text as
# sent (no trimming), so what the schema forbids is refused and what it allows
# is what the validation accepts. A field that may be blank is blank besides
# its pattern (the schema says "oneOf" the pattern or empty), so a pattern
# itself must not match "".
ACCOUNT_ID_PATTERN = r"^[0-9]{12}$"
ENDPOINT_IDENTIFIER_PATTERN = r"^[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*$"
ROLE_NAME_PATTERN = r"^[A-Za-z0-9_+=,.@-]+$"


class Kind(enum.Enum):
    """What a field holds, which decides its API field and its form widget."""

    ACCOUNT = "account"  # a 12-digit account id; the page offers the requester's accounts
    TEXT = "text"
    LONG_TEXT = "long_text"  # text written in several lines on the page
    CHOICE = "choice"
    DATETIME = "datetime"


# --- the fields' own rules ---------------------------------------------------
# Each takes the value as given (text stripped) and the field's name, returns
# the value the other rules and the model use, or raises InvalidInput with a
# rule that ``validation.rule_message`` turns into a sentence.


def _justification(value: str, *, field: str) -> str:
    if not value:
        raise InvalidInput(field, "A justification is required.")
    if len(value) > JUSTIFICATION_MAX:
        raise InvalidInput(field, f"Must be at most {JUSTIFICATION_MAX} characters (got {len(value)}).")
    return value


def _database_name(value: str, *, field: str) -> str:
    if len(value) > DATABASE_NAME_MAX:
        raise InvalidInput(field, f"Must be at most {DATABASE_NAME_MAX} characters.")
    return value


def _future(value: Any, *, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(field, "Must be a date and time.")
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    if value <= timezone.now():
        raise InvalidInput(field, "Must be in the future.")
    return value


# --- the declaration ---------------------------------------------------------


@dataclass(frozen=True)
class InputField:
    name: str
    kind: Kind
    clean: Callable[..., Any]
    label: str  # the page's label
    help: str = ""  # the API schema's description
    hint: str = ""  # the page's help under the field
    required: bool = False  # the API refuses a body without it; the service needs the keyword
    default: Any = ""  # what a field left out (or left blank on the page) is
    argument: str = ""  # the services' keyword, when it is not ``name``
    per_grant: bool = True
    max_length: int | None = None  # the API's limit; else the model column's
    pattern: str = ""  # for the API, with ``pattern_message``
    pattern_message: str = ""
    choices: tuple[tuple[str, str], ...] = ()  # (value, label) for Kind.CHOICE
    choice_message: str = ""  # the API's refusal of another value; {input!r} is what was sent
    placeholder: str = ""  # the page's empty choice, for a choice with no default
    short: bool = False  # the page puts consecutive short fields side by side

    def __post_init__(self) -> None:
        if not self.argument:
            object.__setattr__(self, "argument", self.name)

    @property
    def longest(self) -> int | None:
        """At most this many characters: the declared limit, else the model column's."""
        if self.max_length is not None or self.kind in (Kind.CHOICE, Kind.DATETIME):
            return self.max_length
        column = AccessRequest._meta.get_field(self.name)
        return getattr(column, "max_length", None) if column.get_internal_type() == "CharField" else None

    def check(self, value: Any, *, field: str) -> Any:
        """The field's own rule, after its length limit: a value too long for
        its column is refused by name, never left for the database to refuse."""
        limit = self.longest
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise InvalidInput(field, f"Must be at most {limit} characters (got {len(value)}).")
        return self.clean(value, field=field)

    def given(self, value: Any) -> Any:
        """The value as the rules see it: text stripped; blank (or left out) is the default."""
        if self.kind is Kind.DATETIME:
            return value if value not in ("", None) else self.default
        text = "" if value is None else str(value).strip()
        return text or self.default


SUBMIT_INPUT: tuple[InputField, ...] = (
    InputField(
        "datalake_account",
        Kind.ACCOUNT,
        names.validate_account_id,
        label="DataLake account",
        help="The 12-digit id of the registered DataLake account DMS runs in.",
        hint="The account where DMS runs. Only accounts that list you as requester.",
        required=True,
        argument="datalake_account_id",
        per_grant=False,
        pattern=ACCOUNT_ID_PATTERN,
        pattern_message="Must be a 12-digit AWS account id.",
        placeholder="Choose an account…",
    ),
    InputField(
        "secret_arn",
        Kind.TEXT,
        arns.parse_secret_arn,
        label="Remote secret ARN",
        help="Full ARN of the secret in a registered Remote account; it gives the Remote account and region.",
        hint="The full ARN of the database credentials secret; it names the Remote account and region.",
        required=True,
    ),
    InputField(
        "kms_key_arn",
        Kind.TEXT,
        arns.parse_kms_key_arn,
        label="KMS key ARN",
        help="The secret's customer-managed KMS key; discovered from the secret when left out.",
        hint="Optional: found from the secret when left empty.",
    ),
    InputField(
        "engine",
        Kind.CHOICE,
        names.validate_engine,
        label="DMS engine",
        help="The DMS engine name.",
        required=True,
        choices=tuple((engine, engine) for engine in names.ENGINES),
        choice_message=f"Must be one of {', '.join(names.ENGINES)} (got {{input!r}}).",
        placeholder="Choose an engine…",
        short=True,
    ),
    InputField(
        "endpoint_type",
        Kind.CHOICE,
        names.validate_endpoint_type,
        label="Endpoint type",
        default=AccessRequest.EndpointType.SOURCE.value,
        choices=tuple(AccessRequest.EndpointType.choices),
        choice_message="Must be source or target (got {input!r}).",
        short=True,
    ),
    InputField(
        "endpoint_identifier",
        Kind.TEXT,
        names.validate_endpoint_identifier,
        label="Endpoint identifier",
        help='The DMS endpoint identifier: starts with a letter; letters, digits and hyphens; no "--", no trailing hyphen.',
        required=True,
        pattern=ENDPOINT_IDENTIFIER_PATTERN,
        pattern_message='Must start with a letter and use only letters, digits and hyphens, with no "--" and no trailing hyphen.',
        short=True,
    ),
    InputField("database_name", Kind.TEXT, _database_name, label="Database name", short=True),
    InputField(
        "role_name",
        Kind.TEXT,
        names.validate_role_name,
        label="Role name",
        help="Name of the IAM role DMS assumes (at most 64 characters); derived from the endpoint identifier when left out.",
        hint="Optional: derived from the endpoint identifier when left empty.",
        max_length=names.ROLE_NAME_MAX,
        pattern=ROLE_NAME_PATTERN,
        pattern_message="Must use only ASCII letters, digits and _+=,.@-.",
    ),
    InputField(
        "replication_instance_arn",
        Kind.TEXT,
        arns.parse_replication_instance_arn,
        label="Replication instance ARN",
        help="A replication instance in the DataLake account; when given, verify runs a DMS connection test.",
        hint="Optional: enables a DMS connection test.",
    ),
    InputField(
        "justification",
        Kind.LONG_TEXT,
        _justification,
        label="Justification",
        help="Why DMS needs this secret.",
        required=True,
        per_grant=False,
        max_length=JUSTIFICATION_MAX,
    ),
    InputField(
        "expires_at",
        Kind.DATETIME,
        _future,
        label="Expires at (UTC)",
        help="When the grant is revoked automatically.",
        hint="Optional: the grant is revoked automatically then.",
        default=None,
        per_grant=False,
    ),
)

GRANT_INPUT: tuple[InputField, ...] = tuple(field for field in SUBMIT_INPUT if field.per_grant)
FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in SUBMIT_INPUT)


def submit_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The submit service's keywords, checked as a signature would check them,
    with the left-out ones at their default; keyed by keyword, in table order."""
    known = {field.argument for field in SUBMIT_INPUT}
    if unknown := sorted(set(arguments) - known):
        raise TypeError(f"unexpected keyword arguments: {', '.join(unknown)}")
    if missing := [field.argument for field in SUBMIT_INPUT if field.required and field.argument not in arguments]:
        raise TypeError(f"missing keyword arguments: {', '.join(missing)}")
    return {field.argument: arguments.get(field.argument, field.default) for field in SUBMIT_INPUT}


def arguments_from(data: Mapping[str, Any]) -> dict[str, Any]:
    """The submit service's keywords from a body or a form's data keyed by field name."""
    return {field.argument: data.get(field.name, field.default) for field in SUBMIT_INPUT}
