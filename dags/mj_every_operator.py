"""
### Every operator once: the examples of the operator reference

One small DAG that uses each operator of the provider the way its page in `docs/operators/`
shows it (the pages copy their code from this file, and the test suite runs it):

1. **imagine** a grid, tagged with the run;
2. **seed** reads its seed, and **imagine_same_seed** imagines the prompt again with it;
3. **upscale** presses `U2`, **zoom** presses `Custom Zoom` on that upscale with its modal prompt,
   and **upscale_all** presses `U1`..`U4` at once (dynamic task mapping);
4. **list_upscales** reads the four upscales in one request;
5. **describe** describes the upscale by its URL; **save_upscale** downloads it, and
   **describe_file** describes the saved file;
6. **save_zoom** saves the zoom's image (the standalone save operator) under
   `$AIRFLOW_HOME/mj-output/mj_every_operator/<date>/`;
7. **submit** imagines without waiting, and **wait** (a sensor) waits for that job.

The connection is `midjourney_default`. `MJ_EXAMPLE_POLL_INTERVAL` (seconds, default 5) sets
how often jobs are polled.
"""

from __future__ import annotations

import os
import tempfile

import pendulum
from airflow.sdk import XComArg, dag, task

from airflow_provider_mj.operators import (
    MidjourneyActionOperator,
    MidjourneyDescribeOperator,
    MidjourneyImageSeedOperator,
    MidjourneyImagineOperator,
    MidjourneyListTasksOperator,
    MidjourneySaveImageOperator,
)
from airflow_provider_mj.sensors import MidjourneyTaskSensor

POLL_INTERVAL = float(os.environ.get("MJ_EXAMPLE_POLL_INTERVAL", "5"))
OUTPUT = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "mj-output", "mj_every_operator")


@task
def save_upscale(upscale: dict) -> str:
    """Download the upscale into a temporary folder on the worker; return the file's path."""
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

    folder = tempfile.mkdtemp(prefix="mj-upscale-")
    return MidjourneyHook().download_image(upscale, os.path.join(folder, "upscale.png")).removeprefix("file://")


@dag(
    dag_id="mj_every_operator",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["midjourney", "example"],
    # Operators and sensors take their poll interval from here (a DAG-wide setting).
    default_args={"poll_interval": POLL_INTERVAL, "poke_interval": POLL_INTERVAL},
)
def mj_every_operator():
    # [START imagine]
    imagine = MidjourneyImagineOperator(
        task_id="imagine",
        prompt="a paper boat on a puddle --ar 3:2 --v 6.1",
        state="{{ dag.dag_id }}/{{ run_id }}",  # a tag stored on the Midjourney task
    )
    # [END imagine]

    # [START image_seed]
    seed = MidjourneyImageSeedOperator(task_id="seed", mj_task_id=imagine.output)
    # the same prompt again, with the same seed
    MidjourneyImagineOperator(
        task_id="imagine_same_seed",
        prompt="a paper boat on a puddle --ar 3:2 --v 6.1 --seed {{ ti.xcom_pull(task_ids='seed') }}",
    ).set_upstream(seed)
    # [END image_seed]

    # [START action]
    upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U2")
    zoom = MidjourneyActionOperator(
        task_id="zoom",
        mj_task_id=upscale.output,
        button="Custom Zoom",
        modal_prompt="a paper boat on a puddle --zoom 2",
    )
    # all four upscales of the grid, one mapped task instance each
    upscale_all = MidjourneyActionOperator.partial(task_id="upscale_all", mj_task_id=imagine.output).expand(
        button=["U1", "U2", "U3", "U4"]
    )
    # [END action]

    # [START list_tasks]
    # the return values of a mapped task: a list of task dicts (their ids are read)
    MidjourneyListTasksOperator(task_id="list_upscales", mj_task_ids=upscale_all.output)
    # [END list_tasks]

    # [START describe]
    # by URL: the upscale's image (any http(s) image URL works)
    MidjourneyDescribeOperator(
        task_id="describe",
        link="{{ ti.xcom_pull(task_ids='upscale')['imageUrl'] }}",
    ).set_upstream(upscale)
    # by file: a path on the worker (bytes and data URLs work too)
    MidjourneyDescribeOperator(task_id="describe_file", image=save_upscale(upscale.output))
    # [END describe]

    # [START save_image]
    # the image of a task an earlier task returned (its dict, or its id): no new job is paid for
    MidjourneySaveImageOperator(
        task_id="save_zoom",
        mj_task=zoom.output,
        destination=OUTPUT + "/{{ ds }}/zoom-{mj_task_id}",  # the extension follows the image's bytes
    )
    # [END save_image]

    # [START sensor]
    submit = MidjourneyImagineOperator(task_id="submit", prompt="a kite", wait_for_completion=False)
    MidjourneyTaskSensor(
        task_id="wait",
        mj_task_id=XComArg(submit),  # the id submit returned; a task dict works too
        timeout=2 * 3600,
        deferrable=True,  # or mode="reschedule" / mode="poke"
    )
    # [END sensor]


mj_every_operator()
