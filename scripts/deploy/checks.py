"""Checks of the whole deployment: every socket on loopback, and the UI in headless Chromium."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from .common import BROWSER_DIR, MARKER_ENV, CheckBook
from .processes import die_with_parent

#: Labels our connection type adds to the connection form (get_provider_info.CONNECTION_FIELDS + relabeling).
EXPECTED_CONN_LABELS = ["Base URL", "API Key", "Auth header style", "Speed mode"]
#: The auth-style field and the default the form must show selected (not Airflow's masked "Select Value").
AUTH_STYLE_FIELD = {"label": "Auth header style", "default": "bearer"}


def check_loopback_only(dep) -> None:
    """Every listening TCP/UDP socket of every process of the deployment is on 127.0.0.1."""
    import psutil

    owned = {p.pid: p for p in dep.marked_processes()}
    listening = []
    for c in psutil.net_connections(kind="inet"):
        if c.pid in owned and (c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr)):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(owned[c.pid].cmdline()[:3])[:90]
                listening.append((c.pid, cmd, c.laddr.ip, c.laddr.port))
    listening = sorted(set(listening))
    dep.report["listening_sockets"] = listening
    bad = [entry for entry in listening if entry[2] != "127.0.0.1"]
    expected_ports = {int(dep.env["AIRFLOW__API__PORT"]), dep.pg_dsn["port"]}
    if dep.redis_port:
        expected_ports.add(dep.redis_port)
    missing = expected_ports - {entry[3] for entry in listening}
    detail = {"non_loopback": bad, "expected_ports_not_found": sorted(missing),
              "sockets": [f"{e[1] or e[0]} @ {e[2]}:{e[3]}" for e in listening]}
    CheckBook(dep.report)("every server listens on 127.0.0.1 only", not bad and not missing, detail)


def run_browser_script(dep, args: argparse.Namespace, chromium: str, node: str, script: str, cfg: dict) -> dict:
    """Run one script of tests/deploy/browser in headless Chromium; record its checks; its RESULT.

    The script gets the browser, a fresh profile and the artifacts folder on top of ``cfg``, and
    prints ``RESULT {checks, screenshots}``. Chromium carries the run's marker (teardown finds it
    wherever it is) and no proxy setting: everything it opens is on 127.0.0.1 or a local file.
    """
    name = Path(script).stem
    cfg = {"chromium": chromium, "userDataDir": str(dep.tmp / f"chromium-{name}"), "artifacts": str(args.artifacts),
           **cfg}
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update({MARKER_ENV: dep.run_marker, "NO_PROXY": "127.0.0.1,localhost"})
    res = subprocess.run([node, str(BROWSER_DIR / script), json.dumps(cfg)], cwd=BROWSER_DIR, env=env,
                         capture_output=True, text=True, timeout=args.browser_timeout, preexec_fn=die_with_parent)
    (dep.logs / f"browser-{name}.log").write_text(res.stdout + "\n--- stderr ---\n" + res.stderr)
    result: dict[str, Any] = {}
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            break
    check = CheckBook(dep.report)
    for check_name, c in (result.get("checks") or {}).items():
        check(f"browser: {check_name}", c["ok"], c.get("detail"))
    if res.returncode != 0 or not result.get("checks"):
        check(f"browser: {script} ran", False, f"exited {res.returncode}: {(res.stderr or res.stdout)[-1500:]}")
    return result


def run_browser(dep, args: argparse.Namespace, chromium: str, node: str) -> None:
    """The UI: login, our connection form, the imagine's extra link (check_ui.js)."""
    dep.report["browser"] = run_browser_script(dep, args, chromium, node, "check_ui.js", {
        "baseUrl": dep.api_url,
        "username": "admin",
        "password": dep.password,
        "dagId": args.dag_id,
        "runId": dep.report.get("run_id"),
        "linkTask": args.link_task,
        "expectedLink": dep.report.get("image_url"),
        "connType": "midjourney",
        "expectedLabels": EXPECTED_CONN_LABELS,
        "authStyle": AUTH_STYLE_FIELD,
    })
