"""PNG generation: valid files, deterministic, bounded cache, cheap import of the package."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from airflow_provider_mj.emulator import images

from . import _png
from .conftest import Client


def test_rendered_png_is_valid_and_deterministic():
    one = images.render("0123456789abcdef", "grid", 480, 320)
    assert one == images.render("0123456789abcdef", "grid", 480, 320)
    assert _png.size(one) == (480, 320) and len(_png.pixels(one)) == 320
    assert one != images.render("fedcba9876543210", "grid", 480, 320)


def test_a_preview_has_the_images_size_and_other_pixels():
    grid = images.render("0123456789abcdef", "grid", 480, 480)
    preview = images.render("0123456789abcdef", "grid-preview", 480, 480)
    assert _png.size(preview) == _png.size(grid) and preview != grid


def test_size_for_ratio():
    assert images.size_for_ratio(240, 2, 3) == (160, 240)
    assert images.size_for_ratio(240, 3, 2) == (240, 160)
    assert images.size_for_ratio(240, 1, 1) == (240, 240)


def test_image_names_are_validated():
    assert images.parse_image_name("0123456789abcdef_grid_480x480.png") == ("0123456789abcdef", "grid", 480, 480)
    for bad in ("0123456789abcdef_grid_481x480.png", "0123456789abcdef_grid_0x480.png",
                "../etc/passwd", "0123456789abcdef_grid_4096x480.png", "XYZ_grid_10x10.png"):
        assert images.parse_image_name(bad) is None


def test_cache_is_bounded_by_bytes():
    cache = images.ImageCache(max_bytes=20_000)
    for n in range(50):
        assert cache.get(images.image_name(images.digest(str(n)), "grid", 480, 480)) is not None
    assert cache.lru.currsize <= 20_000 and 0 < len(cache.lru) < 50


def test_importing_the_model_or_the_emulator_package_does_not_import_fastapi():
    code = ("import sys, airflow_provider_mj.models, airflow_provider_mj.emulator as e; "
            "assert e.EmulatorSettings and e.FaultSettings and e.start_emulator; "
            "bad = [m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- placeholder images that read as what they are ----------------------------------------------

GUTTER = bytes(images.GUTTER)
STRIPES = {b"\x3a\x3a\x40", b"\x30\x30\x36"}


def _pixel(rows: list[bytes], x: int, y: int) -> bytes:
    return rows[y][3 * x:3 * x + 3]


def _mean(rows: list[bytes]) -> tuple[float, float, float]:
    n = sum(len(r) // 3 for r in rows)
    return tuple(sum(sum(r[c::3]) for r in rows) / n for c in range(3))


def _ink(rows: list[bytes], x0: int, y0: int, x1: int, y1: int) -> set[tuple[int, int]]:
    """Where near-white text pixels are in a box (the scenes' ridges, below, are never that light)."""
    return {(x - x0, y - y0) for y in range(y0, y1) for x in range(x0, x1) if min(_pixel(rows, x, y)) >= 180}


def test_a_gutter_separates_the_four_images_of_a_grid():
    rows = _png.pixels(images.render(images.digest("imagine", "a red kite"), "grid", 480, 480))

    for x in (0, 238, 239, 240, 241, 479):  # outer frame and the vertical gutter
        assert all(_pixel(rows, x, y) == GUTTER for y in range(480)), x
    for y in (0, 239, 240, 479):
        assert rows[y] == GUTTER * 480, y
    assert _pixel(rows, 120, 120) != GUTTER  # a picture inside it


def test_each_image_shows_its_number_and_the_emulator_mark():
    seed = images.digest("imagine", "a red kite")
    quads = [_png.quadrant(images.render(seed, "grid", 480, 480), n) for n in (1, 2, 3, 4)]

    numbers = [frozenset(_ink(q, 0, 0, 60, 60)) for q in quads]
    marks = [frozenset(_ink(q, 150, 200, 240, 240)) for q in quads]
    assert all(numbers) and len(set(numbers)) == 4  # four different glyphs in the top-left corners
    assert all(marks) and len(set(marks)) == 1  # the same "EMULATOR" mark bottom-right in each
    # An image that is not part of a grid (a described upload) has the mark but no number.
    alone = _png.pixels(images.render(images.digest("describe", "x"), "single", 240, 240))
    assert not _ink(alone, 0, 0, 60, 60) and _ink(alone, 150, 200, 240, 240)


def test_the_upscale_of_image_n_is_exactly_quadrant_n_number_included():
    seed = images.digest("imagine", "a lighthouse at dusk")
    grid = images.render(seed, "grid", 480, 320)
    for n in (1, 2, 3, 4):
        assert _png.pixels(images.render(images.cell_seed(seed, n), "single", 240, 160)) == _png.quadrant(grid, n)


@pytest.mark.parametrize("prompt, warm", [("a red barn in autumn", True), ("a blue lake under a winter sky", False),
                                          ("a lighthouse at dusk, oil painting", True), ("a calm ocean", False)])
def test_the_palette_comes_from_the_prompts_words(prompt, warm):
    r, _, b = _mean(_png.pixels(images.render(images.digest("imagine", prompt), "grid", 240, 240)))

    assert (r > b) is warm, (prompt, r, b)


def test_a_colourless_prompt_still_gets_its_own_palette_and_children_keep_it():
    a, b = images.digest("imagine", "a cat on a sofa"), images.digest("imagine", "a teapot")
    assert a[:3] != b[:3]
    assert images.cell_seed(a, 2)[:3] == a[:3] and images.digest(a, "variation", "1")[:3] == a[:3]
    # A new prompt with a colour (a custom zoom, a remix) brings its own palette.
    assert images.digest(a, "custom_zoom", "a cat on a green lawn")[:3] == images.digest("green")[:3]


def _revealed(rows: list[bytes], x: int) -> int:
    """Rows of one column that show the picture rather than the hatched 'still rendering' area."""
    return sum(1 for y in range(len(rows)) if _pixel(rows, x, y) not in STRIPES | {GUTTER})


def test_a_preview_is_partial_and_fills_with_progress():
    seed = images.digest("imagine", "a lighthouse at dusk")
    final = images.render(seed, "grid", 480, 480)
    shown = {p: _revealed(_png.quadrant(images.render(seed, images.preview_kind("grid", p), 480, 480), 1), 180)
             for p in (0, 25, 50, 75)}

    assert shown[0] < shown[25] < shown[50] < shown[75] < _revealed(_png.quadrant(final, 1), 180)
    assert 0.15 < shown[25] / 240 < 0.35 and 0.65 < shown[75] / 240 < 0.85
    names = {images.image_name(seed, images.preview_kind("grid", p), 480, 480) for p in (25, 50, 75)}
    assert all(images.parse_image_name(name) for name in names) and len(names) == 3


def test_a_running_job_shows_a_growing_preview_over_http(emu):
    emu.configure(job_seconds=1.0, progress_steps=3)
    c = Client(emu)
    task_id = c.submit("imagine", {"prompt": "a lighthouse at dusk"})
    urls = []
    while (task := c.fetch(task_id))["status"] != "SUCCESS":
        if task["status"] == "IN_PROGRESS" and task["imageUrl"] not in urls:
            urls.append(task["imageUrl"])
        time.sleep(0.02)

    shown = [_revealed(_png.quadrant(requests.get(url).content, 1), 180) for url in urls]
    assert len(urls) >= 2 and shown == sorted(shown) and len(set(shown)) == len(shown)


def test_describing_an_upscale_answers_with_the_words_of_its_prompt(client):
    grid = client.imagine_done("a lighthouse on a basalt cliff at dusk, warm window light, oil painting")
    upscale = client.wait(client.press(grid, "U3").json()["result"])

    described = client.wait(client.submit("describe", {"link": upscale["imageUrl"]}))

    prompts = [p for p in described["properties"]["finalPrompt"].split("\n\n") if p]
    assert len(prompts) == 4 and len(set(prompts)) == 4
    assert all("a lighthouse on a basalt cliff at dusk" in p and p.endswith("--ar 1:1") for p in prompts), prompts
    assert "robot" not in described["properties"]["finalPrompt"]
