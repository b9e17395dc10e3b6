"""Helpers for the asset tests: read asset events from the metadata DB, run an asset-triggered DAG.

``dag.test()`` runs only manual runs, and nothing in it schedules a DAG on an asset. The
scheduler does that: :func:`run_asset_triggered` lets the scheduler's own code
(``SchedulerJobRunner._create_dag_runs_asset_triggered``) turn the queued asset events into a DAG
run, exactly as a running scheduler would, then runs that run's tasks in-process the way
``dag.test()`` does (its ``_run_task``). The tasks then read ``triggering_asset_events`` from the
real metadata DB through the real execution API.
"""

from __future__ import annotations

from typing import Any


def register_dags(*dags: Any) -> None:
    """Store DAGs in the metadata DB as the DAG processor would (schedules on assets included), unpaused.

    Airflow queues a run of an asset-scheduled DAG only if that DAG is unpaused when the event
    arrives, as a user's DAG switched on in the UI would be.
    """
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.models.dag import DagModel
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag) for dag in dags], {}, None, set(),
            session=session,
        )
    with create_session() as session:
        for dag in dags:
            session.get(DagModel, dag.dag_id).is_paused = False


def asset_events(*, name: str | None = None, uri: str | None = None, source_dag_id: str | None = None,
                 source_run_id: str | None = None) -> list[dict[str, Any]]:
    """The asset events stored in the metadata DB for an asset, oldest first, as plain dicts."""
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    query = select(AssetEvent, AssetModel).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
    if name is not None:
        query = query.where(AssetModel.name == name)
    if uri is not None:
        query = query.where(AssetModel.uri == uri)
    if source_dag_id is not None:
        query = query.where(AssetEvent.source_dag_id == source_dag_id)
    if source_run_id is not None:
        query = query.where(AssetEvent.source_run_id == source_run_id)
    with create_session() as session:
        rows = session.execute(query.order_by(AssetEvent.timestamp, AssetEvent.id)).all()
        return [
            {
                "asset_name": asset.name, "asset_uri": asset.uri, "extra": dict(event.extra or {}),
                "source_dag_id": event.source_dag_id, "source_task_id": event.source_task_id,
                "source_run_id": event.source_run_id, "source_map_index": event.source_map_index,
                "aliases": sorted(alias.name for alias in event.source_aliases),
            }
            for event, asset in rows
        ]


def run_asset_triggered(dag: Any) -> Any:
    """Create ``dag``'s asset-triggered run from its queued events (scheduler code), run it, return it."""
    from sqlalchemy import select

    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dag import DagModel
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunType

    with create_session() as session:
        runner = SchedulerJobRunner(job=Job())
        dag_model = session.get(DagModel, dag.dag_id)
        runner._create_dag_runs_asset_triggered(dag_models=[dag_model], session=session)
    with create_session() as session:
        dr = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_type == DagRunType.ASSET_TRIGGERED)
            .order_by(DagRun.id.desc())
        ).first()
        if dr is None:
            raise AssertionError(f"the scheduler created no asset-triggered run of {dag.dag_id}")
        dr.dag = DBDagBag().get_dag_for_run(dr, session=session)
        dr.state = DagRunState.RUNNING
        session.commit()
        for _ in range(50):  # a bounded loop: a handful of tasks
            if dr.state != DagRunState.RUNNING:
                break
            session.expire_all()
            schedulable, _ = dr.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in dr.get_task_instances(session=session):
                if ti.state == TaskInstanceState.SCHEDULED:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
        run_id = dr.run_id
    with create_session() as session:
        dr = session.scalars(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id)).one()
        session.expunge(dr)
        return dr
