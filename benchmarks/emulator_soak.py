"""Memory soak: the emulator's RSS stays flat under a long stream of submits.

Starts the emulator in its own process with ``--max-tasks`` and ``--task-ttl-seconds`` bounds, then
keeps submitting imagines (unique prompts and states), pressing buttons, fetching tasks and
downloading their (unique) images, and prints the emulator's RSS every ``--interval`` seconds.
Growth is measured from the end of the warm-up (once the task store is full) to the end.

    .venv/bin/python benchmarks/emulator_soak.py              # short bounded run (45 s)
    .venv/bin/python benchmarks/emulator_soak.py --minutes 10 # the full soak
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emulator_process, rss_bytes  # noqa: E402


def rss_mb(pid: int) -> float:
    return rss_bytes(pid) / 2**20


async def soak(base: str, pid: int, seconds: float, interval: float, warmup: float, connections: int) -> None:
    counter = itertools.count()
    stop_at = time.monotonic() + seconds
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            n = next(counter)
            async with session.post(base + "/mj/submit/imagine",
                                    json={"prompt": f"soak prompt {n}", "state": f"state-{n}"}) as r:
                task_id = (await r.json()).get("result")
            if task_id:
                async with session.get(f"{base}/mj/task/{task_id}/fetch") as r:
                    await r.read()
            if n % 10 == 0 and task_id:
                await asyncio.sleep(0.12)
                async with session.get(f"{base}/mj/task/{task_id}/fetch") as r:
                    task = await r.json()
                if task and task.get("status") == "SUCCESS":
                    async with session.get(task["imageUrl"]) as r:
                        await r.read()
                    custom_id = task["buttons"][0]["customId"]
                    async with session.post(base + "/mj/submit/action",
                                            json={"taskId": task_id, "customId": custom_id}) as r:
                        await r.read()
            done += 1

    async def monitor() -> None:
        started = time.monotonic()
        baseline = None
        samples = []
        while time.monotonic() < stop_at:
            await asyncio.sleep(interval)
            elapsed = time.monotonic() - started
            rss = rss_mb(pid)
            async with aiohttp.ClientSession() as s, s.get(base + "/_emulator/counters") as r:
                counters = await r.json()
            if baseline is None and elapsed >= warmup:
                baseline = rss
            samples.append(rss)
            print(f"t={elapsed:6.0f}s  rss={rss:7.1f} MB  submits={counters['submits']['imagine']:>8}  "
                  f"tasks={counters['tasks']:>6}  states={len(counters['submits_by_state']):>6}  "
                  f"images_cached={counters['images_cached']}", flush=True)
        if baseline is not None:
            print(f"RSS after warm-up {baseline:.1f} MB, at end {samples[-1]:.1f} MB, "
                  f"max {max(samples):.1f} MB, growth {samples[-1] - baseline:+.1f} MB "
                  f"({(samples[-1] - baseline) / baseline * 100:+.1f}%)")

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(monitor(), *(worker(session) for _ in range(connections)))
    print(f"{done} submit cycles")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=0.75, help="duration (default 0.75; 10 for the full soak)")
    parser.add_argument("--interval", type=float, default=None, help="seconds between RSS samples")
    parser.add_argument("--max-tasks", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    seconds = args.minutes * 60
    interval = args.interval or max(2.0, seconds / 15)
    with emulator_process(job_seconds=0.1, concurrency=10_000, queue_limit=10_000, max_tasks=args.max_tasks,
                          extra=("--task-ttl-seconds", "120", "--image-cache-bytes", str(2 * 2**20))) as (base, pid):
        print(f"soak for {seconds:.0f} s, max_tasks={args.max_tasks}; RSS at start {rss_mb(pid):.1f} MB")
        asyncio.run(soak(base, pid, seconds, interval, warmup=min(seconds / 2, 120), connections=args.connections))


if __name__ == "__main__":
    main()
