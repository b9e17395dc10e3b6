"""Fixtures of the reliability suite (issue 6).

The canned-reply HTTP server of the hook tests is reused as is (``canned``): it stands in for
replies the emulator cannot make (an HTML error page from a proxy, a non-JSON body).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.hooks.conftest import canned  # noqa: F401  (re-exported fixture)

#: Where the fault run writes its counts (``test-artifacts/reliability/fault_run.json``).
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "reliability"


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


class FakeTI:
    """The little of a TaskInstance a submit operator touches before and after submitting."""

    try_number = 1
    map_index = -1

    def __init__(self) -> None:
        self.xcoms: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcoms[key] = value


class FakeStore:
    """An in-memory ``task_state_store`` (the Airflow 3.3 accessor's get/set)."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}

    def get(self, key: str, default: object = None) -> object:
        return self.data.get(key, default)

    def set(self, key: str, value: object, **_: object) -> None:
        self.data[key] = value


def operator_context() -> dict:
    """A minimal execution context, to call an operator's ``execute`` directly in a table test."""
    return {"ti": FakeTI(), "task_state_store": FakeStore()}
