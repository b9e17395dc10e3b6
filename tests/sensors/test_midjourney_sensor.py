"""MidjourneyTaskSensor in poke, reschedule and deferrable modes, as real DAGs against the emulator."""

from __future__ import annotations

import pytest

from airflow_provider_mj.operators import MidjourneyImagineOperator
from airflow_provider_mj.sensors import MidjourneyTaskSensor
from tests.helpers import make_dag, record_inline_triggers, task_instances, unique_dag_id, xcom_value

MODES = pytest.mark.parametrize(
    "mode_kwargs",
    [{"mode": "poke"}, {"mode": "reschedule"}, {"deferrable": True}],
    ids=["poke", "reschedule", "deferrable"],
)


@MODES
def test_sensor_returns_the_finished_task(request, mj_connection, run_dag, monkeypatch, mode_kwargs):
    from airflow.sdk import XComArg

    triggers = record_inline_triggers(monkeypatch)
    mj_connection.configure(job_seconds=1.0)  # still running at the first poke

    with make_dag(unique_dag_id(request)) as dag:
        submit = MidjourneyImagineOperator(task_id="submit", prompt="a waiting game", wait_for_completion=False)
        MidjourneyTaskSensor(task_id="wait", mj_task_id=XComArg(submit), poke_interval=0.1, timeout=30,
                             **mode_kwargs)
    dr = run_dag(dag)

    assert task_instances(dr)["wait"].state == "success"
    task = xcom_value(dr, "wait")
    assert task["id"] == xcom_value(dr, "submit") and task["status"] == "SUCCESS"
    assert "U1" in xcom_value(dr, "wait", key="custom_ids")
    assert xcom_value(dr, "wait", key="mj_image_url") == task["imageUrl"]
    assert triggers == (["MidjourneyTaskTrigger"] if mode_kwargs.get("deferrable") else [])
    if mode_kwargs.get("mode") == "reschedule":
        assert _reschedules(dr, "wait") >= 1


def _reschedules(dag_run, task_id: str) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    ti = task_instances(dag_run)[task_id]
    with create_session() as session:
        return session.query(TaskReschedule).filter(TaskReschedule.ti_id == ti.id).count()


def test_sensor_accepts_an_upstream_task_dict(request, mj_connection, run_dag):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="already done", poll_interval=0.1)
        MidjourneyTaskSensor(task_id="wait", mj_task_id=imagine.output, poke_interval=0.1, timeout=30)
    dr = run_dag(dag)

    assert xcom_value(dr, "wait")["id"] == xcom_value(dr, "imagine")["id"]


@MODES
def test_sensor_fails_when_the_job_fails(request, mj_connection, run_dag, capfd, mode_kwargs):
    from airflow.sdk import XComArg

    with make_dag(unique_dag_id(request)) as dag:
        submit = MidjourneyImagineOperator(task_id="submit", prompt="emulator-fail please",
                                           wait_for_completion=False)
        MidjourneyTaskSensor(task_id="wait", mj_task_id=XComArg(submit), poke_interval=0.1, timeout=30,
                             retries=2, **mode_kwargs)
    dr = run_dag(dag)

    ti = task_instances(dr)["wait"]
    assert ti.state == "failed" and ti.try_number == 1
    assert "MidjourneyTaskFailedError" in capfd.readouterr().out


@pytest.mark.parametrize("mode_kwargs", [{"mode": "poke"}, {"deferrable": True}], ids=["poke", "deferrable"])
def test_sensor_times_out(request, mj_connection, run_dag, capfd, mode_kwargs):
    from airflow.sdk import XComArg

    mj_connection.configure(job_seconds=30)
    with make_dag(unique_dag_id(request)) as dag:
        submit = MidjourneyImagineOperator(task_id="submit", prompt="a slow one", wait_for_completion=False)
        MidjourneyTaskSensor(task_id="wait", mj_task_id=XComArg(submit), poke_interval=0.1, timeout=0.6,
                             **mode_kwargs)
    dr = run_dag(dag)

    assert task_instances(dr)["wait"].state == "failed"
    assert "AirflowSensorTimeout" in capfd.readouterr().out
