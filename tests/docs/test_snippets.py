"""Every Python snippet of README.md and docs/ runs: it is a region of an example DAG that the
suite runs end to end, copied exactly, or a script this test executes (against an emulator it
starts itself). See ``tests/docs/snippets.py`` for the two markers.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest

from tests.docs.snippets import EXECUTED, REPO, Block, blocks, doc_files, region

ALL_BLOCKS = [block for doc in doc_files() for block in blocks(doc)]
PYTHON = [block for block in ALL_BLOCKS if block.language in ("python", "py")]
COPIES = [block for block in PYTHON if block.region]
EXECUTED_BLOCKS = [block for block in PYTHON if block.marker == EXECUTED]


def _ids(items: list[Block]) -> list[str]:
    return [block.where for block in items]


def test_every_python_block_is_a_region_of_a_dag_or_executed():
    unmarked = [block.where for block in PYTHON if block.marker is None]

    assert PYTHON and COPIES and EXECUTED_BLOCKS
    assert unmarked == [], ("these blocks are neither a '<!-- snippet: dags/<file>.py <region> -->' copy nor "
                            f"'<!-- snippet: executed -->': {unmarked}")


def test_no_snippet_hides_in_another_fence():
    # A Python example written as ```py3, ```pycon or without a language would escape the rule.
    suspicious = [block.where for block in ALL_BLOCKS if block.language not in ("python", "py")
                  and block.marker is None and re.search(r"^\s*(from \w[\w.]* import|import \w|@dag\b)", block.code, re.M)]

    assert suspicious == []


@pytest.mark.parametrize("block", COPIES, ids=_ids(COPIES))
def test_a_copied_snippet_equals_its_region(block):
    path, name = block.region

    assert path.startswith("dags/") and path.endswith(".py"), block.where
    assert block.code == region(path, name), (
        f"{block.where} differs from {path} [{name}]: run `python -m tests.docs.snippets --write`"
    )


@pytest.mark.parametrize("path", sorted({block.region[0] for block in COPIES}))
def test_snippets_come_from_dags_the_suite_runs_end_to_end(path):
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    dag_ids = [kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
               for kw in node.keywords if kw.arg == "dag_id" and isinstance(kw.value, ast.Constant)]
    dag_ids = dag_ids or [node.name for node in tree.body if isinstance(node, ast.FunctionDef)
                          and any(getattr(d, "id", getattr(getattr(d, "func", None), "id", None)) == "dag"
                                  for d in node.decorator_list)]
    assert dag_ids, path
    for dag_id in dag_ids:
        assert dag_id in _dags_run_end_to_end(), f"no test in tests/dags runs {dag_id} with run_dag"


def _dags_run_end_to_end() -> set[str]:
    """DAG ids that a test function of tests/dags passes to ``run_dag`` (read from its source)."""
    found: set[str] = set()
    for test_file in (REPO / "tests" / "dags").glob("test_*.py"):
        for node in ast.parse(test_file.read_text(encoding="utf-8")).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            calls = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            if "run_dag" in calls:
                found |= {n.slice.value for n in ast.walk(node) if isinstance(n, ast.Subscript)
                          and isinstance(n.value, ast.Attribute) and n.value.attr == "dags"
                          and isinstance(n.slice, ast.Constant)}
    return found


@pytest.mark.parametrize("block", EXECUTED_BLOCKS, ids=_ids(EXECUTED_BLOCKS))
def test_an_executed_snippet_runs_as_it_stands(block, tmp_path):
    # A fresh interpreter in an empty folder, with the suite's private Airflow home: exactly what
    # a reader pasting the block into a script gets, minus their own ~/airflow.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    proc = subprocess.run([sys.executable, "-c", block.code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)

    assert proc.returncode == 0, f"{block.where}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


def test_the_region_reader_fails_on_a_missing_or_doubled_marker(tmp_path, monkeypatch):
    import tests.docs.snippets as snippets

    monkeypatch.setattr(snippets, "REPO", tmp_path)
    (tmp_path / "x.py").write_text("# [START a]\nx = 1\n# [START b]\ny = 2\n# [END b]\n# [END a]\n# [START a]\n")

    assert snippets.region("x.py", "b") == "y = 2\n"
    with pytest.raises(LookupError):
        snippets.region("x.py", "a")
    with pytest.raises(LookupError):
        snippets.region("x.py", "c")
