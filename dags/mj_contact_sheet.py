"""
### Contact sheet: one HTML page of a day's images, made when they are saved

Scheduled on the asset `mj_daily_content_images`: every upscale that `mj_daily_content` saves
adds an event to it, with extras that describe the image (`uri`, `prompt`, `mj_task_id`,
`button`, `size_bytes`, `sha256`, ...). This DAG reads those extras (no Midjourney request, no
image download) and writes `index.html` in the folder of the images: a thumbnail, the prompt
and a link to the full image for each, so a person can look at a day's output in a browser.

**Which images.** The scheduler starts a run as soon as the first event of a day arrives, and a
run sees only the events queued up to then (`triggering_asset_events`). So the page is rebuilt
from *all* the events of the folders those events point to (`inlet_events`), and the last run
of the day shows every image. Saving an image again (a re-run) replaces its entry.

A manual run (no triggering events) rebuilds the page of the most recent folder.

See `docs/howto/assets-and-lineage.md`.
"""

from __future__ import annotations

import html
import posixpath
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, ObjectStoragePath, dag, task

#: The asset mj_daily_content's upscales publish their images to (same name there).
DAILY_IMAGES = Asset("mj_daily_content_images")
SHEET_NAME = "index.html"


def folder_of(uri: str) -> str:
    """The folder a saved image is in (its URI up to the last ``/``)."""
    return uri.rsplit("/", 1)[0]


def contact_sheet_html(title: str, images: list[dict]) -> str:
    """The page: one figure per image, thumbnail linking to the full image, the prompt below it."""
    cards = []
    for image in images:
        name = html.escape(posixpath.basename(image["uri"]))
        prompt = html.escape(image.get("prompt") or "")
        about = " &middot; ".join(
            html.escape(str(part)) for part in (image.get("button"), f"task {image.get('mj_task_id')}",
                                               f"{round((image.get('size_bytes') or 0) / 1024)} KiB")
            if part
        )
        cards.append(
            f'<figure><a href="{name}"><img src="{name}" alt="{prompt}" loading="lazy"></a>'
            f'<figcaption><p class="prompt">{prompt}</p><p class="about">{about} &middot; '
            f'<a href="{name}">{name}</a></p></figcaption></figure>'
        )
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem;background:#fafafa;color:#222}"
        "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:1.5rem}"
        "figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:8px;padding:.75rem}"
        "img{width:100%;height:auto;border-radius:4px;display:block}"
        ".prompt{margin:.5rem 0 .25rem}.about{margin:0;color:#666;font-size:.85rem}"
        f"</style></head><body><h1>{html.escape(title)}</h1><p>{len(images)} image(s)</p>"
        f"<main>{''.join(cards)}</main></body></html>\n"
    )


# [START read_events]
@task(inlets=[DAILY_IMAGES])
def write_contact_sheets(triggering_asset_events=None, inlet_events=None) -> list[dict]:
    """Rebuild ``index.html`` in every folder the triggering events saved images to."""
    triggering = list(triggering_asset_events[DAILY_IMAGES]) if triggering_asset_events else []
    if not triggering:  # a manual run: the most recent image's folder
        triggering = list(inlet_events[DAILY_IMAGES].ascending(False).limit(1))
    folders = {folder_of(event.extra["uri"]) for event in triggering if (event.extra or {}).get("uri")}
    if not folders:
        print("No saved image to show: nothing to do.")
        return []
    # A bounded read: the days these events belong to, not the asset's whole history.
    since = min(event.timestamp for event in triggering) - timedelta(days=1)
    history = inlet_events[DAILY_IMAGES].after(since.isoformat())

    by_uri: dict[str, dict] = {}
    for event in history:  # oldest first: a re-saved image keeps its newest extras
        uri = (event.extra or {}).get("uri")
        if uri and folder_of(uri) in folders:
            by_uri[uri] = dict(event.extra)
    # [END read_events]
    sheets = []
    for folder in sorted(folders):
        images = sorted((image for uri, image in by_uri.items() if folder_of(uri) == folder),
                        key=lambda image: image["uri"])
        sheet = ObjectStoragePath(f"{folder}/{SHEET_NAME}")
        sheet.write_text(contact_sheet_html(f"Midjourney images: {posixpath.basename(folder)}", images))
        print(f"Contact sheet of {len(images)} image(s): {sheet}")
        sheets.append({"uri": str(sheet), "images": len(images)})
    return sheets


# [START schedule]
@dag(
    dag_id="mj_contact_sheet",
    schedule=[DAILY_IMAGES],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["midjourney", "example"],
)
def mj_contact_sheet():
    write_contact_sheets()
# [END schedule]


mj_contact_sheet()
