"""A key rotated in Airflow reaches the triggers: new ones use it at once, running ones after a 401.

Two real triggers on one event loop (as in a triggerer). The first defers with ``sk-OLD``; the
connection then changes to ``sk-NEW`` (through ``AIRFLOW_CONN_MIDJOURNEY_DEFAULT``, as a secrets
backend or an edit in the UI would change it); the second trigger starts; then the server
revokes ``sk-OLD``. The second trigger must never present the old key, and the first must pick
up the new one after a single refusal rather than fail with ``MidjourneyAuthError``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_mj.exceptions import MidjourneyAuthError
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.triggers import MidjourneyTaskTrigger
from tests.helpers import connection_json
from tests.protocol.relay_server import Quirks, start_relay

OLD, NEW = "sk-OLD-rotation-1b2c3d", "sk-NEW-rotation-4e5f6a"


@pytest.fixture
def relay(monkeypatch):
    with start_relay(Quirks(dialect="relay", auth_style="bearer", api_key=OLD, job_seconds=2.5)) as running:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(running.base_url, OLD, max_retries=1))
        yield running


def rotate(relay, monkeypatch) -> None:
    """Both keys valid on the server; the Airflow connection now holds the new one."""
    relay.configure(accepted_keys=(NEW,))
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(relay.base_url, NEW, max_retries=1))


def revoke_old(relay) -> None:
    relay.configure(api_key=NEW, accepted_keys=())


async def run(trigger: MidjourneyTaskTrigger) -> list:
    return [event async for event in trigger.run()]


def requests_for(relay, mj_task_id: str) -> list[dict]:
    return [entry for entry in relay.counters()["auth_log"] if mj_task_id in entry["ids"]]


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per-task"])
async def test_two_triggers_in_one_loop_across_a_rotation_and_a_revocation(relay, monkeypatch, coalesce):
    first_id = (await asyncio.to_thread(MidjourneyHook().imagine, "a lighthouse before the rotation")).mj_task_id
    first = asyncio.ensure_future(run(MidjourneyTaskTrigger(
        mj_task_id=first_id, poll_interval=0.05, deadline=time.time() + 30, coalesce=coalesce)))
    await asyncio.sleep(0.5)  # deferred and polling with the old key
    assert {e["key"] for e in requests_for(relay, first_id)} == {OLD}

    rotate(relay, monkeypatch)
    second_id = (await asyncio.to_thread(MidjourneyHook().imagine, "a lighthouse after the rotation")).mj_task_id
    second = asyncio.ensure_future(run(MidjourneyTaskTrigger(
        mj_task_id=second_id, poll_interval=0.05, deadline=time.time() + 30, coalesce=coalesce)))
    await asyncio.sleep(0.5)
    revoke_old(relay)
    first_events, second_events = await asyncio.wait_for(asyncio.gather(first, second), 40)

    assert [e.payload["status"] for e in first_events + second_events] == ["success", "success"]
    # The trigger created after the change never sent the old key.
    assert {e["key"] for e in requests_for(relay, second_id)} == {NEW}
    # The first one was refused once after the revocation, re-read the connection, and went on with the new key.
    log = requests_for(relay, first_id)
    refused = [i for i, e in enumerate(log) if not e["ok"]]
    assert len(refused) == 1 and {e["key"] for e in log[refused[0] + 1:]} == {NEW}
    assert {e["key"] for e in log[:refused[0] + 1]} == {OLD}


async def test_a_refusal_with_an_unchanged_connection_fails_after_one_reread(relay, monkeypatch):
    lookups = []
    real = MidjourneyHook.aget_connection

    async def counting(self, conn_id):
        lookups.append(conn_id)
        return await real(conn_id)

    monkeypatch.setattr(MidjourneyHook, "aget_connection", counting)
    revoke_old(relay)  # the connection still holds the old key: nothing to pick up
    async with MidjourneyHook() as hook:
        with pytest.raises(MidjourneyAuthError):
            await hook.afetch_task("1741531578038000")
    assert len(lookups) == 2  # the first read, and one re-read before failing
    assert len(relay.counters()["auth_log"]) == 1  # a refused key is not retried with itself


def test_the_blocking_path_picks_up_a_rotated_key_after_a_401(relay, monkeypatch):
    hook = MidjourneyHook()
    mj_task_id = hook.imagine("a lighthouse, blocking").mj_task_id  # the hook now holds the old key
    rotate(relay, monkeypatch)
    revoke_old(relay)
    task = hook.wait_for_task(mj_task_id, poll_interval=0.05, deadline=time.time() + 30)
    assert task.status.value == "SUCCESS"
    keys = [e["key"] for e in requests_for(relay, mj_task_id)]
    assert keys[0] == OLD and set(keys[1:]) == {NEW}
