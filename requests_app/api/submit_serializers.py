"""The body of ``POST /api/v1/requests/``, built from the declaration of a
request's fields (``requests_app.grant_input``).

Like every input serializer, it only parses types and sizes (and the patterns
the schema states); every rule about what a valid request is lives in
``requests_app.validation``, so the API and the page refuse the same things
with the same words.
"""
from __future__ import annotations

from collections.abc import Iterable

from rest_framework import serializers

from requests_app.grant_input import SUBMIT_INPUT, InputField, Kind


def _api_field(field: InputField) -> serializers.Field:
    options = {"help_text": field.help or None, "required": field.required}
    if not field.required:
        options["default"] = field.default
    if field.kind is Kind.DATETIME:
        return serializers.DateTimeField(allow_null=True, **options)
    if field.kind is Kind.CHOICE:
        # As listed, exactly: a ChoiceField trims no spaces, as the schema's enum (sorted) says.
        return serializers.ChoiceField(
            choices=sorted(field.choices), error_messages={"invalid_choice": field.choice_message}, **options
        )
    options.update(max_length=field.longest, allow_blank=not field.required)
    if field.pattern:
        return serializers.RegexField(
            field.pattern, trim_whitespace=False, error_messages={"invalid": field.pattern_message}, **options
        )
    return serializers.CharField(**options)


def input_serializer(name: str, fields: Iterable[InputField], doc: str) -> type[serializers.Serializer]:
    """A serializer class named ``name`` with one API field per declared field."""
    declared = {field.name: _api_field(field) for field in fields}
    return type(name, (serializers.Serializer,), {"__module__": __name__, "__doc__": doc, **declared})


RequestSubmitSerializer = input_serializer(
    "RequestSubmitSerializer", SUBMIT_INPUT, "What a requester sends to file a request."
)
