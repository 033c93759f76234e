"""The pages of a request naming several grants, through Django's test client.

Filing: the request's own fields once and one row per grant (built from
``GRANT_INPUT``), rows added and removed without losing what was typed, the
filing service's errors shown on the row and field they name. The set's page:
its grants, its one plan labelled by grant, approving it once with the plan's
hash, rejecting and revoking it; and the way from each grant to its set.
"""
from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from requests_app.grant_input import GRANT_INPUT, SUBMIT_INPUT
from requests_app.models import AccessRequest, Decision, RequestSet, RequestState
from requests_app.set_plans import awaiting_grants, set_plan_hash
from tests.aws_world import DATALAKE_ID

pytestmark = pytest.mark.django_db

NEW = "/requests/new/"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _body(rows: list[dict], *, justification="Three databases of the orders service.", **extra) -> dict:
    body = {
        "datalake_account": DATALAKE_ID,
        "justification": justification,
        "expires_at": "",
        "grants-TOTAL_FORMS": str(len(rows)),
        "grants-INITIAL_FORMS": "0",
        "grants-MIN_NUM_FORMS": "1",
        "grants-MAX_NUM_FORMS": "50",
    }
    for index, row in enumerate(rows):
        row = {"endpoint_type": "source", **row}
        for name in (field.name for field in GRANT_INPUT):
            body[f"grants-{index}-{name}"] = row.get(name, "")
    body.update(extra)
    return body


def _value(page: str, name: str) -> str | None:
    """The value the page's input ``name`` shows (None when there is no such input)."""
    found = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', page)
    if found is None:
        return None
    value = re.search(r'value="([^"]*)"', found.group(0))
    return value.group(1) if value else ""


def _selected(page: str, name: str) -> str:
    select = re.search(rf'<select name="{re.escape(name)}".*?</select>', page, re.S)
    assert select is not None, name
    chosen = re.search(r'<option value="([^"]*)"[^>]*selected', select.group(0))
    return chosen.group(1) if chosen else ""


def _errors(page: str, name: str) -> list[str]:
    block = re.search(rf'<div class="errors" id="errors_{re.escape(name)}"[^>]*>(.*?)</div>', page, re.S)
    assert block is not None, f"no error block for {name}"
    return re.findall(r"<p>(.*?)</p>", block.group(1))


# --- filing ---------------------------------------------------------------------


def test_the_form_for_several_grants_asks_the_requests_fields_once_and_each_grants_per_row(cast):
    page = _client(cast.requester).get(NEW, {"several": "1"}).content.decode()
    for field in SUBMIT_INPUT:
        if field.per_grant:
            assert f'name="{field.name}"' not in page
            for index in (0, 1):  # two rows to start with
                assert f'name="grants-{index}-{field.name}"' in page
                assert f'id="errors_grants-{index}-{field.name}"' in page
            assert 'name="grants-2-' not in page
        else:
            assert page.count(f'name="{field.name}"') == 1
            assert 'name="grants-0-' + field.name + '"' not in page
    assert "Add a grant" in page
    # The single request's form is as it was: no rows, no management form.
    single = _client(cast.requester).get(NEW).content.decode()
    assert "grants-TOTAL_FORMS" not in single and 'name="secret_arn"' in single


def test_adding_and_removing_a_row_keeps_everything_typed_and_files_nothing(cast):
    client = _client(cast.requester)
    secret = f"arn:aws:secretsmanager:eu-west-1:{cast.remote.account_id}:secret:prod/orders-AbCdEf"
    rows = [
        {"secret_arn": secret, "engine": "mysql", "endpoint_identifier": "orders-a"},
        {"secret_arn": secret, "engine": "postgres", "endpoint_identifier": "orders-b", "endpoint_type": "target"},
    ]
    added = client.post(NEW, _body(rows, justification="Kept as typed.", add_grant="1"))
    assert added.status_code == 200
    page = added.content.decode()
    assert _value(page, "grants-TOTAL_FORMS") == "3"
    assert _value(page, "grants-1-endpoint_identifier") == "orders-b"
    assert _selected(page, "grants-1-engine") == "postgres"
    assert _selected(page, "grants-1-endpoint_type") == "target"
    assert _value(page, "grants-2-endpoint_identifier") == ""
    assert _selected(page, "grants-2-endpoint_type") == "source"
    assert "Kept as typed." in page
    assert _selected(page, "datalake_account") == DATALAKE_ID
    assert not re.search(r'class="errors"[^>]*><p>', page)  # nothing was checked yet

    removed = client.post(NEW, _body(rows, remove_grant="0"))
    page = removed.content.decode()
    assert _value(page, "grants-TOTAL_FORMS") == "1"
    assert _value(page, "grants-0-endpoint_identifier") == "orders-b"
    assert _selected(page, "grants-0-engine") == "postgres"
    assert RequestSet.objects.count() == 0 and AccessRequest.objects.count() == 0


def test_errors_are_shown_on_their_row_and_field_and_nothing_typed_is_lost(cast):
    secret = f"arn:aws:secretsmanager:eu-west-1:{cast.remote.account_id}:secret:prod/orders-AbCdEf"
    rows = [
        {"secret_arn": secret, "engine": "postgres", "endpoint_identifier": "orders-a", "database_name": "orders"},
        {"secret_arn": secret, "engine": "mysql", "endpoint_identifier": "9-lives--"},
        {"secret_arn": secret, "engine": "", "endpoint_identifier": "orders-c"},
    ]
    response = _client(cast.requester).post(NEW, _body(rows, justification=""))
    assert response.status_code == 400
    page = response.content.decode()
    assert _errors(page, "grants-1-endpoint_identifier")
    assert _errors(page, "grants-2-engine")
    assert _errors(page, "justification")
    for name in ("secret_arn", "engine", "endpoint_identifier", "database_name"):
        assert _errors(page, f"grants-0-{name}") == []
    assert _errors(page, "grants-1-engine") == [] and _errors(page, "grants-2-endpoint_identifier") == []
    # Everything typed is shown again, row by row.
    assert _value(page, "grants-0-secret_arn") == escape(secret)
    assert _value(page, "grants-0-database_name") == "orders"
    assert _value(page, "grants-1-endpoint_identifier") == "9-lives--"
    assert _value(page, "grants-2-endpoint_identifier") == "orders-c"
    assert _selected(page, "grants-0-engine") == "postgres"
    assert _selected(page, "datalake_account") == DATALAKE_ID
    assert RequestSet.objects.count() == 0 and AccessRequest.objects.count() == 0


def test_two_rows_naming_one_endpoint_are_refused_on_the_second(cast):
    secret = f"arn:aws:secretsmanager:eu-west-1:{cast.remote.account_id}:secret:prod/orders-AbCdEf"
    rows = [
        {"secret_arn": secret, "engine": "mysql", "endpoint_identifier": "orders-a"},
        {"secret_arn": secret, "engine": "mysql", "endpoint_identifier": "orders-a", "role_name": "other-role"},
    ]
    page = _client(cast.requester).post(NEW, _body(rows)).content.decode()
    assert _errors(page, "grants-0-endpoint_identifier") == []
    assert "each grant needs its own endpoint" in " ".join(_errors(page, "grants-1-endpoint_identifier"))


def test_a_form_with_only_empty_rows_says_to_name_a_grant(cast):
    page = _client(cast.requester).post(NEW, _body([{}, {}])).content.decode()
    assert "Name at least one grant." in page
    assert RequestSet.objects.count() == 0


def test_someone_no_account_lists_cannot_file_several(cast):
    response = _client(cast.outsider).post(NEW, _body([{"engine": "mysql"}]))
    assert response.status_code == 403
    assert RequestSet.objects.count() == 0


def test_three_grants_filed_through_the_page_become_one_request(cast, portal_aws):
    world = portal_aws
    rows = [
        {"secret_arn": world.secret_arn, "engine": "mysql", "endpoint_identifier": "orders-a"},
        {"secret_arn": world.secret_arn, "engine": "postgres", "endpoint_identifier": "orders-b", "endpoint_type": "target"},
        {},  # an added row left empty is no grant
        {"secret_arn": world.secret_arn, "engine": "postgres", "endpoint_identifier": "orders-c", "database_name": "orders"},
    ]
    client = _client(cast.requester)
    response = client.post(NEW, _body(rows, expires_at="2099-01-31T12:00"))
    assert response.status_code == 302, response.content.decode()[:2000]
    request_set = RequestSet.objects.get()
    assert response["Location"] == reverse("web:request_set_detail", args=[request_set.pk])
    grants = list(request_set.grants.order_by("pk"))
    assert [(g.endpoint_identifier, g.engine, g.endpoint_type) for g in grants] == [
        ("orders-a", "mysql", "source"), ("orders-b", "postgres", "target"), ("orders-c", "postgres", "source"),
    ]
    assert grants[2].database_name == "orders"
    assert all(g.justification == "Three databases of the orders service." for g in grants)
    assert all(g.expires_at.year == 2099 for g in grants)
    assert all(g.state == RequestState.PENDING_APPROVAL for g in grants)
    page = client.get(response["Location"]).content.decode()
    assert f"Request set #{request_set.pk} filed with 3 grants" in page
    for grant in grants:
        assert reverse("web:request_detail", args=[grant.pk]) in page


# --- the set's page -----------------------------------------------------------------


def _set(cast, count: int = 3, **fields) -> tuple[RequestSet, list[AccessRequest]]:
    request_set = RequestSet.objects.create(
        requester=cast.requester, datalake_account=cast.datalake, remote_account=cast.remote,
        justification="Three databases of the orders service.",
    )
    grants = [cast.request(request_set=request_set, **fields) for _ in range(count)]
    return request_set, grants


def _set_url(request_set, action: str = "") -> str:
    if action:
        return reverse("web:request_set_action", args=[request_set.pk, action])
    return reverse("web:request_set_detail", args=[request_set.pk])


def _grant_states(page: str) -> list[str]:
    """The state of each row of the grants table, top to bottom."""
    return re.findall(r'<tr data-grant="\d+" data-state="([a-z_]+)">', page)


def _hidden(page: str, name: str) -> list[str]:
    return re.findall(rf'<input type="hidden" name="{name}" value="([^"]*)">', page)


def test_the_set_page_shows_each_grant_and_one_plan_labelled_by_grant(cast):
    request_set, grants = _set(cast)
    response = _client(cast.approver).get(_set_url(request_set))
    assert response.status_code == 200
    page = response.content.decode()
    for grant in grants:
        assert f'data-grant="{grant.pk}"' in page
        assert reverse("web:request_detail", args=[grant.pk]) in page
        # Its statements, each labelled with the grant, under its secret and its key.
        assert page.count(f'data-statement-of="{grant.pk}"') == 2
        assert f'data-documents-of="{grant.pk}"' in page
        assert grant.plan["secret_policy_statement"]["Sid"] in page
    assert _grant_states(page) == ["pending_approval"] * 3
    assert 'data-state-count="pending_approval">3 pending approval' in page
    assert page.count('data-secret="') == 3 and page.count('data-key="') == 1  # one key for the three secrets
    assert _hidden(page, "plan_hash") == [set_plan_hash(grants)]
    assert "Approve all 3 grants" in page and "Reject all" in page


def test_the_requester_sees_the_set_without_decisions_and_an_outsider_gets_404(cast):
    request_set, grants = _set(cast)
    page = _client(cast.requester).get(_set_url(request_set)).content.decode()
    assert all(f'data-grant="{grant.pk}"' in page for grant in grants)
    assert "Approve all" not in page and "Reject all" not in page
    assert "await approval by the approvers of Remote account" in page
    assert _client(cast.outsider).get(_set_url(request_set)).status_code == 404
    assert _client(cast.outsider).post(_set_url(request_set, "approve"), {"plan_hash": "x"}).status_code == 404
    assert _client(cast.approver).get(reverse("web:request_set_detail", args=[request_set.pk + 1000])).status_code == 404


def test_approving_once_through_the_page_approves_every_grant(cast, enqueued):
    request_set, grants = _set(cast)
    client = _client(cast.approver)
    page = client.get(_set_url(request_set)).content.decode()
    [plan_hash] = _hidden(page, "plan_hash")
    response = client.post(_set_url(request_set, "approve"), {"plan_hash": plan_hash, "comment": "All three, fine."})
    assert response.status_code == 302
    for grant in grants:
        grant.refresh_from_db()
        assert grant.state == RequestState.APPROVED
        assert Decision.objects.filter(request=grant, approver=cast.approver).count() == 1
    page = client.get(response["Location"]).content.decode()
    assert "Approved: every grant awaiting approval." in page
    assert _grant_states(page) == ["approved"] * 3
    assert "No grant awaits approval" in page and "Approve all" not in page


def test_a_stale_plan_hash_is_refused_with_the_new_plan_shown(cast):
    request_set, grants = _set(cast, count=2)
    client = _client(cast.approver)
    [seen] = _hidden(client.get(_set_url(request_set)).content.decode(), "plan_hash")
    cast.request(request_set=request_set)  # a third grant joins the plan after it was shown
    response = client.post(_set_url(request_set, "approve"), {"plan_hash": seen})
    assert response.status_code == 409
    page = response.content.decode()
    assert "the plan changed since you opened it" in page and "Nothing was approved" in page
    current = set_plan_hash(awaiting_grants(request_set))
    assert _hidden(page, "plan_hash") == [current] != [seen]
    assert "Approve all 3 grants" in page
    assert not Decision.objects.exists()
    assert all(AccessRequest.objects.get(pk=g.pk).state == RequestState.PENDING_APPROVAL for g in grants)


def test_rejecting_needs_a_comment_and_rejects_every_grant(cast):
    request_set, grants = _set(cast)
    client = _client(cast.approver)
    refused = client.post(_set_url(request_set, "reject"), {"comment": ""}, follow=True)
    assert "Could not reject request" in refused.content.decode()
    assert all(AccessRequest.objects.get(pk=g.pk).state == RequestState.PENDING_APPROVAL for g in grants)
    done = client.post(_set_url(request_set, "reject"), {"comment": "Use the read replicas."}, follow=True)
    assert "Rejected: every grant awaiting a decision." in done.content.decode()
    assert all(AccessRequest.objects.get(pk=g.pk).state == RequestState.REJECTED for g in grants)
    # The requester may not reject (403 with the reason), nor approve.
    request_set, _ = _set(cast)
    response = _client(cast.requester).post(_set_url(request_set, "reject"), {"comment": "mine"})
    assert response.status_code == 403
    assert "never the requester" in response.content.decode()


def test_the_requester_revokes_every_active_grant_at_once(cast, enqueued):
    request_set, grants = _set(cast, state=RequestState.ACTIVE)
    client = _client(cast.requester)
    page = client.get(_set_url(request_set)).content.decode()
    assert "Revoke every grant" in page and "No grant awaits approval" in page
    response = client.post(_set_url(request_set, "revoke"), follow=True)
    assert "Revoke started for every active or failed grant." in response.content.decode()
    assert all(AccessRequest.objects.get(pk=g.pk).state == RequestState.REVOKING for g in grants)


# --- from a grant to its set -----------------------------------------------------------


def test_a_grants_page_points_to_its_set_and_offers_no_approval_of_its_own(cast):
    request_set, grants = _set(cast)
    set_url = _set_url(request_set)
    page = _client(cast.approver).get(reverse("web:request_detail", args=[grants[1].pk])).content.decode()
    assert f'One of 3 grants of <a href="{set_url}">request set #{request_set.pk}</a>' in page
    assert f"Approve via request set #{request_set.pk}" in page
    assert 'value="approve"' not in page
    # The requester is told where the decision is made, without an approval to make.
    page = _client(cast.requester).get(reverse("web:request_detail", args=[grants[1].pk])).content.decode()
    assert f'One of 3 grants of <a href="{set_url}">request set #{request_set.pk}</a>' in page
    assert "Approve via" not in page
    # A request of its own says nothing of sets.
    single = cast.request()
    page = _client(cast.approver).get(reverse("web:request_detail", args=[single.pk])).content.decode()
    assert "One of" not in page and 'value="approve"' in page


def test_the_request_list_and_the_queue_link_each_grant_to_its_set(cast):
    request_set, grants = _set(cast, count=2)
    single = cast.request()
    badge = f'href="{_set_url(request_set)}"'
    for who, url in ((cast.requester, "web:request_list"), (cast.approver, "web:request_list"), (cast.approver, "web:approval_queue")):
        page = _client(who).get(reverse(url)).content.decode()
        assert page.count(f">set #{request_set.pk}</a>") == 2, url
        assert badge in page
        assert f">set #{single.pk}</a>" not in page or single.pk == request_set.pk
    queue = _client(cast.approver).get(reverse("web:approval_queue")).content.decode()
    assert queue.count(f"Approve with set #{request_set.pk}") == 2
    # The single request is still approved from its row.
    assert f'action="{reverse("web:request_action", args=[single.pk, "approve"])}"' in queue


@pytest.mark.parametrize("who", ["requester", "approver"])
def test_the_set_page_costs_the_same_queries_for_3_and_12_grants(cast, who, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = _client(getattr(cast, who))
    request_set, _ = _set(cast, count=3)
    with CaptureQueriesContext(connection) as at_three:
        assert client.get(_set_url(request_set)).status_code == 200
    for _ in range(9):
        cast.request(request_set=request_set)
    with django_assert_max_num_queries(len(at_three)):
        page = client.get(_set_url(request_set)).content.decode()
    assert len(_grant_states(page)) == 12


def test_each_field_of_a_row_is_checked_as_it_is_filled_in(cast):
    from requests_app.errors import ValidationFailed
    from requests_app.validation import validate_request_input

    client = _client(cast.requester)
    page = client.get(NEW, {"several": "1"}).content.decode()
    validate = reverse("web:request_set_validate")
    assert f'hx-post="{validate}"' in page and 'hx-target="#errors_grants-1-endpoint_identifier"' in page
    secret = f"arn:aws:secretsmanager:eu-west-1:{cast.remote.account_id}:secret:prod/orders-AbCdEf"
    body = _body([
        {"secret_arn": secret, "engine": "mysql", "endpoint_identifier": "orders-a"},
        {"secret_arn": secret, "engine": "mysql", "endpoint_identifier": "9-lives--", "database_name": "orders"},
    ])
    with pytest.raises(ValidationFailed) as expected:
        validate_request_input(datalake_account_id=DATALAKE_ID, secret_arn=secret, engine="mysql",
                               endpoint_identifier="9-lives--", database_name="orders", justification="x")
    answer = client.post(validate, body, HTTP_HX_TRIGGER_NAME="grants-1-endpoint_identifier").content.decode()
    own, _, others = answer.partition("<div")
    assert escape(expected.value.errors["endpoint_identifier"][0]) in own
    # The row's other filled-in field speaks up out of band; the first row does not.
    assert 'id="errors_grants-1-database_name" hx-swap-oob="innerHTML"><p>' in answer
    assert "errors_grants-0-" not in answer
    # A field of a good row has nothing to say.
    answer = client.post(validate, body, HTTP_HX_TRIGGER_NAME="grants-0-endpoint_identifier").content.decode()
    assert not answer.startswith("<p>")
    # A field that is not one, and someone who cannot file, are refused.
    assert client.post(validate, body, HTTP_HX_TRIGGER_NAME="grants-7-engine").status_code == 400
    assert client.post(validate, body, HTTP_HX_TRIGGER_NAME="grants-0-password").status_code == 400
    assert _client(cast.outsider).post(validate, body, HTTP_HX_TRIGGER_NAME="justification").status_code == 403


def test_filing_several_draws_from_the_aws_budget_but_adding_a_row_does_not(cast, settings):
    from django.core.cache import cache

    cache.clear()
    settings.PORTAL_AWS_RATE = "1/min"
    client = _client(cast.requester)
    rows = [{"engine": "mysql", "endpoint_identifier": "orders-a"}]
    for _ in range(3):
        assert client.post(NEW, _body(rows, add_grant="1")).status_code == 200
    assert client.post(NEW, _body(rows)).status_code == 400  # filed (and refused: no secret), one call of the budget
    refused = client.post(NEW, _body(rows))
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    cache.clear()


def test_a_set_with_a_failed_preflight_says_why_it_cannot_be_approved(cast):
    request_set, grants = _set(cast)
    AccessRequest.objects.filter(pk=grants[1].pk).update(
        preflight_status=AccessRequest.PreflightStatus.FAILED, diagnosis="aws_managed_key"
    )
    page = _client(cast.approver).get(_set_url(request_set)).content.decode()
    assert 'id="set-blocked"' in page and "aws_managed_key" in page
    assert reverse("web:request_detail", args=[grants[1].pk]) in page
    assert "Approve all" not in page and "Reject all" in page
    # Were it posted anyway, the service refuses it and nothing is approved.
    plan_hash = set_plan_hash(awaiting_grants(request_set))
    response = _client(cast.approver).post(_set_url(request_set, "approve"), {"plan_hash": plan_hash})
    assert response.status_code == 403 and f"Grant #{grants[1].pk}" in response.content.decode()
    assert not Decision.objects.exists()
