"""The retry policy: reads retried on 429/5xx/drops; submits only when the job cannot have been taken."""

from __future__ import annotations

import logging
import socket

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyConnectionError,
    MidjourneyError,
    MidjourneyQueueFullError,
    MidjourneyRateLimitError,
    MidjourneyServerError,
    MidjourneySubmitUncertainError,
    MidjourneyValidationError,
)
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.hooks.connection import MidjourneyConnectionConfig
from airflow_provider_mj.hooks.retries import retrying
from tests.hooks.conftest import SECRET_KEY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _submits(emulator) -> int:
    return emulator.counters()["submits"]["imagine"]


def _requests(emulator, route: str) -> int:
    return emulator.counters()["requests"].get(route, 0)


def test_submit_is_not_retried_after_a_lost_reply(hook, emu):
    emu.configure(faults={"lost_reply": 1.0})
    with pytest.raises(MidjourneySubmitUncertainError, match="state") as info:
        hook.imagine("a red fox", state="run-42")
    assert info.value.prompt == "a red fox"
    counters = emu.counters()
    assert counters["submits"]["imagine"] == 1 and counters["requests"]["submit/imagine"] == 1
    assert counters["submits_by_state"] == {"run-42": 1}


def test_submit_is_not_retried_after_a_dropped_connection(hook, emu):
    emu.configure(faults={"drop": 1.0})
    with pytest.raises(MidjourneySubmitUncertainError):
        hook.imagine("a red fox")
    assert _requests(emu, "submit/imagine") == 1


def test_submit_is_not_retried_after_a_malformed_2xx_reply(hook, emu):
    emu.configure(faults={"malformed": 1.0})
    with pytest.raises(MidjourneySubmitUncertainError, match="not JSON"):
        hook.imagine("a red fox")
    assert _requests(emu, "submit/imagine") == 1


def test_submit_is_retried_after_rate_limits(hook, emu):
    emu.configure(faults={"rate_limit": 0.5, "seed": 3})
    for i in range(4):
        assert hook.imagine(f"fox {i}").mj_task_id
    counters = emu.counters()
    assert counters["faults"].get("rate_limit", 0) > 0
    assert counters["submits"]["imagine"] == 4  # every job exactly once


def test_submit_gives_up_after_max_retries_of_429(emu, make_hook):
    hook = make_hook(emu.base_url, SECRET_KEY, max_retries=2)
    emu.configure(faults={"rate_limit": 1.0})
    with pytest.raises(MidjourneyRateLimitError) as info:
        hook.imagine("a red fox")
    assert info.value.retry_after == 1
    assert _requests(emu, "submit/imagine") == 3 and _submits(emu) == 0


def test_submit_after_server_error_depends_on_the_status(hook, emu, dialect):
    # proxy dialect: HTTP 500 (may have run) -> uncertain, once; relay: 503 (not taken) -> retried.
    emu.configure(faults={"server_error": 1.0})
    if dialect == "proxy":
        with pytest.raises(MidjourneySubmitUncertainError):
            hook.imagine("a red fox")
        assert _requests(emu, "submit/imagine") == 1
    else:
        with pytest.raises(MidjourneyServerError):
            hook.imagine("a red fox")
        assert _requests(emu, "submit/imagine") == 6  # 1 + max_retries (5)
    assert _submits(emu) == 0


def test_submit_is_retried_when_it_could_not_connect(make_hook):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = make_hook(f"http://127.0.0.1:{port}", SECRET_KEY, max_retries=3)
    waits: list[float] = []
    hook._sleep = waits.append
    with pytest.raises(MidjourneyConnectionError):
        hook.imagine("a red fox")
    assert len(waits) == 3


@pytest.mark.parametrize("fault", ["server_error", "drop", "malformed", "rate_limit"])
def test_reads_are_retried(emu, make_hook, fault):
    hook = make_hook(emu.base_url, SECRET_KEY, max_retries=15, retry_max_wait=0.05)
    task_id = hook.imagine("a red fox").mj_task_id
    emu.configure(faults={fault: 0.4, "seed": 11})
    for _ in range(10):
        assert hook.fetch_task(task_id).id == task_id
    assert emu.counters()["faults"].get(fault, 0) > 0


def test_backoff_is_exponential_with_jitter_and_capped(emu, make_hook):
    hook = make_hook(emu.base_url, SECRET_KEY, max_retries=5, retry_min_wait=0.01, retry_max_wait=0.04)
    emu.configure(faults={"server_error": 1.0})
    waits: list[float] = []
    hook._sleep = waits.append
    with pytest.raises(MidjourneyServerError):
        hook.fetch_task("1")
    assert len(waits) == 5
    assert all(0 <= w <= 0.04 for w in waits)
    assert max(waits[2:]) > min(waits[:1])


def test_retry_after_is_honoured_up_to_retry_max_wait(emu, make_hook):
    hook = make_hook(emu.base_url, SECRET_KEY, max_retries=2, retry_min_wait=0.001, retry_max_wait=0.75)
    emu.configure(faults={"rate_limit": 1.0, "retry_after": 1})
    waits: list[float] = []
    hook._sleep = waits.append
    with pytest.raises(MidjourneyRateLimitError):
        hook.fetch_task("1")
    assert waits == [0.75, 0.75]


def test_retries_are_logged(hook, emu, capsys, caplog):
    emu.configure(faults={"server_error": 0.5, "seed": 1})
    for _ in range(4):
        hook.list_tasks(["1"])
    out = capsys.readouterr().out + caplog.text
    assert "retry 1 of 5" in out


async def test_async_reads_honour_retry_after_through_the_injectable_sleep(emu, make_hook):
    make_hook(emu.base_url, SECRET_KEY, max_retries=2, retry_min_wait=0.001, retry_max_wait=0.75)
    emu.configure(faults={"rate_limit": 1.0, "retry_after": 1})
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with MidjourneyHook() as ahook:
        ahook._asleep = record
        with pytest.raises(MidjourneyRateLimitError):
            await ahook.afetch_task("1")
    assert waits == [0.75, 0.75]
    assert _requests(emu, "task/fetch") == 3  # 1 + max_retries


def test_image_downloads_are_retried_like_reads(canned, make_hook, tmp_path):
    server = canned()
    server.reply(503, "busy").reply(200, PNG_MAGIC + b"\x00" * 16, {"Content-Type": "image/png"})
    hook = make_hook(server.base_url, max_retries=2)
    waits: list[float] = []
    hook._sleep = waits.append
    final = hook.download_image(server.base_url + "/img.png", tmp_path / "x.png")
    assert final.endswith("x.png") and len(server.requests) == 2 and len(waits) == 1


def _not_accepted(err: MidjourneyError, value: bool) -> MidjourneyError:
    err.not_accepted = value  # what the reply and transport readers set on these two classes
    return err


# One row per kind of failure: how many times the retry policy sends a submit (max_retries=2).
# The errors are built here because the point is the decision table itself; the tests above
# produce each kind through real HTTP.
SUBMIT_DECISIONS = [
    (MidjourneySubmitUncertainError("reply lost"), 1),
    (MidjourneyValidationError("code 4"), 1),
    (MidjourneyRateLimitError("HTTP 429"), 3),
    (MidjourneyQueueFullError("code 23"), 3),
    (_not_accepted(MidjourneyServerError("HTTP 503"), True), 3),
    (_not_accepted(MidjourneyServerError("HTTP 502"), False), 1),
    (_not_accepted(MidjourneyConnectionError("refused"), True), 3),
    (_not_accepted(MidjourneyConnectionError("read timeout"), False), 1),
]


@pytest.mark.parametrize(("error", "sends"), SUBMIT_DECISIONS, ids=lambda v: str(v)[:20] if isinstance(v, Exception) else v)
def test_the_policy_sends_a_submit_again_only_where_the_server_cannot_have_taken_it(error, sends):
    config = MidjourneyConnectionConfig(conn_id="c", base_url="http://127.0.0.1:9", max_retries=2)
    calls: list[int] = []
    waits: list[float] = []

    def send_once() -> None:
        calls.append(1)
        raise error

    policy = retrying(config, is_submit=True, what="test submit", log=logging.getLogger(__name__),
                      sleep=waits.append)
    with pytest.raises(type(error)) as info:
        policy(send_once)
    assert info.value is error  # the error itself, never tenacity's RetryError
    assert len(calls) == sends and len(waits) == sends - 1


def test_the_policy_retries_every_retryable_read_failure():
    config = MidjourneyConnectionConfig(conn_id="c", base_url="http://127.0.0.1:9", max_retries=2)
    for error, expected in ((_not_accepted(MidjourneyServerError("HTTP 502"), False), 3),
                            (_not_accepted(MidjourneyConnectionError("read timeout"), False), 3),
                            (MidjourneySubmitUncertainError("never for a read either"), 1),
                            (MidjourneyValidationError("bad id"), 1)):
        calls: list[int] = []

        def send_once(error=error) -> None:
            calls.append(1)
            raise error

        policy = retrying(config, is_submit=False, what="test read", log=logging.getLogger(__name__),
                          sleep=lambda _s: None)
        with pytest.raises(type(error)):
            policy(send_once)
        assert len(calls) == expected, error


def test_a_refused_submit_is_raised_at_once_inside_refusals_raised(hook, emu):
    # The operators wait for room themselves (operators/room.py): the hook must not spend
    # max_retries on a full account first, nor sleep in the worker slot.
    emu.configure(concurrency=1, queue_limit=0, job_seconds=30.0)
    hook.imagine("takes the only slot")
    slept: list = []
    hook._sleep = slept.append
    with hook.refusals_raised(), pytest.raises(MidjourneyQueueFullError):
        hook.imagine("finds the account full")
    assert slept == [] and _requests(emu, "submit/imagine") == 2
    with pytest.raises(MidjourneyQueueFullError):  # outside the block: retried as before
        hook.imagine("finds the account full")
    assert len(slept) == hook.config.max_retries


# A refusal is what the server answers when it did not take the job *now*; a connection that could
# not be made is not one (a wrong Base URL must fail under max_retries, not wait for an hour).
REFUSALS = [
    (MidjourneyQueueFullError("code 23"), True),
    (MidjourneyRateLimitError("HTTP 429"), True),
    (_not_accepted(MidjourneyServerError("HTTP 503"), True), True),
    (_not_accepted(MidjourneyServerError("HTTP 502"), False), False),
    (_not_accepted(MidjourneyConnectionError("refused"), True), False),
    (MidjourneySubmitUncertainError("reply lost"), False),
]


@pytest.mark.parametrize(("error", "refusal"), REFUSALS, ids=lambda v: str(v)[:20] if isinstance(v, Exception) else v)
def test_refusals_are_the_answers_that_say_not_now(error, refusal):
    from airflow_provider_mj.hooks.retries import is_refusal

    assert is_refusal(error) is refusal
