"""A full account is backpressure, not failure: real DAG runs (``dag.test()``) against a small emulated account.

``dag.test()`` runs deferred tasks one after another (ECOSYSTEM-NOTES.md), and seconds pass
between two tasks, so a mapped burst never fills the account by itself here: each task of the
burst first fills it by submitting jobs directly (as another team's DAG would), then runs the
operator's own ``execute``, whose submit meets a full account. The emulator's counters are the proof: every prompt accepted exactly once,
and refusals (code 23) did happen. The deployment test runs the real concurrent burst.
"""

from __future__ import annotations

import pytest

from airflow_provider_mj.exceptions import MidjourneyTimeoutError
from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from airflow_provider_mj.operators import MidjourneyImagineOperator
from airflow_provider_mj.operators import room as operator_room
from tests.helpers import connection_json, make_dag, record_inline_triggers, task_instances, unique_dag_id

PROMPTS = ["a lighthouse at dawn", "a fox in the snow", "a paper boat"]


FILLER_JOBS = 3  # 2 running + 1 queued: the account is full


def _fill_account(tag: str) -> None:
    """Take every running slot and queued place of the account, as another DAG would."""
    hook = MidjourneyHook()
    for n in range(FILLER_JOBS):
        hook.imagine(f"another team's job {n}", state=f"filler-{tag}-{n}")


class AfterAnotherTeam(MidjourneyImagineOperator):
    """Finds the account full: another team's jobs are submitted right before this task's own."""

    def execute(self, context):
        ti = context["ti"]
        _fill_account(f"{ti.task_id}-{ti.map_index}")
        return super().execute(context)


@pytest.fixture
def small_account(emulator, monkeypatch):
    """2 running slots and 1 queued place; max_retries=0, so only the wait for room can succeed.

    (``dag.test()`` runs the triggers without the settle time, which only a real executor needs:
    the deployment tests' burst meets it.)"""
    emulator.configure(concurrency=2, queue_limit=1, job_seconds=1.5)
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT",
                       connection_json(emulator.base_url, max_retries=0, retry_min_wait=0.1, retry_max_wait=0.4))
    return emulator


@pytest.fixture
def worker_sleeps(monkeypatch) -> list:
    """Every sleep of the blocking wait for room (a deferrable task must never take one)."""
    slept: list = []
    monkeypatch.setattr(operator_room, "sleep", slept.append)
    return slept


def _burst_dag(request, *, fill: bool = True, **kwargs):
    operator = AfterAnotherTeam if fill else MidjourneyImagineOperator
    with make_dag(unique_dag_id(request)) as dag:
        operator.partial(task_id="imagine", poll_interval=0.1, **kwargs).expand_kwargs(
            [{"prompt": p, "state": p} for p in PROMPTS]
        )
    return dag


def _burst_states(dr) -> dict:
    return {k: ti.state for k, ti in task_instances(dr).items()}


def _refusals(emulator) -> int:
    return emulator.counters()["submit_codes"].get("23", 0)


ALL_SUCCEEDED = {("imagine", i): "success" for i in range(len(PROMPTS))}


def _accepted_per_prompt(emulator) -> dict:
    by_state = emulator.counters()["submits_by_state"]
    return {p: by_state.get(p, 0) for p in PROMPTS}


def test_a_deferred_burst_over_a_full_account_waits_on_the_triggerer_and_succeeds(
    request, small_account, run_dag, monkeypatch, worker_sleeps
):
    triggers = record_inline_triggers(monkeypatch)

    dr = run_dag(_burst_dag(request, deferrable=True))

    assert _burst_states(dr) == ALL_SUCCEEDED
    assert _accepted_per_prompt(small_account) == {p: 1 for p in PROMPTS}
    assert _refusals(small_account) >= len(PROMPTS), "every task must have met a full account"
    assert "MidjourneyRoomTrigger" in triggers, "the refused task must wait on the triggerer"
    assert worker_sleeps == [], "a deferrable task must not sleep in its worker slot between refusals"


def test_a_blocking_burst_over_a_full_account_waits_in_the_worker_beyond_max_retries(
    request, small_account, run_dag, monkeypatch, worker_sleeps
):
    import time

    monkeypatch.setattr(operator_room, "sleep", lambda s: (worker_sleeps.append(s), time.sleep(s)))

    dr = run_dag(_burst_dag(request, deferrable=False))

    assert _burst_states(dr) == ALL_SUCCEEDED
    assert _accepted_per_prompt(small_account) == {p: 1 for p in PROMPTS}
    refusals = _refusals(small_account)
    assert refusals >= len(PROMPTS), "more refusals than max_retries=0 allows must have been waited out"
    assert len(worker_sleeps) == refusals and all(0 < s <= 0.4 for s in worker_sleeps)


def test_a_refusal_is_logged_plainly(request, small_account, run_dag, capfd):
    with make_dag(unique_dag_id(request)) as dag:
        AfterAnotherTeam(task_id="imagine", prompt="a quiet harbour", poll_interval=0.1, deferrable=True)
    run_dag(dag)
    out = capfd.readouterr()
    logs = out.out + out.err
    assert "account queue full: waiting for room, attempt 1, 0 s so far" in logs
    assert "submitting again (attempt 2)" in logs


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_no_room_before_the_timeout_fails_the_task_without_submitting(request, small_account, run_dag, deferrable):
    small_account.configure(job_seconds=30.0)
    with make_dag(unique_dag_id(request)) as dag:
        AfterAnotherTeam(task_id="imagine", prompt="a quiet harbour", state="late", timeout=1.5,
                         poll_interval=0.1, deferrable=deferrable)
    dr = run_dag(dag)

    ti = task_instances(dr)["imagine"]
    assert ti.state == "failed"
    assert small_account.counters()["submits_by_state"].get("late", 0) == 0
    assert _refusals(small_account) >= 2


def test_a_relay_passing_queue_full_through_with_http_200_is_waited_out(
    request, small_account, run_dag, monkeypatch, worker_sleeps
):
    # new-api relays pass the upstream's code 23 through as it came: HTTP 200, the proxy envelope.
    small_account.configure(dialect="relay")
    triggers = record_inline_triggers(monkeypatch)

    dr = run_dag(_burst_dag(request, deferrable=True))

    assert _burst_states(dr) == ALL_SUCCEEDED
    assert _accepted_per_prompt(small_account) == {p: 1 for p in PROMPTS}
    assert _refusals(small_account) >= len(PROMPTS)
    assert "MidjourneyRoomTrigger" in triggers and worker_sleeps == []


def test_a_relay_saturated_with_429_code_30_is_waited_out_honouring_retry_after(
    request, emulator, run_dag, monkeypatch
):
    # Every request answered 429 code 30 (new-api's saturated channel group) with Retry-After: 1
    # until the worker has waited once; the connection allows no retries at all.
    emulator.configure(dialect="relay", faults={"rate_limit": 1.0, "retry_after": 1})
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT",
                       connection_json(emulator.base_url, max_retries=0, retry_min_wait=0.05, retry_max_wait=0.2))
    slept: list = []

    def sleep_then_relay_recovers(seconds):
        slept.append(seconds)
        emulator.configure(faults={"rate_limit": 0.0})

    monkeypatch.setattr(operator_room, "sleep", sleep_then_relay_recovers)
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a quiet harbour", state="saturated", poll_interval=0.1,
                                  deferrable=False)
    dr = run_dag(dag)

    assert task_instances(dr)["imagine"].state == "success"
    assert emulator.counters()["submits_by_state"] == {"saturated": 1}
    assert emulator.counters()["faults"]["rate_limit"] >= 1
    assert len(slept) == 1 and slept[0] >= 1.0, "the server's Retry-After outranks the shorter backoff"


def test_room_wait_state_survives_serialisation():
    from airflow_provider_mj.triggers.room import MidjourneyRoomTrigger

    wait = {"order_key": "d|r|t|00000001", "arrival": 100.0, "attempt": 3, "refused_at": 130.0,
            "probe_at": 134.0, "deadline": 3700.0, "reason": "account queue full"}
    path, kwargs = MidjourneyRoomTrigger(midjourney_conn_id="mj", wait=wait).serialize()
    assert path == "airflow_provider_mj.triggers.room.MidjourneyRoomTrigger"
    assert kwargs == {"midjourney_conn_id": "mj", "wait": wait}
    import json

    assert json.loads(json.dumps(kwargs)) == kwargs  # JSON primitives only


def test_the_timeout_error_says_nothing_was_billed():
    from airflow_provider_mj.room import RoomWait

    wait = RoomWait(order_key="k", arrival=0.0, attempt=5, refused_at=50.0, probe_at=55.0, deadline=60.0,
                    reason="account queue full")
    err = wait.timeout_error("imagine", "a cat", now=61.0)
    assert isinstance(err, MidjourneyTimeoutError)
    assert "5 submit(s) refused over 61 s" in str(err) and "nothing is billed" in str(err)
