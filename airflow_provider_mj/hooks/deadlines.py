"""Whole-request time limits: the connection's ``timeout`` bounds a request, not each read.

A read timeout alone lets a server hold a request for as long as it likes by sending its reply
one byte at a time (every read succeeds before the timeout). So each request gets a budget:
the connection's ``timeout`` in seconds, capped by the deadline of the wait it belongs to
(:func:`request_budget`), and no request outlives it:

* blocking path (requests): :func:`send_within` sends the request and reads the whole reply,
  status line and headers included, under a watchdog that shuts the connection's socket down
  when the budget is spent (which unblocks a read in progress). The hook's session mounts
  :func:`watched_adapter`, whose connections tell the watchdog which socket the request is on
  (a new connection or one reused from the pool);
* async path (aiohttp): :func:`client_timeout` sets ``ClientTimeout(total=budget)``, which covers
  connecting, sending and reading the whole body.

An exhausted budget is a read timeout: retried for reads, and for a submit reported as
"may have been accepted" (:class:`~airflow_provider_mj.exceptions.MidjourneySubmitUncertainError`).

Image downloads (:mod:`~airflow_provider_mj.hooks.downloads`) are the exception: an upscale is
several megabytes, more than a slow link carries in ``timeout`` seconds, so there ``timeout``
bounds connecting and each read, not the whole transfer.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp
    import requests
    import requests.adapters
    import requests.structures

#: The smallest budget a request gets, so a wait called right at its deadline still makes one try.
MIN_BUDGET_SECONDS = 0.1


class WholeRequestTimeout(TimeoutError):
    """The reply did not arrive in full within the request's budget (it may have been trickling)."""


def request_budget(timeout: float, deadline: float | None = None) -> float:
    """Seconds one request may take: ``timeout``, capped by ``deadline`` (epoch seconds) if given."""
    if deadline is None:
        return float(timeout)
    return max(MIN_BUDGET_SECONDS, min(float(timeout), deadline - time.time()))


class _Watch:
    """The watchdog of one blocking request: which connection it is on, and whether it cut it."""

    def __init__(self) -> None:
        self.conn: object | None = None
        self.cut = False

    def expire(self) -> None:
        """Run once, by the timer's thread, when the budget is spent."""
        sock = getattr(self.conn, "sock", None)
        if sock is None:  # still connecting: the connect timeout (capped by the budget) ends it
            return
        self.cut = True
        try:
            sock.shutdown(socket.SHUT_RDWR)  # a blocked recv returns at once
        except OSError:
            pass


#: The watch of the request this thread is sending (read by the watched connections).
_current = threading.local()


@functools.cache
def watched_adapter_class() -> type:
    """A ``requests`` transport adapter whose connections report themselves to the current watch.

    Built on first use, so importing this module does not import ``requests`` or ``urllib3``.
    urllib3 2 calls ``HTTPConnection.request`` for every request, on a new connection or on one
    reused from the pool, so that is where the connection tells the watch it carries the request.
    """
    import requests.adapters
    import urllib3.connection
    import urllib3.connectionpool

    def watched(base: type) -> type:
        class Watched(base):  # type: ignore[misc, valid-type]
            def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                watch = getattr(_current, "watch", None)
                if watch is not None:
                    watch.conn = self
                return super().request(*args, **kwargs)

        Watched.__name__ = f"Watched{base.__name__}"
        return Watched

    class HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = watched(urllib3.connection.HTTPConnection)

    class HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = watched(urllib3.connection.HTTPSConnection)

    class WatchedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}

    return WatchedAdapter


def watched_adapter() -> requests.adapters.HTTPAdapter:
    """A new adapter for a session whose requests go through :func:`send_within`."""
    return watched_adapter_class()()


def send_within(session: requests.Session, ends_at: float, method: str, url: str,
                **kwargs: object) -> tuple[int, requests.structures.CaseInsensitiveDict, bytes]:
    """Send one request and read its whole reply by ``ends_at``: ``(status, headers, body)``.

    :param session: a session with :func:`watched_adapter` mounted (without it the watch never
        learns the socket, and only the per-read timeouts apply).
    :param ends_at: ``time.monotonic()`` value at which the request's budget is spent.
    :raises WholeRequestTimeout: the reply (status line, headers or body) was still arriving then.
    """
    watch = _Watch()
    _current.watch = watch
    timer = threading.Timer(max(0.0, ends_at - time.monotonic()), watch.expire)
    timer.daemon = True
    timer.start()
    try:
        response = session.request(method, url, stream=True, **kwargs)  # type: ignore[arg-type]
        try:
            body = response.content
        finally:
            response.close()
    except Exception as err:
        if watch.cut:
            raise WholeRequestTimeout(f"the reply was still arriving when the request's time ran out ({err})") from None
        raise
    finally:
        timer.cancel()
        _current.watch = None
        if watch.cut:
            close = getattr(watch.conn, "close", None)
            if close is not None:
                close()  # a shut-down connection must not go back to the pool
    if watch.cut:  # the cut came after the last byte but before the read returned
        raise WholeRequestTimeout("the reply was still arriving when the request's time ran out")
    return response.status_code, response.headers, body


def client_timeout(budget: float) -> aiohttp.ClientTimeout:
    """The aiohttp timeout of one request: ``budget`` seconds in all, connecting and reading included."""
    import aiohttp

    return aiohttp.ClientTimeout(total=budget, connect=budget, sock_read=budget)
