"""Coalesced polling: every trigger in a triggerer that waits on the same connection shares one poller.

A triggerer may hold thousands of deferred Midjourney tasks. Polling each with its own
``/task/{id}/fetch`` every few seconds burns the account's rate limit and the triggerer's CPU.
Instead, each (connection, event loop, poll interval) gets one :class:`TaskPoller` that asks for
all of its subscribers' ids in a single ``POST /mj/task/list-by-condition`` per interval and
hands every subscriber its own task.

* A subscriber that leaves (its task finished, its trigger was cancelled or the triggerer is
  restarting) is removed from the next batch; when none are left the poller stops and forgets
  itself.
* Ids the batch call did not return (the protocol lets servers omit unknown ids; some relays lag)
  are fetched one by one, so a task is never silently lost.
* The batch call is an optimisation; ``fetch`` is the primary route. When ``list-by-condition``
  fails in any way but a refused key (HTTP 200 with an error envelope, a reply that is not a
  list, 5xx, a timeout...), the poller reads its tasks one by one with ``fetch`` and tries the
  batch again after :data:`BATCH_RETRY_SECONDS`; a server without the route (404/405/501) is
  polled task by task for good. The batch call is made once, without the hook's retries, so a
  failing batch route costs one request per attempt, not a stall. No waiting task fails or stalls
  because of the batch route.
* Transient errors (429, 5xx, connection) are retried on the next tick; the subscribers' own
  deadlines bound the wait. Errors that retrying cannot fix (bad key...) are handed to every
  subscriber.

* A subscriber is woken only for a reading its waiter uses: a new status, or a progress line that
  is due (see :class:`ProgressThrottle`). A task that changed only in ways nobody reads (a
  preview's cache-busting query string, progress between two log lines) wakes nobody, so a
  thousand long jobs on a chatty relay cost one batch call and a parse per interval, not a
  thousand coroutine wake-ups and log lines.

:func:`poll_task` is the per-task alternative (``MidjourneyTaskTrigger(coalesce=False)``): one
``fetch`` per task per interval on the same shared session. :func:`wait_for_terminal` runs either
until :func:`~airflow_provider_mj.models.task_outcome` says the task is done. Figures for both:
``benchmarks/README.md``.

Everything runs on the triggerer's event loop: no threads, no sync I/O.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyError,
    MidjourneyNotFoundError,
    MidjourneyRateLimitError,
)
from airflow_provider_mj.hooks.replies import TaskReading
from airflow_provider_mj.inputs import validate_mj_task_id
from airflow_provider_mj.visibility import TaskSighting

if TYPE_CHECKING:
    from airflow_provider_mj.models import MidjourneyTask

log = logging.getLogger(__name__)

#: Ids per list-by-condition call; servers handle large bodies, but one huge call is one big stall.
MAX_IDS_PER_CALL = 500
#: After a failed batch call, seconds of per-task fetches before the poller tries the batch again
#: (at least ten poll intervals).
BATCH_RETRY_SECONDS = 300.0
#: By default a wait logs progress at most once per this many poll intervals (status changes always).
PROGRESS_LOG_POLLS = 4


class ProgressThrottle:
    """Which readings of one task its waiter shows: the one rule for progress lines and wake-ups.

    A reading is wanted when it is the first, when its status differs from the last one shown
    (so every status change, the terminal one included, is always shown), or when only its
    progress moved and at least ``every`` seconds passed since the last line. Anything else
    (the same status and progress, a new preview URL, progress moving between two lines) is
    not wanted: the coalesced poller does not even wake the waiter for it.

    :param every: seconds between two progress lines of the same status; 0 shows every change.
    """

    __slots__ = ("every", "_status", "_progress", "_due")

    def __init__(self, every: float) -> None:
        self.every = float(every)
        self._status: str | None = None
        self._progress: str | None = None
        self._due = 0.0

    def wants(self, raw_status: str, progress: str, now: float) -> bool:
        """Whether a reading with this status and progress, seen at ``now`` (loop time), is shown."""
        if raw_status != self._status:
            return True
        return progress != self._progress and now >= self._due

    def shown(self, raw_status: str, progress: str, now: float) -> None:
        """Record that a reading was shown at ``now``."""
        self._status, self._progress = raw_status, progress
        self._due = now + self.every


class _Subscription:
    """One waiting trigger: the latest reading (or error) it should see, and what it wants to see."""

    __slots__ = ("mj_task_id", "_event", "_value", "_throttle")

    def __init__(self, mj_task_id: str, throttle: ProgressThrottle) -> None:
        self.mj_task_id = mj_task_id
        self._event = asyncio.Event()
        self._value: TaskReading | BaseException | None = None
        self._throttle = throttle

    def deliver(self, value: TaskReading | BaseException, now: float) -> None:
        # Wake the waiter only for what it will use: most polls of a long job bring nothing it
        # shows, and a thousand wake-ups (and task models) per interval for nothing is the
        # triggerer's CPU.
        if not isinstance(value, BaseException) and not self._throttle.wants(value.raw_status, value.progress, now):
            return
        self._value = value
        self._event.set()

    async def next(self) -> TaskReading:
        await self._event.wait()
        self._event.clear()
        value, self._value = self._value, None  # hold nothing while waiting for the next one
        if isinstance(value, BaseException):
            raise value
        assert value is not None
        return value


class TaskPoller:
    """Polls every subscribed task id of one connection in one batch call per interval."""

    _registry: dict[tuple[str, str, int, float], TaskPoller] = {}

    def __init__(self, hook: Any, poll_interval: float) -> None:
        # The poller outlives any one trigger, so it polls through a hook of its own (same
        # connection; the hook shares one HTTP session per connection and loop) and closes it
        # when the last subscriber leaves.
        self.hook = hook.share_config()
        self.poll_interval = poll_interval
        self._subscribers: dict[str, set[_Subscription]] = {}
        self._runner: asyncio.Task | None = None
        #: loop time from which the batch call may be tried again (0: now; inf: never, no such route).
        self._batch_after = 0.0
        self._key: tuple[str, str, int, float] | None = None
        #: Figures for tests and benchmarks.
        self.stats = {"batch_calls": 0, "single_fetches": 0, "ticks": 0, "errors": 0, "batch_failures": 0}

    # -- registry --------------------------------------------------------------------------------

    @classmethod
    def for_hook(cls, hook: Any, poll_interval: float) -> TaskPoller:
        """The shared poller of ``hook``'s connection on the running loop (created on first use).

        Keyed by the connection's content, not only its id: a trigger that read a changed
        connection (a rotated key) gets a poller with the current key, never one created with
        the old. Call it after ``await hook.aget_config()`` (:func:`wait_for_terminal` does).
        """
        loop = asyncio.get_running_loop()
        key = (hook.midjourney_conn_id, hook.config.fingerprint, id(loop), float(poll_interval))
        poller = cls._registry.get(key)
        if poller is None:
            poller = cls(hook, float(poll_interval))
            poller._key = key
            cls._registry[key] = poller
        return poller

    @classmethod
    def active_pollers(cls) -> list[TaskPoller]:
        return list(cls._registry.values())

    # -- subscription ----------------------------------------------------------------------------

    @property
    def subscribed_ids(self) -> set[str]:
        return set(self._subscribers)

    async def watch(self, mj_task_id: str, throttle: ProgressThrottle) -> AsyncIterator[TaskReading]:
        """Yield the readings of the task that ``throttle`` :meth:`~ProgressThrottle.wants`, until
        the caller stops iterating (the caller records what it shows with
        :meth:`~ProgressThrottle.shown`; ``ProgressThrottle(0)`` wants every new status or
        progress). Each is a :class:`~airflow_provider_mj.hooks.replies.TaskReading` (``id``,
        ``raw_status``, ``status``, ``progress``); its ``task()`` builds the full model when one
        is needed. Errors are always yielded (raised). Leaving the loop (``break``, ``return``,
        cancellation) unsubscribes at once.
        """
        # Validated once here, so the poller's batch calls need not check every id every interval.
        mj_task_id = validate_mj_task_id(mj_task_id)
        sub = _Subscription(mj_task_id, throttle)
        self._subscribers.setdefault(mj_task_id, set()).add(sub)
        self._ensure_running()
        try:
            while True:
                yield await sub.next()
        finally:
            self._unsubscribe(sub)

    def _unsubscribe(self, sub: _Subscription) -> None:
        subs = self._subscribers.get(sub.mj_task_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.mj_task_id]
        if not self._subscribers:
            # Nobody waits any more: stop now rather than after the next sleep, so a finished
            # batch holds no memory, session or timer.
            if self._key is not None and TaskPoller._registry.get(self._key) is self:
                del TaskPoller._registry[self._key]
            if self._runner is not None and not self._runner.done():
                self._runner.cancel()

    def _ensure_running(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="mj-task-poller")

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        try:
            while self._subscribers:
                await self._tick()
                next_tick += self.poll_interval
                now = loop.time()
                if next_tick < now:  # a slow tick: do not try to catch up with a burst
                    next_tick = now + self.poll_interval
                await asyncio.sleep(next_tick - now)
        finally:
            if self._key is not None and TaskPoller._registry.get(self._key) is self:
                if not self._subscribers:
                    del TaskPoller._registry[self._key]
                else:  # cancelled while others still wait: a new runner starts on next subscribe
                    self._runner = None
            if not self._subscribers:
                try:
                    await self.hook.aclose()
                except Exception:  # closing must never mask why the loop ended
                    log.debug("Closing the poller's HTTP session failed", exc_info=True)

    async def _tick(self) -> None:
        self.stats["ticks"] += 1
        ids = list(self._subscribers)
        found: dict[str, TaskReading] = {}
        if asyncio.get_running_loop().time() >= self._batch_after:
            for start in range(0, len(ids), MAX_IDS_PER_CALL):
                chunk = ids[start : start + MAX_IDS_PER_CALL]
                try:
                    readings = await self.hook.alist_task_readings(chunk, retry=False)
                    self.stats["batch_calls"] += 1
                except MidjourneyAuthError as err:  # a refused key fails every route: say so, once
                    self._fail_or_wait(chunk, err)
                    return
                except Exception as err:  # noqa: BLE001 - whatever the batch did, fetch still works
                    self._batch_failed(err)
                    break
                for reading in readings:
                    found[reading.id] = reading
        missing = [i for i in ids if i not in found]
        for mj_task_id in missing:
            if mj_task_id not in self._subscribers:
                continue
            try:
                found[mj_task_id] = TaskReading.of_task(await self.hook.afetch_task(mj_task_id))
                self.stats["single_fetches"] += 1
            except MidjourneyRateLimitError as err:
                self._fail_or_wait([mj_task_id], err)
                break  # the server asked for fewer requests: the other ids wait for the next tick
            except MidjourneyError as err:
                self._fail_or_wait([mj_task_id], err)
        now = asyncio.get_running_loop().time()
        for mj_task_id, reading in found.items():
            for sub in list(self._subscribers.get(mj_task_id, ())):
                sub.deliver(reading, now)

    def _batch_failed(self, err: BaseException) -> None:
        self.stats["batch_failures"] += 1
        reason = str(err) if isinstance(err, MidjourneyError) else f"{type(err).__name__}: {err}"
        if isinstance(err, MidjourneyError) and _means_unsupported(err):
            self._batch_after = math.inf
            log.info("list-by-condition is not supported by this server (%s); polling task by task.", reason)
            return
        wait = max(BATCH_RETRY_SECONDS, 10 * self.poll_interval)
        self._batch_after = asyncio.get_running_loop().time() + wait
        log.warning("list-by-condition failed (%s); reading %d task(s) one by one and trying the batch again "
                    "in %.0f s.", reason, len(self._subscribers), wait)

    def _fail_or_wait(self, ids: list[str], err: MidjourneyError) -> None:
        self.stats["errors"] += 1
        if err.retryable:
            log.warning("Polling %d Midjourney task(s) failed, retrying next interval: %s", len(ids), err)
            return
        now = asyncio.get_running_loop().time()
        for mj_task_id in ids:
            for sub in list(self._subscribers.get(mj_task_id, ())):
                sub.deliver(err, now)


def _means_unsupported(err: MidjourneyError) -> bool:
    """A 404/405/501 to list-by-condition means the server has no such route."""
    return err.http_status in (404, 405, 501)


async def poll_task(hook: Any, mj_task_id: str, poll_interval: float) -> AsyncIterator[MidjourneyTask]:
    """Per-task polling: read one task with ``GET /mj/task/{id}/fetch`` every ``poll_interval``.

    The alternative to :class:`TaskPoller` (``coalesce=False``): one request per task per
    interval, on the hook's shared HTTP session (one per connection and loop; the connection is
    read once per hook, never per poll). Polls keep to a fixed schedule (start + k * interval)
    rather than sleeping an interval after each reply, so slow replies do not make them drift.
    Transient errors (after the hook's own retries) are retried on the next tick; errors that
    retrying cannot fix are raised.
    """
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    while True:
        try:
            task = await hook.afetch_task(mj_task_id)
        except MidjourneyError as err:
            if not err.retryable:
                raise
            log.warning("Polling Midjourney task %s failed, retrying next interval: %s", mj_task_id, err)
        else:
            yield task
        next_tick += poll_interval
        now = loop.time()
        if next_tick < now:  # a slow poll: do not try to catch up with a burst
            next_tick = now + poll_interval
        await asyncio.sleep(next_tick - now)


async def wait_for_terminal(
    hook: Any, mj_task_id: str, *, poll_interval: float, deadline: float | None, on_progress=None,
    coalesce: bool = True, visible_by: float | None = None, progress_every: float | None = None,
    stop_on_modal: bool = False,
) -> MidjourneyTask | None:
    """Wait until the task is terminal; None when the deadline passes first.

    ``coalesce=True`` (the default) waits on the connection's shared :class:`TaskPoller` (one
    ``list-by-condition`` call per interval for every waiting task); ``coalesce=False`` polls this
    task alone with :func:`poll_task`. Either way :func:`~airflow_provider_mj.models.task_outcome`
    decides when the task is done.

    ``deadline`` is epoch seconds. ``on_progress(reading)`` is called for the readings worth a log
    line (``IN_PROGRESS 45%``; a reading has ``raw_status``, ``status`` and ``progress``, and
    :func:`as_task` makes the full model of it): the first, every status change (the final one included), and a
    progress change at most every ``progress_every`` seconds (default :data:`PROGRESS_LOG_POLLS`
    poll intervals; 0: every change); see :class:`ProgressThrottle`. Until ``visible_by`` (epoch
    seconds), a "no such task" answer means the job is not visible yet (relays can lag right
    after a submit) and the wait goes on; after it, or when None, it is raised. With
    ``stop_on_modal`` a task read in status MODAL is returned too (it would wait for input forever).
    """
    from airflow_provider_mj.models import TaskOutcome, TaskStatus, task_outcome

    loop = asyncio.get_running_loop()
    # One timer for the whole wait (not one asyncio.wait_for task per poll): a waiting trigger
    # costs a suspended coroutine and nothing else between two polls.
    when = None if deadline is None else loop.time() + (deadline - time.time())
    if when is not None and when <= loop.time():
        return None
    if progress_every is None:
        progress_every = PROGRESS_LOG_POLLS * float(poll_interval)
    throttle = ProgressThrottle(progress_every)
    sighting = TaskSighting(mj_task_id, visible_by)
    try:
        async with asyncio.timeout_at(when):
            # The current connection picks (or starts) the poller; a coalesced wait reads it
            # together with the waits that start with it (see _read_connection).
            reader = await _read_connection(hook) if coalesce else hook
            if not coalesce:
                await hook.aget_config()
            while True:
                if coalesce:
                    updates = TaskPoller.for_hook(reader, poll_interval).watch(mj_task_id, throttle)
                else:
                    updates = poll_task(hook, mj_task_id, float(poll_interval))
                try:
                    async for task in updates:
                        sighting.seen(task)
                        now = loop.time()
                        finished = task_outcome(task) is not TaskOutcome.RUNNING or (
                            stop_on_modal and task.status is TaskStatus.MODAL)
                        if finished or throttle.wants(task.raw_status, task.progress, now):
                            throttle.shown(task.raw_status, task.progress, now)
                            if on_progress is not None:
                                on_progress(task)
                        if finished:  # the final line is always shown, whatever the throttle says
                            return as_task(task)
                except MidjourneyNotFoundError as err:
                    log.info("Midjourney task %s %s.", mj_task_id, sighting.missing(err))  # or raises
                    if sighting.misses:
                        # A fresh throttle: the next reading is delivered even if it repeats the
                        # last one shown, so a task that is back resets the count of misses.
                        throttle = ProgressThrottle(progress_every)
                    await asyncio.sleep(poll_interval)
                finally:
                    await updates.aclose()
    except TimeoutError:
        return None


#: Connection reads under way, per (event loop, connection id).
_READS: dict[tuple[int, str], asyncio.Future] = {}


async def _read_connection(hook: Any) -> Any:
    """A hook that has just read ``hook``'s connection: ``hook`` itself, or the hook of a read of
    the same connection already under way on this loop when this wait started.

    A triggerer that takes on a thousand Midjourney triggers at once would otherwise read the
    same connection a thousand times through Airflow's secrets backends (most of what starting
    a trigger costs). A wait that starts after a read has finished reads again, so a rotated key
    reaches every trigger that starts after the change.
    """
    key = (id(asyncio.get_running_loop()), hook.midjourney_conn_id)
    under_way = _READS.get(key)
    if under_way is not None:
        return await asyncio.shield(under_way)

    async def read() -> Any:
        await hook.aget_config()
        return hook

    future = asyncio.ensure_future(read())
    _READS[key] = future
    try:
        return await asyncio.shield(future)
    finally:
        if future.done() and _READS.get(key) is future:
            del _READS[key]
        elif not future.done():  # this wait was cancelled; the read goes on for the others
            future.add_done_callback(lambda f: _READS.pop(key, None) if _READS.get(key) is f else None)


def as_task(reading: TaskReading | MidjourneyTask) -> MidjourneyTask:
    """The full task model of what a wait saw (a poller's reading, or a task a fetch returned)."""
    return reading.task() if isinstance(reading, TaskReading) else reading
