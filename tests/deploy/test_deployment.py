"""Issue 8: a real Airflow deployment runs the example DAG, checked over the REST API and in Chromium.

``scripts/deploy_test.py`` brings up PostgreSQL, the API server, scheduler (LocalExecutor),
dag-processor, triggerer and the emulator as separate processes on 127.0.0.1, runs
``mj_imagine_upscale_describe`` with a triggerer restart in the middle, drives headless Chromium
through the UI, runs ``mj_daily_content`` (its saved images are asset events) and lets the
scheduler run ``mj_contact_sheet`` on them, tears everything down and writes a JSON report. It
runs once per session (about three minutes on two cores); each test below asserts one part of its
report, so a failure says what broke. Screenshots, component logs and the report are left in ``test-artifacts/deploy/``.

Skipped only when a prerequisite outside the project is missing and cannot be installed (not
root and no PostgreSQL server, no chromium, no node): the script exits 77 and says why. As root
(CI) it installs what is missing: apt-get postgresql / chromium / nodejs npm, pip psycopg[binary],
npm playwright-core into tests/deploy/browser/node_modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.deploy_script import (
    REPO_ROOT,
    assert_nothing_left_running,
    assert_script_passed,
    check,
    run_deploy_test,
)

pytestmark = pytest.mark.deploy

ARTIFACTS = REPO_ROOT / "test-artifacts" / "deploy"
#: Hard limit for the whole script; a healthy run takes 1.5 to 3 minutes on 2 busy cores.
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> dict:
    return run_deploy_test("local", tmp_path_factory.mktemp("deploy"), ARTIFACTS, TIMEOUT_S)


def test_script_passed(deployment):
    assert_script_passed(deployment)


def test_run_succeeded(deployment):
    check(deployment, "run succeeded")
    check(deployment, "every task instance succeeded")
    states = deployment["task_states"]
    assert {k.split("[")[0] for k in states} == {"imagine", "upscale", "describe", "save_outputs"}
    assert sum(1 for k in states if k.startswith("upscale[")) == 4
    assert sum(1 for k in states if k.startswith("describe[")) == 4


def test_waiting_tasks_went_through_the_triggerer(deployment):
    check(deployment, "every waiting task was seen in state 'deferred' (REST API)")
    check(deployment, "every waiting task's trigger was picked up by a triggerer job (trigger table)")
    check(deployment, "triggers are of the provider's trigger class")
    log_checks = [n for n in deployment["checks"] if n.startswith("task log of ") and "Pausing task" in n]
    assert log_checks, "the task log check did not run"
    for name in log_checks:
        check(deployment, name)


def test_triggerer_restart_mid_run(deployment):
    check(deployment, "triggerer was killed while tasks were deferred and restarted")
    check(deployment, "triggers in flight at the kill were resumed by the new triggerer job")
    restart = deployment["triggerer_restart"]
    assert restart["deferred_at_kill"], restart


def test_no_duplicate_submissions(deployment):
    check(deployment, "emulator submits: imagine 1, action 4, describe 4 (no duplicates)")
    submits = deployment["emulator_counters"]["submits"]
    assert (submits.get("imagine"), submits.get("action"), submits.get("describe")) == (1, 4, 4), submits


def test_images_saved(deployment):
    check(deployment, "4 images saved in the output folder")
    check(deployment, "manifest.json lists the images")
    check(deployment, "saved images are PNG files")


def test_extra_link_via_api(deployment):
    check(deployment, "'imagine' has the 'Midjourney image' extra link (REST API)")
    check(deployment, "the extra link's URL serves an image")


def test_browser_ui(deployment):
    browser = deployment.get("browser") or {}
    assert browser.get("checks"), f"the browser check did not run: {deployment.get('failures')}"
    for name, c in browser["checks"].items():
        assert c["ok"], f"browser: {name}: {c.get('detail')}"
    expected = {
        "logged into the UI",
        "connection type 'midjourney' is offered",
        "connection form shows our fields: Base URL, API Key, Auth header style, Speed mode",
        "connection form shows 'bearer' preselected for Auth header style",
        "task instance shows the 'Midjourney image' extra link",
        "the extra link points at the image",
        "the extra link opens a PNG image",
    }
    assert expected <= set(browser["checks"]), sorted(browser["checks"])
    shots = [Path(p) for p in browser.get("screenshots", [])]
    assert len(shots) >= 6 and all(p.exists() and p.stat().st_size > 5000 for p in shots), shots


def test_servers_bind_loopback_only(deployment):
    check(deployment, "every server listens on 127.0.0.1 only")


def test_nothing_left_running(deployment):
    assert_nothing_left_running(deployment)


def test_saved_images_are_asset_events_and_the_scheduled_contact_sheet_shows_them(deployment):
    """Issue 15: the upscales' asset events with their extras, the consumer run by the scheduler."""
    check(deployment, "mj_daily_content run succeeded")
    check(deployment, "4 asset events of the upscales in the metadata DB, with every extra")
    check(deployment, "every event's uri is the saved file, of size_bytes")
    check(deployment, "mj_contact_sheet ran on the asset (asset_triggered runs, all successful)")
    check(deployment, "mj_contact_sheet's runs consumed the producer's events (triggering_asset_events)")
    check(deployment, "browser: the contact sheet shows 4 images, each loaded, with its prompt and link")
    assert (ARTIFACTS / "08-contact-sheet.png").is_file()
