"""Fault injection: every kind is observable from a client and reproducible with the same seed."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
import requests

from airflow_provider_mj.emulator import start_emulator

from .conftest import Client


def test_no_faults_by_default(client, emu):
    for _ in range(20):
        assert client.get("task/1/fetch").status_code == 200
    assert emu.counters()["faults"] == {}


def test_rate_limit_is_429_with_retry_after_and_empty_body(emu, client):
    emu.configure(faults={"rate_limit": 1.0, "retry_after": 7})
    reply = client.get("task/1/fetch")
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "7" and reply.content == b""
    assert emu.counters()["faults"] == {"rate_limit": 1}


def test_relay_rate_limit_is_429_code_30_saturated(relay_emu, relay):
    relay_emu.configure(faults={"rate_limit": 1.0})
    reply = relay.post("submit/imagine", {"prompt": "x"})
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
    body = reply.json()
    assert body["code"] == 30 and body["type"] == "upstream_error" and body["description"]
    assert relay_emu.counters()["tasks"] == 0


def test_server_error_is_500_and_the_request_is_not_processed(emu, client):
    emu.configure(faults={"server_error": 1.0})
    reply = client.post("submit/imagine", {"prompt": "x"})
    assert reply.status_code == 500 and reply.json()["status"] == 500
    assert emu.counters()["tasks"] == 0


def test_relay_server_error_is_503(relay_emu, relay):
    relay_emu.configure(fault_server_error=1.0)
    assert relay.get("task/1/fetch").status_code == 503


def test_slow_reply_arrives_after_slow_seconds(emu, client):
    emu.configure(faults={"slow": 1.0, "slow_seconds": 0.4})
    started = time.monotonic()
    reply = client.post("submit/imagine", {"prompt": "x"})
    assert time.monotonic() - started >= 0.4
    assert reply.json()["code"] == 1
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.get("task/1/fetch", timeout=0.1)
    assert emu.counters()["faults"]["slow"] == 2


def test_dropped_connection_is_a_connection_error_for_requests(emu, client):
    emu.configure(faults={"drop": 1.0})
    with pytest.raises(requests.exceptions.ConnectionError):
        client.post("submit/imagine", {"prompt": "x"})
    assert emu.counters()["tasks"] == 0 and emu.counters()["faults"]["drop"] == 1


async def test_dropped_connection_is_a_disconnect_for_aiohttp(emu):
    emu.configure(faults={"drop": 1.0})
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(emu.base_url + "/mj/task/1/fetch") as reply:
                await reply.read()


def test_malformed_reply_is_invalid_json(emu, client):
    emu.configure(faults={"malformed": 1.0})
    reply = client.get("task/1/fetch")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)


def test_job_failure_ends_the_job_in_failure(emu, client):
    emu.configure(faults={"job_failure": 1.0})
    task = client.wait(client.submit("imagine", {"prompt": "doomed"}))
    assert task["status"] == "FAILURE" and "fault" in task["failReason"]
    assert emu.counters()["faults"] == {"job_failure": 1}


def test_lost_reply_creates_the_job_then_drops_the_connection(emu, client):
    emu.configure(faults={"lost_reply": 1.0})
    with pytest.raises(requests.exceptions.ConnectionError):
        client.post("submit/imagine", {"prompt": "lost", "state": "retry-me"})
    counters = emu.counters()
    assert counters["tasks"] == 1 and counters["submits"]["imagine"] == 1
    assert counters["submits_by_state"] == {"retry-me": 1} and counters["faults"] == {"lost_reply": 1}
    # Reads are not submits: lost_reply never touches them.
    assert client.get("task/1/fetch").status_code == 200


def test_faults_never_touch_emulator_and_image_routes(emu, client):
    task = client.imagine_done()
    emu.configure(faults={"drop": 1.0, "rate_limit": 1.0})
    for _ in range(5):
        assert requests.get(task["imageUrl"]).status_code == 200
        assert requests.get(emu.base_url + "/_emulator/counters").status_code == 200
    assert emu.counters()["faults"] == {}


def _pattern(c: Client, n: int = 40) -> list[str]:
    out = []
    for _ in range(n):
        try:
            reply = c.get("task/1/fetch", timeout=5)
            out.append(str(reply.status_code))
        except requests.exceptions.ConnectionError:
            out.append("drop")
    return out


FAULTS = {"seed": 7, "drop": 0.2, "rate_limit": 0.2, "server_error": 0.2}


def test_faults_are_reproducible_with_the_same_seed(emu):
    emu.configure(faults=FAULTS)
    first = _pattern(Client(emu))
    assert {"drop", "429", "500", "200"} <= set(first)
    emu.reset()  # re-seeds the streams
    assert _pattern(Client(emu)) == first
    with start_emulator(faults=FAULTS) as other:
        assert _pattern(Client(other)) == first
    emu.configure(faults={"seed": 8})
    assert _pattern(Client(emu)) != first


def test_fault_counters_count_by_kind(emu):
    emu.configure(faults=FAULTS)
    pattern = _pattern(Client(emu))
    faults = emu.counters()["faults"]
    assert faults == {"drop": pattern.count("drop"), "rate_limit": pattern.count("429"),
                      "server_error": pattern.count("500")}
