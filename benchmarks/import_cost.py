"""Parse-time cost: what importing the provider's operators adds on top of ``airflow.sdk``.

A DAG file that uses the provider does ``from airflow.sdk import ...`` and
``from airflow_provider_mj.operators import ...``; the DAG processor pays for both on every parse
in a fresh process. Each measurement is a fresh interpreter:

* in-process: the time of ``import airflow_provider_mj.operators`` right after ``import
  airflow.sdk`` (``time.perf_counter`` around the import);
* whole process: wall time of ``python -c "import airflow.sdk; import airflow_provider_mj.operators"``
  minus that of ``python -c "import airflow.sdk"``, the two runs interleaved.

Medians over ``--repeat`` runs. Also lists the heavy modules the import must not load.

    .venv/bin/python benchmarks/import_cost.py            # 15 runs (~1 min)
    .venv/bin/python benchmarks/import_cost.py --quick    # 2 runs, operators only

Target: <= 50 ms (in-process median).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, machine  # noqa: E402

HEAVY = ("aiohttp", "requests", "fastapi", "uvicorn", "starlette", "PIL", "airflow_provider_mj.emulator",
         "airflow_provider_mj.hooks.midjourney")

PROBE = """
import json, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
import {module}
t2 = time.perf_counter()
heavy = {heavy!r}
print(json.dumps({{"sdk": t1 - t0, "provider": t2 - t1, "loaded": [m for m in heavy if m in sys.modules]}}))
"""

MODULES = ("airflow_provider_mj.operators", "airflow_provider_mj.sensors")


def env() -> dict[str, str]:
    e = os.environ.copy()
    e.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mj-bench-airflow-home-"))
    e["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
    return e


def timed(code: str, environ: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=environ, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 runs of the operators module only")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    repeat = args.repeat or (2 if args.quick else 15)
    modules = MODULES[:1] if args.quick else MODULES
    environ = env()
    timed("import airflow.sdk", environ)  # warm the file cache and the .pyc files once

    print(f"machine: {machine()}")
    print(f"{repeat} fresh interpreters per measurement, interleaved; medians")
    print()
    print("| module | in-process import after airflow.sdk | whole process, minus airflow.sdk alone "
          "| airflow.sdk alone | heavy modules loaded |")
    print("|---|---:|---:|---:|---|")
    verdict = None
    for module in modules:
        inproc, alone, both, loaded = [], [], [], set()
        probe = PROBE.format(module=module, heavy=HEAVY)
        for _ in range(repeat):
            wall_alone, _out = timed("import airflow.sdk", environ)
            wall_both, out = timed(probe, environ)
            figures = json.loads(out.strip().splitlines()[-1])
            inproc.append(figures["provider"])
            alone.append(wall_alone)
            both.append(wall_both)
            loaded.update(figures["loaded"])
        median = statistics.median(inproc)
        extra = statistics.median(both) - statistics.median(alone)
        print(f"| `{module}` | {median * 1000:.1f} ms | {extra * 1000:.0f} ms | {statistics.median(alone) * 1000:.0f} ms "
              f"| {', '.join(sorted(loaded)) or 'none'} |")
        if module == "airflow_provider_mj.operators":
            verdict = (median, loaded)
    print()
    median, loaded = verdict
    print(f"operators import on top of airflow.sdk: {median * 1000:.1f} ms (target <= 50 ms): "
          f"{'PASS' if median <= 0.05 else 'FAIL'}; heavy modules loaded: {', '.join(sorted(loaded)) or 'none'}")


if __name__ == "__main__":
    main()
