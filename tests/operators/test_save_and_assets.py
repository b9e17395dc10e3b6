"""Saving from the operators, the standalone save operator, and the asset events they publish.

Real Airflow throughout: ``dag.test()`` on the emulator, asset events read back from the metadata
DB, and a DAG scheduled on the asset run from the scheduler's own run-creation code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_mj.exceptions import MidjourneyValidationError
from airflow_provider_mj.operators import MidjourneyActionOperator, MidjourneyImagineOperator
from airflow_provider_mj.operators.save import check_destination
from airflow_provider_mj.operators.save_image import MidjourneySaveImageOperator
from tests.assets import asset_events, register_dags, run_asset_triggered
from tests.helpers import make_dag, task_instances, unique_dag_id, xcom_value

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = {"poll_interval": 0.05}


def _local(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri.removeprefix("file://"))


def _submits(emulator) -> dict[str, int]:
    return {route: n for route, n in emulator.counters()["submits"].items() if n}


# -- the destination pattern (checked before any request) -------------------------------------------


@pytest.mark.parametrize("bad", ["", "   ", None, 42, "/data/{date}.png", "/data/{mj_task_id.png"])
def test_a_bad_destination_is_refused_with_what_to_write_instead(bad):
    with pytest.raises(MidjourneyValidationError) as err:
        check_destination(bad)
    assert "destination" in str(err.value)


def test_a_bad_destination_fails_the_task_before_any_job_is_submitted(mj_connection, run_dag, request, tmp_path):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a fox", destination=str(tmp_path / "{day}.png"), **FAST)

    dr = run_dag(dag)

    assert dr.state == "failed"
    assert _submits(mj_connection) == {}


# -- saving from the operator ---------------------------------------------------------------------------


def test_imagine_saves_to_a_file_name_pattern_and_returns_the_saved_uri(mj_connection, run_dag, request, tmp_path):
    from airflow.sdk import Asset

    images = Asset(name=unique_dag_id(request, "images"), uri="file:///mj/images")
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(
            task_id="imagine", prompt="a lighthouse at dusk", state="tag-1",
            destination=str(tmp_path) + "/{{ ds }}/{action}-{mj_task_id}", outlets=[images], **FAST,
        )

    dr = run_dag(dag)

    assert dr.state == "success"
    result = xcom_value(dr, "imagine")
    saved = _local(result["saved_uri"])
    assert saved.parent == tmp_path / dr.logical_date.strftime("%Y-%m-%d")
    assert saved.name == f"imagine-{result['id']}.png"
    data = saved.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert xcom_value(dr, "imagine", key="mj_saved_uri") == result["saved_uri"]
    assert not list(saved.parent.glob("*.part")) and not list(saved.parent.glob(".*"))

    [event] = asset_events(name=images.name)
    assert event["source_task_id"] == "imagine" and event["source_run_id"] == dr.run_id
    extra = event["extra"]
    assert extra["mj_task_id"] == result["id"]
    assert extra["action"] == "IMAGINE"
    assert "a lighthouse at dusk" in extra["prompt"]
    assert extra["state"] == "tag-1"
    assert extra["uri"] == result["saved_uri"]
    assert extra["size_bytes"] == len(data)
    assert extra["sha256"] == hashlib.sha256(data).hexdigest()
    assert extra["media_type"] == "image/png"
    assert extra["image_url"].startswith(mj_connection.base_url + "/")
    assert "button" not in extra


def test_mapped_upscales_save_into_a_folder_with_one_event_each(mj_connection, run_dag, request, tmp_path):
    from airflow.sdk import Asset

    images = Asset(unique_dag_id(request, "upscales"))
    out = tmp_path / "upscales"
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a kite", **FAST)
        MidjourneyActionOperator.partial(
            task_id="upscale", mj_task_id=imagine.output, destination=f"{out}/", outlets=[images], **FAST,
        ).expand(button=["U1", "U3"])

    dr = run_dag(dag)

    assert dr.state == "success"
    events = asset_events(name=images.name, source_run_id=dr.run_id)
    assert sorted(e["source_map_index"] for e in events) == [0, 1]
    by_index = {e["source_map_index"]: e["extra"] for e in events}
    assert by_index[0]["button"] == "U1" and by_index[1]["button"] == "U3"
    for index in (0, 1):
        result = xcom_value(dr, "upscale", map_index=index)
        assert result["saved_uri"] == by_index[index]["uri"]
        assert _local(result["saved_uri"]) == out / f"{result['id']}.png"
        assert by_index[index]["action"] == "UPSCALE"
    assert _submits(mj_connection) == {"imagine": 1, "action": 2}


def test_an_asset_alias_gets_an_event_for_each_saved_file(mj_connection, run_dag, request, tmp_path):
    from airflow.sdk import AssetAlias

    alias = AssetAlias(unique_dag_id(request, "alias"))
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a heron", **FAST)
        MidjourneyActionOperator.partial(
            task_id="upscale", mj_task_id=imagine.output, outlets=[alias], **FAST,
            destination=str(tmp_path) + "/{{ run_id | replace(':', '_') }}/{map_index:02d}-{button}",
        ).expand(button=["U2", "U4"])

    dr = run_dag(dag)

    assert dr.state == "success"
    saved = sorted(_local(xcom_value(dr, "upscale", map_index=i)["saved_uri"]).name for i in (0, 1))
    assert saved == ["00-U2.png", "01-U4.png"]
    events = asset_events(source_run_id=dr.run_id)
    assert len(events) == 2
    for event in events:
        assert event["aliases"] == [alias.name]
        assert event["asset_uri"] == event["extra"]["uri"]  # the asset is the file itself
        assert event["extra"]["button"] in ("U2", "U4")


def test_a_retry_after_a_failed_save_re_attaches_and_overwrites_atomically(mj_connection, run_dag, request, tmp_path):
    """The first try cannot write (a file sits where the folder should be); its retry pays nothing more."""
    from datetime import timedelta

    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    target = tmp_path / "out" / "final.png"

    def clear_the_way(context):
        blocker.unlink()
        blocker.mkdir()
        target.write_bytes(b"an older image")

    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(
            task_id="imagine", prompt="a quiet harbour", destination=str(target), retries=1,
            retry_delay=timedelta(seconds=0), on_retry_callback=clear_the_way, **FAST,
        )

    dr = run_dag(dag)

    assert dr.state == "success"
    assert task_instances(dr)["imagine"].try_number == 2
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["final.png"]  # no temporary left over
    assert _submits(mj_connection) == {"imagine": 1}


# -- the standalone save operator -----------------------------------------------------------------------


def test_save_image_operator_saves_a_returned_task_dict_without_a_request(mj_connection, run_dag, request, tmp_path):
    from airflow.sdk import Asset

    images = Asset(unique_dag_id(request, "saved"))
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a red barn", **FAST)
        upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U2", **FAST)
        MidjourneySaveImageOperator(task_id="save", mj_task=upscale.output, button="U2",
                                    destination=f"{tmp_path}/{{button}}", outlets=[images])

    dr = run_dag(dag)

    assert dr.state == "success"
    result = xcom_value(dr, "save")
    assert _local(result["saved_uri"]) == tmp_path / "U2.png"
    assert result["id"] == xcom_value(dr, "upscale")["id"]
    [event] = asset_events(name=images.name)
    assert event["extra"]["button"] == "U2" and event["extra"]["uri"] == result["saved_uri"]
    assert _submits(mj_connection) == {"imagine": 1, "action": 1}


def test_save_image_operator_reads_a_task_given_by_id(mj_connection, run_dag, request, tmp_path):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a blue door", **FAST)
        MidjourneySaveImageOperator(task_id="save", destination=f"{tmp_path}/",
                                    mj_task="{{ ti.xcom_pull(task_ids='imagine', key='mj_task_id') }}")
        imagine >> dag.task_dict["save"]

    dr = run_dag(dag)

    assert dr.state == "success"
    result = xcom_value(dr, "save")
    assert _local(result["saved_uri"]).read_bytes()[:8] == PNG_MAGIC
    assert result["status"] == "SUCCESS"


def test_save_image_operator_refuses_a_task_without_an_image(mj_connection, run_dag, request, tmp_path):
    from airflow_provider_mj.operators import MidjourneyShortenOperator

    with make_dag(unique_dag_id(request)) as dag:
        shorten = MidjourneyShortenOperator(task_id="shorten", prompt="a very long prompt about a cat", **FAST)
        MidjourneySaveImageOperator(task_id="save", mj_task=shorten.output, destination=f"{tmp_path}/")

    dr = run_dag(dag)

    assert dr.state == "failed"
    assert task_instances(dr)["save"].state == "failed"
    assert list(tmp_path.iterdir()) == []


# -- a DAG scheduled on the asset -------------------------------------------------------------------------


def test_a_dag_scheduled_on_the_asset_reads_the_extras_from_triggering_asset_events(
    mj_connection, run_dag, request, tmp_path
):
    from airflow.sdk import Asset, task

    images = Asset(unique_dag_id(request, "feed"))
    with make_dag(unique_dag_id(request, "producer")) as producer:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a windmill", **FAST)
        MidjourneyActionOperator.partial(task_id="upscale", mj_task_id=imagine.output, outlets=[images],
                                         destination=f"{tmp_path}/", **FAST).expand(button=["U1", "U2"])
    seen = tmp_path / "seen.txt"
    with make_dag(unique_dag_id(request, "consumer"), schedule=[images]) as consumer:

        @task
        def read_events(triggering_asset_events=None):
            lines = [f"{e.extra['button']} {e.extra['uri']} {e.extra['sha256']}"
                     for e in triggering_asset_events[images]]
            seen.write_text("\n".join(sorted(lines)))
            return len(lines)

        read_events()
    register_dags(producer, consumer)

    produced = run_dag(producer)
    consumed = run_asset_triggered(consumer)

    assert produced.state == "success"
    assert consumed.state == "success" and consumed.run_type == "asset_triggered"
    stored = {f"{e['extra']['button']} {e['extra']['uri']} {e['extra']['sha256']}" for e in asset_events(name=images.name)}
    assert len(stored) == 2
    # The scheduler queues the run on the first event; it sees the events up to then (one or both
    # here): mj_contact_sheet reads the whole day with inlet_events for that reason.
    lines = seen.read_text().splitlines()
    assert lines and set(lines) <= stored
    for line in lines:
        button, uri, sha256 = line.split(" ")
        assert hashlib.sha256(_local(uri).read_bytes()).hexdigest() == sha256
