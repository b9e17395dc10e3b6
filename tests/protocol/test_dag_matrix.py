"""Real DAGs (``dag.test()``) against the independent relay: blocking and deferrable, quirk by quirk."""

from __future__ import annotations

import pytest

from airflow_provider_mj.operators import (
    MidjourneyActionOperator,
    MidjourneyDescribeOperator,
    MidjourneyImagineOperator,
    MidjourneyShortenOperator,
)
from airflow_provider_mj.sensors import MidjourneyTaskSensor
from tests.helpers import make_dag, png_bytes, record_inline_triggers, task_instances, unique_dag_id, xcom_value
from tests.protocol.conftest import DAG_CASES

FAST = {"poll_interval": 0.1, "timeout": 60}


def states(dag_run) -> dict:
    return {key: ti.state for key, ti in task_instances(dag_run).items()}


@pytest.mark.parametrize(("relay_profile", "deferrable"), DAG_CASES, indirect=["relay_profile"],
                         ids=[f"{p}-{'deferred' if d else 'blocking'}" for p, d in DAG_CASES])
def test_full_dag(request, relay, run_dag, monkeypatch, deferrable):
    from airflow.sdk import XComArg

    triggers = record_inline_triggers(monkeypatch)
    kw = {"deferrable": deferrable, **FAST}
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a harbour at dawn --ar 3:2", **kw)
        upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U2", **kw)
        describe = MidjourneyDescribeOperator(
            task_id="describe", link="{{ ti.xcom_pull(task_ids='upscale')['imageUrl'] }}", **kw)
        shorten = MidjourneyShortenOperator(
            task_id="shorten", prompt="{{ ti.xcom_pull(task_ids='describe')['prompts'][0] }}", **kw)
        zoom = MidjourneyActionOperator(task_id="zoom", mj_task_id=upscale.output, button="Custom Zoom",
                                        modal_prompt="a harbour at dawn --zoom 2", **kw)
        vary = MidjourneyActionOperator(task_id="vary", mj_task_id=upscale.output, button="Vary (Region)",
                                        mask=png_bytes(color=(255, 255, 255)), modal_prompt="a harbour with a ship",
                                        **kw)
        favorite = MidjourneyActionOperator(task_id="favorite", mj_task_id=upscale.output, button="Favorite", **kw)
        mapped = MidjourneyActionOperator.partial(
            task_id="each", mj_task_id=imagine.output["mj_task_id"], **kw
        ).expand(button=["U1", "U2", "U3", "U4"])
        later = MidjourneyImagineOperator(task_id="later", prompt="a sensor target", wait_for_completion=False)
        sensor = MidjourneyTaskSensor(task_id="sensor", mj_task_id=XComArg(later), poke_interval=0.1, timeout=60,
                                      **({"deferrable": True} if deferrable else {"mode": "poke"}))
        imagine >> upscale >> describe >> shorten
        upscale >> [zoom, vary, favorite]
        imagine >> mapped
        imagine >> later >> sensor
    dr = run_dag(dag)

    got = states(dr)
    assert all(state == "success" for state in got.values()), got
    assert len(got) == 13

    grid = xcom_value(dr, "imagine")
    grid_id = xcom_value(dr, "imagine", key="mj_task_id")
    assert isinstance(grid_id, str) and str(grid["id"]) == grid_id and grid["status"] == "SUCCESS"
    custom_ids = xcom_value(dr, "imagine", key="custom_ids")
    assert {"U1", "U2", "U3", "U4", "V1", "reroll"} <= set(custom_ids)
    assert custom_ids["U2"].startswith("MJ::JOB::upsample::2::")

    upscaled = xcom_value(dr, "upscale")
    assert upscaled["action"] == "UPSCALE" and str(upscaled["id"]) == xcom_value(dr, "upscale", key="mj_task_id")
    assert {"Vary (Region)", "Custom Zoom", "Favorite", "Pan Left"} <= set(xcom_value(dr, "upscale", key="custom_ids"))

    described = xcom_value(dr, "describe")
    assert described["action"] == "DESCRIBE" and described["imageUrl"] == upscaled["imageUrl"]
    assert described["prompts"] == [f"a described picture number {n}, soft light --ar 5:4" for n in range(1, 5)]
    shortened = xcom_value(dr, "shorten")
    assert shortened["prompt"] == described["prompts"][0]
    assert shortened["prompts"] == [f"short prompt {n}" for n in range(1, 6)]

    zoomed = xcom_value(dr, "zoom")
    assert zoomed["action"] == "ZOOM" and zoomed["prompt"] == "a harbour at dawn --zoom 2"
    assert xcom_value(dr, "vary")["action"] == "INPAINT"
    assert xcom_value(dr, "favorite") is None

    each = [xcom_value(dr, "each", map_index=i) for i in range(4)]
    assert all(t["action"] == "UPSCALE" and t["status"] == "SUCCESS" for t in each)
    assert len({str(t["id"]) for t in each} | {str(upscaled["id"])}) == 5
    assert xcom_value(dr, "sensor")["id"] == xcom_value(dr, "later") or \
        str(xcom_value(dr, "sensor")["id"]) == xcom_value(dr, "later")
    assert "U1" in xcom_value(dr, "sensor", key="custom_ids")

    counters = relay.counters()
    # Exactly one submit per job, whatever the quirks: no duplicate submit anywhere.
    assert counters["submits"] == {"imagine": 2, "action": 7, "describe": 1, "shorten": 1, "modal": 2,
                                   "bookmark": 1}
    if deferrable:  # every submit that waits defers; the sensor only if its first poke saw it running
        # One more for a modal submit refused and retried: the retry re-attaches to the MODAL task
        # while the relay does not show it yet, so its trigger ends on MODAL and the input is sent.
        room_waits = triggers.count("MidjourneyRoomTrigger")
        assert 10 <= triggers.count("MidjourneyTaskTrigger") <= 11 + room_waits
        assert set(triggers) <= {"MidjourneyTaskTrigger", "MidjourneyRoomTrigger"}
        # A submit the relay refused (429, 503) waits for room on the triggerer: never more room
        # waits than refusals, and none at all from a relay that refused nothing.
        refused = counters["refused"].get("429", 0) + counters["refused"].get("503", 0)
        assert triggers.count("MidjourneyRoomTrigger") <= refused
    else:
        assert triggers == []
