"""Coalesced polling: many waiting triggers, one batch call per interval, each gets its own task."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from airflow_provider_mj.models import TaskStatus
from airflow_provider_mj.polling import TaskPoller, wait_for_terminal
from tests.helpers import connection_json, record_connection_reads


def _submit_many(hook: MidjourneyHook, count: int, word: str = "") -> list[str]:
    return [hook.imagine(f"a lighthouse number {i} {word}".strip()).mj_task_id for i in range(count)]


async def test_many_waiters_share_one_batch_call_per_interval(mj_connection):
    hook = MidjourneyHook()
    ids = _submit_many(hook, 12)
    before = mj_connection.counters()["requests"]
    results = await asyncio.gather(
        *(wait_for_terminal(hook, i, poll_interval=0.1, deadline=time.time() + 20) for i in ids)
    )
    after = mj_connection.counters()["requests"]

    assert [t.id for t in results] == ids
    assert all(t.status is TaskStatus.SUCCESS for t in results)
    batch_calls = _count(after, "list-by-condition") - _count(before, "list-by-condition")
    fetches = _count(after, "fetch") - _count(before, "fetch")
    assert fetches == 0
    # The jobs last ~0.3 s and the interval is 0.1 s: a handful of batch calls, not 12 per tick.
    assert 1 <= batch_calls <= 20
    assert TaskPoller.active_pollers() == []  # the poller forgot itself once nobody waited
    await hook.aclose()


async def test_each_waiter_gets_its_own_terminal_state(mj_connection):
    hook = MidjourneyHook()
    ok = _submit_many(hook, 3)
    failing = _submit_many(hook, 2, word="emulator-fail")
    results = await asyncio.gather(
        *(wait_for_terminal(hook, i, poll_interval=0.1, deadline=time.time() + 20) for i in ok + failing)
    )
    assert [t.status for t in results] == [TaskStatus.SUCCESS] * 3 + [TaskStatus.FAILURE] * 2
    assert [t.id for t in results] == ok + failing
    await hook.aclose()


async def test_a_waiter_that_leaves_is_dropped_from_the_batch(mj_connection):
    hook = MidjourneyHook()
    stay, leave = _submit_many(hook, 2)
    poller = TaskPoller.for_hook(hook, 0.1)
    leaver = asyncio.ensure_future(wait_for_terminal(hook, leave, poll_interval=0.1, deadline=None))
    stayer = asyncio.ensure_future(wait_for_terminal(hook, stay, poll_interval=0.1, deadline=None))
    await asyncio.sleep(0.05)
    assert poller.subscribed_ids == {stay, leave}
    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    assert poller.subscribed_ids == {stay}
    assert (await stayer).id == stay
    assert poller.subscribed_ids == set()
    await hook.aclose()


async def test_deadline_ends_the_wait_and_leaves_the_batch(mj_connection):
    hook = MidjourneyHook()
    mj_connection.configure(job_seconds=30)
    (slow,) = _submit_many(hook, 1)
    started = time.monotonic()
    assert await wait_for_terminal(hook, slow, poll_interval=0.1, deadline=time.time() + 0.5) is None
    assert time.monotonic() - started < 5
    assert TaskPoller.active_pollers() == []
    await hook.aclose()


async def test_progress_changes_are_reported_once_each(mj_connection):
    hook = MidjourneyHook()
    (mj_task_id,) = _submit_many(hook, 1)
    seen: list[tuple[str, str]] = []
    await wait_for_terminal(hook, mj_task_id, poll_interval=0.05, deadline=time.time() + 20,
                            on_progress=lambda t: seen.append((t.raw_status, t.progress)))
    assert seen[-1][0] == "SUCCESS"
    assert len(seen) == len(set(seen))  # no repeats of the same status/progress
    await hook.aclose()


# A server that lacks list-by-condition, or omits ids from it: the emulator always has the route,
# so these cases use a small real HTTP server on loopback that answers exactly that way.


class _OldServer:
    """Answers fetch from a dict; list-by-condition is 404 (``batch=False``) or omits every id."""

    def __init__(self, tasks: dict[str, dict], batch: bool) -> None:
        self.tasks = tasks
        self.batch = batch
        self.calls = {"list": 0, "fetch": 0}

    async def list_by_condition(self, request: web.Request) -> web.Response:
        self.calls["list"] += 1
        if not self.batch:
            return web.Response(status=404, text="Not Found")
        return web.json_response([])

    async def fetch(self, request: web.Request) -> web.Response:
        self.calls["fetch"] += 1
        task = self.tasks.get(request.match_info["id"])
        return web.Response(text=json.dumps(task), content_type="application/json")


async def _serve(app: web.Application, monkeypatch) -> web.AppRunner:
    """Serve ``app`` on a free loopback port and point ``midjourney_default`` at it."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(f"http://127.0.0.1:{port}"))
    return runner


@pytest.fixture
async def old_server(monkeypatch):
    servers = []

    async def start(tasks: dict[str, dict], batch: bool) -> _OldServer:
        handler = _OldServer(tasks, batch)
        app = web.Application()
        app.router.add_post("/mj/task/list-by-condition", handler.list_by_condition)
        app.router.add_get("/mj/task/{id}/fetch", handler.fetch)
        servers.append(await _serve(app, monkeypatch))
        return handler

    yield start
    for runner in servers:
        await runner.cleanup()


def _done(mj_task_id: str) -> dict:
    return {"id": mj_task_id, "status": "SUCCESS", "progress": "100%", "imageUrl": "http://127.0.0.1/x.png"}


async def test_server_without_list_by_condition_falls_back_to_fetch(old_server):
    server = await old_server({"1000000000000001": _done("1000000000000001"),
                               "1000000000000002": _done("1000000000000002")}, batch=False)
    hook = MidjourneyHook()
    results = await asyncio.gather(
        *(wait_for_terminal(hook, i, poll_interval=0.05, deadline=time.time() + 10)
          for i in ("1000000000000001", "1000000000000002"))
    )
    assert [t.id for t in results] == ["1000000000000001", "1000000000000002"]
    assert server.calls["list"] == 1  # asked once, then never again
    assert server.calls["fetch"] == 2
    await hook.aclose()


async def test_ids_missing_from_the_batch_are_fetched_one_by_one(old_server):
    server = await old_server({"1000000000000003": _done("1000000000000003")}, batch=True)
    hook = MidjourneyHook()
    task = await wait_for_terminal(hook, "1000000000000003", poll_interval=0.05, deadline=time.time() + 10)
    assert task.status is TaskStatus.SUCCESS
    assert server.calls == {"list": 1, "fetch": 1}
    await hook.aclose()


def _count(requests: dict, fragment: str) -> int:
    return sum(n for route, n in requests.items() if fragment in route)


async def test_a_waiter_is_woken_only_when_its_task_changes(mj_connection):
    from airflow_provider_mj.polling import ProgressThrottle

    hook = MidjourneyHook()
    mj_connection.configure(job_seconds=1.0)
    (mj_task_id,) = _submit_many(hook, 1)
    poller = TaskPoller.for_hook(hook, 0.05)
    throttle = ProgressThrottle(every=0)  # every change wanted
    seen: list[tuple[str, str]] = []
    async for task in poller.watch(mj_task_id, throttle):
        seen.append((task.raw_status, task.progress))
        throttle.shown(task.raw_status, task.progress, asyncio.get_running_loop().time())
        if task.status is TaskStatus.SUCCESS:
            break

    assert poller.stats["ticks"] > len(seen)  # ~20 reads of the task...
    assert len(seen) == len(set(seen))  # ...but one wake-up per change
    await hook.aclose()


def test_the_throttle_shows_status_changes_always_and_progress_at_most_every_n_seconds():
    from airflow_provider_mj.polling import ProgressThrottle

    throttle = ProgressThrottle(every=10)
    assert throttle.wants("SUBMITTED", "0%", now=0)  # the first reading
    throttle.shown("SUBMITTED", "0%", now=0)
    assert not throttle.wants("SUBMITTED", "0%", now=50)  # nothing new
    assert throttle.wants("IN_PROGRESS", "1%", now=1)  # a status change, however soon
    throttle.shown("IN_PROGRESS", "1%", now=1)
    assert not throttle.wants("IN_PROGRESS", "2%", now=5)  # progress between two lines
    assert throttle.wants("IN_PROGRESS", "3%", now=11)  # ...and once the interval has passed
    assert throttle.wants("SUCCESS", "100%", now=2)  # the terminal line
    assert ProgressThrottle(every=0).wants("X", "1%", now=0)


class _PreviewServer:
    """A relay whose task stays IN_PROGRESS 50% but whose preview URL changes on every read, then
    finishes after ``reads_before_done`` reads (the emulator's chatty mode also moves progress)."""

    def __init__(self, mj_task_id: str, reads_before_done: int) -> None:
        self.mj_task_id = mj_task_id
        self.reads = 0
        self.reads_before_done = reads_before_done

    async def list_by_condition(self, request: web.Request) -> web.Response:
        self.reads += 1
        task = {"id": self.mj_task_id, "status": "IN_PROGRESS", "progress": "50%",
                "imageUrl": f"http://127.0.0.1/mj/image/{self.mj_task_id}?rand={self.reads}"}
        if self.reads > self.reads_before_done:
            task.update(status="SUCCESS", progress="100%", imageUrl="http://127.0.0.1/x.png")
        return web.json_response([task])


async def test_a_task_whose_preview_url_alone_changes_does_not_wake_its_waiter(monkeypatch):
    from airflow_provider_mj.polling import ProgressThrottle

    server = _PreviewServer("1000000000000009", reads_before_done=15)
    app = web.Application()
    app.router.add_post("/mj/task/list-by-condition", server.list_by_condition)
    runner = await _serve(app, monkeypatch)
    try:
        hook = MidjourneyHook()
        poller = TaskPoller.for_hook(hook, 0.01)
        throttle = ProgressThrottle(every=0)  # even with every progress change wanted
        woken = []
        async for task in poller.watch(server.mj_task_id, throttle):
            woken.append((task.raw_status, task.progress, task.task().image_url))
            throttle.shown(task.raw_status, task.progress, asyncio.get_running_loop().time())
            if task.status is TaskStatus.SUCCESS:
                break
        assert server.reads == 16
        assert [w[:2] for w in woken] == [("IN_PROGRESS", "50%"), ("SUCCESS", "100%")]  # 16 reads, 2 wake-ups
        await hook.aclose()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("chatty", [False, True], ids=["calm", "chatty"])
async def test_a_full_task_model_is_built_only_for_the_final_reading(mj_connection, monkeypatch, chatty):
    # A spy on the real parser (it still parses): every model built while waiting is counted.
    from airflow_provider_mj.models import MidjourneyTask

    built = []
    real = MidjourneyTask.from_api.__func__

    def counting(cls, data):
        built.append(data.get("status"))
        return real(cls, data)

    monkeypatch.setattr(MidjourneyTask, "from_api", classmethod(counting))
    mj_connection.configure(job_seconds=1.0, chatty=chatty)
    hook = MidjourneyHook()
    ids = _submit_many(hook, 5)
    built.clear()
    poller = TaskPoller.for_hook(hook, 0.02)
    shown: list[list[str]] = [[] for _ in ids]

    async def wait(n: int, mj_task_id: str) -> None:
        await wait_for_terminal(hook, mj_task_id, poll_interval=0.02, deadline=time.time() + 20,
                                on_progress=lambda t: shown[n].append(t.raw_status), progress_every=60)

    await asyncio.gather(*(wait(n, i) for n, i in enumerate(ids)))
    # ~50 polls of 5 tasks and a few log lines each, but a full model only for each final
    # reading: lines need only status and progress.
    assert poller.stats["ticks"] >= 10
    assert all(len(lines) >= 2 for lines in shown), shown
    assert built == ["SUCCESS"] * 5, (built, shown)
    await hook.aclose()


def test_readings_fall_back_to_the_general_reader_for_other_shapes():
    from airflow_provider_mj.hooks.replies import interpret_response

    task = {"id": "1000000000000001", "status": "IN_PROGRESS", "progress": "5%"}
    for body in (json.dumps({"code": 1, "result": [task]}).encode(),  # a wrapped list
                 b"\xef\xbb\xbf" + json.dumps([task]).encode()):  # a byte-order mark
        (reading,) = interpret_response("readings", 200, {}, body, route="task/list-by-condition")
        assert (reading.id, reading.raw_status, reading.progress) == ("1000000000000001", "IN_PROGRESS", "5%")
        assert reading.task().progress_percent == 5
    (reading, ) = interpret_response("readings", 200, {}, json.dumps([task, None, 3]).encode(), route="x")
    assert reading.task().id == "1000000000000001"  # items that are not objects are skipped


async def test_waits_that_start_together_share_one_read_of_the_connection(mj_connection, monkeypatch):
    # How many reads of the connection 20 waits cost.
    ids = _submit_many(MidjourneyHook(), 20)
    lookups = record_connection_reads(monkeypatch)
    hooks = [MidjourneyHook() for _ in ids]
    results = await asyncio.gather(*(wait_for_terminal(h, i, poll_interval=0.05, deadline=time.time() + 20)
                                     for h, i in zip(hooks, ids)))
    assert [t.status for t in results] == [TaskStatus.SUCCESS] * 20
    assert len(lookups) < 20, lookups  # shared while under way (the poller's hook shares it too)
    # A wait that starts once that read is over reads the connection again (a rotated key reaches it).
    before = len(lookups)
    (late,) = _submit_many(MidjourneyHook(), 1)
    await wait_for_terminal(MidjourneyHook(), late, poll_interval=0.05, deadline=time.time() + 20)
    assert len(lookups) == before + 1
    for hook in hooks:
        await hook.aclose()


@pytest.mark.parametrize("escaped", [False, True], ids=["plain", "json-escaped"])
def test_readings_blank_out_a_key_the_server_echoes(escaped):
    from airflow_provider_mj.hooks.replies import interpret_response

    key = "sk-echoed-key"
    shown = key if not escaped else "".join(f"\\u{ord(c):04x}" for c in key)
    body = ('[{"id": "1000000000000001", "status": "IN_PROGRESS", "progress": "5% ' + shown + '", '
            '"imageUrl": "http://127.0.0.1/p.png?key=' + shown + '"}]').encode()
    (reading,) = interpret_response("readings", 200, {}, body, route="task/list-by-condition", secret=key)
    assert key not in reading.progress and reading.progress.startswith("5% ")
    assert key not in reading.task().image_url and key not in json.dumps(reading.task().to_dict())
