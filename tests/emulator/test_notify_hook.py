"""notifyHook: the emulator POSTs the full task JSON on every status or progress change."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from airflow_provider_mj.emulator import start_emulator


@pytest.fixture
def receiver():
    """A real HTTP server on 127.0.0.1 that records the callbacks it gets."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def _wait_for(predicate, seconds: float = 10.0) -> None:
    give_up = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < give_up, "timed out"
        time.sleep(0.05)


def test_notify_hook_gets_every_change_up_to_success(receiver):
    url, received = receiver
    with start_emulator(job_seconds=0.6, progress_steps=3) as emu:
        reply = requests.post(f"{emu.base_url}/mj/submit/imagine",
                              json={"prompt": "a called-back lighthouse", "notifyHook": url}, timeout=5).json()
        _wait_for(lambda: received and received[-1]["status"] == "SUCCESS")
        counters = emu.counters()["notifications"]
    assert {task["id"] for task in received} == {reply["result"]}
    statuses = [(task["status"], task["progress"]) for task in received]
    assert len(statuses) == len(set(statuses)) >= 3  # each change once, several steps
    assert received[-1]["imageUrl"].startswith(emu.base_url) and received[-1]["buttons"]
    assert counters["sent"] == len(received) and counters["failed"] == 0 and counters["watched"] == 0


def test_a_failing_callback_is_not_retried_and_polling_still_works():
    with start_emulator(job_seconds=0.3, progress_steps=1) as emu:
        # Nothing listens on port 9 of loopback: every callback fails.
        reply = requests.post(f"{emu.base_url}/mj/submit/imagine",
                              json={"prompt": "nobody listens", "notifyHook": "http://127.0.0.1:9/hook"},
                              timeout=5).json()
        fetch = f"{emu.base_url}/mj/task/{reply['result']}/fetch"
        _wait_for(lambda: requests.get(fetch, timeout=5).json()["status"] == "SUCCESS")
        _wait_for(lambda: emu.counters()["notifications"]["watched"] == 0)
        time.sleep(0.3)
        counters = emu.counters()["notifications"]
    assert counters["sent"] == 0 and counters["failed"] >= 1
