"""Relay errors in both forms the hook meets: new-api's own (integer code 4, the reason as a name in
``description``) and the older named-code form; a saturated relay's 429 code 30; upstream refusals
passed through with HTTP 200. Canned replies where the exact bytes matter, the relay emulator for
the same cases end to end."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyBannedPromptError,
    MidjourneyNotFoundError,
    MidjourneyQueueFullError,
    MidjourneyRateLimitError,
    MidjourneyValidationError,
)
from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from tests.hooks.conftest import SECRET_KEY


@pytest.fixture
def server(canned, make_hook):
    srv = canned()
    srv.hook = make_hook(srv.base_url, SECRET_KEY, max_retries=0)
    return srv


def _relay(reason: str, code=4) -> dict:
    """new-api's shape: the reason, a space (it appends an empty 'result'), the integer code."""
    return {"description": f"{reason} ", "type": "upstream_error", "code": code}


@pytest.mark.parametrize("body", [_relay("task_no_found"), _relay("task_not_found"),
                                  {"description": "task_not_found", "type": "upstream_error", "code": "task_not_found"}])
def test_fetch_of_an_unknown_id_on_a_relay_is_not_found_in_both_forms(server, body):
    server.reply(400, body)
    with pytest.raises(MidjourneyNotFoundError) as info:
        server.hook.fetch_task("1320098173412546")
    assert info.value.code in (4, None)


@pytest.mark.parametrize(
    "body,error",
    [
        (_relay("prompt_is_required"), MidjourneyValidationError),
        ({"description": "prompt is required", "type": "upstream_error", "code": "prompt_is_required"},
         MidjourneyValidationError),
        (_relay("task_not_found"), MidjourneyNotFoundError),
        (_relay("quota_not_enough"), MidjourneyAuthError),
        ({"description": "额度不足", "type": "upstream_error", "code": "quota_not_enough"}, MidjourneyAuthError),
        # Prose in description is never read: the integer code decides.
        ({"description": "Task Not Found, sorry", "type": "upstream_error", "code": 4}, MidjourneyValidationError),
    ],
)
def test_submit_errors_of_a_relay_in_both_forms(server, body, error):
    server.reply(400, body)
    with pytest.raises(error):
        server.hook.imagine("a red fox")


def test_a_saturated_relay_429_code_30_is_a_rate_limit_not_a_refusal(server):
    server.reply(429, _relay("当前分组负载已饱和，请稍后再试", code=30))
    with pytest.raises(MidjourneyRateLimitError) as info:
        server.hook.imagine("a red fox")
    assert info.value.retryable


@pytest.mark.parametrize("body,error", [({"code": 23, "description": "队列已满，请稍后尝试", "result": None},
                                         MidjourneyQueueFullError),
                                        ({"code": 24, "description": "可能包含敏感词",
                                          "properties": {"bannedWord": "x", "promptEn": "x"}},
                                         MidjourneyBannedPromptError)])
def test_upstream_refusals_passed_through_with_http_200(server, body, error):
    server.reply(200, body)
    with pytest.raises(error):
        server.hook.imagine("a red fox")


# -- the same, end to end against the relay emulator -------------------------------------------------


@pytest.fixture
def relay_hook(emulator, make_hook):
    emulator.configure(dialect="relay", api_key=None)
    return make_hook(emulator.base_url, None, max_retries=0)


def test_relay_emulator_errors_read_as_the_right_classes(relay_hook, emulator):
    with pytest.raises(MidjourneyNotFoundError):
        relay_hook.fetch_task("1234567890123456")
    with pytest.raises(MidjourneyNotFoundError):
        relay_hook.image_seed("1234567890123456")
    with pytest.raises(MidjourneyValidationError):
        relay_hook.imagine("   ")
    with pytest.raises(MidjourneyBannedPromptError) as banned:
        relay_hook.imagine("a banned-word here")
    assert banned.value.banned_word == "banned-word"
    emulator.configure(concurrency=1, queue_limit=0, job_seconds=30)
    relay_hook.imagine("takes the only slot")
    with pytest.raises(MidjourneyQueueFullError):
        relay_hook.imagine("no room left")
    emulator.configure(faults={"rate_limit": 1.0})
    with pytest.raises(MidjourneyRateLimitError):
        relay_hook.fetch_task("1234567890123456")


def test_the_async_path_reads_the_relay_not_found_too(relay_hook):
    async def fetch():
        hook = MidjourneyHook(midjourney_conn_id=relay_hook.midjourney_conn_id)
        try:
            await hook.afetch_task("1234567890123456")
        finally:
            await hook.aclose()

    with pytest.raises(MidjourneyNotFoundError):
        asyncio.run(fetch())
