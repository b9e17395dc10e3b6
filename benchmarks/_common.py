"""Helpers shared by the benchmarks: the emulator in its own process, RSS, percentiles.

Not a benchmark itself (the leading underscore): each ``benchmarks/*.py`` script imports it from
its own directory.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class EmulatorProcess(NamedTuple):
    url: str
    pid: int


@contextmanager
def emulator_process(*, job_seconds: float, concurrency: int = 100_000, queue_limit: int = 100_000,
                     max_tasks: int = 100_000, extra: tuple[str, ...] = ()) -> Iterator[EmulatorProcess]:
    """The emulator in a separate process on 127.0.0.1 (so the measured process holds only what it measures).

    By default its account never queues or refuses a job. Yields its base URL and pid; the
    process is terminated on exit. ``extra``: more ``mj-emulator`` flags.
    """
    cmd = [sys.executable, "-m", "airflow_provider_mj.emulator", "--port", "0",
           "--job-seconds", str(job_seconds), "--concurrency", str(concurrency), "--queue-limit", str(queue_limit),
           "--max-tasks", str(max_tasks), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if not m:
            raise SystemExit(f"emulator did not start: {line!r}")
        yield EmulatorProcess(m.group(1), proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def http_json(url: str, body: dict | None = None, timeout: float = 30) -> object:
    """One blocking JSON request (the parent process only; the measured children never do this)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def submit_jobs(base_url: str, count: int, label: str) -> list[str]:
    """Submit ``count`` imagine jobs to the emulator concurrently; their ids, in order."""
    from concurrent.futures import ThreadPoolExecutor

    def one(n: int) -> str:
        reply = http_json(f"{base_url}/mj/submit/imagine", {"prompt": f"{label} {n}"})
        if reply.get("code") not in (1, 22):
            raise SystemExit(f"submit refused: {reply}")
        return reply["result"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of process ``pid``, this one by default (Linux /proc)."""
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        airflow = version("apache-airflow")
    except Exception:
        airflow = "?"
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, Airflow {airflow}, "
            f"{time.strftime('%Y-%m-%d')}")


def connection_env(base_url: str) -> dict[str, str]:
    """Environment with the Midjourney connection and an http connection, both at the emulator."""
    env = os.environ.copy()
    env["AIRFLOW_CONN_MIDJOURNEY_DEFAULT"] = json.dumps(
        {"conn_type": "midjourney", "host": base_url, "extra": {"retry_min_wait": 0.05, "retry_max_wait": 0.5}})
    env["AIRFLOW_CONN_EMULATOR_HTTP"] = json.dumps({"conn_type": "http", "host": base_url})
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    if "AIRFLOW_HOME" not in env:  # never touch the user's ~/airflow
        import tempfile

        env["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="mj-bench-airflow-home-")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env
