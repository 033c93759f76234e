"""Forms of the browser pages.

The forms only parse what the browser sent; the rules and their messages come
from ``requests_app.validation`` (the same function the API's serializers
call), so a field is refused with the same words on both interfaces.
"""
from __future__ import annotations

from django import forms

from provisioning.names import ENGINES
from requests_app.errors import ValidationFailed
from requests_app.services.expiry import JUSTIFICATION_MAX
from requests_app.validation import REQUEST_FIELDS, validate_request_input



class AccessRequestForm(forms.Form):
    datalake_account = forms.ChoiceField(
        label="DataLake account", help_text="The account where DMS runs. Only accounts that list you as requester."
    )
    secret_arn = forms.CharField(
        label="Remote secret ARN",
        required=False,
        help_text="The full ARN of the database credentials secret; it names the Remote account and region.",
    )
    kms_key_arn = forms.CharField(
        label="KMS key ARN", required=False, help_text="Optional: found from the secret when left empty."
    )
    engine = forms.ChoiceField(label="DMS engine")
    endpoint_identifier = forms.CharField(label="Endpoint identifier", required=False)
    endpoint_type = forms.ChoiceField(
        label="Endpoint type", choices=[("source", "Source"), ("target", "Target")], initial="source"
    )
    database_name = forms.CharField(label="Database name", required=False)
    role_name = forms.CharField(
        label="Role name", required=False, help_text="Optional: derived from the endpoint identifier when left empty."
    )
    replication_instance_arn = forms.CharField(
        label="Replication instance ARN", required=False, help_text="Optional: enables a DMS connection test."
    )
    justification = forms.CharField(label="Justification", required=False, widget=forms.Textarea(attrs={"rows": 4}))
    expires_at = forms.DateTimeField(
        label="Expires at (UTC)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Optional: the grant is revoked automatically then.",
    )

    def __init__(self, *args, datalake_accounts, validate_url: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        account_choices = [(a.account_id, f"{a.name} ({a.account_id})") for a in datalake_accounts]
        self.has_accounts = bool(account_choices)
        self.fields["datalake_account"].choices = [("", "Choose an account…")] + account_choices
        self.fields["engine"].choices = [("", "Choose an engine…")] + [(name, name) for name in ENGINES]
        # Required-ness is the validation module's rule (and message), not the form's.
        self.fields["datalake_account"].required = False
        self.fields["engine"].required = False
        for name, field in self.fields.items():
            field.widget.attrs.setdefault("id", f"id_{name}")
            field.widget.attrs["aria-describedby"] = f"errors_{name}"
            if validate_url:
                # Each field asks the server to check the whole form when it
                # changes and shows the answer for itself only.
                field.widget.attrs.update(
                    {
                        "hx-post": validate_url,
                        "hx-trigger": "change, keyup changed delay:600ms",
                        "hx-include": "closest form",
                        "hx-target": f"#errors_{name}",
                        "hx-swap": "innerHTML",
                        "hx-sync": "closest form:replace",
                    }
                )

    def clean(self):
        data = super().clean()
        try:
            self.validated = validate_request_input(**self.service_arguments(data))
        except ValidationFailed as failure:
            for field, messages in failure.errors.items():
                for message in messages:
                    self.add_error(field if field in self.fields else None, message)
        return data

    @staticmethod
    def service_arguments(data: dict) -> dict:
        return {
            "datalake_account_id": data.get("datalake_account") or "",
            "secret_arn": (data.get("secret_arn") or "").strip(),
            "kms_key_arn": (data.get("kms_key_arn") or "").strip(),
            "engine": data.get("engine") or "",
            "endpoint_identifier": (data.get("endpoint_identifier") or "").strip(),
            "endpoint_type": data.get("endpoint_type") or "source",
            "database_name": (data.get("database_name") or "").strip(),
            "role_name": (data.get("role_name") or "").strip(),
            "replication_instance_arn": (data.get("replication_instance_arn") or "").strip(),
            "justification": data.get("justification") or "",
            "expires_at": data.get("expires_at"),
        }


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
