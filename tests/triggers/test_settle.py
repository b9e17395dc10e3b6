"""The settle time on a real event loop: no trigger of ours fires sooner than SETTLE_SECONDS after
its task deferred (:mod:`airflow_provider_mj.settle`), and one that fires later waits nothing extra.

These tests run the settle as shipped (``real_settle``); the rest of the suite runs without it.
"""

from __future__ import annotations

import asyncio
import time

from airflow_provider_mj import room
from airflow_provider_mj.room import RELEASED_ROOM, RoomWait
from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger
from airflow_provider_mj.triggers.room import MidjourneyRoomTrigger


def _room_wait(key: str, refused_at: float) -> RoomWait:
    return RoomWait(order_key=key, arrival=refused_at, attempt=1, refused_at=refused_at,
                    probe_at=time.time() + 60, deadline=time.time() + 60, reason="account queue full")


async def _yield_loop() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_room_trigger_released_early_keeps_its_room_and_waits_out_the_settle(real_settle):
    async def scenario():
        deferred_at = time.time()
        early = MidjourneyRoomTrigger(midjourney_conn_id="mj", wait=_room_wait("a", deferred_at).to_dict())
        behind = MidjourneyRoomTrigger(midjourney_conn_id="mj", wait=_room_wait("b", deferred_at + 0.01).to_dict())
        runs = [asyncio.create_task(anext(t.run())) for t in (early, behind)]
        await _yield_loop()
        room.job_finished("mj", "job-1")  # room, well inside the settle
        await _yield_loop()
        board = room.board_for("mj")
        during = runs[0].done(), board.waiting  # the room is claimed, the event not out yet
        event = await asyncio.wait_for(runs[0], real_settle + 5)
        fired_at = time.time()
        await _yield_loop()
        behind_done = runs[1].done()
        runs[1].cancel()
        return deferred_at, during, event.payload, fired_at, behind_done

    deferred_at, during, payload, fired_at, behind_done = asyncio.run(scenario())
    assert during == (False, 1), "released from the line at once (only the waiter behind is left), event held"
    assert payload["status"] == "room" and payload["how"] == RELEASED_ROOM and payload["wait"]["order_key"] == "a"
    assert fired_at >= deferred_at + real_settle
    assert behind_done is False, "one finished job is room for one waiter, the settle does not change that"


def test_a_room_trigger_released_after_the_settle_fires_at_once(real_settle, capfd):
    async def scenario():
        deferred_at = time.time() - real_settle - 1  # deferred long enough ago
        late = MidjourneyRoomTrigger(midjourney_conn_id="mj", wait=_room_wait("a", deferred_at).to_dict())
        run = asyncio.create_task(anext(late.run()))
        await _yield_loop()
        released_at = time.time()
        room.job_finished("mj", "job-1")
        event = await asyncio.wait_for(run, real_settle + 5)
        return event.payload, time.time() - released_at

    payload, after_release = asyncio.run(scenario())
    assert payload["status"] == "room" and payload["how"] == RELEASED_ROOM
    assert after_release < real_settle, "a trigger released after the settle must not wait it again"
    assert "Holding the event" not in capfd.readouterr().out


def test_a_task_trigger_that_finds_its_job_finished_waits_out_the_settle_from_its_deferral(
    mj_connection, real_settle, capfd
):
    # A retry re-attaching to a job that already ended: the first poll finds it finished.
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

    with MidjourneyHook() as hook:
        mj_task_id = hook.imagine("a job that ended before its task deferred").mj_task_id
        hook.wait_for_task(mj_task_id, poll_interval=0.05, deadline=time.time() + 20)

    deferring = MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05, deadline=time.time() + 30)
    classpath, kwargs = deferring.serialize()
    # The triggerer builds its own copy from the kwargs, later: it keeps the deferral time.
    time.sleep(0.5)
    on_triggerer = MidjourneyTaskTrigger(**kwargs)
    assert on_triggerer.deferred_at == deferring.deferred_at

    event = asyncio.run(asyncio.wait_for(anext(on_triggerer.run()), real_settle + 20))
    fired_at = time.time()
    assert event.payload["status"] == "success"
    assert fired_at >= deferring.deferred_at + real_settle
    assert "Holding the event" in capfd.readouterr().out

    long_ago = MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05, deadline=time.time() + 30,
                                     deferred_at=time.time() - real_settle - 1)
    started = time.time()
    event = asyncio.run(asyncio.wait_for(anext(long_ago.run()), real_settle + 20))
    assert event.payload["status"] == "success"
    assert time.time() - started < real_settle, "a task that deferred long ago waits nothing more"
    assert "Holding the event" not in capfd.readouterr().out


def test_dag_test_runs_its_triggers_without_the_settle(request, mj_connection, run_dag, real_settle, monkeypatch,
                                                       capfd):
    """``dag.test()`` and ``airflow dags test`` (what ``make demo`` runs) have no executor, so no race
    to settle: a job that finishes at once resumes its task at once, though the settle is as shipped."""
    from airflow_provider_mj.operators import MidjourneyImagineOperator
    from tests.helpers import make_dag, record_inline_triggers, task_instances, unique_dag_id

    triggers = record_inline_triggers(monkeypatch)
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a quick harbour", deferrable=True, poll_interval=0.1,
                                  timeout=60)
    dr = run_dag(dag)

    assert {k: ti.state for k, ti in task_instances(dr).items()} == {"imagine": "success"}
    assert triggers == ["MidjourneyTaskTrigger"]  # it did defer, and its trigger ran in-process
    assert "Holding the event" not in capfd.readouterr().out
