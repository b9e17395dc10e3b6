"""The example DAGs the README and the reference pages copy their code from, run on the emulator.

``docs/`` shows regions of these files (``tests/docs`` checks the copies); running the DAGs end to
end here is what makes those snippets true.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.dags.test_example_dags import TEST_POLL_INTERVAL, _parse_example_dags, _submits
from tests.helpers import task_instances, xcom_value


def test_the_first_dag_imagines_and_upscales_u2(mj_connection, run_dag):
    dr = run_dag(_parse_example_dags().dags["mj_first_dag"])

    assert dr.state == "success"
    upscale = xcom_value(dr, "upscale")
    assert upscale["status"] == "SUCCESS" and upscale["action"] == "UPSCALE"
    assert _submits(mj_connection) == {"imagine": 1, "action": 1}


def test_every_operator_runs_as_its_reference_page_shows(mj_connection, run_dag, monkeypatch):
    monkeypatch.setenv("MJ_EXAMPLE_POLL_INTERVAL", TEST_POLL_INTERVAL)
    dr = run_dag(_parse_example_dags().dags["mj_every_operator"])

    assert dr.state == "success", {k: ti.state for k, ti in task_instances(dr).items()}
    seed = xcom_value(dr, "seed")
    assert str(seed).isdigit()
    assert f"--seed {seed}" in xcom_value(dr, "imagine_same_seed")["prompt"]
    assert xcom_value(dr, "zoom")["action"] == "ZOOM" and "--zoom 2" in xcom_value(dr, "zoom")["prompt"]
    upscales = [xcom_value(dr, "upscale_all", map_index=i) for i in range(4)]
    listed = xcom_value(dr, "list_upscales")
    assert sorted(t["id"] for t in listed) == sorted(u["id"] for u in upscales)
    assert len(xcom_value(dr, "describe")["prompts"]) == 4 and len(xcom_value(dr, "describe_file")["prompts"]) == 4
    assert xcom_value(dr, "wait")["status"] == "SUCCESS"
    saved = xcom_value(dr, "save_zoom")
    assert saved["id"] == xcom_value(dr, "zoom")["id"]
    assert saved["saved_uri"] == f"file://{os.environ['AIRFLOW_HOME']}/mj-output/mj_every_operator/{dr.logical_date:%Y-%m-%d}/zoom-{saved['id']}.png"
    assert Path(saved["saved_uri"].removeprefix("file://")).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each submit once: imagine x2, submit; upscale, zoom, 4 upscales; 2 describes; the zoom's modal.
    assert _submits(mj_connection) == {"imagine": 3, "action": 6, "describe": 2, "modal": 1}


def test_modal_actions_complete_in_one_step_or_two(mj_connection, run_dag, monkeypatch):
    monkeypatch.setenv("MJ_EXAMPLE_POLL_INTERVAL", TEST_POLL_INTERVAL)
    dr = run_dag(_parse_example_dags().dags["mj_modal_actions"])

    tis = task_instances(dr)
    assert dr.state == "success"
    assert tis["zoom_needs_input"].state == "failed" and tis["zoom_needs_input"].try_number == 1
    assert xcom_value(dr, "vary_region")["action"] == "INPAINT"
    assert xcom_value(dr, "remix")["prompt"] == "the same scene, in winter"
    finished = xcom_value(dr, "finish_zoom")
    assert finished["action"] == "ZOOM" and finished["id"] == str(xcom_value(dr, "zoom_needs_input", key="mj_task_id"))
    assert _submits(mj_connection) == {"imagine": 1, "action": 4, "modal": 3}
