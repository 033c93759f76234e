"""Paging through the audit trail without counting it.

A page-number paginator counts every matching row to number its pages; over
an audit trail of millions of events that count costs more than the page
itself. The audit log (page and API) pages by cursor instead: each page is
the next ``page_size`` events by id, newest first, found through the primary
key index however long the trail grows. The cursor is DRF's, opaque to the
caller; a tampered one is a 404.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404, HttpRequest
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.request import Request


def _positive_int(request: Request, name: str) -> int | None:
    """The query parameter ``name`` as a whole number from 1, None when absent; a 400 otherwise.

    DRF falls back to the default on a bad value; the schema documents a
    positive integer, so anything else is refused, as the schema says.
    """
    if name not in request.query_params:
        return None
    # Leading zeros dropped, then at most 19 digits: a longer number is as
    # good as any beyond the last page or the largest page size.
    numbers = [
        int(value.lstrip("0")[:19] or "0") if value.isascii() and value.isdigit() else 0
        for value in request.query_params.getlist(name)
    ]
    if not all(number >= 1 for number in numbers):
        raise ValidationError({name: ["must be a whole number from 1"]})
    return numbers[-1]


class StrictPageSize:
    """``page_size`` is a positive integer or a 400; above ``max_page_size`` it gives ``max_page_size``."""

    def get_page_size(self, request):
        if self.page_size_query_param:
            wanted = _positive_int(request, self.page_size_query_param)
            if wanted is not None:
                return min(wanted, self.max_page_size)
        return self.page_size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = f"Results per page, from 1; more than {self.max_page_size} give {self.max_page_size}."
        return parameters


class StrictPageNumberPagination(StrictPageSize, PageNumberPagination):
    """Page numbers: ``page`` is a positive integer or a 400 (no ``last``, no empty value)."""

    last_page_strings = ()

    def get_page_number(self, request, paginator):
        return _positive_int(request, self.page_query_param) or 1

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters


class NewestFirstCursorPagination(StrictPageSize, CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


@dataclass(frozen=True)
class CursorPage:
    """One page of rows and the links to its neighbours (None at either end)."""

    rows: list
    newer_url: str | None
    older_url: str | None


def cursor_page(request: HttpRequest, queryset) -> CursorPage:
    """The page of ``queryset`` the request's ``cursor`` names, for a server-rendered page
    (whose page size is fixed: only the API takes ``page_size``)."""
    paginator = NewestFirstCursorPagination()
    paginator.page_size_query_param = None
    try:
        rows = paginator.paginate_queryset(queryset, Request(request))
    except NotFound:
        raise Http404("No such page of events.") from None
    return CursorPage(rows=list(rows), newer_url=paginator.get_previous_link(), older_url=paginator.get_next_link())
