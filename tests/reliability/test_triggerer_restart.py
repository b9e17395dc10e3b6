"""A triggerer restart loses nothing: the trigger is rebuilt from what Airflow stored and carries on.

Airflow keeps a deferred task's trigger as ``serialize()`` -> (classpath, kwargs) in the
``trigger`` table (kwargs encrypted). When a triggerer dies or restarts, its triggers are
cancelled and another triggerer imports the classpath and calls it with the kwargs. Each test
below runs the first trigger on one event loop, cancels it mid-poll, stores it the way Airflow
does (the ``Trigger`` model round trip), and runs the rebuilt trigger on a fresh loop, as a new
triggerer process would.
"""

from __future__ import annotations

import asyncio
import time

from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger


def _stored_and_rebuilt(trigger: MidjourneyTaskTrigger):
    """What another triggerer gets: the ``Trigger`` row's classpath and (decrypted) kwargs, imported."""
    from airflow.models.trigger import Trigger
    from airflow.sdk._shared.module_loading import import_string

    row = Trigger.from_object(trigger)
    return import_string(row.classpath)(**row.kwargs), row


async def _run_until_cancelled(trigger: MidjourneyTaskTrigger, emulator, polls: int) -> list:
    """Run the trigger until the emulator has seen ``polls`` poll requests, then cancel it."""
    events: list = []

    async def consume():
        async for event in trigger.run():
            events.append(event)

    def poll_count() -> int:
        requests = emulator.counters()["requests"]
        return requests.get("task/list-by-condition", 0) + requests.get("task/fetch", 0)

    task = asyncio.ensure_future(consume())
    start = poll_count()
    while poll_count() - start < polls and not task.done():
        await asyncio.sleep(0.02)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return events


async def _run_to_the_end(trigger: MidjourneyTaskTrigger):
    events = [event async for event in trigger.run()]
    assert len(events) == 1  # exactly one event
    return events[0].payload


def test_a_trigger_cancelled_mid_poll_is_rebuilt_from_its_kwargs_and_completes_the_same_job(mj_connection):
    from airflow_provider_mj.hooks import MidjourneyHook

    mj_connection.configure(job_seconds=1.5)
    job = MidjourneyHook().imagine("a lighthouse, across a triggerer restart")
    deadline = time.time() + 60
    first = MidjourneyTaskTrigger(mj_task_id=job.mj_task_id, poll_interval=0.05, deadline=deadline,
                                  prompt="a lighthouse, across a triggerer restart")

    events = asyncio.run(_run_until_cancelled(first, mj_connection, polls=2))
    assert events == []  # cancelled mid-poll, before the job finished: no event was fired

    rebuilt, row = _stored_and_rebuilt(first)
    assert row.classpath == "airflow_provider_mj.triggers.midjourney.MidjourneyTaskTrigger"
    assert rebuilt.serialize() == first.serialize()
    assert rebuilt.deadline == deadline  # an absolute time: the restart does not extend it

    payload = asyncio.run(_run_to_the_end(rebuilt))
    assert payload["status"] == "success" and payload["mj_task_id"] == job.mj_task_id
    assert payload["task"]["status"] == "SUCCESS"
    assert mj_connection.counters()["submits"]["imagine"] == 1


def test_the_deadline_survives_a_restart_and_still_ends_the_wait(mj_connection):
    from airflow_provider_mj.hooks import MidjourneyHook

    mj_connection.configure(job_seconds=30)  # the job outlives the deadline
    job = MidjourneyHook().imagine("a lighthouse that takes too long")
    deadline = time.time() + 1.0
    first = MidjourneyTaskTrigger(mj_task_id=job.mj_task_id, poll_interval=0.05, deadline=deadline)
    asyncio.run(_run_until_cancelled(first, mj_connection, polls=1))

    rebuilt, _ = _stored_and_rebuilt(first)
    started = time.time()
    payload = asyncio.run(_run_to_the_end(rebuilt))

    assert payload["status"] == "timeout" and payload["mj_task_id"] == job.mj_task_id
    assert time.time() - started < 3.0  # the remaining second, not a fresh full timeout
    assert job.mj_task_id in payload["message"] and "re-attaches" in payload["message"]


def test_a_trigger_restarted_after_its_deadline_looks_once_and_reports_a_finished_job(mj_connection):
    from airflow_provider_mj.hooks import MidjourneyHook

    hook = MidjourneyHook()
    job = hook.imagine("a lighthouse finished while no triggerer ran")
    hook.wait_for_task(job.mj_task_id, poll_interval=0.05, deadline=time.time() + 10)
    # The triggerer was down past the deadline; the job finished meanwhile: it is not lost.
    rebuilt, _ = _stored_and_rebuilt(
        MidjourneyTaskTrigger(mj_task_id=job.mj_task_id, poll_interval=0.05, deadline=time.time() - 5)
    )

    payload = asyncio.run(_run_to_the_end(rebuilt))

    assert payload["status"] == "success" and payload["task"]["id"] == job.mj_task_id
