"""A submit answered "accepted" that names no task: an uncertain failure, never retried, never success."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_mj.exceptions import MidjourneySubmitUncertainError
from airflow_provider_mj.operators import MidjourneyImagineOperator
from tests.helpers import connection_json, make_dag, task_instances, unique_dag_id, xcom_value
from tests.hooks.conftest import SECRET_KEY
from tests.protocol.misbehaving import TASK_ID, canned, make_hook  # noqa: F401 - fixtures

NO_ID_REPLIES = [
    {"code": 1, "description": "Submit success", "result": None},
    {"code": 1, "description": "Submit success", "result": ""},
    {"code": 1, "description": "Submit success"},
    {"code": 22, "description": "In queue", "result": None, "properties": {"numberOfQueues": 2}},
    {"code": 21, "description": "Waiting for window confirm", "result": None},
    {"code": 1, "description": "Submit success", "result": {"id": TASK_ID}},  # not an id at all
]


@pytest.fixture
def server(canned, make_hook):  # noqa: F811 - fixtures
    srv = canned()
    srv.hook = make_hook(srv.base_url, SECRET_KEY, max_retries=3)
    return srv


@pytest.mark.parametrize("reply", NO_ID_REPLIES, ids=lambda r: f"code{r['code']}-{r.get('result', 'missing')!r}")
def test_an_accepted_submit_without_task_id_is_uncertain_and_sent_once(server, reply):
    server.reply(200, reply)
    with pytest.raises(MidjourneySubmitUncertainError) as info:
        server.hook.imagine("a red fox")
    assert "named no task id" in str(info.value) and "may have been accepted" in str(info.value)
    assert [r["path"] for r in server.requests] == ["/mj/submit/imagine"]


def test_a_button_that_creates_no_task_may_answer_without_id(server):
    server.reply(200, {"code": 1, "description": "Success", "result": None})
    result = server.hook.action(TASK_ID, "MJ::BOOKMARK::26d56b92-4ed6-45e2-8561-563797923135")
    assert result.code == 1 and result.mj_task_id is None
    with pytest.raises(MidjourneySubmitUncertainError):  # an upscale must name its new task
        server.hook.action(TASK_ID, "MJ::JOB::upsample::1::26d56b92-4ed6-45e2-8561-563797923135")


def test_imagine_operator_fails_at_once_and_pushes_no_task_id(request, canned, run_dag, monkeypatch):  # noqa: F811
    server = canned().reply(200, {"code": 1, "description": "Submit success", "result": None})
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(server.base_url, SECRET_KEY))
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a red fox", retries=2, retry_delay=timedelta(0),
                                  poll_interval=0.05)
    dr = run_dag(dag)
    ti = task_instances(dr)["imagine"]
    assert ti.state == "failed" and ti.try_number == 1  # fatal: Airflow's retries would pay again
    assert xcom_value(dr, "imagine", key="mj_task_id") is None
    assert [r["path"] for r in server.requests] == ["/mj/submit/imagine"]
