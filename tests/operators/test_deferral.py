"""Deferral done right: Airflow's execution_timeout holds while deferred, no worker sleeps for the
triggerer, and a deferral logs no error. Real DAG runs (``dag.test()``) against the emulator."""

from __future__ import annotations

import pytest

from airflow_provider_mj.operators import MidjourneyImagineOperator
from tests.helpers import make_dag, task_instances, unique_dag_id

FAST = {"poll_interval": 0.1}


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_a_run_logs_no_error_when_nothing_went_wrong(request, mj_connection, run_dag, capfd, deferrable):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a quiet harbour", deferrable=deferrable, **FAST)
    dr = run_dag(dag)
    out = capfd.readouterr()
    logs = out.out + out.err
    assert {k: ti.state for k, ti in task_instances(dr).items()} == {"imagine": "success"}
    assert "Submitted Midjourney imagine job" in logs, "the task's log lines must be captured here"
    assert "XCom not found" not in logs
    assert [line for line in logs.splitlines() if "[error" in line or " ERROR " in line] == []


def test_a_deferred_sensor_logs_no_error_when_nothing_went_wrong(request, mj_connection, run_dag, capfd):
    from airflow_provider_mj.sensors import MidjourneyTaskSensor

    with make_dag(unique_dag_id(request)) as dag:
        submit = MidjourneyImagineOperator(task_id="submit", prompt="a quiet harbour", wait_for_completion=False)
        submit >> MidjourneyTaskSensor(task_id="wait", mj_task_id=submit.output, deferrable=True,
                                       poke_interval=0.1)
    dr = run_dag(dag)
    out = capfd.readouterr()
    logs = out.out + out.err
    assert {k: ti.state for k, ti in task_instances(dr).items()} == {"submit": "success", "wait": "success"}
    assert "Pausing task as DEFERRED" in logs, "the sensor must have deferred for this test to mean anything"
    assert "XCom not found" not in logs
