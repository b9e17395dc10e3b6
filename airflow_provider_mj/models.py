"""The one typed model of the Midjourney task API, shared by the hook, operators, trigger and emulator.

Everything that reads or writes the wire format goes through this module: the task object, the
submit envelope, the status enum and the table of buttons and customIds. Nothing else in the
package keeps a second copy of any of them.

This module is imported at DAG-parse time (through the operators), so it imports only the
standard library at import time; pendulum (an Airflow dependency) is loaded when a task's times
are first read as dates.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pendulum


class TaskStatus(str, enum.Enum):
    """A Midjourney task's ``status``. Unknown values parse to :attr:`UNKNOWN` (still running)."""

    NOT_START = "NOT_START"
    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    MODAL = "MODAL"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCEL = "CANCEL"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: Any) -> TaskStatus:
        """Map a raw status string to the enum; anything unrecognised is ``UNKNOWN``."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            return cls.UNKNOWN


class TaskOutcome(str, enum.Enum):
    """What a waiter should do with a task it just read: the single definition of "done"."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RUNNING = "running"


def task_outcome(task: MidjourneyTask) -> TaskOutcome:
    """Decide whether ``task`` is done, failed or still running.

    The blocking wait, the sensor and the trigger all call this, so they always agree.
    A status the protocol does not know (or a relay's lagging, odd value) counts as running;
    the caller's deadline is what stops a wait that never ends.
    """
    status = task.status
    if status is TaskStatus.SUCCESS:
        return TaskOutcome.SUCCEEDED
    if status in (TaskStatus.FAILURE, TaskStatus.CANCEL):
        return TaskOutcome.FAILED
    return TaskOutcome.RUNNING


# ---------------------------------------------------------------------------------------------
# Buttons and customIds: the one table.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ButtonKind:
    """One row of the buttons table: how a customId looks and what pressing it does."""

    name: str
    #: Canonical label users type (``button="Zoom Out 2x"``); ``{n}`` is the index.
    label: str
    #: The action the resulting task has (``UPSCALE``, ``VARIATION``...), or None if no task.
    action: str | None
    #: Regex matching the customId; named groups ``n`` (index) and ``hash``.
    pattern: str
    #: Template to build the customId; ``{n}`` and ``{hash}``.
    template: str
    emoji: str = ""
    #: True when pressing it always answers code 21 and waits for ``/submit/modal``.
    always_modal: bool = False
    #: True when ``enableRemix`` makes it answer code 21 as well.
    remixable: bool = False
    #: The label the server itself shows (real servers show "" for emoji-only buttons).
    server_label: str | None = None
    #: Extra names a user may type for it (matched case-insensitively).
    aliases: tuple[str, ...] = ()


_H = r"(?P<hash>[0-9A-Za-z-]+)"


def _pan_button(direction: str, arrow: str) -> ButtonKind:
    """The four pan buttons differ only in their direction (and arrow emoji)."""
    name = f"pan_{direction}"
    return ButtonKind(name, f"Pan {direction.title()}", "PAN", rf"^MJ::JOB::{name}::(?P<n>\d+)::{_H}::SOLO$",
                      f"MJ::JOB::{name}::1::{{hash}}::SOLO", emoji=f"{arrow}\ufe0f", remixable=True,
                      server_label="", aliases=(name, f"{arrow}\ufe0f", arrow))


BUTTON_KINDS: tuple[ButtonKind, ...] = (
    ButtonKind("upsample", "U{n}", "UPSCALE", rf"^MJ::JOB::upsample::(?P<n>[1-4])::{_H}$",
               "MJ::JOB::upsample::{n}::{hash}"),
    ButtonKind("variation", "V{n}", "VARIATION", rf"^MJ::JOB::variation::(?P<n>[1-4])::{_H}$",
               "MJ::JOB::variation::{n}::{hash}", remixable=True),
    ButtonKind("reroll", "reroll", "REROLL", rf"^MJ::JOB::reroll::0::{_H}::SOLO$",
               "MJ::JOB::reroll::0::{hash}::SOLO", emoji="\U0001f504", remixable=True,
               server_label="", aliases=("\U0001f504", "re-roll", "redo")),
    ButtonKind("upscale_subtle", "Upscale (Subtle)", "UPSCALE_HD",
               rf"^MJ::JOB::upsample_v\d+_2x_subtle::(?P<n>\d+)::{_H}::SOLO$",
               "MJ::JOB::upsample_v6_2x_subtle::1::{hash}::SOLO"),
    ButtonKind("upscale_creative", "Upscale (Creative)", "UPSCALE_HD",
               rf"^MJ::JOB::upsample_v\d+_2x_creative::(?P<n>\d+)::{_H}::SOLO$",
               "MJ::JOB::upsample_v6_2x_creative::1::{hash}::SOLO"),
    ButtonKind("vary_subtle", "Vary (Subtle)", "VARIATION",
               rf"^MJ::JOB::low_variation::(?P<n>\d+)::{_H}::SOLO$",
               "MJ::JOB::low_variation::1::{hash}::SOLO", remixable=True),
    ButtonKind("vary_strong", "Vary (Strong)", "VARIATION",
               rf"^MJ::JOB::high_variation::(?P<n>\d+)::{_H}::SOLO$",
               "MJ::JOB::high_variation::1::{hash}::SOLO", remixable=True),
    ButtonKind("vary_region", "Vary (Region)", "INPAINT", rf"^MJ::Inpaint::(?P<n>\d+)::{_H}::SOLO$",
               "MJ::Inpaint::1::{hash}::SOLO", always_modal=True),
    ButtonKind("zoom_out_2x", "Zoom Out 2x", "ZOOM", rf"^MJ::Outpaint::50::(?P<n>\d+)::{_H}::SOLO$",
               "MJ::Outpaint::50::1::{hash}::SOLO"),
    ButtonKind("zoom_out_1_5x", "Zoom Out 1.5x", "ZOOM", rf"^MJ::Outpaint::75::(?P<n>\d+)::{_H}::SOLO$",
               "MJ::Outpaint::75::1::{hash}::SOLO"),
    ButtonKind("custom_zoom", "Custom Zoom", "ZOOM", rf"^MJ::CustomZoom::{_H}$",
               "MJ::CustomZoom::{hash}", always_modal=True),
    *(_pan_button(direction, arrow) for direction, arrow in
      (("left", "\u2b05"), ("right", "\u27a1"), ("up", "\u2b06"), ("down", "\u2b07"))),
    ButtonKind("favorite", "Favorite", None, rf"^MJ::BOOKMARK::{_H}$", "MJ::BOOKMARK::{hash}",
               emoji="\u2764\ufe0f", server_label="", aliases=("bookmark", "\u2764\ufe0f")),
    ButtonKind("describe_pick", "{n}", "IMAGINE", r"^MJ::Job::PicReader::(?P<n>[1-4])$",
               "MJ::Job::PicReader::{n}"),
    ButtonKind("shorten_pick", "{n}", "IMAGINE", rf"^MJ::Job::PromptAnalyzer::{_H}::(?P<n>[1-5])$",
               "MJ::Job::PromptAnalyzer::{hash}::{n}"),
)

_COMPILED = tuple((kind, re.compile(kind.pattern)) for kind in BUTTON_KINDS)
BUTTON_KINDS_BY_NAME = {kind.name: kind for kind in BUTTON_KINDS}

#: The buttons a finished task of each action carries (kind name, indexes), in display order.
GRID_BUTTONS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("upsample", (1, 2, 3, 4)),
    ("reroll", (0,)),
    ("variation", (1, 2, 3, 4)),
)
#: An upscaled image: one button of each of these kinds (index 1).
UPSCALED_BUTTONS: tuple[tuple[str, tuple[int, ...]], ...] = tuple((name, (1,)) for name in (
    "upscale_subtle", "upscale_creative", "vary_subtle", "vary_strong", "vary_region", "zoom_out_2x",
    "zoom_out_1_5x", "custom_zoom", "pan_left", "pan_right", "pan_up", "pan_down", "favorite",
))
BUTTONS_BY_ACTION: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    "IMAGINE": GRID_BUTTONS,
    "VARIATION": GRID_BUTTONS,
    "REROLL": GRID_BUTTONS,
    "BLEND": GRID_BUTTONS,
    "ZOOM": GRID_BUTTONS,
    "PAN": GRID_BUTTONS,
    "INPAINT": GRID_BUTTONS,
    "UPSCALE": UPSCALED_BUTTONS,
    "UPSCALE_HD": (("favorite", (1,)),),
    "DESCRIBE": (("describe_pick", (1, 2, 3, 4)),),
    "SHORTEN": (("shorten_pick", (1, 2, 3, 4, 5)),),
}


@dataclass(frozen=True)
class ParsedCustomId:
    """What a customId means: which button kind, which grid image, which parent message."""

    kind: ButtonKind
    index: int
    message_hash: str | None

    @property
    def label(self) -> str:
        return self.kind.label.format(n=self.index)


def parse_custom_id(custom_id: str) -> ParsedCustomId | None:
    """Recognise a customId from the table; ``None`` when it is not one we know."""
    for kind, regex in _COMPILED:
        m = regex.match(custom_id or "")
        if m:
            groups = m.groupdict()
            index = int(groups["n"]) if groups.get("n") else 0
            return ParsedCustomId(kind=kind, index=index, message_hash=groups.get("hash"))
    return None


def can_open_modal(custom_id: str, enable_remix: bool | None = False) -> bool:
    """Whether pressing ``custom_id`` can leave a task waiting in MODAL (always, or with remix).

    An unknown customId may, when remix is asked for: we cannot tell, so we assume it can.
    """
    parsed = parse_custom_id(custom_id)
    if parsed is None:
        return bool(enable_remix)
    return parsed.kind.always_modal or (parsed.kind.remixable and bool(enable_remix))


def button_creates_task(custom_id: str) -> bool:
    """Whether pressing ``custom_id`` creates a task (Favorite does not); unknown customIds are assumed to."""
    parsed = parse_custom_id(custom_id)
    return parsed is None or parsed.kind.action is not None


def build_custom_id(kind_name: str, message_hash: str, index: int = 1) -> str:
    """Build the customId of a button kind for a message hash (used by the emulator)."""
    return BUTTON_KINDS_BY_NAME[kind_name].template.format(n=index, hash=message_hash)


@dataclass(frozen=True)
class Button:
    """One button of a finished task."""

    custom_id: str
    label: str = ""
    emoji: str = ""
    style: int = 2
    type: int = 2

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Button:
        """Parse one button; fields of the wrong type read as absent, never an exception."""
        return cls(
            custom_id=_as_text(data.get("customId")).strip(),
            label=_as_text(data.get("label")),
            emoji=_as_text(data.get("emoji")),
            style=_as_int(data.get("style"), 2),
            type=_as_int(data.get("type"), 2),
        )

    def to_api(self) -> dict[str, Any]:
        return {"customId": self.custom_id, "emoji": self.emoji, "label": self.label,
                "style": self.style, "type": self.type}

    @classmethod
    def for_kind(cls, kind_name: str, message_hash: str, index: int = 1) -> Button:
        """The button as a real server shows it (emoji-only buttons have an empty label)."""
        kind = BUTTON_KINDS_BY_NAME[kind_name]
        shown = kind.server_label if kind.server_label is not None else kind.label.format(n=index)
        return cls(custom_id=build_custom_id(kind_name, message_hash, index), label=shown,
                   emoji=kind.emoji)

    @property
    def display_label(self) -> str:
        """A non-empty name for this button.

        Servers often send an empty label (reroll, pan, favorite) and some relays blank them all,
        so the name is derived from the customId whenever we recognise it, else the server's label
        or emoji, else the customId itself.
        """
        parsed = parse_custom_id(self.custom_id)
        if parsed is not None:
            return parsed.label
        return self.label or self.emoji or self.custom_id

    def names(self) -> set[str]:
        """Every name a user may use for this button, normalised."""
        names = {self.display_label, self.label, self.emoji}
        parsed = parse_custom_id(self.custom_id)
        if parsed is not None:
            names.update(parsed.kind.aliases)
            names.add(parsed.kind.name)
        return {_norm(n) for n in names if n}


def _norm(label: str) -> str:
    return " ".join(str(label).replace("\ufe0f", "").split()).casefold()


def buttons_for_action(action: str, message_hash: str) -> list[Button]:
    """The buttons a finished task of ``action`` carries (used by the emulator)."""
    out: list[Button] = []
    for kind_name, indexes in BUTTONS_BY_ACTION.get(action, ()):
        for index in indexes:
            out.append(Button.for_kind(kind_name, message_hash, index))
    return out


# ---------------------------------------------------------------------------------------------
# The task object and the submit envelope.
# ---------------------------------------------------------------------------------------------


def _as_int(value: Any, default: int | None = None) -> int | None:
    """A whole number from a JSON number or numeric string; anything else (bools too) is ``default``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return default
    try:
        return int(value) if not isinstance(value, str) else int(float(value.strip()))
    except (ValueError, OverflowError):  # "abc", NaN, infinity
        return default


def _as_text(value: Any) -> str:
    """A text field: a string as is; any other type (number, list, object...) reads as absent."""
    return value if isinstance(value, str) else ""


def _as_id(value: Any) -> str | None:
    """A task id: a non-blank string or a whole JSON number (some servers send ids as numbers)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


#: Later than this (year 9999, in epoch ms) is not a time any server means.
_MAX_EPOCH_MS = 253_402_300_799_999


def _as_time(value: Any) -> int | None:
    """Epoch milliseconds; null, 0, negative or absurd values mean "not yet"."""
    number = _as_int(value)
    return number if number is not None and 0 < number <= _MAX_EPOCH_MS else None


def _as_datetime(epoch_ms: int | None) -> pendulum.DateTime | None:
    """Epoch milliseconds as a UTC :class:`pendulum.DateTime`; None stays None ("not yet")."""
    if not epoch_ms:
        return None
    import pendulum

    return pendulum.from_timestamp(epoch_ms / 1000.0, tz="UTC")


@dataclass
class MidjourneyTask:
    """A Midjourney task as ``/mj/task/{id}/fetch`` returns it, tolerant of every server's quirks.

    ``raw`` keeps the object exactly as the API returned it; :meth:`to_dict` gives it back, so
    operators can return "the finished task as the API returned it".
    """

    id: str
    status: TaskStatus
    raw_status: str = ""
    action: str = ""
    prompt: str = ""
    prompt_en: str = ""
    description: str = ""
    state: str | None = None
    submit_time: int | None = None
    start_time: int | None = None
    finish_time: int | None = None
    progress: str = ""
    image_url: str = ""
    fail_reason: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    buttons: list[Button] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> MidjourneyTask:
        """Parse a task object, tolerant of every field: never an exception for a JSON object.

        Missing or null fields get empty values, and so does a field of the wrong type (a number
        where text belongs, a list where an object belongs...): ``"buttons": 5`` reads as no
        buttons, ``"status": {}`` as an unknown (still running) status. Ids may be strings or
        whole numbers; times may be numbers or numeric strings.
        """
        if not isinstance(data, dict):
            raise TypeError(f"a Midjourney task must be a JSON object, got {type(data).__name__}")
        raw_status = _as_text(data.get("status")).strip()
        properties = data.get("properties")
        buttons = data.get("buttons")
        state = data.get("state")
        return cls(
            id=_as_id(data.get("id")) or "",
            status=TaskStatus.parse(raw_status),
            raw_status=raw_status,
            action=_as_text(data.get("action")).strip(),
            prompt=_as_text(data.get("prompt")),
            prompt_en=_as_text(data.get("promptEn")),
            description=_as_text(data.get("description")),
            state=state if isinstance(state, str) else None,
            submit_time=_as_time(data.get("submitTime")),
            start_time=_as_time(data.get("startTime")),
            finish_time=_as_time(data.get("finishTime")),
            progress=_as_text(data.get("progress")).strip(),
            image_url=_as_text(data.get("imageUrl")).strip(),
            fail_reason=_as_text(data.get("failReason")),
            properties=dict(properties) if isinstance(properties, dict) else {},
            buttons=[Button.from_api(b) for b in buttons if isinstance(b, dict)] if isinstance(buttons, list) else [],
            raw=dict(data),
        )

    def to_dict(self) -> dict[str, Any]:
        """The task as the API returned it (JSON-serialisable), for XCom.

        Two changes: ``id`` is always a string (some servers send it as a JSON number), so
        ``task["id"]`` equals the ``mj_task_id`` XCom and can be passed on as is; and the hook
        makes a relative ``imageUrl`` absolute when it reads a task (some relays send
        ``/mj/image/<id>``), so the URL can be opened or passed to describe as is.
        """
        if self.raw:
            out = dict(self.raw)
            if self.id:
                out["id"] = self.id
            return out
        return {
            "id": self.id, "action": self.action, "status": self.raw_status or self.status.value,
            "prompt": self.prompt, "promptEn": self.prompt_en, "description": self.description,
            "state": self.state, "submitTime": self.submit_time, "startTime": self.start_time,
            "finishTime": self.finish_time, "progress": self.progress, "imageUrl": self.image_url,
            "failReason": self.fail_reason, "properties": dict(self.properties),
            "buttons": [b.to_api() for b in self.buttons],
        }

    @property
    def outcome(self) -> TaskOutcome:
        return task_outcome(self)

    @property
    def submitted_at(self) -> pendulum.DateTime | None:
        """When the job was submitted (``submitTime``), timezone-aware UTC; None when not given."""
        return _as_datetime(self.submit_time)

    @property
    def started_at(self) -> pendulum.DateTime | None:
        """When the job started running (``startTime``), timezone-aware UTC; None until then."""
        return _as_datetime(self.start_time)

    @property
    def finished_at(self) -> pendulum.DateTime | None:
        """When the job ended (``finishTime``), timezone-aware UTC; None while it runs."""
        return _as_datetime(self.finish_time)

    @property
    def duration(self) -> pendulum.Duration | None:
        """How long the job ran, from ``startTime`` to ``finishTime``; None until both are known.

        The time it waited in the queue before that is ``started_at - submitted_at``.
        """
        started, finished = self.started_at, self.finished_at
        if started is None or finished is None:
            return None
        return finished - started

    @property
    def progress_percent(self) -> int | None:
        """``"45%"`` -> 45; None when the server gave nothing usable."""
        m = re.search(r"\d+", self.progress or "")
        return int(m.group()) if m else None

    @property
    def message_hash(self) -> str | None:
        return _as_text(self.properties.get("messageHash")).strip() or None

    @property
    def final_prompt(self) -> str:
        return _as_text(self.properties.get("finalPrompt")) or self.prompt_en or self.prompt or ""

    def custom_ids(self) -> dict[str, str]:
        """Button label -> customId for every button (labels derived when the server sent none)."""
        out: dict[str, str] = {}
        for button in self.buttons:
            if button.custom_id:
                out.setdefault(button.display_label, button.custom_id)
        return out

    def button_labels(self) -> list[str]:
        return [b.display_label for b in self.buttons if b.custom_id]

    def find_button(self, label: str) -> Button | None:
        """The button a user means by ``label`` (``U1``, ``reroll``, ``Zoom Out 2x``...), or None."""
        wanted = _norm(label)
        for button in self.buttons:
            if button.custom_id and wanted in button.names():
                return button
        return None

    def has_custom_id(self, custom_id: str) -> bool:
        return any(b.custom_id == custom_id for b in self.buttons)

    def describe_prompts(self) -> list[str]:
        """The four prompts of a DESCRIBE task (``1️⃣ ...\\n\\n2️⃣ ...``), as plain strings."""
        return split_numbered_prompts(self.final_prompt)

    def shortened_prompts(self) -> list[str]:
        """The prompts listed under "Shortened prompts" in a SHORTEN task's text."""
        text = _as_text(self.properties.get("finalPrompt")) or self.description
        return split_shortened_prompts(text)


_KEYCAP = re.compile(r"(?:^|\n)\s*(?:[1-9]\ufe0f?\u20e3|[1-9][.)])\s*")


def split_numbered_prompts(text: str) -> list[str]:
    """Split ``"1️⃣ a ...\\n\\n2️⃣ b ..."`` into ``["a ...", "b ..."]``."""
    if not text:
        return []
    parts = _KEYCAP.split(text)
    prompts = [p.strip() for p in parts if p and p.strip()]
    return prompts


def split_shortened_prompts(text: str) -> list[str]:
    """Extract the numbered lines after a "Shortened prompts" heading (or anywhere, if none)."""
    if not text:
        return []
    lower = text.lower()
    idx = lower.find("shortened prompts")
    body = text[idx + len("shortened prompts"):] if idx >= 0 else text
    prompts: list[str] = []
    for line in body.splitlines():
        m = re.match(r"\s*(?:[1-9]\ufe0f?\u20e3|[1-9][.)])\s*(.+)", line)
        if m and m.group(1).strip():
            prompts.append(m.group(1).strip())
    return prompts


@dataclass(frozen=True)
class SubmitResult:
    """The envelope of a submit route, parsed the same way for both dialects.

    Only accepted jobs become a ``SubmitResult`` (codes 1, 21, 22); the hook raises a
    :mod:`~airflow_provider_mj.exceptions` error for every other code.
    """

    code: int
    description: str
    mj_task_id: str | None
    properties: dict[str, Any] = field(default_factory=dict)

    SUBMITTED = 1
    MODAL = 21
    QUEUED = 22

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> SubmitResult:
        return cls(
            code=_as_int(data.get("code"), -1),
            description=_as_text(data.get("description")),
            mj_task_id=_as_id(data.get("result")),
            properties=dict(data.get("properties") or {}) if isinstance(data.get("properties"), dict) else {},
        )

    @property
    def needs_modal(self) -> bool:
        """Code 21: the task waits in status MODAL for ``/mj/submit/modal``."""
        return self.code == self.MODAL

    @property
    def queued(self) -> bool:
        return self.code == self.QUEUED

    @property
    def number_of_queues(self) -> int | None:
        return _as_int(self.properties.get("numberOfQueues"))
