"""What a newcomer meets first, in a real browser: the new-request form checks
each field as it is filled in without crying wolf, and the dashboard shows the
panels of the person's roles with empty states that say what to do next.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.requests_app.rows import DATALAKE_ID, KEY_ARN, SECRET_ARN, request_row

pytestmark = pytest.mark.django_db(transaction=True)

REPLICATION_INSTANCE_ARN = f"arn:aws:dms:eu-west-1:{DATALAKE_ID}:rep:datalake-replication"
FORM_FIELDS = "form.stacked input:not([type=hidden]), form.stacked select, form.stacked textarea"
# What each field looks like: its border colour and whether a message stands under it
# (no field has the focus, so no focus ring is mistaken for a mark).
FIELD_MARKS = """
() => [...document.querySelectorAll(%r)].map(e => ({
  name: e.name,
  border: getComputedStyle(e).borderTopColor,
  messages: [...document.querySelectorAll('#errors_' + e.name + ' p')].map(p => p.innerText),
}))
""" % FORM_FIELDS


def checked(page, action) -> None:
    """Do ``action`` (which changes one field) and wait for the server's answer to be shown."""
    with page.expect_response(lambda response: "/requests/new/validate/" in response.url):
        action()
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-settling, .htmx-swapping')")


def type_in(page, selector: str, value: str) -> None:
    def action():
        page.fill(selector, value)
        # Leaving the field is what a person does; the browser then sends "change".
        page.locator(selector).blur()

    checked(page, action)


def test_the_form_filled_top_to_bottom_marks_no_field_then_marks_and_explains_one_bad_value(
    people, log_in, docs_screenshot
):
    from requests_app.errors import ValidationFailed
    from requests_app.validation import validate_request_input

    page = log_in("dana.requester")
    page.goto("/requests/new/")
    expires = (timezone.now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    checked(page, lambda: page.select_option("#id_datalake_account", DATALAKE_ID))
    type_in(page, "#id_secret_arn", SECRET_ARN)
    type_in(page, "#id_kms_key_arn", KEY_ARN)
    checked(page, lambda: page.select_option("#id_engine", "postgres"))
    checked(page, lambda: page.select_option("#id_endpoint_type", "source"))
    type_in(page, "#id_endpoint_identifier", "orders-postgres")
    type_in(page, "#id_database_name", "orders")
    type_in(page, "#id_role_name", "dms-secret-orders-postgres")
    type_in(page, "#id_replication_instance_arn", REPLICATION_INSTANCE_ARN)
    type_in(page, "#id_justification", "Nightly replication of the orders database into the lake.")
    type_in(page, "#id_expires_at", expires)

    fields = page.evaluate(FIELD_MARKS)
    assert {field["name"] for field in fields} >= {"datalake_account", "replication_instance_arn", "justification"}
    assert [field for field in fields if field["messages"]] == []
    normal = {field["name"]: field["border"] for field in fields}

    # One bad value: its field, and only it, is marked and says why.
    type_in(page, "#id_endpoint_identifier", "9-lives--")
    with pytest.raises(ValidationFailed) as expected:
        validate_request_input(datalake_account_id=DATALAKE_ID, secret_arn=SECRET_ARN, engine="postgres",
                               endpoint_identifier="9-lives--", justification="x")  # fmt: skip
    marks = {field["name"]: field for field in page.evaluate(FIELD_MARKS)}
    assert marks["endpoint_identifier"]["messages"] == expected.value.errors["endpoint_identifier"]
    assert marks["endpoint_identifier"]["border"] != normal["endpoint_identifier"]
    marked_border = marks["endpoint_identifier"]["border"]
    # No valid field was drawn with the error border, before or now.
    assert marked_border not in normal.values()
    assert {name for name, field in marks.items() if field["messages"] or field["border"] == marked_border} == {
        "endpoint_identifier"
    }
    docs_screenshot(page, "new-request-form", "main", max_height=1200)

    # Corrected, the mark goes at once.
    type_in(page, "#id_endpoint_identifier", "orders-postgres")
    assert {field["name"]: field["border"] for field in page.evaluate(FIELD_MARKS)} == normal
    assert page.locator("#errors_endpoint_identifier p").count() == 0


def test_the_dashboard_shows_the_panels_of_each_role_with_the_next_step(people, log_in, django_user_model):
    from tests.e2e.conftest import PASSWORD

    django_user_model.objects.create_user("olga.outsider", password=PASSWORD)

    requester = log_in("dana.requester")
    requester.goto("/")
    assert requester.locator("#awaiting").count() == 0
    assert "Awaiting my approval" not in requester.content()
    mine = requester.locator("#mine")
    first = mine.get_by_role("link", name="File your first request")
    assert first.get_attribute("href") == "/requests/new/"
    assert requester.locator(".page-head a.btn", has_text="New request").is_visible()

    approver = log_in("omar.approver")
    approver.goto("/")
    awaiting = approver.locator("#awaiting")
    assert "Nothing waits for you; the queue fills when a requester files for an account you approve." in (
        awaiting.inner_text()
    )
    # Omar files for no account: no list of his requests, no button he could not use.
    assert approver.locator("#mine").count() == 0
    assert approver.locator(".page-head a.btn", has_text="New request").count() == 0

    outsider = log_in("olga.outsider")
    outsider.goto("/")
    assert outsider.locator("#awaiting").count() == 0 and outsider.locator("#mine").count() == 0
    assert "An administrator adds you to an account" in outsider.locator("#no-role").inner_text()
    outsider.goto("/approvals/")
    assert "You approve for no account" in outsider.locator("#queue").inner_text()

    # Once Dana files, the request is in Omar's panel and in her own list.
    filed = request_row(endpoint_identifier="orders-mysql-dashboard")
    approver.goto("/")
    assert awaiting.locator("a", has_text="orders-mysql-dashboard").get_attribute("href") == f"/requests/{filed.pk}/"
    assert approver.locator("#awaiting-count").inner_text() == "1"
    requester.goto("/")
    assert "orders-mysql-dashboard" in requester.locator("#mine").inner_text()
    assert mine.get_by_role("link", name="File your first request").count() == 0
