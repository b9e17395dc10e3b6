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
    """The deserialised XCom a task instance of ``dag_run`` pushed (None if absent)."""
    from airflow.models.xcom import XComModel
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
        return XComModel.deserialize_value(row)
