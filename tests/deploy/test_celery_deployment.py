"""Issue 17: the provider on the distributed engine: CeleryExecutor, two workers, two triggerers.

``scripts/deploy_test.py --profile celery`` brings up PostgreSQL, Redis (Debian's redis-server,
our own config), the API server, scheduler (CeleryExecutor), dag-processor, two triggerers, two
``airflow celery worker`` processes and the emulator, every server on 127.0.0.1, and runs:

* the example DAG ``mj_imagine_upscale_describe`` (same checks as the local profile);
* ``mj_deploy_burst`` (tests/deploy/dags): 30 mapped deferrable imagines over a small emulated
  account (3 running, 3 queued) and no pool, so most submits are refused (code 23) and waited out
  on the triggerers (each prompt still submitted once); once about half are deferred, one
  triggerer is SIGKILLed and the other takes its triggers over; poll requests per interval are
  counted with two triggerers and with one;
* ``mj_deploy_worker_kill``: a blocking imagine whose Celery worker is SIGKILLed after the job
  was submitted; Airflow retries the task on the other worker, which re-attaches to the job.

One run per session (about 3.5 minutes on two cores); each test asserts one part of its report.
Component logs and the report are left in ``test-artifacts/deploy-celery/``.
"""

from __future__ import annotations

import pytest

from tests.deploy.deploy_script import (
    REPO_ROOT,
    assert_nothing_left_running,
    assert_script_passed,
    check,
    run_deploy_test,
)

pytestmark = pytest.mark.deploy

ARTIFACTS = REPO_ROOT / "test-artifacts" / "deploy-celery"
#: Hard limit for the whole script; a healthy run takes about 3.5 minutes on 2 busy cores.
TIMEOUT_S = 1200
BURST = 30


@pytest.fixture(scope="module")
def celery_deployment(tmp_path_factory) -> dict:
    return run_deploy_test("celery", tmp_path_factory.mktemp("deploy-celery"), ARTIFACTS, TIMEOUT_S)


def test_script_passed(celery_deployment):
    assert_script_passed(celery_deployment)


def test_two_triggerers_and_two_celery_workers(celery_deployment):
    detail = check(celery_deployment, "two triggerers and two Celery workers are up")
    assert celery_deployment["profile"] == "celery"
    assert detail is None or len(detail.get("triggerer_jobs_running", [])) >= 2


def test_flagship_dag_on_celery(celery_deployment):
    for name in ("run succeeded", "every task instance succeeded",
                 "every waiting task was seen in state 'deferred' (REST API)",
                 "every waiting task's trigger was picked up by a triggerer job (trigger table)",
                 "emulator submits: imagine 1, action 4, describe 4 (no duplicates)",
                 "4 images saved in the output folder", "the extra link's URL serves an image"):
        check(celery_deployment, name)


def test_burst_succeeds_each_prompt_submitted_once(celery_deployment):
    check(celery_deployment, "burst: run succeeded")
    check(celery_deployment, f"burst: all {BURST} mapped imagines succeeded on their first try")
    check(celery_deployment, "burst: every imagine waited in a triggerer (seen 'deferred')")
    check(celery_deployment, f"burst: the emulator counted each of the {BURST} prompts submitted exactly once")


def test_triggerer_failover_mid_burst(celery_deployment):
    check(celery_deployment, "burst: both triggerers ran burst triggers")
    check(celery_deployment, "burst: one triggerer SIGKILLed while about half the tasks were deferred")
    check(celery_deployment, "burst: the surviving triggerer took over every trigger of the killed one")
    check(celery_deployment, "burst: the task log of a taken-over imagine has a trigger part from the surviving "
                             "triggerer (REST API)")
    failover = celery_deployment["burst"]["failover"]
    assert len(failover["deferred_at_kill"]) >= BURST // 2 and failover["orphaned"], failover


def test_full_account_waited_out_without_a_pool(celery_deployment):
    # The burst runs with no pool over 3 running + 3 queued places: refusals are backpressure.
    check(celery_deployment, "burst: the full account refused submits (code 23) and the refused imagines waited "
                             "for room on a triggerer (MidjourneyRoomTrigger), none failed")
    assert celery_deployment["burst"]["submit_codes"].get("23", 0) > 0


def test_coalescing_per_triggerer(celery_deployment):
    check(celery_deployment, "burst: each triggerer batches its own waiting tasks (about 1 poll request per "
                             "interval per triggerer: 2 with two triggerers, 1 with one)")
    rows = {r["triggerers"]: r for r in celery_deployment["coalescing"]}
    if rows[2]["triggerers_polling"] >= 2:
        assert rows[1]["requests_per_interval"] < rows[2]["requests_per_interval"], rows


def test_killed_celery_worker_task_retried_and_reattached(celery_deployment):
    check(celery_deployment, "worker kill: the Celery worker running the blocking imagine was SIGKILLed after "
                             "its job was submitted")
    check(celery_deployment, "worker kill: Airflow retried the task and the retry succeeded")
    check(celery_deployment, "worker kill: the retry re-attached to the job already submitted (its task log)")
    check(celery_deployment, "worker kill: the emulator counted one submit for the task (nothing paid twice)")
    info = celery_deployment["worker_kill"]
    assert info["retry_worker"] != info["killed_worker"], info


def test_servers_bind_loopback_only(celery_deployment):
    detail = check(celery_deployment, "every server listens on 127.0.0.1 only")
    assert any("redis-server" in s for s in detail["sockets"]), detail


def test_nothing_left_running(celery_deployment):
    assert_nothing_left_running(celery_deployment)
