"""Command line and the two profiles of the deployment test (see scripts/deploy_test.py)."""

from __future__ import annotations

import argparse
import atexit
import json
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from . import celery_run
from .api import Api, wait_healthy
from .assets import run_contact_sheet
from .checks import check_loopback_only, run_browser
from .common import DEFAULT_ARTIFACTS, EXIT_SKIP, REPO_ROOT, CheckBook, CheckFailed, Unavailable, elapsed, log
from .flagship import run_dag
from .prereqs import ensure_browser_tools, ensure_celery_provider, ensure_db_driver, ensure_postgres, ensure_redis
from .processes import Deployment, sigterm_with_parent

PROFILES = ("local", "celery")


def parse_args(argv: list[str] | None, description: str = "") -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--profile", choices=PROFILES, default="local",
                   help="local: LocalExecutor, one triggerer (restarted), Chromium; celery: CeleryExecutor with "
                        "Redis and two workers, two triggerers, the burst with failover, a killed worker")
    p.add_argument("--dag-id", default="mj_imagine_upscale_describe")
    p.add_argument("--dags-folder", default=str(REPO_ROOT / "dags"), help="local profile only")
    p.add_argument("--job-seconds", type=float, default=None,
                   help="emulator job duration for the example DAG (default: local 8, long enough to kill the "
                        "triggerer while tasks are deferred; celery 4, no kill there)")
    p.add_argument("--poll-interval", type=float, default=1.0, help="MJ_EXAMPLE_POLL_INTERVAL for the DAG")
    p.add_argument("--poll", type=float, default=1.0, help="how often this script polls the REST API")
    p.add_argument("--run-timeout", type=float, default=300.0)
    p.add_argument("--browser-timeout", type=float, default=180.0)
    p.add_argument("--no-restart-triggerer", dest="restart_triggerer", action="store_false")
    p.add_argument("--no-browser", dest="browser", action="store_false")
    p.add_argument("--no-assets", dest="assets", action="store_false",
                   help="skip mj_daily_content -> mj_contact_sheet (asset events, the scheduled consumer)")
    p.add_argument("--deferring-tasks", default="imagine,upscale,describe",
                   help="comma-separated task ids that must go through the triggerer")
    p.add_argument("--trigger-class", default="airflow_provider_mj.triggers.midjourney.MidjourneyTaskTrigger")
    p.add_argument("--link-task", default="imagine", help="task whose 'Midjourney image' link is checked ('' = skip)")
    p.add_argument("--expect-images", type=int, default=4, help="images expected in output_dir (0 = skip)")
    p.add_argument("--no-counters", dest="expect_counters", action="store_false")
    p.add_argument("--no-emulator", dest="emulator", action="store_false",
                   help="don't start the emulator (only to smoke-test the deployment with another DAG)")
    p.add_argument("--artifacts", default=None, help="screenshots, logs, report (default test-artifacts/deploy[-celery])")
    p.add_argument("--report", help="write the JSON report here too")
    p.add_argument("--hold", type=float, default=0, help="keep the deployment up this long before the browser check (debugging)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, pgdata) for debugging")
    c = p.add_argument_group("celery profile")
    c.add_argument("--worker-concurrency", type=int, default=4, help="task slots of each of the two Celery workers")
    c.add_argument("--task-heartbeat-timeout", type=int, default=20,
                   help="[scheduler] task_instance_heartbeat_timeout: how soon a killed worker's task is retried")
    c.add_argument("--burst-size", type=int, default=30, help="mapped imagines in mj_deploy_burst")
    c.add_argument("--burst-job-seconds", type=float, default=3.0, help="emulator job duration during the burst")
    c.add_argument("--burst-hold-seconds", type=float, default=50.0,
                   help="the account's slots are busy with another client's jobs for this long when the burst "
                        "starts (its jobs queue behind them: about half the burst waits at once on any machine)")
    c.add_argument("--burst-poll-interval", type=float, default=2.0, help="poll_interval of the burst's imagines")
    c.add_argument("--burst-account-slots", type=int, default=3, help="jobs the emulated account runs at once")
    # The account is small and there is no pool: most of the burst's submits are refused (code 23)
    # and must be waited out on the triggerers (MidjourneyRoomTrigger), each prompt submitted once.
    c.add_argument("--burst-account-queue", type=int, default=3,
                   help="queued places of the emulated account (more jobs are refused with code 23 and "
                        "waited out by the operators)")
    c.add_argument("--burst-pool-slots", type=int, default=0,
                   help="slots of the 'midjourney' pool (include_deferred) the burst runs in; 0 = no pool")
    c.add_argument("--triggerer-capacity", type=int, default=0,
                   help="triggers each of the two triggerers runs at most (0: two thirds of --burst-size). A "
                        "triggerer wakes on its own triggers' events, so the busy one loops faster and, uncapped, "
                        "takes every new trigger: the cap makes the other one hold part of the burst")
    c.add_argument("--window-intervals", type=int, default=4,
                   help="poll intervals over which requests are counted, with two triggerers and with one")
    c.add_argument("--kill-job-seconds", type=float, default=30.0,
                   help="emulator job duration of the blocking imagine whose Celery worker is killed")
    args = p.parse_args(argv)
    args.deferring_tasks = [t for t in args.deferring_tasks.split(",") if t]
    if args.triggerer_capacity <= 0:
        args.triggerer_capacity = max(args.burst_size // 2 + 1, args.burst_size * 2 // 3)
    if args.artifacts is None:
        args.artifacts = str(DEFAULT_ARTIFACTS if args.profile == "local" else DEFAULT_ARTIFACTS.with_name("deploy-celery"))
    if args.job_seconds is None:
        args.job_seconds = 8.0 if args.profile == "local" else 4.0
    if args.profile == "celery":
        # Failover is tested with the burst; the UI is the same whatever the executor (local profile).
        args.restart_triggerer = False
        args.browser = False
        args.assets = False
    return args


def _prerequisites(args) -> dict[str, Any]:
    found: dict[str, Any] = {"pg_bin": ensure_postgres(), "scheme": ensure_db_driver()}
    if args.profile == "celery":
        ensure_celery_provider()
        found["redis"] = ensure_redis()
    if args.browser:
        found["chromium"], found["node"] = ensure_browser_tools()
    return found


def _run(dep: Deployment, args, found: dict[str, Any]) -> None:
    report = dep.report
    sql_conn = dep.start_postgres(found["pg_bin"], found["scheme"])
    broker = dep.start_redis(found["redis"]) if dep.celery else None
    dep.emulator_url = dep.start_emulator() if args.emulator else "http://127.0.0.1:9"
    dep.airflow_env(sql_conn, broker)
    dep.start_airflow()
    t = time.monotonic()
    wait_healthy(dep, timeout=240)
    report["timings"]["healthy_after_start_s"] = round(time.monotonic() - t, 1)
    log("all components healthy")
    api = Api(dep.api_url, "admin", dep.password)
    api.login()
    if dep.celery:
        celery_run.check_components(dep, CheckBook(report))
    run_dag(dep, api, args)
    check_loopback_only(dep)
    if dep.celery:
        celery_run.run_burst(dep, api, args)
        celery_run.run_worker_kill(dep, api, args)
        return
    if args.hold:
        (dep.tmp / "deployment.json").write_text(json.dumps(
            {"api_url": dep.api_url, "password": dep.password, "run_id": report.get("run_id"),
             "image_url": report.get("image_url"), "emulator_url": dep.emulator_url}))
        log(f"holding the deployment for {args.hold:.0f}s: {dep.tmp / 'deployment.json'}")
        time.sleep(args.hold)
    if args.browser:
        run_browser(dep, args, found["chromium"], found["node"])
    if args.assets and args.emulator:
        run_contact_sheet(dep, api, args, found.get("chromium"), found.get("node"))


def main(argv: list[str] | None = None, description: str = "") -> int:
    args = parse_args(argv, description)
    Path(args.artifacts).mkdir(parents=True, exist_ok=True)
    for old in Path(args.artifacts).glob("*.png"):
        old.unlink()
    report: dict[str, Any] = {"status": "error", "profile": args.profile}

    def write_report() -> None:
        text = json.dumps(report, indent=2, default=str)
        (Path(args.artifacts) / "report.json").write_text(text)
        if args.report:
            Path(args.report).write_text(text)

    # Die cleanly (finally blocks run) on SIGTERM/SIGHUP, and with our parent (pytest) if it dies.
    def _on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    sigterm_with_parent()

    try:
        found = _prerequisites(args)
    except Unavailable as exc:
        report.update(status="skipped", reason=str(exc))
        write_report()
        log(f"SKIP: {exc}")
        return EXIT_SKIP

    dep = Deployment(args)
    atexit.register(dep.close)
    report = dep.report
    report["status"] = "error"
    try:
        _run(dep, args, found)
        report["status"] = "failed" if report.get("failures") else "passed"
    except (CheckFailed, RuntimeError) as exc:
        report["failures"].append(str(exc))
        report["status"] = "failed"
        log(f"FAIL: {exc}")
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt/SystemExit included: tear down, report
        report["failures"].append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        report["status"] = "error"
        log(f"ERROR: {exc!r}")
        traceback.print_exc()
    finally:
        if report["status"] != "passed":
            procs = list(dep.procs.items()) + [(n, p) for n, p in (("postgres", dep.pg), ("redis", dep.redis)) if p]
            for name, proc in procs:
                log(f"--- last lines of {name} log ---\n{proc.tail(25)}")
        dep.close()
        report["total_s"] = round(elapsed(), 1)
        write_report()
    log(f"{args.profile} profile {report['status'].upper()} in {report['total_s']:.0f}s; artifacts in {args.artifacts}")
    return 0 if report["status"] == "passed" else 1
