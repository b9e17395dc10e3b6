"""Downloads stream: the Python memory held while saving a 40 MB image is bounded, far below its size.

Measured with tracemalloc (the bytes Python allocates, peak over the download), not with time:
deterministic, and not disturbed by a busy machine. The 40 MB come from the streaming CDN of
conftest, which generates them 64 KiB at a time. benchmarks/download_memory.py measures RSS.
"""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from tests.storage.conftest import noise_image, noise_sha256

SIZE = 40 * 1024 * 1024
#: Generous for a 256 KiB chunk size (requests, urllib3 and the CDN thread hold a few chunks),
#: and a fifth of what buffering the image would take.
LOCAL_BOUND = 8 * 1024 * 1024
#: Uploads hold s3fs's 5 MiB part buffer and botocore's copies of the part being sent (about 17 MiB
#: measured): a few parts, whatever the image's size.
S3_BOUND = 24 * 1024 * 1024


def _peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.fixture
def big_url(cdn, hook, tmp_path):
    """The 40 MB image's URL, after one small download (imports and sessions are not the image's)."""
    small = cdn.serve("/warm.png", lambda: noise_image(64 * 1024), size=64 * 1024)
    hook.download_image(small, tmp_path / "warm.png")
    return cdn.serve("/upscale.png", lambda: noise_image(SIZE), size=SIZE)


def test_a_40_mb_image_saves_to_a_local_file_in_bounded_memory(hook, big_url, tmp_path):
    saved, peak = _peak(lambda: hook.download_image(big_url, tmp_path / "big.png"))
    assert saved.size_bytes == SIZE and saved.sha256 == noise_sha256(SIZE)
    assert (tmp_path / "big.png").stat().st_size == SIZE
    assert peak < LOCAL_BOUND, f"peak {peak / 2**20:.1f} MiB while saving {SIZE / 2**20:.0f} MiB"


def test_the_async_download_is_bounded_too(hook, big_url, tmp_path):
    async def run():
        async with hook:
            await hook.adownload_image(big_url.replace("upscale", "warm"), tmp_path / "warm.png")  # warm the loop
            tracemalloc.reset_peak()
            return await hook.adownload_image(big_url, tmp_path / "big.png")

    saved, peak = _peak(lambda: asyncio.run(run()))
    assert saved.size_bytes == SIZE and saved.sha256 == noise_sha256(SIZE)
    assert peak < LOCAL_BOUND, f"peak {peak / 2**20:.1f} MiB while saving {SIZE / 2**20:.0f} MiB"


def test_a_40_mb_image_streams_to_s3_in_bounded_memory(hook, big_url, bucket):
    pytest.importorskip("s3fs")
    hook.download_image(big_url.replace("upscale", "warm"), f"{bucket.url}/warm.png")  # s3fs's first use
    saved, peak = _peak(lambda: hook.download_image(big_url, f"{bucket.url}/mj/big.png"))
    assert saved.size_bytes == SIZE and "mj/big.png" in bucket.keys()
    assert peak < S3_BOUND, f"peak {peak / 2**20:.1f} MiB while uploading {SIZE / 2**20:.0f} MiB"
