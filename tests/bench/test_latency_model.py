"""The benchmark's AWS latency model: parsed as documented, waited per
service, and waited outside the lock that serialises moto."""
from __future__ import annotations

import io
import json
import threading
import time

import boto3
import pytest

from bench.moto_server import (
    LATENCY_PATH,
    LatencyModel,
    MotoServer,
    call_latency_ms,
    describe_latency,
    parse_latency,
    signing_service,
)

SIGNED_FOR_KMS = {
    "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=testing/20261201/eu-west-1/kms/aws4_request, "
                          "SignedHeaders=host;x-amz-date, Signature=abc",
    "PATH_INFO": "/",
}


@pytest.mark.parametrize(("text", "table"), [
    ("50", {"*": 50.0}),
    ("iam=80, sts=40,kms=0", {"iam": 80.0, "sts": 40.0}),
    ("IAM=80,*=5", {"iam": 80.0, "*": 5.0}),
    ("0", {}),
    ("", {}),
])
def test_the_latency_is_one_number_or_a_table_by_service(text, table):
    assert parse_latency(text) == table


@pytest.mark.parametrize("text", ["fast", "iam=", "iam=-1", "sts=nan"])
def test_a_latency_that_is_not_a_delay_is_refused(text):
    with pytest.raises(ValueError, match="BENCH_AWS_LATENCY_MS"):
        parse_latency(text)


def test_the_delay_of_calls_made_one_after_another_adds_up():
    table = parse_latency("iam=80,sts=40")
    assert call_latency_ms(table, ["sts:AssumeRole", "iam:CreateRole", "kms:PutKeyPolicy"]) == 120
    assert call_latency_ms(parse_latency("10"), ["kms:PutKeyPolicy", "dms:CreateEndpoint"]) == 20
    assert describe_latency(table) == "iam=80,sts=40"
    assert describe_latency({}) == "0"


def test_the_service_is_read_from_the_credential_scope():
    assert signing_service(SIGNED_FOR_KMS) == "kms"
    assert signing_service({"PATH_INFO": "/moto-api/reset"}) is None


def test_each_signed_call_waits_its_services_delay_and_unsigned_ones_none():
    slept: list[float] = []
    model = LatencyModel(lambda environ, start_response: [b"moto"], sleep=slept.append)
    body = json.dumps({"kms": 30, "*": 5}).encode()
    answer = model({"PATH_INFO": LATENCY_PATH, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)},
                   lambda status, headers: None)
    assert json.loads(b"".join(answer)) == {"kms": 30, "*": 5}
    assert model(SIGNED_FOR_KMS, lambda status, headers: None) == [b"moto"]
    model({**SIGNED_FOR_KMS, "HTTP_AUTHORIZATION": SIGNED_FOR_KMS["HTTP_AUTHORIZATION"].replace("/kms/", "/iam/")},
          lambda status, headers: None)
    model({"PATH_INFO": "/moto-api/reset"}, lambda status, headers: None)
    assert slept == [0.03, 0.005]


def test_calls_made_at_once_wait_side_by_side_not_one_after_another(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    delay, calls = 0.4, 4
    with MotoServer() as moto:
        moto.set_latency({"sts": delay * 1000})
        clients = [boto3.session.Session().client("sts", region_name="eu-west-1", endpoint_url=moto.endpoint_url)
                   for _ in range(calls)]
        clients[0].get_caller_identity()  # connections and moto's STS backend warmed
        spans: list[float] = []

        def call(client) -> None:
            began = time.monotonic()
            client.get_caller_identity()
            spans.append(time.monotonic() - began)

        threads = [threading.Thread(target=call, args=(client,)) for client in clients]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert min(spans) >= delay
    # One after another they would take calls × delay.
    assert elapsed < 2 * delay
