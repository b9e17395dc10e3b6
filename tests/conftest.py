"""Shared fixtures: an isolated Airflow home, a running emulator, a connection pointing at it.

The Airflow settings are exported before anything imports Airflow, so the suite never touches a
user's ~/airflow and never needs a global database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import connection_json

_AIRFLOW_HOME = Path(os.environ.get("MJ_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="mj-airflow-home-"))
_DAGS_FOLDER = _AIRFLOW_HOME / "dags"
_DAGS_FOLDER.mkdir(parents=True, exist_ok=True)
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "120"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
# A connection left in the caller's environment must never leak into tests.
for _name in list(os.environ):
    if _name.startswith("AIRFLOW_CONN_"):
        del os.environ[_name]

REPO_ROOT = Path(__file__).resolve().parent.parent
# Read before any test patches it (see no_settle); the module imports nothing of Airflow.
from airflow_provider_mj.settle import SETTLE_SECONDS as SHIPPED_SETTLE_SECONDS  # noqa: E402
FAST_JOB_SECONDS = 0.3


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database in the suite's private AIRFLOW_HOME."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return _AIRFLOW_HOME


@pytest.fixture
def emulator():
    """A fresh emulator on a free 127.0.0.1 port, with jobs that finish in a fraction of a second."""
    from airflow_provider_mj.emulator import start_emulator

    with start_emulator(job_seconds=FAST_JOB_SECONDS, progress_steps=3) as emu:
        yield emu


@pytest.fixture
def mj_connection(emulator, monkeypatch):
    """Point ``midjourney_default`` at the emulator (through the environment, like a user would)."""
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(emulator.base_url))
    return emulator


@pytest.fixture
def run_dag(airflow_db):
    """Run a DAG built in the test with ``dag.test()`` and return the DagRun.

    ``dag.test()`` in Airflow 3 runs only DAGs known to the metadata database, so the DAG is
    registered first, exactly as the DAG processor would store it. Deferred tasks run their
    triggers in-process, on a real event loop.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    # `airflow db migrate` does not create the "dags-folder" bundle row that DAG rows reference
    # (a foreign key): register the configured bundles first, as the DAG processor would.
    DagBundlesManager().sync_bundles_to_db()

    def _run(dag, **kwargs):
        with create_session() as session:
            update_dag_parsing_results_in_db(
                "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
            )
        return dag.test(**kwargs)

    return _run



@pytest.fixture(autouse=True)
def no_settle(monkeypatch):
    """In-process triggers fire without the settle time (:mod:`airflow_provider_mj.settle`).

    The race the settle guards against needs a scheduler and an executor; ``dag.test()`` and a
    trigger run on the test's own loop have neither, and up to 10 s more per deferral would more
    than double the suite. Tests of the settle itself, and of the burst that meets it, ask for
    :func:`real_settle`; the deployment tests' triggerers run it as shipped.
    """
    from airflow_provider_mj import settle

    monkeypatch.setattr(settle, "SETTLE_SECONDS", 0.0)


@pytest.fixture
def real_settle(no_settle, monkeypatch):
    """The settle time as shipped (undoes :func:`no_settle`); returns it in seconds."""
    from airflow_provider_mj import settle

    monkeypatch.setattr(settle, "SETTLE_SECONDS", SHIPPED_SETTLE_SECONDS)
    return SHIPPED_SETTLE_SECONDS
