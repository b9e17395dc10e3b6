"""A relay that does not show a just-accepted job at once: waits go on, retries do not pay twice.

Relays refresh their view of the upstream server every ~15 s (PROTOCOL.md, "Timing seen in the
wild"), so a fetch right after a submit can answer ``task_not_found``. The emulator always shows
its tasks, so these tests use a small real HTTP server on 127.0.0.1 that lags exactly that way.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_provider_mj.exceptions import MidjourneyNotFoundError
from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from airflow_provider_mj.models import TaskStatus
from airflow_provider_mj.operators import MidjourneyImagineOperator
from airflow_provider_mj.operators.midjourney import MidjourneyJobState
from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger
from airflow_provider_mj.visibility import NOT_VISIBLE_GRACE_SECONDS, not_visible_yet, visible_by
from tests.helpers import connection_json, make_dag, task_instances, unique_dag_id

TASK_ID = "1732000000000001"


class LaggingRelay:
    """Accepts imagine jobs; fetch and list-by-condition deny them for the first ``hidden`` reads."""

    def __init__(self, hidden: int) -> None:
        self.hidden = hidden
        self.reads = 0
        self.submits = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, payload) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path.endswith("/submit/imagine"):
                    relay.submits += 1
                    self._reply(200, {"code": 1, "description": "提交成功", "result": TASK_ID, "properties": {}})
                elif self.path.endswith("/task/list-by-condition"):
                    relay.reads += 1
                    self._reply(200, [relay.task()] if relay.reads > relay.hidden else [])
                else:
                    self._reply(404, {"description": "no route", "type": "upstream_error", "code": "not_found"})

            def do_GET(self) -> None:
                relay.reads += 1
                if relay.reads <= relay.hidden:
                    self._reply(400, {"description": "task_not_found", "type": "upstream_error",
                                      "code": "task_not_found"})
                else:
                    self._reply(200, relay.task())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def task(self) -> dict:
        return {"id": TASK_ID, "action": "IMAGINE", "status": "SUCCESS", "progress": "100%",
                "prompt": "a lagging lighthouse", "submitTime": 1, "startTime": 0, "finishTime": 0,
                "imageUrl": f"{self.base_url}/img.png", "properties": {"finalPrompt": "a lagging lighthouse"},
                "buttons": []}


@pytest.fixture
def lagging_relay(monkeypatch):
    relays = []

    def start(hidden: int) -> LaggingRelay:
        relay = LaggingRelay(hidden)
        relays.append(relay)
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", connection_json(relay.base_url))
        return relay

    yield start
    for relay in relays:
        relay.server.shutdown()
        relay.server.server_close()


def test_blocking_wait_polls_through_not_found_within_the_grace(lagging_relay):
    lagging_relay(hidden=2)
    with MidjourneyHook() as hook:
        task = hook.wait_for_task(TASK_ID, poll_interval=0.05, deadline=time.time() + 10,
                                  visible_by=time.time() + 10)
    assert task.status is TaskStatus.SUCCESS


def test_blocking_wait_without_grace_fails_on_not_found(lagging_relay):
    lagging_relay(hidden=2)
    with MidjourneyHook() as hook, pytest.raises(MidjourneyNotFoundError):
        hook.wait_for_task(TASK_ID, poll_interval=0.05, deadline=time.time() + 10)


def test_not_found_after_the_grace_is_an_error(lagging_relay):
    lagging_relay(hidden=1000)
    with MidjourneyHook() as hook, pytest.raises(MidjourneyNotFoundError):
        hook.wait_for_task(TASK_ID, poll_interval=0.05, deadline=time.time() + 10, visible_by=time.time() + 0.3)


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per-task"])
async def test_trigger_polls_through_not_found_within_the_grace(lagging_relay, coalesce):
    lagging_relay(hidden=2)
    trigger = MidjourneyTaskTrigger(TASK_ID, poll_interval=0.05, deadline=time.time() + 10,
                                    coalesce=coalesce, visible_by=time.time() + 10)
    events = [event async for event in trigger.run()]
    assert [e.payload["status"] for e in events] == ["success"]


@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "per-task"])
async def test_trigger_without_grace_reports_not_found(lagging_relay, coalesce):
    lagging_relay(hidden=1000)
    trigger = MidjourneyTaskTrigger(TASK_ID, poll_interval=0.05, deadline=time.time() + 10, coalesce=coalesce)
    events = [event async for event in asyncio_timeout_iter(trigger.run(), 10)]
    assert [e.payload["error_type"] for e in events] == ["MidjourneyNotFoundError"]


def test_visible_by_survives_trigger_serialisation():
    trigger = MidjourneyTaskTrigger(TASK_ID, deadline=2.0e9, visible_by=1.9e9)
    classpath, kwargs = trigger.serialize()
    assert kwargs["visible_by"] == 1.9e9
    assert json.loads(json.dumps(kwargs)) == kwargs


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_operator_waits_for_a_job_the_relay_does_not_show_yet(lagging_relay, run_dag, request, deferrable):
    relay = lagging_relay(hidden=2)
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="imagine", prompt="a lagging lighthouse", poll_interval=0.05,
                                  deferrable=deferrable)
    run = run_dag(dag)
    assert task_instances(run)["imagine"].state == "success"
    assert relay.submits == 1


class _Store:
    """The task_state_store of a task instance (a dict is all the job state reads and writes)."""

    def __init__(self, value) -> None:
        self.value = value

    def get(self, key):
        return self.value

    def set(self, key, value) -> None:
        self.value = value


class _Log:
    def info(self, *args) -> None: ...

    warning = info


@pytest.mark.parametrize(
    ("submitted_ago", "reattaches"),
    [(1.0, True), (NOT_VISIBLE_GRACE_SECONDS + 5, False)],
    ids=["just-submitted", "long-ago"],
)
def test_retry_reattaches_to_a_job_not_visible_yet_but_resubmits_a_lost_one(lagging_relay, submitted_ago, reattaches):
    # Calling MidjourneyJobState directly: a dag.test() retry cannot be timed to land inside the
    # relay's lag window, and this is the one decision that matters (re-attach or pay again).
    lagging_relay(hidden=1000)
    store = _Store({"mj_task_id": TASK_ID, "request": "r", "submitted_at": time.time() - submitted_ago})
    state = MidjourneyJobState({"task_state_store": store}, _Log())
    with MidjourneyHook() as hook:
        earlier = state.recall(hook, "r")
    assert (earlier is not None) is reattaches
    if reattaches:
        assert earlier.id == TASK_ID and earlier.status is TaskStatus.UNKNOWN
        assert state.visible_by > time.time()


def test_one_rule_decides_whether_not_found_is_waited_through():
    # The hook's wait, the trigger's wait, the sensor and the re-attach all ask not_visible_yet.
    now = time.time()
    assert visible_by(now) == now + NOT_VISIBLE_GRACE_SECONDS
    assert visible_by() >= now + NOT_VISIBLE_GRACE_SECONDS
    assert not_visible_yet(now + 5) and not not_visible_yet(now - 1)
    assert not not_visible_yet(None)  # no grace given: "not found" is final


async def asyncio_timeout_iter(agen, seconds: float):
    async with asyncio.timeout(seconds):
        async for item in agen:
            yield item
