"""Exactly-once groundwork: a retry re-attaches to the job an earlier try submitted."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest

from airflow_provider_mj.operators import MidjourneyImagineOperator
from airflow_provider_mj.operators.midjourney import MidjourneyJobState
from tests.helpers import make_dag, task_instances, unique_dag_id, xcom_value


class CrashAfterSubmitImagine(MidjourneyImagineOperator):
    """Dies right after the job is accepted on its first try, like a worker lost mid-task."""

    def accepted(self, context, mj_task_id):
        super().accepted(context, mj_task_id)
        if context["ti"].try_number == 1:
            raise RuntimeError(f"worker lost right after submitting {mj_task_id}")


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_retry_reattaches_to_the_submitted_job_instead_of_submitting_again(
    request, mj_connection, run_dag, deferrable
):
    with make_dag(unique_dag_id(request)) as dag:
        CrashAfterSubmitImagine(task_id="imagine", prompt="a one-off print", retries=1,
                                retry_delay=timedelta(0), deferrable=deferrable, poll_interval=0.1)
    dr = run_dag(dag)

    ti = task_instances(dr)["imagine"]
    assert ti.state == "success" and ti.try_number == 2
    assert mj_connection.counters()["submits"]["imagine"] == 1
    assert xcom_value(dr, "imagine")["id"] == xcom_value(dr, "imagine", key="mj_task_id")


class FakeStore:
    def __init__(self, value=None):
        self.data = {} if value is None else {MidjourneyJobState.KEY: value}

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, key, value, **_):
        self.data[key] = value


@pytest.fixture
def hook(mj_connection):
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

    return MidjourneyHook(midjourney_conn_id="midjourney_default")


def _state(store, caplog=None):
    return MidjourneyJobState({"task_state_store": store}, logging.getLogger("test"))


def test_a_running_job_is_reattached(hook, mj_connection):
    mj_connection.configure(job_seconds=30)
    job = hook.imagine("a running job")
    state = _state(FakeStore())
    state.remember(job.mj_task_id, "req")
    task = state.recall(hook, "req")
    assert task is not None and task.id == job.mj_task_id


def test_a_succeeded_job_is_reattached(hook):
    job = hook.imagine("a finished job")
    hook.wait_for_task(job.mj_task_id, poll_interval=0.1, deadline=time.time() + 10)
    task = _state(FakeStore({"mj_task_id": job.mj_task_id, "request": "req"})).recall(hook, "req")
    assert task is not None and task.status.value == "SUCCESS"


def test_a_failed_job_is_submitted_again(hook):
    from airflow_provider_mj.exceptions import MidjourneyTaskFailedError

    job = hook.imagine("an emulator-fail job")
    with pytest.raises(MidjourneyTaskFailedError):
        hook.wait_for_task(job.mj_task_id, poll_interval=0.1, deadline=time.time() + 10)
    assert _state(FakeStore({"mj_task_id": job.mj_task_id, "request": "req"})).recall(hook, "req") is None


def test_a_job_the_server_forgot_is_submitted_again(hook):
    assert _state(FakeStore({"mj_task_id": "1999999999999999", "request": "req"})).recall(hook, "req") is None


def test_a_job_submitted_with_other_inputs_is_not_reattached(hook):
    job = hook.imagine("yesterday's prompt")
    assert _state(FakeStore({"mj_task_id": job.mj_task_id, "request": "old"})).recall(hook, "new") is None
