"""50 imagine jobs through a real Airflow DAG while the server misbehaves on 1 request in 5.

Every job must be accounted for at the end: it succeeded, or it failed with a specific error
class. No job may be paid for twice: the emulator counts accepted submits per ``state`` tag
(one tag per mapped prompt), and no tag may have been accepted more than once.

Run with ``-s`` to see the counts; they are also written to
``test-artifacts/reliability/fault_run.json``.
"""

from __future__ import annotations

import collections
import json
import time
from datetime import timedelta

from airflow_provider_mj.emulator import start_emulator
from airflow_provider_mj import exceptions as mj_exceptions
from airflow_provider_mj.exceptions import MidjourneyFatalError, MidjourneySubmitUncertainError
from airflow_provider_mj.operators import MidjourneyImagineOperator
from tests.helpers import connection_json, make_dag, task_instances, unique_dag_id

JOBS = 50
#: 20% of /mj requests get a fault, spread over every request-level kind, plus lost submit replies.
FAULTS = {
    "seed": 6,
    "rate_limit": 0.05,  # 429 + Retry-After
    "server_error": 0.04,  # HTTP 500 (proxy dialect)
    "slow": 0.02,  # reply after slow_seconds > the client timeout
    "drop": 0.04,  # connection closed, no reply
    "malformed": 0.03,  # truncated JSON
    "lost_reply": 0.02,  # submits only: job created, reply never sent
    "slow_seconds": 1.3,
    "retry_after": 1,
}
#: The hook's smallest allowed timeout is 1 s; slow replies take 1.3 s, so they time out.
#: max_retries=0: the hook does not retry (its retries are tested in tests/hooks/test_retries.py), so a
#: refused submit (429) reaches Airflow, whose own retries run the task again. Polls are still
#: repeated by the wait loops, which ride out transient errors until the job's deadline.
CONNECTION_EXTRAS = {"timeout": 1, "max_retries": 0, "retry_min_wait": 0.02, "retry_max_wait": 0.1}


class RecordingImagine(MidjourneyImagineOperator):
    """The imagine operator, recording how each try of each job ended (keyed by its state tag).

    ``dag.test()`` runs tasks in this process, so a class-level dict sees every try.
    """

    tries: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)

    def _record(self, context, method, *args):
        try_number = context["ti"].try_number
        try:
            result = method(context, *args)
        except Exception as err:  # TaskDeferred is a BaseException: deferring is not an outcome
            self.tries[self.state].append((try_number, type(err).__name__))
            raise
        self.tries[self.state].append((try_number, "success"))
        return result

    def execute(self, context):
        return self._record(context, super().execute)

    def execute_complete(self, context, event=None):
        return self._record(context, super().execute_complete, event)


def test_fifty_jobs_under_twenty_percent_faults_are_all_accounted_for_and_none_is_paid_twice(
    request, run_dag, monkeypatch, artifacts_dir
):
    RecordingImagine.tries.clear()
    started = time.monotonic()
    with start_emulator(job_seconds=0.15, progress_steps=1, concurrency=JOBS, queue_limit=JOBS,
                        faults=FAULTS) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(emu.base_url, **CONNECTION_EXTRAS))
        dag_id = unique_dag_id(request)
        states = [f"{dag_id[:40]}-job-{i:02d}" for i in range(JOBS)]
        with make_dag(dag_id) as dag:
            RecordingImagine.partial(
                task_id="imagine", poll_interval=0.05, timeout=60, retries=3, retry_delay=timedelta(seconds=0),
            ).expand_kwargs([
                # Odd jobs wait on the triggerer (async path, coalesced poller), even ones block.
                {"prompt": f"a lighthouse, study {i}", "state": s, "deferrable": i % 2 == 1}
                for i, s in enumerate(states)
            ])
        dr = run_dag(dag)
        counters = emu.counters()
    elapsed = time.monotonic() - started

    tis = task_instances(dr)
    by_state = counters["submits_by_state"]
    outcomes: dict[str, str] = {}
    for i, state in enumerate(states):
        ti = tis[("imagine", i)]
        tries = RecordingImagine.tries[state]
        assert tries, f"job {i} never ran"
        last = tries[-1][1]
        # Accounted for: the task's final state agrees with the last try's outcome.
        assert (ti.state == "success") == (last == "success"), (i, ti.state, tries)
        assert ti.state in ("success", "failed"), (i, ti.state)
        outcomes[state] = last
    failed_by_class = collections.Counter(o for o in outcomes.values() if o != "success")
    # Every failure has a specific class; transient ones were retried by Airflow until fixed or fatal.
    assert set(failed_by_class) <= {MidjourneySubmitUncertainError.__name__}, failed_by_class

    # Airflow retried only errors that retrying can fix, and each retry found no accepted job to
    # re-attach to (the refused submit created none) or re-attached to it.
    retried_errors = {name for t in RecordingImagine.tries.values() for _, name in t[:-1]}
    fatal = {name for name in retried_errors if issubclass(getattr(mj_exceptions, name), MidjourneyFatalError)}
    assert not fatal, fatal

    duplicates = {s: by_state.get(s, 0) for s in states if by_state.get(s, 0) > 1}
    uncertain = [s for s, o in outcomes.items() if o == MidjourneySubmitUncertainError.__name__]
    report = {
        "jobs": JOBS,
        "succeeded": sum(o == "success" for o in outcomes.values()),
        "failed_by_error_class": dict(failed_by_class),
        "possibly_submitted_that_exist_on_the_server": sum(by_state.get(s, 0) for s in uncertain),
        "faults_injected": dict(sorted(counters["faults"].items())),
        "airflow_retries": sum(len(t) - 1 for t in RecordingImagine.tries.values()),
        "errors_retried_by_airflow": dict(collections.Counter(
            name for t in RecordingImagine.tries.values() for _, name in t[:-1])),
        "requests": dict(sorted(counters["requests"].items())),
        "accepted_submits": counters["submits"]["imagine"],
        "duplicates": sum(n - 1 for n in duplicates.values()),
        "seconds": round(elapsed, 1),
    }
    (artifacts_dir / "fault_run.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\nfault run:", json.dumps(report, indent=2))

    assert not duplicates, duplicates
    assert report["succeeded"] + sum(failed_by_class.values()) == JOBS
    # Each success is exactly one accepted job; the run saw real faults of every kind.
    assert all(by_state.get(s) == 1 for s, o in outcomes.items() if o == "success")
    # Nothing lost: every job the server accepted is a success or was reported "possibly submitted".
    assert counters["submits"]["imagine"] == report["succeeded"] + report["possibly_submitted_that_exist_on_the_server"]
    assert set(counters["faults"]) >= {"rate_limit", "server_error", "slow", "drop", "malformed"}
    assert report["succeeded"] >= JOBS // 2
