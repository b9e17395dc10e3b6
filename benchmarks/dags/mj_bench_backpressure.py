"""The bursts of ``benchmarks/backpressure_burst.py``: mapped deferrable imagines over a small account.

Not an example for users. One DAG per mode and size (``MJ_BENCH_SIZES``):

* ``mj_bench_room_N``: the provider as it is (a refused submit waits for room on the triggerer);
* ``mj_bench_baseline_N``: the behaviour before it (``begin_when_room`` bypassed: the hook retries
  a refusal ``max_retries`` times in the worker, sleeping between tries, then the task fails).

Both record what a worker slot spent on the account's refusals, one JSON line per event in
``MJ_BENCH_RECORD``:

* ``submit``: every ``submit()`` call with its duration (the baseline's in-worker retries sleep
  inside it);
* ``retry_wait``: the part of a ``submit()`` call after its first in-worker retry began (the first
  refused try returned) until the call returned, accepted or failed: the baseline's wait for room;
* ``room_run``: every worker run that ended deferring on the room trigger, from the task process's
  start to the deferral (start-up and DAG parse included);
* ``room_wait``: in such a run, from the refusal (the ``refused_at`` the trigger carries) to the
  deferral: the room mode's wait for room in a worker slot;
* ``resume_run``: every run of ``execute_after_room`` (a run only a refusal causes), from the task
  process's start to its end, less its own ``room_wait``: the cost of resuming.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_mj.operators import MidjourneyImagineOperator

SIZES = [int(n) for n in os.environ.get("MJ_BENCH_SIZES", "30").split(",") if n.strip()]
RECORD = os.environ.get("MJ_BENCH_RECORD", "")
POLL_INTERVAL = float(os.environ.get("MJ_BENCH_POLL_INTERVAL", "2"))


def _record(context, kind: str, seconds: float) -> None:
    if not RECORD:
        return
    ti = context["ti"]
    line = json.dumps({"dag_id": ti.dag_id, "map_index": ti.map_index, "kind": kind, "seconds": seconds})
    with open(RECORD, "a") as out:  # one short line per write: appends from many processes stay whole
        out.write(line + "\n")


class MeasuredImagine(MidjourneyImagineOperator):
    """The provider's imagine, timing its submits and its worker runs spent only on a refusal."""

    def submit(self, context):
        hook = self.hook
        real_sleep = hook._sleep  # the hook's waits between tries (the only ones here: refusals)
        first_retry: list[float] = []

        def sleep(seconds):
            if not first_retry:
                first_retry.append(time.time())
            real_sleep(seconds)

        hook._sleep = sleep
        started = time.time()
        try:
            return super().submit(context)
        finally:
            hook._sleep = real_sleep
            ended = time.time()
            _record(context, "submit", ended - started)
            if first_retry:
                _record(context, "retry_wait", ended - first_retry[0])

    def _measured(self, run, context, *args, resumed: bool = False):
        import psutil

        started = psutil.Process().create_time()  # the task process: the worker run began then
        room_wait = 0.0
        try:
            return run(context, *args)
        except TaskDeferred as deferred:
            if deferred.method_name == "execute_after_room":
                now = time.time()
                room_wait = now - float(deferred.trigger.wait["refused_at"])
                _record(context, "room_run", now - started)
                _record(context, "room_wait", room_wait)
            raise
        finally:
            if resumed:
                _record(context, "resume_run", time.time() - started - room_wait)

    def execute(self, context):
        return self._measured(super().execute, context)

    def execute_after_room(self, context, event=None):
        return self._measured(super().execute_after_room, context, event, resumed=True)


class BaselineImagine(MeasuredImagine):
    """Before issue 14: a refusal is retried by the hook in the worker, then fails the task."""

    def begin_when_room(self, context, deadline, wait=None):
        return self._begin(context)


for size in SIZES:
    for mode, operator in (("room", MeasuredImagine), ("baseline", BaselineImagine)):
        dag_id = f"mj_bench_{mode}_{size}"
        with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
                 max_active_tasks=max(size, 16), tags=["benchmark"]) as dag:
            operator.partial(task_id="imagine", deferrable=True, poll_interval=POLL_INTERVAL, timeout=3600).expand_kwargs(
                [{"prompt": f"harbour at dusk, study {i:03d}", "state": f"{dag_id}-{i:03d}"} for i in range(size)]
            )
        globals()[dag_id] = dag
