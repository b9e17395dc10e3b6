"""MidjourneyTaskTrigger on a real event loop against the emulator, and the event reader."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyError,
    MidjourneyNotFoundError,
    MidjourneyTaskFailedError,
    MidjourneyTimeoutError,
)
from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger, task_from_event
from tests.helpers import progress_lines, record_connection_reads


@pytest.fixture
def hook(mj_connection):
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

    return MidjourneyHook(midjourney_conn_id="midjourney_default")


async def run_trigger(trigger: MidjourneyTaskTrigger, limit: float = 20.0) -> list:
    """All events the trigger yields (it must yield exactly one and stop)."""

    async def collect():
        return [event async for event in trigger.run()]

    return await asyncio.wait_for(collect(), timeout=limit)


def submit(hook, prompt: str) -> str:
    return hook.imagine(prompt).mj_task_id


async def test_success_yields_one_event_with_the_finished_task(hook, mj_connection, capfd):
    mj_connection.configure(job_seconds=2.0)  # each progress value lasts 0.5 s: polls see them all
    mj_task_id = submit(hook, "a trigger success")
    trigger = MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05, deadline=time.time() + 20,
                                    progress_log_interval=0)

    events = await run_trigger(trigger)

    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "success" and payload["mj_task_id"] == mj_task_id
    assert payload["task"]["status"] == "SUCCESS" and payload["task"]["imageUrl"]
    assert task_from_event(payload).id == mj_task_id
    _assert_every_change_from_the_first_is_logged(capfd.readouterr().out, mj_task_id)


async def test_failure_yields_a_failed_event(hook):
    mj_task_id = submit(hook, "an emulator-fail trigger")
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05,
                                                     deadline=time.time() + 20))

    payload = events[0].payload
    assert payload["status"] == "failed" and payload["task"]["status"] == "FAILURE"
    with pytest.raises(MidjourneyTaskFailedError) as err:
        task_from_event(payload)
    assert err.value.fail_reason and err.value.mj_task_id == mj_task_id


async def test_deadline_yields_a_timeout_event(hook, mj_connection):
    mj_connection.configure(job_seconds=30)
    mj_task_id = submit(hook, "a trigger that waits too long")
    started = time.monotonic()
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.1,
                                                     deadline=time.time() + 0.5))

    assert time.monotonic() - started < 3
    payload = events[0].payload
    assert payload["status"] == "timeout" and payload["task"] is not None
    with pytest.raises(MidjourneyTimeoutError):
        task_from_event(payload)


async def test_a_deadline_already_past_still_reads_the_task_once(hook):
    mj_task_id = submit(hook, "a late trigger")
    await asyncio.sleep(1.0)  # the job is finished by now
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.1,
                                                     deadline=time.time() - 1))
    assert events[0].payload["status"] == "success"


@pytest.mark.parametrize("fault", ["server_error", "rate_limit", "drop", "malformed"])
async def test_transient_errors_are_retried_without_failing(hook, mj_connection, fault):
    mj_connection.configure(job_seconds=1.0)  # enough polls for the faults to show up
    mj_task_id = submit(hook, f"a trigger under {fault}")
    mj_connection.configure(faults={fault: 0.5, "seed": 3, "retry_after": 0})
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05,
                                                     deadline=time.time() + 30), limit=40)

    assert events[0].payload["status"] == "success"
    assert mj_connection.counters()["faults"].get(fault, 0) > 0


async def test_transient_errors_until_the_deadline_give_a_timeout_event(hook, mj_connection):
    mj_task_id = submit(hook, "a trigger with a dead server")
    mj_connection.configure(faults={"server_error": 1.0})
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05,
                                                     deadline=time.time() + 1.0))

    payload = events[0].payload
    assert payload["status"] == "timeout" and "did not finish before its deadline" in payload["message"]


async def test_an_unknown_task_yields_an_error_event_that_reraises_the_same_class(hook):
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id="1999999999999999", poll_interval=0.05,
                                                     deadline=time.time() + 10))

    payload = events[0].payload
    assert payload["status"] == "error" and payload["error_type"] == "MidjourneyNotFoundError"
    with pytest.raises(MidjourneyNotFoundError):
        task_from_event(payload)


async def test_any_exception_becomes_an_error_event(monkeypatch):
    trigger = MidjourneyTaskTrigger(mj_task_id="1320098173412546", poll_interval=0.05, deadline=time.time() + 5)

    def broken():
        raise RuntimeError("no such connection")

    monkeypatch.setattr(trigger, "_make_hook", broken)
    events = await run_trigger(trigger)

    payload = events[0].payload
    assert payload["status"] == "error" and "no such connection" in payload["message"]
    with pytest.raises(MidjourneyError):
        task_from_event(payload)


def test_serialize_round_trip_keeps_only_json_primitives():
    trigger = MidjourneyTaskTrigger(mj_task_id="1320098173412546", midjourney_conn_id="mj_relax",
                                    poll_interval=2, deadline=1_900_000_000.5, prompt="a cat")
    classpath, kwargs = trigger.serialize()

    assert classpath == "airflow_provider_mj.triggers.midjourney.MidjourneyTaskTrigger"
    assert all(v is None or isinstance(v, (str, int, float)) for v in kwargs.values())
    assert isinstance(kwargs["deadline"], float)
    again = MidjourneyTaskTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)


def test_serialize_survives_airflow_serde():
    from airflow.sdk.serde import deserialize, serialize

    trigger = MidjourneyTaskTrigger(mj_task_id="1320098173412546", poll_interval=0.5, deadline=time.time())
    classpath, kwargs = trigger.serialize()
    assert MidjourneyTaskTrigger(**deserialize(serialize(kwargs))).serialize() == (classpath, kwargs)


def test_event_reader_keeps_fatal_errors_fatal():
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(MidjourneyAuthError) as err:
        task_from_event({"status": "error", "mj_task_id": "1", "task": None, "message": "bad key",
                         "error_type": "MidjourneyAuthError"})
    assert isinstance(err.value, AirflowFailException)
    with pytest.raises(MidjourneyError):
        task_from_event(None)
    with pytest.raises(MidjourneyError):
        task_from_event({"status": "error", "error_type": "KeyboardInterrupt", "message": "x"})


async def test_many_triggers_share_one_batch_poll(hook, mj_connection):
    ids = [submit(hook, f"a shared poll {i}") for i in range(5)]
    before = mj_connection.counters()["requests"]
    triggers = [MidjourneyTaskTrigger(mj_task_id=i, poll_interval=0.1, deadline=time.time() + 20) for i in ids]
    hooks = []
    for trigger in triggers:
        hooks.append(trigger._make_hook())
        trigger._make_hook = lambda hook=hooks[-1]: hook
    results = await asyncio.wait_for(asyncio.gather(*(run_trigger(t) for t in triggers)), timeout=30)
    after = mj_connection.counters()["requests"]
    # The shared poller keeps polling with the first trigger's hook after that trigger released
    # it; in a triggerer that keeps the connection's one session open, here it must be closed.
    for used in hooks:
        await used.aclose()

    assert [events[0].payload["status"] for events in results] == ["success"] * 5
    fetches = sum(n for route, n in after.items() if "fetch" in route) - sum(
        n for route, n in before.items() if "fetch" in route
    )
    assert fetches == 0  # no per-task polling: one list-by-condition call per interval for all


async def test_the_trigger_opens_no_session_per_poll(hook, mj_connection, monkeypatch):
    import aiohttp

    mj_connection.configure(job_seconds=1.0)
    created = []
    real_init = aiohttp.ClientSession.__init__

    def counting_init(self, *args, **kwargs):
        created.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", counting_init)
    mj_task_id = submit(hook, "a frugal trigger")
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05,
                                                     deadline=time.time() + 20))

    assert events[0].payload["status"] == "success"
    assert len(created) == 1  # ~20 polls, one HTTP session


# -- per-task polling (coalesce=False) ---------------------------------------------------------


async def test_per_task_mode_polls_its_own_task_with_fetch(hook, mj_connection):
    mj_task_id = submit(hook, "a trigger polling alone")
    before = mj_connection.counters()["requests"]
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05,
                                                     deadline=time.time() + 20, coalesce=False))
    after = mj_connection.counters()["requests"]

    payload = events[0].payload
    assert payload["status"] == "success" and task_from_event(payload).id == mj_task_id
    assert after.get("task/fetch", 0) - before.get("task/fetch", 0) >= 2
    assert after.get("task/list-by-condition", 0) == before.get("task/list-by-condition", 0)


async def test_per_task_mode_reports_failure_and_progress(hook, mj_connection, capfd):
    mj_connection.configure(job_seconds=2.0)  # each progress value lasts 0.5 s: polls see them all
    ok = submit(hook, "a per-task progress trigger")
    failing = submit(hook, "an emulator-fail per-task trigger")
    ok_events, failed_events = await asyncio.gather(
        run_trigger(MidjourneyTaskTrigger(mj_task_id=ok, poll_interval=0.05, deadline=time.time() + 20,
                                          coalesce=False, progress_log_interval=0)),
        run_trigger(MidjourneyTaskTrigger(mj_task_id=failing, poll_interval=0.05, deadline=time.time() + 20,
                                          coalesce=False)),
    )

    assert ok_events[0].payload["status"] == "success"
    _assert_every_change_from_the_first_is_logged(capfd.readouterr().out, ok)
    with pytest.raises(MidjourneyTaskFailedError):
        task_from_event(failed_events[0].payload)


async def test_per_task_mode_deadline_yields_a_timeout_event(hook, mj_connection):
    mj_connection.configure(job_seconds=30)
    mj_task_id = submit(hook, "a per-task trigger that waits too long")
    started = time.monotonic()
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.1,
                                                     deadline=time.time() + 0.5, coalesce=False))

    assert time.monotonic() - started < 3
    payload = events[0].payload
    assert payload["status"] == "timeout" and payload["task"] is not None


async def test_per_task_mode_retries_transient_errors(hook, mj_connection):
    mj_connection.configure(job_seconds=1.0)
    mj_task_id = submit(hook, "a per-task trigger under server errors")
    mj_connection.configure(faults={"server_error": 0.5, "seed": 3})
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05,
                                                     deadline=time.time() + 30, coalesce=False), limit=40)

    assert events[0].payload["status"] == "success"
    assert mj_connection.counters()["faults"].get("server_error", 0) > 0


async def test_per_task_mode_unknown_task_is_an_error_event(hook):
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id="1999999999999999", poll_interval=0.05,
                                                     deadline=time.time() + 10, coalesce=False))
    assert events[0].payload["error_type"] == "MidjourneyNotFoundError"


async def test_per_task_mode_shares_one_session_and_reads_the_connection_once_per_trigger(hook, mj_connection, monkeypatch):
    import aiohttp

    mj_connection.configure(job_seconds=1.0)
    sessions = []
    real_init = aiohttp.ClientSession.__init__

    def counting_init(self, *args, **kwargs):
        sessions.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", counting_init)
    lookups = record_connection_reads(monkeypatch)
    ids = [submit(hook, f"a frugal per-task trigger {i}") for i in range(4)]
    results = await asyncio.gather(*(
        run_trigger(MidjourneyTaskTrigger(mj_task_id=i, poll_interval=0.05, deadline=time.time() + 20,
                                          coalesce=False))
        for i in ids
    ))

    assert [events[0].payload["status"] for events in results] == ["success"] * 4
    assert len(sessions) == 1  # 4 triggers x ~20 polls, one HTTP session
    # The connection is read once per trigger (so a rotated key reaches the next trigger), never per poll.
    assert len(lookups) == len(ids)


def test_coalesce_is_serialized_and_defaults_to_true():
    assert MidjourneyTaskTrigger(mj_task_id="1320098173412546").serialize()[1]["coalesce"] is True
    classpath, kwargs = MidjourneyTaskTrigger(mj_task_id="1320098173412546", coalesce=False).serialize()
    assert kwargs["coalesce"] is False
    assert MidjourneyTaskTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_progress_log_interval_is_serialized_and_old_kwargs_still_load():
    classpath, kwargs = MidjourneyTaskTrigger(mj_task_id="1320098173412546", progress_log_interval=30).serialize()
    assert kwargs["progress_log_interval"] == 30.0
    assert MidjourneyTaskTrigger(**kwargs).serialize() == (classpath, kwargs)
    older = {k: v for k, v in kwargs.items() if k != "progress_log_interval"}  # a trigger deferred before
    assert MidjourneyTaskTrigger(**older).progress_log_interval is None


CALM_SEQUENCE = ["SUBMITTED 0%", "IN_PROGRESS 25%", "IN_PROGRESS 50%", "IN_PROGRESS 75%", "SUCCESS 100%"]


def _assert_every_change_from_the_first_is_logged(out: str, mj_task_id: str) -> None:
    """With progress_log_interval=0 every reading that changed is a line: in order, never
    repeated, progress values within IN_PROGRESS included, the final line last. (Which values
    a poll sees depends on when it runs, which a loaded machine may delay: not asserted.)"""
    lines = progress_lines(out, mj_task_id)
    assert lines == [line for line in CALM_SEQUENCE if line in lines], lines
    assert lines[-1] == "SUCCESS 100%"
    assert sum(line.startswith("IN_PROGRESS") for line in lines) >= 2, lines


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per-task"])
async def test_a_chatty_relay_logs_the_first_line_status_changes_and_the_final_line(hook, mj_connection, capfd,
                                                                                     coalesce):
    # Progress moves on every read; with progress lines at most every 60 s, what remains is
    # exactly the lines that must never be dropped.
    mj_connection.configure(chatty=True, job_seconds=1.5)
    mj_task_id = submit(hook, "a chatty trigger")
    capfd.readouterr()
    events = await run_trigger(MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.02,
                                                     deadline=time.time() + 20, coalesce=coalesce,
                                                     progress_log_interval=60))
    assert events[0].payload["status"] == "success"
    lines = progress_lines(capfd.readouterr().out, mj_task_id)
    assert len(lines) == 2, lines
    assert lines[0].startswith("IN_PROGRESS ") and lines[0].endswith("%")  # the first reading
    assert lines[1] == "SUCCESS 100%"  # the final line


async def test_a_status_change_is_logged_even_right_after_a_progress_line(hook, mj_connection, capfd):
    mj_connection.configure(job_seconds=1.0)
    ok, failing = submit(hook, "a status trigger"), submit(hook, "an emulator-fail status trigger")
    capfd.readouterr()
    await asyncio.gather(*(run_trigger(MidjourneyTaskTrigger(mj_task_id=i, poll_interval=0.02,
                                                             deadline=time.time() + 20, progress_log_interval=60))
                           for i in (ok, failing)))
    out = capfd.readouterr().out
    # The calm emulator goes SUBMITTED, IN_PROGRESS 25%, 50%, 75%, SUCCESS within a second: each
    # status is logged once (the first progress value of IN_PROGRESS), the later progress is not.
    ok_lines = progress_lines(out, ok)
    statuses = [line.split()[0] for line in ok_lines]
    assert statuses == [s for s in ("SUBMITTED", "IN_PROGRESS", "SUCCESS") if s in statuses], ok_lines
    assert "IN_PROGRESS" in statuses and ok_lines[-1] == "SUCCESS 100%"
    # A fail word fails right after SUBMITTED: the FAILURE line is there, each status once.
    failing_lines = progress_lines(out, failing)
    assert failing_lines[-1] == "FAILURE" and len(failing_lines) == len({x.split()[0] for x in failing_lines})
