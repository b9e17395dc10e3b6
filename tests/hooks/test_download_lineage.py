"""Hook lineage of a download: the final URI, reported once, for local paths and object storage.

Airflow enables its hook-lineage collector only when a lineage reader plugin (OpenLineage, for
instance) is installed; without one it hands out a no-op collector. These tests install Airflow's
real ``HookLineageCollector`` in place of that no-op one, the single substitution, so what it
collects is exactly what a reader plugin would see.
"""

from __future__ import annotations


import pytest


@pytest.fixture
def collector(monkeypatch):
    from airflow.sdk import lineage

    real = lineage.HookLineageCollector()
    monkeypatch.setattr(lineage, "get_hook_lineage_collector", lambda: real)
    return real


def _outputs(collector):
    return [(info.asset.uri, info.count) for info in collector.collected_assets.outputs]


def test_a_local_download_reports_its_final_uri_once(hook, finished, tmp_path, collector):
    saved = hook.download_image(finished, tmp_path / "fox.png")
    assert _outputs(collector) == [(saved.uri, 1)]
    assert saved.uri == (tmp_path / "fox.png").as_uri()
    assert collector.collected_assets.inputs == []


def test_an_object_storage_download_reports_the_final_path_not_the_part_file(hook, finished, tmp_path, collector):
    from airflow.sdk import ObjectStoragePath

    saved = hook.download_image(finished, ObjectStoragePath(f"file://{tmp_path}/store/fox.png"))
    outputs = _outputs(collector)
    assert outputs == [((tmp_path / "store" / "fox.png").as_uri(), 1)]
    assert not any(".part" in uri for uri, _ in outputs) and saved.uri == outputs[0][0]
