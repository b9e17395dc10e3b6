"""Transport: the connection, the HTTP sessions, and sending requests, sync (requests) and async (aiohttp).

:class:`MidjourneyBaseHook` reads the connection, owns the HTTP sessions and sends every request
of :class:`~airflow_provider_mj.hooks.midjourney.MidjourneyHook`, which adds only the API
methods (the Databricks provider splits ``databricks_base`` from ``databricks`` the same way).
Blocking calls use one :class:`requests.Session` per hook; the trigger's async calls use one
:class:`aiohttp.ClientSession` per connection and event loop, shared by every hook of that
connection on that loop. Replies are read by :func:`~airflow_provider_mj.hooks.replies.interpret_response`.

Each hook reads the connection itself, once (a trigger's hook when the trigger starts), and
the shared aiohttp sessions hold no credentials (no auth headers, no cookies): a key rotated in
Airflow is used by every hook created afterwards, and a hook that still holds the old one reads
the connection again on a 401/403 and, if it changed, sends the request once more with it.

Credentials never follow a redirect to another origin, and only GET requests follow redirects
(:mod:`~airflow_provider_mj.hooks.redirects`).

Every call goes through the retry policy of :mod:`~airflow_provider_mj.hooks.retries` (one
tenacity factory; a submit is retried only where the server cannot have accepted it).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from airflow.sdk import BaseHook

from airflow_provider_mj.common import CONN_TYPE, DEFAULT_CONN_ID
from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyConfigurationError,
    MidjourneyConnectionError,
    MidjourneyError,
)
from airflow_provider_mj.hooks.deadlines import (
    WholeRequestTimeout, client_timeout, request_budget, send_within, watched_adapter,
)
from airflow_provider_mj.hooks.connection import (
    USER_AGENT,
    MidjourneyConnectionConfig,
    connection_lookup,
    parse_connection,
)
from airflow_provider_mj.hooks.redirects import (
    MAX_REDIRECTS,
    CredentialSafeSession,
    aiohttp_guard,
    follows_redirects,
    raise_for_redirect,
)
from airflow_provider_mj.hooks.errors import RequestContext, uncertain_error
from airflow_provider_mj.hooks.replies import interpret_response
from airflow_provider_mj.hooks.retries import retrying

if TYPE_CHECKING:
    import aiohttp
    import requests

    from airflow.sdk import Connection


def _connection_error(ctx: RequestContext, err: BaseException, *, sent: bool, timed_out: bool) -> MidjourneyError:
    """A transport failure as a MidjourneyError (uncertain when a submit may have been received)."""
    kind = type(err).__name__
    if ctx.is_submit and sent:
        what = "no reply came before the timeout" if timed_out else f"the connection broke before the reply ({kind})"
        return uncertain_error(ctx, what)
    if timed_out:
        msg = (f"The {ctx.what} timed out ({kind}). Raise the connection's 'timeout' extra if the server is "
               "slow, or check that it is reachable.")
    elif not sent:
        msg = (f"Could not connect to the Midjourney server for the {ctx.what} ({kind}). Check the Base URL "
               f"of connection {ctx.conn_id!r} and that the server is reachable from the worker.")
    else:
        msg = f"The connection to the Midjourney server broke during the {ctx.what} ({kind})."
    out = MidjourneyConnectionError(msg, mj_task_id=ctx.mj_task_id, prompt=ctx.prompt if ctx.is_submit else None)
    out.not_accepted = not sent
    return out


def _requests_failure(ctx: RequestContext, err: BaseException) -> MidjourneyError:
    import requests
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NewConnectionError,
        ProtocolError,
    )

    if isinstance(err, requests.exceptions.TooManyRedirects):
        return _too_many_redirects(ctx)
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


def _too_many_redirects(ctx: RequestContext) -> MidjourneyError:
    return MidjourneyConfigurationError(
        f"The {ctx.what} was redirected more than {MAX_REDIRECTS} times. Check the Base URL of connection "
        f"{ctx.conn_id!r}: it must be the API server itself.", mj_task_id=ctx.mj_task_id,
    )


def _aiohttp_failure(ctx: RequestContext, err: BaseException) -> MidjourneyError:
    import aiohttp

    if isinstance(err, aiohttp.TooManyRedirects):
        return _too_many_redirects(ctx)
    if isinstance(err, aiohttp.ConnectionTimeoutError):
        return _connection_error(ctx, err, sent=False, timed_out=True)
    if isinstance(err, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return _connection_error(ctx, err, sent=True, timed_out=True)
    if isinstance(err, aiohttp.ClientConnectorError):
        return _connection_error(ctx, err, sent=False, timed_out=False)
    if isinstance(err, aiohttp.InvalidURL):
        return MidjourneyConfigurationError(f"Connection {ctx.conn_id!r}: the Base URL is not a valid URL.")
    return _connection_error(ctx, err, sent=True, timed_out=False)


@dataclass(frozen=True)
class _Request:
    """One API request as :meth:`MidjourneyBaseHook._call` and ``_acall`` take it (a misspelt
    option is a TypeError, as for any call)."""

    method: str
    route: str
    #: The reply kind :func:`~airflow_provider_mj.hooks.replies.interpret_response` reads.
    kind: str
    json_body: dict[str, Any] | None = None
    #: The task the request is about, and the prompt sent: for messages and errors.
    mj_task_id: str | None = None
    prompt: str | None = None
    #: Epoch seconds (a wait's deadline): no try outlives it and no retry starts after it.
    deadline: float | None = None
    #: False: sent once, without the connection's retries.
    retry: bool = True

    def context(self, conn_id: str, secret: str | None) -> RequestContext:
        """The request's context for messages, blanking ``secret`` (the key it is sent with) out."""
        return RequestContext(kind=self.kind, route=self.route, conn_id=conn_id, mj_task_id=self.mj_task_id,
                              prompt=self.prompt, secret=secret)


# ---------------------------------------------------------------------------------------------
# Async sessions: one per (connection, event loop)
# ---------------------------------------------------------------------------------------------


@dataclass
class _AsyncEntry:
    """A loop's aiohttp session for one connection id. It holds no credentials (every request
    carries the auth header of its own hook's config, and it keeps no cookies), so a rotated key
    never has to wait for the session to be recreated."""

    session: aiohttp.ClientSession
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


class MidjourneyBaseHook(BaseHook):
    """The connection, the HTTP sessions and the retry policy, under the API methods of the hook.

    Not used on its own: :class:`~airflow_provider_mj.hooks.midjourney.MidjourneyHook` is the
    hook users and the provider's operators create.

    :param midjourney_conn_id: the Airflow connection of type ``midjourney`` to use.
    """

    def __init__(self, midjourney_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.midjourney_conn_id = midjourney_conn_id
        self._config: MidjourneyConnectionConfig | None = None
        self._session: requests.Session | None = None
        self._async_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        self._sleep = time.sleep
        self._asleep = asyncio.sleep
        self._retry_refusals = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}(midjourney_conn_id={self.midjourney_conn_id!r})"

    # -- connection ---------------------------------------------------------------------------

    @property
    def config(self) -> MidjourneyConnectionConfig:
        """The checked connection (read once per hook, then cached); raises MidjourneyConfigurationError.

        Each hook reads the connection itself (a trigger's hook when the trigger starts), so a
        connection changed in Airflow (a rotated key) is used by every hook created afterwards;
        a hook that meets a 401/403 reads it once more (see :meth:`_reread_after_refusal`).
        """
        if self._config is None:
            with connection_lookup(self.midjourney_conn_id):
                conn = self.get_connection(self.midjourney_conn_id)
            self._config = self._parse(conn, conn.extra_dejson)
            if self._config.api_key:
                from airflow.sdk.log import mask_secret

                mask_secret(self._config.api_key)
        return self._config

    def share_config(self) -> Self:
        """A new hook of the same connection that starts with this hook's checked config (no second
        read of the connection); it re-reads on its own after a 401/403. The trigger's shared
        poller polls through one."""
        other = type(self)(midjourney_conn_id=self.midjourney_conn_id)
        other._config = self._config
        return other

    async def aget_config(self) -> MidjourneyConnectionConfig:
        """The checked connection, read with Airflow's async connection API (no blocking I/O)."""
        if self._config is None:
            with connection_lookup(self.midjourney_conn_id):
                conn = await self.aget_connection(self.midjourney_conn_id)
            extras = await conn.aextra_dejson()
            config = self._parse(conn, extras)
            if config.api_key:
                from airflow.sdk.log import amask_secret

                await amask_secret(config.api_key)
            self._config = config
        return self._config

    @staticmethod
    def _key_refused(err: MidjourneyError) -> bool:
        return isinstance(err, MidjourneyAuthError) and err.http_status in (401, 403)

    def _rotated(self, used: MidjourneyConnectionConfig,
                 fresh: MidjourneyConnectionConfig) -> MidjourneyConnectionConfig | None:
        """``fresh`` when the connection changed since ``used`` was read, else None."""
        if fresh == used:
            return None
        self.log.info("The server refused the key of connection %r, which has changed since it was read (a "
                      "rotated key?); sending the request again with the current one.", self.midjourney_conn_id)
        return fresh

    def _reread_after_refusal(self, used: MidjourneyConnectionConfig,
                              err: MidjourneyError) -> MidjourneyConnectionConfig | None:
        """On a 401/403, read the connection again: the new config if it changed, else None.

        A key rotated in Airflow while this hook (a poller's, a long wait's) held the old one is
        picked up here, once, before the refusal is reported. A refused request created no job,
        so sending it again (a submit included) cannot pay twice.
        """
        if not self._key_refused(err):
            return None
        self._config = None
        try:
            return self._rotated(used, self.config)
        except MidjourneyError:  # the connection is gone or broken now: report the refusal
            self._config = used
            return None

    async def _areread_after_refusal(self, used: MidjourneyConnectionConfig,
                                     err: MidjourneyError) -> MidjourneyConnectionConfig | None:
        """:meth:`_reread_after_refusal` with Airflow's async connection API."""
        if not self._key_refused(err):
            return None
        self._config = None
        try:
            return self._rotated(used, await self.aget_config())
        except MidjourneyError:
            self._config = used
            return None

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
        """The hook's :class:`requests.Session` (created on first use, reused by every sync call).

        It is a :class:`~airflow_provider_mj.hooks.redirects.CredentialSafeSession`: a redirect to
        another origin drops the API key, whichever auth style carries it.
        """
        if self._session is None:
            self.config  # noqa: B018 - resolve the connection (and its errors) first
            session = CredentialSafeSession()  # credentials never follow a redirect off the origin
            for prefix in ("http://", "https://"):  # no request outlives its budget (hooks/deadlines.py)
                session.mount(prefix, watched_adapter())
            session.headers.update({"User-Agent": USER_AGENT})
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the hook's HTTP session (sync path). The hook can be used again afterwards."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Self:
        """Use the hook in a ``with`` block; its HTTP session is closed on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the sync HTTP session."""
        self.close()

    @contextmanager
    def refusals_raised(self) -> Iterator[Self]:
        """Inside this block a refused submit (queue full, 429, 503: the job was not accepted) is
        raised at once instead of being retried up to ``max_retries``: for a caller that waits
        for room on the account itself, as the submit operators do.
        """
        before, self._retry_refusals = self._retry_refusals, False
        try:
            yield self
        finally:
            self._retry_refusals = before

    # -- sync transport -------------------------------------------------------------------------

    def _policy(self, config: MidjourneyConnectionConfig, request: _Request, *, is_async: bool) -> Any:
        """The retry controller of one request (:func:`~airflow_provider_mj.hooks.retries.retrying`)."""
        return retrying(config, is_submit=request.kind == "submit", what=f"Midjourney {request.method} /mj/"
                        f"{request.route}", log=self.log, sleep=self._asleep if is_async else self._sleep,
                        is_async=is_async, deadline=request.deadline, retry_refusals=self._retry_refusals)

    def _call(self, method: str, route: str, kind: str, **options: Any) -> Any:
        """Send one request (retrying per the policy) and interpret the reply.

        ``options`` are the keyword fields of :class:`_Request`: ``json_body``, ``mj_task_id``,
        ``prompt``, ``deadline``, ``retry``.

        Each try is bounded as a whole by the connection's ``timeout``, and by ``deadline`` (epoch
        seconds, a wait's) if given: no try outlives it and no retry starts after it
        (:mod:`~airflow_provider_mj.hooks.deadlines`). A 401/403 re-reads the connection once: if
        it changed (a rotated key), the request is sent again with the current config before the
        refusal is reported.
        """
        request = _Request(method, route, kind, **options)
        config = self.config
        try:
            return self._send(config, request)
        except MidjourneyError as err:
            fresh = self._reread_after_refusal(config, err)
            if fresh is None:
                raise
        return self._send(fresh, request)

    def _send(self, config: MidjourneyConnectionConfig, request: _Request) -> Any:
        """``request`` with ``config``, retried per the policy."""
        session = self.get_conn()
        url = config.url(request.route)
        ctx = request.context(self.midjourney_conn_id, config.api_key)

        def send_once() -> Any:
            budget = request_budget(config.timeout, request.deadline)
            ends_at = time.monotonic() + budget
            try:
                status, headers, body = send_within(
                    session, ends_at, request.method, url, json=request.json_body, headers=config.headers(),
                    timeout=(budget, budget), allow_redirects=follows_redirects(request.method),
                )
            except WholeRequestTimeout as err:
                raise _connection_error(ctx, err, sent=True, timed_out=True) from None
            except Exception as err:
                import requests

                if isinstance(err, requests.RequestException):
                    raise _requests_failure(ctx, err) from None
                raise
            return _interpret(request, ctx, config, status, headers, body, url)

        if not request.retry:
            return send_once()
        return self._policy(config, request, is_async=False)(send_once)

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
                session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}, raise_for_status=False,
                                                cookie_jar=aiohttp.DummyCookieJar())
                entry = _AsyncEntry(session=session)
                per_loop[self.midjourney_conn_id] = entry
                self._async_loops.discard(loop)
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

    async def __aenter__(self) -> Self:
        """Use the hook in an ``async with`` block; its share of the loop's session is released on exit."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Release the async session (see :meth:`aclose`)."""
        await self.aclose()

    async def _acall(self, method: str, route: str, kind: str, **options: Any) -> Any:
        """Async :meth:`_call`: one request on the loop's shared session, the same whole-request
        bound (aiohttp's total timeout) and the same 401/403 re-read."""
        request = _Request(method, route, kind, **options)
        config = await self.aget_config()
        try:
            return await self._asend(config, request)
        except MidjourneyError as err:
            fresh = await self._areread_after_refusal(config, err)
            if fresh is None:
                raise
        return await self._asend(fresh, request)

    async def _asend(self, config: MidjourneyConnectionConfig, request: _Request) -> Any:
        """:meth:`_send` on the loop's shared aiohttp session."""
        import aiohttp

        entry = await self._aentry()
        url = config.url(request.route)
        ctx = request.context(self.midjourney_conn_id, config.api_key)

        async def send_once() -> Any:
            timeout = client_timeout(request_budget(config.timeout, request.deadline))
            try:
                async with entry.session.request(
                    request.method, url, json=request.json_body, headers=config.headers(), timeout=timeout,
                    allow_redirects=follows_redirects(request.method), max_redirects=MAX_REDIRECTS,
                    middlewares=(aiohttp_guard(url),),
                ) as response:
                    status, headers, body = response.status, response.headers, await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                raise _aiohttp_failure(ctx, err) from None
            return _interpret(request, ctx, config, status, headers, body, url)

        if not request.retry:
            return await send_once()
        return await self._policy(config, request, is_async=True)(send_once)


def _interpret(request: _Request, ctx: RequestContext, config: MidjourneyConnectionConfig, status: int,
               headers: Mapping[str, str], body: bytes, url: str) -> Any:
    """The result of one reply, sync or async: a redirect that was not followed is an error, the
    rest is read by :func:`~airflow_provider_mj.hooks.replies.interpret_response`."""
    raise_for_redirect(status, headers.get("Location"), url=url, ctx=ctx)
    return interpret_response(request.kind, status, headers, body, route=request.route, conn_id=ctx.conn_id,
                              mj_task_id=request.mj_task_id, prompt=request.prompt, secret=config.api_key,
                              base_url=config.base_url)
