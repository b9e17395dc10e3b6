"""Relays whose list-by-condition misbehaves: every waiting task still succeeds, through fetch.

The batch call is an optimisation; ``fetch`` is the primary route. Twelve real triggers wait on
one event loop (one coalesced poller) against the independent relay, whose batch route answers
an error envelope with HTTP 200, a JSON object instead of a list, 404, 405, a persistent 500, or
too slowly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from airflow_provider_mj import polling
from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger
from tests.helpers import connection_json
from tests.protocol.relay_server import Quirks, start_relay

WAITING = 12

BATCH_FAULTS = {
    "envelope_200": Quirks(list_mode="envelope"),
    "not_a_list_200": Quirks(list_mode="object"),
    "404": Quirks(no_list_by_condition=True),
    "405": Quirks(list_mode="405"),
    "persistent_500": Quirks(list_mode="500"),
    "slower_than_the_timeout": Quirks(list_mode="slow", list_slow_seconds=3.0),
}


async def _run(trigger: MidjourneyTaskTrigger, limit: float = 40.0) -> list:
    async def collect():
        return [event async for event in trigger.run()]

    return await asyncio.wait_for(collect(), timeout=limit)


def _submit(relay, monkeypatch, count: int, **extra) -> list[str]:
    extra.setdefault("max_retries", 3)
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT",
                       connection_json(relay.base_url, relay.quirks.api_key if relay.quirks.auth_style else None,
                                       timeout=1, **extra))
    with MidjourneyHook() as hook:
        return [hook.imagine(f"batchless {i}").mj_task_id for i in range(count)]


@pytest.mark.parametrize("fault", list(BATCH_FAULTS))
async def test_twelve_waiting_tasks_all_succeed_via_fetch(fault, monkeypatch):
    with start_relay(replace(BATCH_FAULTS[fault], job_seconds=0.5)) as relay:
        ids = _submit(relay, monkeypatch, WAITING)
        triggers = [MidjourneyTaskTrigger(mj_task_id=i, poll_interval=0.1, deadline=time.time() + 30)
                    for i in ids]
        results = await asyncio.gather(*(_run(t) for t in triggers))
        requests = relay.counters()["requests"]

    assert [events[0].payload["status"] for events in results] == ["success"] * WAITING
    assert [events[0].payload["mj_task_id"] for events in results] == ids
    # One batch attempt, sent once (no retries of a failing optimisation), then fetches only.
    assert requests.get("task/list-by-condition") == 1
    assert requests.get("task/fetch", 0) >= WAITING


async def test_the_batch_is_tried_again_later_and_used_when_it_works(monkeypatch):
    monkeypatch.setattr(polling, "BATCH_RETRY_SECONDS", 0.5)
    with start_relay(Quirks(list_mode="500", job_seconds=3.0)) as relay:
        ids = _submit(relay, monkeypatch, 4)
        triggers = [MidjourneyTaskTrigger(mj_task_id=i, poll_interval=0.05, deadline=time.time() + 30)
                    for i in ids]
        waits = asyncio.gather(*(_run(t) for t in triggers))
        while relay.counters()["requests"].get("task/list-by-condition", 0) < 1:
            await asyncio.sleep(0.02)
        relay.configure(list_mode=None)  # the route recovers
        (poller,) = polling.TaskPoller.active_pollers()
        results = await waits
        fetches_after_recovery = relay.counters()["requests"].get("task/fetch", 0)

    assert [events[0].payload["status"] for events in results] == ["success"] * 4
    assert poller.stats["batch_failures"] == 1 and poller.stats["batch_calls"] >= 1
    # Per-task fetches ran only until the batch was tried again (0.5 s at 4 x 20 fetches/s).
    assert fetches_after_recovery < 4 * 3.0 / 0.05


async def test_a_refused_key_on_the_batch_fails_the_waits_without_fetching_each(monkeypatch):
    with start_relay(Quirks(auth_style="bearer", job_seconds=0.5)) as relay:
        ids = _submit(relay, monkeypatch, 3)
        relay.configure(api_key="rotated-away")
        triggers = [MidjourneyTaskTrigger(mj_task_id=i, poll_interval=0.1, deadline=time.time() + 30)
                    for i in ids]
        results = await asyncio.gather(*(_run(t) for t in triggers))
        requests = relay.counters()["requests"]

    assert {events[0].payload.get("error_type") for events in results} == {"MidjourneyAuthError"}
    assert requests.get("task/fetch", 0) == 0


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per_task"])
async def test_a_fetch_that_wraps_the_task_in_a_success_envelope(monkeypatch, coalesce):
    # {"code": 1, "result": <task>}, and {"code": 1, "result": null} while the job is not visible yet.
    with start_relay(Quirks(fetch_envelope=True, no_list_by_condition=True, not_found_polls=2,
                            job_seconds=0.5)) as relay:
        ids = _submit(relay, monkeypatch, 3)
        triggers = [MidjourneyTaskTrigger(mj_task_id=i, poll_interval=0.1, deadline=time.time() + 30,
                                          coalesce=coalesce, visible_by=time.time() + 20) for i in ids]
        results = await asyncio.gather(*(_run(t) for t in triggers))
    payloads = [events[0].payload for events in results]
    assert [p["status"] for p in payloads] == ["success"] * 3
    assert [p["task"]["id"] for p in payloads] == ids


async def test_an_unknown_id_in_a_success_envelope_is_not_found(monkeypatch):
    from airflow_provider_mj.exceptions import MidjourneyNotFoundError

    with start_relay(Quirks(fetch_envelope=True)) as relay:
        _submit(relay, monkeypatch, 0)
        with MidjourneyHook() as hook, pytest.raises(MidjourneyNotFoundError):
            hook.fetch_task("1000000000000001")
        async with MidjourneyHook() as ahook:
            with pytest.raises(MidjourneyNotFoundError):
                await ahook.afetch_task("1000000000000001")
