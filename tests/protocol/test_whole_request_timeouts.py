"""The connection's timeout bounds a whole request, not one read; waits end by their deadline.

The server answers at once but sends its body one byte every 50 ms (or, ``head``, its status
line and headers too): no single read ever waits long enough for a read timeout, and the full
reply would take about 30 s. Each request must be cut when its budget is spent. What shows it is the server's own view: the client hung up after
a few bytes of the reply, not at its end (no wall-clock assertion on the client side).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyConnectionError,
    MidjourneySubmitUncertainError,
    MidjourneyTimeoutError,
)
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.triggers import MidjourneyTaskTrigger
from tests.helpers import connection_json
from tests.protocol.misbehaving import TASK_ID, trickle  # noqa: F401 - fixture

TASK = {"id": TASK_ID, "action": "IMAGINE", "status": "IN_PROGRESS", "progress": "40%", "prompt": "a slow reply " * 30,
        "buttons": []}
SUBMITTED = {"code": 1, "description": "Submit success " * 30, "result": TASK_ID}
INTERVAL = 0.05


def hung_up_early(server, requests: int = 1) -> None:
    """The server saw every reply abandoned by the client well before its end."""
    deadline = time.monotonic() + 10  # the server notices a hang-up at its next write
    while len(server.hangups) < requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.requests == requests and len(server.hangups) == requests, (server.requests, server.hangups)
    assert max(server.hangups) < len(server.payload) / 2, (server.hangups, len(server.payload))
    if server.head:  # cut while the headers were still arriving
        assert max(server.hangups) < len(server.head), (server.hangups, len(server.head))


HEAD = pytest.mark.parametrize("trickle_head", [False, True], ids=["body", "head"])


@pytest.fixture(params=[False, True], ids=["body", "head"])
def slow_task(request, trickle, monkeypatch):  # noqa: F811
    server = trickle(TASK, interval=INTERVAL, trickle_head=request.param)
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(server.base_url, "k", timeout=1,
                                                                          max_retries=0))
    return server


def test_a_trickled_fetch_is_cut_at_the_connection_timeout(slow_task):
    with pytest.raises(MidjourneyConnectionError, match="timed out"):
        MidjourneyHook().fetch_task(TASK_ID)
    hung_up_early(slow_task)


@HEAD
def test_a_trickled_submit_is_cut_and_reported_uncertain_not_resent(trickle, monkeypatch, trickle_head):  # noqa: F811
    server = trickle(SUBMITTED, interval=INTERVAL, trickle_head=trickle_head)
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(server.base_url, "k", timeout=1,
                                                                          max_retries=3))
    with pytest.raises(MidjourneySubmitUncertainError, match="no reply came before the timeout"):
        MidjourneyHook().imagine("a red fox")
    hung_up_early(server)  # one request: an uncertain submit is never sent again


async def test_a_trickled_async_fetch_is_cut_at_the_connection_timeout(slow_task):
    async with MidjourneyHook() as hook:
        with pytest.raises(MidjourneyConnectionError, match="timed out"):
            await hook.afetch_task(TASK_ID)
    await asyncio.to_thread(hung_up_early, slow_task)


@HEAD
def test_a_blocking_wait_ends_by_its_deadline_though_the_timeout_is_longer(trickle, monkeypatch,  # noqa: F811
                                                                          trickle_head):
    server = trickle(TASK, interval=INTERVAL, trickle_head=trickle_head)
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(server.base_url, "k", timeout=60,
                                                                          max_retries=5))
    with pytest.raises(MidjourneyTimeoutError, match="did not finish before the deadline"):
        MidjourneyHook().wait_for_task(TASK_ID, poll_interval=0.1, deadline=time.time() + 1.5)
    hung_up_early(server)  # the one fetch in flight at the deadline was cut; no retry started after it


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per-task"])
async def test_a_trigger_ends_by_its_deadline_with_a_timeout_event(trickle, monkeypatch, coalesce):  # noqa: F811
    server = trickle(TASK, interval=INTERVAL)
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(server.base_url, "k", timeout=60))
    trigger = MidjourneyTaskTrigger(mj_task_id=TASK_ID, poll_interval=0.1, deadline=time.time() + 1.5,
                                    coalesce=coalesce)
    events = [event async for event in trigger.run()]
    assert [e.payload["status"] for e in events] == ["timeout"]
    await asyncio.to_thread(hung_up_early, server)  # the loop stays free to close what was cancelled
