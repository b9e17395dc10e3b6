"""Fixtures for the emulator tests: emulators started once per session, reset before each test."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
import requests

from airflow_provider_mj.emulator import EmulatorSettings, start_emulator

JOB_SECONDS = 0.1

#: What each test starts from: every default setting (a new one included), with fast jobs and
#: room for 50 at once; the session emulator keeps its dialect and its address.
DEFAULTS: dict[str, Any] = {name: value for name, value in
                            EmulatorSettings(job_seconds=JOB_SECONDS, concurrency=50).to_dict().items()
                            if name not in ("dialect", "host", "port")}

# A 1x1 PNG, and another image, as data URLs.
PNG_1 = "data:image/png;base64," + base64.b64encode(
    bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                  "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a3a7b0e9000000004945"
                  "4e44ae426082")).decode()
PNG_2 = "data:image/png;base64," + base64.b64encode(b"another image's bytes").decode()


class Client:
    """requests against one emulator, with an optional key and speed prefix."""

    def __init__(self, emu: Any, headers: dict[str, str] | None = None, prefix: str = "/mj") -> None:
        self.emu = emu
        self.base = emu.base_url
        self.prefix = prefix
        self.session = requests.Session()
        self.session.headers.update(headers or {})

    def post(self, route: str, body: Any, **kw: Any) -> requests.Response:
        return self.session.post(f"{self.base}{self.prefix}/{route}", json=body, timeout=kw.pop("timeout", 10), **kw)

    def get(self, route: str, **kw: Any) -> requests.Response:
        return self.session.get(f"{self.base}{self.prefix}/{route}", timeout=kw.pop("timeout", 10), **kw)

    def submit(self, route: str, body: dict[str, Any], expect: tuple[int, ...] = (1,)) -> str:
        reply = self.post(f"submit/{route}", body)
        data = reply.json()
        assert reply.status_code == 200 and data["code"] in expect, (reply.status_code, data)
        return data["result"]

    def fetch(self, task_id: str) -> dict[str, Any]:
        reply = self.get(f"task/{task_id}/fetch")
        assert reply.status_code == 200, reply.text
        return reply.json()

    def wait(self, task_id: str, statuses: tuple[str, ...] = ("SUCCESS", "FAILURE"),
             timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            task = self.fetch(task_id)
            if task["status"] in statuses:
                return task
            assert time.monotonic() < deadline, f"task {task_id} stuck in {task['status']}"
            time.sleep(0.02)

    def imagine_done(self, prompt: str = "a cat", **extra: Any) -> dict[str, Any]:
        task = self.wait(self.submit("imagine", {"prompt": prompt, **extra}))
        assert task["status"] == "SUCCESS", task
        return task

    def press(self, task: dict[str, Any], label: str, **extra: Any) -> requests.Response:
        from airflow_provider_mj.models import MidjourneyTask

        button = MidjourneyTask.from_api(task).find_button(label)
        assert button is not None, f"no button {label!r} on {task['buttons']}"
        return self.post("submit/action", {"taskId": task["id"], "customId": button.custom_id, **extra})


@pytest.fixture(scope="session")
def proxy_server():
    with start_emulator(job_seconds=JOB_SECONDS) as emu:
        yield emu


@pytest.fixture(scope="session")
def relay_server():
    with start_emulator(job_seconds=JOB_SECONDS, dialect="relay") as emu:
        yield emu


@pytest.fixture
def emu(proxy_server):
    """The proxy-dialect emulator, with default settings and no tasks."""
    proxy_server.configure(**DEFAULTS)
    proxy_server.reset()
    return proxy_server


@pytest.fixture
def relay_emu(relay_server):
    relay_server.configure(**DEFAULTS)
    relay_server.reset()
    return relay_server


@pytest.fixture
def client(emu) -> Client:
    return Client(emu)


@pytest.fixture
def relay(relay_emu) -> Client:
    return Client(relay_emu)
