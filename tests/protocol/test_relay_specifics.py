"""Behaviours of one dialect or one quirk that need their own scenario."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from airflow_provider_mj.operators import MidjourneyActionOperator, MidjourneyImagineOperator
from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger
from tests.helpers import make_dag, task_instances, unique_dag_id, xcom_value

FAST = {"poll_interval": 0.1, "timeout": 30}


def states(dag_run) -> dict:
    return {key: ti.state for key, ti in task_instances(dag_run).items()}


# -- remix: proxies answer 21, relays rewrite it to 1 and leave the task in MODAL -----------------


@pytest.mark.parametrize(("relay_profile", "deferrable"),
                         [("proxy", False), ("relay", True), ("relay", False), ("all_quirks", True)],
                         indirect=["relay_profile"])
def test_remix_variation_completes_the_modal_in_both_dialects(request, relay, run_dag, deferrable):
    """PROTOCOL: "With remix on, variation, reroll and pan also answer 21"; "Relays rewrite ... 21 to 1
    except for inpaint and custom zoom": on a relay the answer is code 1 for a task in status MODAL."""
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a remix base", **FAST)
        remix = MidjourneyActionOperator(task_id="remix", mj_task_id=imagine.output, button="V3",
                                         enable_remix=True, modal_prompt="a remixed base, watercolor",
                                         deferrable=deferrable, **FAST)
        imagine >> remix
    dr = run_dag(dag)

    assert states(dr) == {"imagine": "success", "remix": "success"}
    remixed = xcom_value(dr, "remix")
    assert remixed["action"] == "VARIATION" and remixed["status"] == "SUCCESS"
    assert remixed["prompt"] == "a remixed base, watercolor"
    assert relay.counters()["submits"] == {"imagine": 1, "action": 1, "modal": 1}


@pytest.mark.parametrize("relay_profile", ["proxy", "relay"], indirect=True)
def test_remix_without_modal_input_fails_fast_in_both_dialects(request, relay, run_dag):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a remix base", **FAST)
        remix = MidjourneyActionOperator(task_id="remix", mj_task_id=imagine.output, button="reroll",
                                         enable_remix=True, **FAST)
        imagine >> remix
    started = time.monotonic()
    dr = run_dag(dag)

    assert states(dr) == {"imagine": "success", "remix": "failed"}
    assert time.monotonic() - started < 20  # not a wait until the 30 s timeout
    assert relay.counters()["submits"] == {"imagine": 1, "action": 1}


# -- the modal submit refused, its MODAL task not visible yet ------------------------------------


@pytest.mark.parametrize(("relay_profile", "button", "deferrable"), [
    ("proxy_modal_refused", "Custom Zoom", False), ("proxy_modal_refused", "Custom Zoom", True),
    ("relay_modal_refused", "V3", False), ("relay_modal_refused", "V3", True),
], indirect=["relay_profile"])
def test_a_refused_modal_submit_is_sent_again_not_waited_on(request, relay, run_dag, button, deferrable):
    """A code 21 (or a relay's code 1 hiding it) is remembered, then the modal submit is refused (429).
    Waiting for room and trying again re-attaches to the remembered MODAL task, which the server does
    not show yet: the operator must still send the modal input, not wait on a task that waits for it
    (seen in CI: the task timed out "still MODAL 0%")."""
    with make_dag(unique_dag_id(request)) as dag:
        parent = MidjourneyImagineOperator(task_id="imagine", prompt="a base for a zoom", **FAST)
        if button == "Custom Zoom":  # a button of an upscaled image
            parent = parent >> MidjourneyActionOperator(task_id="upscale", mj_task_id=parent.output, button="U2",
                                                        **FAST)
        parent >> MidjourneyActionOperator(task_id="modal", mj_task_id=parent.output, button=button,
                                           enable_remix=button == "V3", modal_prompt="a wider view --zoom 2",
                                           deferrable=deferrable, **FAST)
    dr = run_dag(dag)

    assert set(states(dr).values()) == {"success"}, states(dr)
    finished = xcom_value(dr, "modal")
    assert finished["status"] == "SUCCESS" and finished["prompt"] == "a wider view --zoom 2"
    counters = relay.counters()
    assert counters["refused"] == {"429 modal": 1}
    # One job each; the modal was accepted once, after the one refusal.
    actions = 2 if button == "Custom Zoom" else 1
    assert counters["submits"] == {"imagine": 1, "action": actions, "modal": 1}


# -- a just-submitted job that reads as "not found" for a poll or two ---------------------------
# (the lead's "not found right after submit" grace period covers these: see the report)

LAGGING = pytest.mark.parametrize(
    "relay_profile", ["relay_not_found_after_submit", "proxy_not_found_after_submit"], indirect=True)


@LAGGING
def test_blocking_wait_survives_not_found_right_after_submit(relay):
    with MidjourneyHook() as hook:
        sub = hook.imagine("just submitted")
        task = hook.wait_for_task(sub.mj_task_id, poll_interval=0.05, deadline=time.time() + 10,
                                  visible_by=time.time() + 5)
    assert task.status.value == "SUCCESS"


@LAGGING
@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per_task"])
async def test_trigger_survives_not_found_right_after_submit(relay, coalesce):
    with MidjourneyHook() as hook:
        mj_task_id = hook.imagine("just submitted, deferred").mj_task_id
    trigger = MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05, deadline=time.time() + 10,
                                    coalesce=coalesce, visible_by=time.time() + 5)
    events = await asyncio.wait_for(_collect(trigger), 15)
    assert events[0].payload["status"] == "success", events[0].payload


async def _collect(trigger):
    return [event async for event in trigger.run()]


@pytest.mark.parametrize(("relay_profile", "deferrable"),
                         [("relay_not_found_after_submit", True), ("proxy_not_found_after_submit", False)],
                         indirect=["relay_profile"])
def test_dag_survives_not_found_right_after_submit(request, relay, run_dag, deferrable):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a lagging relay", deferrable=deferrable, **FAST)
        MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U1", deferrable=deferrable,
                                 **FAST)
    dr = run_dag(dag)
    assert states(dr) == {"imagine": "success", "upscale": "success"}
    assert relay.counters()["submits"] == {"imagine": 1, "action": 1}


@pytest.mark.parametrize(("relay_profile", "mode_kwargs"), [
    ("relay_not_found_after_submit", {"mode": "poke"}),
    ("proxy_not_found_after_submit", {"mode": "reschedule"}),
    ("relay_not_found_after_submit", {"deferrable": True}),
], indirect=["relay_profile"], ids=["poke-relay", "reschedule-proxy", "deferrable-relay"])
def test_sensor_survives_not_found_right_after_submit(request, relay, run_dag, mode_kwargs):
    """A sensor right behind a submit (wait_for_completion=False) reads a job the relay does not show yet."""
    from airflow.sdk import XComArg

    from airflow_provider_mj.sensors import MidjourneyTaskSensor

    with make_dag(unique_dag_id(request)) as dag:
        submit = MidjourneyImagineOperator(task_id="submit", prompt="a lagging sensor", wait_for_completion=False)
        MidjourneyTaskSensor(task_id="wait", mj_task_id=XComArg(submit), poke_interval=0.1, timeout=30,
                             **mode_kwargs)
    dr = run_dag(dag)
    assert states(dr) == {"submit": "success", "wait": "success"}
    assert xcom_value(dr, "wait")["status"] == "SUCCESS"


# -- outside PROTOCOL.md: novicezk's code 21 "task already exists" -----------------------------


@pytest.mark.parametrize("relay_profile", ["proxy_existed_21"], indirect=True)
@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_same_button_pressed_twice_reuses_the_existing_task(request, relay, run_dag, deferrable):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="pressed twice", **FAST)
        first = MidjourneyActionOperator(task_id="first", mj_task_id=imagine.output, button="U1", **FAST)
        again = MidjourneyActionOperator(task_id="again", mj_task_id=imagine.output, button="U1",
                                         deferrable=deferrable, **FAST)
        imagine >> first >> again
    dr = run_dag(dag)

    assert states(dr) == {"imagine": "success", "first": "success", "again": "success"}
    assert xcom_value(dr, "again")["id"] == xcom_value(dr, "first")["id"]
    assert relay.counters()["submits"] == {"imagine": 1, "action": 1, "existed": 1}


@pytest.mark.parametrize("relay_profile", ["proxy_existed_21"], indirect=True)
def test_hook_action_reads_code_21_task_exists_as_the_existing_job(relay):
    # Every caller of the hook gets this reading, not only the action operator.
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

    with MidjourneyHook() as hook:
        grid = hook.wait_for_task(hook.imagine("pressed twice").mj_task_id, poll_interval=0.05,
                                  deadline=time.time() + 15)
        first = hook.action(grid.id, "U1")
        again = hook.action(grid.id, "U1")
    assert not again.needs_modal
    assert again.mj_task_id == first.mj_task_id
