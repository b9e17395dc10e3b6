"""The trigger's async path: real event loop, real HTTP, one aiohttp session per connection and loop."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyConfigurationError,
    MidjourneyNotFoundError,
)
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.hooks.transport import _ASYNC_SESSIONS, async_session_count
from airflow_provider_mj.models import TaskStatus
from tests.hooks.conftest import SECRET_KEY


@pytest.fixture
def submitted(hook):
    """Two submitted task ids (submitted with the sync path)."""
    return [hook.imagine("one").mj_task_id, hook.imagine("two").mj_task_id]


async def test_afetch_task(hook, submitted):
    async with MidjourneyHook() as ahook:
        task = await ahook.afetch_task(submitted[0])
    assert task.id == submitted[0] and task.status in set(TaskStatus)


async def test_alist_tasks(hook, submitted):
    async with MidjourneyHook() as ahook:
        tasks = await ahook.alist_tasks([submitted[1], "9999999999999999", submitted[0]])
        assert await ahook.alist_tasks([]) == []
    assert [t.id for t in tasks] == [submitted[1], submitted[0]]


async def test_afetch_of_an_unknown_id_is_not_found(hook):
    async with MidjourneyHook() as ahook:
        with pytest.raises(MidjourneyNotFoundError):
            await ahook.afetch_task("9999999999999999")


async def test_async_auth_error(emu, make_hook):
    make_hook(emu.base_url, "sk-wrong")
    async with MidjourneyHook() as ahook:
        with pytest.raises(MidjourneyAuthError):
            await ahook.afetch_task("1")


async def test_async_missing_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", raising=False)
    async with MidjourneyHook() as ahook:
        with pytest.raises(MidjourneyConfigurationError, match="does not exist"):
            await ahook.afetch_task("1")


async def test_one_session_is_reused_across_calls_and_hooks(hook, submitted):
    loop = asyncio.get_running_loop()
    first, second = MidjourneyHook(), MidjourneyHook()
    await first.afetch_task(submitted[0])
    session = _ASYNC_SESSIONS[loop]["midjourney_default"].session
    await asyncio.gather(*(h.afetch_task(submitted[i % 2]) for i, h in enumerate([first, second] * 10)))
    await second.alist_tasks(submitted)
    assert _ASYNC_SESSIONS[loop]["midjourney_default"].session is session
    assert async_session_count() == 1
    await first.aclose()
    assert not session.closed  # still used by `second`
    await second.aclose()
    assert session.closed and async_session_count() == 0


async def test_async_path_never_uses_the_blocking_connection_lookup(hook, submitted, monkeypatch):
    def blocking(*args, **kwargs):
        raise AssertionError("the sync connection lookup ran on the event loop")

    monkeypatch.setattr(MidjourneyHook, "get_connection", classmethod(blocking))
    async with MidjourneyHook() as ahook:
        for _ in range(3):
            await ahook.afetch_task(submitted[0])


async def test_async_reads_are_retried(emu, make_hook):
    make_hook(emu.base_url, SECRET_KEY, max_retries=15, retry_max_wait=0.05)
    async with MidjourneyHook() as ahook:
        task_id = MidjourneyHook().imagine("a red fox").mj_task_id
        emu.configure(faults={"server_error": 0.4, "drop": 0.2, "seed": 5})
        for _ in range(8):
            assert (await ahook.afetch_task(task_id)).id == task_id
    faults = emu.counters()["faults"]
    assert faults.get("server_error", 0) + faults.get("drop", 0) > 0


async def test_async_sees_a_plain_text_401_and_an_html_page_like_the_sync_path(canned, make_hook):
    from airflow_provider_mj.exceptions import MidjourneyServerError

    server = canned()
    make_hook(server.base_url, SECRET_KEY, max_retries=0)
    async with MidjourneyHook() as ahook:
        server.reply(401, "Unauthorized")
        with pytest.raises(MidjourneyAuthError):
            await ahook.afetch_task("1")
        server.reply(502, "<html>bad gateway</html>", {"Content-Type": "text/html"})
        with pytest.raises(MidjourneyServerError):
            await ahook.afetch_task("1")
        server.reply(204, b"")
        with pytest.raises(MidjourneyNotFoundError):
            await ahook.afetch_task("1")
