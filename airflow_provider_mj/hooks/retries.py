"""The retry policy of every request: one tenacity factory, one decision, for sync and async alike.

:func:`retrying` builds the :class:`tenacity.Retrying` (blocking calls) or
:class:`tenacity.AsyncRetrying` (the trigger's calls) that wraps one request. Both come from the
same arguments: the stop rule (``max_retries``), the wait (backoff and ``Retry-After``) and the
decision :func:`_retry_decision`, the single place that says which failure may be sent again.

Every call is retried inside the hook, up to the connection's ``max_retries`` times, with
exponential backoff and jitter between ``retry_min_wait`` and ``retry_max_wait`` seconds. On
HTTP 429 the server's ``Retry-After`` (seconds or an HTTP date) is honoured, capped at
``retry_max_wait`` so a task never sleeps longer than its owner allowed.

*Reads* (fetch, list-by-condition, image-seed, image downloads) are idempotent and are retried on
HTTP 429, any 5xx, replies that are not JSON, and any connection failure (refused, reset,
dropped, timed out).

*Submits* (imagine, action, blend, describe, modal, shorten) cost money and create jobs, so they
are retried only when the server **cannot have accepted the job**:

- the connection could not be made (refused, DNS failure, TLS handshake failure, connect
  timeout) or was broken while the request was still being written (broken pipe): the server
  never received a complete request;
- HTTP 429: rate limiters reject a request before it reaches the application;
- HTTP 503: "service unavailable" / "no channel available" is answered before a job is created;
- code 23 (queue full) or code 9 (system busy; trueai also uses it for queue full), and relay
  errors meaning "no upstream channel": the server answered that it did not take the job.

The last three are *refusals* (:func:`is_refusal`): backpressure from a full account, not
failures. The hook retries them up to ``max_retries`` like the rest; the submit operators ask it
not to (``retry_refusals=False``, through
:meth:`~airflow_provider_mj.hooks.transport.MidjourneyBaseHook.refusals_raised`) and wait for room
until their ``timeout`` instead (:mod:`airflow_provider_mj.operators.room`).

Every other failure after the request was sent is ambiguous: a read timeout, a connection reset
or closed before the reply, HTTP 500/502/504 (a gateway may have forwarded the job upstream and
then lost the answer), a 2xx reply that is not the JSON envelope, or a relay error saying it
could not read its upstream's reply. Those are **never retried**: the hook raises
:class:`~airflow_provider_mj.exceptions.MidjourneySubmitUncertainError`, which also stops
Airflow's own task retries (it is a fatal error), because submitting again could pay for the
same job twice. Tag submits with ``state`` so such a job can be found afterwards.

A rare case remains: a pooled keep-alive connection that the server closed at the very moment
a submit was written looks like a lost reply, and is reported as uncertain too (urllib3 drops
connections it can see are closed before reusing them, which makes this a narrow race).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from airflow_provider_mj.exceptions import (
    MidjourneyConnectionError,
    MidjourneyError,
    MidjourneyQueueFullError,
    MidjourneyRateLimitError,
    MidjourneyServerError,
    MidjourneySubmitUncertainError,
)
from airflow_provider_mj.hooks.connection import MidjourneyConnectionConfig


def is_refusal(err: BaseException) -> bool:
    """The server answered that it does not take the job *now*: backpressure, not failure.

    Queue full (code 23, or 9), HTTP 429 (a rate limiter, or a relay whose channels are saturated:
    code 30), HTTP 503 and a relay's "no channel available": the job was not accepted, so waiting
    and submitting again costs nothing. The operators wait such refusals out until their
    ``timeout`` (:mod:`airflow_provider_mj.operators.room`); a connection that could not be made
    is not a refusal (a wrong Base URL must not wait for an hour) and stays under ``max_retries``.
    """
    if isinstance(err, (MidjourneyRateLimitError, MidjourneyQueueFullError)):
        return True
    return isinstance(err, MidjourneyServerError) and err.not_accepted


def _retry_decision(err: MidjourneyError, *, is_submit: bool, retry_refusals: bool = True) -> bool:
    """Whether the hook may send the same request again after ``err`` (see this module's docstring).

    ``retry_refusals=False``: a submit's refusal (:func:`is_refusal`) is raised at once, for a
    caller that waits for room itself (the operators do).
    """
    if isinstance(err, MidjourneySubmitUncertainError):
        return False
    if not is_submit:
        return err.retryable
    if is_refusal(err):
        return retry_refusals
    if isinstance(err, MidjourneyConnectionError):
        return err.not_accepted
    return False


def jittered_backoff(attempt: int, low: float, high: float) -> float:
    """Exponential backoff with "equal jitter": between half and all of ``min(high, low * 2**attempt)``."""
    ceiling = min(high, low * (2 ** attempt)) if low > 0 else 0.0
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _backoff_seconds(attempt: int, config: MidjourneyConnectionConfig, err: BaseException | None) -> float:
    """Exponential backoff with "equal jitter"; a 429's Retry-After is honoured up to retry_max_wait."""
    low, high = config.retry_min_wait, config.retry_max_wait
    wait = jittered_backoff(attempt, low, high)
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        wait = max(wait, min(float(retry_after), high))
    return max(0.0, wait)


def short_reason(err: BaseException | None) -> str:
    """``"MidjourneyServerError, HTTP 502"``: an error in a few words, for retry log lines."""
    parts = [type(err).__name__]
    if getattr(err, "http_status", None) is not None:
        parts.append(f"HTTP {err.http_status}")
    if getattr(err, "code", None) is not None:
        parts.append(f"code {err.code}")
    return ", ".join(parts)


def retrying(
    config: MidjourneyConnectionConfig,
    *,
    is_submit: bool,
    what: str,
    log: Any,
    sleep: Callable[[float], Any],
    is_async: bool = False,
    deadline: float | None = None,
    retry_refusals: bool = True,
) -> Retrying | AsyncRetrying:
    """The retry controller for one request: call it with the function that sends the request once.

    :param config: the connection (``max_retries``, ``retry_min_wait``, ``retry_max_wait``).
    :param is_submit: True for a submit: retried only where the server cannot have taken the job.
    :param what: the request in words, for the log line of each retry (``"Midjourney GET /mj/..."``).
    :param log: the logger of that line (the hook's).
    :param sleep: waits between tries: the hook's injectable ``_sleep`` (or async ``_asleep``).
    :param is_async: build an :class:`~tenacity.AsyncRetrying` (``await policy(send_once)``).
    :param deadline: epoch seconds (a wait's deadline): no retry starts at or after it, so a wait
        gives up on time rather than after the whole backoff.
    :param retry_refusals: False: a submit the server refused (:func:`is_refusal`) is raised at
        once instead of being retried here (the caller waits for room itself).
    :return: ``policy(send_once)`` returns what ``send_once`` returns, or raises its last error as is.
    """

    def may_retry(err: BaseException) -> bool:
        return isinstance(err, MidjourneyError) and _retry_decision(err, is_submit=is_submit,
                                                                    retry_refusals=retry_refusals)

    def wait(state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome is not None else None
        return _backoff_seconds(state.attempt_number - 1, config, err)

    def log_retry(state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome is not None else None
        log.warning("%s failed (%s); retry %d of %d in %.2fs.", what, short_reason(err), state.attempt_number,
                    config.max_retries, state.upcoming_sleep)

    def past_deadline(state: RetryCallState) -> bool:
        return deadline is not None and time.time() + (state.upcoming_sleep or 0.0) >= deadline

    controller = AsyncRetrying if is_async else Retrying
    return controller(
        sleep=sleep,
        stop=stop_after_attempt(config.max_retries + 1) | past_deadline,
        retry=retry_if_exception(may_retry),
        wait=wait,
        before_sleep=log_retry,
        reraise=True,  # the caller sees the MidjourneyError itself, never tenacity's RetryError
    )
