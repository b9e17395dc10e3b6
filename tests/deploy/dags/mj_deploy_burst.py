"""A burst of mapped imagines, for the deployment test's celery profile (scripts/deploy/celery_run.py).

Not an example for users (those live in dags/): the deployment copies this file into its DAGs
folder. Each mapped instance tags its job with ``state="burst-NN"`` so that the emulator's
``submits_by_state`` counter shows each prompt submitted exactly once, whatever the triggerers and
workers went through. The size, the pool and the poll interval come from the environment the
deployment sets for every Airflow process.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_mj.operators import MidjourneyImagineOperator

BURST_SIZE = int(os.environ.get("MJ_DEPLOY_BURST_SIZE", "30"))
#: A pool with include_deferred sized to the emulated account, or "" for none.
BURST_POOL = os.environ.get("MJ_DEPLOY_BURST_POOL", "")
POLL_INTERVAL = float(os.environ.get("MJ_DEPLOY_BURST_POLL_INTERVAL", "2"))

with DAG(
    dag_id="mj_deploy_burst",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # The pool (or the account) is the limit under test, not Airflow's per-DAG default of 16.
    max_active_tasks=max(BURST_SIZE, 16),
    tags=["deploy-test"],
):
    MidjourneyImagineOperator.partial(
        task_id="imagine",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=900,
        **({"pool": BURST_POOL} if BURST_POOL else {}),
    ).expand_kwargs([
        {"prompt": f"lighthouse at dawn, study {i:02d} --ar 3:2", "state": f"burst-{i:02d}"}
        for i in range(BURST_SIZE)
    ])
