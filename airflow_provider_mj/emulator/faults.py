"""Seeded, reproducible fault injection, as an outermost raw ASGI layer.

Each fault kind draws from its own ``random.Random`` stream, seeded from ``FaultSettings.seed`` and
the kind's name. Every ``/mj`` request draws once from each request-level stream (whatever the rates),
so the same seed and the same sequence of requests give the same faults, and changing one rate
does not shift the others. ``job_failure`` is drawn once per accepted job (by the engine).

How a dropped connection is made: the ASGI callable returns a non-None value without having sent
anything. uvicorn (both its httptools and h11 protocols) answers that by closing the transport
with no bytes written, so the client sees the connection closed without a reply
(``RemoteDisconnected`` / ``ServerDisconnectedError``). uvicorn logs that as an error; a logging
filter hides those lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any, Awaitable, Callable

from .settings import FaultSettings

#: What the ASGI app returns to make uvicorn close the connection without a reply.
DROP = "mj-emulator: connection dropped on purpose (fault injection)"

REQUEST_KINDS = ("drop", "rate_limit", "server_error", "malformed", "slow")
MJ_PREFIXES = ("/mj/", "/mj-fast/mj/", "/mj-relax/mj/", "/mj-turbo/mj/")


class FaultInjector:
    """The random streams and the decision of which fault, if any, a request gets."""

    def __init__(self, faults: FaultSettings) -> None:
        self.reseed(faults)

    def reseed(self, faults: FaultSettings) -> None:
        self.faults = faults
        self._rngs = {kind: random.Random(f"{faults.seed}:{kind}")
                      for kind in (*REQUEST_KINDS, "lost_reply", "job_failure")}

    def _draw(self, kind: str) -> bool:
        # Always draw, so that a stream's sequence does not depend on other kinds' rates.
        return self._rngs[kind].random() < getattr(self.faults, kind)

    def for_request(self, is_submit: bool) -> str | None:
        """The fault this request gets, or None."""
        hits = [kind for kind in REQUEST_KINDS if self._draw(kind)]
        lost = self._draw("lost_reply") if is_submit else False
        if hits:
            return hits[0]
        return "lost_reply" if lost else None

    def fail_job(self) -> bool:
        return self._draw("job_failure")


def classify(path: str) -> tuple[str | None, str]:
    """``(route key for the counters, speed mode)``; the key is None for routes not counted."""
    for prefix in MJ_PREFIXES:
        if path.startswith(prefix):
            mode = "default" if prefix == "/mj/" else prefix[4:].split("/", 1)[0]
            parts = path[len(prefix):].strip("/").split("/")
            if parts[0] == "task" and len(parts) == 3:
                return f"task/{parts[2]}", mode
            return "/".join(parts), mode
    if path.startswith("/images/"):
        return "images", ""
    if path.startswith("/_emulator"):
        return None, ""
    return "other", ""


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and DROP in record.args)


def install_log_filter() -> None:
    """Hide uvicorn's error line for connections dropped on purpose."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropFilter) for f in logger.filters):
        logger.addFilter(_DropFilter())


ASGIApp = Callable[[dict, Callable, Callable], Awaitable[Any]]


async def _send_simple(send: Callable, status: int, body: bytes, content_type: str | None,
                       extra: list[tuple[bytes, bytes]] = ()) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def apply_faults(scope: dict, receive: Callable, send: Callable, app: ASGIApp, *,
                       injector: FaultInjector, counters: Any, relay: bool) -> Any:
    """Count the request, inject a fault on ``/mj`` routes, else hand it to ``app``."""
    if scope["type"] != "http":
        return await app(scope, receive, send)
    path = scope["path"]
    route, mode = classify(path)
    if route is not None:
        counters.requests[route] += 1
    if not mode:
        return await app(scope, receive, send)
    counters.modes[mode] += 1
    kind = injector.for_request(is_submit="/submit/" in path)
    if kind is None:
        return await app(scope, receive, send)
    counters.faults[kind] += 1
    faults = injector.faults
    if kind == "drop":
        return DROP
    if kind == "rate_limit":
        retry = [(b"retry-after", str(faults.retry_after).encode())]
        if relay:
            # new-api's answer when the channel group is saturated: code 30, HTTP 429.
            body = json.dumps({"description": "the channel group is saturated, please retry later ",
                               "type": "upstream_error", "code": 30}).encode()
            return await _send_simple(send, 429, body, "application/json", retry)
        return await _send_simple(send, 429, b"", None, retry)
    if kind == "server_error":
        if relay:
            body = json.dumps({"error": {"message": "no available channel (emulated fault)",
                                         "type": "new_api_error"}}).encode()
            return await _send_simple(send, 503, body, "application/json")
        body = json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime()),
                           "status": 500, "error": "Internal Server Error", "path": path}).encode()
        return await _send_simple(send, 500, body, "application/json")
    if kind == "malformed":
        return await _send_simple(send, 200, b'{"code":1,"description":"Submit succ', "application/json")
    if kind == "slow":
        await asyncio.sleep(faults.slow_seconds)
        return await app(scope, receive, send)
    # lost_reply: the submit is processed (the job exists), its reply never leaves.
    async def swallow(message: dict) -> None:
        return None

    await app(scope, receive, swallow)
    return DROP
