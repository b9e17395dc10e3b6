"""The API key appears nowhere a run leaves traces, including in failing runs.

The example DAGs run for real (``dag.test()``) against an emulator guarded by a distinctive key:
the classic round trip, the daily DAG with prompts that fail (a FAILURE job and a banned prompt),
and a run with a wrong key (an auth error). Then every trace is searched for both keys: what
the runs printed (stdout and stderr, task logs included), every file under ``AIRFLOW_HOME/logs``,
every XCom value and rendered template field of those runs, the exceptions' text, and, to be
thorough, a full text dump of the metadata database.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import connection_json

KEY = "sk-reliability-SECRET-9e7c2b41d3a6"
WRONG_KEY = "sk-reliability-WRONG-0b5e8f2c77d1"


@pytest.fixture
def example_dags(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO_ROOT

    monkeypatch.setenv("MJ_EXAMPLE_POLL_INTERVAL", "0.1")
    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"), safe_mode=False)
    assert not bag.import_errors
    return bag.dags


def _rows_of_runs(runs) -> dict[str, list[str]]:
    """XCom values and rendered template fields of the runs, as text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out: dict[str, list[str]] = {"xcom": [], "rtif": []}
    with create_session() as session:
        for dr in runs:
            for row in session.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id):
                out["xcom"].append(f"{row.task_id}[{row.map_index}].{row.key}={row.value!r}")
            for row in session.query(RenderedTaskInstanceFields).filter_by(dag_id=dr.dag_id, run_id=dr.run_id):
                out["rtif"].append(f"{row.task_id}[{row.map_index}]={row.rendered_fields!r}")
    return out


def _database_dump() -> str:
    from airflow.utils.session import create_session

    with create_session() as session:
        connection = session.connection().connection.driver_connection
        if not hasattr(connection, "iterdump"):  # not SQLite: the targeted checks above suffice
            return ""
        return "\n".join(connection.iterdump())


def test_the_key_is_nowhere_in_logs_xcoms_rendered_fields_or_errors(
    example_dags, emulator, run_dag, monkeypatch, capfd, tmp_path
):
    emulator.configure(api_key=KEY, job_seconds=0.2)
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(emulator.base_url, KEY))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a calm harbour at dawn\na harbour that will emulator-fail\na banned-word harbour\n")

    runs = [
        run_dag(example_dags["mj_imagine_upscale_describe"],
                run_conf={"prompt": "a red kite over hills", "output_dir": str(tmp_path / "main")}),
        run_dag(example_dags["mj_daily_content"],
                run_conf={"prompts_file": str(prompts), "max_prompts": 3, "output_dir": str(tmp_path / "daily")}),
    ]
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(emulator.base_url, WRONG_KEY))
    runs.append(run_dag(example_dags["mj_imagine_upscale_describe"], run_conf={"prompt": "a kite, wrong key"}))
    output = capfd.readouterr()

    # The runs did what they should, so there is something to search.
    assert [dr.state for dr in runs] == ["success", "failed", "failed"]
    printed = output.out + output.err
    for expected in ("Submitted Midjourney imagine job", "MidjourneyTaskFailedError", "MidjourneyBannedPromptError",
                     "MidjourneyAuthError", "refused the API key"):
        assert expected in printed, expected
    traces = {"stdout+stderr": printed}

    home = Path(os.environ["AIRFLOW_HOME"])
    for path in (home / "logs").rglob("*") if (home / "logs").exists() else []:
        if path.is_file():
            traces[f"log file {path.relative_to(home)}"] = path.read_text(errors="replace")
    rows = _rows_of_runs(runs)
    assert rows["xcom"] and rows["rtif"]
    traces.update({f"xcom {i}": text for i, text in enumerate(rows["xcom"])})
    traces.update({f"rendered fields {i}": text for i, text in enumerate(rows["rtif"])})
    traces["metadata database"] = _database_dump()
    dump = traces["metadata database"]
    assert not dump or all(dr.run_id in dump for dr in runs)  # the dump holds these runs' rows
    print(f"searched {len(traces)} traces, {sum(map(len, traces.values()))} characters")

    for where, text in traces.items():
        for secret in (KEY, WRONG_KEY):
            assert secret not in text, f"the API key leaked into {where}"
