"""One blocking imagine whose Celery worker the deployment test kills mid-job (celery profile).

Blocking (``deferrable=False``): the job is submitted and then waited for inside the worker, so
killing the worker kills the try while the job runs. Airflow fails the try once its heartbeat is
older than ``[scheduler] task_instance_heartbeat_timeout`` and retries it; the retry must find
the job in the durable task state and re-attach to it instead of submitting (and paying) again.
The job is tagged ``state="worker-kill"`` for the emulator's counters.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_mj.operators import MidjourneyImagineOperator

with DAG(
    dag_id="mj_deploy_worker_kill",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["deploy-test"],
):
    MidjourneyImagineOperator(
        task_id="imagine_blocking",
        prompt="a harbour crane at night, long exposure --ar 16:9",
        state="worker-kill",
        deferrable=False,
        poll_interval=1.0,
        timeout=900,
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
