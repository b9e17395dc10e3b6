"""A relay that sends ``imageUrl`` relative to its origin (``/mj/image/<id>``): read as an absolute URL."""

from __future__ import annotations

import time

import pytest

from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.operators import (
    MidjourneyActionOperator,
    MidjourneyDescribeOperator,
    MidjourneyImagineOperator,
)
from tests.helpers import connection_json, make_dag, task_instances, unique_dag_id, xcom_value
from tests.protocol.relay_server import Quirks, start_relay

KEY = "sk-relative-images"


@pytest.fixture(params=["", "/gateway"], ids=["origin", "mounted"])
def relay(request, monkeypatch):
    quirks = Quirks(dialect="relay", auth_style="bearer", api_key=KEY, relative_image_urls=True,
                    mount=request.param, job_seconds=0.3)
    with start_relay(quirks) as running:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(running.base_url, KEY))
        yield running


def finished(hook: MidjourneyHook, prompt: str = "a lighthouse"):
    return hook.wait_for_task(hook.imagine(prompt).mj_task_id, poll_interval=0.05, deadline=time.time() + 30)


def test_fetch_list_and_async_reads_give_an_absolute_image_url(relay, tmp_path):
    hook = MidjourneyHook()
    task = finished(hook)
    want = f"{relay.base_url}/mj/image/{task.id}"  # /gateway/mj/image/<id> on the relay's origin
    assert task.image_url == want and task.to_dict()["imageUrl"] == want
    assert [t.image_url for t in hook.list_tasks([task.id])] == [want]
    path = hook.download_image(task, tmp_path / "grid.png")  # same origin: sent with the key
    assert open(path, "rb").read().startswith(b"\x89PNG")
    assert relay.counters()["auth_failures"] == 0


async def test_the_trigger_path_reads_it_absolute_too(relay):
    task_id = finished(MidjourneyHook()).id
    async with MidjourneyHook() as hook:
        fetched = await hook.afetch_task(task_id)
        (listed,) = await hook.alist_tasks([task_id])
    assert fetched.image_url == listed.image_url == f"{relay.base_url}/mj/image/{task_id}"


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_an_upscale_chains_into_describe_by_its_image_url(request, relay, run_dag, deferrable):
    fast = {"poll_interval": 0.05, "deferrable": deferrable}
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a lighthouse at dusk", **fast)
        upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U1", **fast)
        describe = MidjourneyDescribeOperator(task_id="describe",
                                              link="{{ ti.xcom_pull(task_ids='upscale')['imageUrl'] }}", **fast)
        upscale >> describe
    dr = run_dag(dag)

    assert {k: ti.state for k, ti in task_instances(dr).items()} == {
        "imagine": "success", "upscale": "success", "describe": "success"}
    upscaled = xcom_value(dr, "upscale")
    assert upscaled["imageUrl"] == f"{relay.base_url}/mj/image/{upscaled['id']}"
    assert xcom_value(dr, "upscale", key="mj_image_url") == upscaled["imageUrl"]
    assert xcom_value(dr, "describe")["imageUrl"] == upscaled["imageUrl"]
