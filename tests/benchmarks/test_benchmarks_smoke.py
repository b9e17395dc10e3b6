"""Each benchmark runs in its --quick mode and prints its figures (no speed assertions here).

Speed targets live in the benchmarks' own output (benchmarks/README.md), never in unit tests: a
shared CI machine is too noisy for them. These tests only keep the scripts working.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, timeout: float) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize(
    ("name", "figures"),
    [
        ("triggerer_density.py", ["CPU per task-poll", "RSS per waiting trigger", "p95 poll lateness",
                                  "HTTP requests per interval", "| calm | baseline |", "| calm | coalesced |",
                                  "| chatty | baseline |", "| chatty | per-task |", "| chatty | coalesced |",
                                  "chatty n=50: CPU per task-poll, baseline / coalesced"]),
        ("decode_cost.py", ["| IN_PROGRESS tasks", "| finished tasks", "msgspec, fields only"]),
        ("end_to_end_latency.py", ["| coalesced |", "| per-task |", "p95 latency within poll interval"]),
        ("import_cost.py", ["operators import on top of airflow.sdk", "heavy modules loaded"]),
        ("download_memory.py", ["| buffered (baseline) |", "| 20 MB |", "largest streamed growth"]),
    ],
)
def test_benchmark_quick_mode_prints_its_figures(name, figures):
    out = run_benchmark(name, timeout=300)
    for figure in figures:
        assert figure in out, out
    assert "machine:" in out
