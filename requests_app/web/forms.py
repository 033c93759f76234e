"""Forms of the browser pages.

The forms only parse what the browser sent; the rules and their messages come
from ``requests_app.validation`` (the same function the submit service runs
for the API), so a field is refused with the same words on both interfaces.
The request form's fields are built from their declaration
(``requests_app.grant_input``).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms

from requests_app.errors import ValidationFailed
from requests_app.grant_input import GRANT_INPUT, SUBMIT_INPUT, InputField, Kind, arguments_from
from requests_app.services.expiry import JUSTIFICATION_MAX
from requests_app.services.request_sets import MAX_GRANTS
from requests_app.validation import validate_request_input


def _form_field(field: InputField) -> forms.Field:
    # Whether a field must be given is the validation's rule (and message), not the form's.
    options = {"label": field.label, "required": False, "help_text": field.hint}
    if field.kind is Kind.DATETIME:
        return forms.DateTimeField(
            widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"), **options
        )
    if field.kind in (Kind.CHOICE, Kind.ACCOUNT):
        if field.default:
            # It starts on its default and offers no empty choice, so none is taken.
            options.update(required=True, initial=field.default)
            return forms.ChoiceField(choices=field.choices, **options)
        return forms.ChoiceField(choices=[("", field.placeholder), *field.choices], **options)
    if field.kind is Kind.LONG_TEXT:
        return forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), **options)
    return forms.CharField(**options)


def input_form(name: str, fields: Iterable[InputField]) -> type[forms.Form]:
    """A form class named ``name`` with one form field per declared field."""
    fields = tuple(fields)
    declared = {field.name: _form_field(field) for field in fields}
    return type(name, (forms.Form,), {"__module__": __name__, "declared_input": fields, **declared})


class _InputRows:
    """What the pages' input forms share: the requester's DataLake accounts
    as the account's choices, and the fields laid out in rows."""

    declared_input: tuple[InputField, ...]

    def _offer_accounts(self, datalake_accounts) -> None:
        account_choices = [(a.account_id, f"{a.name} ({a.account_id})") for a in datalake_accounts]
        self.has_accounts = bool(account_choices)
        for field in self.declared_input:
            if field.kind is Kind.ACCOUNT:
                self.fields[field.name].choices = [*self.fields[field.name].choices, *account_choices]

    def _mark_fields(self, validate_url: str) -> None:
        for name, field in self.fields.items():
            html_name = self.add_prefix(name)
            field.widget.attrs.setdefault("id", f"id_{html_name}")
            field.widget.attrs["aria-describedby"] = f"errors_{html_name}"
            if validate_url:
                # Each field asks the server to check the whole form when it
                # changes and shows the answer for itself only.
                field.widget.attrs.update(
                    {
                        "hx-post": validate_url,
                        "hx-trigger": "change, keyup changed delay:600ms",
                        "hx-include": "closest form",
                        "hx-target": f"#errors_{html_name}",
                        "hx-swap": "innerHTML",
                        "hx-sync": "closest form:replace",
                    }
                )

    def rows(self) -> list[list[forms.BoundField]]:
        """The fields in the order declared, consecutive short ones side by side."""
        rows: list[list[forms.BoundField]] = []
        pairing = False
        for field in self.declared_input:
            if field.short and pairing:
                rows[-1].append(self[field.name])
                pairing = False
            else:
                rows.append([self[field.name]])
                pairing = field.short
        return rows


class AccessRequestForm(_InputRows, input_form("AccessRequestFields", SUBMIT_INPUT)):
    def __init__(self, *args, datalake_accounts, validate_url: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._offer_accounts(datalake_accounts)
        self._mark_fields(validate_url)

    def clean(self):
        data = super().clean()
        try:
            validate_request_input(**arguments_from(data))
        except ValidationFailed as failure:
            for field, messages in failure.errors.items():
                for message in messages:
                    self.add_error(field if field in self.fields else None, message)
        return data


# --- one request naming several grants ----------------------------------------
# The request's own fields once (``RequestSetForm``) and one row per grant
# (``GrantForm`` in ``GrantFormSet``, prefix ``grants``: its fields are posted
# as ``grants-0-secret_arn``). The forms only parse; the filing service
# validates every grant and its errors (``grants.<index>.<field>``) are put
# back on the row and field they name.

GRANTS_PREFIX = "grants"
SET_INPUT: tuple[InputField, ...] = tuple(field for field in SUBMIT_INPUT if not field.per_grant)


class RequestSetForm(_InputRows, input_form("RequestSetFields", SET_INPUT)):
    def __init__(self, *args, datalake_accounts, validate_url: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._offer_accounts(datalake_accounts)
        self._mark_fields(validate_url)

    def shared_arguments(self) -> dict[str, Any]:
        """The filing service's keywords for the request's own fields."""
        return {field.argument: self.cleaned_data.get(field.name, field.default) for field in SET_INPUT}


class GrantForm(_InputRows, input_form("GrantFields", GRANT_INPUT)):
    def __init__(self, *args, validate_url: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._mark_fields(validate_url)

    def grant_arguments(self) -> dict[str, Any]:
        """The filing service's keywords for this grant."""
        return {field.argument: self.cleaned_data.get(field.name, field.default) for field in GRANT_INPUT}

    def raw_values(self) -> dict[str, str]:
        """What the browser sent for this row, as typed (to show it again)."""
        return {name: self.data.get(self.add_prefix(name), "") for name in self.fields}


GrantFormSet = forms.formset_factory(
    GrantForm, extra=0, min_num=1, max_num=MAX_GRANTS, absolute_max=MAX_GRANTS, validate_max=True
)


class ExtendForm(forms.Form):
    """The fields of the ask for a later expiry, as the page shows them; the post is parsed by
    the table of actions (``requests_app.actions``) and the service decides whether the date is acceptable."""

    expires_at = forms.DateTimeField(
        label="New expiry (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    justification = forms.CharField(
        label="Why longer?", required=False, max_length=JUSTIFICATION_MAX, widget=forms.Textarea(attrs={"rows": 2})
    )


class AuditFilterForm(forms.Form):
    request = forms.IntegerField(label="Request #", required=False, min_value=1)
    account = forms.CharField(label="Account id", required=False, max_length=12)
    actor = forms.CharField(label="Actor", required=False, max_length=150)
    since = forms.DateTimeField(
        label="Since (UTC)", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        label="Until (UTC)", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def selector_filters(self) -> dict:
        """The valid filters as ``selectors.audit_events_visible_to`` arguments (invalid ones are shown and ignored)."""
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "request_id": data.get("request"),
            "account_id": data.get("account") or None,
            "actor": data.get("actor") or None,
            "since": data.get("since"),
            "until": data.get("until"),
        }
