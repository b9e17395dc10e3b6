"""Throughput of the emulator under mixed fetch traffic, against a bare FastAPI baseline.

Each server runs in its own process (uvicorn, same loop and HTTP implementation); the load comes
from aiohttp in this process, ``--connections`` concurrent workers, for ``--seconds`` per server
(or ``--requests``, whichever comes first). Traffic on the emulator: 70% fetch of a known task
(finished, running or queued), 10% fetch of an unknown id, 20% list-by-condition of 10 ids.
Baseline: a bare FastAPI ``GET /hello`` returning a small JSON object.

    .venv/bin/python benchmarks/emulator_throughput.py [--seconds 5] [--connections 32]

Target: >= 500 requests/s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emulator_process, percentile  # noqa: E402

BASELINE = textwrap.dedent("""
    import sys, uvicorn
    from fastapi import FastAPI
    app = FastAPI()
    @app.get("/hello")
    async def hello():
        return {"hello": "world"}
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                lifespan="off")
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_baseline() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BASELINE, str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, base
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("baseline did not start")


async def prepare(session: aiohttp.ClientSession, base: str) -> list[str]:
    """Tasks in every state: 150 finished, then 100 running and 50 queued."""
    async def imagine(prompt: str) -> str:
        async with session.post(base + "/mj/submit/imagine", json={"prompt": prompt}) as r:
            return (await r.json())["result"]

    ids = [await imagine(f"finished {n}") for n in range(150)]
    await asyncio.sleep(0.7)
    async with session.post(base + "/_emulator/config", json={"job_seconds": 600}) as r:
        r.raise_for_status()
    ids += [await imagine(f"running {n}") for n in range(150)]
    return ids


async def load(base: str, paths, seconds: float, max_requests: int, connections: int) -> dict:
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker(seed: int) -> None:
            nonlocal errors
            rnd = random.Random(seed)
            while time.monotonic() < stop_at and len(latencies) < max_requests:
                method, path, body = paths(rnd)
                t = time.perf_counter()
                try:
                    async with session.request(method, base + path, json=body) as r:
                        await r.read()
                        if r.status >= 500:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(connections)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "errors": errors,
            "p50": statistics.median(latencies) * 1000, "p95": percentile(latencies, 95) * 1000}


def report(name: str, r: dict) -> None:
    print(f"{name:<10} {r['requests']:>7} requests  {r['rps']:>8.0f} req/s  p50 {r['p50']:6.2f} ms  "
          f"p95 {r['p95']:6.2f} ms  errors {r['errors']}")


async def main_async(args: argparse.Namespace) -> None:
    with emulator_process(job_seconds=0.5, concurrency=100, queue_limit=1000) as (emu_base, _):
        base_proc, base_base = start_baseline()
        try:
            async with aiohttp.ClientSession() as session:
                ids = await prepare(session, emu_base)

            def mixed(rnd: random.Random):
                x = rnd.random()
                if x < 0.7:
                    return "GET", f"/mj/task/{rnd.choice(ids)}/fetch", None
                if x < 0.8:
                    return "GET", f"/mj/task/{rnd.randrange(10**15, 10**16)}/fetch", None
                return "POST", "/mj/task/list-by-condition", {"ids": rnd.sample(ids, 10)}

            # Warm both up, then measure.
            await load(emu_base, mixed, 0.5, 10**9, args.connections)
            await load(base_base, lambda rnd: ("GET", "/hello", None), 0.5, 10**9, args.connections)
            emulator = await load(emu_base, mixed, args.seconds, args.requests, args.connections)
            baseline = await load(base_base, lambda rnd: ("GET", "/hello", None), args.seconds, args.requests,
                                  args.connections)
        finally:
            base_proc.terminate()
            base_proc.wait(timeout=10)
    print(f"mixed fetch traffic, {args.connections} connections, {args.seconds:.0f} s per server")
    report("emulator", emulator)
    report("baseline", baseline)
    print(f"ratio emulator/baseline: {emulator['rps'] / baseline['rps']:.2f}")
    verdict = "OK" if emulator["rps"] >= 500 else "BELOW TARGET"
    print(f"target >= 500 req/s: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=32)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
