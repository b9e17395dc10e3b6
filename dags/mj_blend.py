"""
### Blend images from a folder, then upscale one

1. **collect_images** lists the images (`.png`, `.jpg`, `.jpeg`, `.webp`) in `image_dir` on the
   worker and takes the first `image_count` of them in name order. If the folder is missing or
   holds fewer than two images, it first writes a few small sample PNGs there (no network), so the
   DAG runs out of the box.
2. **blend** sends them to `/mj/submit/blend` (2 to 5 images) with the chosen `dimensions`.
3. **upscale** presses one button (`U1`..`U4`) of the blended grid.

**Params**

| param | meaning |
|---|---|
| `image_dir` | a folder on the worker. Empty: `$AIRFLOW_HOME/mj-blend-inputs`. |
| `image_count` | how many images to blend, 2 to 5 |
| `dimensions` | `SQUARE` (1:1), `PORTRAIT` (2:3) or `LANDSCAPE` (3:2) |
| `upscale` | which image of the blended grid to upscale |

The image paths travel through XCom and are read by the blend task, so with several workers the
folder must be on storage every worker sees. The images are sent base64-encoded in one request:
keep them small.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task

from airflow_provider_mj.operators import MidjourneyActionOperator, MidjourneyBlendOperator

POLL_INTERVAL = float(os.environ.get("MJ_EXAMPLE_POLL_INTERVAL", "5"))
JOB_TIMEOUT = 30 * 60
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
#: Colours of the generated sample images: top-left and bottom-right corners of a gradient.
SAMPLE_COLOURS = [
    ((250, 200, 60), (200, 40, 90)),
    ((40, 120, 220), (20, 200, 160)),
    ((120, 60, 200), (250, 150, 200)),
    ((30, 30, 30), (230, 230, 210)),
    ((240, 90, 30), (60, 40, 120)),
]


def _png_bytes(width: int, height: int, start: tuple[int, int, int], end: tuple[int, int, int]) -> bytes:
    """A diagonal-gradient RGB PNG, written with the standard library only."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = bytearray()
    span = max(width + height - 2, 1)
    for y in range(height):
        rows.append(0)  # filter type "None" for this scanline
        for x in range(width):
            t = (x + y) / span
            rows.extend(round(a + (b - a) * t) for a, b in zip(start, end))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _write_samples(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for n, (start, end) in enumerate(SAMPLE_COLOURS[:count], start=1):
        path = folder / f"sample-{n}.png"
        tmp = path.with_suffix(".png.tmp")
        tmp.write_bytes(_png_bytes(128, 128, start, end))
        tmp.replace(path)  # atomic: a concurrent run never reads half a file
        written.append(path)
    return written


@task
def collect_images(image_dir: str, image_count: int) -> list[str]:
    """The paths of the images to blend; writes sample PNGs first if the folder has fewer than two."""
    count = int(image_count)
    if not 2 <= count <= 5:
        raise ValueError(f"image_count must be between 2 and 5, got {count}")
    folder = Path(image_dir.strip() or os.path.join(os.environ.get("AIRFLOW_HOME", "~/airflow"), "mj-blend-inputs"))
    folder = folder.expanduser().resolve()

    def listed() -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    images = listed()
    if len(images) < 2:
        print(f"{folder} holds {len(images)} image(s); writing {count} sample PNGs there")
        _write_samples(folder, count)
        images = listed()
    chosen = images[:count]
    print("blending:", *[p.name for p in chosen])
    return [str(p) for p in chosen]


@dag(
    dag_id="mj_blend",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    tags=["midjourney", "example"],
    params={
        "image_dir": Param("", type="string", title="Image folder",
                           description="Folder on the worker. Empty: $AIRFLOW_HOME/mj-blend-inputs."),
        "image_count": Param(2, type="integer", minimum=2, maximum=5, title="Images to blend"),
        "dimensions": Param("SQUARE", enum=["SQUARE", "PORTRAIT", "LANDSCAPE"], title="Dimensions"),
        "upscale": Param("U1", enum=["U1", "U2", "U3", "U4"], title="Image to upscale"),
    },
)
def mj_blend():
    # [START blend]
    images = collect_images(image_dir="{{ params.image_dir }}", image_count="{{ params.image_count }}")

    blend = MidjourneyBlendOperator(
        task_id="blend",
        images=images,
        dimensions="{{ params.dimensions }}",
        state="{{ dag.dag_id }}/{{ run_id }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    )
    # [END blend]

    MidjourneyActionOperator(
        task_id="upscale",
        mj_task_id=blend.output["mj_task_id"],
        button="{{ params.upscale }}",
        poll_interval=POLL_INTERVAL,
        timeout=JOB_TIMEOUT,
    )


mj_blend()
