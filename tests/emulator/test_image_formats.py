"""The emulator serves PNG, WebP and JPEG: by extension, by ?format= under any name, and in task links."""

from __future__ import annotations

import io
import time

import pytest
import requests

from airflow_provider_mj.emulator import images

PIL = pytest.importorskip("PIL.Image", reason="WebP and JPEG need Pillow, in the test extra")

SEED = images.digest("imagine", "a lighthouse at dusk")


def _get(emulator, path):
    return requests.get(emulator.base_url + path, timeout=10)


def _pixels(data: bytes) -> bytes:
    with PIL.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


@pytest.mark.parametrize(("ext", "media_type", "magic"), [
    ("png", "image/png", b"\x89PNG"), ("webp", "image/webp", b"RIFF"), ("jpg", "image/jpeg", b"\xff\xd8\xff"),
])
def test_the_extension_picks_the_encoding(emulator, ext, media_type, magic):
    reply = _get(emulator, f"/images/{SEED}_grid_480x480.{ext}")
    assert reply.status_code == 200 and reply.headers["Content-Type"] == media_type
    assert reply.content.startswith(magic)
    if ext == "webp":
        assert reply.content[8:12] == b"WEBP"


def test_webp_is_lossless_the_same_pixels_as_the_png(emulator):
    png = _get(emulator, f"/images/{SEED}_grid_480x480.png").content
    webp = _get(emulator, f"/images/{SEED}_grid_480x480.webp").content
    assert _pixels(webp) == _pixels(png)


def test_a_png_name_answers_webp_bytes_when_the_query_asks(emulator):
    reply = _get(emulator, f"/images/{SEED}_single_240x240.png?format=webp")
    assert reply.headers["Content-Type"] == "image/webp" and reply.content[8:12] == b"WEBP"
    assert _get(emulator, f"/images/{SEED}_single_240x240.png?format=gif").status_code == 400


def test_task_links_carry_the_configured_format(emulator):
    emulator.configure(image_format="webp")
    body = requests.post(emulator.base_url + "/mj/submit/imagine", json={"prompt": "a fox"}, timeout=10).json()
    deadline = time.time() + 10
    while True:
        task = requests.get(f"{emulator.base_url}/mj/task/{body['result']}/fetch", timeout=10).json()
        if task["status"] == "SUCCESS" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert task["imageUrl"].endswith(".webp")
    assert _get(emulator, task["imageUrl"].removeprefix(emulator.base_url)).content[8:12] == b"WEBP"


def test_without_pillow_webp_answers_501_naming_the_extra(emulator, monkeypatch):
    # A venv without Pillow cannot be had inside this test run: hide the module instead.
    import sys

    monkeypatch.setitem(sys.modules, "PIL", None)
    other = images.digest("imagine", "not rendered yet")  # not in the image cache
    reply = _get(emulator, f"/images/{other}_single_64x64.webp")
    assert reply.status_code == 501 and "airflow-provider-mj[images]" in reply.text
    assert _get(emulator, f"/images/{other}_single_64x64.png").content.startswith(b"\x89PNG")  # PNG needs nothing
