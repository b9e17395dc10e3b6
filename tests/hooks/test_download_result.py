"""What download_image returns (SavedImage) and reports: size, SHA-256, type, URI, lineage, once."""

from __future__ import annotations

import hashlib
import pickle

import pytest


def test_the_result_is_the_path_string_with_the_facts_of_the_saved_bytes(hook, finished, tmp_path):
    target = tmp_path / "fox.png"
    saved = hook.download_image(finished, target)
    data = target.read_bytes()
    assert saved == str(target)  # what download_image always returned
    assert saved.path == target and saved.name == "fox.png"
    assert saved.uri == target.as_uri()
    assert saved.size_bytes == len(data)
    assert saved.sha256 == hashlib.sha256(data).hexdigest()
    assert saved.media_type == "image/png"
    assert saved.mj_task_id == finished.id and saved.source_url == finished.image_url
    assert saved.written is True and saved.converted_from is None


def test_the_result_survives_pickling_and_is_immutable(hook, finished, tmp_path):
    saved = hook.download_image(finished, tmp_path / "fox.png")
    copy = pickle.loads(pickle.dumps(saved))
    assert copy == saved and copy.sha256 == saved.sha256 and copy.uri == saved.uri
    with pytest.raises(AttributeError):
        saved.sha256 = "x"  # type: ignore[misc]
    assert saved.to_dict()["size_bytes"] == saved.size_bytes


def test_a_second_save_of_the_same_image_writes_nothing(hook, finished, tmp_path):
    target = tmp_path / "fox.png"
    first = hook.download_image(finished, target)
    before = target.stat()
    second = hook.download_image(finished, target)
    assert first.written and not second.written
    assert second.sha256 == first.sha256
    assert target.stat().st_mtime_ns == before.st_mtime_ns and target.stat().st_ino == before.st_ino
    assert [p.name for p in tmp_path.iterdir()] == ["fox.png"]


def test_a_destination_without_extension_gets_the_one_of_the_bytes(hook, finished, tmp_path):
    saved = hook.download_image(finished, tmp_path / "fox")
    assert saved == str(tmp_path / "fox.png") and (tmp_path / "fox.png").exists()


def test_async_download_gives_the_same_result(hook, finished, tmp_path):
    import asyncio

    async def run():
        async with hook:
            return await hook.adownload_image(finished, tmp_path / "a.png")

    saved = asyncio.run(run())
    data = (tmp_path / "a.png").read_bytes()
    assert saved == str(tmp_path / "a.png") and saved.sha256 == hashlib.sha256(data).hexdigest()
    assert saved.size_bytes == len(data) and saved.media_type == "image/png"
