"""
### Daily content: imagine and upscale every prompt of a file, politely

Runs once a day (no catch-up: a missed day is not made up later).

1. **read_prompts** reads `prompts_file` (one prompt per line; `#` comments and blank lines are
   ignored, duplicates dropped) and keeps at most `max_prompts` of them;
2. **imagine** runs once per prompt (dynamic task mapping);
3. **upscale** presses `U1` on each grid (mapped again);
4. **save_images** downloads the upscales into `output_dir/<date>/` with a `manifest.json`.

**Staying inside the account's limits.** Every Midjourney task uses the Airflow pool
`midjourney`. Create it once with as many slots as your account (or relay) runs jobs at once,
and count deferred tasks in it, because a deferred task still has a job running at Midjourney:

```
airflow pools set midjourney 3 "Midjourney account concurrency" --include-deferred
```

`max_active_tis_per_dag` caps each mapped task the same way (it counts deferred tasks too).
A job refused for a full queue or a rate limit is retried by Airflow with exponential backoff
(waits of at least 1, 2, then 4 minutes, plus Airflow's jitter, never more than 15); errors
retrying cannot fix (banned prompt, bad key, a failed job) fail at once without using the retries.

**Params**: `prompts_file` (a path on the worker; default: the file shipped next to this DAG),
`max_prompts`, `output_dir` (local path or ObjectStoragePath URL; empty:
`$AIRFLOW_HOME/mj-output/mj_daily_content`).

See `docs/howto/running-at-scale.md`.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import ObjectStoragePath, Param, dag, get_current_context, task

from airflow_provider_mj.operators import MidjourneyActionOperator, MidjourneyImagineOperator

POLL_INTERVAL = float(os.environ.get("MJ_EXAMPLE_POLL_INTERVAL", "5"))
JOB_TIMEOUT = 60 * 60
#: Jobs the account runs at once; keep it equal to the slots of the ``midjourney`` pool.
MJ_CONCURRENCY = 3
POOL = "midjourney"
DEFAULT_PROMPTS_FILE = str(Path(__file__).parent / "prompts" / "daily_prompts.txt")

# [START retry_politely]
# Polite retries for the Midjourney tasks: only retryable errors (queue full, 429, 5xx, network)
# use them; the provider fails the others (banned prompt, bad key, failed job) at once.
RETRY_POLITELY = {
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
}
# [END retry_politely]


@task
def read_prompts(prompts_file: str, max_prompts: str) -> list[str]:
    """The prompts of the file, in order, without comments, blanks and duplicates."""
    limit = int(max_prompts)
    prompts: list[str] = []
    for line in Path(prompts_file).expanduser().read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line not in prompts:
            prompts.append(line)
    if not prompts:
        raise ValueError(f"{prompts_file} holds no prompt (one per line, '#' starts a comment)")
    print(f"{len(prompts)} prompt(s) in {prompts_file}; imagining {min(limit, len(prompts))}")
    return prompts[:limit]


# [START save_images]
@task
def save_images(upscales: list[dict], prompts: list[str], output_dir: str) -> dict:
    """Download every upscale to ``<output_dir>/<date>/NN.png`` and write a manifest.json."""
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

    context = get_current_context()
    location = output_dir.strip() or os.path.join(
        os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "mj-output", "mj_daily_content"
    )
    if "://" not in location:
        location = "file://" + os.path.abspath(os.path.expanduser(location))
    out = ObjectStoragePath(location) / context["ds"]
    out.mkdir(parents=True, exist_ok=True)

    hook = MidjourneyHook(midjourney_conn_id="midjourney_default")
    images = []
    for n, (prompt, upscale) in enumerate(zip(prompts, upscales[:]), start=1):
        path = hook.download_image(upscale, out / f"{n:02d}.png")
        images.append({"prompt": prompt, "mj_task_id": upscale["id"], "path": str(path)})
    manifest = {
        "dag_id": context["dag"].dag_id,
        "run_id": context["run_id"],
        "date": context["ds"],
        "created_at": pendulum.now("UTC").isoformat(timespec="seconds"),
        "images": images,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
# [END save_images]


@dag(
    dag_id="mj_daily_content",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["midjourney", "example"],
    params={
        "prompts_file": Param(DEFAULT_PROMPTS_FILE, type="string", title="Prompts file",
                              description="One prompt per line, on the worker."),
        "max_prompts": Param(10, type="integer", minimum=1, maximum=100, title="At most this many prompts"),
        "output_dir": Param("", type="string", title="Output folder",
                            description="Local path or ObjectStoragePath URL. "
                            "Empty: $AIRFLOW_HOME/mj-output/mj_daily_content."),
    },
)
def mj_daily_content():
    prompts = read_prompts(prompts_file="{{ params.prompts_file }}", max_prompts="{{ params.max_prompts }}")

    # [START pooled]
    imagine = MidjourneyImagineOperator.partial(
        task_id="imagine",
        pool=POOL,
        max_active_tis_per_dag=MJ_CONCURRENCY,
        **RETRY_POLITELY,
        state="{{ dag.dag_id }}/{{ ds }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    ).expand(prompt=prompts)
    # [END pooled]

    # Each upscale gets the finished task dict of its imagine (the mapped return values, in order):
    # the buttons are already in it, so resolving "U1" needs no extra request.
    upscale = MidjourneyActionOperator.partial(
        task_id="upscale",
        pool=POOL,
        max_active_tis_per_dag=MJ_CONCURRENCY,
        **RETRY_POLITELY,
        button="U1",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    ).expand(mj_task_id=imagine.output)

    save_images(upscale.output, prompts, output_dir="{{ params.output_dir }}")


mj_daily_content()
