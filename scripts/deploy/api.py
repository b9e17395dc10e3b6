"""The public REST API (v2) of the deployment, and waiting on conditions."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .common import LOCAL_HTTP, CheckFailed

TERMINAL_RUN_STATES = {"success", "failed"}


class Api:
    def __init__(self, base: str, username: str, password: str):
        import requests

        self.base = base
        self.s = requests.Session()
        self.s.trust_env = False
        self.username, self.password = username, password

    def login(self) -> None:
        r = self.s.post(f"{self.base}/auth/token", json={"username": self.username, "password": self.password},
                        timeout=30)
        if r.status_code not in (200, 201):
            raise CheckFailed(f"POST /auth/token -> {r.status_code} {r.text[:300]}")
        self.s.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def request(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kw) -> Any:
        r = self.s.request(method, f"{self.base}{path}", timeout=60, **kw)
        if r.status_code == 401:  # token expired: log in again once
            self.login()
            r = self.s.request(method, f"{self.base}{path}", timeout=60, **kw)
        if r.status_code not in expect:
            raise CheckFailed(f"{method} {path} -> {r.status_code} {r.text[:500]}")
        return r.json() if r.content else None

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                        params={"limit": 100})["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1,
                 save_to: Path | None = None) -> list[str]:
        """The events (lines) of one try's log, worker and triggerer parts alike (the whole reply
        saved as JSON in ``save_to`` if given)."""
        content = self.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": "true"}, headers={"Accept": "application/json"},
        )
        if save_to is not None:
            save_to.write_text(json.dumps(content, indent=1))
        return [str(e.get("event", "")) for e in (content or {}).get("content", []) if isinstance(e, dict)]

    def wait_parsed(self, dag_id: str, dep) -> dict:
        """Wait until the dag-processor has parsed ``dag_id`` (no import error); the DAG (REST API)."""

        def parsed():
            errors = self.get("/api/v2/importErrors").get("import_errors", [])
            if errors:
                raise CheckFailed(f"import errors in the dags folder: {json.dumps(errors)[:3000]}")
            r = self.s.get(f"{self.base}/api/v2/dags/{dag_id}", timeout=30)
            return r.json() if r.status_code == 200 else None

        return wait_until(f"DAG {dag_id} parsed by the dag-processor", parsed, 180, 2, dep)

    def trigger(self, dag_id: str, conf: dict | None = None, **run: Any) -> str:
        """Trigger ``dag_id``, then unpause it (a paused DAG's runs are not scheduled); the new run's id.

        The run has no logical date (the UI's and the API's default) unless ``run`` gives one, with
        ``data_interval_start``/``data_interval_end``. Triggered before unpausing, so that a
        scheduled run cannot take that logical date first.
        """
        body = {"logical_date": None, "conf": conf or {}, **run}
        run_id = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        return run_id


def ti_key(ti: dict) -> str:
    mi = ti.get("map_index", -1)
    return ti["task_id"] if mi is None or mi < 0 else f"{ti['task_id']}[{mi}]"


def trigger_log_jobs(events: list[str]) -> list[int]:
    """The triggerer jobs that wrote a part of a task log: Airflow names each part's source file
    after its job (``.../attempt=1.log.trigger.<job id>.log``), one event of the log."""
    return sorted({int(e.rsplit(".trigger.", 1)[1].split(".")[0]) for e in events if ".trigger." in e and e.endswith(".log")})


def split_key(key: str) -> tuple[str, int]:
    if "[" in key:
        t, mi = key[:-1].split("[")
        return t, int(mi)
    return key, -1


def wait_until(what: str, fn, timeout: float, interval: float = 1.0, dep=None):
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if dep is not None:
            dep.check_alive()
        try:
            value = fn()
            if value:
                return value
        except CheckFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))


def wait_healthy(dep, timeout: float) -> dict:
    def healthy():
        h = LOCAL_HTTP.get(f"{dep.api_url}/api/v2/monitor/health", timeout=5).json()
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        if all((h.get(p) or {}).get("status") == "healthy" for p in parts):
            return h
        return None

    return wait_until("all components healthy (/api/v2/monitor/health)", healthy, timeout, dep=dep)


def trigger_rows(dep, dag_id: str, run_id: str) -> list[tuple]:
    """Triggers attached to task instances of the run: (task_id, map_index, trigger id, classpath, triggerer job id)."""
    return dep.sql(
        "SELECT ti.task_id, ti.map_index, t.id, t.classpath, t.triggerer_id "
        "FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "WHERE ti.dag_id = %s AND ti.run_id = %s",
        dag_id, run_id,
    )


def triggerer_jobs(dep) -> list[tuple]:
    return dep.sql("SELECT id, state, hostname FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
