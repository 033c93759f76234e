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
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request


class NewestFirstCursorPagination(CursorPagination):
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
