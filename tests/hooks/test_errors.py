"""Every error class, from real replies: the emulator where it can, a canned-reply server otherwise."""

from __future__ import annotations

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyBannedPromptError,
    MidjourneyConnectionError,
    MidjourneyError,
    MidjourneyNotFoundError,
    MidjourneyQueueFullError,
    MidjourneyRateLimitError,
    MidjourneyServerError,
    MidjourneySubmitUncertainError,
    MidjourneyValidationError,
)
from airflow_provider_mj.hooks.midjourney import interpret_response, parse_retry_after
from tests.hooks.conftest import SECRET_KEY, request_count

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
TASK = {"id": "1320098173412546", "status": "IN_PROGRESS", "progress": "45%", "submitTime": 0,
        "startTime": 0, "finishTime": 0, "buttons": []}


@pytest.fixture
def server(canned, make_hook):
    srv = canned()
    srv.hook = make_hook(srv.base_url, SECRET_KEY, max_retries=0)
    return srv


# -- unknown ids, every way servers say it ---------------------------------------------------------


@pytest.mark.parametrize(
    "status,body",
    [(200, b"null"), (200, b""), (204, b""), (404, b""), (404, {"code": 3, "description": "not found"}),
     (400, {"description": "task_not_found", "type": "upstream_error", "code": "task_not_found"})],
)
def test_fetch_of_unknown_id_is_not_found_in_every_form(server, status, body):
    server.reply(status, body)
    with pytest.raises(MidjourneyNotFoundError):
        server.hook.fetch_task("1320098173412546")


@pytest.mark.parametrize(
    "status,body,answered",
    [(200, b"null", "HTTP 200 with an empty task (null)"), (204, b"", "HTTP 204, no content"),
     (404, b"", "HTTP 404"), (404, {"code": 3, "description": "not found"}, "code 3 with HTTP 404")],
)
def test_a_mistyped_id_says_what_the_server_answered_without_contradiction(server, status, body, answered):
    """'Not found (HTTP 200)' read as a contradiction: the message names the id and the answer."""
    server.reply(status, body)
    with pytest.raises(MidjourneyNotFoundError) as caught:
        server.hook.fetch_task("1320098173412546")
    message = str(caught.value)
    assert "task 1320098173412546 does not exist on this server" in message
    assert f"(the server answered {answered})." in message
    assert "Not found (" not in message


def test_fetch_parses_zero_times_and_progress(server):
    server.reply(200, TASK)
    task = server.hook.fetch_task("1320098173412546")
    assert task.submit_time is None and task.progress_percent == 45


def test_list_tasks_accepts_a_bare_array_in_any_order(server):
    server.reply(200, [{**TASK, "id": "2"}, {**TASK, "id": "1"}])
    assert [t.id for t in server.hook.list_tasks(["1", "2", "3"])] == ["1", "2"]


# -- auth: empty, plain text, JSON bodies ------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("body", [b"", "Unauthorized: invalid mj-api-secret",
                                  {"error": {"message": "invalid token", "type": "new_api_error"}}])
def test_auth_errors_whatever_the_body(server, status, body):
    server.reply(status, body)
    with pytest.raises(MidjourneyAuthError) as info:
        server.hook.imagine("a red fox")
    assert info.value.http_status == status


def test_relay_quota_error_is_an_auth_error(server):
    server.reply(400, {"description": "额度不足", "type": "upstream_error", "code": "quota_not_enough"})
    with pytest.raises(MidjourneyAuthError):
        server.hook.imagine("a red fox")


# -- relay and proxy error envelopes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,body,error",
    [
        (200, {"code": 4, "description": "参数错误"}, MidjourneyValidationError),
        (400, {"description": "prompt is required", "type": "upstream_error", "code": "prompt_is_required"},
         MidjourneyValidationError),
        (400, {"description": "bad", "type": "upstream_error", "code": 4}, MidjourneyValidationError),
        (200, {"code": 3, "description": "no account"}, MidjourneyNotFoundError),
        (200, {"code": 23, "description": "queue full"}, MidjourneyQueueFullError),
        (200, {"code": 9, "description": "busy"}, MidjourneyQueueFullError),
        (400, {"description": "queue full", "type": "upstream_error", "code": "23"}, MidjourneyQueueFullError),
        (200, {"code": 24, "description": "banned", "properties": {"bannedWord": "x"}}, MidjourneyBannedPromptError),
        (413, "too large", MidjourneyValidationError),
    ],
)
def test_submit_error_envelopes(server, status, body, error):
    server.reply(status, body)
    with pytest.raises(error):
        server.hook.imagine("a red fox")


def test_banned_word_comes_from_properties(server):
    server.reply(200, {"code": 24, "description": "可能包含敏感词", "properties": {"bannedWord": "gore"}})
    with pytest.raises(MidjourneyBannedPromptError) as info:
        server.hook.imagine("a red fox")
    assert info.value.banned_word == "gore" and info.value.code == 24


def test_submit_codes_21_and_22_are_accepted(server):
    server.reply(200, {"code": 22, "description": "排队中", "result": "1", "properties": {"numberOfQueues": 3}})
    queued = server.hook.imagine("a red fox")
    assert queued.queued and queued.number_of_queues == 3
    server.reply(200, {"code": 21, "description": "窗口等待", "result": "2"})
    assert server.hook.imagine("a red fox").needs_modal


def test_image_seed_of_a_task_without_image_is_a_validation_error(server):
    server.reply(400, {"code": 4, "description": "no image"})
    with pytest.raises(MidjourneyValidationError):
        server.hook.image_seed("1")


# -- rate limits, 5xx, HTML pages -------------------------------------------------------------------------


def test_rate_limit_with_retry_after_seconds(server):
    server.reply(429, b"", {"Retry-After": "7"})
    with pytest.raises(MidjourneyRateLimitError) as info:
        server.hook.fetch_task("1")
    assert info.value.retry_after == 7


def test_retry_after_as_an_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10)
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_a_read_is_a_server_error(server, status):
    server.reply(status, "<html><body><h1>Bad Gateway</h1></body></html>", {"Content-Type": "text/html"})
    with pytest.raises(MidjourneyServerError) as info:
        server.hook.fetch_task("1")
    assert info.value.http_status == status


def test_html_page_instead_of_json_is_a_server_error_showing_the_first_bytes(server):
    server.reply(200, "<!DOCTYPE html><html><head><title>Welcome to nginx</title>" + "x" * 500,
                 {"Content-Type": "text/html"})
    with pytest.raises(MidjourneyServerError, match="not JSON") as info:
        server.hook.fetch_task("1")
    message = str(info.value)
    assert "<!DOCTYPE html>" in message and "x" * 200 not in message and "Content-Length" not in message


def test_wrong_base_url_route_404_says_to_check_the_base_url(server):
    server.reply(404, "<html>404 Not Found</html>", {"Content-Type": "text/html"})
    with pytest.raises(MidjourneyNotFoundError, match="Base URL"):
        server.hook.imagine("a red fox")


def test_connection_refused_is_a_connection_error(make_hook):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = make_hook(f"http://127.0.0.1:{port}", SECRET_KEY, max_retries=0)
    with pytest.raises(MidjourneyConnectionError, match="Could not connect"):
        hook.fetch_task("1")


# -- the shared interpreter, directly -----------------------------------------------------------------------


def test_interpreter_never_parses_descriptions():
    # The same Chinese description with different codes gives different errors.
    body = b'{"code": %d, "description": "\xe5\xa4\xb1\xe8\xb4\xa5"}'
    with pytest.raises(MidjourneyValidationError):
        interpret_response("submit", 200, {}, body % 4, route="submit/imagine")
    with pytest.raises(MidjourneyQueueFullError):
        interpret_response("submit", 200, {}, body % 23, route="submit/imagine")


def test_interpreter_submit_500_is_uncertain_but_503_is_not():
    with pytest.raises(MidjourneySubmitUncertainError):
        interpret_response("submit", 500, {}, b"", route="submit/imagine")
    with pytest.raises(MidjourneyServerError):
        interpret_response("submit", 503, {}, b"", route="submit/imagine")


# -- local validation: nothing reaches the server --------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda h: h.imagine(""),
        lambda h: h.imagine("x" * 6001),
        lambda h: h.imagine("a fox", images=["data:image/png;base64,@@@"]),
        lambda h: h.imagine("a fox", state="s" * 256),
        lambda h: h.imagine("a fox", notify_hook="ftp://example.com/x"),
        lambda h: h.imagine("a fox", bot_type="DALLE"),
        lambda h: h.imagine("a fox", account_filter={"modes": ["SLOW"]}),
        lambda h: h.action("", "MJ::JOB::upsample::1::x"),
        lambda h: h.action("1", ""),
        lambda h: h.blend([PNG]),
        lambda h: h.blend([PNG] * 6),
        lambda h: h.blend([PNG, PNG], dimensions="WIDE"),
        lambda h: h.blend([PNG, "/no/such/file.png"]),
        lambda h: h.describe(),
        lambda h: h.describe(image=PNG, link="https://example.com/a.png"),
        lambda h: h.describe(link="not a url"),
        lambda h: h.modal(""),
        lambda h: h.modal("1", mask="data:text/plain;base64,AAAA"),
        lambda h: h.shorten("  "),
        lambda h: h.fetch_task(""),
        lambda h: h.list_tasks("123"),
        lambda h: h.image_seed(" "),
    ],
)
def test_local_validation_happens_before_any_request(emulator, make_hook, call):
    with pytest.raises(MidjourneyValidationError):
        call(make_hook(emulator.base_url))
    assert request_count(emulator) == 0


def _codes_in_docstrings() -> list[tuple[type, int]]:
    """(error class, code) for every Midjourney code an error class's docstring claims."""
    import inspect
    import re

    from airflow_provider_mj import exceptions

    found = []
    for _, cls in inspect.getmembers(exceptions, inspect.isclass):
        if cls.__module__ != exceptions.__name__ or cls is exceptions.MidjourneyModalRequiredError:
            continue  # code 21 is not an error reply: the operator opens the modal
        for match in re.finditer(r"\b[Cc]ode (\d+)(?: \(or (\d+)\))?", cls.__doc__ or ""):
            found.extend((cls, int(code)) for code in match.groups() if code)
    return found


def test_every_code_an_error_class_documents_is_the_one_it_raises(server):
    """The docs are built from these docstrings: each code they file under a class raises that class."""
    claims = _codes_in_docstrings()
    assert (MidjourneyQueueFullError, 9) in claims and len(claims) >= 5
    assert [code for cls, code in claims if cls is MidjourneyServerError] == []
    for cls, code in claims:
        server.reply(200, {"code": code, "description": "x", "result": None, "properties": {}})
        with pytest.raises(MidjourneyError) as info:
            server.hook.imagine("a kite")
        assert type(info.value) is cls, (code, type(info.value).__name__)
