"""
### Daily content: imagine and upscale every prompt of a file, politely

Runs once a day (no catch-up: a missed day is not made up later).

1. **read_prompts** reads `prompts_file` (one prompt per line; `#` comments and blank lines are
   ignored, duplicates dropped) and keeps at most `max_prompts` of them;
2. **imagine** runs once per prompt (dynamic task mapping);
3. **upscale** presses `U1` on each grid (mapped again) and saves the upscale itself
   (`destination`) as `output_dir/<date>/NN.png`. Each saved image adds an event to the asset
   `mj_daily_content_images` (`outlets`), whose extras say what it is: `uri`, `prompt`,
   `mj_task_id`, `button`, `size_bytes`, `sha256`... The DAG `mj_contact_sheet` is scheduled on
   that asset and writes the day's `index.html` from them.

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

See `docs/howto/running-at-scale.md` and `docs/howto/assets-and-lineage.md`.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Asset, Param, dag, task

from airflow_provider_mj.operators import MidjourneyActionOperator, MidjourneyImagineOperator

#: Every saved upscale adds an event to this asset; mj_contact_sheet is scheduled on it.
DAILY_IMAGES = Asset("mj_daily_content_images")
#: The run's day (YYYY-MM-DD). ``{{ ds }}`` is undefined in a run without a logical date (one
#: triggered from the UI or the REST API without it), so fall back to when the run was due.
DAY = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"
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


def output_dir(location: str) -> str:
    """The output folder as a URL: the param, or ``$AIRFLOW_HOME/mj-output/mj_daily_content`` when empty."""
    location = (location or "").strip() or os.path.join(
        os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "mj-output", "mj_daily_content"
    )
    if "://" not in location:
        location = "file://" + os.path.abspath(os.path.expanduser(location))
    return location.rstrip("/")


@dag(
    dag_id="mj_daily_content",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["midjourney", "example"],
    user_defined_macros={"output_dir": output_dir},
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
        state="{{ dag.dag_id }}/" + DAY,
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    ).expand(prompt=prompts)
    # [END pooled]

    # Each upscale gets the finished task dict of its imagine (the mapped return values, in order):
    # the buttons are already in it, so resolving "U1" needs no extra request.
    # [START save_with_outlet]
    MidjourneyActionOperator.partial(
        task_id="upscale",
        pool=POOL,
        max_active_tis_per_dag=MJ_CONCURRENCY,
        **RETRY_POLITELY,
        button="U1",
        state="{{ dag.dag_id }}/" + DAY,
        # Jinja renders the folder and the date; {map_index:02d} is filled per mapped upscale.
        destination="{{ output_dir(params.output_dir) }}/" + DAY + "/{map_index:02d}.png",
        outlets=[DAILY_IMAGES],
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    ).expand(mj_task_id=imagine.output)
    # [END save_with_outlet]


mj_daily_content()
