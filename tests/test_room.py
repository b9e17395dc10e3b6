"""The line of submits waiting for room (``RoomBoard``), on a real event loop: arrival order,
one waiter per freed slot, one probe at a time, and the room triggers around it."""

from __future__ import annotations

import asyncio
import time

from airflow_provider_mj import room
from airflow_provider_mj.room import RELEASED_PROBE, RELEASED_ROOM, RELEASED_TIMEOUT, RoomBoard, RoomWait


def _wait(key: str, arrival: float, *, probe_in: float = 60.0, deadline_in: float = 60.0) -> RoomWait:
    now = time.time()
    return RoomWait(order_key=key, arrival=arrival, attempt=1, refused_at=now, probe_at=now + probe_in,
                    deadline=now + deadline_in, reason="account queue full")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_one_finished_job_releases_one_waiter_the_first_to_arrive():
    async def scenario():
        board = RoomBoard("mj")
        now = time.time()
        # Joined in a different order than they arrived (a re-deferred task keeps its arrival).
        tasks = {key: asyncio.create_task(board.wait(_wait(key, now + arrival)))
                 for key, arrival in (("c", 3), ("a", 1), ("b", 2))}
        await _settle()
        released = []
        for n in range(3):
            board.job_finished(f"job-{n}")
            await _settle()
            done = [key for key, t in tasks.items() if t.done() and key not in released]
            assert len(done) == 1, f"one finished job must release exactly one waiter, got {done}"
            released += done
        return released, [tasks[k].result() for k in released]

    released, results = asyncio.run(scenario())
    assert released == ["a", "b", "c"]
    assert results == [RELEASED_ROOM] * 3


def test_the_same_finished_job_counts_once():
    async def scenario():
        board = RoomBoard("mj")
        now = time.time()
        first, second = (asyncio.create_task(board.wait(_wait(k, now + i))) for i, k in enumerate("ab"))
        await _settle()
        board.job_finished("job-1")
        board.job_finished("job-1")  # two triggers watching the same job
        await _settle()
        states = first.done(), second.done()
        second.cancel()
        return states

    assert asyncio.run(scenario()) == (True, False)


def test_only_the_first_waiter_probes_and_never_two_probes_at_once(monkeypatch):
    monkeypatch.setattr(room, "PROBE_GRACE_SECONDS", 0.3)

    async def scenario():
        board = RoomBoard("mj")
        now = time.time()
        waits = [_wait(k, now + i, probe_in=0.05) for i, k in enumerate("abc")]
        tasks = [asyncio.create_task(board.wait(w)) for w in waits]
        await asyncio.sleep(0.15)
        after_first = [t.done() for t in tasks]  # a probed; b's own backoff passed, but a probe is out
        await asyncio.sleep(0.35)
        after_grace = [t.done() for t in tasks]  # a never came back (accepted): b may probe now
        for t in tasks:
            t.cancel()
        return after_first, after_grace, tasks[0].result(), tasks[1].result()

    after_first, after_grace, a, b = asyncio.run(scenario())
    assert after_first == [True, False, False]
    assert after_grace == [True, True, False]
    assert a == b == RELEASED_PROBE


def test_a_probe_that_comes_back_refused_lets_the_next_probe_go_after_its_own_backoff(monkeypatch):
    monkeypatch.setattr(room, "PROBE_GRACE_SECONDS", 30.0)

    async def scenario():
        board = RoomBoard("mj")
        now = time.time()
        a = _wait("a", now, probe_in=0.0)
        first = asyncio.create_task(board.wait(a))
        second = asyncio.create_task(board.wait(_wait("b", now + 1, probe_in=0.0)))
        assert await first == RELEASED_PROBE
        # Refused again: back in line with its arrival time, first again, probing after backoff.
        a.refused_again(room_error(), time.time())
        a.probe_at = time.time() + 0.1
        again = asyncio.create_task(board.wait(a))
        await asyncio.sleep(0.05)
        early = again.done(), second.done()
        result = await asyncio.wait_for(again, 1.0)
        second.cancel()
        return early, result

    early, result = asyncio.run(scenario())
    assert early == (False, False), "b must not probe while a is first in line, nor a before its backoff"
    assert result == RELEASED_PROBE


def room_error():
    from airflow_provider_mj.exceptions import MidjourneyQueueFullError

    return MidjourneyQueueFullError("full", code=23)


def test_a_job_that_finished_after_the_refusal_but_before_the_waiter_joined_is_room():
    async def scenario():
        board = RoomBoard("mj")
        late = _wait("a", time.time())
        late.refused_at = time.time() - 1.0  # refused, then the job finished, then it joined
        board.job_finished("job-1")
        first = await asyncio.wait_for(board.wait(late), 0.2)
        try:  # the room was taken: the next waiter waits on
            await asyncio.wait_for(board.wait(_wait("b", time.time())), 0.2)
        except TimeoutError:
            return first, "still waiting"
        return first, "released"

    assert asyncio.run(scenario()) == (RELEASED_ROOM, "still waiting")


def test_a_waiter_gives_up_at_its_deadline():
    async def scenario():
        board = RoomBoard("mj")
        result = await board.wait(_wait("a", time.time(), deadline_in=0.1))
        return result, board.waiting

    assert asyncio.run(scenario()) == (RELEASED_TIMEOUT, 0)


def test_the_room_trigger_is_released_when_a_watched_job_of_its_connection_finishes():
    from airflow_provider_mj.triggers.room import MidjourneyRoomTrigger

    async def scenario():
        trigger = MidjourneyRoomTrigger(midjourney_conn_id="mj", wait=_wait("a", time.time()).to_dict())
        other = MidjourneyRoomTrigger(midjourney_conn_id="other", wait=_wait("b", time.time()).to_dict())
        runs = [asyncio.create_task(anext(t.run())) for t in (trigger, other)]
        await _settle()
        room.job_finished("mj", "job-1")  # what a task trigger says when the job it watches ends
        event = await asyncio.wait_for(runs[0], 1.0)
        await _settle()
        other_done = runs[1].done()
        runs[1].cancel()
        return event.payload, other_done

    payload, other_done = asyncio.run(scenario())
    assert payload["status"] == "room" and payload["how"] == RELEASED_ROOM
    assert payload["wait"]["order_key"] == "a"
    assert other_done is False, "a job of another connection frees no room on this one"


def test_a_job_the_triggerer_watches_finishing_releases_the_first_waiter(mj_connection):
    # Real triggers on one event loop, as in a triggerer: a task trigger watching a job of the
    # emulator, and a room trigger of the same connection whose own probe is far away.
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook
    from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger
    from airflow_provider_mj.triggers.room import MidjourneyRoomTrigger

    mj_connection.configure(job_seconds=0.5)
    mj_task_id = MidjourneyHook().imagine("a slot that frees").mj_task_id

    async def scenario():
        job = MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.1, deadline=time.time() + 30)
        waiting = MidjourneyRoomTrigger(midjourney_conn_id="midjourney_default",
                                        wait=_wait("a", time.time(), probe_in=60.0).to_dict())
        room_event = asyncio.create_task(anext(waiting.run()))
        job_event = await asyncio.wait_for(anext(job.run()), 20)
        return job_event.payload, (await asyncio.wait_for(room_event, 5)).payload

    job_payload, room_payload = asyncio.run(scenario())
    assert job_payload["status"] == "success"
    assert room_payload["status"] == "room" and room_payload["how"] == RELEASED_ROOM


def test_a_wait_that_stops_at_modal_frees_no_slot(mj_connection):
    # The relay dialect answers a remix with code 1 while its task waits in MODAL: the trigger that
    # looks for the modal ends its wait there, but the job has not ended, so no waiter goes.
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook
    from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger
    from airflow_provider_mj.triggers.room import MidjourneyRoomTrigger

    mj_connection.configure(dialect="relay", job_seconds=0.3)
    with MidjourneyHook() as hook:
        parent = hook.wait_for_task(hook.imagine("a remix base").mj_task_id, poll_interval=0.05,
                                    deadline=time.time() + 20)
        modal_task_id = hook.action(parent.id, parent.custom_ids()["V3"], enable_remix=True).mj_task_id

    async def scenario():
        job = MidjourneyTaskTrigger(mj_task_id=modal_task_id, poll_interval=0.05, deadline=time.time() + 30,
                                    modal_ends_wait=True)
        waiting = MidjourneyRoomTrigger(midjourney_conn_id="midjourney_default",
                                        wait=_wait("a", time.time(), probe_in=60.0).to_dict())
        room_event = asyncio.create_task(anext(waiting.run()))
        job_event = await asyncio.wait_for(anext(job.run()), 20)
        await asyncio.sleep(0.2)
        released = room_event.done()
        room_event.cancel()
        return job_event.payload, released

    job_payload, released = asyncio.run(scenario())
    assert job_payload["status"] == "modal" and job_payload["task"]["status"] == "MODAL"
    assert released is False, "a job waiting in MODAL has not ended: it frees no slot"
