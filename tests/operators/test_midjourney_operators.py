"""The submit and read operators, run as real DAGs (``dag.test()``) against the emulator."""

from __future__ import annotations

import pytest

from airflow_provider_mj.exceptions import MidjourneyValidationError
from airflow_provider_mj.operators import (
    MidjourneyActionOperator,
    MidjourneyBlendOperator,
    MidjourneyDescribeOperator,
    MidjourneyImageSeedOperator,
    MidjourneyImagineOperator,
    MidjourneyListTasksOperator,
    MidjourneyModalOperator,
    MidjourneyShortenOperator,
)
from tests.helpers import (
    make_dag,
    png_bytes,
    png_data_url,
    record_inline_triggers,
    task_instances,
    unique_dag_id,
    xcom_value,
)

FAST = {"poll_interval": 0.1}
MODES = pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])


def states(dag_run) -> dict:
    return {key: ti.state for key, ti in task_instances(dag_run).items()}


@MODES
def test_imagine_then_action_button_u1_chains_via_xcom(request, mj_connection, run_dag, monkeypatch, deferrable):
    triggers = record_inline_triggers(monkeypatch)
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a red fox --ar 3:2",
                                            deferrable=deferrable, **FAST)
        upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U1",
                                           deferrable=deferrable, **FAST)
        imagine >> upscale
    dr = run_dag(dag)

    assert states(dr) == {"imagine": "success", "upscale": "success"}
    grid = xcom_value(dr, "imagine")
    assert grid["status"] == "SUCCESS" and grid["action"] == "IMAGINE"
    assert grid["imageUrl"] and grid["buttons"]
    assert xcom_value(dr, "imagine", key="mj_task_id") == grid["id"]
    custom_ids = xcom_value(dr, "imagine", key="custom_ids")
    assert custom_ids["U1"].startswith("MJ::JOB::upsample::1::")
    assert xcom_value(dr, "imagine", key="mj_image_url") == grid["imageUrl"]

    upscaled = xcom_value(dr, "upscale")
    assert upscaled["status"] == "SUCCESS" and upscaled["action"] == "UPSCALE"
    assert upscaled["id"] != grid["id"]
    assert "Vary (Region)" in xcom_value(dr, "upscale", key="custom_ids")
    assert triggers == (["MidjourneyTaskTrigger"] * 2 if deferrable else [])


@MODES
def test_image_link_points_at_the_finished_image(request, mj_connection, run_dag, deferrable):
    from airflow_provider_mj.links import MidjourneyImageLink

    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a lighthouse", deferrable=deferrable, **FAST)
    dr = run_dag(dag)

    image_url = xcom_value(dr, "imagine")["imageUrl"]
    # What the API server reads to render the button (written by the worker at the end of the try).
    assert xcom_value(dr, "imagine", key=MidjourneyImageLink().xcom_key) == image_url
    assert api_server_extra_links(dr, "imagine") == {"Midjourney image": image_url}


def api_server_extra_links(dag_run, task_id: str) -> dict:
    """The extra links exactly as the API server computes them: from the serialized DAG and XComs."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    ti = task_instances(dag_run)[task_id]
    with create_session() as session:
        dag = SerializedDagModel.get_dag(dag_run.dag_id, session=session)
    task = dag.get_task(task_id)
    return {name: task.get_extra_links(ti, name) for name in task.extra_links}


@MODES
def test_action_maps_over_u1_to_u4(request, mj_connection, run_dag, deferrable):
    from airflow.sdk import XComArg

    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="four owls", deferrable=deferrable, **FAST)
        MidjourneyActionOperator.partial(
            task_id="upscale", mj_task_id=XComArg(imagine, key="mj_task_id"), deferrable=deferrable, **FAST
        ).expand(button=["U1", "U2", "U3", "U4"])
    dr = run_dag(dag)

    assert states(dr) == {"imagine": "success", **{("upscale", i): "success" for i in range(4)}}
    ids = {xcom_value(dr, "upscale", map_index=i)["id"] for i in range(4)}
    assert len(ids) == 4
    assert all(xcom_value(dr, "upscale", key="mj_task_id", map_index=i) in ids for i in range(4))


def test_imagine_maps_over_prompts(request, mj_connection, run_dag):
    prompts = ["a cat", "a dog", "a bird"]
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator.partial(task_id="imagine", **FAST).expand(prompt=prompts)
    dr = run_dag(dag)

    assert states(dr) == {("imagine", i): "success" for i in range(3)}
    assert [xcom_value(dr, "imagine", map_index=i)["prompt"] for i in range(3)] == prompts


@MODES
def test_custom_zoom_completes_the_modal_with_modal_prompt(request, mj_connection, run_dag, deferrable):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a castle", **FAST)
        upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U2", **FAST)
        zoom = MidjourneyActionOperator(task_id="zoom", mj_task_id=upscale.output, button="Custom Zoom",
                                        modal_prompt="a castle --zoom 2", deferrable=deferrable, **FAST)
        imagine >> upscale >> zoom
    dr = run_dag(dag)

    assert states(dr)["zoom"] == "success"
    zoomed = xcom_value(dr, "zoom")
    assert zoomed["action"] == "ZOOM" and zoomed["status"] == "SUCCESS"
    assert zoomed["prompt"] == "a castle --zoom 2"
    assert mj_connection.counters()["submits"].get("modal") == 1


@pytest.mark.parametrize("mask_kind", ["bytes", "path", "data_url"])
def test_vary_region_completes_the_modal_with_mask(request, mj_connection, run_dag, tmp_path, mask_kind):
    mask_file = tmp_path / "mask.png"
    mask_file.write_bytes(png_bytes(color=(255, 255, 255)))
    mask = {"bytes": png_bytes(color=(255, 255, 255)), "path": str(mask_file), "data_url": png_data_url()}[mask_kind]
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a garden", **FAST)
        upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U1", **FAST)
        vary = MidjourneyActionOperator(task_id="vary", mj_task_id=upscale.output, button="Vary (Region)",
                                        mask=mask, modal_prompt="a garden with a pond", **FAST)
        imagine >> upscale >> vary
    dr = run_dag(dag)

    assert states(dr)["vary"] == "success"
    assert xcom_value(dr, "vary")["action"] == "INPAINT"


@MODES
def test_modal_without_input_fails_naming_the_modal_task_and_modal_operator_finishes_it(
    request, mj_connection, run_dag, capfd, deferrable
):
    from airflow.sdk import XComArg

    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a bridge", **FAST)
        upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U3", **FAST)
        zoom = MidjourneyActionOperator(task_id="zoom", mj_task_id=upscale.output, button="Custom Zoom",
                                        retries=2, **FAST)
        finish = MidjourneyModalOperator(task_id="finish", mj_task_id=XComArg(zoom, key="mj_task_id"),
                                         prompt="a bridge --zoom 1.8", trigger_rule="all_done",
                                         deferrable=deferrable, **FAST)
        imagine >> upscale >> zoom >> finish
    dr = run_dag(dag)

    tis = task_instances(dr)
    assert tis["zoom"].state == "failed"
    assert tis["zoom"].try_number == 1  # fatal: no retry spent on it
    modal_task_id = xcom_value(dr, "zoom", key="mj_task_id")
    out = capfd.readouterr().out
    assert "MidjourneyModalRequiredError" in out and modal_task_id in out
    assert tis["finish"].state == "success"
    assert xcom_value(dr, "finish")["id"] == modal_task_id
    assert xcom_value(dr, "finish")["action"] == "ZOOM"


def test_unknown_button_fails_listing_the_labels_that_exist(request, mj_connection, run_dag, capfd):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a tree", **FAST)
        MidjourneyActionOperator(task_id="press", mj_task_id=imagine.output, button="U9", **FAST)
    dr = run_dag(dag)

    assert states(dr)["press"] == "failed"
    out = capfd.readouterr().out
    assert "MidjourneyButtonNotFoundError" in out and "V4" in out
    assert mj_connection.counters()["submits"].get("action", 0) == 0


def test_action_on_an_unfinished_parent_fails_clearly(request, mj_connection, run_dag, capfd):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a slow tree",
                                            wait_for_completion=False, **FAST)
        MidjourneyActionOperator(task_id="press", mj_task_id=imagine.output, button="U1", **FAST)
    mj_connection.configure(job_seconds=30)
    dr = run_dag(dag)

    assert states(dr)["press"] == "failed"
    assert "only once a task ended in SUCCESS" in capfd.readouterr().out


def test_action_takes_a_custom_id_instead_of_a_button(request, mj_connection, run_dag):
    from airflow.sdk import XComArg

    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a boat", **FAST)
        MidjourneyActionOperator(
            task_id="vary", mj_task_id=XComArg(imagine, key="mj_task_id"),
            custom_id="{{ ti.xcom_pull(task_ids='imagine', key='custom_ids')['V2'] }}", **FAST,
        )
    dr = run_dag(dag)

    assert states(dr)["vary"] == "success"
    assert xcom_value(dr, "vary")["action"] == "VARIATION"


def test_action_needs_exactly_one_of_button_and_custom_id():
    with pytest.raises(MidjourneyValidationError, match="not both"):
        MidjourneyActionOperator(task_id="a", mj_task_id="1", button="U1", custom_id="MJ::JOB::upsample::1::x")
    with pytest.raises(MidjourneyValidationError, match="needs button"):
        MidjourneyActionOperator(task_id="b", mj_task_id="1")


def test_action_with_both_given_after_templating_fails_before_any_request(request, mj_connection, run_dag):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyActionOperator(task_id="press", mj_task_id="1320098173412546", button="{{ '' }}",
                                 custom_id=None, **FAST)
    dr = run_dag(dag)

    assert states(dr)["press"] == "failed"
    assert sum(mj_connection.counters()["requests"].values()) == 0


@MODES
def test_job_failure_fails_the_task_without_retry(request, mj_connection, run_dag, capfd, deferrable):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a emulator-fail scene", retries=2,
                                  deferrable=deferrable, **FAST)
    dr = run_dag(dag)

    ti = task_instances(dr)["imagine"]
    assert ti.state == "failed" and ti.try_number == 1
    assert xcom_value(dr, "imagine", key="mj_task_id")  # pushed before waiting
    out = capfd.readouterr().out
    assert "MidjourneyTaskFailedError" in out
    assert mj_connection.counters()["submits"]["imagine"] == 1


def test_banned_prompt_fails_without_retry_and_without_a_job(request, mj_connection, run_dag, capfd):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a banned-word here", retries=2, **FAST)
    dr = run_dag(dag)

    ti = task_instances(dr)["imagine"]
    assert ti.state == "failed" and ti.try_number == 1
    assert xcom_value(dr, "imagine", key="mj_task_id") is None
    assert "MidjourneyBannedPromptError" in capfd.readouterr().out


@MODES
def test_timeout_is_a_deadline_on_the_job(request, mj_connection, run_dag, capfd, deferrable):
    mj_connection.configure(job_seconds=30)
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a very slow painting", timeout=0.6,
                                  deferrable=deferrable, **FAST)
    dr = run_dag(dag)

    assert states(dr)["imagine"] == "failed"
    assert "MidjourneyTimeoutError" in capfd.readouterr().out


def test_wait_for_completion_false_returns_the_id_at_once(request, mj_connection, run_dag):
    mj_connection.configure(job_seconds=30)
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a quick submit", wait_for_completion=False)
    dr = run_dag(dag)

    mj_task_id = xcom_value(dr, "imagine")
    assert isinstance(mj_task_id, str) and mj_task_id == xcom_value(dr, "imagine", key="mj_task_id")
    assert xcom_value(dr, "imagine", key="custom_ids") is None


def test_blend_accepts_paths_bytes_and_data_urls(request, mj_connection, run_dag, tmp_path):
    first = tmp_path / "first.png"
    first.write_bytes(png_bytes(color=(10, 200, 10)))
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyBlendOperator(
            task_id="blend", images=[str(first), png_bytes(color=(10, 10, 200)), png_data_url()],
            dimensions="LANDSCAPE", deferrable=True, **FAST,
        )
    dr = run_dag(dag)

    assert states(dr)["blend"] == "success"
    blended = xcom_value(dr, "blend")
    assert blended["action"] == "BLEND" and blended["imageUrl"]


def test_blend_with_one_image_fails_before_any_request(request, mj_connection, run_dag):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyBlendOperator(task_id="blend", images=[png_data_url()], retries=2, **FAST)
    dr = run_dag(dag)

    ti = task_instances(dr)["blend"]
    assert ti.state == "failed" and ti.try_number == 1
    assert mj_connection.counters()["requests"].get("submit/blend", 0) == 0


@pytest.mark.parametrize("source", ["path", "bytes", "data_url", "link"])
def test_describe_returns_four_prompts(request, mj_connection, run_dag, tmp_path, source):
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes())
    kwargs = {
        "path": {"image": image},
        "bytes": {"image": png_bytes()},
        "data_url": {"image": png_data_url()},
        "link": {"link": "https://example.com/photo.png"},
    }[source]
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyDescribeOperator(task_id="describe", **kwargs, **FAST)
    dr = run_dag(dag)

    described = xcom_value(dr, "describe")
    assert described["action"] == "DESCRIBE"
    assert len(described["prompts"]) == 4 and all(isinstance(p, str) and p for p in described["prompts"])


def test_describe_needs_exactly_one_of_image_and_link():
    with pytest.raises(MidjourneyValidationError):
        MidjourneyDescribeOperator(task_id="d")
    with pytest.raises(MidjourneyValidationError):
        MidjourneyDescribeOperator(task_id="d", image=b"x", link="https://example.com/a.png")


def test_shorten_returns_the_shortened_prompts(request, mj_connection, run_dag):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyShortenOperator(
            task_id="shorten",
            prompt="a very detailed, highly intricate, ultra realistic portrait of an old sailor, 8k",
            deferrable=True, **FAST,
        )
    dr = run_dag(dag)

    shortened = xcom_value(dr, "shorten")
    assert shortened["action"] == "SHORTEN" and shortened["status"] == "SUCCESS"
    assert shortened["prompts"] and all(isinstance(p, str) and p for p in shortened["prompts"])


def test_list_tasks_and_image_seed_read_finished_tasks(request, mj_connection, run_dag):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator.partial(task_id="imagine", **FAST).expand(prompt=["a sun", "a moon"])
        listed = MidjourneyListTasksOperator(task_id="list", mj_task_ids=imagine.output)
        MidjourneyImageSeedOperator(task_id="seed", mj_task_id="{{ ti.xcom_pull(task_ids='list')[0]['id'] }}")
        imagine >> listed
        listed >> dag.task_dict["seed"]
    dr = run_dag(dag)

    assert states(dr)["list"] == "success" and states(dr)["seed"] == "success"
    listed_tasks = xcom_value(dr, "list")
    assert sorted(t["prompt"] for t in listed_tasks) == ["a moon", "a sun"]
    seed = xcom_value(dr, "seed")
    assert isinstance(seed, str) and seed.isdigit()


def test_templated_prompt_is_rendered(request, mj_connection, run_dag):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a {{ dag_run.conf.get('animal', 'cat') }}",
                                  state="{{ dag.dag_id }}", **FAST)
    dr = run_dag(dag, run_conf={"animal": "heron"})

    task = xcom_value(dr, "imagine")
    assert task["prompt"] == "a heron" and task["state"] == dag.dag_id


def test_favorite_creates_no_task_and_returns_none(request, mj_connection, run_dag):
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a keeper", **FAST)
        upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=imagine.output, button="U4", **FAST)
        MidjourneyActionOperator(task_id="favorite", mj_task_id=upscale.output, button="Favorite", **FAST)
    dr = run_dag(dag)

    assert states(dr)["favorite"] == "success"
    assert xcom_value(dr, "favorite") is None


@pytest.mark.parametrize("dialect", ["proxy", "relay"])
def test_remix_variation_completes_the_modal_in_both_dialects(request, mj_connection, run_dag, dialect):
    # A relay answers code 1 for a remix while the task waits in MODAL: the operator must notice.
    mj_connection.configure(dialect=dialect)
    with make_dag(unique_dag_id(request)) as dag:
        imagine = MidjourneyImagineOperator(task_id="imagine", prompt="a harbour", **FAST)
        vary = MidjourneyActionOperator(task_id="vary", mj_task_id=imagine.output, button="V3",
                                        enable_remix=True, modal_prompt="a harbour at night", **FAST)
        imagine >> vary
    dr = run_dag(dag)

    assert states(dr)["vary"] == "success"
    varied = xcom_value(dr, "vary")
    assert varied["action"] == "VARIATION" and varied["prompt"] == "a harbour at night"
    assert mj_connection.counters()["submits"].get("modal") == 1
