"""Reading replies: the one function that turns an HTTP reply into a result or an error.

:func:`interpret_response` turns ``(HTTP status, headers, body)`` into a result or a
:class:`~airflow_provider_mj.exceptions.MidjourneyError`, for the sync and async paths alike. It
looks only at the HTTP status and the ``code`` field (an int, or a relay's string name such as
``"task_not_found"``), never at the free-text ``description``, which servers write in any
language. Both dialects are read here: midjourney-proxy servers (HTTP 200 with the error in
``code``) and relays (HTTP 4xx with ``{"description", "type", "code"}``); the code tables of
:mod:`~airflow_provider_mj.hooks.errors` say what each code means, and build the error.

A relay (new-api) reports the errors it finds itself as ``{"description": "task_not_found ",
"type": "upstream_error", "code": 4}``: an integer ``code`` (4 for all of them) and the reason as
a snake_case name in ``description``. That name is a token, not prose, so it is read like a
named ``code``; any other description is still never parsed.

A submit whose reply cannot prove the job was refused is reported as
:class:`~airflow_provider_mj.exceptions.MidjourneySubmitUncertainError` (see
:func:`uncertain_error`): the transport never sends it again.

Bodies are decoded with ``msgspec`` (installed with Airflow; 1.3 to 1.6x faster than ``json``
for task replies, ``benchmarks/decode_cost.py``), falling back to ``json`` for what msgspec
refuses (a byte-order mark, ``NaN``). The coalesced poller's list replies are read as
:class:`TaskReading` objects: three fields decoded per task, the full model only on demand.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import msgspec

from airflow_provider_mj.common import DEFAULT_CONN_ID
from airflow_provider_mj.exceptions import MidjourneyNotFoundError, MidjourneyServerError, MidjourneyValidationError
from airflow_provider_mj.hooks.errors import (
    RequestContext,
    body_snippet,
    code_meaning,
    error_for_meaning,
    uncertain_error,
)
from airflow_provider_mj.models import MidjourneyTask, SubmitResult, TaskStatus


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, val in headers.items():
            if str(key).lower() == lowered:
                return val
    return value


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


_NO_JSON = object()


def _decode_json(body: bytes) -> Any:
    if not body or not body.strip():
        return _NO_JSON
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        pass
    try:
        # What msgspec refuses and json reads: a byte-order mark; NaN and Infinity, which are
        # not JSON: they read as null, so a task never carries a value an XCom backend or a JSON
        # column would refuse.
        return json.loads(body.decode("utf-8-sig"), parse_constant=lambda _name: None)
    except (UnicodeDecodeError, ValueError):
        return _NO_JSON


class _Fields(msgspec.Struct):
    """The three fields of a task the poller looks at; msgspec skips the rest without building it."""

    id: Any = None
    status: Any = None
    progress: Any = None


_SPLIT_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_FIELDS = msgspec.json.Decoder(_Fields)


@dataclass(slots=True, eq=False)
class TaskReading:
    """One task as one poll read it: ``id``, ``raw_status`` and ``progress`` decoded, the rest kept raw.

    A waiting trigger needs the full :class:`~airflow_provider_mj.models.MidjourneyTask` only
    when it wakes (a status change, a due progress line, the end); :meth:`task` builds it then,
    once, from ``raw``.
    """

    id: str
    raw_status: str
    progress: str
    #: The task's JSON exactly as the server sent it (None for a reading of an already parsed task).
    raw: bytes | None = field(repr=False)
    #: The reply's context (for blanking out the key) and base URL (for relative image URLs).
    source: tuple[RequestContext, str | None] | None = field(default=None, repr=False)
    #: The full model: given, or built by :meth:`task` on its first call.
    parsed: MidjourneyTask | None = field(default=None, repr=False)

    @classmethod
    def of_task(cls, task: MidjourneyTask) -> TaskReading:
        """A reading of an already parsed task (a single fetch)."""
        return cls(task.id, task.raw_status, task.progress, None, parsed=task)

    @property
    def status(self) -> TaskStatus:
        """The parsed status, as :attr:`MidjourneyTask.status` (enough for ``task_outcome``)."""
        return TaskStatus.parse(self.raw_status)

    def task(self) -> MidjourneyTask:
        """The full task model (built on first call), exactly as the ``"tasks"`` kind reads it."""
        if self.parsed is None:
            assert self.raw is not None and self.source is not None
            ctx, base_url = self.source
            data = ctx.scrub_json(msgspec.json.decode(self.raw))
            self.parsed = absolute_image_url(MidjourneyTask.from_api(data), base_url)
        return self.parsed


def _split_readings(body: bytes, ctx: RequestContext, base_url: str | None) -> list[TaskReading] | None:
    """A JSON array of tasks as readings; None when the body is not one (the caller reads it fully).

    The key is blanked out of the fields read here and, when it is built, of the whole task, as
    :meth:`RequestContext.scrub_json` does for every other reply.
    """
    try:
        raws = _SPLIT_LIST.decode(body)
    except msgspec.DecodeError:
        return None
    source = (ctx, base_url)
    scrub = str
    # Blanking the key out of three fields of every task costs more than reading them: do it
    # only when the key could be in the body (as it is, or behind a JSON escape).
    if ctx.secret and (b"\\" in body or any(form.encode() in body for form in (ctx.secret, quote(ctx.secret, safe="")))):
        scrub = ctx.scrub
    out = []
    for raw in raws:
        data = bytes(raw)  # a copy: a Raw would keep the whole reply alive
        try:
            fields = _FIELDS.decode(data)
        except msgspec.DecodeError:  # an item that is not an object: skipped, as in "tasks"
            continue
        out.append(TaskReading(scrub(fields.id or ""), scrub(fields.status or ""), scrub(fields.progress or ""),
                               data, source))
    return out


def _relay_reason(data: Any) -> str | None:
    """The reason name a relay puts in ``description`` of its own errors (``"task_no_found "``)."""
    if not isinstance(data, dict) or data.get("type") != "upstream_error":
        return None
    description = data.get("description")
    if not isinstance(description, str):
        return None
    reason = description.strip()
    return reason if re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", reason) else None


def _envelope_parts(data: Any) -> tuple[Any, str, dict[str, Any]]:
    """(code, description, properties) of a JSON error/submit envelope in either dialect."""
    if not isinstance(data, dict):
        return None, "", {}
    code = data.get("code")
    description = data.get("description")
    error = data.get("error")
    if isinstance(error, dict):
        if code is None:
            code = error.get("code")
        description = description or error.get("message")
    elif isinstance(error, str) and not description:
        description = error
    if not description:
        description = data.get("message") or data.get("msg") or ""
    properties = data.get("properties")
    return code, str(description or ""), dict(properties) if isinstance(properties, dict) else {}


def absolute_image_url(task: MidjourneyTask, base_url: str | None) -> MidjourneyTask:
    """Resolve a relative ``imageUrl`` (``/mj/image/<id>``, as some relays send) against the server.

    Standard URL resolution against the connection's base URL: ``/mj/image/1`` lands on the
    server's origin, ``image/1`` under its base path, ``//cdn.example/1`` takes its scheme. The
    task's ``raw`` dict (the return value and XComs) gets the absolute URL too, so everything
    downstream (the image link, a describe of the image) sees a URL it can open.
    """
    url = task.image_url
    if base_url and url and not urlsplit(url).scheme:
        task.image_url = urljoin(base_url.rstrip("/") + "/", url)
        if task.raw:
            task.raw["imageUrl"] = task.image_url
    return task


def interpret_response(
    kind: str,
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes | None,
    *,
    route: str,
    conn_id: str = DEFAULT_CONN_ID,
    mj_task_id: str | None = None,
    prompt: str | None = None,
    secret: str | None = None,
    base_url: str | None = None,
) -> Any:
    """Turn one HTTP reply into a result, or raise the matching :class:`MidjourneyError`.

    Both dialects are understood: midjourney-proxy servers (HTTP 200 with the error in ``code``,
    404 + code 3 for a missing task) and relays (HTTP 400 with ``{"description", "type", "code"}``,
    ``code`` an int or a name such as ``"task_not_found"``). Only the status and ``code`` decide;
    descriptions are passed through to the error text, never parsed.

    :param kind: ``"submit"`` (returns :class:`SubmitResult`), ``"task"`` (a
        :class:`MidjourneyTask`), ``"tasks"`` (a list of them), ``"readings"`` (the same list as
        :class:`TaskReading` objects, for the poller) or ``"seed"`` (the seed string).
    :param status: the HTTP status code.
    :param headers: the reply headers (only ``Retry-After`` and ``Content-Type`` are read).
    :param body: the raw reply body.
    :param route: the route relative to ``/mj`` (for messages), e.g. ``"submit/imagine"``.
    :param conn_id: the connection id (for messages).
    :param mj_task_id: the task the request was about, if any (for messages and errors).
    :param prompt: the prompt sent, if any (for messages and errors).
    :param secret: a string to blank out of every string of the reply (the API key).
    :param base_url: the connection's base URL: relative ``imageUrl`` values of tasks are
        resolved against it (see :func:`absolute_image_url`).
    """
    body = body or b""
    if kind == "readings":
        if 200 <= status < 300 and body.lstrip()[:1] == b"[":
            ctx = RequestContext(kind=kind, route=route, conn_id=conn_id, secret=secret)
            readings = _split_readings(body, ctx, base_url)
            if readings is not None:
                return readings
        # Anything else (an error, an envelope, a wrapped list) is read the one general way.
        tasks = interpret_response("tasks", status, headers, body, route=route, conn_id=conn_id,
                                   mj_task_id=mj_task_id, prompt=prompt, secret=secret, base_url=base_url)
        return [TaskReading.of_task(task) for task in tasks]
    ctx = RequestContext(kind=kind, route=route, conn_id=conn_id, mj_task_id=mj_task_id, prompt=prompt, secret=secret)
    data = _decode_json(body)
    if data is not _NO_JSON:
        data = ctx.scrub_json(data)
    code, description, properties = _envelope_parts(data) if data is not _NO_JSON else (None, "", {})
    if data is _NO_JSON and body.strip() and status >= 400:
        description = body_snippet(body, ctx, 120)  # plain-text error bodies (trueai's 401)
    num, meaning = code_meaning(code)
    reason = _relay_reason(data)
    if reason is not None:
        # The relay's own reason is more precise than its code, 4 for every error it finds itself.
        meaning = code_meaning(reason)[1] or meaning
    shown_code = num if num is not None else code
    common = {"ctx": ctx, "code": shown_code, "http_status": status, "description": description,
              "properties": properties}

    if status in (401, 403):
        raise error_for_meaning("auth", **common)
    if status == 429:
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        raise error_for_meaning("rate_limit", retry_after=retry_after, **{**common, "code": None})
    empty = data is None or (data is _NO_JSON and not body.strip())
    if 200 <= status < 300 and kind in ("task", "tasks") and (status == 204 or empty):
        # Unknown id: ``null`` (Java servers: an empty 200), or 204, depending on the server.
        if kind == "task":
            raise error_for_meaning("not_found", **common)
        return []
    if status == 404:
        if meaning in (None, "not_found") and kind in ("task", "seed") or meaning == "not_found":
            raise error_for_meaning("not_found", **common)
        if meaning is not None:
            raise error_for_meaning(meaning, **common)
        raise MidjourneyNotFoundError(
            f"The server has no route /mj/{route} (HTTP 404). Check the Base URL of connection {conn_id!r} "
            "(the relay's host, with or without /mj) and its speed_mode.",
            http_status=404, description=ctx.scrub(description), mj_task_id=mj_task_id, prompt=prompt,
        )
    if status == 413:
        raise MidjourneyValidationError(
            "The request is too large for the server (HTTP 413). Use smaller or fewer images.",
            http_status=413, mj_task_id=mj_task_id, prompt=prompt,
        )
    if status >= 500:
        if meaning == "queue_full":
            raise error_for_meaning(meaning, **common)
        if kind == "submit" and status != 503:
            raise uncertain_error(ctx, f"the server failed with HTTP {status} after receiving it",
                             http_status=status, description=ctx.scrub(description), code=num)
        err = MidjourneyServerError(
            f"The Midjourney server failed the {ctx.what} (HTTP {status}). This is usually temporary; "
            "it was retried and Airflow's task retries will try again.",
            http_status=status, code=num, description=ctx.scrub(description), mj_task_id=mj_task_id, prompt=prompt,
        )
        err.not_accepted = status == 503
        raise err
    if data is _NO_JSON:
        content_type = (_header(headers, "Content-Type") or "no content type").split(";")[0].strip()
        shown = body_snippet(body, ctx) if body.strip() else "an empty body"
        if kind == "submit" and 200 <= status < 300:
            raise uncertain_error(ctx, f"its reply (HTTP {status}, {content_type}) was not JSON: {shown!r}",
                             http_status=status)
        raise MidjourneyServerError(
            f"The server's reply to the {ctx.what} was not JSON (HTTP {status}, {content_type}): {shown!r}. "
            f"If this persists, check the Base URL of connection {conn_id!r}: it must be the API server, "
            "not a web page.",
            http_status=status, mj_task_id=mj_task_id, prompt=prompt,
        )
    if status >= 300 or status < 200:
        raise error_for_meaning(meaning, **common)

    # 2xx with JSON.
    if kind == "submit":
        if num in (SubmitResult.SUBMITTED, SubmitResult.MODAL, SubmitResult.QUEUED) and isinstance(data, dict):
            return SubmitResult.from_api({**data, "code": num})
        if code is None:
            raise uncertain_error(ctx, f"its reply (HTTP {status}) has no 'code' field", http_status=status)
        raise error_for_meaning(meaning, **common)
    if kind == "task":
        if isinstance(data, dict) and num == 1 and not ("id" in data or "status" in data):
            # A success envelope around the task (some relays): the task, or nothing = not found.
            inner = next((data[k] for k in ("result", "data") if k in data), None)
            if not inner:
                raise error_for_meaning("not_found", **common)
            data = inner
        if isinstance(data, dict) and ("id" in data or "status" in data):
            task = absolute_image_url(MidjourneyTask.from_api(data), base_url)
            if not task.id and mj_task_id:
                task.id = mj_task_id
            return task
        if isinstance(data, dict) and code is not None:
            raise error_for_meaning(meaning, **common)
        raise MidjourneyServerError(
            f"The server's reply to the {ctx.what} is not a task object.", http_status=status,
            mj_task_id=mj_task_id,
        )
    if kind == "tasks":
        if data is None:
            return []
        if isinstance(data, list):
            return [absolute_image_url(MidjourneyTask.from_api(item), base_url) for item in data
                    if isinstance(item, dict)]
        if isinstance(data, dict) and code is not None and num != 1:
            raise error_for_meaning(meaning, **common)
        if isinstance(data, dict):
            for key in ("result", "data", "list", "tasks"):
                if isinstance(data.get(key), list):
                    return [absolute_image_url(MidjourneyTask.from_api(item), base_url) for item in data[key]
                            if isinstance(item, dict)]
        raise MidjourneyServerError(
            f"The server's reply to the {ctx.what} is not a list of tasks.", http_status=status
        )
    if kind == "seed":
        if num == 1 and isinstance(data, dict) and data.get("result") not in (None, ""):
            return str(data["result"])
        if num == 1:
            raise MidjourneyNotFoundError("The server returned no seed for this task.", code=1,
                                          http_status=status, mj_task_id=mj_task_id)
        if code is None and isinstance(data, (str, int)):
            return str(data)
        raise error_for_meaning(meaning, **common)
    raise ValueError(f"unknown reply kind {kind!r}")  # pragma: no cover - programming error

