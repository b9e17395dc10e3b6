"""What the emulator's engine deals in: a submit's outcome (:class:`Accepted` or
:class:`SubmitError`), the fields every submit takes (:class:`Common`), a task (:class:`Job`) and
its state at one instant (:class:`View`), plus the request-field checks the submit handlers share.

The protocol's own request rules come from :mod:`airflow_provider_mj.inputs` (see
:mod:`.engine`); only the error shape (code 4) is the emulator's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_mj import inputs
from airflow_provider_mj.exceptions import MidjourneyValidationError
from airflow_provider_mj.models import MidjourneyTask, TaskOutcome, TaskStatus, task_outcome

from . import images

# ---------------------------------------------------------------------------------------------
# Outcomes of a submit.
# ---------------------------------------------------------------------------------------------


class SubmitError(Exception):
    """A refused submit or read: ``code`` as in PROTOCOL.md, plus the proxy's HTTP status.

    :param relay_reason: set when a relay refuses the request itself, before asking its
        upstream server (new-api checks the prompt and the parent task first): the reason it
        reports, such as ``"prompt_is_required"``. None: a relay passes the upstream server's
        reply through as it came (queue full, banned prompt, most validation).
    """

    def __init__(self, code: int, description: str, *, http_status: int = 200,
                 relay_reason: str | None = None, properties: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.http_status = http_status
        self.relay_reason = relay_reason
        self.properties = properties or {}


def invalid(description: str, relay_reason: str | None = None) -> SubmitError:
    return SubmitError(4, description, relay_reason=relay_reason)


def not_found(what: str = "task", relay_reason: str = "task_not_found") -> SubmitError:
    """No such task. new-api spells the reason ``task_no_found`` on fetch and image-seed."""
    return SubmitError(3, f"{what} not found", http_status=404, relay_reason=relay_reason)


@dataclass
class Accepted:
    """An accepted submit: code 1 (started), 21 (waits for modal) or 22 (queued)."""

    code: int
    task_id: str | None
    description: str
    properties: dict[str, Any] = field(default_factory=dict)
    #: The customId's button kind for actions (the relay decides 21 -> 1 from it).
    kind_name: str | None = None


@dataclass
class Common:
    """Fields every submit route accepts."""

    state: str | None = None
    notify_hook: str | None = None
    bot_type: str | None = None
    account_filter: Any = None
    mode: str = "default"

    def validate(self) -> None:
        if self.state is not None and len(self.state) > inputs.MAX_STATE_LENGTH:
            raise invalid(f"state is longer than {inputs.MAX_STATE_LENGTH} characters")
        if self.notify_hook:
            with as_code_4("notifyHook"):
                inputs.validate_notify_hook(self.notify_hook)
        # A server is stricter than our client, which also accepts other cases and spellings.
        if self.bot_type and self.bot_type not in inputs.BOT_TYPES:
            raise invalid(f"botType must be one of {', '.join(inputs.BOT_TYPES)}")
        if self.account_filter is not None and not isinstance(self.account_filter, dict):
            raise invalid("accountFilter must be an object")


# ---------------------------------------------------------------------------------------------
# The task.
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Job:
    """One task. Its status is derived from the clock (see :meth:`Engine.status_of`)."""

    id: str
    action: str
    prompt: str
    common: Common
    submit_at: float
    message_hash: str
    message_id: str
    #: What the finished task shows: "grid", "single", "hd" (single, twice the size) or None.
    image_kind: str | None = None
    image_seed: str = ""
    #: Size of one picture of the grid (an upscale); grids and HD upscales are twice as large.
    cell: tuple[int, int] = (240, 240)
    #: None while the task waits in MODAL.
    start_at: float | None = None
    duration: float = 0.0
    steps: int = 3
    fail_at: float | None = None
    fail_reason: str = ""
    #: For MODAL tasks: the kind pressed ("vary_region", "custom_zoom", or a remixed one).
    modal_kind: str | None = None
    parent_id: str | None = None
    #: Seed material used when a MODAL task is confirmed.
    seed_parts: tuple[str, ...] = ()
    #: DESCRIBE/SHORTEN: the text shown once the job succeeds.
    result_text: str = ""
    #: DESCRIBE: the image that was described (shown at once).
    input_image_url: str = ""
    #: Serialised JSON of a finished task, per (dialect, base URL): it never changes.
    cache: dict[tuple[bool, str], bytes] = field(default_factory=dict)

    @property
    def end_at(self) -> float | None:
        if self.start_at is None:
            return None
        return self.fail_at if self.fail_at is not None else self.start_at + self.duration

    def image_path(self, preview: int | None = None, fmt: str = "png") -> str:
        """The path (under the base URL) of the task's image, "" when it has none.

        :param preview: a running job's progress percent: the path of its preview at that point.
        :param fmt: the format its name asks for (``png``, ``webp`` or ``jpeg``).
        """
        if not self.image_kind:
            return ""
        cw, ch = self.cell
        if self.image_kind == "grid":
            kind, size = "grid", (2 * cw, 2 * ch)
        elif self.image_kind == "hd":
            kind, size = "single", (2 * cw, 2 * ch)
        else:
            kind, size = "single", (cw, ch)
        if preview is not None:
            kind = images.preview_kind(kind, preview)
        return "/images/" + images.image_name(self.image_seed, kind, *size, fmt)


@dataclass(frozen=True)
class View:
    """A job as seen at one instant."""

    status: str
    progress: str
    start_ms: int | None
    finish_ms: int | None

    @property
    def outcome(self) -> TaskOutcome:
        """What a client decides from this read: the models' one definition of done."""
        return task_outcome(MidjourneyTask(id="", status=TaskStatus.parse(self.status)))



def accepted_reply(task_id: str, ahead: int | None, modal: bool) -> Accepted:
    if modal:
        return Accepted(21, task_id, "Waiting for window confirm")
    if ahead is not None:
        return Accepted(22, task_id, f"In queue, there are {ahead} tasks ahead",
                        {"numberOfQueues": ahead})
    return Accepted(1, task_id, "Submit success")


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


@contextmanager
def as_code_4(name: str) -> Iterator[None]:
    """Answer a rule of :mod:`airflow_provider_mj.inputs` that fails as a server does: code 4."""
    try:
        yield
    except MidjourneyValidationError as err:
        raise invalid(f"{name}: {err}") from None


def is_http_url(value: str) -> bool:
    try:
        inputs.validate_http_url(value, field="url")
    except MidjourneyValidationError:
        return False
    return True


def require_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid("prompt is required", relay_reason="prompt_is_required")
    return prompt.strip()


def as_list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"{name} must be a list of data URLs")
    return value


def check_data_url(value: Any, name: str) -> str:
    """Validate a ``data:image/...;base64,`` URL; a short digest of its bytes."""
    with as_code_4(name):
        _, raw = inputs.parse_data_url(value, field=name)
    return hashlib.sha256(raw).hexdigest()[:16]


def find_word(prompt: str, words: tuple[str, ...]) -> str | None:
    lower = prompt.casefold()
    for word in words:
        if word and word.casefold() in lower:
            return word
    return None

