"""Exactly-once submission across Airflow retries, proven with real DAG runs (``dag.test()``).

How a dead worker is staged: when a worker dies (OOM kill, node lost, pod evicted) after the job
was accepted, Airflow marks the try failed (heartbeat timeout) and, retries permitting, starts
the next try from ``execute`` with nothing of the dead try's memory but what is durable: XComs of
the try are cleared, the ``task_state_store`` is kept. A try that raises a *retryable* error right
after the submit goes through exactly the same transition (try failed -> up_for_retry -> a new
try runs ``execute`` from the top), so the subclasses below raise one on the first try only, at
the moment a real worker would be lost: while waiting, or after the job finished but before the
result was stored. ``tests/operators/test_exactly_once.py`` covers a crash inside ``accepted``;
these cover the other moments, a failed job, a cleared task and Airflow without the store.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_mj.exceptions import MidjourneyConnectionError, MidjourneyTaskFailedError
from airflow_provider_mj.operators import MidjourneyImagineOperator
from tests.helpers import make_dag, task_instances, unique_dag_id, xcom_value


def _worker_lost(what: str) -> MidjourneyConnectionError:
    # A retryable error: Airflow retries it, as it retries a try whose worker vanished.
    return MidjourneyConnectionError(f"[staged] worker lost {what}")


class DiesWhileWaiting(MidjourneyImagineOperator):
    """First try: the job is accepted, then the worker is lost while the job still runs."""

    def execute(self, context):
        if context["ti"].try_number == 1:
            def lost(mj_task_id, **_):
                raise _worker_lost(f"while Midjourney task {mj_task_id} was running")

            self.hook.wait_for_task = lost
        try:
            return super().execute(context)
        finally:
            self.hook.__dict__.pop("wait_for_task", None)


class DiesAfterTheJobFinished(MidjourneyImagineOperator):
    """First try: the job finished (deferred on the triggerer), then the worker resuming it is lost."""

    def execute_complete(self, context, event=None):
        if context["ti"].try_number == 1:
            raise _worker_lost(f"after Midjourney task {event['mj_task_id']} finished")
        return super().execute_complete(context, event)


def _submits(emu) -> int:
    return emu.counters()["submits"]["imagine"]


_LAST_DAG: dict = {}


def _run_one(request, run_dag, operator_cls, **kwargs):
    with make_dag(unique_dag_id(request)) as dag:
        operator_cls(task_id="imagine", retries=2, retry_delay=timedelta(0), poll_interval=0.05, **kwargs)
    _LAST_DAG["dag"] = dag
    dr = run_dag(dag)
    return dr, task_instances(dr)["imagine"]


def test_worker_lost_while_the_job_runs_the_retry_reattaches_to_the_running_job(request, mj_connection, run_dag):
    mj_connection.configure(job_seconds=1.0)  # still running when the second try starts
    dr, ti = _run_one(request, run_dag, DiesWhileWaiting, prompt="a one-off print, running", deferrable=False)

    assert ti.state == "success" and ti.try_number == 2
    assert _submits(mj_connection) == 1
    counters = mj_connection.counters()
    assert counters["tasks"] == 1
    result = xcom_value(dr, "imagine")
    assert result["status"] == "SUCCESS" and str(xcom_value(dr, "imagine", key="mj_task_id")) == result["id"]


def test_worker_lost_after_the_job_finished_the_retry_reattaches_without_waiting(request, mj_connection, run_dag):
    dr, ti = _run_one(request, run_dag, DiesAfterTheJobFinished, prompt="a one-off print, finished",
                      deferrable=True)

    assert ti.state == "success" and ti.try_number == 2
    assert _submits(mj_connection) == 1
    assert xcom_value(dr, "imagine")["status"] == "SUCCESS"


def test_a_job_that_failed_is_submitted_again_on_retry(request, mj_connection, run_dag):
    # Every job accepted while job_failure is 1.0 ends in FAILURE. The first try's job is accepted
    # under that setting and the fault is then switched off; the worker is lost after the job
    # failed but before it could report it. The retry finds a FAILED job and pays for exactly one
    # new job, which succeeds. (A job that fails while a try watches it fails the task at once:
    # MidjourneyTaskFailedError is not retried.)
    emulator = mj_connection

    class FirstJobFails(MidjourneyImagineOperator):
        def accepted(self, context, mj_task_id):
            super().accepted(context, mj_task_id)
            emulator.configure(faults={"job_failure": 0.0})

        def execute(self, context):
            if context["ti"].try_number == 1:
                real_wait = self.hook.wait_for_task

                def lost_after_failure(mj_task_id, **kwargs):
                    with pytest.raises(MidjourneyTaskFailedError):
                        real_wait(mj_task_id, **kwargs)
                    raise _worker_lost(f"after Midjourney task {mj_task_id} failed, before reporting it")

                self.hook.wait_for_task = lost_after_failure
            try:
                return super().execute(context)
            finally:
                self.hook.__dict__.pop("wait_for_task", None)

    emulator.configure(faults={"job_failure": 1.0}, job_seconds=0.2)
    dr, ti = _run_one(request, run_dag, FirstJobFails, prompt="a one-off print, retried after a failure",
                      deferrable=False)

    assert ti.state == "success" and ti.try_number == 2
    counters = emulator.counters()
    assert counters["submits"]["imagine"] == 2 and counters["faults"]["job_failure"] == 1
    assert xcom_value(dr, "imagine")["status"] == "SUCCESS"


def test_clearing_a_finished_task_with_the_same_inputs_reattaches_instead_of_paying_again(
    request, mj_connection, run_dag
):
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    dr, ti = _run_one(request, run_dag, MidjourneyImagineOperator, prompt="a print, cleared and re-run",
                      deferrable=False)
    assert ti.state == "success" and _submits(mj_connection) == 1
    first_id = xcom_value(dr, "imagine")["id"]

    # "Clear" in the UI: the same task instance runs again, with the same rendered inputs. This is
    # what dag.test() does for a scheduled task instance, without creating a new DAG run.
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dr.dag_id, run_id=dr.run_id).all()
        clear_task_instances(tis, session)
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dr.dag_id, run_id=dr.run_id).one()
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        session.refresh(ti)
        session.expunge(ti)
    _run_task(ti=ti, task=_LAST_DAG["dag"].task_dict["imagine"])

    ti = task_instances(dr)["imagine"]
    assert ti.state == "success" and ti.try_number == 2
    assert _submits(mj_connection) == 1
    assert xcom_value(dr, "imagine")["id"] == first_id


def test_durable_false_opts_out_and_submits_on_every_try(request, mj_connection, run_dag):
    dr, ti = _run_one(request, run_dag, DiesWhileWaiting, prompt="a print, not durable", deferrable=False,
                      durable=False)

    assert ti.state == "success" and ti.try_number == 2
    assert _submits(mj_connection) == 2
