"""The "not visible yet" grace: one rule for a job a relay does not show right after its submit.

Relays refresh their view of the upstream server every ~15 s and may answer "no such task" for a
job they accepted moments ago. Until ``visible_by`` (epoch seconds, :data:`NOT_VISIBLE_GRACE_SECONDS`
after the submit, or after a sensor started watching) such an answer means "not visible yet":
the blocking wait, the trigger's wait and the sensor keep polling, and an Airflow retry
re-attaches to the job instead of paying for it twice. After ``visible_by``, "not found" is an
error. Every one of those places asks :func:`not_visible_yet`.

The grace is for a task never seen. A task that a wait has already read (``IN_PROGRESS 40%``)
and that then answers "no such task" was lost by the server: waiting out the grace would only
delay the failure. :class:`TaskSighting` keeps what one wait knows and decides: such a task is
reported lost (:class:`~airflow_provider_mj.exceptions.MidjourneyTaskLostError`) after
:data:`LOST_AFTER_MISSES` "no such task" answers in a row, a short confirmation against a
one-off glitch; a reading of the task in between starts the count again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_mj.exceptions import MidjourneyNotFoundError
    from airflow_provider_mj.hooks.replies import TaskReading
    from airflow_provider_mj.models import MidjourneyTask

#: Seconds after a submit during which "no such task" means "not visible yet" rather than "gone".
NOT_VISIBLE_GRACE_SECONDS = 60.0

#: "No such task" answers in a row after which a task that was already seen is reported lost.
LOST_AFTER_MISSES = 3


def visible_by(since: float | None = None) -> float:
    """Epoch seconds until which "no such task" means "not visible yet", counted from ``since``.

    :param since: when the job was submitted (or first watched), epoch seconds; None: now.
    """
    return (time.time() if since is None else float(since)) + NOT_VISIBLE_GRACE_SECONDS


def not_visible_yet(visible_by: float | None) -> bool:
    """Whether a "no such task" read now is to be waited through (True) rather than raised.

    :param visible_by: the end of the grace (epoch seconds); None: no grace, not found is final.
    """
    return visible_by is not None and time.time() < visible_by


class TaskSighting:
    """What one wait knows about its task's existence, and what a "no such task" answer means.

    :param mj_task_id: the task waited for.
    :param visible_by: the end of the "not visible yet" grace (epoch seconds); None: no grace.
    """

    __slots__ = ("mj_task_id", "visible_by", "last", "misses")

    def __init__(self, mj_task_id: str, visible_by: float | None) -> None:
        self.mj_task_id = mj_task_id
        self.visible_by = visible_by
        self.last: MidjourneyTask | TaskReading | None = None
        self.misses = 0

    def seen(self, task: MidjourneyTask | TaskReading) -> None:
        """Record a reading of the task (a model or a poller's reading): it exists, and any count
        of misses starts again."""
        self.last = task
        self.misses = 0

    def missing(self, err: MidjourneyNotFoundError) -> str:
        """Judge a "no such task" answer: return what to log and keep waiting, or raise.

        :raises MidjourneyNotFoundError: a task never seen, after the grace (``err`` itself).
        :raises MidjourneyTaskLostError: a task seen before, after :data:`LOST_AFTER_MISSES`
            answers in a row.
        """
        from airflow_provider_mj.exceptions import MidjourneyTaskLostError

        if self.last is None:
            if not_visible_yet(self.visible_by):
                return "is not visible on the server yet; polling again"
            raise err
        self.misses += 1
        if self.misses >= LOST_AFTER_MISSES:
            raise MidjourneyTaskLostError.for_task(self.last, self.misses) from None
        where = f"{self.last.raw_status or self.last.status.value} {self.last.progress}".strip()
        return (f"was {where} but the server now answers 'no such task' ({self.misses} of {LOST_AFTER_MISSES} "
                "before it counts as lost); checking again")
