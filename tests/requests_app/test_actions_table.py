"""One table of actions (``requests_app.actions.ACTIONS``) for the pages, the API and
``permissions.allowed_actions`` / ``lifecycle_actions``: a rule changed there holds everywhere."""
from __future__ import annotations

import dataclasses

import pytest
from django.test import Client
from django.urls import URLPattern, get_resolver, reverse

from requests_app import actions, permissions, services
from requests_app.actions import ACTIONS
from requests_app.api.views import _RequestActionView
from requests_app.models import RequestState
from tests.factories import api_token_for
from tests.requests_app.page_rows import make_accounts, make_request, make_users

pytestmark = pytest.mark.django_db


def _api_action_views() -> dict[str, type]:
    found = {}

    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLPattern):
                view = getattr(pattern.callback, "view_class", None)
                if view is not None and issubclass(view, _RequestActionView):
                    found[view.action_name] = view
            else:
                walk(pattern.url_patterns)

    walk(get_resolver().url_patterns)
    return found


def test_every_api_action_route_is_a_row_of_the_table_and_every_api_row_has_a_route():
    views = _api_action_views()
    assert set(views) == {name for name, action in ACTIONS.items() if action.in_api}
    assert not any(hasattr(view, "service_name") for view in views.values())


def test_every_row_names_a_service_and_a_permission_of_their_modules():
    for name, action in ACTIONS.items():
        assert action.name == name
        assert getattr(services, action.service.__name__) is action.service
        assert getattr(permissions, action.may.__name__) is action.may
    assert set(actions.API_ACTION_NAMES) == {"approve", "reject", "cancel", "revoke", "retry"}
    assert set(actions.LIFECYCLE_ACTION_NAMES) == {
        "extend", "decide_extension", "repair", "ask_repair", "decide_repair", "export"
    }


@pytest.fixture
def site():
    users = make_users()
    return users, make_accounts(users)


def test_a_rule_changed_in_the_table_holds_on_the_page_in_the_api_and_in_what_is_offered(site, monkeypatch):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    requester = users["requester"]
    assert "cancel" in permissions.allowed_actions(requester, request)

    # Nobody may cancel any more: one change, in the table.
    monkeypatch.setitem(ACTIONS, "cancel", dataclasses.replace(ACTIONS["cancel"], may=lambda user, request: False))

    assert "cancel" not in permissions.allowed_actions(requester, request)
    page = Client()
    page.force_login(requester)
    assert 'value="cancel"' not in page.get(reverse("web:request_detail", args=[request.pk])).content.decode()
    assert page.post(reverse("web:request_action", args=[request.pk, "cancel"])).status_code == 403
    api = Client()
    token = api_token_for(requester)
    answer = api.post(f"/api/v1/requests/{request.pk}/cancel/", HTTP_AUTHORIZATION=f"Token {token}")
    assert answer.status_code == 403
    request.refresh_from_db()
    assert request.state == RequestState.PENDING_APPROVAL


def test_the_pages_and_the_api_refuse_with_the_same_words(site):
    users, accounts = site
    request = make_request(users["requester"], accounts)
    expected = ACTIONS["approve"].refusal.format(request=request)
    page = Client()
    page.force_login(users["requester"])
    shown = page.post(reverse("web:request_action", args=[request.pk, "approve"]), {"plan_hash": request.plan_hash})
    token = api_token_for(users["requester"])
    answered = Client().post(
        f"/api/v1/requests/{request.pk}/approve/", {"plan_hash": request.plan_hash},
        content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}",
    )

    assert shown.status_code == answered.status_code == 403
    assert expected in shown.content.decode()
    assert answered.json()["detail"] == expected
