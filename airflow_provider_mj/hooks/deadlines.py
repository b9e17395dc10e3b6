"""Whole-request time limits: the connection's ``timeout`` bounds a request, not each read.

A read timeout alone lets a server hold a request for as long as it likes by sending its reply
one byte at a time (every read succeeds before the timeout). So each request gets a budget:
the connection's ``timeout`` in seconds, capped by the deadline of the wait it belongs to
(:func:`request_budget`), and no request outlives it:

* blocking path (requests): the connect and first-byte timeouts are capped by the budget, and the
  body is read by :func:`read_body_within`, whose watchdog shuts the socket down when the budget
  is spent (``urllib3``'s ``HTTPResponse.shutdown``, which unblocks a read in progress);
* async path (aiohttp): :func:`client_timeout` sets ``ClientTimeout(total=budget)``, which covers
  connecting, sending and reading the whole body.

An exhausted budget is a read timeout: retried for reads, and for a submit reported as
"may have been accepted" (:class:`~airflow_provider_mj.exceptions.MidjourneySubmitUncertainError`).

Image downloads (:mod:`~airflow_provider_mj.hooks.downloads`) are the exception: an upscale is
several megabytes, more than a slow link carries in ``timeout`` seconds, so there ``timeout``
bounds connecting and each read, not the whole transfer.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp
    import requests

#: The smallest budget a request gets, so a wait called right at its deadline still makes one try.
MIN_BUDGET_SECONDS = 0.1


class WholeRequestTimeout(TimeoutError):
    """The reply did not arrive in full within the request's budget (it may have been trickling)."""


def request_budget(timeout: float, deadline: float | None = None) -> float:
    """Seconds one request may take: ``timeout``, capped by ``deadline`` (epoch seconds) if given."""
    if deadline is None:
        return float(timeout)
    return max(MIN_BUDGET_SECONDS, min(float(timeout), deadline - time.time()))


def read_body_within(response: requests.Response, ends_at: float) -> bytes:
    """The whole body of a ``stream=True`` reply, or :class:`WholeRequestTimeout` at ``ends_at``.

    :param response: a reply whose body has not been read yet.
    :param ends_at: ``time.monotonic()`` value at which the request's budget is spent.
    """
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        response.raw.shutdown()  # unblocks a read in progress: the server is trickling

    watchdog = threading.Timer(max(0.0, ends_at - time.monotonic()), cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        body = response.content
    except Exception as err:
        if expired.is_set():
            raise WholeRequestTimeout(f"the reply was still arriving when the request's time ran out ({err})") from None
        raise
    finally:
        watchdog.cancel()
        if expired.is_set():
            response.raw.close()  # a shut-down connection must not go back to the pool
        response.close()
    if expired.is_set():  # the cut came after the last byte but before the read returned
        raise WholeRequestTimeout("the reply was still arriving when the request's time ran out")
    return body


def client_timeout(budget: float) -> aiohttp.ClientTimeout:
    """The aiohttp timeout of one request: ``budget`` seconds in all, connecting and reading included."""
    import aiohttp

    return aiohttp.ClientTimeout(total=budget, connect=budget, sock_read=budget)
