"""A failure report names the Midjourney task id, the prompt (shortened) and the server's reason.

Checked on both wait paths: blocking (the hook's ``wait_for_task``) and deferred (the trigger's
event, read back by the operator's ``execute_complete``), since a user sees whichever one ran.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyBannedPromptError,
    MidjourneyTaskFailedError,
    MidjourneyTimeoutError,
)
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.operators import MidjourneyImagineOperator
from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger
from tests.reliability.conftest import operator_context

#: Longer than the 80 characters a report shows, so shortening is visible.
LONG = ("a vast panorama of a lighthouse on a basalt cliff at dusk, warm light in every window, "
        "gulls, spray, oil painting in the manner of the old masters")


def _deferred_error(op: MidjourneyImagineOperator, mj_task_id: str, deadline: float) -> Exception:
    """Run the trigger the operator would defer to, then hand its event to ``execute_complete``."""

    async def one_event():
        trigger = MidjourneyTaskTrigger(mj_task_id=mj_task_id, poll_interval=0.05, deadline=deadline,
                                        prompt=op.prompt_for_messages())
        return [event async for event in trigger.run()][0].payload

    event = asyncio.run(one_event())
    with pytest.raises(Exception) as info:
        op.execute_complete(operator_context(), event)
    return info.value


def _assert_names_task_prompt_and_reason(text: str, mj_task_id: str | None, reason: str) -> None:
    if mj_task_id:
        assert mj_task_id in text
    assert "a vast panorama of a lighthouse" in text  # the prompt...
    assert LONG not in text and "\u2026" in text  # ...shortened
    assert reason in text


@pytest.fixture
def hook(mj_connection) -> MidjourneyHook:
    return MidjourneyHook()


@pytest.mark.parametrize("path", ["blocking", "deferred"])
def test_a_failed_job_reports_its_id_prompt_and_fail_reason(hook, path):
    prompt = f"{LONG} emulator-fail"
    job = hook.imagine(prompt)
    if path == "blocking":
        with pytest.raises(MidjourneyTaskFailedError) as info:
            hook.wait_for_task(job.mj_task_id, poll_interval=0.05, deadline=time.time() + 10)
        err = info.value
    else:
        err = _deferred_error(MidjourneyImagineOperator(task_id="t", prompt=prompt), job.mj_task_id,
                              time.time() + 10)
    assert isinstance(err, MidjourneyTaskFailedError)
    _assert_names_task_prompt_and_reason(str(err), job.mj_task_id, "[Invalid parameter] Invalid value")
    assert err.fail_reason == "[Invalid parameter] Invalid value" and err.mj_task_id == job.mj_task_id
    assert "Fix the prompt or inputs" in str(err)


@pytest.mark.parametrize("dialect", ["proxy", "relay"])
def test_a_banned_prompt_reports_the_prompt_and_the_banned_word(hook, mj_connection, dialect):
    mj_connection.configure(dialect=dialect)
    with pytest.raises(MidjourneyBannedPromptError) as info:
        hook.imagine(f"{LONG} banned-word")
    err = info.value
    # No task exists for a refused prompt, so there is no task id to name; the word is the reason
    # (properties.bannedWord: relays pass the upstream server's code-24 envelope through as it came).
    _assert_names_task_prompt_and_reason(str(err), None, "banned-word")
    assert err.code == 24
    assert err.banned_word == "banned-word"
    assert "Rephrase the prompt" in str(err)
    assert mj_connection.counters()["submits"]["imagine"] == 0


@pytest.mark.parametrize("path", ["blocking", "deferred"])
def test_a_timeout_reports_the_id_prompt_and_where_the_job_was(hook, mj_connection, path):
    mj_connection.configure(job_seconds=30)
    job = hook.imagine(LONG)
    deadline = time.time() + 0.3
    if path == "blocking":
        with pytest.raises(MidjourneyTimeoutError) as info:
            hook.wait_for_task(job.mj_task_id, poll_interval=0.05, deadline=deadline)
        err = info.value
    else:
        err = _deferred_error(MidjourneyImagineOperator(task_id="t", prompt=LONG), job.mj_task_id, deadline)
    assert isinstance(err, MidjourneyTimeoutError)
    _assert_names_task_prompt_and_reason(str(err), job.mj_task_id, "SUBMITTED 0%")  # where it was
    assert "deadline" in str(err)
