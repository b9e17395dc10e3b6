"""PNG generation: valid files, deterministic, bounded cache, cheap import of the package."""

from __future__ import annotations

import subprocess
import sys

from airflow_provider_mj.emulator import images

from . import _png


def test_rendered_png_is_valid_and_deterministic():
    one = images.render("0123456789abcdef", "grid", 480, 320)
    assert one == images.render("0123456789abcdef", "grid", 480, 320)
    assert _png.size(one) == (480, 320) and len(_png.pixels(one)) == 320
    assert one != images.render("fedcba9876543210", "grid", 480, 320)


def test_preview_is_darker_version_of_the_same_size():
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
    assert cache.bytes <= 20_000 and 0 < len(cache) < 50


def test_importing_the_model_or_the_emulator_package_does_not_import_fastapi():
    code = ("import sys, airflow_provider_mj.models, airflow_provider_mj.emulator as e; "
            "assert e.EmulatorSettings and e.FaultSettings and e.start_emulator; "
            "bad = [m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
