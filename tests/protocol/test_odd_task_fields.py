"""Every field of the task object, given odd values: wrong types read as absent, nothing raises.

One table row per (field, odd value). Each row is parsed directly and, to prove the whole read
path, served by a real server on 127.0.0.1 and read with ``fetch_task``; the task is then used
the way the operators, the trigger and the sensor use it (XCom dict, buttons, prompts, outcome,
the failure message), none of which may raise.
"""

from __future__ import annotations

import json
import math
from urllib.parse import urljoin

import pytest

from airflow_provider_mj.exceptions import MidjourneyTaskFailedError
from airflow_provider_mj.models import MidjourneyTask, TaskOutcome, TaskStatus
from tests.protocol.misbehaving import TASK_ID, canned, make_hook  # noqa: F401 - fixtures

HASH = "26d56b92-4ed6-45e2-8561-563797923135"
BASE = {
    "id": TASK_ID, "action": "IMAGINE", "status": "SUCCESS", "prompt": "cat", "promptEn": "cat",
    "description": "Submit success", "state": "tag", "submitTime": 1741531578038, "startTime": 1741531580190,
    "finishTime": 1741531608566, "progress": "100%", "imageUrl": "https://cdn.example/cat.png", "failReason": "",
    "properties": {"finalPrompt": "cat", "messageHash": HASH},
    "buttons": [{"customId": f"MJ::JOB::upsample::1::{HASH}", "emoji": "", "label": "U1", "style": 2, "type": 2}],
}
ODD = [None, "", "   ", "abc", 0, -1, 5, 1.5, 1e300, True, False, [], [1, "x", None], {}, {"a": 1}, 10**30]

TEXT = {"action": "action", "prompt": "prompt", "promptEn": "prompt_en", "description": "description",
        "progress": "progress", "imageUrl": "image_url", "failReason": "fail_reason"}
STRIPPED = {"action", "progress", "imageUrl"}
TIMES = {"submitTime": "submit_time", "startTime": "start_time", "finishTime": "finish_time"}


def expected(field: str, value):
    """(attribute, the value it must read as) for ``field`` set to ``value``."""
    if field in TEXT:
        text = value if isinstance(value, str) else ""
        return TEXT[field], text.strip() if field in STRIPPED else text
    if field == "id":
        if isinstance(value, str):
            return "id", value.strip()
        ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
        return "id", str(int(value)) if ok else ""
    if field == "status":
        return "status", TaskStatus.parse(value) if isinstance(value, str) else TaskStatus.UNKNOWN
    if field == "state":
        return "state", value if isinstance(value, str) else None
    if field in TIMES:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            number = int(value)
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value)
        return TIMES[field], number if number is not None and 0 < number <= 253_402_300_799_999 else None
    if field == "properties":
        return "properties", value if isinstance(value, dict) else {}
    if field == "buttons":
        return "button_labels", [] if not isinstance(value, list) else []
    raise AssertionError(field)


ROWS = [(field, value) for field in BASE for value in ODD]
ROWS += [("submitTime", "1741531578038"), ("buttons", [{"customId": 7}, "U1", {"label": []}])]


def use_it_like_the_operators_do(task: MidjourneyTask) -> None:
    json.dumps(task.to_dict())  # the XCom and the trigger event
    task.custom_ids(), task.button_labels(), task.find_button("U1"), task.has_custom_id("x")
    task.describe_prompts(), task.shortened_prompts(), task.progress_percent, task.message_hash, task.final_prompt
    assert task.outcome in set(TaskOutcome)
    str(MidjourneyTaskFailedError.for_task(task))


def check(task: MidjourneyTask, field: str, value, *, read_id: str = "", base_url: str = "") -> None:
    attribute, want = expected(field, value)
    if field == "id" and want == "":
        want = read_id  # fetch_task names the task it asked for when the server's id is unusable
    if field == "imageUrl" and want and base_url:
        want = urljoin(base_url + "/", want)  # the hook resolves a relative imageUrl against the server
    got = getattr(task, attribute)
    got = got() if callable(got) else got
    assert got == want, f"{field}={value!r}: {attribute} read as {got!r}, expected {want!r}"
    use_it_like_the_operators_do(task)


@pytest.mark.parametrize("field,value", ROWS, ids=[f"{f}={v!r}"[:40] for f, v in ROWS])
def test_an_odd_value_in_any_field_reads_as_absent(field, value):
    check(MidjourneyTask.from_api({**BASE, field: value}), field, value)


def test_every_row_read_over_http_through_fetch_and_list(canned, make_hook):  # noqa: F811
    server = canned()
    hook = make_hook(server.base_url, "k", max_retries=0)
    for field, value in ROWS:
        server.reply(200, {**BASE, field: value})
        check(hook.fetch_task(TASK_ID), field, value, read_id=TASK_ID, base_url=server.base_url)
        server.reply(200, [{**BASE, field: value}])
        for task in hook.list_tasks([TASK_ID]):
            check(task, field, value, base_url=server.base_url)


@pytest.mark.parametrize("field", ["customId", "label", "emoji", "style", "type"])
def test_odd_values_in_every_button_field(field):
    for value in ODD:
        button = {**BASE["buttons"][0], field: value}
        task = MidjourneyTask.from_api({**BASE, "buttons": [button]})
        (parsed,) = task.buttons
        if field in ("style", "type"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            assert getattr(parsed, field) == (int(value) if ok else 2)
        else:
            attr = {"customId": "custom_id"}.get(field, field)
            text = value if isinstance(value, str) else ""
            assert getattr(parsed, attr) == (text.strip() if field == "customId" else text)
        use_it_like_the_operators_do(task)


@pytest.mark.parametrize("field", ["finalPrompt", "messageHash"])
def test_odd_values_in_the_properties_the_provider_reads(field):
    for value in ODD:
        task = MidjourneyTask.from_api({**BASE, "action": "DESCRIBE", "properties": {field: value}})
        if field == "messageHash":
            assert task.message_hash == (value.strip() or None if isinstance(value, str) else None)
        else:
            assert task.final_prompt == (value if isinstance(value, str) and value else "cat")
        use_it_like_the_operators_do(task)


def test_nan_and_infinity_read_as_null_over_http(canned, make_hook):  # noqa: F811
    server = canned()
    hook = make_hook(server.base_url, "k", max_retries=0)
    body = json.dumps(BASE).replace("1741531578038", "NaN").replace('"style": 2', '"style": Infinity')
    server.reply(200, body.encode(), {"Content-Type": "application/json"})
    task = hook.fetch_task(TASK_ID)
    assert task.submit_time is None and task.buttons[0].style == 2
    assert "NaN" not in json.dumps(task.to_dict(), allow_nan=False)
