"""OpenLineage from the operators, through the real OpenLineage provider and its file transport.

Each test runs ``airflow dags test`` (which is ``dag.test()``) in a fresh interpreter: the
OpenLineage plugin reads its configuration once, when Airflow loads plugins, so the transport must
be set before that. The events are the JSON lines the provider's file transport wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import connection_json, png_bytes

DAG_ID = "mj_lineage_probe"

DAG_FILE = '''
import pendulum
from airflow.sdk import DAG
from airflow_provider_mj.operators import (
    MidjourneyActionOperator, MidjourneyBlendOperator, MidjourneyDescribeOperator,
)

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC"), catchup=False):
    blend = MidjourneyBlendOperator(task_id="blend", images={images!r}, destination="{out}/blend-{{mj_task_id}}.png",
                                    poll_interval=0.05, state="lineage-probe")
    upscale = MidjourneyActionOperator(task_id="upscale", mj_task_id=blend.output, button="U1",
                                       destination="{out}/", poll_interval=0.05)
    MidjourneyDescribeOperator(task_id="describe", image={images[0]!r}, poll_interval=0.05)
'''

#: An installation without OpenLineage: its distributions are not seen (so Airflow discovers no
#: OpenLineage provider or plugin) and importing any of it fails.
NO_OPENLINEAGE = '''
import importlib.abc, sys
import importlib.metadata as _stdlib_metadata

try:
    import importlib_metadata as _backport_metadata
except ImportError:
    _backport_metadata = None

def _hide(distributions):
    def visible(*args, **kwargs):
        for dist in distributions(*args, **kwargs):
            name = (dist.metadata["name"] or "").lower().replace("_", "-")
            if not name.startswith(("openlineage", "apache-airflow-providers-openlineage")):
                yield dist
    return visible

for _module in (_stdlib_metadata, _backport_metadata):
    if _module is not None:
        _module.distributions = _hide(_module.distributions)

class _NoOpenLineage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "openlineage" or name.startswith(("openlineage.", "airflow.providers.openlineage")):
            raise ImportError(f"{name} is not installed here (test)")
        return None

sys.meta_path.insert(0, _NoOpenLineage())
'''


def _run_dags_test(tmp_path: Path, emulator, *, extra_env: dict[str, str], pythonpath: str | None = None):
    dags = tmp_path / "dags"
    dags.mkdir()
    inputs = []
    for n, color in enumerate(((200, 30, 30), (30, 30, 200)), start=1):
        path = tmp_path / f"source-{n}.png"
        path.write_bytes(png_bytes(color=color))
        inputs.append(str(path))
    (dags / f"{DAG_ID}.py").write_text(textwrap.dedent(DAG_FILE.format(dag_id=DAG_ID, images=inputs,
                                                                       out=tmp_path / "out")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__OPENLINEAGE__")}
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW_CONN_MIDJOURNEY_DEFAULT=connection_json(emulator.base_url),
        PYTHONWARNINGS="ignore",
        **extra_env,
    )
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, inputs


def _complete_events(log: Path) -> dict[str, dict]:
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {e["job"]["name"].rsplit(".", 1)[-1]: e for e in events
            if e.get("eventType") == "COMPLETE" and e["job"]["name"].count(".") == 1}


def _names(datasets) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


@pytest.mark.usefixtures("airflow_db")
def test_the_file_transport_records_inputs_outputs_and_the_midjourney_run_facet(emulator, tmp_path):
    log = tmp_path / "openlineage.jsonl"
    _, inputs = _run_dags_test(tmp_path, emulator, extra_env={
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(log), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "mj-tests",
    })

    complete = _complete_events(log)
    assert {"blend", "upscale", "describe"} <= set(complete)
    host = emulator.base_url.split("://", 1)[1]

    blend = complete["blend"]
    facet = blend["run"]["facets"]["midjourney"]
    assert facet["action"] == "BLEND" and facet["state"] == "lineage-probe" and facet["mjTaskId"]
    assert _names(blend["inputs"]) >= {("file", path) for path in inputs}
    saved = sorted((tmp_path / "out").glob("blend-*.png"))
    assert len(saved) == 1
    assert _names(blend["outputs"]) >= {("file", str(saved[0])), (f"midjourney://{host}", f"task/{facet['mjTaskId']}")}

    upscale = complete["upscale"]
    up_facet = upscale["run"]["facets"]["midjourney"]
    assert up_facet["action"] == "UPSCALE" and up_facet["button"] == "U1"
    # The upscale reads the blend's task: the two jobs are linked in the lineage graph.
    assert (f"midjourney://{host}", f"task/{facet['mjTaskId']}") in _names(upscale["inputs"])
    assert ("file", str(tmp_path / "out" / f"{up_facet['mjTaskId']}.png")) in _names(upscale["outputs"])

    describe = complete["describe"]
    assert _names(describe["inputs"]) >= {("file", inputs[0])}
    assert describe["run"]["facets"]["midjourney"]["action"] == "DESCRIBE"


@pytest.mark.usefixtures("airflow_db")
def test_the_operators_run_and_save_without_openlineage_installed(emulator, tmp_path):
    blocker = tmp_path / "no-openlineage"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_OPENLINEAGE)

    _run_dags_test(tmp_path, emulator, extra_env={}, pythonpath=str(blocker))

    assert len(list((tmp_path / "out").glob("blend-*.png"))) == 1
    assert len(list((tmp_path / "out").glob("*.png"))) == 2
