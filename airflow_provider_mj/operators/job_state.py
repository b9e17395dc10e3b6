"""Re-attaching instead of paying twice: the submitted job, remembered in Airflow's task state.

:class:`MidjourneyJobState` is what lets a later try of a submit operator find the job an
earlier try already paid for; :func:`fingerprint` tells a retry of the same task from a task whose
inputs changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_mj import visibility
from airflow_provider_mj.exceptions import MidjourneyNotFoundError
from airflow_provider_mj.models import MidjourneyTask, TaskOutcome, TaskStatus, task_outcome

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_mj.hooks.midjourney import MidjourneyHook


def fingerprint(value: Any) -> str:
    """A short stable digest of a submit's inputs (bytes and paths included)."""

    def norm(v: Any) -> Any:
        if isinstance(v, (bytes, bytearray)):
            return "bytes:" + hashlib.sha256(bytes(v)).hexdigest()
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if v is None or isinstance(v, (str, int, float, bool)):
            return v
        return str(v)

    raw = json.dumps(norm(value), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class MidjourneyJobState:
    """Exactly-once groundwork: the submitted job, remembered in Airflow's durable task state.

    After a submit is accepted, ``{"mj_task_id": ..., "request": <digest of the inputs>}`` is
    written to ``context["task_state_store"]`` under :attr:`KEY`, before any
    waiting. That store survives retries and deferral, so when a later try of the same task
    instance starts, :meth:`recall` finds the job and the operator re-attaches to it instead of
    paying for a second one:

    * job still running (or waiting in MODAL) or SUCCESS -> re-attach;
    * job FAILURE/CANCEL, unknown to the server, or submitted with other inputs -> submit again.

    With ``enabled=False`` (the operators' ``durable=False``) nothing is stored or read: every
    try submits.
    """

    KEY = "mj_job"

    def __init__(self, context: Context, log: Any, *, enabled: bool = True) -> None:
        self.log = log
        #: Until when (epoch seconds) "no such task" means the job is not visible yet.
        self.visible_by: float | None = None
        self._store = context["task_state_store"] if enabled else None

    def recall(self, hook: MidjourneyHook, request: str) -> MidjourneyTask | None:
        """The job an earlier try submitted with the same inputs, if it is worth re-attaching to."""
        if self._store is None:
            return None
        stored = self._store.get(self.KEY)
        if not isinstance(stored, dict) or not stored.get("mj_task_id"):
            return None
        mj_task_id = str(stored["mj_task_id"])
        submitted_at = stored.get("submitted_at")
        if isinstance(submitted_at, (int, float)):
            self.visible_by = visibility.visible_by(submitted_at)
        if stored.get("request") != request:
            self.log.info(
                "An earlier try submitted Midjourney task %s with other inputs: submitting a new job.",
                mj_task_id,
            )
            return None
        try:
            task = hook.fetch_task(mj_task_id)
        except MidjourneyNotFoundError:
            if visibility.not_visible_yet(self.visible_by):
                # Submitted moments ago: a lagging relay, not a lost job. Paying twice is worse
                # than waiting a little; the wait fails if it is still unknown after the grace.
                self.log.info(
                    "Midjourney task %s from an earlier try is not visible on the server yet: "
                    "re-attaching to it instead of submitting again.", mj_task_id,
                )
                return MidjourneyTask(id=mj_task_id, status=TaskStatus.UNKNOWN)
            self.log.warning(
                "Midjourney task %s from an earlier try is unknown to the server: submitting a new job.",
                mj_task_id,
            )
            return None
        if task_outcome(task) is TaskOutcome.FAILED:
            self.log.warning(
                "Midjourney task %s from an earlier try ended in %s (%s): submitting a new job.",
                mj_task_id, task.raw_status or task.status.value, task.fail_reason or "no reason given",
            )
            return None
        self.log.info(
            "Re-attaching to Midjourney task %s submitted by an earlier try (status %s %s) "
            "instead of submitting it again.",
            mj_task_id, task.raw_status or task.status.value, task.progress,
        )
        return task

    def remember(self, mj_task_id: str, request: str) -> None:
        """Record an accepted job (before any waiting) and start its "not visible yet" grace."""
        submitted_at = time.time()
        self.visible_by = visibility.visible_by(submitted_at)
        if self._store is not None:
            self._store.set(self.KEY, {"mj_task_id": mj_task_id, "request": request, "submitted_at": submitted_at})

