"""The trigger that waits on the triggerer for room on a full Midjourney account.

A submit operator whose submit was refused (queue full, 429, 503) defers on
:class:`MidjourneyRoomTrigger` instead of sleeping in its worker slot. The trigger takes its place
in the line of its connection (:class:`~airflow_provider_mj.room.RoomBoard`) and fires one event
when it is its turn, but never sooner than the settle time after the refusal that deferred it
(:mod:`airflow_provider_mj.settle`)::

    {"status": "room" | "timeout" | "error",
     "how": "room" | "probe" | "timeout" | None,
     "wait": {...the RoomWait, to carry on with...},
     "message": "human readable summary",
     "error_type": "MidjourneyError" | None}

The operator then resumes in ``execute_after_room`` and submits again; refused again, it defers
again with the same arrival time, so it keeps its place in line.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_mj.common import DEFAULT_CONN_ID
from airflow_provider_mj.room import RELEASED_PROBE, RELEASED_TIMEOUT, RoomWait, board_for
from airflow_provider_mj.settle import settle

EVENT_ROOM = "room"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"


class MidjourneyRoomTrigger(BaseTrigger):
    """Wait on the triggerer until the account has room for a refused submit; fire one event.

    Released, in arrival order, when a job of the same connection that this triggerer watches
    finishes (one waiter per finished job), or, for the first waiter in line only, once its
    backoff or the server's ``Retry-After`` passed (one probe at a time). Gives up at the
    deadline with a ``timeout`` event. Whatever the event, it goes out no sooner than
    :data:`~airflow_provider_mj.settle.SETTLE_SECONDS` after the refusal (``wait["refused_at"]``,
    the moment the task deferred); the place in line and the room it claims are kept meanwhile.

    :param midjourney_conn_id: the Airflow connection of the Midjourney API.
    :param wait: the :class:`~airflow_provider_mj.room.RoomWait` as a dict (JSON primitives).
    """

    __slots__ = ("midjourney_conn_id", "wait")

    def __init__(self, midjourney_conn_id: str = DEFAULT_CONN_ID, wait: dict[str, Any] | None = None) -> None:
        super().__init__()
        if not isinstance(wait, dict):
            raise ValueError("MidjourneyRoomTrigger needs the wait state (a RoomWait dict)")
        self.midjourney_conn_id = midjourney_conn_id
        self.wait = RoomWait.from_dict(wait).to_dict()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"midjourney_conn_id": self.midjourney_conn_id, "wait": dict(self.wait)},
        )

    def _event(self, status: str, message: str, how: str | None = None,
               error: BaseException | None = None) -> TriggerEvent:
        return TriggerEvent({"status": status, "how": how, "wait": dict(self.wait), "message": message,
                             "error_type": type(error).__name__ if error is not None else None})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        wait = RoomWait.from_dict(self.wait)
        event = await self._wait_in_line(wait)
        # The refusal is when the task deferred: the event waits out the settle time, the place in
        # line does not (the room, once claimed, is this task's).
        await settle(wait.refused_at, self.log)
        yield event

    async def _wait_in_line(self, wait: RoomWait) -> TriggerEvent:
        try:
            board = board_for(self.midjourney_conn_id)
            self.log.info("Waiting in line for room on the account of %r (%d ahead of this task); %s.",
                          self.midjourney_conn_id, board.waiting, wait.message(time.time()))
            how = await board.wait(wait)
        except Exception as err:  # never die silently: the task must hear about it
            self.log.exception("Waiting for room on the Midjourney account failed")
            return self._event(EVENT_ERROR, f"Waiting for room on the Midjourney account failed: {err}", error=err)
        waited = wait.waited(time.time())
        if how == RELEASED_TIMEOUT:
            return self._event(EVENT_TIMEOUT, f"No room on the account before the deadline ({waited:.0f} s)", how)
        why = "its backoff passed: probing the account" if how == RELEASED_PROBE else "a job of this connection finished"
        self.log.info("Room for this task after %.0f s (%s).", waited, why)
        return self._event(EVENT_ROOM, f"Room on the account after {waited:.0f} s ({why})", how)
