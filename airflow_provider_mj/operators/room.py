"""A refused submit is waited out, not failed: the submit operators' wait for room on the account.

When the account is full the server refuses a submit (queue full, HTTP 429, 503:
:func:`~airflow_provider_mj.hooks.retries.is_refusal`). The job was not accepted, so the
operator waits and submits again, whatever ``max_retries`` says, until the job is accepted or
the operator's ``timeout`` (the job's deadline, fixed at the first try) runs out; then it fails
with :class:`~airflow_provider_mj.exceptions.MidjourneyTimeoutError`. An ambiguous failure is
never a refusal: it still raises ``MidjourneySubmitUncertainError`` and nothing is sent twice.

* Deferrable: the wait runs on the triggerer (:class:`~airflow_provider_mj.triggers.room.MidjourneyRoomTrigger`),
  in arrival order, one waiter per freed slot (:mod:`airflow_provider_mj.room`); the worker slot
  is free meanwhile. The task resumes in :meth:`RoomWaitMixin.execute_after_room` and submits again.
* Blocking: the worker sleeps between tries, with capped exponential backoff and jitter
  (the connection's ``retry_min_wait`` .. ``retry_max_wait``; a ``Retry-After`` is honoured),
  bounded by the deadline.

Every refusal is logged plainly: ``account queue full: waiting for room, attempt 4, 38 s so far``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_mj.exceptions import MidjourneyError
from airflow_provider_mj.room import RoomWait

if TYPE_CHECKING:
    from airflow.sdk import Context

#: How the blocking wait sleeps (tests record it to prove a deferrable task never sleeps here).
sleep = time.sleep


def order_key(context: Context) -> str:
    """Ties between waiters that arrived at the same moment: dag, run, task, zero-padded map index."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    map_index = -1 if map_index is None else int(map_index)
    return f"{ti.dag_id}|{ti.run_id}|{ti.task_id}|{map_index + 1:08d}"


class RoomWaitMixin:
    """Gives a submit operator its wait for room (see the module doc).

    The operator provides ``_begin(context)`` (recall or submit: ``(done, value)``),
    ``_prepare(context)``, ``_wait(context, mj_task_id, deadline)`` and the usual
    ``hook``, ``log``, ``deferrable``, ``endpoint``, ``midjourney_conn_id``.
    """

    def begin_when_room(self, context: Context, deadline: float, wait: RoomWait | None = None) -> tuple[bool, Any]:
        """``_begin`` until the account takes the job: wait out refusals until ``deadline``."""
        from airflow_provider_mj.hooks.retries import is_refusal  # the hook's modules load only when a task runs
        from airflow_provider_mj.triggers.room import MidjourneyRoomTrigger

        while True:
            try:
                with self.hook.refusals_raised():
                    return self._begin(context)
            except MidjourneyError as err:
                if not is_refusal(err):
                    raise
                now = time.time()
                if wait is None:
                    wait = RoomWait.first(err, order_key=order_key(context), now=now, deadline=deadline)
                else:
                    wait.refused_again(err, now)
                if now >= deadline:
                    raise wait.timeout_error(self.endpoint, self.prompt_for_messages(), now) from None
                config = self.hook.config
                delay = wait.backoff(config.retry_min_wait, config.retry_max_wait, getattr(err, "retry_after", None))
                wait.probe_at = now + delay
                if self.deferrable:
                    self.log.info("%s; deferring until a job of %r finishes or for at most %.1f s.",
                                  wait.message(now), self.midjourney_conn_id, delay)
                    self.defer(
                        trigger=MidjourneyRoomTrigger(midjourney_conn_id=self.midjourney_conn_id, wait=wait.to_dict()),
                        method_name="execute_after_room",
                        timeout=self.deferral_timeout(context),
                    )
                self.log.info("%s; next try in %.1f s.", wait.message(now), delay)
                sleep(delay)

    def execute_after_room(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after :class:`~airflow_provider_mj.triggers.room.MidjourneyRoomTrigger` fired: submit again."""
        if not isinstance(event, dict) or not isinstance(event.get("wait"), dict):
            raise MidjourneyError(f"The Midjourney room trigger sent no usable event: {event!r}")
        wait = RoomWait.from_dict(event["wait"])
        now = time.time()
        if event.get("status") == "timeout":
            raise wait.timeout_error(self.endpoint, self.prompt_for_messages(), now)
        if event.get("status") != "room":
            raise MidjourneyError(str(event.get("message") or f"Waiting for room failed: {event!r}"))
        self.log.info("%s: submitting again (attempt %d).", event.get("message") or "Room on the account",
                      wait.attempt + 1)
        self._prepare(context)
        done, value = self.begin_when_room(context, wait.deadline, wait)
        if done:
            return value
        return self._wait(context, value, wait.deadline)
