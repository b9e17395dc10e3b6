"""Triggerer density: what a waiting MidjourneyTaskTrigger costs, against a generic HTTP sensor trigger.

N triggers run in one event loop, their ``run()`` async generators as asyncio tasks (as the
triggerer runs them), in a process of their own; the emulator runs in another process
(``--concurrency 100000 --queue-limit 100000``), so the measured process holds only triggers.
Each trigger waits on its own job, which lasts ``--job-seconds`` (30 by default, a fast
Midjourney job); polls are every ``--poll-interval`` seconds (1 by default). Two servers, the same emulator reconfigured between them:

* ``calm``: the emulator's default, progress in three steps (most polls read nothing new);
* ``chatty``: ``chatty=True``, as real relays behave: progress moves on nearly every read and an
  IN_PROGRESS preview URL carries a new cache-busting query string on every read (plus
  ``--status-lag-seconds`` of lag, 0 by default).

Three modes per server and size, run one after the other against the same emulator, interleaved:

* ``coalesced``: ``MidjourneyTaskTrigger`` (default): one shared poller per connection,
  ``list-by-condition`` for all waiting tasks each interval;
* ``per-task``: ``MidjourneyTaskTrigger(coalesce=False)``: one ``fetch`` per task per interval
  on the shared aiohttp session;
* ``baseline``: the HTTP provider's ``HttpSensorTrigger`` (what a user would write without this
  provider), waiting on the emulator's ``GET /_emulator/task/{id}/done``, which answers 404 until
  the job is finished.

Figures, per server, mode and size:

* CPU per task-poll: process CPU time of the trigger process from the start of the triggers to
  the last event, divided by the number of task polls (a task read: one fetch, one id of a batch
  call, or one HTTP request of the baseline); and the total CPU of that wait;
* RSS per waiting trigger: RSS delta / N once every trigger has made its first poll; with
  tracemalloc as well (in a separate run, since tracing slows everything down);
* p95 poll lateness: how late each poll started against its schedule (the provider's loops keep
  a fixed schedule, first poll + k * interval; the baseline sleeps an interval after each reply,
  so its schedule is the previous reply + interval);
* HTTP requests per interval, from the emulator's counters.

``--profile`` also runs the coalesced triggers of each server at the largest size under
cProfile and prints where their CPU goes (by area, then the top functions).

    .venv/bin/python benchmarks/triggerer_density.py            # calm and chatty, 500 and 1,000 triggers (~15 min)
    .venv/bin/python benchmarks/triggerer_density.py --profile  # the same, plus the profiles
    .venv/bin/python benchmarks/triggerer_density.py --quick    # smoke run, ~30 s

Targets (coalesced, at 500 and 1,000 triggers): CPU per task-poll >= 25x lower than the baseline
with the chatty server and >= 40x with the calm one; RSS per waiting trigger <= 10 KB; p95 poll
lateness < 0.2 s at 1,000; at most one HTTP request per interval per 500 waiting ids.
"""

from __future__ import annotations

import argparse
import json
import math
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
    profiler = None
    if args.profile_file:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: waiting in epoll costs nothing

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
            real_fetch, real_list = MidjourneyHook.afetch_task, MidjourneyHook.alist_task_readings

            async def afetch_task(self, mj_task_id):
                starts[mj_task_id].append(loop.time())
                try:
                    return await real_fetch(self, mj_task_id)
                finally:
                    finished(mj_task_id)

            async def alist_task_readings(self, mj_task_ids, **kw):
                chunk, now = list(mj_task_ids), loop.time()
                for key in chunk:
                    starts[key].append(now)
                try:
                    return await real_list(self, chunk, **kw)
                finally:
                    for key in chunk:
                        finished(key)

            MidjourneyHook.afetch_task, MidjourneyHook.alist_task_readings = afetch_task, alist_task_readings

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
        if profiler is not None:  # the wait only, not the imports and setup before it
            profiler.enable()
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
        if profiler is not None:
            profiler.disable()
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
            # Poll rounds: the most reads of any one task (one per interval for each of them).
            "rounds": max(map(len, starts.values()), default=0),
            "cpu_seconds": cpu1 - cpu0, "polls": polls, "cpu_per_poll": (cpu1 - cpu0) / max(1, polls),
            "cpu_per_poll_steady": (cpu1 - cpu_waiting) / max(1, polls - polls_waiting),
            "wait_seconds": wall1 - wall0, "late_p95": percentile(late, 95), "late_max": max(late, default=0.0),
            "events_ok": ok, "unfinished": len(pending),
        })
        return result

    result = asyncio.run(main())
    if profiler is not None:
        profiler.dump_stats(args.profile_file)
    Path(args.result_file).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Where the CPU goes: a cProfile run summarised by area.
# ---------------------------------------------------------------------------------------------

#: (area, what a function's file path contains), first match wins.
AREAS = (
    ("logging (stdlib logging, structlog)", ("/logging/", "structlog", "airflow/sdk/log", "secrets_masker")),
    ("JSON decoding", ("/json/", "msgspec")),
    ("task model (models.py)", ("airflow_provider_mj/models.py",)),
    ("poller and wait (polling.py)", ("airflow_provider_mj/polling.py",)),
    ("trigger (triggers/)", ("airflow_provider_mj/triggers/",)),
    ("hook: replies, transport, retries", ("airflow_provider_mj/hooks/", "tenacity")),
    ("aiohttp and yarl (HTTP client)", ("aiohttp", "yarl", "multidict")),
    ("asyncio event loop", ("asyncio",)),
)


C_AREAS = (
    ("JSON decoding", ("json", "msgspec", "scanner")),
    ("asyncio event loop", ("epoll", "select", "_asyncio", "socket", "_ssl")),
    ("logging (stdlib logging, structlog)", ("write", "flush", "strftime", "format")),
)


def profile_summary(path: str, top: int = 12) -> list[str]:
    """Share of own (tottime) CPU by area, then the top functions, from a cProfile dump."""
    import pstats

    stats = pstats.Stats(path)
    by_area: dict[str, float] = {}
    rows = []
    total = 0.0
    for (filename, line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        # C functions have no file: their name tells ("<method 'decode' of 'msgspec...' objects>").
        where = name if filename == "~" else filename
        area = next((label for label, keys in AREAS if any(k in where for k in keys)), None)
        if area is None and filename == "~":
            area = next((label for label, keys in C_AREAS if any(k in name for k in keys)), "other C functions")
        area = area or "other Python"
        by_area[area] = by_area.get(area, 0.0) + tottime
        rows.append((tottime, f"{Path(filename).name}:{line}({name})" if filename != "~" else name))
    lines = [f"    {share / total * 100:5.1f}%  {area}" for area, share in sorted(by_area.items(), key=lambda kv: -kv[1])]
    lines.append("    top functions by own time:")
    lines += [f"    {t / total * 100:5.1f}%  {where}" for t, where in sorted(rows, reverse=True)[:top]]
    return lines


# ---------------------------------------------------------------------------------------------
# The parent: emulator, submits, counters, report.
# ---------------------------------------------------------------------------------------------


def run_one(base_url: str, mode: str, n: int, args: argparse.Namespace, *, memory_only: bool = False,
            profile_file: str | None = None) -> dict:
    http_json(f"{base_url}/_emulator/reset", {})
    with tempfile.TemporaryDirectory(prefix="mj-density-") as tmp:
        files = {name: str(Path(tmp) / name) for name in ("ready", "ids", "result", "stderr")}
        cmd = [sys.executable, __file__, "--child", "--mode", mode, "--poll-interval", str(args.poll_interval),
               "--job-seconds", str(args.job_seconds), "--ready-file", files["ready"], "--ids-file", files["ids"],
               "--result-file", files["result"]]
        if memory_only:
            cmd.append("--memory-only")
        if profile_file:
            cmd += ["--profile-file", profile_file]
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
        result["requests_per_interval"] = result["requests"] / max(1, result["rounds"])
    return result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


#: CPU per task-poll, baseline / coalesced, that each server must reach.
CPU_TARGETS = {"calm": 40.0, "chatty": 25.0}
RSS_TARGET = 10 * 1024
LATENESS_TARGET = 0.2


def use_server(base_url: str, server: str, args: argparse.Namespace) -> None:
    http_json(f"{base_url}/_emulator/config", {"chatty": server == "chatty",
                                               "status_lag_seconds": args.status_lag_seconds if server == "chatty" else 0})


def report(results: dict, servers: list[str], sizes: list[int], modes: list[str]) -> None:
    print()
    print("| server | mode | triggers | CPU per task-poll | CPU of the wait | RSS per waiting trigger "
          "| tracemalloc per trigger | p95 poll lateness | HTTP requests per interval | events ok |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for server in servers:
        for n in sizes:
            for mode in modes:
                r = results[(server, mode, n)]
                traced = r.get("traced_per_trigger")
                traced_s = f"{traced / 1024:.1f} KB" if traced is not None else "-"
                print(f"| {server} | {mode} | {n} | {r['cpu_per_poll'] * 1e6:.1f} us | {r['cpu_seconds']:.2f} s "
                      f"| {r['rss_per_trigger'] / 1024:.1f} KB | {traced_s} | {r['late_p95'] * 1000:.0f} ms "
                      f"| {r['requests_per_interval']:.1f} | {r['events_ok']}/{n} |")
    print()
    for server in servers:
        for n in sizes:
            if "baseline" in modes:
                base = results[(server, "baseline", n)]["cpu_per_poll"]
                if "per-task" in modes:
                    ratio = base / results[(server, "per-task", n)]["cpu_per_poll"]
                    print(f"{server} n={n}: CPU per task-poll, baseline / per-task: {ratio:.1f}x (target >= 3x): "
                          f"{verdict(ratio >= 3)}")
                if "coalesced" in modes:
                    target = CPU_TARGETS[server]
                    ratio = base / results[(server, "coalesced", n)]["cpu_per_poll"]
                    print(f"{server} n={n}: CPU per task-poll, baseline / coalesced: {ratio:.1f}x "
                          f"(target >= {target:g}x): {verdict(ratio >= target)}")
            if "coalesced" in modes:
                r = results[(server, "coalesced", n)]
                print(f"{server} n={n}: coalesced RSS per waiting trigger {r['rss_per_trigger'] / 1024:.1f} KB "
                      f"(target <= 10 KB): {verdict(r['rss_per_trigger'] <= RSS_TARGET)}")
                traced = r.get("traced_per_trigger")
                if traced is not None:
                    print(f"{server} n={n}: coalesced tracemalloc per waiting trigger {traced / 1024:.1f} KB "
                          f"(target <= 10 KB): {verdict(traced <= RSS_TARGET)}")
                print(f"{server} n={n}: coalesced p95 poll lateness {r['late_p95'] * 1000:.0f} ms "
                      f"(target < 200 ms at 1,000): {verdict(r['late_p95'] < LATENESS_TARGET)}")
                allowed = math.ceil(n / 500)
                # A tick that runs late can put two ticks in one nominal interval: allow 5% over.
                print(f"{server} n={n}: HTTP requests per interval {r['requests_per_interval']:.2f} "
                      f"(target <= {allowed}, one per 500 ids): {verdict(r['requests_per_interval'] <= allowed * 1.05)}")
    failed = [key for key, r in results.items() if r["events_ok"] != key[2]]
    if failed:
        print(f"WARNING: not every trigger fired a success event: {failed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 triggers, 2 s jobs, 0.5 s polls")
    parser.add_argument("--server", choices=("calm", "chatty", "both"), default="both",
                        help="the emulator's behaviour: calm (default emulator), chatty (a chatty relay), or both")
    parser.add_argument("--sizes", default=None, help="comma-separated trigger counts (default 500,1000)")
    parser.add_argument("--job-seconds", type=float, default=None, help="job duration (default 30)")
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds between polls (default 1)")
    parser.add_argument("--status-lag-seconds", type=float, default=0.0, help="chatty server's status lag")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the coalesced triggers at the largest size, per server")
    # The measured child process.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    parser.add_argument("--ids-file", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--profile-file", help=argparse.SUPPRESS)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    quick = args.quick
    sizes = [int(s) for s in (args.sizes or ("50" if quick else "500,1000")).split(",")]
    args.job_seconds = args.job_seconds or (2.0 if quick else 30.0)
    args.poll_interval = args.poll_interval or (0.5 if quick else 1.0)
    modes = [m for m in args.modes.split(",") if m]
    servers = ["calm", "chatty"] if args.server == "both" else [args.server]
    tracemalloc_runs = not (quick or args.no_tracemalloc)

    print(f"machine: {machine()}")
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"jobs of {args.job_seconds:g} s, polls every {args.poll_interval:g} s, sizes {sizes}, modes {modes}, "
          f"servers {servers}")
    results: dict[tuple[str, str, int], dict] = {}
    profiles: dict[str, list[str]] = {}
    with emulator_process(job_seconds=args.job_seconds) as (base_url, _):
        for server in servers:
            use_server(base_url, server, args)
            for i, n in enumerate(sizes):
                order = modes[i % len(modes):] + modes[: i % len(modes)]  # interleave: rotate the order per size
                for mode in order:
                    r = run_one(base_url, mode, n, args)
                    results[(server, mode, n)] = r
                    print(f"  {server:<6} {mode:<9} n={n:<5} cpu/poll {r['cpu_per_poll'] * 1e6:8.1f} us "
                          f"(steady {r['cpu_per_poll_steady'] * 1e6:7.1f})  wait cpu {r['cpu_seconds']:6.2f} s  "
                          f"rss/trigger {r['rss_per_trigger'] / 1024:6.1f} KB  "
                          f"late p95 {r['late_p95'] * 1000:6.1f} ms (max {r['late_max'] * 1000:6.1f})  "
                          f"req/interval {r['requests_per_interval']:7.2f}  ok {r['events_ok']}/{n}", flush=True)
            if tracemalloc_runs:
                for n in sizes:
                    for mode in modes:
                        r = run_one(base_url, mode, n, args, memory_only=True)
                        results[(server, mode, n)]["traced_per_trigger"] = r["traced_per_trigger"]
                        print(f"  {server:<6} {mode:<9} n={n:<5} tracemalloc/trigger "
                              f"{r['traced_per_trigger'] / 1024:6.1f} KB "
                              f"(rss/trigger in that run {r['rss_per_trigger'] / 1024:6.1f} KB)", flush=True)
            if args.profile and "coalesced" in modes:
                with tempfile.TemporaryDirectory(prefix="mj-density-profile-") as tmp:
                    path = str(Path(tmp) / "coalesced.prof")
                    run_one(base_url, "coalesced", max(sizes), args, profile_file=path)
                    profiles[server] = profile_summary(path)

    report(results, servers, sizes, modes)
    if quick:
        print("(quick run: a smoke test of the script; its figures and verdicts mean little)")
    for server, lines in profiles.items():
        print()
        print(f"profile: {server} server, coalesced, {max(sizes)} triggers (share of the trigger process's CPU):")
        print("\n".join(lines))
    print()
    print(f"load average after the run: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
