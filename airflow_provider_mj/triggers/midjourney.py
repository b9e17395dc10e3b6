"""The trigger that waits for a Midjourney task on the triggerer, and the one reader of its events.

:class:`MidjourneyTaskTrigger` polls the task through the hook's async path until it is finished,
failed, or past its deadline, and fires exactly one :class:`~airflow.triggers.base.TriggerEvent`::

    {"status": "success" | "failed" | "timeout" | "error" | "modal",
     "mj_task_id": "1320098173412546",
     "task": {...the task as the API returned it...} | None,
     "message": "human readable summary",
     "error_type": "MidjourneyAuthError" | None}

:func:`task_from_event` turns that event back into a :class:`~airflow_provider_mj.models.MidjourneyTask`
or raises the error a blocking wait would have raised; every operator's and the sensor's
``execute_complete`` goes through it, so deferrable and blocking waits give the same answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_mj import exceptions as mj_exceptions
from airflow_provider_mj import room
from airflow_provider_mj.common import DEFAULT_CONN_ID
from airflow_provider_mj.exceptions import (
    MidjourneyError,
    MidjourneyTaskFailedError,
    MidjourneyTimeoutError,
)
from airflow_provider_mj.models import MidjourneyTask, TaskOutcome, TaskStatus, task_outcome
from airflow_provider_mj.settle import settle

#: A trigger without a deadline still stops after this long (seconds): it never polls forever.
DEFAULT_MAX_WAIT = 24 * 3600.0

EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
#: The task waits in MODAL (only with ``modal_ends_wait``): the operator must send its modal input.
EVENT_MODAL = "modal"


def task_failed_error(task: MidjourneyTask, prompt: str | None = None) -> MidjourneyTaskFailedError:
    """The error for a task that ended in FAILURE or CANCEL (see ``MidjourneyTaskFailedError.for_task``)."""
    return MidjourneyTaskFailedError.for_task(task, prompt)


def task_from_event(event: dict[str, Any] | None) -> MidjourneyTask:
    """Read a :class:`MidjourneyTaskTrigger` event: the finished task, or raise what went wrong.

    * ``success`` -> the finished :class:`MidjourneyTask`;
    * ``failed`` -> :class:`MidjourneyTaskFailedError` (not retried by Airflow);
    * ``timeout`` -> :class:`MidjourneyTimeoutError` (retried; the next try re-attaches to the job);
    * ``error`` -> the same :class:`MidjourneyError` subclass the trigger hit (so fatal stays
      fatal and transient stays retryable), or a plain :class:`MidjourneyError`;
    * ``modal`` -> the task, in status MODAL (a trigger with ``modal_ends_wait``): the caller sends
      the modal input.
    """
    if not isinstance(event, dict):
        raise MidjourneyError(f"The Midjourney trigger sent no usable event: {event!r}")
    status = event.get("status")
    mj_task_id = event.get("mj_task_id")
    message = str(event.get("message") or "")
    task_data = event.get("task")
    task = MidjourneyTask.from_api(task_data) if isinstance(task_data, dict) else None
    if status in (EVENT_SUCCESS, EVENT_MODAL) and task is not None:
        return task
    if status == EVENT_FAILED and task is not None:
        raise task_failed_error(task)
    if status == EVENT_TIMEOUT:
        raise MidjourneyTimeoutError(message or f"Midjourney task {mj_task_id} did not finish in time")
    error_cls = getattr(mj_exceptions, str(event.get("error_type") or ""), None)
    if not (isinstance(error_cls, type) and issubclass(error_cls, MidjourneyError)):
        error_cls = MidjourneyError
    try:
        error = error_cls(message or f"Waiting for Midjourney task {mj_task_id} failed: {event!r}")
    except TypeError:  # a subclass with a different signature: keep the message, lose the class
        error = MidjourneyError(message)
    raise error


class MidjourneyTaskTrigger(BaseTrigger):
    """Wait on the triggerer until a Midjourney task is finished; fire exactly one event.

    The trigger waits through :func:`airflow_provider_mj.polling.wait_for_terminal`. By default
    (``coalesce=True``) every trigger of the same connection and poll interval on a triggerer
    shares one poller, which reads all their tasks in one ``list-by-condition`` call per interval;
    with ``coalesce=False`` the trigger fetches its own task once per interval. Both go through
    the hook's async path (one aiohttp session per connection and event loop, no sync I/O, no
    per-poll connection lookup).
    Every status change is logged (``Midjourney task ...: IN_PROGRESS 45%``), the final one
    included; progress between two status changes at most every ``progress_log_interval``
    seconds, so a chatty relay whose progress moves on every read fills neither the task log nor
    the triggerer's CPU. Transient errors (rate limit,
    5xx, connection) are retried by the hook with backoff, then on the next tick, without failing
    the task; errors retrying cannot fix end the wait with an ``error`` event. The trigger stops
    at ``deadline`` at the latest, with a ``timeout`` event. No event goes out sooner than
    :data:`~airflow_provider_mj.settle.SETTLE_SECONDS` after ``deferred_at`` (a job found already
    finished, as when a retry re-attaches to it, waits out the rest; see :mod:`airflow_provider_mj.settle`).

    :param mj_task_id: the Midjourney task to wait for.
    :param midjourney_conn_id: the Airflow connection of the Midjourney API.
    :param poll_interval: seconds between two polls.
    :param deadline: epoch seconds (``time.time()``) after which the trigger gives up with a
        ``timeout`` event. None: :data:`DEFAULT_MAX_WAIT` from when the trigger starts.
    :param prompt: the job's prompt, only used to make messages clearer.
    :param coalesce: True (default): share the connection's batch poller (one request per
        interval for all waiting tasks). False: poll this task alone with
        ``GET /mj/task/{id}/fetch`` (one request per task per interval), for servers whose
        ``list-by-condition`` is slow or rate-limited harder than single fetches.
    :param visible_by: epoch seconds until which "no such task" means the job is not visible yet
        (a relay lagging right after the submit) and the wait goes on. None: not found is an error.
    :param progress_log_interval: seconds between two progress lines of the same status. None
        (default): four poll intervals; 0: log every progress change.
    :param modal_ends_wait: end the wait with a ``modal`` event when the task is read in status
        MODAL (it would wait for input forever). The action operator sets it when a relay's code 1
        may hide a code 21, so that the triggerer, not a sleeping worker, looks for the modal.
    :param deferred_at: epoch seconds at which the task deferred on this trigger. None (default):
        now, which is right where a task builds the trigger to defer on it; the triggerer gets the
        value back from :meth:`serialize`.
    """

    # A triggerer may hold thousands of these while they wait: no per-instance __dict__ beyond
    # BaseTrigger's own.
    __slots__ = ("mj_task_id", "midjourney_conn_id", "poll_interval", "deadline", "prompt", "coalesce",
                 "visible_by", "progress_log_interval", "modal_ends_wait", "deferred_at")

    def __init__(
        self,
        mj_task_id: str,
        midjourney_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        prompt: str | None = None,
        coalesce: bool = True,
        visible_by: float | None = None,
        progress_log_interval: float | None = None,
        modal_ends_wait: bool = False,
        deferred_at: float | None = None,
    ) -> None:
        super().__init__()
        self.mj_task_id = str(mj_task_id)
        self.midjourney_conn_id = midjourney_conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline) if deadline is not None else None
        self.prompt = prompt
        self.coalesce = bool(coalesce)
        self.visible_by = float(visible_by) if visible_by is not None else None
        self.progress_log_interval = float(progress_log_interval) if progress_log_interval is not None else None
        self.modal_ends_wait = bool(modal_ends_wait)
        self.deferred_at = float(deferred_at) if deferred_at is not None else time.time()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "mj_task_id": self.mj_task_id,
                "midjourney_conn_id": self.midjourney_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "prompt": self.prompt,
                "coalesce": self.coalesce,
                "visible_by": self.visible_by,
                "progress_log_interval": self.progress_log_interval,
                "modal_ends_wait": self.modal_ends_wait,
                "deferred_at": self.deferred_at,
            },
        )

    def _make_hook(self):
        from airflow_provider_mj.hooks.midjourney import MidjourneyHook

        return MidjourneyHook(midjourney_conn_id=self.midjourney_conn_id)

    def _event(self, status: str, message: str, task: MidjourneyTask | None = None,
               error: BaseException | None = None) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "mj_task_id": self.mj_task_id,
                "task": task.to_dict() if task is not None else None,
                "message": message,
                "error_type": type(error).__name__ if error is not None else None,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            event = await self._wait()
        except Exception as err:  # never die silently: the task must hear about it
            self.log.exception("Waiting for Midjourney task %s failed", self.mj_task_id)
            event = self._event(EVENT_ERROR, f"Waiting for Midjourney task {self.mj_task_id} failed: {err}",
                                error=err)
        await settle(self.deferred_at, self.log)
        yield event

    async def _wait(self) -> TriggerEvent:
        hook = self._make_hook()
        try:
            return await self._poll(hook)
        finally:
            # Release this trigger's share of the loop's HTTP session (shared per connection).
            await hook.aclose()

    async def _poll(self, hook: Any) -> TriggerEvent:
        from airflow_provider_mj.polling import as_task, wait_for_terminal

        deadline = self.deadline if self.deadline is not None else time.time() + DEFAULT_MAX_WAIT
        if time.time() >= deadline:
            # Resumed after its deadline (a triggerer restart): one look before giving up.
            task = await hook.afetch_task(self.mj_task_id)
            if task_outcome(task) is TaskOutcome.RUNNING:
                return self._timeout_event(task)
            return self._finished_event(task)

        last_task: list[Any] = []  # the last reading logged: its full model only if it times out

        def on_progress(task: Any) -> None:
            last_task[:] = [task]
            self.log.info("Midjourney task %s: %s %s", self.mj_task_id,
                          task.raw_status or task.status.value, task.progress)

        # Coalesced: every trigger of this connection on this triggerer shares one poller, one
        # list-by-condition call per interval for all of them. Per task: one fetch per interval.
        # Either way transient errors are retried on the next tick (after the hook's own
        # backoff) and errors retrying cannot fix are raised here.
        task = await wait_for_terminal(
            hook, self.mj_task_id, poll_interval=self.poll_interval, deadline=deadline, on_progress=on_progress,
            coalesce=self.coalesce, visible_by=self.visible_by, progress_every=self.progress_log_interval,
            stop_on_modal=self.modal_ends_wait,
        )
        if task is None:
            return self._timeout_event(as_task(last_task[0]) if last_task else None)
        return self._finished_event(task)

    def _finished_event(self, task: MidjourneyTask) -> TriggerEvent:
        if self.modal_ends_wait and task.status is TaskStatus.MODAL:
            event = self._event(EVENT_MODAL, f"Midjourney task {self.mj_task_id} waits for modal input", task)
            event.payload["deadline"] = self.deadline  # the operator waits again, to the same deadline
            return event
        # The job ended, so a slot of the account is free: the first submit of this connection
        # waiting for room on this triggerer goes (a wait that stopped at MODAL frees none).
        room.job_finished(self.midjourney_conn_id, self.mj_task_id)
        if task_outcome(task) is TaskOutcome.SUCCEEDED:
            return self._event(EVENT_SUCCESS, f"Midjourney task {self.mj_task_id} succeeded", task)
        return self._event(EVENT_FAILED, str(task_failed_error(task, self.prompt)), task)

    def _timeout_event(self, task: MidjourneyTask | None) -> TriggerEvent:
        where = ""
        if task is not None:
            seen = f"{task.raw_status or task.status.value} {task.progress}".strip()
            where = f" (last seen: {seen})"
        message = (
            f"Midjourney task {self.mj_task_id} did not finish before its deadline{where}. "
            "The job may still be running: a retry re-attaches to it; raise `timeout` if jobs "
            "legitimately take longer."
        )
        return self._event(EVENT_TIMEOUT, message, task)
