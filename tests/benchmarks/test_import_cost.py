"""Importing the operators (what every DAG file does) must not load the heavy run-time modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("fastapi", "uvicorn", "starlette", "aiohttp", "airflow_provider_mj.emulator")


def test_importing_the_operators_loads_no_server_http_client_or_emulator(tmp_path):
    code = (
        "import json, sys\n"
        "import airflow_provider_mj.operators, airflow_provider_mj.sensors\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
