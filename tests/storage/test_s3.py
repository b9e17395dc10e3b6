"""Saving to S3 through ObjectStoragePath, against moto's S3 server on 127.0.0.1 (see conftest)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from airflow_provider_mj.exceptions import MidjourneyConnectionError
from tests.storage.conftest import noise_image, noise_sha256

pytest.importorskip("s3fs", reason="s3fs and the Amazon provider are in the test extra")


def _emulator_bytes(emulator, task) -> bytes:
    import requests

    return requests.get(task.image_url, timeout=10).content


def test_a_save_to_s3_is_the_image_with_its_uri_size_and_sha256(hook, finished, bucket, emulator):
    from airflow.sdk import ObjectStoragePath

    saved = hook.download_image(finished, ObjectStoragePath(f"{bucket.url}/mj/fox.png"))
    expected = _emulator_bytes(emulator, finished)
    assert bucket.keys() == ["mj/fox.png"]
    assert bucket.read("mj/fox.png") == expected
    assert saved == f"{bucket.url}/mj/fox.png"  # the ObjectStoragePath as a string, conn id included
    assert saved.uri == f"s3://{bucket.name}/mj/fox.png"  # no conn id: the object's own URI
    assert saved.size_bytes == len(expected) and saved.sha256 == hashlib.sha256(expected).hexdigest()
    assert saved.media_type == "image/png" and saved.written


def test_a_folder_url_string_gets_the_file_name_and_extension_of_the_image(hook, finished, bucket):
    saved = hook.download_image(finished, f"{bucket.url}/daily/")
    assert bucket.keys() == [f"daily/{saved.name}"] and saved.name.endswith(".png")


def test_a_second_save_of_the_same_task_writes_the_object_once(hook, finished, bucket):
    target = f"{bucket.url}/mj/fox.png"
    first = hook.download_image(finished, target)
    second = hook.download_image(finished.to_dict(), target)
    assert first.written and not second.written and second.sha256 == first.sha256
    assert bucket.versions("mj/fox.png") == 1  # the bucket is versioned: a second PUT would show
    assert bucket.keys() == ["mj/fox.png"]


def test_a_broken_transfer_leaves_no_object_and_no_open_upload(hook, bucket, cdn):
    # 12 MiB: more than one 5 MiB part, so s3fs has started a multipart upload when the cut comes.
    size = 12 * 1024 * 1024
    url = cdn.serve("/big.png", lambda: noise_image(size), size=size, cut_after=11 * 1024 * 1024)
    with pytest.raises(MidjourneyConnectionError):
        hook.download_image(url, f"{bucket.url}/mj/big.png")
    assert len(cdn.hits) == 1 + hook.config.max_retries  # every try broke, and was retried
    assert bucket.keys() == [] and bucket.open_uploads() == []


def test_a_large_image_streams_to_s3_in_parts(hook, bucket, cdn):
    size = 12 * 1024 * 1024
    url = cdn.serve("/big.png", lambda: noise_image(size), size=size)
    saved = hook.download_image(url, f"{bucket.url}/mj/big.png")
    assert saved.size_bytes == size and saved.sha256 == noise_sha256(size)
    assert hashlib.sha256(bucket.read("mj/big.png")).hexdigest() == saved.sha256


def test_async_save_to_s3(hook, finished, bucket, emulator):
    async def run():
        async with hook:
            return await hook.adownload_image(finished, f"{bucket.url}/async/fox.png")

    saved = asyncio.run(run())
    assert bucket.read("async/fox.png") == _emulator_bytes(emulator, finished)
    assert saved.uri == f"s3://{bucket.name}/async/fox.png"


def test_s3_lineage_is_the_final_uri_once(hook, finished, bucket, monkeypatch):
    # Airflow's real collector instead of the no-op one it uses without a lineage reader plugin.
    from airflow.sdk import lineage

    collector = lineage.HookLineageCollector()
    monkeypatch.setattr(lineage, "get_hook_lineage_collector", lambda: collector)
    hook.download_image(finished, f"{bucket.url}/mj/fox.png")
    outputs = [(i.asset.uri, i.count) for i in collector.collected_assets.outputs]
    assert outputs == [(f"s3://{bucket.name}/mj/fox.png", 1)]
