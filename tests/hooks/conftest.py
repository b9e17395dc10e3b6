"""Fixtures of the hook tests: hooks pointed at the emulator, and a canned-reply server.

The canned server is a real HTTP server on 127.0.0.1 that answers exactly the replies a test
queues. It stands in for real-world replies the emulator cannot make (204 on fetch, an HTML error
page from a proxy, a 401 with plain text...).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.helpers import connection_json

#: A key distinctive enough to grep for in logs, errors and reprs.
SECRET_KEY = "sk-mjtest-0xDEADBEEF-7c1e5a9f"


@pytest.fixture(params=["proxy", "relay"])
def dialect(request) -> str:
    """Run a test once against each server dialect."""
    return request.param


@pytest.fixture
def make_hook(monkeypatch):
    """Point ``midjourney_default`` at ``base_url`` with the given key and extras; return a new hook."""
    from airflow_provider_mj.hooks import MidjourneyHook

    hooks: list[MidjourneyHook] = []

    def _make(base_url: str, api_key: str | None = None, **extra: Any) -> MidjourneyHook:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(base_url, api_key, **extra))
        hook = MidjourneyHook()
        hooks.append(hook)
        return hook

    yield _make
    for hook in hooks:
        hook.close()


@pytest.fixture
def emu(emulator, dialect):
    """The shared emulator, switched to the test's dialect and guarded by SECRET_KEY."""
    emulator.configure(dialect=dialect, api_key=SECRET_KEY)
    return emulator


@pytest.fixture
def hook(emu, make_hook):
    """A hook on the emulator with the right key (bearer auth)."""
    return make_hook(emu.base_url, SECRET_KEY)


@pytest.fixture
def finished(hook):
    """A finished imagine (a 2x2 grid) of ``hook``'s server."""
    result = hook.imagine("a red fox")
    return hook.wait_for_task(result.mj_task_id, poll_interval=0.05, deadline=time.time() + 15)


def request_count(emulator) -> int:
    """How many /mj requests the emulator has seen."""
    return sum(emulator.counters()["requests"].values())


class CannedServer:
    """A real HTTP server on 127.0.0.1 answering queued replies (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: deque[list[Any]] = deque()  # [status, headers, body, times served]
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append({"method": self.command, "path": self.path,
                                        "headers": dict(self.headers), "body": body})
                entry = server.replies[0] if len(server.replies) == 1 else server.replies.popleft()
                entry[3] += 1
                status, headers, payload = entry[0], entry[1], entry[2]
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if status != 204:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload and status != 204:
                    self.wfile.write(payload)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def reply(self, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> CannedServer:
        """Queue a reply; ``body`` may be bytes, str, or JSON-able (sent as application/json)."""
        headers = dict(headers or {})
        if isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            payload = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        while self.replies and self.replies[0][3]:  # a repeated last reply gives way to new ones
            self.replies.popleft()
        self.replies.append([status, headers, payload, 0])
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def canned() -> Callable[..., CannedServer]:
    """Start canned-reply servers; all are stopped after the test."""
    servers: list[CannedServer] = []

    def _start() -> CannedServer:
        server = CannedServer()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
