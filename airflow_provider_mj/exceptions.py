"""Errors a DAG author can catch, each saying what went wrong and what to do next.

Every error carries the Midjourney ``code`` (when the server sent one), the HTTP status, the
server's own description and, where known, the Midjourney task id. Errors that retrying cannot
fix (bad input, banned prompt, bad key, a failed job) derive from Airflow's
``AirflowFailException`` so Airflow fails the task at once instead of spending retries on them;
the rest derive from ``AirflowException`` and are retried by Airflow's normal ``retries``.

No message ever contains the API key: the hook builds messages from the request path, never
from headers.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException


def _shorten(text: str | None, limit: int = 80) -> str:
    if not text:
        return ""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class MidjourneyError(AirflowException):
    """Base class of every error this provider raises."""

    #: Whether retrying the same call later can succeed.
    retryable: bool = False
    #: True when the server cannot have taken the request: the connection was never made, or the
    #: server answered that it did not take it (HTTP 503, no channel). Sending it again, even a
    #: submit, cannot create a second job. Set on server and connection errors.
    not_accepted: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        description: str = "",
        mj_task_id: str | None = None,
        prompt: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.http_status = http_status
        self.description = description
        self.mj_task_id = mj_task_id
        self.prompt = prompt
        self.properties = properties or {}
        details = []
        if mj_task_id:
            details.append(f"mj_task_id={mj_task_id}")
        if prompt:
            details.append(f"prompt={_shorten(prompt)!r}")
        if code is not None:
            details.append(f"code={code}")
        if http_status is not None:
            details.append(f"http_status={http_status}")
        if description and description not in message:
            details.append(f"server said: {_shorten(description, 300)!r}")
        full = message + (f" [{', '.join(details)}]" if details else "")
        super().__init__(full)


class MidjourneyFatalError(MidjourneyError, AirflowFailException):
    """An error that retrying will not fix; Airflow fails the task without using retries."""


class MidjourneyValidationError(MidjourneyFatalError, ValueError):
    """Bad input: found locally before any request, or the server answered code 4."""


class MidjourneyButtonNotFoundError(MidjourneyValidationError):
    """The parent task has no button with that label or customId. ``available`` lists those it has."""

    def __init__(self, message: str, *, available: list[str] | None = None, **kwargs: Any) -> None:
        self.available = list(available or [])
        super().__init__(message, **kwargs)


class MidjourneyBannedPromptError(MidjourneyFatalError):
    """Code 24: the prompt contains a banned word (``banned_word``). Rephrase the prompt."""

    def __init__(self, message: str, *, banned_word: str | None = None, **kwargs: Any) -> None:
        self.banned_word = banned_word
        super().__init__(message, **kwargs)


class MidjourneyAuthError(MidjourneyFatalError):
    """HTTP 401/403: the API key is missing, wrong, or has no access (or no quota)."""


class MidjourneyNotFoundError(MidjourneyFatalError):
    """Code 3 / HTTP 404: the task (or a parent task) does not exist on this server."""


class MidjourneyTaskLostError(MidjourneyNotFoundError):
    """The server answered "no such task" for a task it had already reported (``last_status``)."""

    def __init__(self, message: str, *, last_status: str | None = None, **kwargs: Any) -> None:
        self.last_status = last_status or ""
        super().__init__(message, **kwargs)

    @classmethod
    def for_task(cls, task: Any, misses: int) -> MidjourneyTaskLostError:
        """The error for ``task`` (the last reading of it) after ``misses`` "no such task" answers in a row."""
        where = f"{task.raw_status or task.status.value} {task.progress}".strip()
        return cls(
            f"The server lost Midjourney task {task.id} after reporting it {where}: it answered 'no such task' "
            f"{misses} times in a row. The job may have been dropped by the server or its relay (it may still "
            "have been billed); ask the server's operator before submitting again, which creates a new job.",
            last_status=where, mj_task_id=task.id or None, prompt=getattr(task, "prompt", None) or None,
        )


class MidjourneyTaskFailedError(MidjourneyFatalError):
    """The Midjourney job ended in FAILURE (or CANCEL); ``fail_reason`` says why."""

    def __init__(self, message: str, *, fail_reason: str | None = None, **kwargs: Any) -> None:
        self.fail_reason = fail_reason or ""
        super().__init__(message, **kwargs)

    @classmethod
    def for_task(cls, task: Any, prompt: str | None = None) -> MidjourneyTaskFailedError:
        """The error for a task (a ``MidjourneyTask``) that ended in FAILURE or CANCEL.

        The one wording used by the blocking wait, the trigger and the sensor.
        """
        status = task.raw_status or task.status.value
        reason = task.fail_reason or ("cancelled" if status.upper() == "CANCEL" else "no failReason given")
        return cls(
            f"Midjourney task {task.id} ended in {status}: {reason}. "
            "Fix the prompt or inputs and run the task again (a failed job is not retried).",
            fail_reason=task.fail_reason or reason,
            mj_task_id=task.id,
            prompt=prompt or task.prompt or None,
        )


class MidjourneyModalRequiredError(MidjourneyFatalError):
    """Code 21: the action needs ``/submit/modal`` input (a prompt and/or a mask) that was not given."""


class MidjourneyConfigurationError(MidjourneyFatalError):
    """The Airflow connection is missing or malformed (base URL, auth style, speed mode...)."""


class MidjourneySubmitUncertainError(MidjourneyFatalError):
    """The submit request was sent but its reply was lost: the job may have been accepted.

    Retrying blindly could pay for the same job twice, so this is never retried automatically.
    Look for the job (its ``state`` tag helps) before submitting again.
    """


class MidjourneyQueueFullError(MidjourneyError):
    """Code 23 (or 9): the account's queue is full. Retry later or lower concurrency (a pool)."""

    retryable = True


class MidjourneyRateLimitError(MidjourneyError):
    """HTTP 429: too many requests. ``retry_after`` is the server's hint in seconds, if any."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class MidjourneyServerError(MidjourneyError):
    """HTTP 5xx, or a reply that is not the JSON the protocol promises."""

    retryable = True


class MidjourneyConnectionError(MidjourneyError):
    """The server could not be reached (refused, reset, DNS, TLS) or did not answer in time."""

    retryable = True


class MidjourneyTimeoutError(MidjourneyError):
    """The deadline for the Midjourney job passed before it finished. The job may still run."""
