"""Waiting for room on a full account: the wait's state, its log line, and the triggerer's queue of waiters.

A Midjourney account runs a few jobs at once and queues a few more; past that a submit is
*refused* (queue full, HTTP 429, 503: see :func:`~airflow_provider_mj.hooks.retries.is_refusal`).
A refusal means the job was not accepted, so the submit operators wait for room and submit again
instead of failing (:mod:`airflow_provider_mj.operators.room`). This module holds what that wait
is made of:

* :class:`RoomWait`: one task's wait (when it first arrived, how many refusals, until when), as
  JSON primitives, so it survives deferral and triggerer restarts with its place in line;
* :class:`RoomBoard`: the line of waiting submits of one connection on one triggerer event loop.
  Waiters leave in **arrival order**, one per freed slot: when a job of that connection that
  this triggerer watches finishes (:func:`job_finished`, called by
  :class:`~airflow_provider_mj.triggers.midjourney.MidjourneyTaskTrigger` when its job ends),
  the first waiter is released, and only it. When nothing
  finishes (the account is busy with jobs this triggerer does not watch), only the first waiter
  *probes* the account, after its backoff (or the server's ``Retry-After``), and never two probes
  at once. Thirty waiting submits therefore cost one submit per freed slot plus one probe at a
  time, not a herd of thirty when one slot frees: jitter alone would not give that.

Each triggerer keeps its own line (a second triggerer's waiters probe on their own); the order
key includes the arrival time, so a trigger moved to another triggerer keeps its place.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import weakref
from collections import Counter, OrderedDict, deque
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_mj.exceptions import (
    MidjourneyError,
    MidjourneyQueueFullError,
    MidjourneyRateLimitError,
    MidjourneyTimeoutError,
)

#: A released probe that does not come back refused within this many seconds is taken as
#: accepted: the next waiter may probe after it.
PROBE_GRACE_SECONDS = 20.0
#: A finished job that no waiter was there to take still counts as room for this long, for a
#: waiter refused before it finished (the refusal and the finish crossed on their way).
CREDIT_SECONDS = 60.0
#: The longest ``Retry-After`` honoured while waiting for room (seconds).
MAX_RETRY_AFTER = 300.0

#: How a :class:`RoomBoard` let a waiter go.
RELEASED_ROOM = "room"  # a job of the connection finished
RELEASED_PROBE = "probe"  # its backoff (or Retry-After) passed and no other probe was out
RELEASED_TIMEOUT = "timeout"  # its deadline passed


def refusal_reason(err: MidjourneyError) -> str:
    """A refusal in words, with the account's counts when the server gave them.

    ``"account queue full (3 queued)"``, ``"server saturated (HTTP 429)"``...
    """
    if isinstance(err, MidjourneyQueueFullError):
        reason = "account queue full"
    elif isinstance(err, MidjourneyRateLimitError):
        reason = "server saturated (HTTP 429)"
    else:
        reason = "no channel available" + (f" (HTTP {err.http_status})" if err.http_status else "")
    counts = []
    props = err.properties if isinstance(err.properties, dict) else {}
    for key, label in (("numberOfRunning", "running"), ("numberOfQueues", "queued")):
        value = props.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            counts.append(f"{value} {label}")
    return reason + (f" ({', '.join(counts)})" if counts else "")


@dataclass
class RoomWait:
    """One submit's wait for room: what the worker and the room trigger hand each other.

    :param order_key: breaks ties between waiters that arrived at the same time (the task
        instance's dag, run, task and map index).
    :param arrival: epoch seconds of the first refusal: the waiter's place in line, kept across
        every deferral.
    :param attempt: how many submits were refused so far.
    :param refused_at: epoch seconds of the latest refusal.
    :param probe_at: epoch seconds from which this waiter may probe the account on its own.
    :param deadline: epoch seconds after which the task gives up (the operator's ``timeout``).
    :param reason: the latest refusal in words (:func:`refusal_reason`).
    """

    order_key: str
    arrival: float
    attempt: int
    refused_at: float
    probe_at: float
    deadline: float
    reason: str

    @classmethod
    def first(cls, err: MidjourneyError, *, order_key: str, now: float, deadline: float) -> RoomWait:
        return cls(order_key=order_key, arrival=now, attempt=1, refused_at=now, probe_at=now, deadline=deadline,
                   reason=refusal_reason(err))

    def refused_again(self, err: MidjourneyError, now: float) -> None:
        self.attempt += 1
        self.refused_at = now
        self.reason = refusal_reason(err)

    def backoff(self, low: float, high: float, retry_after: float | None) -> float:
        """Seconds before the next try of its own: capped exponential with jitter, >= Retry-After."""
        from airflow_provider_mj.hooks.retries import jittered_backoff

        wait = jittered_backoff(self.attempt - 1, low, high)
        if retry_after is not None:
            wait = max(wait, min(float(retry_after), MAX_RETRY_AFTER))
        return max(0.0, min(wait, self.deadline - self.refused_at))

    @property
    def order(self) -> tuple[float, str]:
        return (self.arrival, self.order_key)

    def waited(self, now: float) -> float:
        return max(0.0, now - self.arrival)

    def message(self, now: float) -> str:
        """``"account queue full: waiting for room, attempt 4, 38 s so far"``."""
        return f"{self.reason}: waiting for room, attempt {self.attempt}, {self.waited(now):.0f} s so far"

    def timeout_error(self, what: str, prompt: str | None, now: float) -> MidjourneyTimeoutError:
        return MidjourneyTimeoutError(
            f"The account had no room for the {what} job before its deadline: {self.attempt} submit(s) refused "
            f"over {self.waited(now):.0f} s (last: {self.reason}). Nothing was accepted, so nothing is billed. "
            "Raise `timeout`, run fewer Midjourney jobs at once (an Airflow pool), or try later.",
            prompt=prompt,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoomWait:
        return cls(order_key=str(data["order_key"]), arrival=float(data["arrival"]), attempt=int(data["attempt"]),
                   refused_at=float(data["refused_at"]), probe_at=float(data["probe_at"]),
                   deadline=float(data["deadline"]), reason=str(data.get("reason") or "refused"))


class _Waiter:
    __slots__ = ("order", "probe_at", "future")

    def __init__(self, order: tuple[float, str], probe_at: float, future: asyncio.Future) -> None:
        self.order = order
        self.probe_at = probe_at
        self.future = future


class RoomBoard:
    """The line of submits of one connection waiting for room, on one event loop (see the module doc)."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._waiters: list[_Waiter] = []  # sorted by order: arrival, then order key
        self._unclaimed: deque[float] = deque(maxlen=256)  # epoch times of finishes nobody took
        self._seen: OrderedDict[str, None] = OrderedDict()  # finished ids already counted
        self._probe_out: tuple[tuple[float, str], float] | None = None  # (order, until epoch)
        self._timer: asyncio.TimerHandle | None = None
        #: Figures for tests and benchmarks: releases by kind, finishes seen.
        self.stats: Counter[str] = Counter()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def wait(self, wait: RoomWait) -> str:
        """Wait in line until there is room; :data:`RELEASED_ROOM`, :data:`RELEASED_PROBE` or
        :data:`RELEASED_TIMEOUT`."""
        if self._probe_out is not None and self._probe_out[0] == wait.order:
            self._probe_out = None  # the probe came back refused: the next probe may go
        if self._take_unclaimed(wait.refused_at):
            self.stats[RELEASED_ROOM] += 1
            return RELEASED_ROOM
        waiter = _Waiter(wait.order, wait.probe_at, asyncio.get_running_loop().create_future())
        bisect.insort(self._waiters, waiter, key=lambda w: w.order)
        self._arm()
        try:
            async with asyncio.timeout(max(0.0, wait.deadline - time.time())):
                return await waiter.future
        except TimeoutError:
            self.stats[RELEASED_TIMEOUT] += 1
            return RELEASED_TIMEOUT
        finally:
            if waiter in self._waiters:  # cancelled or timed out while in line
                self._waiters.remove(waiter)
                self._arm()

    def job_finished(self, mj_task_id: str) -> None:
        """A job of this connection ended: one slot is free, for the first waiter in line."""
        if mj_task_id in self._seen:
            return
        self._seen[mj_task_id] = None
        while len(self._seen) > 1024:
            self._seen.popitem(last=False)
        self.stats["finished"] += 1
        if self._waiters:
            self._release(self._waiters[0], RELEASED_ROOM)
        else:
            self._unclaimed.append(time.time())

    def _take_unclaimed(self, refused_at: float) -> bool:
        now = time.time()
        while self._unclaimed and now - self._unclaimed[0] > CREDIT_SECONDS:
            self._unclaimed.popleft()
        for i, finished_at in enumerate(self._unclaimed):
            if finished_at > refused_at:  # room that appeared after this waiter was refused
                del self._unclaimed[i]
                return True
        return False

    def _release(self, waiter: _Waiter, how: str) -> None:
        self._waiters.remove(waiter)
        if not waiter.future.done():
            waiter.future.set_result(how)
            self.stats[how] += 1
        self._arm()

    def _arm(self) -> None:
        """Set the one timer of the line: when its first waiter may probe."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiters:
            return
        at = self._waiters[0].probe_at
        if self._probe_out is not None:
            at = max(at, self._probe_out[1])
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - time.time()), self._probe)

    def _probe(self) -> None:
        self._timer = None
        if not self._waiters:
            return
        now = time.time()
        if self._probe_out is not None and self._probe_out[1] <= now:
            self._probe_out = None
        head = self._waiters[0]
        if head.probe_at > now or self._probe_out is not None:
            self._arm()
            return
        self._probe_out = (head.order, now + PROBE_GRACE_SECONDS)
        self._release(head, RELEASED_PROBE)


#: loop -> conn_id -> board. Weak on the loop, so a finished loop's boards go with it.
_BOARDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RoomBoard]] = weakref.WeakKeyDictionary()


def board_for(conn_id: str) -> RoomBoard:
    """The line of waiters of ``conn_id`` on the running event loop (created on first use)."""
    boards = _BOARDS.setdefault(asyncio.get_running_loop(), {})
    board = boards.get(conn_id)
    if board is None:
        board = boards[conn_id] = RoomBoard(conn_id)
    return board


def job_finished(conn_id: str, mj_task_id: str) -> None:
    """Tell the waiters of ``conn_id`` on this loop that one of its jobs ended (frees one slot)."""
    board_for(conn_id).job_finished(mj_task_id)
