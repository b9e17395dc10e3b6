"""Saved images as assets in the live deployment (issue 15): mj_daily_content -> mj_contact_sheet.

``mj_daily_content`` runs on four prompts; its upscales save themselves and publish events on the
asset ``mj_daily_content_images``. Checked: the events are in the metadata DB (PostgreSQL) with
the image's extras; the real scheduler starts ``mj_contact_sheet`` (scheduled on the asset) from
them, its runs consumed those events (REST API) and its page shows the four images; headless
Chromium opens the page and screenshots it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .api import TERMINAL_RUN_STATES, Api, wait_until
from .checks import run_browser_script
from .common import CheckBook, log

PRODUCER, CONSUMER, ASSET = "mj_daily_content", "mj_contact_sheet", "mj_daily_content_images"
PROMPTS = 4
EXTRAS = ("mj_task_id", "action", "prompt", "button", "image_url", "uri", "size_bytes", "sha256", "state")


def _runs(api: Api, dag_id: str) -> list[dict]:
    return api.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}).get("dag_runs", [])


def run_contact_sheet(dep, api: Api, args, chromium: str | None, node: str | None) -> None:
    check = CheckBook(dep.report)
    report: dict[str, Any] = dep.report.setdefault("assets", {})
    out = dep.tmp / "daily-output"
    # The DAG's tasks use the pool 'midjourney' (deferred tasks counted), as its docs say to create.
    api.request("POST", "/api/v2/pools", expect=(200, 201, 409),
                json={"name": "midjourney", "slots": 3, "include_deferred": True})
    api.wait_parsed(CONSUMER, dep)
    producer = api.wait_parsed(PRODUCER, dep)
    # Unpaused before the first event, as a user's DAG would be: a paused DAG gets no queued run.
    api.request("PATCH", f"/api/v2/dags/{CONSUMER}", json={"is_paused": False})
    # The daily DAG is triggered as the run the scheduler would start when it is unpaused (that
    # day's logical date and data interval): the scheduler then finds the day's run there and
    # starts no second one of ten prompts beside ours. (A run without a logical date, the UI's
    # default, is tested in tests/dags.)
    run_id = api.trigger(PRODUCER, {"max_prompts": PROMPTS, "output_dir": str(out)},
                         logical_date=producer["next_dagrun_logical_date"],
                         data_interval_start=producer["next_dagrun_data_interval_start"],
                         data_interval_end=producer["next_dagrun_data_interval_end"])
    log(f"triggered {PRODUCER} run {run_id!r} for {producer['next_dagrun_logical_date']} (saves into {out})")
    t0 = time.monotonic()

    def producer_done():
        run = api.get(f"/api/v2/dags/{PRODUCER}/dagRuns/{run_id}")
        return run if run["state"] in TERMINAL_RUN_STATES else None

    run = wait_until(f"{PRODUCER} run", producer_done, args.run_timeout, args.poll, dep)
    report["producer_run_s"] = round(time.monotonic() - t0, 1)
    check(f"{PRODUCER} run succeeded", run["state"] == "success", run["state"])

    rows = dep.sql(
        "SELECT e.source_task_id, e.source_map_index, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE a.name = %s AND e.source_dag_id = %s AND e.source_run_id = %s ORDER BY e.source_map_index",
        ASSET, PRODUCER, run_id,
    )
    events = [{"task": r[0], "map_index": r[1], "extra": r[2] if isinstance(r[2], dict) else json.loads(r[2])}
              for r in rows]
    report["events"] = events
    missing = {e["map_index"]: [k for k in EXTRAS if k not in e["extra"]] for e in events}
    check(f"{PROMPTS} asset events of the upscales in the metadata DB, with every extra",
          sorted(e["map_index"] for e in events) == list(range(PROMPTS)) and not any(missing.values())
          and all(e["task"] == "upscale" for e in events), {"missing_extras": missing, "count": len(events)})
    saved_ok = [e["map_index"] for e in events if e["extra"].get("uri", "").startswith("file://")
                and Path(e["extra"]["uri"].removeprefix("file://")).stat().st_size == e["extra"].get("size_bytes")]
    check("every event's uri is the saved file, of size_bytes", len(saved_ok) == PROMPTS, saved_ok)

    # The scheduler starts the consumer on the first event; later events queue more runs. The page
    # is complete when no run is queued or running and every image is on it.
    sheet_dir = {str(Path(e["extra"]["uri"].removeprefix("file://")).parent) for e in events if "uri" in e["extra"]}
    sheet = Path(sorted(sheet_dir)[0]) / "index.html" if sheet_dir else out / "missing" / "index.html"

    def consumer_settled():
        runs = _runs(api, CONSUMER)
        busy = [r for r in runs if r["state"] not in TERMINAL_RUN_STATES]
        queued = dep.sql("SELECT count(*) FROM asset_dag_run_queue WHERE target_dag_id = %s", CONSUMER)[0][0]
        shown = sheet.read_text().count('<p class="prompt">') if sheet.is_file() else 0
        return runs if runs and not busy and not queued and shown == PROMPTS else None

    try:
        runs = wait_until(f"{CONSUMER} runs to settle with {PROMPTS} images", consumer_settled, args.run_timeout,
                          args.poll, dep)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check with what was seen
        runs = _runs(api, CONSUMER)
        check(f"{CONSUMER} ran and its page shows the {PROMPTS} images", False, {"error": str(exc), "runs": runs})
        return
    report["consumer_runs"] = [{k: r.get(k) for k in ("dag_run_id", "run_type", "state")} for r in runs]
    check(f"{CONSUMER} ran on the asset (asset_triggered runs, all successful)",
          all(r["run_type"] == "asset_triggered" and r["state"] == "success" for r in runs), report["consumer_runs"])
    consumed = []
    for r in runs:
        got = api.get(f"/api/v2/dags/{CONSUMER}/dagRuns/{r['dag_run_id']}/upstreamAssetEvents")
        consumed += [e.get("extra", {}).get("uri") for e in got.get("asset_events", [])]
    report["consumed_uris"] = consumed
    # Only another run of the daily DAG publishes to the asset too (a scheduled one, if midnight
    # UTC passed during the test): the consumer may have consumed its events as well.
    report["producer_runs"] = [r["dag_run_id"] for r in _runs(api, PRODUCER)]
    published = {r[0] for r in dep.sql(
        "SELECT e.extra ->> 'uri' FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = %s", ASSET)}
    ours = {e["extra"].get("uri") for e in events}
    check(f"{CONSUMER}'s runs consumed the producer's events (triggering_asset_events)",
          ours <= set(consumed) <= published, {"consumed": consumed, "this_run": sorted(ours)})
    report["contact_sheet"] = str(sheet)
    log(f"contact sheet: {sheet}")

    if chromium and node:  # headless Chromium opens the page and screenshots it
        report["browser"] = run_browser_script(dep, args, chromium, node, "contact_sheet.js",
                                               {"url": sheet.as_uri(), "expectedImages": PROMPTS})

