"""Where the docs and the code once disagreed: list order, and the blend's upper bound (``dag.test()``)."""

from __future__ import annotations

import pytest

from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from airflow_provider_mj.operators import MidjourneyBlendOperator, MidjourneyListTasksOperator
from tests.helpers import connection_json, make_dag, png_data_url, task_instances, unique_dag_id, xcom_value
from tests.protocol.relay_server import Quirks, start_relay


def test_list_tasks_returns_the_tasks_in_the_order_asked_for(request, run_dag, monkeypatch):
    # The relay answers list-by-condition in reverse order; the docs promise the caller's order.
    with start_relay(Quirks(list_shuffle=True, job_seconds=0.2)) as relay:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(relay.base_url))
        with MidjourneyHook() as hook:
            ids = [hook.imagine(f"order {n}").mj_task_id for n in range(3)]
        with make_dag(unique_dag_id(request)) as dag:
            MidjourneyListTasksOperator(task_id="list", mj_task_ids=ids)
        dr = run_dag(dag)
        assert relay.counters()["requests"].get("task/list-by-condition", 0) >= 1
    assert [task["id"] for task in xcom_value(dr, "list")] == ids


@pytest.mark.parametrize("count", [1, 6])
def test_blend_outside_two_to_five_images_fails_before_any_request(request, mj_connection, run_dag, count):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyBlendOperator(task_id="blend", images=[png_data_url()] * count, retries=2)
    dr = run_dag(dag)

    ti = task_instances(dr)["blend"]
    assert ti.state == "failed" and ti.try_number == 1
    assert sum(mj_connection.counters()["requests"].values()) == 0
