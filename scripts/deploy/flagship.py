"""The flagship example DAG (``mj_imagine_upscale_describe``) in a live deployment, with checks.

While the run goes, the task instances (REST API) and the ``trigger`` table (which triggerer job
holds which trigger) are polled; optionally the triggerer is SIGKILLed once mapped tasks are
deferred and a new one is started. Then the run, the deferrals, the emulator's counters, the
saved images, the extra link and a task log are checked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from .api import TERMINAL_RUN_STATES, Api, split_key, ti_key, trigger_log_jobs, trigger_rows, triggerer_jobs
from .common import LOCAL_HTTP, CheckBook, CheckFailed, log

#: What the example DAG must submit, exactly once each (no duplicate after the triggerer restart).
EXPECTED_SUBMITS = {"imagine": 1, "action": 4, "describe": 4}


def _base(key: str) -> str:
    return key.split("[", 1)[0]


def track_triggers(dep, dag_id: str, run_id: str, history: dict[str, dict]) -> None:
    """Record which trigger ids and triggerer jobs each task instance of the run has had."""
    for task_id, map_index, trig_id, classpath, triggerer_id in trigger_rows(dep, dag_id, run_id):
        key = ti_key({"task_id": task_id, "map_index": map_index})
        h = history.setdefault(key, {"classpath": classpath, "trigger_ids": [], "triggerers": []})
        if classpath not in h.setdefault("classpaths", []):  # a task may wait for room, then for its job
            h["classpaths"].append(classpath)
        if trig_id not in h["trigger_ids"]:
            h["trigger_ids"].append(trig_id)
        if triggerer_id is not None and triggerer_id not in h["triggerers"]:
            h["triggerers"].append(triggerer_id)


def run_dag(dep, api: Api, args: argparse.Namespace) -> dict:
    dag_id = args.dag_id
    check = CheckBook(dep.report)

    api.wait_parsed(dag_id, dep)
    conf = {"output_dir": str(dep.output_dir)}
    run_id = api.trigger(dag_id, conf)
    dep.report["run_id"] = run_id
    log(f"triggered {dag_id} run {run_id!r} with conf {conf}")

    seen_deferred: dict[str, int] = {}  # "task_id[map_index]" -> polls seen deferred
    trigger_history: dict[str, dict] = {}  # key -> {"classpath", "triggerers": [...]}
    restart: dict[str, Any] = {"done": False}
    states: dict[str, str] = {}
    t_run = time.monotonic()
    deadline = t_run + args.run_timeout
    while True:
        dep.check_alive()
        if time.monotonic() > deadline:
            raise CheckFailed(f"run {run_id} not finished after {args.run_timeout}s; task states: {states}")
        run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        states = {ti_key(ti): ti["state"] for ti in api.task_instances(dag_id, run_id)}
        for key, state in states.items():
            if state == "deferred":
                seen_deferred[key] = seen_deferred.get(key, 0) + 1
        track_triggers(dep, dag_id, run_id, trigger_history)
        if args.restart_triggerer and not restart["done"]:
            _maybe_restart_triggerer(dep, states, trigger_history, restart)
        if run["state"] in TERMINAL_RUN_STATES:
            break
        time.sleep(args.poll)
    dep.report["timings"]["run_s"] = round(time.monotonic() - t_run, 1)
    log(f"run finished: {run['state']} in {time.monotonic() - t_run:.0f}s; tasks: {states}")
    dep.report["task_states"] = states
    dep.report["seen_deferred"] = seen_deferred
    dep.report["triggers"] = trigger_history
    dep.report["triggerer_restart"] = restart
    dep.report["triggerer_jobs"] = [list(r) for r in triggerer_jobs(dep)]

    # ---- assertions -----------------------------------------------------------------------
    check("run succeeded", run["state"] == "success", run["state"])
    check("every task instance succeeded", bool(states) and all(s == "success" for s in states.values()), states)

    waiting = [k for k in states if _base(k) in args.deferring_tasks]
    check("the waiting tasks exist", len(waiting) >= len(args.deferring_tasks), waiting)
    not_deferred = [k for k in waiting if k not in seen_deferred]
    check("every waiting task was seen in state 'deferred' (REST API)", not not_deferred,
          {"never_seen_deferred": not_deferred, "seen": seen_deferred})
    no_trigger = [k for k in waiting if not trigger_history.get(k, {}).get("triggerers")]
    check("every waiting task's trigger was picked up by a triggerer job (trigger table)", not no_trigger,
          {"without_triggerer": no_trigger})
    classes = sorted({h["classpath"] for h in trigger_history.values()})
    if args.trigger_class:
        check("triggers are of the provider's trigger class", classes == [args.trigger_class], classes)

    if args.restart_triggerer:
        check("triggerer was killed while tasks were deferred and restarted", restart.get("done"), restart)
        if restart.get("done"):
            old, new = restart["old_triggerer_jobs"], restart["new_triggerer_job"]
            moved = {k: trigger_history[k]["triggerers"] for k in restart["deferred_at_kill"] if k in trigger_history}
            not_moved = [k for k, ids in moved.items() if new not in ids]
            check("triggers in flight at the kill were resumed by the new triggerer job", not not_moved and moved,
                  {"old_jobs": old, "new_job": new, "triggerers_per_task": moved})

    if args.expect_counters:
        counters = dep.emulator_counters()
        dep.report["emulator_counters"] = counters
        submits = counters.get("submits", {})
        got = {k: submits.get(k, 0) for k in EXPECTED_SUBMITS}
        check("emulator submits: imagine 1, action 4, describe 4 (no duplicates)", got == EXPECTED_SUBMITS,
              {"submits": submits})

    if args.expect_images:
        _check_outputs(dep, args, check)
    if args.link_task:
        _check_link(dep, api, args, run_id, check)
    if waiting:
        _check_task_log(dep, api, args, run_id, waiting, restart, check)
    return {"run_id": run_id, "failures": dep.report["failures"]}


def _check_outputs(dep, args, check: CheckBook) -> None:
    images = sorted(p.name for p in dep.output_dir.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    dep.report["output_files"] = sorted(str(p.relative_to(dep.output_dir)) for p in dep.output_dir.rglob("*") if p.is_file())
    check(f"{args.expect_images} images saved in the output folder", len(images) >= args.expect_images,
          dep.report["output_files"])
    manifest = None
    with contextlib.suppress(Exception):
        manifest = json.loads((dep.output_dir / "manifest.json").read_text())
    check("manifest.json lists the images", bool(manifest) and len(manifest.get("images", [])) == args.expect_images
          and all(Path(i["path"].replace("file://", "")).exists() for i in manifest["images"]),
          manifest)
    # The images are real PNGs, as served by the emulator.
    bad = [n for n in images if not (dep.output_dir / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"]
    check("saved images are PNG files", not bad, bad)


def _check_link(dep, api: Api, args, run_id: str, check: CheckBook) -> None:
    links = api.get(f"/api/v2/dags/{args.dag_id}/dagRuns/{run_id}/taskInstances/{args.link_task}/links")
    dep.report["imagine_links"] = links
    url = ((links or {}).get("extra_links") or {}).get("Midjourney image")
    check(f"'{args.link_task}' has the 'Midjourney image' extra link (REST API)",
          bool(url) and url.startswith(dep.emulator_url), links)
    dep.report["image_url"] = url
    if url:
        r = LOCAL_HTTP.get(url, timeout=10)
        check("the extra link's URL serves an image", r.ok and r.content[:4] == b"\x89PNG",
              f"{r.status_code} {r.headers.get('content-type')}")


def _check_task_log(dep, api: Api, args, run_id: str, waiting: list[str], restart: dict, check: CheckBook) -> None:
    """Deferral shows in the task's own log too: the worker's lines, then the triggerer's (one
    file per triggerer job that ran the trigger: both jobs for a trigger moved by the restart)."""
    key = (restart.get("deferred_at_kill") or waiting)[0]
    task_id, map_index = split_key(key)
    ti = api.get(f"/api/v2/dags/{args.dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                 + (f"/{map_index}" if map_index >= 0 else ""))
    events = api.task_log(args.dag_id, run_id, task_id, ti["try_number"], map_index,
                          save_to=Path(args.artifacts) / "sample_task_log.json")
    deferred = any("Pausing task as DEFERRED" in e for e in events)
    fired = any(e == "Trigger fired event" for e in events)
    check(f"task log of {key} shows 'Pausing task as DEFERRED' and 'Trigger fired event' (REST API)",
          deferred and fired, {"deferred": deferred, "fired": fired})
    if restart.get("done") and key in restart.get("deferred_at_kill", []):
        jobs = trigger_log_jobs(events)
        # Informational: the killed triggerer may die before it writes its part of the log.
        dep.report["sample_task_log_trigger_jobs"] = {"key": key, "jobs": jobs}
        check(f"task log of {key} has trigger logs from the new triggerer job",
              restart["new_triggerer_job"] in jobs, {"trigger_log_files_from_jobs": jobs})


def _maybe_restart_triggerer(dep, states: dict, trigger_history: dict, restart: dict) -> None:
    """Kill the triggerer once a mapped task's trigger (or any, for unmapped DAGs) is running in it."""
    running = {k for k, h in trigger_history.items() if h["triggerers"] and states.get(k) == "deferred"}
    mapped = {k for k in running if "[" in k}
    has_mapped = any("[" in k for k in states)
    targets = mapped if has_mapped else running
    if not targets:
        return
    if has_mapped and len(mapped) < 2 and not restart.get("waited"):
        restart["waited"] = True  # one more poll, so that several mapped triggers are in flight
        return
    old = list(dep.triggerers.values())[-1]
    old_jobs = sorted({j for k in running for j in trigger_history[k]["triggerers"]})
    log(f"killing the triggerer (SIGKILL to its process group, pid {old.pid}) while {sorted(running)} are deferred")
    restart["killed_pids"] = dep.kill_on_purpose(old)
    restart.update(done=True, killed_at=time.strftime("%H:%M:%S"), deferred_at_kill=sorted(running),
                   old_triggerer_jobs=old_jobs)
    restart["new_triggerer_job"], _ = dep.start_triggerer()
