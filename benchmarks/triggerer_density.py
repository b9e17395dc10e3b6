"""Triggerer density: what a waiting MidjourneyTaskTrigger costs, against a generic HTTP sensor trigger.

N triggers run in one event loop, their ``run()`` async generators as asyncio tasks (as the
triggerer runs them), in a process of their own; the emulator runs in another process
(``--concurrency 100000 --queue-limit 100000``), so the measured process holds only triggers.
Each trigger waits on its own job, which lasts ``--job-seconds``; polls are every
``--poll-interval`` seconds. Three modes, run one after the other against the same emulator,
interleaved per size:

* ``coalesced``: ``MidjourneyTaskTrigger`` (default): one shared poller per connection,
  ``list-by-condition`` for all waiting tasks each interval;
* ``per-task``: ``MidjourneyTaskTrigger(coalesce=False)``: one ``fetch`` per task per interval
  on the shared aiohttp session;
* ``baseline``: the HTTP provider's ``HttpSensorTrigger`` (what a user would write without this
  provider), waiting on the emulator's ``GET /_emulator/task/{id}/done``, which answers 404 until
  the job is finished.

Figures, per mode and size:

* CPU per task-poll: process CPU time of the trigger process from the start of the triggers to
  the last event, divided by the number of task polls (a task read: one fetch, one id of a batch
  call, or one HTTP request of the baseline);
* RSS per waiting trigger: RSS delta / N once every trigger has made its first poll; with
  tracemalloc as well (in a separate run, since tracing slows everything down);
* p95 poll lateness: how late each poll started against its schedule (the provider's loops keep
  a fixed schedule, first poll + k * interval; the baseline sleeps an interval after each reply,
  so its schedule is the previous reply + interval);
* HTTP requests per interval, from the emulator's counters.

    .venv/bin/python benchmarks/triggerer_density.py            # 100 and 1,000 triggers, 60 s jobs (~6 min)
    .venv/bin/python benchmarks/triggerer_density.py --quick    # smoke run, ~15 s

Targets: CPU per task-poll >= 3x lower than the baseline with per-task polling and >= 10x lower
with coalescing at 1,000 triggers; RSS per waiting trigger <= 50 KB; p95 poll lateness < 0.5 s;
at 100 triggers >= 10x fewer HTTP requests than one request per task per interval.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT,
    connection_env,
    emulator_process,
    http_json,
    machine,
    percentile,
    rss_bytes,
    submit_jobs,
)

MODES = ("baseline", "per-task", "coalesced")
POLL_ROUTES = ("task/fetch", "task/list-by-condition", "_emulator/task/done")


# ---------------------------------------------------------------------------------------------
# The measured process: triggers only.
# ---------------------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    import asyncio
    import gc
    from collections import defaultdict

    import aiohttp  # noqa: F401 - imported before the first measurement, as in a running triggerer
    import tenacity  # noqa: F401 - the baseline imports it on its first request
    from airflow.providers.http.hooks.http import HttpAsyncHook
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    from airflow_provider_mj.hooks.midjourney import MidjourneyHook
    from airflow_provider_mj.polling import TaskPoller  # noqa: F401
    from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger

    # Read each connection once before measuring: the first read imports Airflow's connection
    # machinery, which a running triggerer has long imported.
    from airflow.sdk import BaseHook

    BaseHook.get_connection("midjourney_default")
    BaseHook.get_connection("emulator_http")

    trace = args.memory_only
    if trace:
        import tracemalloc

        tracemalloc.start()
    Path(args.ready_file).touch()
    ids_path = Path(args.ids_file)
    give_up = time.monotonic() + 120
    while not ids_path.exists():
        if time.monotonic() > give_up:
            raise SystemExit("no ids from the parent")
        time.sleep(0.02)
    ids: list[str] = json.loads(ids_path.read_text())
    n, interval = len(ids), args.poll_interval
    mode = args.mode

    async def main() -> dict:
        loop = asyncio.get_running_loop()
        starts: dict[str, list[float]] = {key: [] for key in ids}
        ends: dict[str, list[float]] = {key: [] for key in ids}
        first_done = [0]

        def finished(key: str) -> None:
            ends[key].append(loop.time())
            if len(ends[key]) == 1:
                first_done[0] += 1

        # Count the polls where they happen, in every mode.
        if mode == "baseline":
            real_run = HttpAsyncHook.run

            async def run(self, *a, endpoint=None, **kw):
                key = endpoint.split("/")[2]
                starts[key].append(loop.time())
                try:
                    return await real_run(self, *a, endpoint=endpoint, **kw)
                finally:
                    finished(key)

            HttpAsyncHook.run = run
        else:
            real_fetch, real_list = MidjourneyHook.afetch_task, MidjourneyHook.alist_tasks

            async def afetch_task(self, mj_task_id):
                starts[mj_task_id].append(loop.time())
                try:
                    return await real_fetch(self, mj_task_id)
                finally:
                    finished(mj_task_id)

            async def alist_tasks(self, mj_task_ids):
                chunk, now = list(mj_task_ids), loop.time()
                for key in chunk:
                    starts[key].append(now)
                try:
                    return await real_list(self, chunk)
                finally:
                    for key in chunk:
                        finished(key)

            MidjourneyHook.afetch_task, MidjourneyHook.alist_tasks = afetch_task, alist_tasks

        def make(key: str):
            if mode == "baseline":
                return HttpSensorTrigger(endpoint=f"_emulator/task/{key}/done", http_conn_id="emulator_http",
                                         poke_interval=interval)
            return MidjourneyTaskTrigger(mj_task_id=key, poll_interval=interval,
                                         deadline=time.time() + args.job_seconds + 120,
                                         coalesce=(mode == "coalesced"))

        events: dict[str, object] = {}

        async def drive(trigger, key: str) -> None:
            async for event in trigger.run():
                events[key] = event.payload

        gc.collect()
        rss0 = rss_bytes()
        traced0 = tracemalloc.get_traced_memory()[0] if trace else 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        tasks = [loop.create_task(drive(make(key), key)) for key in ids]

        deadline = time.monotonic() + args.job_seconds + 60
        while first_done[0] < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # let the last replies reach their triggers
        rss1 = rss_bytes()
        traced1 = tracemalloc.get_traced_memory()[0] if trace else 0
        cpu_waiting, polls_waiting = time.process_time(), sum(map(len, starts.values()))
        result = {"mode": mode, "n": n, "rss_per_trigger": (rss1 - rss0) / n,
                  "traced_per_trigger": (traced1 - traced0) / n if trace else None}
        if trace:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return result

        done, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
        cpu1, wall1 = time.process_time(), time.monotonic()
        for task in pending:
            task.cancel()
        polls = sum(map(len, starts.values()))
        late: list[float] = []
        for key in ids:
            s, e = starts[key], ends[key]
            for k in range(1, len(s)):
                scheduled = e[k - 1] + interval if mode == "baseline" else s[0] + k * interval
                late.append(max(0.0, s[k] - scheduled))
        ok = sum(1 for p in events.values() if p is True or (isinstance(p, dict) and p.get("status") == "success"))
        result.update({
            "cpu_seconds": cpu1 - cpu0, "polls": polls, "cpu_per_poll": (cpu1 - cpu0) / max(1, polls),
            "cpu_per_poll_steady": (cpu1 - cpu_waiting) / max(1, polls - polls_waiting),
            "wait_seconds": wall1 - wall0, "late_p95": percentile(late, 95), "late_max": max(late, default=0.0),
            "events_ok": ok, "unfinished": len(pending),
        })
        return result

    result = asyncio.run(main())
    Path(args.result_file).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# The parent: emulator, submits, counters, report.
# ---------------------------------------------------------------------------------------------


def run_one(base_url: str, mode: str, n: int, args: argparse.Namespace, *, memory_only: bool = False) -> dict:
    http_json(f"{base_url}/_emulator/reset", {})
    with tempfile.TemporaryDirectory(prefix="mj-density-") as tmp:
        files = {name: str(Path(tmp) / name) for name in ("ready", "ids", "result", "stderr")}
        cmd = [sys.executable, __file__, "--child", "--mode", mode, "--poll-interval", str(args.poll_interval),
               "--job-seconds", str(args.job_seconds), "--ready-file", files["ready"], "--ids-file", files["ids"],
               "--result-file", files["result"]]
        if memory_only:
            cmd.append("--memory-only")
        with open(files["stderr"], "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT,
                                    env=connection_env(base_url))
            try:
                give_up = time.monotonic() + 120
                while not os.path.exists(files["ready"]):
                    if proc.poll() is not None or time.monotonic() > give_up:
                        raise SystemExit(f"{mode} child did not start:\n{Path(files['stderr']).read_text()[-3000:]}")
                    time.sleep(0.02)
                ids = submit_jobs(base_url, n, f"a density {mode} job")
                Path(files["ids"] + ".tmp").write_text(json.dumps(ids))
                os.replace(files["ids"] + ".tmp", files["ids"])
                proc.wait(timeout=args.job_seconds + 240)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if proc.returncode != 0 or not os.path.exists(files["result"]):
            raise SystemExit(f"{mode} child failed ({proc.returncode}):\n{Path(files['stderr']).read_text()[-3000:]}")
        result = json.loads(Path(files["result"]).read_text())
    if not memory_only:
        requests = http_json(f"{base_url}/_emulator/counters")["requests"]
        result["requests"] = sum(requests.get(route, 0) for route in POLL_ROUTES)
        result["requests_per_interval"] = result["requests"] / (result["wait_seconds"] / args.poll_interval)
    return result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 triggers, 2 s jobs, 0.5 s polls")
    parser.add_argument("--sizes", default=None, help="comma-separated trigger counts (default 100,1000)")
    parser.add_argument("--job-seconds", type=float, default=None, help="job duration (default 60)")
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds between polls (default 3)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the tracemalloc runs")
    # The measured child process.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    quick = args.quick
    sizes = [int(s) for s in (args.sizes or ("50" if quick else "100,1000")).split(",")]
    args.job_seconds = args.job_seconds or (2.0 if quick else 60.0)
    args.poll_interval = args.poll_interval or (0.5 if quick else 3.0)
    modes = [m for m in args.modes.split(",") if m]
    tracemalloc_runs = not (quick or args.no_tracemalloc)

    print(f"machine: {machine()}")
    print(f"jobs of {args.job_seconds:g} s, polls every {args.poll_interval:g} s, sizes {sizes}, modes {modes}")
    results: dict[tuple[str, int], dict] = {}
    with emulator_process(job_seconds=args.job_seconds) as base_url:
        for i, n in enumerate(sizes):
            order = modes[i % len(modes):] + modes[: i % len(modes)]  # interleave: rotate the order per size
            for mode in order:
                r = run_one(base_url, mode, n, args)
                results[(mode, n)] = r
                print(f"  {mode:<9} n={n:<5} cpu/poll {r['cpu_per_poll'] * 1e6:8.1f} us "
                      f"(steady {r['cpu_per_poll_steady'] * 1e6:7.1f})  rss/trigger {r['rss_per_trigger'] / 1024:6.1f} KB  "
                      f"late p95 {r['late_p95'] * 1000:6.1f} ms (max {r['late_max'] * 1000:6.1f})  "
                      f"req/interval {r['requests_per_interval']:7.1f}  ok {r['events_ok']}/{n}", flush=True)
        if tracemalloc_runs:
            n = max(sizes)
            for mode in modes:
                r = run_one(base_url, mode, n, args, memory_only=True)
                results[(mode, n)]["traced_per_trigger"] = r["traced_per_trigger"]
                print(f"  {mode:<9} n={n:<5} tracemalloc/trigger {r['traced_per_trigger'] / 1024:6.1f} KB "
                      f"(rss/trigger in that run {r['rss_per_trigger'] / 1024:6.1f} KB)", flush=True)

    print()
    print("| mode | triggers | CPU per task-poll | RSS per waiting trigger | tracemalloc per trigger "
          "| p95 poll lateness | HTTP requests per interval | events ok |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        for mode in modes:
            r = results[(mode, n)]
            traced = r.get("traced_per_trigger")
            traced_s = f"{traced / 1024:.1f} KB" if traced is not None else "-"
            print(f"| {mode} | {n} | {r['cpu_per_poll'] * 1e6:.0f} us | {r['rss_per_trigger'] / 1024:.1f} KB | {traced_s} "
                  f"| {r['late_p95'] * 1000:.0f} ms | {r['requests_per_interval']:.1f} | {r['events_ok']}/{n} |")

    print()
    big, small = max(sizes), min(sizes)
    if "baseline" in modes:
        base = results[("baseline", big)]["cpu_per_poll"]
        if "per-task" in modes:
            ratio = base / results[("per-task", big)]["cpu_per_poll"]
            print(f"CPU per task-poll, baseline / per-task at {big}: {ratio:.1f}x (target >= 3x): {verdict(ratio >= 3)}")
        if "coalesced" in modes:
            ratio = base / results[("coalesced", big)]["cpu_per_poll"]
            print(f"CPU per task-poll, baseline / coalesced at {big}: {ratio:.1f}x (target >= 10x): {verdict(ratio >= 10)}")
    for mode in ("per-task", "coalesced"):
        if mode not in modes:
            continue
        for n in sizes:
            r = results[(mode, n)]
            print(f"{mode} n={n}: RSS per waiting trigger {r['rss_per_trigger'] / 1024:.1f} KB (target <= 50 KB): "
                  f"{verdict(r['rss_per_trigger'] <= 50 * 1024)}; p95 poll lateness {r['late_p95'] * 1000:.0f} ms "
                  f"(target < 500 ms): {verdict(r['late_p95'] < 0.5)}")
    if "coalesced" in modes:
        r = results[("coalesced", small)]
        ratio = small / max(r["requests_per_interval"], 1e-9)
        print(f"HTTP requests at {small} triggers: {r['requests_per_interval']:.1f} per interval, {ratio:.0f}x fewer "
              f"than one per task per interval (target >= 10x): {verdict(ratio >= 10)}")
    failed = [key for key, r in results.items() if r["events_ok"] != key[1]]
    if failed:
        print(f"WARNING: not every trigger fired a success event: {failed}")


if __name__ == "__main__":
    main()
