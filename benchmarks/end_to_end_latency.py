"""End-to-end latency: from the emulator marking a job SUCCESS to the trigger's event.

Jobs are submitted at random moments over ``--spread`` seconds, each followed, after a random
delay of up to one poll interval (the operator deferring, the triggerer picking the trigger up),
by a ``MidjourneyTaskTrigger`` waiting for it (its ``run()`` as an asyncio task, as the
triggerer runs it); submits alternate between coalesced and per-task triggers, so both modes are measured in
the same run under the same load. The latency of a job is the wall-clock time at which its
trigger yielded its event minus the job's ``finishTime`` (the emulator, in another process on the
same machine, sets it to the instant the job turned SUCCESS). A poll lands anywhere in the
interval after that instant, so the expected latency is up to one poll interval plus a request.

    .venv/bin/python benchmarks/end_to_end_latency.py            # 100 jobs, 3 s polls (~20 s)
    .venv/bin/python benchmarks/end_to_end_latency.py --quick    # smoke run (~5 s)

Target: p95 latency <= poll interval + 100 ms. What follows the event (the triggerer handing it to
the scheduler, a worker running ``execute_complete``) is Airflow's, not measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import connection_env, emulator_process, machine, percentile  # noqa: E402

MODES = ("coalesced", "per-task")


async def measure(base_url: str, args: argparse.Namespace) -> dict[str, list[float]]:
    import aiohttp

    from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger

    rnd = random.Random(7)
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
    failures: list[str] = []

    async def wait(trigger: MidjourneyTaskTrigger, mode: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async for event in trigger.run():
            now = time.time()
            payload = event.payload
            if payload["status"] != "success":
                failures.append(f"{payload['mj_task_id']}: {payload['status']} {payload['message']}")
                continue
            latencies[mode].append(now - payload["task"]["finishTime"] / 1000)

    offsets = sorted(rnd.uniform(0, args.spread) for _ in range(args.jobs))
    waiters = []
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        for n, offset in enumerate(offsets):
            await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
            async with session.post(f"{base_url}/mj/submit/imagine", json={"prompt": f"a latency job {n}"}) as r:
                mj_task_id = (await r.json())["result"]
            mode = MODES[n % len(MODES)]
            trigger = MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=args.poll_interval,
                                            deadline=time.time() + args.job_seconds + 60,
                                            coalesce=(mode == "coalesced"))
            waiters.append(asyncio.create_task(wait(trigger, mode, rnd.uniform(0, args.poll_interval))))
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=args.spread + args.job_seconds + 60)
    if failures:
        raise SystemExit("some jobs did not succeed:\n" + "\n".join(failures[:10]))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 jobs of 1 s, 0.5 s polls")
    parser.add_argument("--jobs", type=int, default=None, help="jobs (default 100)")
    parser.add_argument("--job-seconds", type=float, default=None, help="job duration (default 5)")
    parser.add_argument("--poll-interval", type=float, default=None, help="seconds between polls (default 3)")
    parser.add_argument("--spread", type=float, default=None, help="submits spread over this many seconds (default 6)")
    args = parser.parse_args()
    args.jobs = args.jobs or (20 if args.quick else 100)
    args.job_seconds = args.job_seconds or (1.0 if args.quick else 5.0)
    args.poll_interval = args.poll_interval or (0.5 if args.quick else 3.0)
    args.spread = args.spread if args.spread is not None else (1.0 if args.quick else 6.0)

    print(f"machine: {machine()}")
    print(f"{args.jobs} jobs of {args.job_seconds:g} s submitted over {args.spread:g} s, "
          f"polls every {args.poll_interval:g} s, modes alternating {MODES}")
    with emulator_process(job_seconds=args.job_seconds) as (base_url, _):
        env = connection_env(base_url)
        for name in ("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", "AIRFLOW_HOME", "AIRFLOW__CORE__LOAD_EXAMPLES"):
            os.environ[name] = env[name]
        # The triggers' progress lines go to stdout: keep them out of the figures.
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        try:
            latencies = asyncio.run(measure(base_url, args))
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(devnull)
            os.close(saved)

    target = args.poll_interval + 0.1
    print()
    print("| mode | jobs | median | p95 | max | target p95 <= interval + 100 ms |")
    print("|---|---:|---:|---:|---:|---|")
    verdicts = []
    for mode in MODES:
        values = latencies[mode]
        p95 = percentile(values, 95)
        verdicts.append(p95 <= target)
        print(f"| {mode} | {len(values)} | {statistics.median(values) * 1000:.0f} ms | {p95 * 1000:.0f} ms "
              f"| {max(values) * 1000:.0f} ms | {'PASS' if p95 <= target else 'FAIL'} ({target * 1000:.0f} ms) |")
    print()
    print(f"p95 latency within poll interval + 100 ms: {'PASS' if all(verdicts) else 'FAIL'}")


if __name__ == "__main__":
    main()
