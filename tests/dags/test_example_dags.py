"""The example DAGs in ``dags/``: they parse cleanly and fast, offline, and run end to end on the emulator."""

from __future__ import annotations

import html
import inspect
import json
import socket
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import connection_json, task_instances, xcom_value

DAGS_DIR = REPO_ROOT / "dags"
EXAMPLE_DAG_IDS = {
    "mj_imagine_upscale_describe",
    "mj_blend",
    "mj_shorten_then_imagine",
    "mj_zoom_out",
    "mj_daily_content",
    "mj_first_dag",
    "mj_every_operator",
    "mj_modal_actions",
    "mj_contact_sheet",
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The emulator's jobs take 0.3 s; polling every 5 s (the DAGs' default) would only add waiting.
TEST_POLL_INTERVAL = "0.1"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parse_dags():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR), safe_mode=False)


def _dag_module(name: str):
    """Import one DAG file as a plain module, to test its helpers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_dag_{name}", DAGS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse_example_dags():
    bag = _parse_dags()
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture
def example_dags(monkeypatch):
    """Parse ``dags/`` the way the DAG processor does, with test-speed polling."""
    monkeypatch.setenv("MJ_EXAMPLE_POLL_INTERVAL", TEST_POLL_INTERVAL)
    return _parse_example_dags()


@pytest.fixture
def deferrable_mode(monkeypatch):
    """``[operators] default_deferrable = True`` (the demo's setting); records every trigger run.

    The operators read that option once, when their module is imported (Airflow's usual
    ``deferrable=conf.getboolean(...)`` default), and other tests import it first; so the default
    is switched here exactly as the option would have set it. Parse the DAGs after this fixture.

    ``dag.test()`` runs a deferred task's trigger in-process through ``_run_inline_trigger``;
    wrapping it proves the waits really went through the trigger.
    """
    import airflow.sdk.definitions.dag as sdk_dag

    from airflow_provider_mj.operators.midjourney import BaseMidjourneySubmitOperator

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    init = inspect.unwrap(BaseMidjourneySubmitOperator.__init__)
    monkeypatch.setitem(init.__kwdefaults__, "deferrable", True)

    runs: list[str] = []
    real = sdk_dag._run_inline_trigger

    def recording(trigger, ti):
        runs.append(type(trigger).__name__)
        return real(trigger, ti)

    monkeypatch.setattr(sdk_dag, "_run_inline_trigger", recording)
    return runs


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def test_every_example_dag_parses_offline_without_errors(monkeypatch):
    # A connection to a closed port, and any socket connect made during parsing is an error.
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(f"http://127.0.0.1:{_closed_port()}"))
    attempts: list[object] = []

    def no_network(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network access at DAG parse time: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)

    bag = _parse_dags()

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLE_DAG_IDS
    assert attempts == []


def test_every_example_dag_parses_in_well_under_a_second():
    _parse_dags()  # first parse pays for importing Airflow and the provider once
    bag = _parse_dags()

    durations = {Path(stat.file).name: stat.duration.total_seconds() for stat in bag.dagbag_stats}
    assert len(durations) == len(EXAMPLE_DAG_IDS)
    assert all(seconds < 1.0 for seconds in durations.values()), durations


@pytest.mark.parametrize("dag_id", sorted(EXAMPLE_DAG_IDS))
def test_every_example_dag_is_documented_and_tagged(example_dags, dag_id):
    dag = example_dags.dags[dag_id]

    assert dag.doc_md and dag.doc_md.lstrip().startswith("###")
    assert "midjourney" in dag.tags
    assert dag.catchup is False
    dag.check_cycle()
    dag.validate()


def test_main_dag_saves_under_airflow_home_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    module = _dag_module("mj_imagine_upscale_describe")

    default = module._output_dir("", "mj_imagine_upscale_describe", "manual__2026-01-02T03:04:05+00:00")
    explicit = module._output_dir("s3://aws_default@bucket/mj", "ignored", "ignored")

    assert str(default) == f"file://{tmp_path}/mj-output/mj_imagine_upscale_describe/manual__2026-01-02T03_04_05_00_00"
    assert str(explicit).startswith("s3://") and str(explicit).endswith("bucket/mj")


def test_daily_dag_is_scheduled_pooled_and_retries_politely(example_dags):
    dag = example_dags.dags["mj_daily_content"]

    assert dag.schedule == "@daily"
    for task_id in ("imagine", "upscale"):
        mapped = dag.task_dict[task_id]
        assert mapped.pool == "midjourney"
        assert mapped.max_active_tis_per_dag == 3
        assert mapped.retries >= 1
        assert mapped.retry_exponential_backoff > 1
        assert mapped.max_retry_delay is not None


def test_main_dag_maps_upscale_and_describe_over_the_four_images(example_dags):
    dag = example_dags.dags["mj_imagine_upscale_describe"]

    assert set(dag.task_dict) == {"imagine", "upscale", "describe", "save_outputs"}
    assert dag.task_dict["upscale"].upstream_task_ids == {"imagine"}
    assert dag.task_dict["describe"].upstream_task_ids == {"upscale"}
    assert dag.task_dict["save_outputs"].upstream_task_ids == {"upscale", "describe"}


# ---------------------------------------------------------------------------------------------
# End to end on the emulator
# ---------------------------------------------------------------------------------------------


def _submits(emulator) -> dict[str, int]:
    """The emulator's submit counters, without the routes that were not called."""
    return {route: n for route, n in emulator.counters()["submits"].items() if n}


def _assert_png(path: str | Path) -> None:
    path = Path(str(path).removeprefix("file://"))
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path


def test_imagine_upscale_describe_saves_four_images_and_prompts_through_the_trigger(
    deferrable_mode, mj_connection, run_dag, tmp_path, monkeypatch
):
    monkeypatch.setenv("MJ_EXAMPLE_POLL_INTERVAL", TEST_POLL_INTERVAL)
    dag = _parse_example_dags().dags["mj_imagine_upscale_describe"]
    out = tmp_path / "out"

    dr = run_dag(dag, run_conf={"prompt": "a red kite over green hills", "output_dir": str(out)})

    assert dr.state == "success"
    manifest = xcom_value(dr, "save_outputs")
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["prompt"] == "a red kite over green hills"
    assert [image["button"] for image in manifest["images"]] == ["U1", "U2", "U3", "U4"]
    assert len({image["mj_task_id"] for image in manifest["images"]}) == 4
    for image in manifest["images"]:
        _assert_png(image["path"])
        assert image["prompts"] and all(p.strip() for p in image["prompts"])
        assert (out / f"{image['button']}.prompts.txt").read_text().strip()
    # One imagine, four upscales, four describes: each waited in the trigger.
    assert deferrable_mode.count("MidjourneyTaskTrigger") == 9
    assert _submits(mj_connection) == {"imagine": 1, "action": 4, "describe": 4}
    tis = task_instances(dr)
    assert {key for key in tis if isinstance(key, tuple)} == {
        (task_id, i) for task_id in ("upscale", "describe") for i in range(4)
    }
    # (The helper's raw read of a string XCom may parse a digits-only id as a number.)
    assert str(xcom_value(dr, "upscale", key="mj_task_id", map_index=0)) == manifest["images"][0]["mj_task_id"]


def test_blend_writes_sample_images_when_the_folder_is_empty(example_dags, mj_connection, run_dag, tmp_path):
    dag = example_dags.dags["mj_blend"]
    image_dir = tmp_path / "inputs"

    dr = run_dag(dag, run_conf={"image_dir": str(image_dir), "image_count": 3, "dimensions": "LANDSCAPE"})

    assert dr.state == "success"
    samples = sorted(image_dir.glob("*.png"))
    assert [p.name for p in samples] == ["sample-1.png", "sample-2.png", "sample-3.png"]
    for sample in samples:
        _assert_png(sample)
    assert xcom_value(dr, "collect_images") == [str(p) for p in samples]
    blend = xcom_value(dr, "blend")
    upscale = xcom_value(dr, "upscale")
    assert blend["status"] == "SUCCESS" and blend["action"] == "BLEND"
    assert upscale["status"] == "SUCCESS" and upscale["action"] == "UPSCALE"
    assert _submits(mj_connection) == {"blend": 1, "action": 1}


def test_blend_uses_the_images_already_in_the_folder(example_dags, mj_connection, run_dag, tmp_path):
    _png_bytes = _dag_module("mj_blend")._png_bytes  # the DAG's own pure-Python PNG writer

    image_dir = tmp_path / "inputs"
    image_dir.mkdir()
    for name in ("b.png", "a.png", "notes.txt"):
        (image_dir / name).write_bytes(_png_bytes(8, 8, (0, 0, 0), (255, 255, 255)) if name.endswith("png") else b"x")

    dr = run_dag(example_dags.dags["mj_blend"], run_conf={"image_dir": str(image_dir), "upscale": "U3"})

    assert dr.state == "success"
    assert xcom_value(dr, "collect_images") == [str(image_dir / "a.png"), str(image_dir / "b.png")]
    assert sorted(p.name for p in image_dir.iterdir()) == ["a.png", "b.png", "notes.txt"]


def test_shorten_then_imagine_imagines_the_first_shortened_prompt(example_dags, mj_connection, run_dag):
    dr = run_dag(example_dags.dags["mj_shorten_then_imagine"])

    assert dr.state == "success"
    shortened = xcom_value(dr, "shorten")["prompts"]
    assert shortened and all(p.strip() for p in shortened)
    assert xcom_value(dr, "pick_prompt") == shortened[0]
    imagine = xcom_value(dr, "imagine")
    assert imagine["status"] == "SUCCESS"
    assert shortened[0] in imagine["prompt"]


def test_zoom_out_goes_through_the_modal_flow(deferrable_mode, mj_connection, run_dag, monkeypatch):
    monkeypatch.setenv("MJ_EXAMPLE_POLL_INTERVAL", TEST_POLL_INTERVAL)
    dr = run_dag(_parse_example_dags().dags["mj_zoom_out"], run_conf={"zoom": 2})

    assert dr.state == "success"
    zoom = xcom_value(dr, "custom_zoom")
    assert zoom["status"] == "SUCCESS" and zoom["action"] == "ZOOM"
    assert "--zoom 2" in (zoom.get("prompt") or json.dumps(zoom))
    assert _submits(mj_connection) == {"imagine": 1, "action": 2, "modal": 1}
    assert deferrable_mode.count("MidjourneyTaskTrigger") == 3


def test_daily_content_saves_through_the_operator_and_the_contact_sheet_shows_the_day(
    example_dags, mj_connection, run_dag, tmp_path
):
    from tests.assets import asset_events, register_dags, run_asset_triggered

    out = tmp_path / "daily"
    daily, sheet_dag = example_dags.dags["mj_daily_content"], example_dags.dags["mj_contact_sheet"]
    register_dags(daily, sheet_dag)

    # Without a logical date, as the UI and the REST API trigger runs by default ({{ ds }} is undefined).
    dr = run_dag(daily, logical_date=None, run_conf={"max_prompts": 4, "output_dir": str(out)})
    sheet_run = run_asset_triggered(sheet_dag)

    assert dr.state == "success"
    prompts = xcom_value(dr, "read_prompts")
    assert len(prompts) == 4 and not any(p.startswith("#") for p in prompts)
    tis = task_instances(dr)
    for task_id in ("imagine", "upscale"):
        mapped = [tis[(task_id, i)] for i in range(4)]
        assert all(ti.state == "success" and ti.pool == "midjourney" for ti in mapped)
    assert dr.logical_date is None
    day_dir = out / dr.run_after.strftime("%Y-%m-%d")
    events = asset_events(name="mj_daily_content_images", source_run_id=dr.run_id)
    assert sorted(e["source_map_index"] for e in events) == [0, 1, 2, 3]
    for event in events:
        extra = event["extra"]
        upscale = xcom_value(dr, "upscale", map_index=event["source_map_index"])
        assert extra["uri"] == upscale["saved_uri"] == f"file://{day_dir}/{event['source_map_index']:02d}.png"
        assert extra["button"] == "U1" and extra["action"] == "UPSCALE" and extra["mj_task_id"] == upscale["id"]
        assert extra["prompt"].startswith(prompts[event["source_map_index"]])
        assert extra["state"] == f"mj_daily_content/{day_dir.name}"
        _assert_png(extra["uri"])
    assert _submits(mj_connection) == {"imagine": 4, "action": 4}

    # The contact sheet run, created by the scheduler's code from the queued event, shows all four.
    assert sheet_run.state == "success" and sheet_run.run_type == "asset_triggered"
    [sheet] = xcom_value(sheet_run, "write_contact_sheets")
    assert sheet == {"uri": f"file://{day_dir}/index.html", "images": 4}
    page = (day_dir / "index.html").read_text()
    for n, prompt in enumerate(prompts):
        assert f'<img src="{n:02d}.png"' in page
        assert html.escape(prompt.split(" --")[0]) in page
