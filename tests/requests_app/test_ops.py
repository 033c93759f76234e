"""Operating the portal: health and readiness, metrics, notifications, JSON logs."""
from __future__ import annotations

import copy
import io
import json
import logging
import logging.config
import os
import subprocess
import sys
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from portal.celery import app as celery_app
from portal.celery import use_portal_logging
from portal.log_format import JsonFormatter
from requests_app import notifications
from requests_app.logging_context import LogContextFilter, current_log_context, log_context
from requests_app.metrics import observe_step
from requests_app.models import ProvisioningStep, RequestState
from tests.factories import AccessRequestFactory, DecisionFactory, UserFactory

ROOT = Path(__file__).resolve().parents[2]


# --- health and readiness ----------------------------------------------------


def test_healthz_answers_without_touching_the_database(client):
    # No db fixture: any query would raise here.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_ready_when_database_and_broker_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready"}


@pytest.mark.django_db
def test_readyz_is_503_and_names_the_broker_only_in_the_log_when_the_broker_is_down(client, settings, caplog):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="requests_app.health"):
        response = client.get("/readyz")
    assert response.status_code == 503
    # An anonymous caller learns that the portal is not ready, not what is down or where it lives.
    assert response.json() == {"status": "not ready"}
    assert b"broker" not in response.content and b"127.0.0.1" not in response.content
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "broker" in logged and "127.0.0.1:1" in logged and "database" not in logged


@pytest.mark.django_db
def test_readyz_is_503_when_the_filesystem_broker_has_lost_its_folders(client, settings, monkeypatch, tmp_path, caplog):
    settings.CELERY_BROKER_URL = "filesystem://"
    missing = str(tmp_path / "gone")
    monkeypatch.setattr(
        celery_app.conf, "broker_transport_options", {"data_folder_in": missing, "data_folder_out": missing}
    )
    with caplog.at_level(logging.WARNING, logger="requests_app.health"):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert missing not in response.content.decode()
    assert any("data_folder_in" in record.getMessage() for record in caplog.records)


# --- metrics ----------------------------------------------------------------


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.mark.django_db
def test_metrics_count_requests_by_state_and_the_age_of_the_provisioning_queue(client):
    AccessRequestFactory.create_batch(2)
    AccessRequestFactory(state=RequestState.ACTIVE)
    AccessRequestFactory(state=RequestState.APPROVED, decided_at=timezone.now() - timedelta(minutes=5))
    AccessRequestFactory(state=RequestState.APPROVED, decided_at=timezone.now() - timedelta(minutes=1))

    samples = scrape(client)

    assert samples[("portal_requests", (("state", "pending_approval"),))] == 2
    assert samples[("portal_requests", (("state", "approved"),))] == 2
    assert samples[("portal_requests", (("state", "active"),))] == 1
    assert samples[("portal_requests", (("state", "revoked"),))] == 0
    # The oldest approved request has waited five minutes for a worker.
    assert 300 <= samples[("portal_provisioning_queue_age_seconds", ())] < 3600
    assert samples[("portal_database_up", ())] == 1


@pytest.mark.django_db
def test_an_empty_provisioning_queue_has_age_zero(client):
    AccessRequestFactory(state=RequestState.PROVISIONING, decided_at=timezone.now() - timedelta(hours=1))
    assert scrape(client)[("portal_provisioning_queue_age_seconds", ())] == 0


@pytest.mark.django_db
def test_step_durations_and_failures_reach_the_metrics(client):
    def count(step, outcome):
        return samples.get(("portal_step_duration_seconds_count", (("outcome", outcome), ("step", step))), 0)

    samples = scrape(client)
    succeeded_before = count("create_role", "succeeded")
    failed_before = count("grant_key_policy", "failed")
    failures_before = samples.get(
        ("portal_step_failures_total", (("diagnosis", "key_policy_denies"), ("step", "grant_key_policy"))), 0
    )

    observe_step("create_role", 0.2, True)
    observe_step("grant_key_policy", 1.5, False, diagnosis="key_policy_denies")

    samples = scrape(client)
    assert count("create_role", "succeeded") == succeeded_before + 1
    assert count("grant_key_policy", "failed") == failed_before + 1
    assert samples[
        ("portal_step_failures_total", (("diagnosis", "key_policy_denies"), ("step", "grant_key_policy")))
    ] == failures_before + 1
    # 0.2 s lands in the 0.25 s bucket.
    assert samples[("portal_step_duration_seconds_bucket", (("le", "0.25"), ("outcome", "succeeded"), ("step", "create_role")))] >= 1


WORKER_OBSERVES_A_STEP = """
import django
django.setup()
from requests_app.metrics import observe_step
observe_step("create_endpoint", 0.7, True)
observe_step("create_endpoint", 2.0, False, diagnosis="endpoint_identifier_taken")
"""


@pytest.mark.django_db
def test_steps_observed_by_worker_processes_show_on_the_web_processes_metrics(client, settings, tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    for _ in range(2):  # two pool processes
        subprocess.run([sys.executable, "-c", WORKER_OBSERVES_A_STEP], env=env, cwd=ROOT, check=True)
    settings.PROMETHEUS_MULTIPROC_DIR = str(metrics_dir)

    samples = scrape(client)

    assert samples[("portal_step_duration_seconds_count", (("outcome", "succeeded"), ("step", "create_endpoint")))] == 2
    assert samples[
        ("portal_step_failures_total", (("diagnosis", "endpoint_identifier_taken"), ("step", "create_endpoint")))
    ] == 2
    assert ("portal_requests", (("state", "active"),)) in samples


# --- notifications ----------------------------------------------------------


class WebhookStub:
    """A local HTTP server standing in for a Slack incoming webhook."""

    def __init__(self):
        self.bodies: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                stub.bodies.append(
                    {"content_type": self.headers["Content-Type"], "json": json.loads(self.rfile.read(length))}
                )
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hooks/portal" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def texts(self) -> list[str]:
        return [body["json"]["text"] for body in self.bodies]


@pytest.fixture
def webhook(settings):
    stub = WebhookStub()
    stub.thread.start()
    settings.NOTIFY_WEBHOOK_URL = stub.url
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


@pytest.fixture
def people(db):
    requester = UserFactory(username="dana", email="dana@example.com")
    approvers = [UserFactory(username="rami", email="rami@example.com"), UserFactory(username="rhea", email="rhea@example.com")]
    request = AccessRequestFactory(requester=requester)
    request.remote_account.approvers.set([*approvers, UserFactory(username="nomail", email="")])
    return request


def test_a_new_request_mails_the_remote_accounts_approvers_and_posts_to_the_webhook(people, mailoutbox, webhook):
    request = people
    notifications.notify_submitted(request)

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert sorted(message.to) == ["rami@example.com", "rhea@example.com"]
    assert f"#{request.pk}" in message.subject
    assert request.secret_arn in message.body
    assert f"/requests/{request.pk}/" in message.body
    assert webhook.bodies[0]["content_type"] == "application/json"
    assert f"#{request.pk}" in webhook.texts()[0] and "dana" in webhook.texts()[0]


def test_the_requester_hears_of_a_rejection_with_the_approvers_comment(people, mailoutbox, webhook):
    request = people
    approver = request.remote_account.approvers.get(username="rami")
    DecisionFactory(request=request, approver=approver, outcome="reject", comment="Use the replica's secret instead.")
    request.state = RequestState.REJECTED
    request.save()

    notifications.notify_decided(request)

    assert [message.to for message in mailoutbox] == [["dana@example.com"]]
    assert "rejected" in mailoutbox[0].subject
    assert "Use the replica's secret instead." in mailoutbox[0].body
    assert "rejected" in webhook.texts()[0]


def test_the_requester_hears_of_an_approval(people, mailoutbox):
    request = people
    DecisionFactory(request=request, approver=request.remote_account.approvers.get(username="rhea"))
    request.state = RequestState.APPROVED
    request.save()

    notifications.notify_decided(request)

    assert mailoutbox[0].to == ["dana@example.com"]
    assert "approved" in mailoutbox[0].subject
    assert "rhea" in mailoutbox[0].body


def test_the_requester_hears_that_the_grant_is_active(people, mailoutbox, webhook):
    request = people
    request.state = RequestState.ACTIVE
    request.endpoint_arn = "arn:aws:dms:eu-west-1:111111111111:endpoint:ABCDEF"
    request.save()

    notifications.notify_finished(request)

    assert "is active" in mailoutbox[0].subject
    assert request.endpoint_arn in mailoutbox[0].body
    assert "is active" in webhook.texts()[0]


def test_the_requester_hears_that_the_grant_failed_with_its_diagnosis(people, mailoutbox, webhook):
    request = people
    ProvisioningStep.objects.create(
        request=request, phase="grant", name="grant_key_policy", position=3, status="failed",
        error="Policy contains a statement with one or more invalid principals", diagnosis="principal_not_visible",
    )
    request.state = RequestState.FAILED
    request.diagnosis = "principal_not_visible"
    request.save()

    notifications.notify_finished(request)

    assert "failed" in mailoutbox[0].subject
    assert "principal_not_visible" in mailoutbox[0].body
    assert "grant_key_policy" in mailoutbox[0].body
    assert "principal_not_visible" in webhook.texts()[0]


def test_an_unreachable_webhook_is_logged_and_the_mail_still_goes(people, mailoutbox, settings, caplog):
    settings.NOTIFY_WEBHOOK_URL = "http://127.0.0.1:1/hooks/portal"
    with caplog.at_level(logging.WARNING, logger="requests_app.notifications"):
        notifications.notify_submitted(people)
    assert len(mailoutbox) == 1
    assert any("webhook failed" in record.getMessage() for record in caplog.records)


def test_a_failing_mail_server_is_logged_not_raised(people, settings, caplog, webhook):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 1
    with caplog.at_level(logging.ERROR, logger="requests_app.notifications"):
        notifications.notify_submitted(people)
    assert any("could not mail" in record.getMessage() for record in caplog.records)
    assert len(webhook.bodies) == 1
    assert mail.outbox == []


# --- structured logs --------------------------------------------------------


@pytest.fixture
def json_log():
    """The root logger configured from settings.LOGGING, writing to a buffer."""
    buffer = io.StringIO()
    config = copy.deepcopy(django_settings.LOGGING)
    config["handlers"]["console"]["stream"] = buffer
    config["handlers"]["console"]["formatter"] = "json"
    logging.config.dictConfig(config)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logging.config.dictConfig(django_settings.LOGGING)


def test_every_line_logged_inside_a_step_carries_the_request_id_and_step(json_log):
    engine_logger = logging.getLogger("provisioning.steps.role")
    portal_logger = logging.getLogger("requests_app.workflow.runner")

    with log_context(request_id=42, step="create_role"):
        engine_logger.info("created role %s", "dms-cross-account-secret-access", extra={"changed": True})
        with log_context(step="grant_secret_policy"):
            portal_logger.warning("retrying")
        portal_logger.info("back in create_role")
    portal_logger.info("between steps")

    lines = json_log()
    assert [(line["request_id"], line["step"]) for line in lines] == [
        (42, "create_role"),
        (42, "grant_secret_policy"),
        (42, "create_role"),
        (None, None),
    ]
    assert lines[0]["message"] == "created role dms-cross-account-secret-access"
    assert lines[0]["logger"] == "provisioning.steps.role"
    assert lines[0]["level"] == "INFO"
    assert lines[0]["changed"] is True
    assert lines[1]["level"] == "WARNING"


def test_an_exception_is_logged_on_the_same_json_line(json_log):
    with log_context(request_id=7, step="verify"):
        try:
            raise RuntimeError("DescribeConnections failed")
        except RuntimeError:
            logging.getLogger("requests_app.workflow.runner").exception("step crashed")
    (line,) = json_log()
    assert line["request_id"] == 7 and line["step"] == "verify"
    assert "RuntimeError: DescribeConnections failed" in line["exception"]


def test_the_context_is_per_thread():
    seen = {}

    def other_thread():
        seen["other"] = current_log_context()

    with log_context(request_id=1, step="preflight"):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        seen["here"] = current_log_context()
    assert seen == {"other": {}, "here": {"request_id": 1, "step": "preflight"}}


def test_celery_processes_log_through_the_portals_json_handler():
    try:
        use_portal_logging()
        handlers = logging.getLogger().handlers
        assert any(isinstance(handler.formatter, JsonFormatter) for handler in handlers)
        assert any(isinstance(f, LogContextFilter) for handler in handlers for f in handler.filters)
    finally:
        logging.config.dictConfig(django_settings.LOGGING)
