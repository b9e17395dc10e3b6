"""Helpers for tests: connection JSON, reading task instances and XComs of a finished run."""

from __future__ import annotations

import json
from typing import Any


def connection_json(base_url: str, api_key: str | None = None, **extra) -> str:
    """The JSON form of a ``midjourney`` connection, as a user would put in AIRFLOW_CONN_..."""
    conn = {"conn_type": "midjourney", "host": base_url}
    if api_key is not None:
        conn["password"] = api_key
    extra.setdefault("retry_min_wait", 0.05)
    extra.setdefault("retry_max_wait", 0.5)
    conn["extra"] = extra
    return json.dumps(conn)


def task_instances(dag_run) -> dict:
    """Map task_id (and map index, for mapped tasks) to its TaskInstance for assertions."""
    from airflow.utils.session import create_session
    from airflow.models.taskinstance import TaskInstance

    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)
            .all()
        )
        out = {}
        for ti in tis:
            key = ti.task_id if ti.map_index < 0 else (ti.task_id, ti.map_index)
            session.expunge(ti)
            out[key] = ti
        return out


def xcom_value(dag_run, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """The deserialised XCom a task instance of ``dag_run`` pushed (None if absent), as a worker reads it.

    Airflow 3 workers push XComs through the Execution API, which stores them as native JSON;
    ``XComModel.deserialize_value`` would ``json.loads`` a stored string a second time (turning
    ``"1795608404329000"`` into an int), so the value is decoded the way the task SDK's
    ``BaseXCom.deserialize_value`` does it (serde), never parsed again.
    """
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.map_index == map_index,
            )
            .one_or_none()
        )
        if row is None:
            return None
        return deserialize(row.value)


# --- added for the operator, sensor and trigger tests --------------------------------------------


def png_bytes(width: int = 8, height: int = 8, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A small valid PNG (standard library only)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(color) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png_data_url(**kwargs) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(**kwargs)).decode()


def unique_dag_id(request, suffix: str = "") -> str:
    """A DAG id unique to the running test (parametrised ids included)."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")
    return f"{name}{'_' + suffix if suffix else ''}"[:240]


def make_dag(dag_id: str, **kwargs):
    """A manual-only DAG for ``run_dag``."""
    from datetime import datetime, timezone

    from airflow.sdk import DAG

    kwargs.setdefault("schedule", None)
    kwargs.setdefault("start_date", datetime(2025, 1, 1, tzinfo=timezone.utc))
    kwargs.setdefault("catchup", False)
    return DAG(dag_id=dag_id, **kwargs)



def record_inline_triggers(monkeypatch) -> list:
    """Record the class name of every trigger ``dag.test()`` runs in-process (proves a task deferred)."""
    import airflow.sdk.definitions.dag as sdk_dag

    runs: list = []
    real = sdk_dag._run_inline_trigger

    def recording(trigger, ti):
        runs.append(type(trigger).__name__)
        return real(trigger, ti)

    monkeypatch.setattr(sdk_dag, "_run_inline_trigger", recording)
    return runs


def record_connection_reads(monkeypatch) -> list:
    """Record the conn id of every async connection read of ``MidjourneyHook`` (a spy: Airflow's real
    lookup still runs), to count what waits cost in reads of the connection."""
    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

    reads: list = []
    real = MidjourneyHook.aget_connection

    async def recording(self, conn_id):
        reads.append(conn_id)
        return await real(conn_id)

    monkeypatch.setattr(MidjourneyHook, "aget_connection", recording)
    return reads


def progress_lines(out: str, mj_task_id: str) -> list[str]:
    """The progress lines a wait logged for a task, in order: ``["IN_PROGRESS 45%", "SUCCESS 100%"]``."""
    prefix = f"Midjourney task {mj_task_id}: "
    # "<time> [info] Midjourney task <id>: IN_PROGRESS 45% [<logger>] loc=..." -> "IN_PROGRESS 45%"
    return [line.split(prefix, 1)[1].split(" [", 1)[0].strip() for line in out.splitlines() if prefix in line]
