"""Every bad input is named: a specific error class, and a message that says what to do.

One table, one row per mistake a DAG author (or a misbehaving server) can make. Each row gives
the call, the error class expected, a fragment of the advice the message must carry, and what
may reach the server first:

* ``NOTHING``: the input is wrong locally; it is refused before any request (the emulator's
  request counters do not move);
* ``READS``: finding the mistake needs the server (a parent task, a key check), but no job is
  accepted, so nothing is paid for;
* ``A_JOB``: the server had to accept a job to find out (a button that opens a modal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from airflow_provider_mj import exceptions as mj
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.operators import (
    MidjourneyActionOperator,
    MidjourneyDescribeOperator,
    MidjourneyImagineOperator,
)
from tests.helpers import connection_json, png_bytes, png_data_url
from tests.reliability.conftest import operator_context

KEY = "sk-reliability-bad-inputs-5f1d"
NOTHING, READS, A_JOB = "nothing", "reads", "a job"


class Env:
    """What a row may use: a hook on the emulator, the emulator, canned servers, a temp dir."""

    def __init__(self, emulator, canned, tmp_path, monkeypatch) -> None:
        self.emu = emulator
        self._canned = canned
        self.tmp = tmp_path
        self._monkeypatch = monkeypatch
        self.hook = self.hook_for(emulator.base_url, KEY)

    def hook_for(self, base_url: str, key: str | None = KEY, conn_id: str = "midjourney_default",
                 **extra: Any) -> MidjourneyHook:
        self._monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(base_url, key, **extra))
        return MidjourneyHook(midjourney_conn_id=conn_id)

    def raw_conn(self, conn_id: str, json_text: str) -> MidjourneyHook:
        self._monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json_text)
        return MidjourneyHook(midjourney_conn_id=conn_id)

    def canned(self, status: int, body: Any, headers: dict | None = None, **extra: Any) -> MidjourneyHook:
        server = self._canned()
        server.reply(status, body, headers)
        return self.hook_for(server.base_url, KEY, conn_id="mj_canned", max_retries=0, **extra)

    def finished(self, prompt: str = "a finished parent") -> dict:
        job = self.hook.imagine(prompt)
        return self.hook.wait_for_task(job.mj_task_id, poll_interval=0.05, deadline=time.time() + 10).to_dict()

    def running(self, prompt: str = "a parent still running") -> str:
        self.emu.configure(job_seconds=30)
        return self.hook.imagine(prompt).mj_task_id

    def file(self, name: str, data: bytes) -> str:
        path = self.tmp / name
        path.write_bytes(data)
        return str(path)


def run_op(op) -> Any:
    return op.execute(operator_context())


@dataclass
class Row:
    id: str
    #: Does any setup with ``env`` and returns the bad call (a function of no arguments).
    make: Callable[[Env], Callable[[], Any]]
    error: type
    advice: str
    reaches: str = NOTHING


def _upscaled(env: Env) -> dict:
    grid = env.finished("a grid to upscale")
    job = env.hook.action(grid["id"], "U1")
    return env.hook.wait_for_task(job.mj_task_id, poll_interval=0.05, deadline=time.time() + 10).to_dict()


ROWS = [
    # -- prompts and text fields ------------------------------------------------------------------
    Row("empty prompt", lambda e: lambda: e.hook.imagine("   "), mj.MidjourneyValidationError,
        "pass the text Midjourney should work from"),
    Row("oversized prompt", lambda e: lambda: e.hook.imagine("a red fox " * 700), mj.MidjourneyValidationError,
        "Shorten it"),
    Row("state too long", lambda e: lambda: e.hook.imagine("a fox", state="x" * 256), mj.MidjourneyValidationError,
        "Use a shorter tag"),
    Row("notify hook not http", lambda e: lambda: e.hook.imagine("a fox", notify_hook="ftp://hooks.example.com/mj"),
        mj.MidjourneyValidationError, "absolute http:// or https:// URL"),
    Row("bad bot type", lambda e: lambda: e.hook.imagine("a fox", bot_type="DALL_E"), mj.MidjourneyValidationError,
        "must be one of MID_JOURNEY, NIJI_JOURNEY"),
    Row("bad speed mode in account_filter", lambda e: lambda: e.hook.imagine("a fox", account_filter={"modes": ["SLOW"]}),
        mj.MidjourneyValidationError, "must be one of RELAX, FAST, TURBO"),
    # -- images -------------------------------------------------------------------------------------
    Row("blend with 1 image", lambda e: lambda: e.hook.blend([png_data_url()]), mj.MidjourneyValidationError,
        "this endpoint takes 2 to 5"),
    Row("blend with 6 images", lambda e: lambda: e.hook.blend([png_data_url()] * 6), mj.MidjourneyValidationError,
        "this endpoint takes 2 to 5"),
    Row("bad blend dimensions", lambda e: lambda: e.hook.blend([png_data_url()] * 2, dimensions="WIDESCREEN"),
        mj.MidjourneyValidationError, "must be one of PORTRAIT, SQUARE, LANDSCAPE"),
    Row("data URL with broken base64", lambda e: lambda: e.hook.imagine("a fox", images=["data:image/png;base64,@@@"]),
        mj.MidjourneyValidationError, "re-encode the image"),
    Row("data URL of a text file", lambda e: lambda: e.hook.imagine("a fox", images=["data:text/plain;base64,aGk="]),
        mj.MidjourneyValidationError, "Convert the image first"),
    Row("web link where the image itself is needed",
        lambda e: lambda: e.hook.imagine("a fox", images=["https://example.com/cat.png"]),
        mj.MidjourneyValidationError, "Download it first"),
    Row("images given as one string, not a list", lambda e: lambda: e.hook.imagine("a fox", images="cat.png"),
        mj.MidjourneyValidationError, "must be a list of images"),
    Row("missing image file", lambda e: lambda: e.hook.imagine("a fox", images=[str(e.tmp / "nope.png")]),
        mj.MidjourneyValidationError, "Check the path"),
    Row("file that is not an image", lambda e: (lambda p: lambda: e.hook.blend([p, p]))(e.file("notes.txt", b"hello")),
        mj.MidjourneyValidationError, "Convert it to one of those"),
    Row("modal mask file missing", lambda e: lambda: e.hook.modal("1320098173412546", mask=str(e.tmp / "mask.png")),
        mj.MidjourneyValidationError, "Check the path"),
    # -- describe ----------------------------------------------------------------------------------------
    Row("describe with both image and link",
        lambda e: lambda: e.hook.describe(image=png_bytes(), link="https://example.com/cat.png"),
        mj.MidjourneyValidationError, "pass image= or link=, not both"),
    Row("describe with neither image nor link", lambda e: lambda: e.hook.describe(), mj.MidjourneyValidationError,
        "pass image= (a data URL, file path or bytes) or link="),
    Row("describe operator with both", lambda e: lambda: MidjourneyDescribeOperator(
        task_id="d", image=png_bytes(), link="https://example.com/cat.png"), mj.MidjourneyValidationError,
        "exactly one of image"),
    Row("describe link that is not a web URL", lambda e: lambda: e.hook.describe(link="ftp://example.com/cat.png"),
        mj.MidjourneyValidationError, "absolute http:// or https:// URL"),
    Row("unreachable describe link (no host)", lambda e: lambda: e.hook.describe(link="https:///cat.png"),
        mj.MidjourneyValidationError, "with a host"),
    Row("describe link with spaces", lambda e: lambda: e.hook.describe(link="https://example.com/my cat.png"),
        mj.MidjourneyValidationError, "Percent-encode it"),
    # -- buttons and actions ------------------------------------------------------------------------------
    Row("both button and custom_id", lambda e: lambda: MidjourneyActionOperator(
        task_id="a", mj_task_id="1320098173412546", button="U1", custom_id="MJ::JOB::upsample::1::x"),
        mj.MidjourneyValidationError, "not both"),
    Row("neither button nor custom_id", lambda e: lambda: MidjourneyActionOperator(
        task_id="a", mj_task_id="1320098173412546"), mj.MidjourneyValidationError, "needs button"),
    Row("blank task id", lambda e: lambda: e.hook.fetch_task("  "), mj.MidjourneyValidationError,
        "pass the id a submit returned"),
    Row("unknown button label", lambda e: (lambda p: lambda: run_op(MidjourneyActionOperator(
        task_id="a", mj_task_id=p["id"], button="U9")))(e.finished()),
        mj.MidjourneyButtonNotFoundError, "its buttons are: U1, U2, U3, U4", READS),
    Row("customId not on the parent", lambda e: (lambda p: lambda: e.hook.action(
        p["id"], "MJ::JOB::upsample::1::00000000-0000-0000-0000-000000000000"))(e.finished()),
        mj.MidjourneyValidationError, "Check that the customId is one of the parent task's buttons", READS),
    Row("parent not finished", lambda e: (lambda p: lambda: run_op(MidjourneyActionOperator(
        task_id="a", mj_task_id=p, button="U1")))(e.running()),
        mj.MidjourneyValidationError, "wait for it first", READS),
    Row("unknown task id", lambda e: lambda: e.hook.fetch_task("1999999999999999"), mj.MidjourneyNotFoundError,
        "check the id", READS),
    Row("modal needed but no modal input", lambda e: (lambda p: lambda: run_op(MidjourneyActionOperator(
        task_id="a", mj_task_id=p, button="Custom Zoom")))(_upscaled(e)),
        mj.MidjourneyModalRequiredError, "Give this operator modal_prompt", A_JOB),
    # -- the server's refusals ------------------------------------------------------------------------------
    Row("banned prompt (code 24)", lambda e: lambda: e.hook.imagine("a banned-word fox"),
        mj.MidjourneyBannedPromptError, "Rephrase the prompt", READS),
    Row("queue full (code 23)", lambda e: (e.emu.configure(concurrency=1, queue_limit=0, job_seconds=30),
                                           e.hook.imagine("the one running job"),
                                           lambda: e.hook_for(e.emu.base_url, conn_id="mj_no_retry",
                                                              max_retries=0).imagine("one too many"))[-1],
        mj.MidjourneyQueueFullError, "an Airflow pool", READS),
    Row("job ends in FAILURE", lambda e: (lambda j: lambda: e.hook.wait_for_task(
        j, poll_interval=0.05, deadline=time.time() + 10))(e.hook.imagine("an emulator-fail fox").mj_task_id),
        mj.MidjourneyTaskFailedError, "Fix the prompt or inputs", A_JOB),
    Row("deadline passed", lambda e: (lambda j: lambda: e.hook.wait_for_task(j, poll_interval=0.05,
                                                                             deadline=time.time()))(e.running()),
        mj.MidjourneyTimeoutError, "rather than submitting again", A_JOB),
    # -- connection and server ------------------------------------------------------------------------------
    Row("wrong key", lambda e: lambda: e.hook_for(e.emu.base_url, "sk-wrong", conn_id="mj_wrong").imagine("a fox"),
        mj.MidjourneyAuthError, "Check the password (API key) of connection 'mj_wrong'", READS),
    Row("missing connection", lambda e: lambda: MidjourneyHook(midjourney_conn_id="mj_nowhere").fetch_task("1"),
        mj.MidjourneyConfigurationError, "Create it in Admin > Connections"),
    Row("bad base URL scheme", lambda e: lambda: e.hook_for("ftp://relay.example.com", conn_id="mj_ftp").fetch_task("1"),
        mj.MidjourneyConfigurationError, "must be http or https"),
    Row("credentials in the base URL", lambda e: lambda: e.hook_for(
        "https://user:pw@relay.example.com", conn_id="mj_creds").fetch_task("1"),
        mj.MidjourneyConfigurationError, "put the API key in the password field"),
    Row("bad speed mode", lambda e: lambda: e.hook_for(e.emu.base_url, conn_id="mj_speed", speed_mode="ultra")
        .fetch_task("1"), mj.MidjourneyConfigurationError, "it must be one of fast, relax, turbo"),
    Row("bad auth header style", lambda e: lambda: e.hook_for(e.emu.base_url, conn_id="mj_auth", auth_style="basic")
        .fetch_task("1"), mj.MidjourneyConfigurationError, "it must be one of bearer, mj-api-secret"),
    Row("timeout that is not a number", lambda e: lambda: e.hook_for(e.emu.base_url, conn_id="mj_to", timeout="soon")
        .fetch_task("1"), mj.MidjourneyConfigurationError, "must be a number"),
    Row("API key with a line break", lambda e: lambda: e.hook_for(e.emu.base_url, "sk-abc\ndef", conn_id="mj_nl")
        .fetch_task("1"), mj.MidjourneyConfigurationError, "paste it again"),
    Row("operator poll_interval negative", lambda e: lambda: MidjourneyImagineOperator(
        task_id="i", prompt="a fox", poll_interval=-1), mj.MidjourneyValidationError, "positive number of seconds"),
    Row("non-JSON reply", lambda e: lambda: e.canned(200, "OK").fetch_task("1320098173412546"),
        mj.MidjourneyServerError, "it must be the API server, not a web page", READS),
    Row("HTML error page from a proxy (read)", lambda e: lambda: e.canned(
        502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"})
        .fetch_task("1320098173412546"), mj.MidjourneyServerError, "Airflow's task retries will try again", READS),
    Row("HTML error page from a proxy (submit)", lambda e: lambda: e.canned(
        502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {"Content-Type": "text/html"})
        .imagine("a fox", state="run-7"), mj.MidjourneySubmitUncertainError, "look for the job", READS),
    Row("base URL of a web site, not the API", lambda e: lambda: e.canned(
        404, b"<html>Not Found</html>", {"Content-Type": "text/html"}).fetch_task("1320098173412546"),
        mj.MidjourneyNotFoundError, "task 1320098173412546 does not exist", READS),
    Row("relay out of quota", lambda e: lambda: e.canned(
        400, {"description": "quota not enough", "type": "upstream_error", "code": "quota_not_enough"})
        .imagine("a fox"), mj.MidjourneyAuthError, "has no access or quota", READS),
    Row("image link that is a web page", lambda e: (lambda h: lambda: h.download_image(
        h.config.base_url + "/cat.png", str(e.tmp / "cat.png")))(e.canned(200, b"<html>a page</html>",
                                                                          {"Content-Type": "text/html"})),
        mj.MidjourneyServerError, "instead of an image", READS),
]


def _ids(rows):
    return [row.id for row in rows]


def test_the_table_has_at_least_thirty_distinct_bad_inputs():
    assert len({row.id for row in ROWS}) == len(ROWS) >= 30


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_bad_input_gives_a_specific_error_that_says_what_to_do(row, emulator, canned, tmp_path, monkeypatch):
    emulator.configure(api_key=KEY, job_seconds=0.2)
    env = Env(emulator, canned, tmp_path, monkeypatch)
    bad_call = row.make(env)
    before = emulator.counters()

    with pytest.raises(mj.MidjourneyError) as info:
        bad_call()

    after = emulator.counters()
    assert type(info.value) is row.error, f"{type(info.value).__name__}: {info.value}"
    assert row.advice in str(info.value), str(info.value)
    assert KEY not in str(info.value)
    if row.reaches == NOTHING:
        assert after["requests"] == before["requests"], "refused locally, yet a request was sent"
    elif row.reaches == READS:
        assert after["submits"] == before["submits"], "no job may be accepted for this mistake"
