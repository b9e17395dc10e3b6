"""The celery profile's scenarios: triggerer failover in a burst, a killed Celery worker, coalescing.

1. The flagship example DAG runs as in the local profile (no kill: failover is tested below).
2. ``mj_deploy_burst`` (tests/deploy/dags): 30 mapped deferrable imagines over a small emulated
   account (3 running, 3 queued, no pool: most submits are refused and waited out on the
   triggerers, each capped at ``--triggerer-capacity`` triggers so that both hold some). Once about
   half of them are deferred and both triggerers hold some, the poll
   requests of the two triggerers are counted over a window; then the triggerer holding the most
   triggers is SIGKILLed; once the survivor has taken its triggers over, the same count is made
   with one triggerer. Every task must succeed on its first try and every prompt be submitted once.
3. ``mj_deploy_worker_kill``: a blocking imagine; its Celery worker is SIGKILLed after the job was
   submitted; Airflow retries the task on the other worker and the retry re-attaches to the job
   (one submit in the emulator's counters, "Re-attaching" in the retry's log).
"""

from __future__ import annotations

import argparse
import glob
import time
from typing import Any

from .api import TERMINAL_RUN_STATES, Api, split_key, ti_key, trigger_log_jobs, wait_until
from .common import LOCAL_HTTP, CheckBook, CheckFailed, log
from .flagship import track_triggers

BURST_DAG = "mj_deploy_burst"
KILL_DAG = "mj_deploy_worker_kill"
KILL_TASK = "imagine_blocking"
KILL_STATE = "worker-kill"
POLL_ROUTES = ("task/list-by-condition", "task/fetch")
ROOM_TRIGGER = "airflow_provider_mj.triggers.room.MidjourneyRoomTrigger"
#: A Celery worker logs one of these per task it is handed.
RECEIVED = "] received"


def received_counts(dep) -> dict[str, int]:
    return {name: p.text().count(RECEIVED) for name, p in dep.celery_workers().items()}


def poll_requests(counters: dict) -> int:
    return sum(counters.get("requests", {}).get(r, 0) for r in POLL_ROUTES)


def check_components(dep, check: CheckBook) -> None:
    ready = {name: "ready" in p.text() for name, p in dep.celery_workers().items()}
    if not all(ready.values()):
        wait_until("both Celery workers ready", lambda: all("ready" in p.text() for p in dep.celery_workers().values()),
                   120, 1, dep)
        ready = {name: True for name in ready}
    running = [r[0] for r in dep.sql("SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running'")]
    check("two triggerers and two Celery workers are up",
          len(ready) == 2 and all(ready.values()) and set(dep.triggerers) <= set(running),
          {"celery_workers_ready": ready, "triggerer_jobs_running": running})


# --------------------------------------------------------------------------------------------
# the burst, with a triggerer killed
# --------------------------------------------------------------------------------------------


def run_burst(dep, api: Api, args: argparse.Namespace) -> None:
    size, interval = args.burst_size, args.burst_poll_interval
    api.wait_parsed(BURST_DAG, dep)
    if args.burst_pool_slots > 0:
        api.request("POST", "/api/v2/pools", expect=(200, 201), json={
            "name": "midjourney", "slots": args.burst_pool_slots, "include_deferred": True,
            "description": "the emulated Midjourney account (deployment test)"})
    _occupy_account(dep, args)
    before = dep.emulator_counters()
    received_before = received_counts(dep)
    run_id = api.trigger(BURST_DAG)
    log(f"triggered {BURST_DAG} run {run_id!r}: {size} imagines, account {args.burst_account_slots} running + "
        f"{args.burst_account_queue} queued (busy for {args.burst_hold_seconds:.0f}s), {args.burst_job_seconds}s "
        f"jobs, pool {args.burst_pool_slots or 'none'}")
    kill_at = max(1, size // 2)
    if args.burst_pool_slots > 0:
        kill_at = min(kill_at, args.burst_pool_slots - 1)
    window = args.window_intervals * interval

    history: dict[str, dict] = {}
    seen_deferred: set[str] = set()
    peak_pool = 0
    fo: dict[str, Any] = {"phase": "filling"}  # failover state machine
    states: dict[str, str] = {}
    t0 = time.monotonic()
    while True:
        dep.check_alive()
        if time.monotonic() - t0 > args.run_timeout:
            raise CheckFailed(f"{BURST_DAG} not finished after {args.run_timeout}s; phase {fo['phase']}; {states}")
        run = api.get(f"/api/v2/dags/{BURST_DAG}/dagRuns/{run_id}")
        tis = api.task_instances(BURST_DAG, run_id)
        states = {ti_key(ti): ti["state"] for ti in tis}
        deferred = {k for k, s in states.items() if s == "deferred"}
        seen_deferred |= deferred
        track_triggers(dep, BURST_DAG, run_id, history)
        if args.burst_pool_slots > 0:
            pool = api.get("/api/v2/pools/midjourney")
            peak_pool = max(peak_pool, pool["running_slots"] + pool["queued_slots"] + pool["deferred_slots"])
        holders = _holders(dep, run_id)
        _failover_step(dep, fo, deferred, holders, _holders(dep, run_id, polling_only=True), kill_at, window)
        if run["state"] in TERMINAL_RUN_STATES:
            break
        time.sleep(0.5)
    after = dep.emulator_counters()
    dep.report["timings"]["burst_run_s"] = round(time.monotonic() - t0, 1)
    log(f"{BURST_DAG} finished: {run['state']} in {time.monotonic() - t0:.0f}s")
    fo.pop("start", None)
    dep.report["burst"] = {"run_id": run_id, "state": run["state"], "states": states, "failover": fo,
                           "peak_pool_occupancy": peak_pool, "triggers": history, "seen_deferred": sorted(seen_deferred),
                           "kill_at": kill_at, "counters_before": before, "counters_after": after,
                           "celery_tasks_received": _delta(received_before, received_counts(dep))}
    _check_burst(dep, api, args)


def _check_burst(dep, api: Api, args: argparse.Namespace) -> None:
    check = CheckBook(dep.report)
    b = dep.report["burst"]
    size, run_id, states, fo, history = args.burst_size, b["run_id"], b["states"], b["failover"], b["triggers"]
    before, after, seen_deferred, kill_at = b["counters_before"], b["counters_after"], set(b["seen_deferred"]), b["kill_at"]
    tries = {ti_key(ti): ti["try_number"] for ti in api.task_instances(BURST_DAG, run_id)}
    check("burst: run succeeded", b["state"] == "success", b["state"])
    check(f"burst: all {size} mapped imagines succeeded on their first try",
          len(states) == size and all(s == "success" for s in states.values()) and set(tries.values()) == {1},
          {"states": states, "tries": tries})
    check("burst: every imagine waited in a triggerer (seen 'deferred')", len(seen_deferred) == size,
          sorted(set(states) - seen_deferred))
    jobs_used = sorted({j for h in history.values() for j in h["triggerers"]})
    check("burst: both triggerers ran burst triggers", len(set(jobs_used) & set(dep.triggerers)) == 2,
          {"jobs_used": jobs_used, "triggerer_jobs": sorted(dep.triggerers)})

    killed, survivor = fo.get("killed_job"), fo.get("survivor_job")
    check("burst: one triggerer SIGKILLed while about half the tasks were deferred",
          killed is not None and len(fo.get("deferred_at_kill", [])) >= kill_at and fo.get("orphaned"),
          {k: fo.get(k) for k in ("phase", "peak", "killed_job", "deferred_at_kill", "orphaned")})
    if killed is not None:
        not_taken = [k for k in fo.get("orphaned", []) if not _ran_on(dep, run_id, k, survivor, history)]
        check("burst: the surviving triggerer took over every trigger of the killed one",
              fo.get("orphaned") and not not_taken,
              {"orphaned": fo.get("orphaned"), "not_taken_over": not_taken, "survivor": survivor})
        if fo.get("orphaned"):
            key = fo["orphaned"][0]
            task_id, map_index = split_key(key)
            events = api.task_log(BURST_DAG, run_id, task_id, 1, map_index)
            jobs = trigger_log_jobs(events)
            b["sample_trigger_log_jobs"] = {"key": key, "jobs": jobs}
            check("burst: the task log of a taken-over imagine has a trigger part from the surviving triggerer "
                  "(REST API)", survivor in jobs, {"key": key, "trigger_log_files_from_jobs": jobs})

    by_state = _delta(before.get("submits_by_state", {}), after.get("submits_by_state", {}))
    expected = {f"burst-{i:02d}": 1 for i in range(size)}
    imagine_delta = after["submits"].get("imagine", 0) - before["submits"].get("imagine", 0)
    check(f"burst: the emulator counted each of the {size} prompts submitted exactly once",
          {k: v for k, v in by_state.items() if k.startswith("burst-")} == expected and imagine_delta == size,
          {"submits_by_state": by_state, "imagine_submits": imagine_delta})
    b["submit_codes"] = codes = _delta(before.get("submit_codes", {}), after.get("submit_codes", {}))
    log(f"burst submit codes: {codes} (23 = account queue full, refused)")
    received, peak_pool = b["celery_tasks_received"], b["peak_pool_occupancy"]
    if args.burst_pool_slots > 0:
        check(f"burst: the pool's {args.burst_pool_slots} slots (include_deferred) held across both Celery workers",
              0 < peak_pool <= args.burst_pool_slots and len(received) == 2 and all(v > 0 for v in received.values()),
              {"peak_occupancy": peak_pool, "celery_tasks_received": received})
    else:
        # No pool: the account (3 running, 3 queued) refuses most submits; each is waited out on a
        # triggerer, not failed, and not retried in a worker slot.
        room = sorted(k for k, h in history.items() if ROOM_TRIGGER in h.get("classpaths", [h["classpath"]]))
        b["waited_for_room"] = room
        check("burst: the full account refused submits (code 23) and the refused imagines waited for room on a "
              "triggerer (MidjourneyRoomTrigger), none failed",
              codes.get("23", 0) > 0 and room and all(states.get(k) == "success" for k in room),
              {"refusals": codes.get("23", 0), "waited_for_room": len(room)})
    _coalescing_report(dep, fo, args.burst_poll_interval, check)


def _occupy_account(dep, args: argparse.Namespace) -> None:
    """Shape the account, and keep its slots busy with another client's jobs for a while.

    How many burst tasks wait at once depends on how fast the workers submit (CPU-bound on a
    small machine) against how fast the account finishes jobs. Jobs of "another DAG" holding every
    slot for ``--burst-hold-seconds`` make the burst's jobs queue behind them whatever the
    machine's speed, so that about half of the burst is deferred, with a stable set of waiting
    tasks for the request counts, before anything of the burst finishes.
    """
    dep.configure_emulator(job_seconds=args.burst_hold_seconds, concurrency=args.burst_account_slots,
                           queue_limit=args.burst_account_queue)
    for n in range(args.burst_account_slots if args.burst_hold_seconds > 0 else 0):
        r = LOCAL_HTTP.post(f"{dep.emulator_url}/mj/submit/imagine", timeout=10,
                          headers={"Authorization": f"Bearer {dep.emulator_key}"},
                          json={"prompt": f"another team's job {n}", "state": f"other-dag-{n}"})
        r.raise_for_status()
        if r.json().get("code") != 1:
            raise RuntimeError(f"the emulator did not start the account's other job: {r.text[:300]}")
    dep.configure_emulator(job_seconds=args.burst_job_seconds)


def _holders(dep, run_id: str, polling_only: bool = False) -> dict[str, int | None]:
    """Deferred burst task instance -> triggerer job id holding its trigger (None: not assigned yet).

    ``polling_only``: only the tasks waiting for their job (MidjourneyTaskTrigger, which polls),
    not those waiting for room on the account (MidjourneyRoomTrigger, which sends no request).
    """
    rows = dep.sql(
        "SELECT ti.task_id, ti.map_index, t.triggerer_id, t.classpath FROM task_instance ti "
        "JOIN trigger t ON t.id = ti.trigger_id WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.state = 'deferred'",
        BURST_DAG, run_id)
    return {ti_key({"task_id": t, "map_index": m}): j for t, m, j, c in rows
            if not polling_only or c != ROOM_TRIGGER}


def _failover_step(dep, fo: dict, deferred: set[str], holders: dict[str, int | None], pollers: dict[str, int | None],
                   kill_at: int, window: float) -> None:
    """filling -> window_two (both triggerers poll) -> kill -> takeover -> window_one -> done."""
    now = time.monotonic()
    phase = fo["phase"]
    if phase == "filling":
        by_job = {j: sum(1 for h in holders.values() if h == j) for j in dep.triggerers}
        if len(deferred) > fo.get("peak", {}).get("deferred", -1):  # why no kill, if none happens
            fo["peak"] = {"deferred": len(deferred), "held_by_triggerer_job": by_job}
        if len(deferred) >= kill_at and all(by_job.values()):
            fo.update(phase="window_two", start=now, window_two=_window_start(dep, pollers))
    elif phase == "window_two" and now - fo["start"] >= window:
        _window_end(dep, fo["window_two"], pollers)
        by_job = {j: sum(1 for h in holders.values() if h == j) for j in dep.triggerers}
        if len(deferred) < kill_at or not all(by_job.values()):
            fo["phase"] = "filling"  # fewer waiting now: measure again before killing
            return
        killed = max(by_job, key=lambda j: by_job[j])
        proc = dep.triggerers[killed]
        orphaned = sorted(k for k, j in holders.items() if j == killed)
        log(f"killing {proc.name} (triggerer job {killed}, SIGKILL to its session) while {len(deferred)} "
            f"imagines are deferred; it holds {len(orphaned)} of their triggers")
        fo.update(phase="takeover", killed_job=killed, survivor_job=next(j for j in dep.triggerers if j != killed),
                  killed_pids=dep.kill_on_purpose(proc), deferred_at_kill=sorted(deferred), orphaned=orphaned,
                  killed_at=now)
    elif phase == "takeover":
        if holders and all(j == fo["survivor_job"] for j in holders.values()):
            fo["takeover_s"] = round(now - fo["killed_at"], 1)
            log(f"triggerer job {fo['survivor_job']} holds every deferred trigger {fo['takeover_s']}s after the kill")
            fo.update(phase="window_one", start=now, window_one=_window_start(dep, pollers))
        elif not deferred and now - fo["killed_at"] > 5:
            fo.update(phase="done", note="no task left waiting after the takeover: no one-triggerer window")
    elif phase == "window_one" and now - fo["start"] >= window:
        _window_end(dep, fo["window_one"], pollers)
        fo["phase"] = "done"


def _window_start(dep, holders: dict[str, int | None]) -> dict:
    return {"t": time.monotonic(), "requests": poll_requests(dep.emulator_counters()), "waiting_start": len(holders),
            "triggerers": len(set(holders.values()) - {None})}


def _window_end(dep, w: dict, holders: dict[str, int | None]) -> None:
    w["seconds"] = round(time.monotonic() - w["t"], 2)
    w["requests"] = poll_requests(dep.emulator_counters()) - w["requests"]
    w["waiting_end"] = len(holders)
    del w["t"]


def _coalescing_report(dep, fo: dict, interval: float, check: CheckBook) -> None:
    """Poll requests per interval for the same waiting tasks with two triggerers, then one."""
    rows = {}
    for name, n in (("window_two", 2), ("window_one", 1)):
        w = fo.get(name)
        if not w or "seconds" not in w:
            continue
        intervals = w["seconds"] / interval
        waiting = (w["waiting_start"] + w["waiting_end"]) / 2
        rows[n] = {"triggerers": n, "waiting_tasks": f"{w['waiting_start']} -> {w['waiting_end']}",
                   # Triggerers holding tasks that wait for their job (the room trigger sends nothing).
                   "triggerers_polling": w["triggerers"],
                   "seconds": w["seconds"], "poll_requests": w["requests"],
                   "requests_per_interval": round(w["requests"] / intervals, 2),
                   "per_task_polling_would_send": round(waiting, 1)}
    dep.report["coalescing"] = list(rows.values())
    for r in rows.values():
        log(f"coalescing: {r['triggerers']} triggerer(s), {r['waiting_tasks']} waiting tasks: "
            f"{r['poll_requests']} poll requests in {r['seconds']}s = {r['requests_per_interval']} per "
            f"{interval}s interval (one request per task would be ~{r['per_task_polling_would_send']})")
    if 1 in rows and 2 in rows:
        one, two = rows[1]["requests_per_interval"], rows[2]["requests_per_interval"]
        # Tasks waiting for room send no request, so "two triggerers" means two that hold tasks
        # waiting for their jobs; with the small account that may be one of them only.
        polling_two = max(1, rows[2]["triggerers_polling"])
        check("burst: each triggerer batches its own waiting tasks (about 1 poll request per interval per "
              "triggerer: 2 with two triggerers, 1 with one)",
              0 < one <= 1.5 and 0 < two <= 1.5 * polling_two and (polling_two < 2 or one < two), rows)


def _ran_on(dep, run_id: str, key: str, job: int, history: dict) -> bool:
    """Did triggerer job ``job`` run this task's trigger? The trigger table (if we saw it) or the
    trigger log file Airflow names after the triggerer job (``...log.trigger.<job>.log``)."""
    if job in history.get(key, {}).get("triggerers", []):
        return True
    task_id, map_index = split_key(key)
    pattern = (f"{dep.home}/logs/dag_id={BURST_DAG}/run_id={glob.escape(run_id)}/task_id={task_id}/"
               f"map_index={map_index}/attempt=*.log.trigger.{job}.log")
    return bool(glob.glob(pattern))


def _delta(before: dict, after: dict) -> dict:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


# --------------------------------------------------------------------------------------------
# a Celery worker killed mid-job
# --------------------------------------------------------------------------------------------


def run_worker_kill(dep, api: Api, args: argparse.Namespace) -> None:
    check = CheckBook(dep.report)
    api.wait_parsed(KILL_DAG, dep)
    dep.configure_emulator(job_seconds=args.kill_job_seconds, concurrency=8, queue_limit=10)
    before = dep.emulator_counters()
    run_id = api.trigger(KILL_DAG)
    log(f"triggered {KILL_DAG} run {run_id!r} (blocking imagine, {args.kill_job_seconds}s job)")
    info: dict[str, Any] = {"run_id": run_id}
    dep.report["worker_kill"] = info

    def running_with_job():
        rows = dep.sql("SELECT state, pid, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
                       KILL_DAG, run_id)
        submitted = dep.emulator_counters().get("submits_by_state", {}).get(KILL_STATE, 0) - \
            before.get("submits_by_state", {}).get(KILL_STATE, 0)
        if rows and rows[0][0] == "running" and rows[0][1] and submitted >= 1:
            worker = dep.session_of(rows[0][1])
            if worker is not None and worker.name.startswith("celery-worker"):
                return worker, rows[0][1], rows[0][2]
        return None

    worker, pid, try_number = wait_until("the blocking imagine running on a Celery worker, its job submitted",
                                         running_with_job, 180, 0.5, dep)
    log(f"killing {worker.name} (SIGKILL to its session) while it runs {KILL_TASK} try {try_number} (pid {pid})")
    info.update(killed_worker=worker.name, task_pid=pid, try_at_kill=try_number, killed_pids=dep.kill_on_purpose(worker))
    t_kill = time.monotonic()

    t0 = time.monotonic()
    while True:
        dep.check_alive()
        run = api.get(f"/api/v2/dags/{KILL_DAG}/dagRuns/{run_id}")
        if run["state"] in TERMINAL_RUN_STATES:
            break
        if time.monotonic() - t0 > args.run_timeout:
            raise CheckFailed(f"{KILL_DAG} not finished after {args.run_timeout}s")
        rows = dep.sql("SELECT state, pid, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
                       KILL_DAG, run_id)
        if rows and rows[0][2] > try_number and rows[0][0] == "running" and rows[0][1] and "retry_worker" not in info:
            retry_worker = dep.session_of(rows[0][1])
            info["retry_worker"] = retry_worker.name if retry_worker else None
            info["retry_started_after_kill_s"] = round(time.monotonic() - t_kill, 1)
        time.sleep(0.5)
    after = dep.emulator_counters()
    ti = api.get(f"/api/v2/dags/{KILL_DAG}/dagRuns/{run_id}/taskInstances/{KILL_TASK}")
    info.update(state=ti["state"], final_try=ti["try_number"])
    dep.report["timings"]["worker_kill_run_s"] = round(time.monotonic() - t0, 1)
    log(f"{KILL_DAG} finished: {run['state']}; try {ti['try_number']} on {info.get('retry_worker')}")

    check("worker kill: the Celery worker running the blocking imagine was SIGKILLed after its job was submitted",
          bool(info.get("killed_pids")), info)
    check("worker kill: Airflow retried the task and the retry succeeded",
          run["state"] == "success" and ti["state"] == "success" and ti["try_number"] > try_number,
          {"run": run["state"], "ti": ti["state"], "try_number": ti["try_number"]})
    events = api.task_log(KILL_DAG, run_id, KILL_TASK, ti["try_number"])
    reattached = [e for e in events if "Re-attaching to Midjourney task" in e]
    info["retry_log_reattach"] = reattached[:1]
    check("worker kill: the retry re-attached to the job already submitted (its task log)", bool(reattached),
          [e for e in events if "Midjourney" in e][:10])
    submitted = after.get("submits_by_state", {}).get(KILL_STATE, 0) - before.get("submits_by_state", {}).get(KILL_STATE, 0)
    info["submits"] = submitted
    check("worker kill: the emulator counted one submit for the task (nothing paid twice)", submitted == 1,
          {"submits_by_state": after.get("submits_by_state", {}).get(KILL_STATE)})
