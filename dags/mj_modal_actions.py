"""
### Modal actions: Vary (Region) with a mask, a remix, and a modal finished by a second task

Some buttons open a form (a "modal") before Midjourney runs anything: the server answers code 21
and the new task waits in status `MODAL`. This DAG shows the three ways through it:

1. **imagine** a grid and **upscale** `U1`;
2. **vary_region** presses `Vary (Region)` on the upscale with a mask (and a prompt for the
   region): the action operator completes the modal itself;
3. **remix** presses `V2` on the grid with remix on and a new prompt;
4. **zoom_needs_input** presses `Custom Zoom` without a prompt: it fails on purpose with
   `MidjourneyModalRequiredError`, after pushing the waiting task's id as `mj_task_id`, and
   **finish_zoom** (trigger rule `all_done`) completes that modal with `MidjourneyModalOperator`.
   The run succeeds; `zoom_needs_input` shows as failed.

See `docs/howto/modal-actions.md`. The mask is a small PNG made in this file (the standard
library only), passed as a data URL.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib

import pendulum
from airflow.sdk import XComArg, dag

from airflow_provider_mj.operators import (
    MidjourneyActionOperator,
    MidjourneyImagineOperator,
    MidjourneyModalOperator,
)

POLL_INTERVAL = float(os.environ.get("MJ_EXAMPLE_POLL_INTERVAL", "5"))


def _sky_mask(size: int = 64) -> str:
    """A data URL of a black PNG whose top third is white: the region to repaint."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + (b"\xff" if y < size // 3 else b"\x00") * size for y in range(size))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


SKY_MASK = _sky_mask()


@dag(
    dag_id="mj_modal_actions",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["midjourney", "example"],
    default_args={"poll_interval": POLL_INTERVAL},
)
def mj_modal_actions():
    imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a lighthouse on a cliff, oil painting")
    upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U1")

    # [START vary_region]
    MidjourneyActionOperator(
        task_id="vary_region",
        mj_task_id=upscale.output,
        button="Vary (Region)",
        mask=SKY_MASK,  # a PNG path, bytes, or a data: URL
        modal_prompt="a flock of birds",  # optional: what to paint in the region
    )
    # [END vary_region]

    # [START remix]
    MidjourneyActionOperator(task_id="remix", mj_task_id=imagine.output, button="V2",
                             enable_remix=True, modal_prompt="the same scene, in winter")
    # [END remix]

    # [START two_steps]
    zoom = MidjourneyActionOperator(task_id="zoom_needs_input", mj_task_id=upscale.output, button="Custom Zoom")
    # fails with MidjourneyModalRequiredError, after pushing the MODAL task id as "mj_task_id"
    MidjourneyModalOperator(
        task_id="finish_zoom",
        mj_task_id=XComArg(zoom, key="mj_task_id"),
        prompt="a lighthouse on a cliff --zoom 1.8",
        trigger_rule="all_done",
    )
    # [END two_steps]


mj_modal_actions()
