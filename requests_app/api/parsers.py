"""The API's JSON body parser."""
from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's parser, plus: a body nested deeper than Python's recursion limit is
    a 400 like any other malformed JSON, and the body must be an object."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
        if not isinstance(data, dict):
            raise ParseError("The body must be a JSON object.")
        return data
