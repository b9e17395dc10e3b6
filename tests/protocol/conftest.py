"""Fixtures: the independent protocol relay (tests/protocol/relay_server.py) under every quirk profile."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from tests.helpers import connection_json
from tests.protocol.relay_model import RELAY_ALL_QUIRKS, Quirks
from tests.protocol.relay_server import start_relay

JOB = 0.25


@dataclass(frozen=True)
class Profile:
    quirks: Quirks
    #: extras of the connection (auth_style, speed_mode...)
    extra: dict[str, Any] = field(default_factory=dict)
    #: how the user pastes the base URL: "host" or "host/mj"
    host_form: str = "host"


#: Profiles used only by the scenarios that name them (not by the full matrix).
SPECIAL = {"relay_not_found_after_submit", "proxy_not_found_after_submit", "proxy_existed_21",
           "all_quirks_invisible_at_first", "proxy_modal_refused", "relay_modal_refused"}

PROFILES: dict[str, Profile] = {
    "proxy": Profile(Quirks(queue_codes=True)),
    "proxy_204_secret": Profile(Quirks(proxy_unknown="204", auth_style="mj-api-secret", unauthorized_body="empty"),
                                extra={"auth_style": "mj-api-secret"}),
    "relay": Profile(Quirks(dialect="relay", auth_style="bearer")),
    "relay_int_codes": Profile(Quirks(dialect="relay", string_codes=False, error_type="new_api_error")),
    "blank_labels": Profile(Quirks(dialect="relay", blank_labels=True)),
    "numeric_ids": Profile(Quirks(numeric_ids=True)),
    "zero_times": Profile(Quirks(zero_times=True)),
    "lag_fetch": Profile(Quirks(fetch_lag=2)),
    "lag_list": Profile(Quirks(dialect="relay", list_lag=3)),
    "no_list_by_condition": Profile(Quirks(no_list_by_condition=True)),
    "list_shuffle": Profile(Quirks(list_shuffle=True)),
    "unknown_status": Profile(Quirks(unknown_status="PENDING")),
    "failure_progress_empty": Profile(Quirks(dialect="relay", failure_progress_empty=True)),
    "properties_minimal": Profile(Quirks(dialect="relay", properties_minimal=True)),
    "secret_text_401": Profile(Quirks(auth_style="mj-api-secret", unauthorized_body="text"),
                               extra={"auth_style": "mj-api-secret"}),
    "chinese": Profile(Quirks(dialect="relay", chinese_descriptions=True)),
    "base_path": Profile(Quirks(mount="/gateway"), host_form="host/mj"),
    "relax_prefix": Profile(Quirks(expect_speed="relax"), extra={"speed_mode": "relax"}),
    "modal_new_id": Profile(Quirks(modal_new_id=True)),
    "speed_in_path": Profile(Quirks(dialect="relay", expect_speed="relax"), host_form="host/mj-relax/mj"),
    "throttled": Profile(Quirks(dialect="relay", throttle_every=4, unavailable_every=3)),
    "relay_not_found_after_submit": Profile(Quirks(dialect="relay", not_found_polls=2)),
    "proxy_not_found_after_submit": Profile(Quirks(proxy_unknown="204", not_found_polls=2)),
    "proxy_existed_21": Profile(Quirks(existed_21=True)),
    # The modal submit after a code 21 is refused (429) while the MODAL task is not visible yet.
    "proxy_modal_refused": Profile(Quirks(not_found_polls=2, refuse_modal_submits=1)),
    "relay_modal_refused": Profile(Quirks(dialect="relay", not_found_polls=2, refuse_modal_submits=1)),
    "all_quirks": Profile(replace(RELAY_ALL_QUIRKS, expect_speed="relax", throttle_every=7), extra={"speed_mode": "relax"},
                          host_form="host/mj"),
}

#: (profile, deferrable) pairs for the (slower) DAG runs: both dialects, the all-quirks relay (blank labels,
#: numeric ids, zero times, lagging fetch and list, PENDING-like status, minimal properties, Chinese,
#: base path, relax prefix, throttling), and the quirks that change how the trigger polls.
DAG_CASES = [("proxy", False), ("proxy", True), ("all_quirks", False), ("all_quirks", True),
             ("relay", True), ("no_list_by_condition", True), ("throttled", True),
             ("all_quirks_invisible_at_first", False), ("all_quirks_invisible_at_first", True)]


def conn_json_for(relay, profile: Profile, **overrides) -> str:
    host = relay.base_url + {"host": "", "host/mj": "/mj", "host/mj-relax/mj": "/mj-relax/mj"}[profile.host_form]
    extra = dict(profile.extra)
    extra.update(overrides)
    api_key = relay.quirks.api_key if relay.quirks.auth_style else None
    return connection_json(host, api_key, max_retries=2, **extra)


@pytest.fixture
def relay_profile(request) -> tuple[str, Profile]:
    name = request.param
    return name, PROFILES[name]


@pytest.fixture
def relay(relay_profile, monkeypatch):
    """A running protocol relay for the profile, and ``midjourney_default`` pointing at it."""
    _, profile = relay_profile
    with start_relay(replace(profile.quirks, job_seconds=JOB)) as running:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", conn_json_for(running, profile))
        running.profile = profile
        yield running
    counters = running.counters()
    assert counters["auth_failures"] == 0, "the provider sent a request without the right auth header"
    assert counters["speed"].get("wrong_prefix", 0) == 0, "a request missed the speed-mode prefix"


#: The all-quirks relay that also hides a just-submitted job for its first two reads (DAGs only: the
#: operators give their waits the "not visible yet" grace; a bare hook.wait_for_task does not).
PROFILES["all_quirks_invisible_at_first"] = replace(
    PROFILES["all_quirks"], quirks=replace(PROFILES["all_quirks"].quirks, not_found_polls=2))

MATRIX = [name for name in PROFILES if name not in SPECIAL]
