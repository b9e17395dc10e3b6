"""The emulator-only route the HTTP-sensor baseline waits on: 404 until the job is finished, then 200."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_done_route_is_404_until_the_job_is_finished_then_200(emulator):
    req = urllib.request.Request(f"{emulator.base_url}/mj/submit/imagine", data=json.dumps({"prompt": "a cat"}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        mj_task_id = json.loads(resp.read())["result"]

    assert _status(f"{emulator.base_url}/_emulator/task/{mj_task_id}/done") == 404
    assert _status(f"{emulator.base_url}/_emulator/task/1999999999999999/done") == 404
    deadline = time.monotonic() + 10
    while _status(f"{emulator.base_url}/_emulator/task/{mj_task_id}/done") != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert emulator.counters()["requests"]["_emulator/task/done"] >= 3
