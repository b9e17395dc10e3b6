"""MidjourneyTaskTrigger on a real event loop against the independent relay: coalesced and per task."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger, task_from_event
from tests.protocol.conftest import MATRIX
from tests.protocol.relay_server import CANCEL_WORD, FAIL_WORD

ALL = pytest.mark.parametrize("relay_profile", MATRIX, indirect=True)


async def run_trigger(trigger: MidjourneyTaskTrigger, limit: float = 20.0) -> list:
    async def collect():
        return [event async for event in trigger.run()]

    return await asyncio.wait_for(collect(), timeout=limit)


@ALL
@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per_task"])
async def test_trigger_events(relay, coalesce):
    with MidjourneyHook() as hook:
        ok = [hook.imagine(f"trigger {i}").mj_task_id for i in range(3)]
        failing = hook.imagine(f"trigger {FAIL_WORD}").mj_task_id
        cancelled = hook.imagine(f"trigger {CANCEL_WORD}").mj_task_id
    triggers = [MidjourneyTaskTrigger(mj_task_id=i, poll_interval=0.05, deadline=time.time() + 15,
                                      coalesce=coalesce) for i in ok + [failing, cancelled]]
    results = await asyncio.gather(*(run_trigger(t) for t in triggers))

    payloads = [events[0].payload for events in results]
    assert all(len(events) == 1 for events in results)
    assert [p["status"] for p in payloads] == ["success"] * 3 + ["failed", "failed"]
    for mj_task_id, payload in zip(ok, payloads):
        task = task_from_event(payload)
        assert task.id == mj_task_id and payload["mj_task_id"] == mj_task_id
        assert {"U1", "U2", "U3", "U4"} <= set(task.custom_ids())
    assert payloads[-2]["task"]["failReason"] and payloads[-2]["task"]["status"] == "FAILURE"
    assert payloads[-1]["task"]["status"] == "CANCEL"
    requests = relay.counters()["requests"]
    if coalesce and not relay.quirks.no_list_by_condition:
        assert requests.get("task/list-by-condition", 0) >= 1
    if not coalesce:
        assert requests.get("task/list-by-condition", 0) == 0


@pytest.mark.parametrize("relay_profile", ["proxy", "relay"], indirect=True)
async def test_trigger_unknown_task_is_an_error_event(relay):
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id="1000000000000001", poll_interval=0.05,
                                                     deadline=time.time() + 5))
    assert events[0].payload["status"] == "error"
    assert events[0].payload["error_type"] == "MidjourneyNotFoundError"
