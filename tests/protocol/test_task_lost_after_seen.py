"""A task the server reported running and then "does not know": lost after a short confirmation.

The "not visible yet" grace (60 s) is for a job never seen. A job already read IN_PROGRESS that
then answers "no such task" fails after ``LOST_AFTER_MISSES`` answers in a row, with a message
that says what was last seen, on the blocking path, in the trigger (both modes) and in DAG runs.
What shows that the grace was not waited out is the server's count of "no such task" answers
(a handful, where 60 s of polling every 50 ms would be hundreds), not a clock.
"""

from __future__ import annotations

import time

import pytest

from airflow_provider_mj.exceptions import MidjourneyTaskLostError
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.operators import MidjourneyImagineOperator
from airflow_provider_mj.triggers import MidjourneyTaskTrigger
from airflow_provider_mj.visibility import LOST_AFTER_MISSES, NOT_VISIBLE_GRACE_SECONDS, visible_by
from tests.helpers import connection_json, make_dag, task_instances, unique_dag_id
from tests.protocol.relay_server import Quirks, start_relay

POLL = 0.05
#: "No such task" answers a wait may cost: per miss a batch call and a fetch (coalesced), a little slack.
MAX_ANSWERS = 2 * LOST_AFTER_MISSES + 2


@pytest.fixture(params=["relay", "proxy"])
def losing(request, monkeypatch):
    """A server that loses each job after showing it IN_PROGRESS for two reads."""
    quirks = Quirks(dialect=request.param, proxy_unknown="204", vanish_after=2, job_seconds=4.0)
    with start_relay(quirks) as relay:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(relay.base_url))
        yield relay


def vanished_answers(relay) -> int:
    return relay.counters()["refused"].get("vanished", 0)


def test_the_blocking_wait_reports_the_loss_without_waiting_out_the_grace(losing):
    hook = MidjourneyHook()
    mj_task_id = hook.imagine("a lighthouse that will be lost").mj_task_id
    with pytest.raises(MidjourneyTaskLostError) as info:
        hook.wait_for_task(mj_task_id, poll_interval=POLL, deadline=time.time() + 120, visible_by=visible_by())
    message = str(info.value)
    assert f"The server lost Midjourney task {mj_task_id} after reporting it IN_PROGRESS " in message
    assert info.value.last_status.startswith("IN_PROGRESS ") and info.value.last_status.endswith("%")
    assert vanished_answers(losing) == LOST_AFTER_MISSES


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per-task"])
async def test_the_trigger_reports_the_loss_as_an_error_event(losing, coalesce):
    mj_task_id = MidjourneyHook().imagine("a lighthouse that will be lost").mj_task_id
    trigger = MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=POLL, deadline=time.time() + 120,
                                    visible_by=time.time() + NOT_VISIBLE_GRACE_SECONDS, coalesce=coalesce)
    (event,) = [e async for e in trigger.run()]
    assert event.payload["status"] == "error" and event.payload["error_type"] == "MidjourneyTaskLostError"
    assert f"lost Midjourney task {mj_task_id} after reporting it IN_PROGRESS" in event.payload["message"]
    assert LOST_AFTER_MISSES <= vanished_answers(losing) <= MAX_ANSWERS


def test_a_task_missing_for_fewer_reads_than_the_confirmation_goes_on(monkeypatch):
    quirks = Quirks(vanish_after=2, vanish_for=LOST_AFTER_MISSES - 1, job_seconds=1.5)
    with start_relay(quirks) as relay:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(relay.base_url))
        hook = MidjourneyHook()
        task = hook.wait_for_task(hook.imagine("a lighthouse, briefly missing").mj_task_id, poll_interval=POLL,
                                  deadline=time.time() + 60)
        assert task.status.value == "SUCCESS" and vanished_answers(relay) == LOST_AFTER_MISSES - 1


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_an_imagine_task_fails_once_with_the_loss_and_is_not_retried(request, losing, run_dag, deferrable):
    from datetime import timedelta

    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a lighthouse that will be lost", poll_interval=POLL,
                                  deferrable=deferrable, retries=2, retry_delay=timedelta(0))
    dr = run_dag(dag)
    ti = task_instances(dr)["imagine"]
    assert ti.state == "failed" and ti.try_number == 1  # fatal: a retry would pay for a new job
    assert losing.counters()["submits"] == {"imagine": 1}
    assert LOST_AFTER_MISSES <= vanished_answers(losing) <= MAX_ANSWERS


def test_a_poking_sensor_reports_the_loss(request, losing, run_dag):
    from airflow_provider_mj.sensors import MidjourneyTaskSensor

    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a lighthouse that will be lost",
                                            wait_for_completion=False)
        MidjourneyTaskSensor(task_id="wait", mj_task_id=imagine.output, poke_interval=POLL, timeout=120)
    dr = run_dag(dag)
    states = {k: ti.state for k, ti in task_instances(dr).items()}
    assert states == {"imagine": "success", "wait": "failed"}
    assert LOST_AFTER_MISSES <= vanished_answers(losing) <= MAX_ANSWERS
