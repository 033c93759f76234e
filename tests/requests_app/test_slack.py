"""Approving from Slack: the portal against a fake Slack Web API on loopback
(tests/slack_api.py), with interactions signed as Slack signs them.

The message: posted to the Remote account's channel with what the approvers
decide on, and updated in place as the request moves, whoever moved it.
The endpoint: only signed, fresh, first-seen requests; the Slack user mapped
to a portal user by a confirmed e-mail or an administrator's link; the same
rules as on the pages and in the API (no self-approval, approvers of the
Remote account only, quorum, the plan hash the button carried).
"""
from __future__ import annotations

import json
import time

import pytest
from django.db import transaction
from django.urls import reverse

from provisioning.diagnoses import get_diagnosis
from requests_app import notifications
from requests_app.models import AccessRequest, AuditEvent, Decision, RequestState, SlackIdentity, SlackMessage
from requests_app.errors import NotAllowed, ValidationFailed
from requests_app.services import (
    access_request_approve,
    access_request_refresh_preflight,
    slack_identity_remove,
    slack_identity_save,
)
from requests_app.services.transitions import move
from tests.factories import RemoteAccountFactory, StaffFactory, UserFactory
from tests.slack_api import CHANNEL, TEAM_ID, button_press, dialog_submission, fake_slack, form, signed  # noqa: F401

URL = "/slack/interactions"
RAMI, RHEA, DANA, OSCAR = "U0RAMI0001", "U0RHEA0001", "U0DANA0001", "U0OSCAR001"


@pytest.fixture
def slack_world(cast, fake_slack, enqueued):
    """The cast's Remote account with a channel, its people known to Slack by their e-mail."""
    cast.remote.slack_channel = CHANNEL
    cast.remote.save()
    for slack_id, user in ((RAMI, cast.approver), (RHEA, cast.second_approver), (DANA, cast.requester),
                           (OSCAR, cast.outsider)):
        fake_slack.add_user(slack_id, user.email.upper())  # Slack may spell it otherwise
    return cast


def posted(request, fake_slack) -> SlackMessage:
    notifications.notify_submitted(request)
    return SlackMessage.objects.get(request=request)


def press(client, action_id, request, message, *, slack_user, plan_hash=None, headers=None, captured=None):
    value = json.dumps({"request": request.pk, "plan_hash": request.plan_hash if plan_hash is None else plan_hash})
    body = form(button_press(action_id, value, slack_user=slack_user, channel=message.channel, message_ts=message.ts))
    return client.post(URL, body, content_type="application/x-www-form-urlencoded", **(headers or signed(body)))


def _state(request) -> str:
    return AccessRequest.objects.get(pk=request.pk).state


def _text(call) -> str:
    return json.dumps(call.args.get("blocks")) + (call.args.get("text") or "")


def ephemerals(fake_slack, slack_user) -> list[str]:
    return [call.args["text"] for call in fake_slack.of("chat.postEphemeral") if call.args["user"] == slack_user]


# --- the message ---------------------------------------------------------------


def test_a_request_is_posted_to_its_remote_accounts_channel_with_what_is_decided(slack_world, fake_slack):
    request = slack_world.request()
    message = posted(request, fake_slack)

    (call,) = fake_slack.of("chat.postMessage")
    assert call.token == "xoxb-test-portal-bot-token" and call.args["channel"] == CHANNEL
    assert (message.channel, message.ts) == (CHANNEL, "1700000000.000001")
    text = _text(call)
    # The statements the request adds, and to which secret and key.
    assert request.secret_arn in text and request.resolved_kms_key_arn in text
    sid = request.plan["secret_policy_statement"]["Sid"]
    assert sid in text and "secretsmanager:GetSecretValue" in text and "kms:ViaService" in text
    assert "Preflight: *passed*" in text and request.plan_hash in text
    buttons = {element["action_id"]: element for element in call.args["blocks"][-1]["elements"]}
    assert json.loads(buttons["approve"]["value"]) == {"request": request.pk, "plan_hash": request.plan_hash}
    assert json.loads(buttons["reject"]["value"])["request"] == request.pk
    assert buttons["open"]["url"].endswith(f"/requests/{request.pk}/")


def test_no_channel_or_no_app_posts_nothing_and_the_plain_webhook_stays(cast, fake_slack, settings):
    from tests.requests_app.test_ops import WebhookStub

    webhook = WebhookStub()
    webhook.thread.start()
    settings.NOTIFY_WEBHOOK_URL = webhook.url
    try:
        notifications.notify_submitted(cast.request())  # the Remote account has no channel
        cast.remote.slack_channel = CHANNEL
        cast.remote.save()
        settings.SLACK_BOT_TOKEN = settings.SLACK_SIGNING_SECRET = ""
        notifications.notify_submitted(cast.request())  # no Slack app configured
    finally:
        webhook.server.shutdown()
        webhook.server.server_close()
    assert fake_slack.calls == [] and not SlackMessage.objects.exists()
    assert len(webhook.texts()) == 2


def test_hostile_text_reaches_slack_as_literal_text(slack_world, fake_slack):
    slack_world.requester.first_name = "Eve <!channel> <https://evil.example|Approve here>"
    slack_world.requester.save()
    request = slack_world.request(justification="@here please <!everyone> approve")
    posted(request, fake_slack)
    text = _text(fake_slack.of("chat.postMessage")[0])
    assert "<!channel>" not in text and "<!everyone>" not in text and "<https://evil" not in text
    assert "@here" not in text and "&lt;!channel&gt;" in text


def test_approvals_made_elsewhere_and_every_move_show_in_the_message(
    slack_world, fake_slack, django_capture_on_commit_callbacks
):
    slack_world.remote.required_approvals = 2
    slack_world.remote.save()
    request = slack_world.request()
    message = posted(request, fake_slack)

    with django_capture_on_commit_callbacks(execute=True):  # on the page or in the API
        access_request_approve(request_id=request.pk, user=slack_world.approver, plan_hash=request.plan_hash)
    update = fake_slack.of("chat.update")[-1]
    assert (update.args["channel"], update.args["ts"]) == (message.channel, message.ts)
    assert "1 of 2 approvals: rami" in _text(update)
    assert "approve" in {e["action_id"] for e in update.args["blocks"][-1]["elements"]}

    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(request_id=request.pk, user=slack_world.second_approver, plan_hash=request.plan_hash)
    text = _text(fake_slack.of("chat.update")[-1])
    assert "*Approved* by rami, rhea" in text
    assert {e["action_id"] for e in fake_slack.of("chat.update")[-1].args["blocks"][-1]["elements"]} == {"open"}

    request.refresh_from_db()
    for state, fields, expected in (
        (RequestState.PROVISIONING, {}, "*Provisioning* (approved by rami, rhea)"),
        (RequestState.FAILED, {"diagnosis": "secret_policy_denies"}, "diagnosis `secret_policy_denies`"),
    ):
        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            move(request, state, verb="moved", action=f"request.{state}", **fields)
        assert expected in _text(fake_slack.of("chat.update")[-1])
    failed = _text(fake_slack.of("chat.update")[-1])
    assert "*Failed*" in failed and get_diagnosis("secret_policy_denies").title in failed
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        move(request, RequestState.PROVISIONING, verb="retried", action="request.retried", diagnosis="")
        request.endpoint_arn = "arn:aws:dms:eu-west-1:111111111111:endpoint:ABC"
        move(request, RequestState.ACTIVE, verb="activated", action="request.active", endpoint_arn=request.endpoint_arn)
    assert "*Active*" in _text(fake_slack.of("chat.update")[-1]) and "endpoint:ABC" in _text(fake_slack.of("chat.update")[-1])


# --- approving from Slack ----------------------------------------------------------


def test_an_approver_approves_from_slack_and_the_trail_names_the_slack_user(
    slack_world, fake_slack, client, django_capture_on_commit_callbacks
):
    request = slack_world.request()
    message = posted(request, fake_slack)

    with django_capture_on_commit_callbacks(execute=True):
        response = press(client, "approve", request, message, slack_user=RAMI)

    assert response.status_code == 200
    assert _state(request) == RequestState.APPROVED
    decision = Decision.objects.get(request=request)
    assert (decision.approver, decision.plan_hash) == (slack_world.approver, request.plan_hash)
    events = AuditEvent.objects.filter(request=request, action__in=["decision.approve", "request.approved"])
    assert events.count() == 2
    for event in events:
        assert event.actor_label == "rami"
        assert event.details["via"] == "slack"
        assert event.details["slack_user"] == {"user_id": RAMI, "team_id": TEAM_ID}
    assert "*Approved* by rami" in _text(fake_slack.of("chat.update")[-1])
    assert [call.args["user"] for call in fake_slack.of("users.info")] == [RAMI]


def test_a_stale_plan_hash_decides_nothing_and_the_message_shows_the_current_plan(
    slack_world, fake_slack, client, django_capture_on_commit_callbacks
):
    request = slack_world.request()
    message = posted(request, fake_slack)
    shown = request.plan_hash
    AccessRequest.objects.filter(pk=request.pk).update(plan_hash="f" * 64)  # the plan changed since

    with django_capture_on_commit_callbacks(execute=True):
        response = press(client, "approve", request, message, slack_user=RAMI, plan_hash=shown)

    assert response.status_code == 200
    assert _state(request) == RequestState.PENDING_APPROVAL and not Decision.objects.exists()
    assert "plan of request" in ephemerals(fake_slack, RAMI)[0] and "changed" in ephemerals(fake_slack, RAMI)[0]
    update = fake_slack.of("chat.update")[-1]
    approve = next(e for e in update.args["blocks"][-1]["elements"] if e["action_id"] == "approve")
    assert json.loads(approve["value"])["plan_hash"] == "f" * 64


@pytest.mark.parametrize(
    "who, why",
    [
        (DANA, "never the requester"),  # the requester, known to Slack by her e-mail
        (OSCAR, "Not found"),  # a portal user who may not see the request
    ],
)
def test_the_same_rules_as_on_the_pages_refuse_people_who_may_not_approve(
    slack_world, fake_slack, client, who, why, django_capture_on_commit_callbacks
):
    if who == DANA:
        slack_world.remote.approvers.add(slack_world.requester)  # even listed as approver
    request = slack_world.request()
    message = posted(request, fake_slack)
    with django_capture_on_commit_callbacks(execute=True):
        for action in ("approve", "reject"):
            assert press(client, action, request, message, slack_user=who).status_code == 200
    assert _state(request) == RequestState.PENDING_APPROVAL and not Decision.objects.exists()
    assert all(why in text for text in ephemerals(fake_slack, who)) and len(ephemerals(fake_slack, who)) == 2
    assert fake_slack.of("views.open") == [] and fake_slack.of("chat.update") == []


def test_an_approver_of_another_remote_account_is_refused(slack_world, fake_slack, client):
    stranger = UserFactory(username="stan")
    RemoteAccountFactory(approvers=[stranger])
    fake_slack.add_user("U0STAN0001", stranger.email)
    request = slack_world.request()
    message = posted(request, fake_slack)
    press(client, "approve", request, message, slack_user="U0STAN0001")
    assert _state(request) == RequestState.PENDING_APPROVAL and not Decision.objects.exists()
    assert ephemerals(fake_slack, "U0STAN0001")


def test_quorum_counts_distinct_people_and_a_second_press_is_refused(
    slack_world, fake_slack, client, django_capture_on_commit_callbacks
):
    slack_world.remote.required_approvals = 2
    slack_world.remote.save()
    request = slack_world.request()
    message = posted(request, fake_slack)
    with django_capture_on_commit_callbacks(execute=True):
        press(client, "approve", request, message, slack_user=RAMI)
        press(client, "approve", request, message, slack_user=RAMI)
    assert _state(request) == RequestState.PENDING_APPROVAL
    assert Decision.objects.filter(request=request).count() == 1
    assert "already decided" in ephemerals(fake_slack, RAMI)[-1]
    with django_capture_on_commit_callbacks(execute=True):
        press(client, "approve", request, message, slack_user=RHEA)
    assert _state(request) == RequestState.APPROVED


@pytest.mark.parametrize(
    "slack_user, setup",
    [
        ("U0NOBODY01", None),  # Slack knows them, the portal does not
        (RAMI, "unconfirmed"),  # Slack has not confirmed the e-mail address
        (RAMI, "other_team"),  # a user of another workspace (say, a shared channel)
        (RAMI, "two_users"),  # two portal users have that address
        (RAMI, "deactivated"),
    ],
)
def test_an_unknown_or_unmatched_slack_user_is_refused_and_nothing_changes(
    slack_world, fake_slack, client, slack_user, setup
):
    fake_slack.add_user("U0NOBODY01", "nobody@example.com")
    if setup == "unconfirmed":
        fake_slack.add_user(RAMI, slack_world.approver.email, confirmed=False)
    elif setup == "other_team":
        fake_slack.add_user(RAMI, slack_world.approver.email, team_id="T0ELSEWHERE")
    elif setup == "two_users":
        UserFactory(username="rami2", email=slack_world.approver.email)
    elif setup == "deactivated":
        slack_world.approver.is_active = False
        slack_world.approver.save()
    request = slack_world.request()
    message = posted(request, fake_slack)

    assert press(client, "approve", request, message, slack_user=slack_user).status_code == 200

    assert _state(request) == RequestState.PENDING_APPROVAL and not Decision.objects.exists()
    (refusal,) = ephemerals(fake_slack, slack_user)
    assert "not linked" in refusal and fake_slack.of("chat.update") == []


def test_a_slack_user_of_another_workspace_is_refused_before_any_lookup(slack_world, fake_slack, client):
    request = slack_world.request()
    message = posted(request, fake_slack)
    value = json.dumps({"request": request.pk, "plan_hash": request.plan_hash})
    body = form(button_press("approve", value, slack_user=RAMI, channel=message.channel, message_ts=message.ts,
                             team_id="T0ELSEWHERE"))
    client.post(URL, body, content_type="application/x-www-form-urlencoded", **signed(body))
    assert _state(request) == RequestState.PENDING_APPROVAL and fake_slack.of("users.info") == []
    assert "workspace" in ephemerals(fake_slack, RAMI)[0]


def test_an_administrators_link_maps_a_slack_user_without_an_e_mail(
    slack_world, fake_slack, client, django_capture_on_commit_callbacks
):
    SlackIdentity.objects.create(user=slack_world.approver, slack_user_id="U0LINKED01")
    request = slack_world.request()
    message = posted(request, fake_slack)
    with django_capture_on_commit_callbacks(execute=True):
        press(client, "approve", request, message, slack_user="U0LINKED01")
    assert _state(request) == RequestState.APPROVED
    assert fake_slack.of("users.info") == []


def test_a_button_of_another_message_is_refused(slack_world, fake_slack, client):
    request = slack_world.request()
    posted(request, fake_slack)
    forged = SlackMessage(request=request, channel=CHANNEL, ts="1700000000.999999")
    press(client, "approve", request, forged, slack_user=RAMI)
    assert _state(request) == RequestState.PENDING_APPROVAL and "not the portal's message" in ephemerals(fake_slack, RAMI)[0]


# --- rejecting from Slack ----------------------------------------------------------


def test_reject_asks_for_a_comment_in_a_dialog_and_rejects_with_it(
    slack_world, fake_slack, client, django_capture_on_commit_callbacks
):
    request = slack_world.request()
    message = posted(request, fake_slack)
    press(client, "reject", request, message, slack_user=RAMI)
    (opened,) = fake_slack.of("views.open")
    assert opened.args["trigger_id"] == "1337.42.trigger"
    dialog = opened.args["view"]
    assert _state(request) == RequestState.PENDING_APPROVAL

    empty = form(dialog_submission(dialog["private_metadata"], "  ", slack_user=RAMI))
    answer = client.post(URL, empty, content_type="application/x-www-form-urlencoded", **signed(empty))
    assert answer.json()["response_action"] == "errors" and "comment" in answer.json()["errors"]["comment"].lower()
    assert _state(request) == RequestState.PENDING_APPROVAL

    body = form(dialog_submission(dialog["private_metadata"], "Use the read replica's secret.", slack_user=RAMI))
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(URL, body, content_type="application/x-www-form-urlencoded", **signed(body))
    assert answer.status_code == 200 and answer.content == b""
    assert _state(request) == RequestState.REJECTED
    event = AuditEvent.objects.get(request=request, action="request.rejected")
    assert event.details["via"] == "slack" and event.details["comment"] == "Use the read replica's secret."
    assert "*Rejected* by rami: Use the read replica's secret." in _text(fake_slack.of("chat.update")[-1])


def test_a_dialog_submitted_by_someone_who_may_not_reject_changes_nothing(slack_world, fake_slack, client):
    request = slack_world.request()
    body = form(dialog_submission(json.dumps({"request": request.pk, "channel": CHANNEL}), "no", slack_user=DANA))
    answer = client.post(URL, body, content_type="application/x-www-form-urlencoded", **signed(body))
    assert "never the requester" in answer.json()["errors"]["comment"]
    assert _state(request) == RequestState.PENDING_APPROVAL


# --- the signature -------------------------------------------------------------------


def _approve_body(request, message) -> str:
    value = json.dumps({"request": request.pk, "plan_hash": request.plan_hash})
    return form(button_press("approve", value, slack_user=RAMI, channel=message.channel, message_ts=message.ts))


def _altered(signature: str) -> str:
    """The signature with its last hex digit changed (to another digit, whatever it was)."""
    return signature[:-1] + ("1" if signature.endswith("0") else "0")


@pytest.mark.parametrize(
    "headers",
    [
        lambda body: {},  # not signed at all
        lambda body: signed(body, secret="another-apps-signing-secret"),
        lambda body: signed(body, timestamp=int(time.time()) - 301),  # older than five minutes
        # More than five minutes ahead, with room for the seconds the test itself takes.
        lambda body: signed(body, timestamp=int(time.time()) + 330),
        lambda body: {**signed(body), "HTTP_X_SLACK_REQUEST_TIMESTAMP": "not-a-number"},
        lambda body: signed(body + "&extra=1"),  # signed over another body
        lambda body: {**signed(body), "HTTP_X_SLACK_SIGNATURE": _altered(signed(body)["HTTP_X_SLACK_SIGNATURE"])},
    ],
    ids=["unsigned", "wrong-secret", "stale", "future", "bad-timestamp", "other-body", "altered"],
)
def test_requests_not_signed_by_slack_within_five_minutes_are_refused(slack_world, fake_slack, client, headers):
    request = slack_world.request()
    message = posted(request, fake_slack)
    calls = len(fake_slack.calls)
    body = _approve_body(request, message)
    response = client.post(URL, body, content_type="application/x-www-form-urlencoded", **headers(body))
    assert response.status_code == 401
    assert _state(request) == RequestState.PENDING_APPROVAL and not Decision.objects.exists()
    assert len(fake_slack.calls) == calls  # not even a users.info


def test_a_replayed_request_is_refused(slack_world, fake_slack, client, django_capture_on_commit_callbacks):
    slack_world.remote.required_approvals = 2
    slack_world.remote.save()
    request = slack_world.request()
    message = posted(request, fake_slack)
    body = _approve_body(request, message)
    headers = signed(body)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(URL, body, content_type="application/x-www-form-urlencoded", **headers)
        again = client.post(URL, body, content_type="application/x-www-form-urlencoded", **headers)
    assert (first.status_code, again.status_code) == (200, 401)
    assert Decision.objects.filter(request=request).count() == 1
    assert len(ephemerals(fake_slack, RAMI)) == 1


def test_without_a_signing_secret_nothing_is_accepted(slack_world, fake_slack, client, settings):
    request = slack_world.request()
    message = posted(request, fake_slack)
    body = _approve_body(request, message)
    headers = signed(body, secret="")
    settings.SLACK_SIGNING_SECRET = ""
    assert client.post(URL, body, content_type="application/x-www-form-urlencoded", **headers).status_code == 401
    assert _state(request) == RequestState.PENDING_APPROVAL


def test_a_session_or_csrf_token_is_no_signature(slack_world, fake_slack, client):
    request = slack_world.request()
    message = posted(request, fake_slack)
    client.force_login(slack_world.approver)
    response = client.post(URL, _approve_body(request, message), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 401 and _state(request) == RequestState.PENDING_APPROVAL


def test_a_refreshed_preflight_that_changes_the_plan_updates_the_message(slack_world, fake_slack, monkeypatch,
                                                                         django_capture_on_commit_callbacks):
    request = slack_world.request()
    posted(request, fake_slack)

    def new_plan(request, outcome):
        request.plan_hash = "e" * 64
        return ["plan_hash", "updated_at"]

    monkeypatch.setattr("requests_app.services.submission._run_preflight", lambda request: None)
    monkeypatch.setattr("requests_app.services.submission._apply_preflight", new_plan)
    with django_capture_on_commit_callbacks(execute=True):
        access_request_refresh_preflight(request_id=request.pk, user=slack_world.approver)
    assert "e" * 64 in _text(fake_slack.of("chat.update")[-1])


# --- what administrators set: the channel and explicit links --------------------------


def test_the_admin_sets_the_accounts_channel_through_the_audited_service(cast, client):
    from tests.requests_app.test_account_members import admin_form

    client.force_login(cast.staff)
    url = reverse("admin:requests_app_awsaccount_change", args=[cast.remote.pk])
    refused = client.post(url, admin_form(cast.remote, slack_channel="#approvals"))
    assert refused.status_code == 200 and b"Slack channel id" in refused.content
    response = client.post(url, admin_form(cast.remote, slack_channel=CHANNEL))
    assert response.status_code == 302
    cast.remote.refresh_from_db()
    assert cast.remote.slack_channel == CHANNEL
    event = AuditEvent.objects.get(action="account.slack_channel_changed")
    assert (event.actor_label, event.details["after"]) == ("sam", CHANNEL)
    assert not AuditEvent.objects.filter(action="account.changed").exists()


def test_only_administrators_link_slack_users_and_only_superusers_link_staff(cast, client):
    linked = slack_identity_save(actor=cast.staff, user=cast.approver, slack_user_id="U0LINKED01")
    assert AuditEvent.objects.get(action="slack.linked").details == {"user": "rami", "slack_user_id": "U0LINKED01"}
    with pytest.raises(NotAllowed):
        slack_identity_save(actor=cast.approver, user=cast.approver, slack_user_id="U0LINKED02")
    with pytest.raises(NotAllowed):
        slack_identity_save(actor=cast.staff, user=StaffFactory(), slack_user_id="U0LINKED03")
    with pytest.raises(ValidationFailed):
        slack_identity_save(actor=cast.staff, user=cast.second_approver, slack_user_id="U0LINKED01")
    with pytest.raises(ValidationFailed):
        slack_identity_save(actor=cast.staff, user=cast.second_approver, slack_user_id="<@U0LINKED>")
    slack_identity_remove(actor=cast.staff, identity_id=linked.pk)
    assert not SlackIdentity.objects.exists() and AuditEvent.objects.filter(action="slack.unlinked").exists()

    client.force_login(cast.staff)
    response = client.post(reverse("admin:requests_app_slackidentity_add"),
                           {"user": cast.approver.pk, "slack_user_id": "U0LINKED04"})
    assert response.status_code == 302 and SlackIdentity.objects.get().user == cast.approver
    client.force_login(cast.approver)
    assert client.get(reverse("admin:requests_app_slackidentity_changelist")).status_code in (302, 403)


def test_slack_out_of_reach_fails_nobody_and_decides_nothing(slack_world, fake_slack, client, settings,
                                                             django_capture_on_commit_callbacks):
    request = slack_world.request()
    message = posted(request, fake_slack)
    settings.SLACK_API_URL = "http://127.0.0.1:9/api/"  # nothing listens there
    notifications.notify_submitted(slack_world.request())  # the post is lost, the filer is not told of it
    with django_capture_on_commit_callbacks(execute=True):
        access_request_approve(request_id=request.pk, user=slack_world.approver, plan_hash=request.plan_hash)
    assert _state(request) == RequestState.APPROVED  # the update is lost, the approval is not
    other = slack_world.request()
    SlackMessage.objects.create(request=other, channel=CHANNEL, ts="1700000000.777777")
    response = press(client, "approve", other, SlackMessage.objects.get(request=other), slack_user=RAMI)
    assert response.status_code == 200 and _state(other) == RequestState.PENDING_APPROVAL
    assert SlackMessage.objects.count() == 2 and message.pk
