"""The Midjourney hook: the connection and every HTTP call to a Midjourney task API server.

One class, :class:`MidjourneyHook`, speaks the ``/mj/...`` protocol of midjourney-proxy servers
and of the relays that resell them (new-api style gateways such as Crazyrouter). It owns every
byte of I/O: the base URL and speed-mode prefix, authentication, retries, and the interpretation
of replies in both server dialects. Blocking calls use one :class:`requests.Session` per hook;
the trigger's ``afetch_task``/``alist_tasks`` use one :class:`aiohttp.ClientSession` per
connection and event loop, shared by every hook of that connection on that loop.

Reading replies
---------------
:func:`interpret_response` is the single function that turns ``(HTTP status, headers, body)``
into a result or an error, for the sync and async paths alike. It looks only at the HTTP status
and the ``code`` field (an int, or a relay's string name such as ``"task_not_found"``), never at
the free-text ``description``, which servers write in any language.

Retry policy
------------
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

Connections
-----------
``host`` is the base URL, with or without scheme and with or without a trailing ``/mj``
(``https://relay.example.com``, ``https://relay.example.com/mj/``, ``relay.example.com``).
Without a scheme the hook uses the ``scheme`` extra, else ``schema`` when it is ``http`` or
``https`` (as the HTTP provider does), else ``http`` for loopback hosts (``localhost``,
``127.0.0.1``, ``::1``) and ``https`` for every other host. ``port`` is added when the host has
none. In the URI form (``midjourney://:KEY@relay.example.com/mj?speed_mode=fast``) the path
arrives as ``schema``; any path other than ``http``/``https`` is used as the base path. An extra
``base_url`` (a full URL) overrides all of that. ``password`` is the API key; the extras are
those of :data:`~airflow_provider_mj.get_provider_info.CONNECTION_FIELDS`, read with or without
the ``extra__midjourney__`` prefix. See ``docs/connection.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
import random
import re
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from airflow.sdk import BaseHook

from airflow_provider_mj import inputs
from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyBannedPromptError,
    MidjourneyButtonNotFoundError,
    MidjourneyConfigurationError,
    MidjourneyConnectionError,
    MidjourneyError,
    MidjourneyNotFoundError,
    MidjourneyQueueFullError,
    MidjourneyRateLimitError,
    MidjourneyServerError,
    MidjourneySubmitUncertainError,
    MidjourneyTaskFailedError,
    MidjourneyTimeoutError,
    MidjourneyValidationError,
)
from airflow_provider_mj.get_provider_info import CONNECTION_FIELDS
from airflow_provider_mj.models import MidjourneyTask, SubmitResult, TaskOutcome, can_open_modal, task_outcome

if TYPE_CHECKING:
    import aiohttp
    import requests

    from airflow.sdk import Connection

log = logging.getLogger(__name__)

CONN_TYPE = "midjourney"
DEFAULT_CONN_ID = "midjourney_default"
EXTRA_PREFIX = "extra__midjourney__"
AUTH_BEARER = "bearer"
AUTH_MJ_API_SECRET = "mj-api-secret"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_USER_AGENT = "airflow-provider-mj"

#: Submit routes, by hook method.
SUBMIT_ROUTES: dict[str, str] = {
    "imagine": "submit/imagine",
    "action": "submit/action",
    "blend": "submit/blend",
    "describe": "submit/describe",
    "modal": "submit/modal",
    "shorten": "submit/shorten",
}


# ---------------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MidjourneyConnectionConfig:
    """A ``midjourney`` connection, checked and normalised; what every request is built from.

    The API key is kept out of ``repr`` (and therefore out of logs and tracebacks).
    """

    #: The Airflow connection id.
    conn_id: str
    #: Scheme, host, port and any base path, without a trailing slash or ``/mj``.
    base_url: str
    #: The API key (connection password), or None when the server needs none.
    api_key: str | None = field(default=None, repr=False)
    #: ``"bearer"`` (``Authorization: Bearer <key>``) or ``"mj-api-secret"``.
    auth_header: str = AUTH_BEARER
    #: ``"fast"``, ``"relax"``, ``"turbo"`` or None (plain ``/mj``: the account default).
    speed_mode: str | None = None
    #: Seconds per HTTP request (connect and each read).
    timeout: float = 30.0
    #: Retries of one HTTP call (see the module docstring for which failures qualify).
    max_retries: int = 5
    #: Backoff: first wait, seconds.
    retry_min_wait: float = 1.0
    #: Backoff: longest wait, seconds (also caps a server's Retry-After).
    retry_max_wait: float = 30.0

    @property
    def route_prefix(self) -> str:
        """``/mj``, or ``/mj-fast/mj`` (relax, turbo) when a speed mode is set."""
        return f"/mj-{self.speed_mode}/mj" if self.speed_mode else "/mj"

    def url(self, route: str) -> str:
        """The full URL of a route given relative to ``/mj`` (``"submit/imagine"``)."""
        return f"{self.base_url}{self.route_prefix}/{route.lstrip('/')}"

    def auth_headers(self) -> dict[str, str]:
        """The authentication header for the configured style (empty when there is no key)."""
        if not self.api_key:
            return {}
        if self.auth_header == AUTH_MJ_API_SECRET:
            return {"mj-api-secret": self.api_key}
        return {"Authorization": f"Bearer {self.api_key}"}

    def headers(self) -> dict[str, str]:
        """Every header a JSON request carries: auth, Accept, User-Agent."""
        return {"Accept": "application/json", "User-Agent": _USER_AGENT, **self.auth_headers()}

    @property
    def origin(self) -> tuple[str, str]:
        """(scheme, netloc) of the base URL; image downloads send the key only to this origin."""
        parts = urlsplit(self.base_url)
        return parts.scheme.lower(), parts.netloc.lower()


def _config_error(conn_id: str, message: str) -> MidjourneyConfigurationError:
    return MidjourneyConfigurationError(f"Connection {conn_id!r}: {message}")


def _read_extra(extras: Mapping[str, Any], name: str) -> Any:
    """An extra by plain name, else with the ``extra__midjourney__`` prefix; ``""`` counts as unset."""
    for key in (name, f"{EXTRA_PREFIX}{name}"):
        value = extras.get(key)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value
    return None


def _coerce_field(conn_id: str, name: str, value: Any) -> Any:
    """Check one extra against its schema in CONNECTION_FIELDS; return the typed value or default."""
    schema = CONNECTION_FIELDS[name]["schema"]
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if value is None:
        return schema.get("default")
    hint = f"Fix the extra field {name!r} in Admin > Connections (or in AIRFLOW_CONN_{conn_id.upper()})."
    if "string" in types:
        if not isinstance(value, str):
            raise _config_error(conn_id, f"extra field {name!r} must be a string, got {value!r}. {hint}")
        allowed = [v for v in schema.get("enum", []) if v is not None]
        normal = value.strip().lower().replace("_", "-")
        if allowed:
            for option in allowed:
                if normal == option.replace("_", "-"):
                    return option
            raise _config_error(
                conn_id, f"extra field {name!r} is {value!r}; it must be one of {', '.join(allowed)}"
                + (" or empty" if None in schema.get("enum", []) else "") + f". {hint}"
            )
        return value.strip()
    if "integer" in types or "number" in types:
        number: float | int
        if isinstance(value, bool):
            raise _config_error(conn_id, f"extra field {name!r} must be a number, got {value!r}. {hint}")
        try:
            number = float(value) if not isinstance(value, int) else value
        except (TypeError, ValueError):
            raise _config_error(conn_id, f"extra field {name!r} must be a number, got {value!r}. {hint}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise _config_error(conn_id, f"extra field {name!r} must be a finite number, got {value!r}. {hint}")
        if "integer" in types and "number" not in types:
            if isinstance(number, float):
                if not number.is_integer():
                    raise _config_error(conn_id, f"extra field {name!r} must be a whole number, got {value!r}. {hint}")
                number = int(number)
        else:
            number = float(number)
        if "minimum" in schema and number < schema["minimum"]:
            raise _config_error(conn_id, f"extra field {name!r} is {value!r}; the minimum is {schema['minimum']}. {hint}")
        if "maximum" in schema and number > schema["maximum"]:
            raise _config_error(conn_id, f"extra field {name!r} is {value!r}; the maximum is {schema['maximum']}. {hint}")
        return number
    return value  # pragma: no cover - every field of the table is a string or a number


def _default_scheme(hostname: str) -> str:
    host = hostname.lower().strip("[]")
    if host in _LOOPBACK_HOSTS or host.endswith(".localhost") or host.startswith("127."):
        return "http"
    return "https"


def _build_base_url(conn_id: str, conn: Any, extras: Mapping[str, Any]) -> tuple[str, str | None]:
    """Normalise the base URL; return it and any speed mode found at the end of its path."""
    base_url_extra = _read_extra(extras, "base_url")
    raw = base_url_extra if base_url_extra is not None else (conn.host or "")
    if not isinstance(raw, str) or not raw.strip():
        raise _config_error(
            conn_id,
            "the host (Base URL) is empty. Set it to the server's base URL, e.g. https://relay.example.com "
            "(with or without a trailing /mj).",
        )
    raw = raw.strip()
    schema = (conn.schema or "").strip() if base_url_extra is None else ""
    scheme_extra = _read_extra(extras, "scheme")
    if "://" in raw:
        scheme, _, rest = raw.partition("://")
    else:
        scheme, rest = "", raw
    scheme = scheme.lower()
    if not scheme:
        if scheme_extra is not None:
            scheme = str(scheme_extra).strip().lower()
        elif schema.lower() in ("http", "https"):
            scheme = schema.lower()
    if scheme and scheme not in ("http", "https"):
        raise _config_error(conn_id, f"the base URL scheme must be http or https, got {scheme!r}.")
    try:
        parts = urlsplit(f"{scheme or 'https'}://{rest}")
        hostname = parts.hostname
        port = parts.port
    except ValueError as err:
        raise _config_error(conn_id, f"the host (Base URL) is not a valid URL: {err}.") from None
    if not hostname:
        raise _config_error(conn_id, "the host (Base URL) has no host name; e.g. https://relay.example.com.")
    if parts.username or parts.password:
        raise _config_error(
            conn_id, "the host (Base URL) contains credentials; put the API key in the password field instead."
        )
    if parts.query or parts.fragment:
        raise _config_error(conn_id, "the host (Base URL) must not contain a query (?...) or fragment (#...).")
    if not scheme:
        scheme = _default_scheme(hostname)
    netloc = parts.netloc
    if port is None and conn.port and base_url_extra is None:
        netloc = f"{netloc}:{int(conn.port)}"
    path = parts.path
    if path.strip("/") == "" and schema and schema.lower() not in ("http", "https"):
        path = "/" + schema.strip("/")
    path = re.sub(r"/+", "/", path).rstrip("/")
    if path.endswith("/mj"):
        path = path[: -len("/mj")]
    path_mode = None
    m = re.search(r"/mj-(fast|relax|turbo)$", path, flags=re.IGNORECASE)
    if m:
        path_mode = m.group(1).lower()
        path = path[: m.start()]
    return f"{scheme}://{netloc}{path}", path_mode


def _clean_api_key(conn_id: str, password: Any) -> str | None:
    if password is None:
        return None
    key = str(password).strip()
    if not key:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key) or not key.isascii():
        # Checked here because HTTP libraries quote the whole header, key included, in their errors.
        raise _config_error(
            conn_id, "the API key (password) contains spaces, line breaks or non-ASCII characters; paste it again."
        )
    if any(ch.isspace() for ch in key):
        raise _config_error(conn_id, "the API key (password) contains whitespace; paste it again.")
    return key


def parse_connection(conn: Any, extras: Mapping[str, Any] | None = None) -> MidjourneyConnectionConfig:
    """Check and normalise a ``midjourney`` connection.

    :param conn: an Airflow ``Connection`` (anything with ``conn_id``, ``host``, ``schema``,
        ``port``, ``password``).
    :param extras: its extras as a dict; read from ``conn.extra_dejson`` when not given.
    :raises MidjourneyConfigurationError: naming the field that is wrong.
    """
    conn_id = str(getattr(conn, "conn_id", None) or DEFAULT_CONN_ID)
    if extras is None:
        extras = conn.extra_dejson
    if not isinstance(extras, Mapping):
        raise _config_error(conn_id, "the extra field must be a JSON object.")
    base_url, path_mode = _build_base_url(conn_id, conn, extras)
    values = {name: _coerce_field(conn_id, name, _read_extra(extras, name)) for name in CONNECTION_FIELDS}
    speed_mode = values["speed_mode"]
    if path_mode:
        if speed_mode and speed_mode != path_mode:
            raise _config_error(
                conn_id,
                f"the base URL ends in /mj-{path_mode} but extra field 'speed_mode' is {speed_mode!r}; "
                "keep only one of them.",
            )
        speed_mode = path_mode
    if values["retry_min_wait"] > values["retry_max_wait"]:
        raise _config_error(
            conn_id,
            f"extra field 'retry_min_wait' ({values['retry_min_wait']}) is larger than 'retry_max_wait' "
            f"({values['retry_max_wait']}).",
        )
    return MidjourneyConnectionConfig(
        conn_id=conn_id,
        base_url=base_url,
        api_key=_clean_api_key(conn_id, conn.password),
        auth_header=values["auth_header"] or AUTH_BEARER,
        speed_mode=speed_mode,
        timeout=float(values["timeout"]),
        max_retries=int(values["max_retries"]),
        retry_min_wait=float(values["retry_min_wait"]),
        retry_max_wait=float(values["retry_max_wait"]),
    )


def _missing_connection_error(conn_id: str) -> MidjourneyConfigurationError:
    env = f"AIRFLOW_CONN_{conn_id.upper()}"
    return MidjourneyConfigurationError(
        f"The Airflow connection {conn_id!r} does not exist. Create it in Admin > Connections "
        f"(type 'Midjourney', host = the server's base URL, password = API key), or with "
        f"`airflow connections add {conn_id} --conn-type midjourney --conn-host https://relay.example.com "
        f"--conn-password <API key>`, or set {env}='{{\"conn_type\": \"midjourney\", "
        f"\"host\": \"https://relay.example.com\", \"password\": \"<API key>\"}}'."
    )


def _is_not_found(err: BaseException) -> bool:
    try:
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:  # pragma: no cover
        from airflow.exceptions import AirflowNotFoundException  # type: ignore[no-redef]
    return isinstance(err, AirflowNotFoundException)


# ---------------------------------------------------------------------------------------------
# Reading replies: the one function shared by the sync and async paths
# ---------------------------------------------------------------------------------------------

#: Relay error names (string ``code``) by the error they mean. Anything else is judged by status.
_NAMED_CODES: dict[str, str] = {
    "task_not_found": "not_found",
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
class _Context:
    """What a reply is for, for error messages (never holds the key itself, only a scrubber)."""

    kind: str  # "submit", "task", "tasks", "seed", "download"
    route: str
    conn_id: str = DEFAULT_CONN_ID
    mj_task_id: str | None = None
    prompt: str | None = None
    secret: str | None = field(default=None, repr=False)

    @property
    def is_submit(self) -> bool:
        return self.kind == "submit"

    def scrub(self, text: str | None) -> str:
        text = "" if text is None else str(text)
        if self.secret and self.secret in text:
            text = text.replace(self.secret, "***")
        return text


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


def _snippet(body: bytes, ctx: _Context, limit: int = 60) -> str:
    text = body[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join(ctx.scrub(text).split())
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


_NO_JSON = object()


def _decode_json(body: bytes) -> Any:
    if not body or not body.strip():
        return _NO_JSON
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return _NO_JSON


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


def _code_meaning(code: Any) -> tuple[int | None, str | None]:
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


def _what(ctx: _Context) -> str:
    if ctx.kind == "submit":
        return f"submit to /mj/{ctx.route}"
    return f"request to /mj/{ctx.route}" if ctx.kind != "download" else "image download"


def _uncertain(ctx: _Context, reason: str, **kw: Any) -> MidjourneySubmitUncertainError:
    return MidjourneySubmitUncertainError(
        f"The {_what(ctx)} may have been accepted: {reason}. It was not retried, because submitting "
        "again could create (and bill) the same job twice. Before submitting again, look for the job: "
        "if you set `state`, check the tasks of this account for that tag (the server echoes it on the "
        "task), or ask the server's operator.",
        prompt=ctx.prompt,
        mj_task_id=ctx.mj_task_id,
        **kw,
    )


def _error_for_meaning(
    meaning: str | None,
    *,
    ctx: _Context,
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
        return MidjourneyNotFoundError(f"Not found ({code_text}): {hint}.", **kw)
    if meaning == "validation":
        hint = ""
        if ctx.route == "submit/action":
            # The usual causes: a customId copied from another task, or a parent not finished.
            hint = (" Check that the customId is one of the parent task's buttons (or pass a label such as "
                    "'U1') and that the parent task ended in SUCCESS.")
        return MidjourneyValidationError(
            f"The server rejected the {_what(ctx)} as invalid ({code_text}). Fix the input; retrying will not help."
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
            f"Check the password (API key) of connection {ctx.conn_id!r} and its auth_header "
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
        return _uncertain(ctx, f"the relay lost its upstream's reply ({code_text})", **{
            k: v for k, v in kw.items() if k not in ("mj_task_id", "prompt")})
    if meaning in ("unavailable", "lost"):
        err = MidjourneyServerError(
            f"The server could not serve the {_what(ctx)} ({code_text}). This is usually temporary; "
            "Airflow's retries will try again.",
            **kw,
        )
        err.not_accepted = meaning == "unavailable"  # type: ignore[attr-defined]
        return err
    if 400 <= http_status < 500:
        return MidjourneyValidationError(
            f"The server refused the {_what(ctx)} ({code_text}, HTTP {http_status}). Check the input; "
            "retrying will not help.",
            **kw,
        )
    if ctx.is_submit and 200 <= http_status < 300:
        return _uncertain(ctx, f"the server answered an unknown {code_text}", **{
            k: v for k, v in kw.items() if k not in ("mj_task_id", "prompt")})
    return MidjourneyServerError(f"The server answered the {_what(ctx)} with an unexpected {code_text}.", **kw)


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
) -> Any:
    """Turn one HTTP reply into a result, or raise the matching :class:`MidjourneyError`.

    Both dialects are understood: midjourney-proxy servers (HTTP 200 with the error in ``code``,
    404 + code 3 for a missing task) and relays (HTTP 400 with ``{"description", "type", "code"}``,
    ``code`` an int or a name such as ``"task_not_found"``). Only the status and ``code`` decide;
    descriptions are passed through to the error text, never parsed.

    :param kind: ``"submit"`` (returns :class:`SubmitResult`), ``"task"`` (a
        :class:`MidjourneyTask`), ``"tasks"`` (a list of them) or ``"seed"`` (the seed string).
    :param status: the HTTP status code.
    :param headers: the reply headers (only ``Retry-After`` and ``Content-Type`` are read).
    :param body: the raw reply body.
    :param route: the route relative to ``/mj`` (for messages), e.g. ``"submit/imagine"``.
    :param conn_id: the connection id (for messages).
    :param mj_task_id: the task the request was about, if any (for messages and errors).
    :param prompt: the prompt sent, if any (for messages and errors).
    :param secret: a string to blank out of any server text quoted in an error (the API key).
    """
    ctx = _Context(kind=kind, route=route, conn_id=conn_id, mj_task_id=mj_task_id, prompt=prompt, secret=secret)
    body = body or b""
    data = _decode_json(body)
    code, description, properties = _envelope_parts(data) if data is not _NO_JSON else (None, "", {})
    if data is _NO_JSON and body.strip() and status >= 400:
        description = _snippet(body, ctx, 120)  # plain-text error bodies (trueai's 401)
    num, meaning = _code_meaning(code)
    shown_code = num if num is not None else code
    common = {"ctx": ctx, "code": shown_code, "http_status": status, "description": description,
              "properties": properties}

    if status in (401, 403):
        return_err = _error_for_meaning("auth", **common)
        raise return_err
    if status == 429:
        retry_after = parse_retry_after(_header(headers, "Retry-After"))
        err = _error_for_meaning("rate_limit", retry_after=retry_after, **{**common, "code": None})
        raise err
    empty = data is None or (data is _NO_JSON and not body.strip())
    if 200 <= status < 300 and kind in ("task", "tasks") and (status == 204 or empty):
        # Unknown id: ``null`` (Java servers: an empty 200), or 204, depending on the server.
        if kind == "task":
            raise _error_for_meaning("not_found", **common)
        return []
    if status == 404:
        if meaning in (None, "not_found") and kind in ("task", "seed") or meaning == "not_found":
            raise _error_for_meaning("not_found", **common)
        if meaning is not None:
            raise _error_for_meaning(meaning, **common)
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
        if meaning in ("queue_full",):
            raise _error_for_meaning(meaning, **common)
        if kind == "submit" and status != 503:
            raise _uncertain(ctx, f"the server failed with HTTP {status} after receiving it",
                             http_status=status, description=ctx.scrub(description), code=num)
        err = MidjourneyServerError(
            f"The Midjourney server failed the {_what(ctx)} (HTTP {status}). This is usually temporary; "
            "it was retried and Airflow's task retries will try again.",
            http_status=status, code=num, description=ctx.scrub(description), mj_task_id=mj_task_id, prompt=prompt,
        )
        err.not_accepted = status == 503  # type: ignore[attr-defined]
        raise err
    if data is _NO_JSON:
        content_type = (_header(headers, "Content-Type") or "no content type").split(";")[0].strip()
        shown = _snippet(body, ctx) if body.strip() else "an empty body"
        if kind == "submit" and 200 <= status < 300:
            raise _uncertain(ctx, f"its reply (HTTP {status}, {content_type}) was not JSON: {shown!r}",
                             http_status=status)
        raise MidjourneyServerError(
            f"The server's reply to the {_what(ctx)} was not JSON (HTTP {status}, {content_type}): {shown!r}. "
            f"If this persists, check the Base URL of connection {conn_id!r}: it must be the API server, "
            "not a web page.",
            http_status=status, mj_task_id=mj_task_id, prompt=prompt,
        )
    if status >= 300 or status < 200:
        raise _error_for_meaning(meaning, **common)

    # 2xx with JSON.
    if kind == "submit":
        if num in (SubmitResult.SUBMITTED, SubmitResult.MODAL, SubmitResult.QUEUED) and isinstance(data, dict):
            return SubmitResult.from_api({**data, "code": num})
        if code is None:
            raise _uncertain(ctx, f"its reply (HTTP {status}) has no 'code' field", http_status=status)
        raise _error_for_meaning(meaning, **common)
    if kind == "task":
        if isinstance(data, dict) and ("id" in data or "status" in data):
            task = MidjourneyTask.from_api(data)
            if not task.id and mj_task_id:
                task.id = mj_task_id
            return task
        if isinstance(data, dict) and code is not None:
            raise _error_for_meaning(meaning, **common)
        raise MidjourneyServerError(
            f"The server's reply to the {_what(ctx)} is not a task object.", http_status=status,
            mj_task_id=mj_task_id,
        )
    if kind == "tasks":
        if data is None:
            return []
        if isinstance(data, list):
            return [MidjourneyTask.from_api(item) for item in data if isinstance(item, dict)]
        if isinstance(data, dict) and code is not None and num != 1:
            raise _error_for_meaning(meaning, **common)
        if isinstance(data, dict):
            for key in ("result", "data", "list", "tasks"):
                if isinstance(data.get(key), list):
                    return [MidjourneyTask.from_api(item) for item in data[key] if isinstance(item, dict)]
        raise MidjourneyServerError(
            f"The server's reply to the {_what(ctx)} is not a list of tasks.", http_status=status
        )
    if kind == "seed":
        if num == 1 and isinstance(data, dict) and data.get("result") not in (None, ""):
            return str(data["result"])
        if num == 1:
            raise MidjourneyNotFoundError("The server returned no seed for this task.", code=1,
                                          http_status=status, mj_task_id=mj_task_id)
        if code is None and isinstance(data, (str, int)):
            return str(data)
        raise _error_for_meaning(meaning if meaning else None, **common)
    raise ValueError(f"unknown reply kind {kind!r}")  # pragma: no cover - programming error


# ---------------------------------------------------------------------------------------------
# Transport errors and the retry policy
# ---------------------------------------------------------------------------------------------


def _connection_error(ctx: _Context, err: BaseException, *, sent: bool, timed_out: bool) -> MidjourneyError:
    """A transport failure as a MidjourneyError (uncertain when a submit may have been received)."""
    kind = type(err).__name__
    if ctx.is_submit and sent:
        what = "no reply came before the timeout" if timed_out else f"the connection broke before the reply ({kind})"
        return _uncertain(ctx, what)
    if timed_out:
        msg = (f"The {_what(ctx)} timed out ({kind}). Raise the connection's 'timeout' extra if the server is "
               "slow, or check that it is reachable.")
    elif not sent:
        msg = (f"Could not connect to the Midjourney server for the {_what(ctx)} ({kind}). Check the Base URL "
               f"of connection {ctx.conn_id!r} and that the server is reachable from the worker.")
    else:
        msg = f"The connection to the Midjourney server broke during the {_what(ctx)} ({kind})."
    out = MidjourneyConnectionError(msg, mj_task_id=ctx.mj_task_id, prompt=ctx.prompt if ctx.is_submit else None)
    out.not_accepted = not sent  # type: ignore[attr-defined]
    return out


def _requests_failure(ctx: _Context, err: BaseException) -> MidjourneyError:
    import requests
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NewConnectionError,
        ProtocolError,
    )

    if isinstance(err, requests.exceptions.ConnectTimeout):
        return _connection_error(ctx, err, sent=False, timed_out=True)
    if isinstance(err, requests.exceptions.ReadTimeout):
        return _connection_error(ctx, err, sent=True, timed_out=True)
    if isinstance(err, (requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return _connection_error(ctx, err, sent=False, timed_out=False)
    if isinstance(err, requests.exceptions.ConnectionError):
        reason: Any = err.args[0] if err.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
            # urllib3 2 makes NewConnectionError (refused, DNS) a subclass of ConnectTimeoutError.
            timed_out = isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError)
            return _connection_error(ctx, err, sent=False, timed_out=timed_out)
        if isinstance(reason, ProtocolError) and len(reason.args) > 1 and isinstance(reason.args[1], BrokenPipeError):
            # The server closed before reading the whole request: it cannot have run it.
            return _connection_error(ctx, err, sent=False, timed_out=False)
        return _connection_error(ctx, err, sent=True, timed_out=False)
    if isinstance(err, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return _connection_error(ctx, err, sent=True, timed_out=False)
    if isinstance(err, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader)):
        return MidjourneyConfigurationError(
            f"Connection {ctx.conn_id!r}: the request could not be built ({type(err).__name__}); check its Base URL "
            "and API key."
        )
    return _connection_error(ctx, err, sent=True, timed_out=False)


def _aiohttp_failure(ctx: _Context, err: BaseException) -> MidjourneyError:
    import aiohttp

    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return _connection_error(ctx, err, sent=False, timed_out=True)
    if isinstance(err, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return _connection_error(ctx, err, sent=True, timed_out=True)
    if isinstance(err, aiohttp.ClientConnectorError):
        return _connection_error(ctx, err, sent=False, timed_out=False)
    if isinstance(err, aiohttp.InvalidURL):
        return MidjourneyConfigurationError(f"Connection {ctx.conn_id!r}: the Base URL is not a valid URL.")
    return _connection_error(ctx, err, sent=True, timed_out=False)


def _retry_decision(err: MidjourneyError, *, is_submit: bool) -> bool:
    """Whether the hook may send the same request again after ``err`` (see the module docstring)."""
    if isinstance(err, MidjourneySubmitUncertainError):
        return False
    if not is_submit:
        return bool(getattr(err, "retryable", False))
    if isinstance(err, (MidjourneyRateLimitError, MidjourneyQueueFullError)):
        return True
    if isinstance(err, (MidjourneyServerError, MidjourneyConnectionError)):
        return bool(getattr(err, "not_accepted", False))
    return False


def _backoff_seconds(attempt: int, config: MidjourneyConnectionConfig, err: MidjourneyError) -> float:
    """Exponential backoff with "equal jitter"; a 429's Retry-After is honoured up to retry_max_wait."""
    low, high = config.retry_min_wait, config.retry_max_wait
    ceiling = min(high, low * (2 ** attempt)) if low > 0 else 0.0
    wait = ceiling / 2 + random.uniform(0, ceiling / 2)
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        wait = max(wait, min(float(retry_after), high))
    return max(0.0, wait)


def _short_reason(err: MidjourneyError) -> str:
    parts = [type(err).__name__]
    if err.http_status is not None:
        parts.append(f"HTTP {err.http_status}")
    if err.code is not None:
        parts.append(f"code {err.code}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Async sessions: one per (connection, event loop)
# ---------------------------------------------------------------------------------------------


@dataclass
class _AsyncEntry:
    session: aiohttp.ClientSession
    config: MidjourneyConnectionConfig
    users: int = 0


#: loop -> conn_id -> entry. Weak on the loop, so a finished loop's entries go with it.
_ASYNC_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _AsyncEntry]] = (
    weakref.WeakKeyDictionary()
)
_ASYNC_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def async_session_count(loop: asyncio.AbstractEventLoop | None = None) -> int:
    """How many aiohttp sessions are open on ``loop`` (default: the running loop), for diagnostics."""
    loop = loop or asyncio.get_running_loop()
    return sum(1 for entry in _ASYNC_SESSIONS.get(loop, {}).values() if not entry.session.closed)


# ---------------------------------------------------------------------------------------------
# The hook
# ---------------------------------------------------------------------------------------------


def _clean_body(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class MidjourneyHook(BaseHook):
    """Talk to a Midjourney task API server (a relay such as Crazyrouter, or a midjourney-proxy).

    The hook reads the Airflow connection lazily, on the first call, so constructing it at DAG
    parse time costs nothing. Every call validates its inputs locally before any request; every
    outcome other than success raises a :class:`~airflow_provider_mj.exceptions.MidjourneyError`
    subclass whose message says what to do next. Retries follow the policy in this module's
    docstring. The hook is a context manager (``with`` closes its HTTP session; ``async with``
    releases its share of the event loop's aiohttp session).

    :param midjourney_conn_id: the Airflow connection of type ``midjourney`` to use.
    """

    conn_name_attr = "midjourney_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Midjourney"

    def __init__(self, midjourney_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.midjourney_conn_id = midjourney_conn_id
        self._config: MidjourneyConnectionConfig | None = None
        self._session: requests.Session | None = None
        self._async_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._sleep = time.sleep
        self._asleep = asyncio.sleep

    def __repr__(self) -> str:
        return f"{type(self).__name__}(midjourney_conn_id={self.midjourney_conn_id!r})"

    # -- connection ---------------------------------------------------------------------------

    @property
    def config(self) -> MidjourneyConnectionConfig:
        """The checked connection (read once, then cached); raises MidjourneyConfigurationError."""
        if self._config is None:
            try:
                conn = self.get_connection(self.midjourney_conn_id)
            except Exception as err:
                if _is_not_found(err):
                    raise _missing_connection_error(self.midjourney_conn_id) from None
                raise
            self._config = self._parse(conn, conn.extra_dejson)
            if self._config.api_key:
                from airflow.sdk.log import mask_secret

                mask_secret(self._config.api_key)
        return self._config

    async def aget_config(self) -> MidjourneyConnectionConfig:
        """The checked connection, read with Airflow's async connection API (no blocking I/O)."""
        if self._config is None:
            try:
                conn = await self.aget_connection(self.midjourney_conn_id)
            except Exception as err:
                if _is_not_found(err):
                    raise _missing_connection_error(self.midjourney_conn_id) from None
                raise
            extras = await conn.aextra_dejson() if hasattr(conn, "aextra_dejson") else conn.extra_dejson
            config = self._parse(conn, extras)
            if config.api_key:
                from airflow.sdk.log import amask_secret

                await amask_secret(config.api_key)
            self._config = config
        return self._config

    def _parse(self, conn: Connection, extras: Mapping[str, Any]) -> MidjourneyConnectionConfig:
        if conn.conn_type and conn.conn_type not in (CONN_TYPE, "http", "https"):
            self.log.warning(
                "Connection %r has type %r; reading it as a %r connection.",
                self.midjourney_conn_id, conn.conn_type, CONN_TYPE,
            )
        if not getattr(conn, "conn_id", None):
            conn.conn_id = self.midjourney_conn_id
        return parse_connection(conn, extras)

    def get_conn(self) -> requests.Session:
        """The hook's :class:`requests.Session` (created on first use, reused by every sync call)."""
        if self._session is None:
            import requests

            self.config  # noqa: B018 - resolve the connection (and its errors) first
            session = requests.Session()
            session.headers.update({"User-Agent": _USER_AGENT})
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the hook's HTTP session (sync path). The hook can be used again afterwards."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> MidjourneyHook:
        """Use the hook in a ``with`` block; its HTTP session is closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the sync HTTP session."""
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        """Check the base URL and the API key with an empty list-by-condition request (UI "Test")."""
        try:
            self._call("POST", "task/list-by-condition", "tasks", json_body={"ids": []})
        except MidjourneyError as err:
            return False, str(err)
        return True, "Connection to the Midjourney API succeeded."

    # -- sync transport -------------------------------------------------------------------------

    def _ctx(self, kind: str, route: str, *, mj_task_id: str | None = None, prompt: str | None = None) -> _Context:
        cfg = self._config
        return _Context(kind=kind, route=route, conn_id=self.midjourney_conn_id, mj_task_id=mj_task_id,
                        prompt=prompt, secret=cfg.api_key if cfg else None)

    def _call(
        self,
        method: str,
        route: str,
        kind: str,
        *,
        json_body: dict[str, Any] | None = None,
        mj_task_id: str | None = None,
        prompt: str | None = None,
    ) -> Any:
        """Send one request (retrying per the policy) and interpret the reply."""
        config = self.config
        session = self.get_conn()
        url = config.url(route)
        ctx = self._ctx(kind, route, mj_task_id=mj_task_id, prompt=prompt)
        attempt = 0
        while True:
            try:
                try:
                    response = session.request(
                        method, url, json=json_body, headers=config.headers(),
                        timeout=(config.timeout, config.timeout), allow_redirects=True,
                    )
                    status, headers, body = response.status_code, response.headers, response.content
                except Exception as err:
                    import requests

                    if isinstance(err, requests.RequestException):
                        raise _requests_failure(ctx, err) from None
                    raise
                return interpret_response(
                    kind, status, headers, body, route=route, conn_id=ctx.conn_id,
                    mj_task_id=mj_task_id, prompt=prompt, secret=config.api_key,
                )
            except MidjourneyError as err:
                if attempt >= config.max_retries or not _retry_decision(err, is_submit=ctx.is_submit):
                    raise
                wait = _backoff_seconds(attempt, config, err)
                attempt += 1
                self.log.warning(
                    "Midjourney %s /mj/%s failed (%s); retry %d of %d in %.2fs.",
                    method, route, _short_reason(err), attempt, config.max_retries, wait,
                )
                self._sleep(wait)

    # -- async transport ------------------------------------------------------------------------

    async def _aentry(self) -> _AsyncEntry:
        import aiohttp

        loop = asyncio.get_running_loop()
        per_loop = _ASYNC_SESSIONS.setdefault(loop, {})
        locks = _ASYNC_LOCKS.setdefault(loop, {})
        lock = locks.setdefault(self.midjourney_conn_id, asyncio.Lock())
        async with lock:
            entry = per_loop.get(self.midjourney_conn_id)
            if entry is None or entry.session.closed:
                config = self._config if self._config is not None else (
                    entry.config if entry is not None else await self.aget_config()
                )
                session = aiohttp.ClientSession(headers={"User-Agent": _USER_AGENT}, raise_for_status=False)
                entry = _AsyncEntry(session=session, config=config)
                per_loop[self.midjourney_conn_id] = entry
                self._async_loops.discard(loop)
            if self._config is None:
                self._config = entry.config
            if loop not in self._async_loops:
                self._async_loops.add(loop)
                entry.users += 1
            return entry

    async def aclose(self) -> None:
        """Release this hook's share of the event loop's aiohttp session for its connection.

        The session is shared by every hook of the same connection on the same loop; it is
        closed when the last hook using it releases it.
        """
        loop = asyncio.get_running_loop()
        if loop not in self._async_loops:
            return
        self._async_loops.discard(loop)
        per_loop = _ASYNC_SESSIONS.get(loop, {})
        entry = per_loop.get(self.midjourney_conn_id)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            per_loop.pop(self.midjourney_conn_id, None)
            await entry.session.close()

    async def __aenter__(self) -> MidjourneyHook:
        """Use the hook in an ``async with`` block; its share of the loop's session is released on exit."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Release the async session (see :meth:`aclose`)."""
        await self.aclose()

    async def _acall(
        self,
        method: str,
        route: str,
        kind: str,
        *,
        json_body: dict[str, Any] | None = None,
        mj_task_id: str | None = None,
    ) -> Any:
        import aiohttp

        entry = await self._aentry()
        config = entry.config
        url = config.url(route)
        ctx = _Context(kind=kind, route=route, conn_id=self.midjourney_conn_id, mj_task_id=mj_task_id,
                       secret=config.api_key)
        timeout = aiohttp.ClientTimeout(total=None, connect=config.timeout, sock_read=config.timeout)
        attempt = 0
        while True:
            try:
                try:
                    async with entry.session.request(
                        method, url, json=json_body, headers=config.headers(), timeout=timeout
                    ) as response:
                        status, headers, body = response.status, response.headers, await response.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    raise _aiohttp_failure(ctx, err) from None
                return interpret_response(
                    kind, status, headers, body, route=route, conn_id=ctx.conn_id,
                    mj_task_id=mj_task_id, secret=config.api_key,
                )
            except MidjourneyError as err:
                if attempt >= config.max_retries or not _retry_decision(err, is_submit=False):
                    raise
                wait = _backoff_seconds(attempt, config, err)
                attempt += 1
                self.log.warning(
                    "Midjourney %s /mj/%s failed (%s); retry %d of %d in %.2fs.",
                    method, route, _short_reason(err), attempt, config.max_retries, wait,
                )
                await self._asleep(wait)

    # -- submits ------------------------------------------------------------------------------

    @staticmethod
    def _common(
        state: str | None, notify_hook: str | None, bot_type: str | None = None, account_filter: Any = None
    ) -> dict[str, Any]:
        return {
            "state": inputs.validate_state(state),
            "notifyHook": inputs.validate_notify_hook(notify_hook),
            "botType": inputs.validate_bot_type(bot_type),
            "accountFilter": inputs.validate_account_filter(account_filter),
        }

    def _submit(self, endpoint: str, body: dict[str, Any], *, mj_task_id: str | None = None,
                prompt: str | None = None) -> SubmitResult:
        route = SUBMIT_ROUTES[endpoint]
        result = self._call("POST", route, "submit", json_body=_clean_body(body), mj_task_id=mj_task_id,
                            prompt=prompt)
        self.log.info(
            "Midjourney %s accepted: code %s, mj_task_id %s%s.", endpoint, result.code, result.mj_task_id,
            f", {result.number_of_queues} in queue" if result.queued and result.number_of_queues is not None else "",
        )
        return result

    def imagine(
        self,
        prompt: str,
        *,
        images: Iterable[Any] | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
        bot_type: str | None = None,
        account_filter: dict[str, Any] | None = None,
    ) -> SubmitResult:
        """Submit an imagine job (``/mj/submit/imagine``): text, optionally with reference images.

        :param prompt: the prompt, with any Midjourney parameters (``"a red fox --ar 3:2 --v 6.1"``).
        :param images: reference images (``base64Array``): data URLs, local file paths or bytes.
        :param state: a tag (<= 255 characters) the server echoes on the task; set it to find the
            job again if a reply is ever lost.
        :param notify_hook: an http(s) URL the server POSTs the task to on every change (optional;
            relays may ignore it).
        :param bot_type: ``"MID_JOURNEY"`` (default) or ``"NIJI_JOURNEY"``.
        :param account_filter: ``{"modes": ["FAST"], "instanceId": ..., "remix": bool}``.
        :return: the accepted job (code 1, 21 or 22); ``mj_task_id`` is the new task.
        """
        prompt = inputs.validate_prompt(prompt)
        body = {"prompt": prompt, **self._common(state, notify_hook, bot_type, account_filter)}
        if images is not None:
            urls = inputs.to_data_urls(images, field="images")
            if urls:
                body["base64Array"] = urls
        return self._submit("imagine", body, prompt=prompt)

    def action(
        self,
        mj_task_id: str,
        custom_id: str,
        *,
        enable_remix: bool | None = None,
        choose_same_channel: bool | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> SubmitResult:
        """Press a button of a finished task (``/mj/submit/action``): upscale, vary, zoom, pan...

        :param mj_task_id: the parent task (it must have succeeded).
        :param custom_id: the button's customId from the parent's ``buttons``. A label such as
            ``"U1"`` or ``"Zoom Out 2x"`` is accepted too: it is resolved with
            :meth:`resolve_button` (one fetch of the parent).
        :param enable_remix: ask for remix mode (variation, reroll and pan then answer code 21 and
            wait for :meth:`modal`).
        :param choose_same_channel: run on the same Discord channel as the parent (trueai servers).
        :param state: a tag (<= 255 characters) the server echoes on the task.
        :param notify_hook: an http(s) callback URL (optional).
        :return: the accepted job; ``needs_modal`` is True for code 21 (call :meth:`modal`). A code
            21 for a button that cannot open a modal is midjourney-proxy's "task already exists":
            it is returned as an accepted job (code 1) naming that existing task.
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        custom_id = inputs.validate_custom_id(custom_id)
        common = self._common(state, notify_hook)
        for flag_name, flag in (("enable_remix", enable_remix), ("choose_same_channel", choose_same_channel)):
            if flag is not None and not isinstance(flag, bool):
                raise MidjourneyValidationError(f"{flag_name} must be True, False or None, got {flag!r}.")
        if not custom_id.upper().startswith("MJ::"):
            custom_id = self.resolve_button(mj_task_id, custom_id)
        body = {
            "taskId": mj_task_id, "customId": custom_id, "enableRemix": enable_remix,
            "chooseSameChannel": choose_same_channel, "state": common["state"],
            "notifyHook": common["notifyHook"],
        }
        result = self._submit("action", body, mj_task_id=mj_task_id)
        if (result.needs_modal and result.mj_task_id and not can_open_modal(custom_id, enable_remix)
                and str(result.properties.get("status") or "").upper() != "MODAL"):
            # novicezk's midjourney-proxy answers 21 ("task already exists") when the same button of
            # the same task is pressed again; ``result`` is that earlier task, not a MODAL one.
            self.log.info("Midjourney answered code 21 for %s: task %s already exists (%s); it is that job.",
                          custom_id, result.mj_task_id, result.properties.get("status") or "status not given")
            return SubmitResult(code=SubmitResult.SUBMITTED, description=result.description,
                                mj_task_id=result.mj_task_id, properties=result.properties)
        return result

    def blend(
        self,
        images: Iterable[Any],
        *,
        dimensions: str = "SQUARE",
        state: str | None = None,
        notify_hook: str | None = None,
        bot_type: str | None = None,
        account_filter: dict[str, Any] | None = None,
    ) -> SubmitResult:
        """Blend 2 to 5 images into a new grid (``/mj/submit/blend``).

        :param images: 2 to 5 images: data URLs, local file paths or bytes.
        :param dimensions: ``"PORTRAIT"`` (2:3), ``"SQUARE"`` (1:1) or ``"LANDSCAPE"`` (3:2), any case.
        :param state: a tag (<= 255 characters) the server echoes on the task.
        :param notify_hook: an http(s) callback URL (optional).
        :param bot_type: ``"MID_JOURNEY"`` (default) or ``"NIJI_JOURNEY"``.
        :param account_filter: ``{"modes": ["FAST"], ...}``.
        :return: the accepted job.
        """
        dims = inputs.validate_dimensions(dimensions)
        common = self._common(state, notify_hook, bot_type, account_filter)
        urls = inputs.to_data_urls(images, field="images", min_count=inputs.MIN_BLEND_IMAGES,
                                   max_count=inputs.MAX_BLEND_IMAGES)
        return self._submit("blend", {"base64Array": urls, "dimensions": dims, **common})

    def describe(
        self,
        *,
        image: Any = None,
        link: str | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
        bot_type: str | None = None,
        account_filter: dict[str, Any] | None = None,
    ) -> SubmitResult:
        """Ask for four prompts that describe an image (``/mj/submit/describe``). Give exactly one source.

        :param image: the image: a data URL, a local file path or bytes (sent as ``base64``).
        :param link: or the http(s) URL of the image (sent as ``link``).
        :param state: a tag (<= 255 characters) the server echoes on the task.
        :param notify_hook: an http(s) callback URL (optional).
        :param bot_type: ``"MID_JOURNEY"`` (default) or ``"NIJI_JOURNEY"``.
        :param account_filter: ``{"modes": ["FAST"], ...}``.
        :return: the accepted job; the finished task's ``describe_prompts()`` gives the prompts.
        """
        if image is None and (link is None or link == ""):
            raise MidjourneyValidationError(
                "describe needs an image: pass image= (a data URL, file path or bytes) or link= (an http(s) URL)."
            )
        if image is not None and link:
            raise MidjourneyValidationError("describe takes one image: pass image= or link=, not both.")
        common = self._common(state, notify_hook, bot_type, account_filter)
        body: dict[str, Any] = dict(common)
        if image is not None:
            body["base64"] = inputs.to_data_url(image, field="image")
        else:
            body["link"] = inputs.validate_link(link)
        return self._submit("describe", body)

    def modal(self, mj_task_id: str, *, prompt: str | None = None, mask: Any = None) -> SubmitResult:
        """Complete a task waiting in status MODAL (code 21) (``/mj/submit/modal``).

        :param mj_task_id: the task id a code-21 submit returned.
        :param prompt: the prompt for custom zoom, remix or Vary (Region).
        :param mask: for Vary (Region): the mask image (data URL, file path or bytes), sent as
            ``maskBase64``.
        :return: the accepted job.
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        prompt = inputs.validate_prompt(prompt, required=False)
        body: dict[str, Any] = {"taskId": mj_task_id, "prompt": prompt}
        if mask is not None:
            body["maskBase64"] = inputs.to_data_url(mask, field="mask")
        return self._submit("modal", body, mj_task_id=mj_task_id, prompt=prompt)

    def shorten(
        self,
        prompt: str,
        *,
        state: str | None = None,
        notify_hook: str | None = None,
        bot_type: str | None = None,
        account_filter: dict[str, Any] | None = None,
    ) -> SubmitResult:
        """Ask Midjourney to analyse and shorten a prompt (``/mj/submit/shorten``).

        :param prompt: the prompt to shorten.
        :param state: a tag (<= 255 characters) the server echoes on the task.
        :param notify_hook: an http(s) callback URL (optional).
        :param bot_type: ``"MID_JOURNEY"`` (default) or ``"NIJI_JOURNEY"``.
        :param account_filter: ``{"modes": ["FAST"], ...}``.
        :return: the accepted job; the finished task's ``shortened_prompts()`` gives the prompts.
        """
        prompt = inputs.validate_prompt(prompt)
        body = {"prompt": prompt, **self._common(state, notify_hook, bot_type, account_filter)}
        return self._submit("shorten", body, prompt=prompt)

    # -- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _fetch_route(mj_task_id: str) -> str:
        return f"task/{quote(mj_task_id, safe='')}/fetch"

    def fetch_task(self, mj_task_id: str) -> MidjourneyTask:
        """Read one task (``GET /mj/task/{id}/fetch``).

        :param mj_task_id: the task id.
        :raises MidjourneyNotFoundError: the server does not know the id (whichever way it says so:
            ``null``, HTTP 204, HTTP 404 or a relay's ``task_not_found``).
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        return self._call("GET", self._fetch_route(mj_task_id), "task", mj_task_id=mj_task_id)

    async def afetch_task(self, mj_task_id: str) -> MidjourneyTask:
        """Async :meth:`fetch_task`, for triggers: same parsing and errors, on aiohttp."""
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        return await self._acall("GET", self._fetch_route(mj_task_id), "task", mj_task_id=mj_task_id)

    @staticmethod
    def _order(tasks: list[MidjourneyTask], ids: list[str]) -> list[MidjourneyTask]:
        rank = {task_id: i for i, task_id in enumerate(ids)}
        return sorted(tasks, key=lambda t: rank.get(t.id, len(rank)))

    def list_tasks(self, mj_task_ids: Iterable[str]) -> list[MidjourneyTask]:
        """Read many tasks at once (``POST /mj/task/list-by-condition``).

        :param mj_task_ids: the task ids. Unknown ids are left out of the result (no error).
        :return: the tasks found, in the order of ``mj_task_ids``. An empty list sends no request.
        """
        ids = list(dict.fromkeys(inputs.validate_mj_task_ids(mj_task_ids)))
        if not ids:
            return []
        tasks = self._call("POST", "task/list-by-condition", "tasks", json_body={"ids": ids})
        return self._order(tasks, ids)

    async def alist_tasks(self, mj_task_ids: Iterable[str]) -> list[MidjourneyTask]:
        """Async :meth:`list_tasks`, for triggers: same parsing and errors, on aiohttp."""
        ids = list(dict.fromkeys(inputs.validate_mj_task_ids(mj_task_ids)))
        if not ids:
            return []
        tasks = await self._acall("POST", "task/list-by-condition", "tasks", json_body={"ids": ids})
        return self._order(tasks, ids)

    def image_seed(self, mj_task_id: str) -> str:
        """The seed of a task's image (``GET /mj/task/{id}/image-seed``).

        :param mj_task_id: a finished task with an image.
        :raises MidjourneyNotFoundError: unknown task, or the server has no seed for it.
        :raises MidjourneyValidationError: the task has no image.
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        return self._call("GET", f"task/{quote(mj_task_id, safe='')}/image-seed", "seed", mj_task_id=mj_task_id)

    # -- waiting --------------------------------------------------------------------------------

    def wait_for_task(
        self, mj_task_id: str, *, poll_interval: float = 5.0, deadline: float | None = None,
        visible_by: float | None = None, on_progress: Callable[[MidjourneyTask], None] | None = None,
    ) -> MidjourneyTask:
        """Poll a task until it finishes (blocking), logging each progress change.

        "Finished" is decided by :func:`~airflow_provider_mj.models.task_outcome`, as in the sensor
        and the trigger; unknown or lagging statuses count as still running. Temporary errors
        (already retried inside each fetch) do not end the wait before the deadline.

        :param mj_task_id: the task to wait for.
        :param poll_interval: seconds between polls (vendors recommend 3 to 5).
        :param deadline: give up at this time, in epoch seconds (``time.time() + 600``); None: no limit.
        :param visible_by: epoch seconds until which "no such task" means "not visible yet" rather
            than an error (a just-submitted job on a lagging relay); None: not found fails at once.
        :param on_progress: called with the task whenever its status or progress changes (the
            operators use it to publish the preview image for the "Midjourney image" link).
        :return: the task, in status SUCCESS.
        :raises MidjourneyTaskFailedError: the job ended in FAILURE or CANCEL (``fail_reason`` says why).
        :raises MidjourneyTimeoutError: the deadline passed first (the job may still finish).
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        if not isinstance(poll_interval, (int, float)) or isinstance(poll_interval, bool) or poll_interval < 0:
            raise MidjourneyValidationError(f"poll_interval must be a number of seconds >= 0, got {poll_interval!r}.")
        last_seen: tuple[str, str] | None = None
        task: MidjourneyTask | None = None
        failures = 0
        while True:
            try:
                task = self.fetch_task(mj_task_id)
                failures = 0
            except MidjourneyNotFoundError:
                if visible_by is None or time.time() >= visible_by:
                    raise
                self.log.info("Midjourney task %s is not visible on the server yet; polling again.", mj_task_id)
            except MidjourneyError as err:
                if not err.retryable:
                    raise
                failures += 1
                if deadline is None and failures >= 10:
                    raise
                self.log.warning("Polling Midjourney task %s failed (%s); will poll again.", mj_task_id,
                                 _short_reason(err))
            if task is not None:
                seen = (task.raw_status or task.status.value, task.progress)
                if seen != last_seen:
                    self.log.info("Midjourney task %s: %s %s", mj_task_id, seen[0], seen[1] or "")
                    last_seen = seen
                    if on_progress is not None:
                        on_progress(task)
                outcome = task_outcome(task)
                if outcome is TaskOutcome.SUCCEEDED:
                    return task
                if outcome is TaskOutcome.FAILED:
                    raise MidjourneyTaskFailedError.for_task(task)
            now = time.time()
            if deadline is not None and now >= deadline:
                where = f"still {last_seen[0]} {last_seen[1]}".rstrip() if last_seen else "never read"
                raise MidjourneyTimeoutError(
                    f"Midjourney job {mj_task_id} did not finish before the deadline ({where}). It may still "
                    "finish: fetch it later by its id rather than submitting again, or allow a longer timeout.",
                    mj_task_id=mj_task_id, prompt=task.prompt if task is not None and task.prompt else None,
                )
            wait = poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - now))
            self._sleep(wait)

    # -- buttons ----------------------------------------------------------------------------------

    def resolve_button(self, task_or_id: MidjourneyTask | Mapping[str, Any] | str, button: str) -> str:
        """The customId of a task's button, given its label (``"U1"``, ``"reroll"``, ``"Zoom Out 2x"``).

        Labels are matched case-insensitively and also work when the server sent empty labels
        (they are derived from the customId). A customId that is on the task is returned as is.

        :param task_or_id: the parent task (:class:`MidjourneyTask`, its dict, or its id: fetched).
        :param button: a label or a customId.
        :raises MidjourneyButtonNotFoundError: the task has no such button; ``available`` lists its labels.
        """
        if not isinstance(button, str) or not button.strip():
            raise MidjourneyValidationError("button is empty: pass a label such as 'U1' or a customId.")
        if isinstance(task_or_id, MidjourneyTask):
            task = task_or_id
        elif isinstance(task_or_id, Mapping):
            task = MidjourneyTask.from_api(dict(task_or_id))
        else:
            task = self.fetch_task(task_or_id)
        wanted = button.strip()
        if task.has_custom_id(wanted):
            return wanted
        found = task.find_button(wanted)
        if found is not None:
            return found.custom_id
        labels = task.button_labels()
        if not labels:
            why = (f"it has no buttons (status {task.raw_status or task.status.value}); buttons appear when a "
                   "task succeeds, and describe/shorten/upscale-HD tasks have few or none")
        else:
            why = f"its buttons are: {', '.join(labels)}"
        raise MidjourneyButtonNotFoundError(
            f"Task {task.id or '?'} has no button {wanted!r}; {why}.", available=labels, mj_task_id=task.id or None,
        )

    # -- downloads ----------------------------------------------------------------------------------

    def _image_url(self, url_or_task: Any) -> tuple[str, str | None]:
        if isinstance(url_or_task, MidjourneyTask):
            task = url_or_task
        elif isinstance(url_or_task, Mapping):
            task = MidjourneyTask.from_api(dict(url_or_task))
        elif isinstance(url_or_task, str) and url_or_task.strip():
            url = url_or_task.strip()
            return urljoin(self.config.base_url + "/", url), None
        else:
            raise MidjourneyValidationError("download_image needs an image URL or a task (MidjourneyTask or its dict).")
        if not task.image_url:
            raise MidjourneyValidationError(
                f"Task {task.id or '?'} has no imageUrl (status {task.raw_status or task.status.value}); wait for it "
                "to succeed first (describe and shorten tasks may have no image).",
                mj_task_id=task.id or None,
            )
        if task_outcome(task) is not TaskOutcome.SUCCEEDED:
            self.log.warning("Task %s is %s; its imageUrl may be a preview.", task.id, task.raw_status)
        return urljoin(self.config.base_url + "/", task.image_url), task.id or None

    def download_image(self, url_or_task: Any, destination: Any) -> str:
        """Download a task's image to a local path or object storage, atomically.

        The image is written to a temporary sibling of ``destination`` and then renamed into
        place, so readers never see a half-written file; object stores without rename get the
        object written directly (a single PUT is already atomic there) and its size checked.
        Downloads are retried like other reads. The API key is sent only when the image is on
        the API server's own origin.

        :param url_or_task: an image URL (absolute, or relative to the base URL), or a task
            (:class:`MidjourneyTask` or its dict) whose ``imageUrl`` is downloaded.
        :param destination: a local path (``str`` or :class:`pathlib.Path`), an
            ``airflow.sdk.ObjectStoragePath``, or a URL string such as ``"s3://bucket/key.png"``.
            An existing directory (or a path ending in ``/``) gets the file name from the URL.
        :return: the final path, as a string.
        """
        url, mj_task_id = self._image_url(url_or_task)
        try:
            inputs.validate_http_url(url, field="image URL")
        except MidjourneyValidationError:
            raise MidjourneyValidationError(f"The image URL {url[:80]!r} is not an http(s) URL.") from None
        data = self._download_bytes(url, mj_task_id)
        name = Path(urlsplit(url).path).name or f"{mj_task_id or 'midjourney'}.png"
        if isinstance(destination, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", destination):
            from airflow.sdk import ObjectStoragePath

            destination = ObjectStoragePath(destination)
        if isinstance(destination, (str, os.PathLike)) and not _is_object_path(destination):
            final = _write_local_atomically(destination, name, data)
        else:
            final = _write_object_atomically(destination, name, data)
        self.log.info("Downloaded %d bytes of image to %s.", len(data), final)
        return final

    def _download_bytes(self, url: str, mj_task_id: str | None) -> bytes:
        config = self.config
        session = self.get_conn()
        parts = urlsplit(url)
        same_origin = (parts.scheme.lower(), parts.netloc.lower()) == config.origin
        headers = {"User-Agent": _USER_AGENT, "Accept": "image/*,*/*;q=0.5"}
        if same_origin:
            headers.update(config.auth_headers())
        ctx = _Context(kind="download", route=parts.path, conn_id=self.midjourney_conn_id, mj_task_id=mj_task_id,
                       secret=config.api_key)
        attempt = 0
        while True:
            try:
                try:
                    response = session.get(url, headers=headers, timeout=(config.timeout, config.timeout))
                    status, body = response.status_code, response.content
                    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                except Exception as err:
                    import requests

                    if isinstance(err, requests.RequestException):
                        raise _requests_failure(ctx, err) from None
                    raise
                if status in (401, 403, 429) or status >= 500:
                    interpret_response("download", status, response.headers, body, route=parts.path,
                                       conn_id=ctx.conn_id, mj_task_id=mj_task_id, secret=config.api_key)
                if status == 404:
                    raise MidjourneyNotFoundError(
                        f"The image is gone (HTTP 404 for {_safe_url(url)}): image URLs of some servers expire; "
                        "fetch the task again for a fresh imageUrl.", http_status=404, mj_task_id=mj_task_id,
                    )
                if not 200 <= status < 300:
                    raise MidjourneyServerError(f"The image download failed (HTTP {status} for {_safe_url(url)}).",
                                                http_status=status, mj_task_id=mj_task_id)
                if not body:
                    raise MidjourneyServerError(f"The image at {_safe_url(url)} is empty.", http_status=status,
                                                mj_task_id=mj_task_id)
                if content_type in ("text/html", "application/json") or body.lstrip()[:1] in (b"<", b"{"):
                    raise MidjourneyServerError(
                        f"The image URL {_safe_url(url)} answered {content_type or 'text'} instead of an image: "
                        f"{_snippet(body, ctx)!r}.", http_status=status, mj_task_id=mj_task_id,
                    )
                return body
            except MidjourneyError as err:
                if attempt >= config.max_retries or not _retry_decision(err, is_submit=False):
                    raise
                wait = _backoff_seconds(attempt, config, err)
                attempt += 1
                self.log.warning("Image download failed (%s); retry %d of %d in %.2fs.", _short_reason(err),
                                 attempt, config.max_retries, wait)
                self._sleep(wait)


def _safe_url(url: str) -> str:
    """The URL without its query string (signed CDN URLs carry tokens there)."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return shown if len(shown) <= 120 else shown[:119] + "\u2026"


def _is_object_path(destination: Any) -> bool:
    try:
        from airflow.sdk import ObjectStoragePath
    except ImportError:  # pragma: no cover
        return False
    return isinstance(destination, ObjectStoragePath)


def _write_local_atomically(destination: str | os.PathLike[str], name: str, data: bytes) -> str:
    raw = os.fspath(destination)
    path = Path(raw).expanduser()
    if path.is_dir() or raw.endswith(("/", os.sep)):
        path = path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return str(path)


def _write_object_atomically(destination: Any, name: str, data: bytes) -> str:
    path = destination
    try:
        is_dir = path.is_dir()
    except Exception:
        is_dir = False
    if is_dir or str(path).endswith("/"):
        path = path / name
    with contextlib.suppress(Exception):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.part"
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
        try:
            tmp.rename(path)
            renamed = True
        except (NotImplementedError, OSError, AttributeError):
            renamed = False
        if not renamed:
            with path.open("wb") as handle:
                handle.write(data)
    finally:
        with contextlib.suppress(Exception):
            if tmp.exists():
                tmp.unlink()
    try:
        size = path.stat().st_size
    except Exception:
        size = len(data)
    if size != len(data):
        raise MidjourneyServerError(
            f"Writing the image to {path} left {size} bytes instead of {len(data)}; the object store may be "
            "inconsistent. Run the task again."
        )
    return str(path)


__all__ = [
    "MidjourneyConnectionConfig",
    "MidjourneyHook",
    "SUBMIT_ROUTES",
    "async_session_count",
    "interpret_response",
    "parse_connection",
    "parse_retry_after",
]
