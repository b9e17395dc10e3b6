"""The ``midjourney`` connection: what it may hold, and how it becomes a checked config.

:func:`parse_connection` turns an Airflow connection into a :class:`MidjourneyConnectionConfig`,
the frozen, normalised form every request is built from, or raises a
:class:`~airflow_provider_mj.exceptions.MidjourneyConfigurationError` naming the field to fix.
Nothing here sends a request.

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

import hashlib
import math
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk.exceptions import AirflowNotFoundException

from airflow_provider_mj.common import DEFAULT_CONN_ID
from airflow_provider_mj.exceptions import MidjourneyConfigurationError
from airflow_provider_mj.get_provider_info import CONNECTION_FIELDS, DEPRECATED_FIELD_NAMES

EXTRA_PREFIX = "extra__midjourney__"
AUTH_BEARER = "bearer"
AUTH_MJ_API_SECRET = "mj-api-secret"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "airflow-provider-mj"


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, with the default port filled in, for comparing origins.

    The one definition of "the same origin": the key is sent to a URL only when this equals the
    connection's :attr:`~MidjourneyConnectionConfig.origin`, and is dropped from a redirect hop
    whose origin differs (:mod:`~airflow_provider_mj.hooks.redirects`).
    """
    parts = urlsplit(str(url))
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


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
    auth_style: str = AUTH_BEARER
    #: ``"fast"``, ``"relax"``, ``"turbo"`` or None (plain ``/mj``: the account default).
    speed_mode: str | None = None
    #: Seconds one HTTP request may take as a whole (connecting, sending and reading the reply).
    timeout: float = 30.0
    #: Retries of one HTTP call (see the module docstring for which failures qualify).
    max_retries: int = 5
    #: Backoff: first wait, seconds.
    retry_min_wait: float = 1.0
    #: Backoff: longest wait, seconds (also caps a server's Retry-After).
    retry_max_wait: float = 30.0

    @property
    def fingerprint(self) -> str:
        """A digest of every field, the key included: equal for equal connections, for keying
        shared state (the trigger's poller) by the connection's content without holding the key."""
        return hashlib.sha256(repr(tuple(getattr(self, f.name) for f in fields(self))).encode()).hexdigest()[:32]

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
        if self.auth_style == AUTH_MJ_API_SECRET:
            return {"mj-api-secret": self.api_key}
        return {"Authorization": f"Bearer {self.api_key}"}

    def headers(self) -> dict[str, str]:
        """Every header a JSON request carries: auth, Accept, User-Agent."""
        return {"Accept": "application/json", "User-Agent": USER_AGENT, **self.auth_headers()}

    @property
    def origin(self) -> tuple[str, str, int | None]:
        """(scheme, host, port) of the base URL (:func:`origin_of`); image downloads send the key
        only to this origin."""
        return origin_of(self.base_url)


def _config_error(conn_id: str, message: str) -> MidjourneyConfigurationError:
    return MidjourneyConfigurationError(f"Connection {conn_id!r}: {message}")


def _read_extra(extras: Mapping[str, Any], name: str) -> Any:
    """An extra by plain name, else with the ``extra__midjourney__`` prefix; ``""`` counts as unset."""
    for key in (name, f"{EXTRA_PREFIX}{name}"):
        value = extras.get(key)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value
    return None


def _read_deprecated(conn_id: str, extras: Mapping[str, Any], old: str, new: str, current: Any) -> Any:
    """The value of ``new``, else of its deprecated name ``old`` (with a warning saying to rename it)."""
    value = _read_extra(extras, old)
    if value is None:
        return current
    if current is not None:
        warnings.warn(
            f"Connection {conn_id!r}: extra field {old!r} is deprecated and ignored because {new!r} is set; "
            f"remove {old!r}.", FutureWarning, stacklevel=4,
        )
        return current
    if isinstance(value, str) and value.strip() == "***":
        # Airflow masks extras whose name holds a sensitive word (auth_header is one), and a form
        # saved back can store the mask itself: the real value is gone.
        raise _config_error(
            conn_id, f"extra field {old!r} holds Airflow's mask '***' instead of a value (Airflow hides that "
            f"name as a secret). Set {new!r} to 'bearer' or 'mj-api-secret' and remove {old!r}.",
        )
    warnings.warn(
        f"Connection {conn_id!r}: extra field {old!r} is deprecated (Airflow masks that name as a secret); "
        f"rename it to {new!r}.", FutureWarning, stacklevel=4,
    )
    return value


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
    raw = {name: _read_extra(extras, name) for name in CONNECTION_FIELDS}
    for old, new in DEPRECATED_FIELD_NAMES.items():
        raw[new] = _read_deprecated(conn_id, extras, old, new, raw[new])
    values = {name: _coerce_field(conn_id, name, value) for name, value in raw.items()}
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
        auth_style=values["auth_style"] or AUTH_BEARER,
        speed_mode=speed_mode,
        timeout=float(values["timeout"]),
        max_retries=int(values["max_retries"]),
        retry_min_wait=float(values["retry_min_wait"]),
        retry_max_wait=float(values["retry_max_wait"]),
    )


@contextmanager
def connection_lookup(conn_id: str) -> Iterator[None]:
    """Around a read of connection ``conn_id``: Airflow's "no such connection" becomes a
    :class:`~airflow_provider_mj.exceptions.MidjourneyConfigurationError` with the three ways to
    create it; any other error passes through."""
    try:
        yield
    except AirflowNotFoundException:
        raise _missing_connection_error(conn_id) from None


def _missing_connection_error(conn_id: str) -> MidjourneyConfigurationError:
    """The error for a connection id Airflow does not know, with the three ways to create it."""
    env = f"AIRFLOW_CONN_{conn_id.upper()}"
    return MidjourneyConfigurationError(
        f"The Airflow connection {conn_id!r} does not exist. Create it in Admin > Connections "
        f"(type 'Midjourney', host = the server's base URL, password = API key), or with "
        f"`airflow connections add {conn_id} --conn-type midjourney --conn-host https://relay.example.com "
        f"--conn-password <API key>`, or set {env}='{{\"conn_type\": \"midjourney\", "
        f"\"host\": \"https://relay.example.com\", \"password\": \"<API key>\"}}'."
    )
