"""Deferral done right: Airflow's execution_timeout holds while deferred, no worker sleeps for the
triggerer, and a deferral logs no error. Real DAG runs (``dag.test()``) against the emulator."""

from __future__ import annotations

import time
from datetime import timedelta

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

    mj_connection.configure(job_seconds=6.0)  # still running at the sensor's first poke, even under load
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


def _record_deferrals(monkeypatch) -> list:
    """The DeferTask messages the task runner sends (what the API server stores as the TI's
    trigger_timeout, which the scheduler enforces; ``dag.test()`` itself runs triggers to the end)."""
    from airflow.sdk.execution_time import supervisor
    from airflow.sdk.execution_time.comms import DeferTask

    sent: list = []
    real = supervisor.run_task_in_process

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        if isinstance(result.msg, DeferTask):
            sent.append(result.msg)
        return result

    monkeypatch.setattr(supervisor, "run_task_in_process", recording)
    return sent


@pytest.mark.parametrize("execution_timeout", [timedelta(minutes=10), None], ids=["set", "unset"])
def test_execution_timeout_holds_while_deferred(request, mj_connection, run_dag, monkeypatch, execution_timeout):
    from airflow_provider_mj.sensors import MidjourneyTaskSensor

    deferrals = _record_deferrals(monkeypatch)
    mj_connection.configure(job_seconds=6.0)  # long enough for the sensor's first poke to see it running
    with make_dag(unique_dag_id(request)) as dag:
        submit = MidjourneyImagineOperator(task_id="imagine", prompt="a quiet harbour", deferrable=True,
                                           timeout=3600, execution_timeout=execution_timeout, **FAST)
        again = MidjourneyImagineOperator(task_id="again", prompt="a loud harbour", wait_for_completion=False)
        submit >> again >> MidjourneyTaskSensor(task_id="wait", mj_task_id=again.output, deferrable=True,
                                                poke_interval=0.1, timeout=3600,
                                                execution_timeout=execution_timeout)
    dr = run_dag(dag)

    assert {k: ti.state for k, ti in task_instances(dr).items()} == {
        "imagine": "success", "again": "success", "wait": "success"}
    assert len(deferrals) == 2  # the operator and the sensor
    for msg in deferrals:
        if execution_timeout is None:
            assert msg.trigger_timeout is None
        else:
            # What is left of the try's execution_timeout when it deferred.
            assert timedelta(minutes=9) < msg.trigger_timeout <= execution_timeout
        # The job's own timeout stays the trigger's deadline, alongside.
        assert 3500 < msg.trigger_kwargs["deadline"] - time.time() <= 3600


def _record_modal_probes(monkeypatch) -> list:
    """Calls of the worker-side MODAL probe (it sleeps between its reads)."""
    from airflow_provider_mj import code21

    calls: list = []
    real = code21.waits_in_modal

    def recording(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else kwargs.get("mj_task_id"))
        return real(*args, **kwargs)

    monkeypatch.setattr(code21, "waits_in_modal", recording)
    return calls


def _remix_dag(request, **vary_kwargs):
    """An imagine, then a remixed V3 of it (``vary``): on a relay, a code 1 that hides a MODAL task."""
    from airflow_provider_mj.operators import MidjourneyActionOperator

    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a harbour", **FAST)
        imagine >> MidjourneyActionOperator(task_id="vary", mj_task_id=imagine.output, button="V3", enable_remix=True,
                                            **FAST, **vary_kwargs)
    return dag


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_a_modal_hidden_by_a_relay_is_found_by_the_triggerer_when_deferrable(request, mj_connection, run_dag,
                                                                            monkeypatch, deferrable):
    # The relay dialect answers a remix with code 1 while its task waits in MODAL.
    from tests.helpers import record_inline_triggers, xcom_value

    mj_connection.configure(dialect="relay")
    probes = _record_modal_probes(monkeypatch)
    triggers = record_inline_triggers(monkeypatch)
    dr = run_dag(_remix_dag(request, modal_prompt="a harbour at night", deferrable=deferrable))

    assert {k: ti.state for k, ti in task_instances(dr).items()} == {"imagine": "success", "vary": "success"}
    varied = xcom_value(dr, "vary")
    assert varied["action"] == "VARIATION" and varied["prompt"] == "a harbour at night"
    assert mj_connection.counters()["submits"].get("modal") == 1
    if deferrable:
        assert probes == [], "a deferrable task must not sleep in its worker to look for the modal"
        assert triggers == ["MidjourneyTaskTrigger", "MidjourneyTaskTrigger"]  # find the modal, then the job
    else:
        assert len(probes) == 1 and triggers == []


def test_a_hidden_modal_without_modal_input_fails_naming_it_when_deferrable(request, mj_connection, run_dag,
                                                                            monkeypatch, capfd):
    mj_connection.configure(dialect="relay")
    probes = _record_modal_probes(monkeypatch)
    dr = run_dag(_remix_dag(request, deferrable=True, retries=2))
    out = capfd.readouterr()

    ti = task_instances(dr)["vary"]
    assert ti.state == "failed" and ti.try_number == 1
    assert "MidjourneyModalRequiredError" in out.out + out.err and "MidjourneyModalOperator(" in out.out + out.err
    assert probes == [] and mj_connection.counters()["submits"].get("modal", 0) == 0


def test_a_job_the_hidden_modal_leads_to_gets_the_not_visible_grace_when_deferred(request, run_dag, monkeypatch):
    # A relay that rewrites code 21 to 1, answers the modal with a new task id, and shows a new task
    # only from its third read: the job the modal starts is as fresh as any other submit. (The
    # emulator keeps the MODAL task's id and shows new tasks at once, hence the protocol relay.)
    import json

    from tests.helpers import connection_json, record_inline_triggers, xcom_value
    from tests.protocol.relay_server import Quirks, start_relay

    from tests.protocol.relay_server import Relay

    real_modal = Relay.submit_modal

    def modal_makes_a_fresh_task(self, body):
        # The relay's modal_new_id renames the MODAL task, which it has already shown: make the
        # renamed one as unseen as a task just submitted.
        reply = real_modal(self, body)
        new_id = json.loads(reply.body)["result"]
        if new_id in self.tasks:
            self.tasks[new_id].reads = 0
        return reply

    monkeypatch.setattr(Relay, "submit_modal", modal_makes_a_fresh_task)
    quirks = Quirks(dialect="relay", modal_new_id=True, not_found_polls=2, job_seconds=0.25)
    triggers = record_inline_triggers(monkeypatch)
    with start_relay(quirks) as relay:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(relay.base_url))
        dr = run_dag(_remix_dag(request, modal_prompt="a harbour at night", deferrable=True))
        submits = relay.counters()["submits"]

    assert {k: ti.state for k, ti in task_instances(dr).items()} == {"imagine": "success", "vary": "success"}
    assert xcom_value(dr, "vary")["prompt"] == "a harbour at night"
    assert triggers == ["MidjourneyTaskTrigger", "MidjourneyTaskTrigger"]  # find the modal, then the job
    assert submits == {"imagine": 1, "action": 1, "modal": 1}
