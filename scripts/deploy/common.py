"""What every part of the deployment test shares: paths, the log line, errors, the check book."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = REPO_ROOT / "tests" / "deploy" / "browser"
#: DAGs that only the deployment test runs (the burst, the worker kill); not examples for users.
TEST_DAGS_DIR = REPO_ROOT / "tests" / "deploy" / "dags"
DEFAULT_ARTIFACTS = REPO_ROOT / "test-artifacts" / "deploy"
EXIT_SKIP = 77
#: Environment variable carrying this run's marker into every process it starts.
MARKER_ENV = "MJ_DEPLOY_TEST_RUN"

#: HTTP to the deployment's own servers on 127.0.0.1, never through a proxy of the environment
#: (nor with its .netrc credentials).
LOCAL_HTTP = requests.Session()
LOCAL_HTTP.trust_env = False

_T0 = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - _T0


def log(msg: str) -> None:
    print(f"[deploy-test {elapsed():6.1f}s] {msg}", flush=True)


class Unavailable(Exception):
    """A prerequisite outside the project is missing and cannot be installed: skip, don't fail."""


class CheckFailed(AssertionError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CheckBook:
    """Named pass/fail checks written into the run's report (``report["checks"]``, ``["failures"]``).

    Every check is logged as it is decided; the pytest side asserts them one by one by name.
    """

    def __init__(self, report: dict[str, Any]):
        self.report = report
        report.setdefault("checks", {})
        report.setdefault("failures", [])

    def __call__(self, name: str, ok: Any, detail: Any = None) -> bool:
        ok = bool(ok)
        self.report["checks"][name] = {"ok": ok, "detail": detail}
        log(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail is not None and not ok else ""))
        if not ok:
            self.report["failures"].append(f"{name}: {detail}")
        return ok
