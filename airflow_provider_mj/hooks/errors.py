"""What a reply's code means, and the error a user reads for it.

The code tables say what each server code means (an int of midjourney-proxy, a relay's string
name), :func:`error_for_meaning` builds the matching
:class:`~airflow_provider_mj.exceptions.MidjourneyError` with a message that says what to do next,
and :func:`uncertain_error` is the one for a submit the server may have taken (never sent again).
:class:`RequestContext` carries what a request was for into every message, and blanks the API key
out of any server text quoted there. :mod:`~airflow_provider_mj.hooks.replies` decides which
meaning a reply has; the transport and the downloads use the same context and errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow_provider_mj.common import DEFAULT_CONN_ID
from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyBannedPromptError,
    MidjourneyError,
    MidjourneyNotFoundError,
    MidjourneyQueueFullError,
    MidjourneyRateLimitError,
    MidjourneyServerError,
    MidjourneySubmitUncertainError,
    MidjourneyValidationError,
)


#: Relay error names (string ``code``) by the error they mean. Anything else is judged by status.
_NAMED_CODES: dict[str, str] = {
    "task_not_found": "not_found",
    "task_no_found": "not_found",  # new-api's spelling on fetch and image-seed
    "midjourney_task_not_found": "not_found",
    "task_status_not_success": "validation",
    "bind_request_body_failed": "validation",
    "prompt_is_required": "validation",
    "quota_not_enough": "auth",
    "insufficient_user_quota": "auth",
    "pre_consume_token_quota_failed": "auth",
    "user_quota_not_enough": "auth",
    "token_quota_not_enough": "auth",
    "access_denied": "auth",
    "unauthorized": "auth",
    "invalid_api_key": "auth",
    "queue_full": "queue_full",
    "banned_prompt": "banned",
    "sensitive_words_detected": "banned",
    "get_channel_failed": "unavailable",
    "no_available_channel": "unavailable",
    "model_not_found": "unavailable",
    "rate_limit_exceeded": "rate_limit",
    "do_request_failed": "lost",
    "read_response_body_failed": "lost",
    "unmarshal_response_body_failed": "lost",
    "bad_response_status_code": "lost",
}


_INT_CODES: dict[int, str] = {3: "not_found", 4: "validation", 9: "queue_full", 23: "queue_full", 24: "banned"}


@dataclass(frozen=True)
class RequestContext:
    """What a request was for, for error messages; ``secret`` (hidden from repr) is only blanked out."""

    kind: str  # "submit", "task", "tasks", "seed", "download"
    route: str
    conn_id: str = DEFAULT_CONN_ID
    mj_task_id: str | None = None
    prompt: str | None = None
    secret: str | None = field(default=None, repr=False)

    @property
    def is_submit(self) -> bool:
        return self.kind == "submit"

    @property
    def what(self) -> str:
        """The request in words, for messages: "submit to /mj/submit/imagine", "image download"..."""
        if self.kind == "submit":
            return f"submit to /mj/{self.route}"
        return f"request to /mj/{self.route}" if self.kind != "download" else "image download"

    def scrub(self, text: str | None) -> str:
        """``text`` with the secret blanked out (also in its URL-encoded form)."""
        text = "" if text is None else str(text)
        if self.secret:
            for form in {self.secret, quote(self.secret, safe="")}:
                if form in text:
                    text = text.replace(form, "***")
        return text

    def scrub_json(self, value: Any) -> Any:
        """A decoded JSON reply with the secret blanked out of every string in it, keys included.

        Applied to every reply before anything reads it, so no server-provided text (a
        ``failReason``, a ``bannedWord``, a description, an ``imageUrl``...) can carry the key
        into an exception, a log line or an XCom.
        """
        if not self.secret:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, list):
            return [self.scrub_json(item) for item in value]
        if isinstance(value, dict):
            return {self.scrub(key) if isinstance(key, str) else key: self.scrub_json(item)
                    for key, item in value.items()}
        return value


def body_snippet(body: bytes, ctx: RequestContext, limit: int = 60) -> str:
    """The start of a reply body, scrubbed of the key and of control characters, for a message."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join(ctx.scrub(text).split())
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def code_meaning(code: Any) -> tuple[int | None, str | None]:
    """(numeric code, meaning) of a ``code`` field; numeric strings count as numbers."""
    if code is None or isinstance(code, bool):
        return None, None
    if isinstance(code, (int, float)):
        number = int(code)
        return number, _INT_CODES.get(number)
    text = str(code).strip()
    if re.fullmatch(r"-?\d+", text):
        number = int(text)
        return number, _INT_CODES.get(number)
    name = text.lower()
    meaning = _NAMED_CODES.get(name)
    if meaning is None:
        if name.endswith("_not_found"):
            meaning = "not_found"
        elif name.endswith(("_is_required", "_invalid")) or name.startswith("invalid_"):
            meaning = "validation"
        elif "quota" in name:
            meaning = "auth"
        elif "banned" in name or "sensitive" in name:
            meaning = "banned"
    return None, meaning


def uncertain_error(ctx: RequestContext, reason: str, **kw: Any) -> MidjourneySubmitUncertainError:
    """The error for a submit the server may have accepted: never retried, says how to find the job."""
    return MidjourneySubmitUncertainError(
        f"The {ctx.what} may have been accepted: {reason}. It was not retried, because submitting "
        "again could create (and bill) the same job twice. Before submitting again, look for the job: "
        "if you set `state`, check the tasks of this account for that tag (the server echoes it on the "
        "task), or ask the server's operator.",
        prompt=ctx.prompt,
        mj_task_id=ctx.mj_task_id,
        **kw,
    )


def _answer(code: Any, http_status: int) -> str:
    """What the server said, in words that do not contradict "not found" (a 200 here meant "no task")."""
    if code is not None:
        return f"code {code!r} with HTTP {http_status}"
    if http_status == 204:
        return "HTTP 204, no content"
    if 200 <= http_status < 300:
        return f"HTTP {http_status} with an empty task (null)"
    return f"HTTP {http_status}"


def error_for_meaning(
    meaning: str | None,
    *,
    ctx: RequestContext,
    code: Any,
    http_status: int,
    description: str,
    properties: dict[str, Any],
    retry_after: float | None = None,
) -> MidjourneyError:
    num = code if isinstance(code, int) else None
    code_text = f"code {code!r}" if code is not None else f"HTTP {http_status}"
    kw: dict[str, Any] = {
        "code": num,
        "http_status": http_status,
        "description": ctx.scrub(description),
        "mj_task_id": ctx.mj_task_id,
        "prompt": ctx.prompt,
        "properties": properties,
    }
    if meaning == "not_found":
        if ctx.kind == "submit" and ctx.route in ("submit/imagine", "submit/blend", "submit/describe", "submit/shorten"):
            hint = "the server has no Midjourney account available for this job (code 3); try again later or ask its operator"
        elif ctx.mj_task_id:
            hint = (
                f"task {ctx.mj_task_id} does not exist on this server; check the id and that the connection "
                "points at the server (and speed mode) that created it"
            )
        else:
            hint = "the server has no such task"
        return MidjourneyNotFoundError(f"Not found: {hint} (the server answered {_answer(code, http_status)}).", **kw)
    if meaning == "validation":
        hint = ""
        if ctx.route == "submit/action":
            # The usual causes: a customId copied from another task, or a parent not finished.
            hint = (" Check that the customId is one of the parent task's buttons (or pass a label such as "
                    "'U1') and that the parent task ended in SUCCESS.")
        return MidjourneyValidationError(
            f"The server rejected the {ctx.what} as invalid ({code_text}). Fix the input; retrying will not help."
            + hint,
            **kw,
        )
    if meaning == "queue_full":
        return MidjourneyQueueFullError(
            f"The Midjourney queue is full ({code_text}). Try again later, or run fewer jobs at once "
            "(an Airflow pool on the Midjourney tasks does that).",
            **kw,
        )
    if meaning == "banned":
        word = properties.get("bannedWord") or properties.get("banned_word")
        return MidjourneyBannedPromptError(
            "The prompt was refused because it contains a banned word"
            + (f" ({word!r})" if word else "")
            + ". Rephrase the prompt without it; retrying will not help.",
            banned_word=str(word) if word else None,
            **kw,
        )
    if meaning == "auth":
        return MidjourneyAuthError(
            f"The server refused the API key ({code_text}): it is missing, wrong, or has no access or quota. "
            f"Check the password (API key) of connection {ctx.conn_id!r} and its auth_style "
            "('bearer' for relays, 'mj-api-secret' for midjourney-proxy servers).",
            **kw,
        )
    if meaning == "rate_limit":
        return MidjourneyRateLimitError(
            f"The server is rate limiting requests ({code_text}). Run fewer Midjourney tasks at once "
            "(an Airflow pool) or raise max_retries/retry_max_wait on the connection.",
            retry_after=retry_after,
            **kw,
        )
    if meaning == "lost" and ctx.is_submit:
        return uncertain_error(ctx, f"the relay lost its upstream's reply ({code_text})", **{
            k: v for k, v in kw.items() if k not in ("mj_task_id", "prompt")})
    if meaning in ("unavailable", "lost"):
        err = MidjourneyServerError(
            f"The server could not serve the {ctx.what} ({code_text}). This is usually temporary; "
            "Airflow's retries will try again.",
            **kw,
        )
        err.not_accepted = meaning == "unavailable"
        return err
    if 400 <= http_status < 500:
        return MidjourneyValidationError(
            f"The server refused the {ctx.what} ({code_text}, HTTP {http_status}). Check the input; "
            "retrying will not help.",
            **kw,
        )
    if ctx.is_submit and 200 <= http_status < 300:
        return uncertain_error(ctx, f"the server answered an unknown {code_text}", **{
            k: v for k, v in kw.items() if k not in ("mj_task_id", "prompt")})
    return MidjourneyServerError(f"The server answered the {ctx.what} with an unexpected {code_text}.", **kw)
