"""
### Imagine, upscale all four images, describe each upscale, save everything

The classic Midjourney round trip, end to end:

1. **imagine** a 2x2 grid from the `prompt` param;
2. **upscale** each of the four images (`U1`..`U4`), with dynamic task mapping: four mapped
   `MidjourneyActionOperator` instances, all pressing a button of the same imagine task;
3. **describe** each upscale (mapped again, one per upscale, by its `imageUrl`), which gives four
   prompts per image;
4. **save_outputs** downloads the four images next to their prompts into `output_dir`, writes a
   `manifest.json` there and returns a small manifest (paths, Midjourney task ids, prompts).

**Params**

| param | meaning |
|---|---|
| `prompt` | the imagine prompt (Midjourney flags such as `--ar 3:2` welcome) |
| `output_dir` | where to save: a local path, `file:///...`, or any `ObjectStoragePath` URL such as `s3://aws_default@my-bucket/midjourney` (the user part is an Airflow connection id). Empty: `$AIRFLOW_HOME/mj-output/<dag_id>/<run_id>` on the worker. |

Every Midjourney job waits in the triggerer when deferrable mode is on
(`[operators] default_deferrable = True`), so the nine jobs of a run hold no worker slot while
Midjourney works. The connection is `midjourney_default`.

See `docs/howto/chain-imagine-upscale-describe.md`.
"""

from __future__ import annotations

import json
import os
import re

import pendulum
from airflow.sdk import ObjectStoragePath, Param, dag, get_current_context, task

from airflow_provider_mj.operators import (
    MidjourneyActionOperator,
    MidjourneyDescribeOperator,
    MidjourneyImagineOperator,
)

#: How often to ask the server about a running job. 5 s is what vendors recommend; the demo and
#: the tests lower it through the environment because the emulator finishes jobs in seconds.
POLL_INTERVAL = float(os.environ.get("MJ_EXAMPLE_POLL_INTERVAL", "5"))
#: Deadline of one Midjourney job (relax mode can take many minutes; servers give up after ~5).
JOB_TIMEOUT = 30 * 60
UPSCALE_BUTTONS = ["U1", "U2", "U3", "U4"]


# [START image_url]
def _image_url(finished_task: dict) -> str:
    """The image of a finished Midjourney task (used to map describe over the upscales)."""
    return finished_task["imageUrl"]
# [END image_url]


# [START output_dir]
def _output_dir(requested: str | None, dag_id: str, run_id: str) -> ObjectStoragePath:
    """Turn the ``output_dir`` param into an ObjectStoragePath (local paths become ``file://``)."""
    location = (requested or "").strip()
    if not location:
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        # run ids contain ':' and '+', awkward in folder names on some systems and object stores.
        safe_run_id = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
        location = os.path.join(home, "mj-output", dag_id, safe_run_id)
    if "://" not in location:
        location = "file://" + os.path.abspath(os.path.expanduser(location))
    return ObjectStoragePath(location)
# [END output_dir]


# [START save_outputs]
@task
def save_outputs(upscales: list[dict], describes: list[dict], output_dir: str) -> dict:
    """Download the upscaled images, write their prompts and a manifest.json; return the manifest."""
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

    context = get_current_context()
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    # One request each: a slice reads every mapped result at once, where list() would read them
    # one by one and ask for one more than there is (an 'XCom not found' error line in the log).
    upscales, describes = upscales[:], describes[:]
    if len(upscales) != len(describes):
        raise ValueError(f"{len(upscales)} upscales but {len(describes)} describes: cannot pair them")

    out = _output_dir(output_dir, dag_id, run_id)
    out.mkdir(parents=True, exist_ok=True)
    hook = MidjourneyHook(midjourney_conn_id="midjourney_default")

    images = []
    # Mapped results come back in map-index order, so index i is button UPSCALE_BUTTONS[i] in both.
    for button, upscale, describe in zip(UPSCALE_BUTTONS, upscales, describes):
        image_path = hook.download_image(upscale, out / f"{button}.png")
        prompts = [p for p in describe.get("prompts") or [] if p]
        (out / f"{button}.prompts.txt").write_text("\n".join(prompts) + "\n")
        images.append(
            {
                "button": button,
                "mj_task_id": upscale["id"],
                "describe_mj_task_id": describe["id"],
                "path": str(image_path),
                "image_url": upscale["imageUrl"],
                "prompts": prompts,
            }
        )

    manifest = {
        "dag_id": dag_id,
        "run_id": run_id,
        "prompt": context["params"]["prompt"],
        "imagine_mj_task_id": context["ti"].xcom_pull(task_ids="imagine", key="mj_task_id"),
        "output_dir": str(out),
        "manifest_path": str(out / "manifest.json"),
        "created_at": pendulum.now("UTC").isoformat(timespec="seconds"),
        "images": images,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
# [END save_outputs]


# [START dag]
@dag(
    dag_id="mj_imagine_upscale_describe",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["midjourney", "example"],
    params={
        "prompt": Param(
            "a lighthouse on a basalt cliff at dusk, warm window light, oil painting --ar 1:1",
            type="string",
            minLength=1,
            title="Prompt",
            description="What to imagine. Midjourney flags (--ar, --v, --stylize...) are passed through.",
        ),
        "output_dir": Param(
            "",
            type="string",
            title="Output folder",
            description="Local path or ObjectStoragePath URL (file:///..., s3://conn_id@bucket/prefix). "
            "Empty: $AIRFLOW_HOME/mj-output/<dag_id>/<run_id>.",
        ),
    },
)
def mj_imagine_upscale_describe():
    # [START chain]
    imagine = MidjourneyImagineOperator(
        task_id="imagine",
        prompt="{{ params.prompt }}",
        # The state tag is echoed back on the task: it lets you find a run's jobs on the server.
        state="{{ dag.dag_id }}/{{ run_id }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    )

# [END dag]
    # [START upscale]
    upscale = MidjourneyActionOperator.partial(
        task_id="upscale",
        mj_task_id=imagine.output["mj_task_id"],
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    ).expand(button=UPSCALE_BUTTONS)
    # [END upscale]

    # [START describe]
    describe = MidjourneyDescribeOperator.partial(
        task_id="describe",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    ).expand(link=upscale.output.map(_image_url))
    # [END describe]
    # [END chain]

    # [START wire_save]
    save_outputs(upscale.output, describe.output, output_dir="{{ params.output_dir }}")
    # [END wire_save]


mj_imagine_upscale_describe()
