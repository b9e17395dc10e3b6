"""Formats follow the bytes: PNG, WebP and JPEG are read from the content, not from the URL or the name.

The emulator serves WebP and JPEG (``image_format``, or ``?format=`` under a ``.png`` link, as
Discord's media proxy does). Pillow is in the test extra; the cases "Pillow is missing" hide the
module (a second venv without it is not available inside one test run).
"""

from __future__ import annotations

import io
import logging
import sys
import time

import pytest

from airflow_provider_mj.exceptions import MidjourneyConfigurationError

Image = pytest.importorskip("PIL.Image", reason="Pillow is in the test extra")


def _finished(hook, prompt="a red fox in the snow"):
    result = hook.imagine(prompt)
    return hook.wait_for_task(result.mj_task_id, poll_interval=0.05, deadline=time.time() + 15)


def _pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def _format(path) -> str:
    with Image.open(path) as image:
        return image.format


@pytest.fixture
def hide_pillow(monkeypatch):
    """Call it to make ``import PIL`` fail from then on (the in-process emulator too, so warm it first)."""

    def hide() -> None:
        monkeypatch.setitem(sys.modules, "PIL", None)
        monkeypatch.setitem(sys.modules, "PIL.Image", None)

    return hide


def test_webp_links_save_as_webp_into_a_folder(hook, emu, tmp_path):
    emu.configure(image_format="webp")
    saved = hook.download_image(_finished(hook), str(tmp_path) + "/")
    assert saved.name.endswith(".webp") and saved.media_type == "image/webp"
    assert _format(saved) == "WEBP"


def test_a_name_without_extension_gets_the_one_of_the_bytes(hook, emu, tmp_path):
    emu.configure(image_format="jpeg")
    saved = hook.download_image(_finished(hook), tmp_path / "fox")
    assert saved == str(tmp_path / "fox.jpg") and saved.media_type == "image/jpeg" and _format(saved) == "JPEG"


def test_webp_bytes_behind_a_png_link_are_detected_from_the_content(hook, emu, tmp_path):
    task = _finished(hook)
    saved = hook.download_image(task.image_url + "?format=webp", tmp_path / "fox")
    assert saved.name == "fox.webp" and saved.media_type == "image/webp"


def test_a_png_name_with_webp_bytes_is_converted_losslessly_when_pillow_is_there(hook, emu, tmp_path):
    task = _finished(hook)
    saved = hook.download_image(task.image_url + "?format=webp", tmp_path / "fox.png")
    assert saved == str(tmp_path / "fox.png") and _format(saved) == "PNG"
    assert saved.media_type == "image/png" and saved.converted_from == "image/webp"
    png = hook.get_conn().get(task.image_url, timeout=10).content  # the emulator's own PNG
    assert _pixels((tmp_path / "fox.png").read_bytes()) == _pixels(png)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fox.png"]


def test_a_png_name_with_webp_bytes_is_named_webp_and_logged_without_pillow(hook, emu, tmp_path, caplog, capsys,
                                                                              hide_pillow):
    task = _finished(hook)
    hook.get_conn().get(task.image_url + "?format=webp", timeout=10)  # the emulator caches the WebP
    hide_pillow()
    with caplog.at_level(logging.WARNING):
        saved = hook.download_image(task.image_url + "?format=webp", tmp_path / "fox.png")
    assert saved == str(tmp_path / "fox.webp") and saved.media_type == "image/webp"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fox.webp"]
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err  # Airflow's structlog writes to stdout
    assert "WEBP, not PNG as the name fox.png says" in text and "airflow-provider-mj[images]" in text


def test_a_jpg_name_with_png_bytes_becomes_a_jpeg(hook, emu, tmp_path):
    saved = hook.download_image(_finished(hook), tmp_path / "fox.jpg")
    assert _format(saved) == "JPEG" and saved.converted_from == "image/png"


def test_split_grid_without_pillow_names_the_extra_before_any_request(hook, emu, tmp_path, hide_pillow):
    task = _finished(hook)
    hide_pillow()
    before = len(emu.counters()["requests"])
    with pytest.raises(MidjourneyConfigurationError, match=r"airflow-provider-mj\[images\]"):
        hook.download_image(task, tmp_path / "fox.png", split_grid=True)
    assert list(tmp_path.iterdir()) == [] and len(emu.counters()["requests"]) == before


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_split_grid_gives_exactly_the_four_upscales(hook, emu, tmp_path, fmt):
    emu.configure(image_format=fmt)
    grid = _finished(hook)
    parts = hook.download_image(grid, tmp_path / f"fox.{fmt}", split_grid=True)
    assert [p.name for p in parts] == [f"fox_{n}.{fmt}" for n in (1, 2, 3, 4)]
    for n, part in enumerate(parts, start=1):
        upscale = hook.wait_for_task(hook.action(grid.id, grid.custom_ids()[f"U{n}"]).mj_task_id,
                                     poll_interval=0.05, deadline=time.time() + 15)
        reference = hook.get_conn().get(upscale.image_url, timeout=10).content
        saved = (tmp_path / part.name).read_bytes()
        assert _format(io.BytesIO(saved)) == fmt.upper()
        assert _pixels(saved) == _pixels(reference), f"image {n} differs from U{n}"
        assert part.size_bytes == len(saved) and part.mj_task_id == grid.id


def test_split_grid_of_bytes_that_are_not_an_image_is_a_clear_error(canned, make_hook, tmp_path):
    from airflow_provider_mj.exceptions import MidjourneyServerError

    server = canned()
    server.reply(200, b"\x00\x01binary-but-no-image" * 8, {"Content-Type": "application/octet-stream"})
    hook = make_hook(server.base_url, max_retries=0)
    with pytest.raises(MidjourneyServerError, match="could not be decoded"):
        hook.download_image(server.base_url + "/img", tmp_path / "grid.png", split_grid=True)
    assert list(tmp_path.iterdir()) == []
