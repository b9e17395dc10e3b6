"""
### Imagine, upscale, then Custom Zoom through the modal flow

1. **imagine** a grid from the `prompt` param;
2. **upscale** one image of it (`upscale` param); zoom buttons exist only on an upscale;
3. **custom_zoom** presses `Custom Zoom` on the upscale. Midjourney answers that button with
   code 21: the new task waits in status `MODAL` for a prompt. Given `modal_prompt`, the operator
   sends it to `/mj/submit/modal` itself and then waits for the zoomed grid like any other job.

The modal prompt is the prompt to paint into the widened frame plus `--zoom <factor>`, where the
factor is between 1 (no zoom) and 2 (the frame doubles). Here it is built from the `prompt` and
`zoom` params.

For `Vary (Region)`, the other modal button, pass `mask=` (a PNG path or data URL) as well; see
`docs/howto/modal-actions.md`.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_mj.operators import MidjourneyActionOperator, MidjourneyImagineOperator

POLL_INTERVAL = float(os.environ.get("MJ_EXAMPLE_POLL_INTERVAL", "5"))
JOB_TIMEOUT = 30 * 60


@dag(
    dag_id="mj_zoom_out",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["midjourney", "example"],
    params={
        "prompt": Param("a tiny red cabin in a snowy forest clearing, watercolor", type="string",
                        minLength=1, title="Prompt"),
        "upscale": Param("U1", enum=["U1", "U2", "U3", "U4"], title="Image to upscale"),
        "zoom": Param(1.5, type="number", minimum=1, maximum=2, title="Zoom factor (--zoom)"),
    },
)
def mj_zoom_out():
    # [START custom_zoom]
    imagine = MidjourneyImagineOperator(
        task_id="imagine",
        prompt="{{ params.prompt }}",
        state="{{ dag.dag_id }}/{{ run_id }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    )
    upscale = MidjourneyActionOperator(
        task_id="upscale",
        # The finished imagine task dict (its return value): the operator reads the buttons from it.
        mj_task_id=imagine.output,
        button="{{ params.upscale }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    )
    MidjourneyActionOperator(
        task_id="custom_zoom",
        mj_task_id=upscale.output["mj_task_id"],
        button="Custom Zoom",
        modal_prompt="{{ params.prompt }} --zoom {{ params.zoom }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    )
    # [END custom_zoom]


mj_zoom_out()
