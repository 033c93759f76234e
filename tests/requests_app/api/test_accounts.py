"""GET/POST /api/v1/accounts/: the registry, readable by all, written by staff."""
from __future__ import annotations

from requests_app.models import AuditEvent, AwsAccount

URL = "/api/v1/accounts/"


def _new_account(**overrides) -> dict:
    body = {
        "account_id": "333333333333",
        "name": "Analytics",
        "is_remote": True,
        "provisioner_role_arn": "arn:aws:iam::333333333333:role/dms-access-portal-provisioner",
        "approvers": ["avery"],
        "external_id": "analytics-external-id",
    }
    body.update(overrides)
    return body


def test_any_user_reads_the_registry_with_people_as_usernames(accounts, client_for):
    response = client_for("olive").get(URL)

    assert response.status_code == 200
    by_id = {account["account_id"]: account for account in response.json()}
    assert by_id["111111111111"]["requesters"] == ["riley"]
    assert by_id["111111111111"]["is_datalake"] is True
    assert by_id["222222222222"]["approvers"] == ["avery"]
    # The external id stays on the server; clients only learn that there is one.
    assert by_id["111111111111"]["has_external_id"] is True
    assert "external_id" not in by_id["111111111111"]


def test_anonymous_is_asked_to_authenticate(accounts, client_for):
    response = client_for(None).get(URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_staff_registers_an_account_and_the_audit_trail_records_it(people, client_for):
    response = client_for("sam").post(URL, _new_account(requesters=[]), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["account_id"] == "333333333333"
    assert response.json()["approvers"] == ["avery"]
    account = AwsAccount.objects.get(account_id="333333333333")
    assert list(account.approvers.values_list("username", flat=True)) == ["avery"]
    event = AuditEvent.objects.get(action="account.registered")
    assert event.actor_label == "sam"
    assert event.source_ip == "127.0.0.1"


def test_a_non_staff_user_may_not_register_accounts(people, client_for):
    response = client_for("avery").post(URL, _new_account(), format="json")

    assert response.status_code == 403
    assert not AwsAccount.objects.filter(account_id="333333333333").exists()


def test_an_unknown_username_is_named_in_the_error(people, client_for):
    response = client_for("sam").post(URL, _new_account(approvers=["avery", "nobody-here"]), format="json")

    assert response.status_code == 400
    assert "nobody-here" in " ".join(response.json()["errors"]["approvers"])
    assert not AwsAccount.objects.filter(account_id="333333333333").exists()


def test_a_role_in_another_account_is_refused_field_by_field(people, client_for):
    body = _new_account(provisioner_role_arn="arn:aws:iam::444444444444:role/provisioner", account_id="33333333333")

    response = client_for("sam").post(URL, body, format="json")

    assert response.status_code == 400
    assert set(response.json()["errors"]) >= {"account_id"}


def test_wrong_types_are_a_400_naming_the_field(people, client_for):
    response = client_for("sam").post(
        URL, _new_account(approvers="avery", required_approvals="many", is_remote={"yes": 1}), format="json"
    )

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"approvers", "required_approvals", "is_remote"}


def test_a_remote_account_without_an_external_id_is_refused_unless_the_caller_says_so(people, client_for):
    body = _new_account()
    del body["external_id"]

    refused = client_for("sam").post(URL, body, format="json")

    assert refused.status_code == 400
    assert set(refused.json()["errors"]) == {"external_id"}
    assert not AwsAccount.objects.filter(account_id="333333333333").exists()

    registered = client_for("sam").post(URL, {**body, "external_id_required": False}, format="json")

    assert registered.status_code == 201, registered.json()
    assert registered.json()["has_external_id"] is False
    assert AuditEvent.objects.get(action="account.registered").details["external_id_set"] is False


def test_the_external_id_is_taken_but_never_given_back(people, client_for):
    response = client_for("sam").post(URL, _new_account(external_id="Sup3r-Secret-External-Id"), format="json")

    assert response.status_code == 201
    assert "Sup3r-Secret-External-Id" not in response.content.decode()
    assert response.json()["has_external_id"] is True
    assert "Sup3r-Secret-External-Id" not in client_for("avery").get(URL).content.decode()
    assert "Sup3r-Secret-External-Id" not in client_for("avery").get("/api/v1/audit-events/").content.decode()
    assert AwsAccount.objects.get(account_id="333333333333").external_id == "Sup3r-Secret-External-Id"


def test_staff_sets_an_accounts_slack_channel_and_the_trail_records_it(accounts, client_for):
    response = client_for("sam").patch(f"{URL}222222222222/", {"slack_channel": "C0REMOTE0001"}, format="json")

    assert response.status_code == 200
    assert response.json()["slack_channel"] == "C0REMOTE0001"
    assert response.json()["approvers"] == ["avery"]  # the members stay as they were
    assert AwsAccount.objects.get(account_id="222222222222").slack_channel == "C0REMOTE0001"
    event = AuditEvent.objects.get(action="account.slack_channel_changed")
    assert event.actor_label == "sam"
    assert (event.details["before"], event.details["after"]) == ("", "C0REMOTE0001")


def test_a_slack_channel_is_a_channel_id_and_only_staff_set_it(accounts, client_for):
    for bad in ("#remote-approvals", "c0remote0001", "C0<!here>", "U0REMOTE0001"):
        response = client_for("sam").patch(f"{URL}222222222222/", {"slack_channel": bad}, format="json")
        assert response.status_code == 400 and "slack_channel" in response.json()["errors"]
    refused = client_for("avery").patch(f"{URL}222222222222/", {"slack_channel": "C0REMOTE0001"}, format="json")
    assert refused.status_code == 403
    registered = client_for("sam").post(URL, _new_account(slack_channel="G0PRIVATE001"), format="json")
    assert registered.status_code == 201 and registered.json()["slack_channel"] == "G0PRIVATE001"
    assert AwsAccount.objects.get(account_id="222222222222").slack_channel == ""
