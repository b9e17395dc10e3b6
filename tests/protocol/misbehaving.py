"""Small misbehaving servers on 127.0.0.1, one behaviour each, for the real-world fault tests.

* :class:`CannedServer` (from ``tests/hooks/conftest.py``) answers exactly the replies a test queues.
* :class:`TrickleServer` answers a full reply, but sends its body one byte per ``interval``
  seconds: a reply that never stalls long enough for a read timeout, yet takes as long as it likes.

Import the fixtures into a test module with ``from tests.protocol.misbehaving import canned, make_hook, trickle``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.hooks.conftest import canned, make_hook  # noqa: F401 - fixtures, re-exported

TASK_ID = "1320098173412546"


class TrickleServer:
    """Every request is answered 200 with ``body``, one byte per ``interval`` seconds.

    With ``trickle_head`` the status line and headers come one byte at a time too (a client that
    bounds only the body would still wait for them).

    ``requests`` counts the requests seen; ``hangups`` lists, per reply the client abandoned, how
    many bytes it had been sent by then (a client that gives up early hung up after a few bytes).
    The trickle of one reply never lasts more than ``max_seconds`` (a bounded test server).
    """

    def __init__(self, body: Any, *, interval: float = 1.0, max_seconds: float = 20.0,
                 trickle_head: bool = False) -> None:
        self.payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.payload)}"
                     "\r\nConnection: close\r\n\r\n").encode() if trickle_head else b""
        self.interval = interval
        self.max_seconds = max_seconds
        self.requests = 0
        self.hangups: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.requests += 1
                if not server.head:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(server.payload)))
                    self.end_headers()
                    self.wfile.flush()
                data = server.head + server.payload
                started = time.monotonic()
                sent = 0
                try:
                    for i in range(len(data)):
                        if time.monotonic() - started > server.max_seconds:
                            break
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        sent += 1
                        time.sleep(server.interval)
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    server.hangups.append(sent)
                self.close_connection = True

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def trickle() -> Callable[..., TrickleServer]:
    """Start trickling servers; all are stopped after the test."""
    servers: list[TrickleServer] = []

    def _start(body: Any, **kwargs: Any) -> TrickleServer:
        server = TrickleServer(body, **kwargs)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
