"""A burst bigger than the account, in a real deployment: the wait for room vs in-worker retries.

Brings up the deployment test's machinery (``scripts/deploy``: PostgreSQL, api-server, scheduler
with LocalExecutor at parallelism 16, dag-processor, one triggerer, the emulator; every server on
127.0.0.1) with an emulated account of 3 running slots and 3 queued places and 10 s jobs, and the
connection at its defaults (``max_retries`` 5, waits 1 to 30 s), as a new user has it. For each
size N it runs N mapped deferrable imagines (``benchmarks/dags/mj_bench_backpressure.py``), no
pool, twice: with the provider as it is (``room``) and with the wait for room bypassed
(``baseline``: the hook's in-worker retries, then failure), and reports per run:

* the run's state, tasks failed, accepted submits (each prompt must be accepted exactly once),
  refusals (code 23 answers);
* the makespan, from triggering the run to the last job done on the account, and its ratio to the
  account's own limit ``ceil(N / 3) * 10 s``;
* worker slot-seconds, three ways (``benchmarks/dags/mj_bench_backpressure.py`` records them):

  - *whole runs* (the first figure, kept for comparison with earlier runs): the duration of every
    ``submit()`` call (the baseline sleeps between retries inside it) plus every worker run that
    ended deferring on the room trigger, from the task process's start (start-up, DAG parse);
  - (a) *waiting for room*: from each refusal to the moment the worker run gives its slot up: the
    deferral (room), or the end of the ``submit()`` call after its in-worker sleeps, accepted or
    failed (baseline);
  - (b) *resuming*: the extra worker runs only refusals cause (``execute_after_room``), their count
    and slot-seconds (process start to the run's end, less their own share of (a)). The baseline
    has none.

Targets (issue 14): success with no task failed and no duplicate; makespan <= 1.25x the limit;
slot-seconds spent waiting for room, (a), cut >= 10x versus the baseline, with (b) printed beside
it (the price of that cut in worker runs). Usage::

    .venv/bin/python benchmarks/backpressure_burst.py                 # N = 30 and 100 (16 to 25 min, with the load)
    .venv/bin/python benchmarks/backpressure_burst.py --sizes 30      # ~6 min
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.deploy.api import TERMINAL_RUN_STATES, Api, wait_healthy  # noqa: E402
from scripts.deploy.common import log  # noqa: E402
from scripts.deploy.main import parse_args as deployment_args  # noqa: E402
from scripts.deploy.prereqs import ensure_db_driver, ensure_postgres  # noqa: E402
from scripts.deploy.processes import Deployment  # noqa: E402

DAGS = ROOT / "benchmarks" / "dags"
SLOTS, QUEUED = 3, 3


def _start(dep: Deployment, ns: argparse.Namespace, record: Path) -> Api:
    sql_conn = dep.start_postgres(ensure_postgres(), ensure_db_driver())
    dep.emulator_url = dep.start_emulator()
    env = dep.airflow_env(sql_conn)
    env.update({
        "AIRFLOW__CORE__PARALLELISM": str(ns.parallelism),
        # The connection as a new user creates it: the default retries (5, waits of 1 to 30 s).
        "AIRFLOW_CONN_MIDJOURNEY_DEFAULT": json.dumps({"conn_type": "midjourney", "host": dep.emulator_url,
                                                       "password": dep.emulator_key}),
        "MJ_BENCH_SIZES": ",".join(str(n) for n in ns.sizes),
        "MJ_BENCH_RECORD": str(record),
        "MJ_BENCH_POLL_INTERVAL": str(ns.poll_interval),
    })
    dep.start_airflow()
    wait_healthy(dep, timeout=300)
    api = Api(dep.api_url, "admin", dep.password)
    api.login()
    return api


def _records(record: Path, dag_id: str) -> list[dict]:
    if not record.exists():
        return []
    rows = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["dag_id"] == dag_id]


def _last_finish(dep: Deployment, dag_id: str, run_id: str) -> float | None:
    """Epoch seconds of the last job of the run to finish on the account (the emulator's finishTime)."""
    import requests

    rows = dep.sql("SELECT value FROM xcom WHERE dag_id = %s AND run_id = %s AND key = 'mj_task_id'", dag_id, run_id)
    ids = [str(json.loads(v) if isinstance(v, (str, bytes)) else v) for (v,) in rows]
    if not ids:
        return None
    r = requests.post(f"{dep.emulator_url}/mj/task/list-by-condition", json={"ids": ids}, timeout=30,
                      headers={"Authorization": f"Bearer {dep.emulator_key}"})
    finishes = [t.get("finishTime") or 0 for t in r.json() if t.get("status") == "SUCCESS"]
    return max(finishes) / 1000 if finishes else None


def run_one(dep: Deployment, api: Api, record: Path, mode: str, size: int, timeout: float) -> dict:
    dag_id = f"mj_bench_{mode}_{size}"
    api.wait_parsed(dag_id, dep)
    dep.configure_emulator(concurrency=SLOTS, queue_limit=QUEUED, job_seconds=dep.args.job_seconds)
    time.sleep(dep.args.job_seconds + 1)  # whatever ran before has left the account
    before = dep.emulator_counters()
    started = time.time()
    run_id = api.trigger(dag_id)
    log(f"{dag_id}: triggered {run_id}")
    while True:
        run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if run["state"] in TERMINAL_RUN_STATES:
            break
        if time.time() - started > timeout:
            raise SystemExit(f"{dag_id} did not finish within {timeout:.0f} s")
        time.sleep(2)
    ended = time.time()
    after = dep.emulator_counters()
    states = [ti["state"] for ti in api.task_instances(dag_id, run_id)]
    by_state = after["submits_by_state"]
    accepted = [by_state.get(f"{dag_id}-{i:03d}", 0) - before["submits_by_state"].get(f"{dag_id}-{i:03d}", 0)
                for i in range(size)]
    refusals = after["submit_codes"].get("23", 0) - before["submit_codes"].get("23", 0)
    last = _last_finish(dep, dag_id, run_id)
    limit = math.ceil(size / SLOTS) * dep.args.job_seconds
    rows = _records(record, dag_id)

    def total(kind: str) -> float:
        return sum(r["seconds"] for r in rows if r["kind"] == kind)

    submit_s, room_run_s = total("submit"), total("room_run")
    result = {
        "mode": mode, "n": size, "run_state": run["state"], "tasks": len(states),
        "tasks_failed": sum(1 for s in states if s != "success"),
        "prompts_accepted_once": sum(1 for a in accepted if a == 1),
        "prompts_accepted_twice_or_more": sum(1 for a in accepted if a > 1),
        "refusals": refusals,
        "run_wall_s": round(ended - started, 1),
        "makespan_s": round(last - started, 1) if last else None,
        "limit_s": limit,
        "makespan_ratio": round((last - started) / limit, 2) if last else None,
        "slot_s_waiting_for_room": round(submit_s + room_run_s, 1),
        "slot_s_in_submit_calls": round(submit_s, 1),
        "slot_s_in_room_runs": round(room_run_s, 1),
        "room_runs": sum(1 for r in rows if r["kind"] == "room_run"),
        "slot_s_refusal_to_slot_freed": round(total("room_wait") + total("retry_wait"), 1),
        "resume_runs": sum(1 for r in rows if r["kind"] == "resume_run"),
        "slot_s_resuming": round(total("resume_run"), 1),
    }
    log(f"{dag_id}: {json.dumps(result)}")
    return result


def _targets(results: list[dict]) -> list[tuple[str, str, bool]]:
    out = []
    for n in sorted({r["n"] for r in results}):
        room = next((r for r in results if r["n"] == n and r["mode"] == "room"), None)
        base = next((r for r in results if r["n"] == n and r["mode"] == "baseline"), None)
        if room is None:
            continue
        ok = room["run_state"] == "success" and room["tasks_failed"] == 0 and room["prompts_accepted_once"] == n
        out.append((f"N={n}: success, no task failed, each prompt accepted exactly once",
                    f"{room['run_state']}, {room['tasks_failed']} failed, {room['prompts_accepted_once']}/{n} once, "
                    f"{room['prompts_accepted_twice_or_more']} twice", ok))
        ratio = room["makespan_ratio"]
        out.append((f"N={n}: makespan <= 1.25x ceil(N/3)*10 s", f"{ratio}x ({room['makespan_s']} s / {room['limit_s']:.0f} s)",
                    ratio is not None and ratio <= 1.25))
        if base is not None:
            waited, whole = "slot_s_refusal_to_slot_freed", "slot_s_waiting_for_room"
            cut = base[waited] / max(room[waited], 0.1)
            whole_cut = base[whole] / max(room[whole], 0.1)
            out.append((f"N={n}: slot-seconds waiting for room (a: refusal to slot given up) cut >= 10x vs the baseline",
                        f"{cut:.1f}x ({base[waited]} s -> {room[waited]} s); beside it, (b) resuming: "
                        f"{room['resume_runs']} extra worker runs, {room['slot_s_resuming']} slot-s "
                        f"(whole-run figure {base[whole]} s -> {room[whole]} s, {whole_cut:.1f}x)",
                        cut >= 10))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[30, 100])
    p.add_argument("--modes", type=lambda s: s.split(","), default=["room", "baseline"])
    p.add_argument("--job-seconds", type=float, default=10.0)
    p.add_argument("--poll-interval", type=float, default=2.0, help="poll_interval of the burst's imagines")
    p.add_argument("--parallelism", type=int, default=16)
    p.add_argument("--run-timeout", type=float, default=1500.0)
    p.add_argument("--report", help="write the figures as JSON here too")
    ns = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mj-bench-backpressure-"))
    record = tmp / "record.jsonl"
    # The deployment test's own options, local profile, with this burst's DAGs and jobs.
    dep = Deployment(deployment_args(["--dags-folder", str(DAGS), "--job-seconds", str(ns.job_seconds),
                                      "--poll-interval", str(ns.poll_interval), "--artifacts", str(tmp / "artifacts")]))
    results: list[dict] = []
    try:  # a deployment that fails to start is torn down too
        api = _start(dep, ns, record)
        for size in ns.sizes:
            for mode in ns.modes:
                results.append(run_one(dep, api, record, mode, size, ns.run_timeout))
    finally:
        dep.close()
    print("\n| mode | N | run | tasks failed | accepted once | accepted twice | refusals | makespan | ratio to limit "
          "| slot-s, whole runs | (a) slot-s refusal to slot given up | (b) resuming: runs, slot-s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['mode']} | {r['n']} | {r['run_state']} | {r['tasks_failed']} | {r['prompts_accepted_once']} | "
              f"{r['prompts_accepted_twice_or_more']} | {r['refusals']} | {r['makespan_s']} s | {r['makespan_ratio']}x | "
              f"{r['slot_s_waiting_for_room']} | {r['slot_s_refusal_to_slot_freed']} | "
              f"{r['resume_runs']}, {r['slot_s_resuming']} |")
    targets = _targets(results)
    print("\n| target | result | |\n|---|---|---|")
    for name, value, ok in targets:
        print(f"| {name} | {value} | {'PASS' if ok else 'FAIL'} |")
    if ns.report:
        Path(ns.report).write_text(json.dumps({"results": results, "targets": targets}, indent=2))
    return 0 if all(ok for _, _, ok in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
