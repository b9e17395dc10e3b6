"""Running ``scripts/deploy_test.py`` once per profile and reading its JSON report.

The script builds its own environment for the deployment (it drops every AIRFLOW_* variable the
suite's conftest exported), so the suite's SQLite home is never touched. Skipped only when a
prerequisite outside the project is missing and cannot be installed (the script exits 77 and
says why); as root (CI) it installs what is missing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "deploy_test.py"
EXIT_SKIP = 77


def run_deploy_test(profile: str, report_dir: Path, artifacts: Path, timeout_s: float) -> dict:
    """Run one profile to the end (or SIGTERM it past ``timeout_s``: it tears down on SIGTERM)."""
    report_path = report_dir / "report.json"
    cmd = [sys.executable, str(SCRIPT), "--profile", profile, "--report", str(report_path),
           "--artifacts", str(artifacts)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail(f"deploy_test.py --profile {profile} did not finish in {timeout_s:.0f}s:\n{output[-6000:]}")
    if proc.returncode == EXIT_SKIP:
        reason = "prerequisite missing"
        if report_path.exists():
            reason = json.loads(report_path.read_text()).get("reason", reason)
        pytest.skip(f"deployment test cannot run here: {reason}")
    if not report_path.exists():
        pytest.fail(f"deploy_test.py exited {proc.returncode} without a report:\n{output[-6000:]}")
    report = json.loads(report_path.read_text())
    report["_exit_code"] = proc.returncode
    report["_output"] = output
    return report


def check(report: dict, name: str) -> dict:
    """Assert that the named check of the report ran and passed; return its detail."""
    checks = report.get("checks", {})
    if name not in checks:
        pytest.fail(f"check {name!r} did not run; failures: {report.get('failures')}\n{report['_output'][-5000:]}")
    c = checks[name]
    assert c["ok"], f"{name}: {json.dumps(c.get('detail'), indent=1, default=str)[:3000]}"
    return c.get("detail")


def assert_script_passed(report: dict) -> None:
    """The script exited 0 with status ``passed`` (else: its failures and the end of its output)."""
    assert report["status"] == "passed" and report["_exit_code"] == 0, (
        "failures:\n" + "\n".join(map(str, report.get("failures", []))) + "\n" + report["_output"][-5000:]
    )


def assert_nothing_left_running(report: dict) -> None:
    """Teardown left no process of the run alive and removed its temp dir.

    (Only ``--keep-tmp``, which this suite never passes, keeps the temp dir.)
    """
    assert report["processes_after_teardown"] == [], report["processes_after_teardown"]
    assert not Path(report["tmp"]).exists(), report["tmp"]
