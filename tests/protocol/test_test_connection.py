"""The connection's Test button uses the one route every server has: a fetch of an unknown id."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest

from airflow_provider_mj.hooks import MidjourneyHook
from tests.helpers import connection_json
from tests.protocol.conftest import PROFILES, conn_json_for
from tests.protocol.misbehaving import canned  # noqa: F401 - fixture
from tests.protocol.relay_server import start_relay

#: unknown id answered null (proxy), 204 (proxy), task_not_found (relay); no list-by-condition; a mount.
WORKING = ["proxy", "proxy_204_secret", "relay", "relay_int_codes", "no_list_by_condition", "base_path"]


@pytest.mark.parametrize("relay_profile", WORKING, indirect=True)
def test_test_connection_succeeds_on_every_server_kind_without_a_job(relay):
    ok, message = MidjourneyHook().test_connection()
    assert ok, message
    counters = relay.counters()
    assert counters["submits"] == {} and set(counters["requests"]) == {"task/fetch"}


@pytest.mark.parametrize("profile", ["relay", "secret_text_401", "proxy_204_secret"])
def test_test_connection_fails_with_a_wrong_key(profile, monkeypatch):
    with start_relay(replace(PROFILES[profile].quirks, auth_style=PROFILES[profile].quirks.auth_style or "bearer")) as relay:
        extra = dict(PROFILES[profile].extra)
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(relay.base_url, "sk-wrong", **extra))
        ok, message = MidjourneyHook().test_connection()
    assert not ok and "refused the API key" in message and "sk-wrong" not in message


def test_test_connection_fails_on_a_base_url_without_the_api(monkeypatch):
    # The API is mounted under /gateway; the connection points at the bare host: 404 page not found.
    with start_relay(PROFILES["base_path"].quirks) as relay:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(relay.host_url))
        ok, message = MidjourneyHook().test_connection()
    assert not ok and "no Midjourney API at" in message and relay.host_url in message


def test_a_404_with_code_3_is_the_known_unknown_task_answer(canned, monkeypatch):  # noqa: F811
    server = canned().reply(404, {"code": 3, "description": "task not found", "result": None})
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(server.base_url, "k"))
    assert MidjourneyHook().test_connection()[0] is True
    assert [r["method"] for r in server.requests] == ["GET"]


def test_airflow_connections_test_cli_on_a_server_without_list_by_condition(airflow_db):
    with start_relay(PROFILES["no_list_by_condition"].quirks) as relay:
        env = {**os.environ, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
               "AIRFLOW_CONN_MIDJOURNEY_DEFAULT": conn_json_for(relay, PROFILES["no_list_by_condition"])}
        run = subprocess.run([sys.executable, "-m", "airflow", "connections", "test", "midjourney_default"],
                             env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Connection success!" in run.stdout, run.stdout
