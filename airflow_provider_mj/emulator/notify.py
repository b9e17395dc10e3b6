"""Notify hooks: POST the full task JSON to a job's ``notifyHook`` on every status or progress change.

As PROTOCOL.md describes the servers' callbacks: no retries, no signature; polling stays the
reliable path. Task states are computed lazily from the clock, so a small loop on the server's
event loop looks at the watched jobs (only those submitted with a ``notifyHook``) a few times a
second, and stops by itself when none is left.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from airflow_provider_mj.models import TaskOutcome

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

#: Seconds between two looks at the watched jobs.
CHECK_INTERVAL = 0.1
#: A callback that takes longer than this is abandoned (and counted as failed).
POST_TIMEOUT = 5.0
#: Jobs watched at most (oldest dropped first): client-chosen URLs must not grow memory unbounded.
MAX_WATCHED = 10_000


class Notifier:
    """Watches jobs that carry a ``notifyHook`` and calls it when their status or progress changes."""

    def __init__(self, engine: Engine, relay: Callable[[], bool]) -> None:
        """:param engine: the jobs. :param relay: whether the emulator speaks the relay dialect now
        (it can change at run time), which shapes the task JSON sent."""
        self.engine = engine
        self.relay = relay
        #: task id -> (base URL for imageUrl, last (status, progress) sent)
        self.watched: dict[str, tuple[str, tuple[str, str] | None]] = {}
        self.sent = 0
        self.failed = 0
        self._loop_task: asyncio.Task | None = None
        self._posts: set[asyncio.Task] = set()

    def watch(self, task_id: str, base_url: str) -> None:
        """Start calling the job's notifyHook (call from the server's event loop)."""
        if len(self.watched) >= MAX_WATCHED:
            self.watched.pop(next(iter(self.watched)))
        self.watched[task_id] = (base_url, None)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="mj-emulator-notify")

    def reset(self) -> None:
        self.watched.clear()
        self.sent = self.failed = 0

    async def _run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT)) as session:
            while self.watched:
                self._check(session)
                await asyncio.sleep(CHECK_INTERVAL)
            if self._posts:
                await asyncio.gather(*self._posts, return_exceptions=True)

    def _check(self, session: Any) -> None:
        engine = self.engine
        for task_id, (base_url, last) in list(self.watched.items()):
            job = engine.get(task_id)
            if job is None or not job.common.notify_hook:
                self.watched.pop(task_id, None)
                continue
            view = engine.read_view(job)
            seen = (view.status, view.progress)
            if seen == last:
                continue
            if view.outcome is not TaskOutcome.RUNNING:
                self.watched.pop(task_id, None)
            else:
                self.watched[task_id] = (base_url, seen)
            body = engine.task_json(job, base_url, self.relay())
            post = asyncio.get_running_loop().create_task(self._post(session, job.common.notify_hook, body))
            self._posts.add(post)
            post.add_done_callback(self._posts.discard)

    async def _post(self, session: Any, url: str, body: bytes) -> None:
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as reply:
                await reply.read()
            self.sent += 1
        except Exception as err:  # no retries, like the real servers; the callback is best effort
            self.failed += 1
            log.debug("notifyHook %s failed: %s", url, err)
