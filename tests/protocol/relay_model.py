"""What the independent relay (``relay_server.py``) is made of, written from PROTOCOL.md alone.

The switches of every behaviour servers differ in (:class:`Quirks`), the task record, the
buttons and the table of what each button does, the magic words of prompts, and small valid
images. Like the server, it imports nothing from ``airflow_provider_mj``.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import png_bytes

# ---------------------------------------------------------------------------------------------
# Switches
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quirks:
    #: "proxy" (midjourney-proxy: HTTP 200 + code, 404 + code 3) or "relay" (new-api style: HTTP 400
    #: {"description","type","code"}; 22 and 21 rewritten to 1 except inpaint/custom zoom).
    dialect: str = "proxy"
    #: relay only: error ``code`` as a name ("task_not_found") instead of an int.
    string_codes: bool = True
    #: relay only: the ``type`` of the error envelope ("upstream_error" or "new_api_error").
    error_type: str = "upstream_error"
    #: every button label "" and emoji "".
    blank_labels: bool = False
    #: ids as JSON numbers in ``result`` and in the task ``id``.
    numeric_ids: bool = False
    #: startTime/finishTime 0 (not null) until reached; progress null before the job starts.
    zero_times: bool = False
    #: fetch keeps answering the previous status for this many fetches after each status change.
    fetch_lag: int = 0
    #: list-by-condition keeps answering the previous status for this many calls after a change.
    list_lag: int = 0
    #: a just-submitted task is unknown to fetch (and omitted by list) for its first N reads.
    not_found_polls: int = 0
    #: how a proxy says "unknown id" on fetch: "null" (200 null) or "204".
    proxy_unknown: str = "null"
    #: list-by-condition route missing (404).
    no_list_by_condition: bool = False
    #: how list-by-condition misbehaves, if it does: "envelope" (HTTP 200 {"code": 4, "description":
    #: "unsupported route"}), "object" (HTTP 200, a JSON object that is not a list), "405", "500" (every
    #: call fails) or "slow" (answers after list_slow_seconds).
    list_mode: str | None = None
    list_slow_seconds: float = 0.0
    #: proxy only: fetch wraps the task in a success envelope {"code": 1, "result": <task>}, and an
    #: unknown id is {"code": 1, "result": null} (HTTP 200).
    fetch_envelope: bool = False
    #: list-by-condition answers in reverse order of the ids asked for.
    list_shuffle: bool = False
    #: an extra intermediate status between NOT_START and SUBMITTED ("QUEUED", "PENDING"...).
    unknown_status: str | None = None
    #: FAILURE tasks carry progress "" (else "100%").
    failure_progress_empty: bool = False
    #: properties keep only finalPrompt (no messageHash; buttons still carry the hash).
    properties_minimal: bool = False
    #: None: no auth. "bearer" or "mj-api-secret": the header that must carry ``api_key``.
    auth_style: str | None = None
    api_key: str = "relay-test-key"
    #: further keys accepted as well as ``api_key`` (a rotation in progress: old and new both valid).
    accepted_keys: tuple[str, ...] = ()
    #: body of a 401: "empty" (novicezk), "text" (trueai) or "json" (relays).
    unauthorized_body: str = "json"
    #: descriptions in Chinese.
    chinese_descriptions: bool = False
    #: the server lives under this path (a gateway mount, "/gateway"); routes follow it.
    mount: str = ""
    #: proxy only: submits answer code 22 (queued, numberOfQueues) instead of 1.
    queue_codes: bool = False
    #: /submit/modal answers a new task id (else it continues the MODAL task under its own id).
    modal_new_id: bool = False
    #: seconds a job takes from submit to SUCCESS/FAILURE.
    job_seconds: float = 0.4
    #: required speed prefix (e.g. "relax"): requests without it are counted as wrong_prefix.
    expect_speed: str | None = None
    #: NOT FROM PROTOCOL.md (novicezk's ReturnCode.EXISTED): pressing the same button of the same task
    #: twice answers code 21 "task already exists" with the earlier task's id, status and imageUrl.
    existed_21: bool = False
    #: every Nth /mj request is refused by a rate limiter in front of the app: HTTP 429, empty body.
    throttle_every: int = 0
    #: relay only: every Nth submit is refused with HTTP 503 (no upstream channel available).
    unavailable_every: int = 0
    #: the first N ``/mj/submit/modal`` calls are refused with HTTP 429 (a rate limiter that happens
    #: to hit the modal submit, the step after a code 21: what ``throttle_every`` does by chance).
    refuse_modal_submits: int = 0
    #: NOT FROM PROTOCOL.md (a careless server): the key the request presented is echoed into every
    #: free-text field of the reply: description, failReason, promptEn, bannedWord, finalPrompt.
    echo_key: bool = False
    #: NOT FROM PROTOCOL.md (a server that loses jobs): after this many reads showing a task
    #: IN_PROGRESS, fetch and list answer "no such task" for it (0: never) ...
    vanish_after: int = 0
    #: ... for this many reads, after which it is back (0: gone for good).
    vanish_for: int = 0
    #: imageUrl relative to the relay's origin (``/mj/image/<id>``), images served there (behind auth).
    relative_image_urls: bool = False


RELAY_ALL_QUIRKS = Quirks(
    dialect="relay", string_codes=True, blank_labels=True, numeric_ids=True, zero_times=True, fetch_lag=2,
    list_lag=2, list_shuffle=True, unknown_status="QUEUED", failure_progress_empty=True,
    properties_minimal=True, auth_style="bearer", unauthorized_body="json", chinese_descriptions=True,
    mount="/gateway", modal_new_id=True,
)

# ---------------------------------------------------------------------------------------------
# Tiny PNG, data URLs
# ---------------------------------------------------------------------------------------------


def tiny_png(color: tuple[int, int, int] = (30, 120, 200), size: int = 4) -> bytes:
    """A small square PNG, as a relay's CDN would serve it."""
    return png_bytes(width=size, height=size, color=color)


_DATA_URL_RE = re.compile(r"^data:image/(png|jpeg|jpg|webp|gif);base64,([A-Za-z0-9+/=\s]+)$")


def valid_data_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    m = _DATA_URL_RE.match(value)
    if not m:
        return False
    try:
        raw = base64.b64decode(m.group(2), validate=False)
    except Exception:
        return False
    return len(raw) > 8


# ---------------------------------------------------------------------------------------------
# Buttons (from PROTOCOL.md's table)
# ---------------------------------------------------------------------------------------------

GRID_ACTIONS = {"IMAGINE", "VARIATION", "REROLL", "BLEND", "ZOOM", "PAN", "INPAINT"}


def button(custom_id: str, label: str, emoji: str = "") -> dict[str, Any]:
    return {"customId": custom_id, "emoji": emoji, "label": label, "style": 2, "type": 2}


def grid_buttons(h: str) -> list[dict[str, Any]]:
    out = [button(f"MJ::JOB::upsample::{n}::{h}", f"U{n}") for n in range(1, 5)]
    out.append(button(f"MJ::JOB::reroll::0::{h}::SOLO", "", "\U0001f504"))
    out += [button(f"MJ::JOB::variation::{n}::{h}", f"V{n}") for n in range(1, 5)]
    return out


def upscale_buttons(h: str) -> list[dict[str, Any]]:
    return [
        button(f"MJ::JOB::upsample_v6_2x_subtle::1::{h}::SOLO", "Upscale (Subtle)"),
        button(f"MJ::JOB::upsample_v6_2x_creative::1::{h}::SOLO", "Upscale (Creative)"),
        button(f"MJ::JOB::low_variation::1::{h}::SOLO", "Vary (Subtle)"),
        button(f"MJ::JOB::high_variation::1::{h}::SOLO", "Vary (Strong)"),
        button(f"MJ::Inpaint::1::{h}::SOLO", "Vary (Region)"),
        button(f"MJ::Outpaint::50::1::{h}::SOLO", "Zoom Out 2x"),
        button(f"MJ::Outpaint::75::1::{h}::SOLO", "Zoom Out 1.5x"),
        button(f"MJ::CustomZoom::{h}", "Custom Zoom"),
        button(f"MJ::JOB::pan_left::1::{h}::SOLO", "", "\u2b05\ufe0f"),
        button(f"MJ::JOB::pan_right::1::{h}::SOLO", "", "\u27a1\ufe0f"),
        button(f"MJ::JOB::pan_up::1::{h}::SOLO", "", "\u2b06\ufe0f"),
        button(f"MJ::JOB::pan_down::1::{h}::SOLO", "", "\u2b07\ufe0f"),
        button(f"MJ::BOOKMARK::{h}", "", "\u2764\ufe0f"),
    ]


#: (regex, resulting action, always modal, answers 21 with remix). None action: no new task.
ACTION_TABLE: list[tuple[re.Pattern, str | None, bool, bool]] = [
    (re.compile(r"^MJ::JOB::upsample::[1-4]::[\w-]+$"), "UPSCALE", False, False),
    (re.compile(r"^MJ::JOB::variation::[1-4]::[\w-]+$"), "VARIATION", False, True),
    (re.compile(r"^MJ::JOB::reroll::0::[\w-]+::SOLO$"), "REROLL", False, True),
    (re.compile(r"^MJ::JOB::upsample_v\d+_2x_(subtle|creative)::\d+::[\w-]+::SOLO$"), "UPSCALE_HD", False, False),
    (re.compile(r"^MJ::JOB::(low|high)_variation::\d+::[\w-]+::SOLO$"), "VARIATION", False, True),
    (re.compile(r"^MJ::Inpaint::\d+::[\w-]+::SOLO$"), "INPAINT", True, False),
    (re.compile(r"^MJ::Outpaint::(50|75)::\d+::[\w-]+::SOLO$"), "ZOOM", False, False),
    (re.compile(r"^MJ::CustomZoom::[\w-]+$"), "ZOOM", True, False),
    (re.compile(r"^MJ::JOB::pan_(left|right|up|down)::\d+::[\w-]+::SOLO$"), "PAN", False, True),
    (re.compile(r"^MJ::BOOKMARK::[\w-]+$"), None, False, False),
    (re.compile(r"^MJ::Job::PicReader::[1-4]$"), "IMAGINE", False, False),
    (re.compile(r"^MJ::Job::PromptAnalyzer::[\w-]+::[1-5]$"), "IMAGINE", False, False),
]

# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------

FAIL_WORD = "relay-fail"
#: trueai's CANCEL status (PROTOCOL: "trueai adds MODAL and CANCEL").
CANCEL_WORD = "relay-cancel"
BANNED_WORD = "forbidden-word"


_ECHO_FIELDS = {"description", "failReason", "promptEn", "bannedWord", "finalPrompt"}


def echo(value: Any, suffix: str) -> Any:
    """``value`` with ``suffix`` appended to every free-text field (the echo_key quirk)."""
    if isinstance(value, list):
        return [echo(item, suffix) for item in value]
    if isinstance(value, dict):
        return {k: (v + suffix if k in _ECHO_FIELDS and isinstance(v, str) else echo(v, suffix))
                for k, v in value.items()}
    return value


@dataclass
class Task:
    id: str
    action: str
    prompt: str
    state: str | None
    submit_ms: int
    started_at: float  # time.monotonic() when the job's clock started (None while MODAL)
    hash: str = field(default_factory=lambda: str(uuid.uuid4()))
    modal: bool = False
    modal_kind: str | None = None  # "INPAINT" / "ZOOM" / "REMIX"
    fail: bool = False
    cancel: bool = False
    custom_id: str | None = None
    describe_source: str | None = None
    parent: str | None = None
    #: per endpoint ("fetch"/"list"): [served snapshot, polls spent on the pending change]
    views: dict[str, list] = field(default_factory=dict)
    reads: int = 0
    in_progress_reads: int = 0
    #: reads answered "no such task" since the task vanished (vanish_after quirk); None: not vanished.
    gone_reads: int | None = None
