"""The settle time: a trigger of ours never fires its event sooner than :data:`SETTLE_SECONDS` after its task deferred.

Why. A deferring task's worker run ends normally, and its executor reports that end ("success")
to the scheduler. Airflow 3.3's scheduler processes that report in ``_process_executor_events``;
if by then the trigger has fired and the task instance is back in ``queued`` or ``running`` with
the same try number, and the executor no longer lists the key as its own, the scheduler takes the
stale report for a task killed behind its back and fails it ("Executor LocalExecutor reported
that the task instance ... finished with state success, but the task instance's state attribute
is queued"). Airflow 3.3.2 tolerates the case where the task is ``scheduled`` again, not ``queued``
or ``running`` (apache/airflow#67287 for the ``queued`` case, #71580 for ``running``). The
LocalExecutor hits it when it reads the first run's result after the second run was handed to it:
both runs carry the same key, and reading the first one's end drops the key from the executor's
running set. In a loaded deployment 10 of 30 and 4 of 100 deferred tasks failed this way
(benchmarks/README.md).

The window is the time from the deferral until the scheduler has read the deferring run's
result. Measured in a LocalExecutor deployment (``benchmarks/backpressure_burst.py``): the task
process is done within a fraction of a second, but its supervisor may notice the exit only at
its next wake-up, up to ``[workers] min_heartbeat_interval`` (5 s by default) later, and then
the executor's result waits for the next scheduler loop (``scheduler_idle_sleep_time``, 1 s by
default, longer under load): 5.9 s in the one case a 5 s settle let through. So no trigger event
goes out before :data:`SETTLE_SECONDS` have passed since the deferral: the trigger does its work
meanwhile (a room trigger keeps its place in line and may claim room; a task trigger polls),
only the event waits. A trigger that fires later than that never waits at all, so the usual
case (a job that runs for tens of seconds) costs nothing. A scheduler lagging more than that can
still lose the race; the settle narrows it, it cannot close it from a trigger.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

#: Seconds after its task deferred before a trigger of this provider may fire its event.
SETTLE_SECONDS = 10.0


def without_executor() -> bool:
    """Whether this trigger runs in ``dag.test()`` / ``airflow dags test``: Airflow's in-process
    supervisor runs the task and then its trigger in one process, with no executor and no
    scheduler reading executor events, so there is no race to settle (and ``make demo``, which
    runs ``dags test``, would wait 10 s per deferral for nothing)."""
    import sys

    supervisor = sys.modules.get("airflow.sdk.execution_time.supervisor")
    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    in_process = getattr(supervisor, "InProcessSupervisorComms", None)
    return in_process is not None and isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), in_process)


async def settle(deferred_at: float, log: Any = None) -> float:
    """Sleep until :data:`SETTLE_SECONDS` after ``deferred_at`` (epoch seconds); return the seconds slept.

    :param deferred_at: when the task deferred (epoch seconds).
    :param log: a logger to tell why the event waits, if it does.
    """
    delay = deferred_at + SETTLE_SECONDS - time.time()
    if delay <= 0 or without_executor():
        return 0.0
    if log is not None:
        log.info("Holding the event %.1f s: the task deferred %.1f s ago, and Airflow's scheduler may not have "
                 "read that run's end yet.", delay, SETTLE_SECONDS - delay)
    await asyncio.sleep(delay)
    return delay
