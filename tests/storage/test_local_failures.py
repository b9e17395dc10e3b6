"""A transfer that breaks part-way: retried from the first byte, and nothing half-written is ever left."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_mj.exceptions import MidjourneyConnectionError
from tests.storage.conftest import noise_image, noise_sha256

SIZE = 3 * 1024 * 1024


def _files(directory):
    return sorted(p.name for p in directory.iterdir())


def test_a_transfer_that_always_breaks_leaves_no_file(hook, cdn, tmp_path):
    url = cdn.serve("/up.png", lambda: noise_image(SIZE), size=SIZE, cut_after=SIZE // 2)
    with pytest.raises(MidjourneyConnectionError):
        hook.download_image(url, tmp_path / "up.png")
    assert _files(tmp_path) == [] and len(cdn.hits) == 1 + hook.config.max_retries


def test_a_transfer_that_breaks_once_is_retried_whole(hook, cdn, tmp_path):
    url = cdn.serve("/up.png", lambda: noise_image(SIZE), size=SIZE, cut_after=SIZE // 2, cuts=1)
    saved = hook.download_image(url, tmp_path / "up.png")
    assert saved.sha256 == noise_sha256(SIZE) and saved.size_bytes == SIZE
    assert _files(tmp_path) == ["up.png"] and len(cdn.hits) == 2


def test_the_async_path_retries_and_leaves_nothing_either(hook, cdn, tmp_path):
    broken = cdn.serve("/broken.png", lambda: noise_image(SIZE), size=SIZE, cut_after=SIZE // 3)
    once = cdn.serve("/once.png", lambda: noise_image(SIZE), size=SIZE, cut_after=SIZE // 3, cuts=1)

    async def run():
        async with hook:
            with pytest.raises(MidjourneyConnectionError):
                await hook.adownload_image(broken, tmp_path / "broken.png")
            return await hook.adownload_image(once, tmp_path / "once.png")

    saved = asyncio.run(run())
    assert saved.sha256 == noise_sha256(SIZE) and _files(tmp_path) == ["once.png"]


def test_an_existing_file_survives_a_failed_download(hook, cdn, tmp_path):
    (tmp_path / "up.png").write_bytes(b"the earlier image")
    url = cdn.serve("/up.png", lambda: noise_image(SIZE), size=SIZE, cut_after=SIZE // 2)
    with pytest.raises(MidjourneyConnectionError):
        hook.download_image(url, tmp_path / "up.png")
    assert (tmp_path / "up.png").read_bytes() == b"the earlier image" and _files(tmp_path) == ["up.png"]
