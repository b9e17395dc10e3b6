"""A server that echoes the API key into its free text (failReason, bannedWord, descriptions...).

Every server-provided string is scrubbed before anything reads it, so the key reaches no
exception, log line, trigger event or XCom, whichever field carried it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyBannedPromptError,
    MidjourneyError,
    MidjourneyTaskFailedError,
)
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.operators import MidjourneyImagineOperator
from tests.helpers import connection_json, make_dag, task_instances, unique_dag_id
from tests.protocol.relay_server import BANNED_WORD, FAIL_WORD, Quirks, start_relay

KEY = "sk-echoed-by-the-server-4f1d9a7c2e"


@pytest.fixture
def echoing(monkeypatch):
    """A proxy-dialect relay that echoes the key into every free-text field; the connection points at it."""
    with start_relay(Quirks(auth_style="bearer", api_key=KEY, echo_key=True, job_seconds=0.3)) as relay:
        monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT",
                           connection_json(relay.base_url, KEY, max_retries=1))
        yield relay


def _error_text(err: MidjourneyError) -> str:
    return " ".join([str(err), repr(err), repr(err.args), err.description, json.dumps(err.properties),
                     str(getattr(err, "fail_reason", "")), str(getattr(err, "banned_word", ""))])


def test_the_relay_really_echoes_the_key(echoing):
    import requests

    reply = requests.post(f"{echoing.base_url}/mj/submit/imagine", json={"prompt": "a fox"},
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()
    assert KEY in reply["description"]  # so the tests below have something to scrub


def test_a_failed_job_and_a_banned_prompt_do_not_carry_the_key(echoing):
    hook = MidjourneyHook()
    submitted = hook.imagine(f"a harbour that will {FAIL_WORD}")
    with pytest.raises(MidjourneyTaskFailedError) as failed:
        hook.wait_for_task(submitted.mj_task_id, poll_interval=0.05, deadline=None)
    assert failed.value.fail_reason.startswith("[Invalid parameter] Invalid value [key ***]")
    with pytest.raises(MidjourneyBannedPromptError) as banned:
        hook.imagine(f"a {BANNED_WORD} harbour")
    assert banned.value.banned_word == f"{BANNED_WORD} [key ***]"
    for err in (failed.value, banned.value):
        assert KEY not in _error_text(err)


async def test_the_async_path_scrubs_too(echoing):
    submitted = MidjourneyHook().imagine("a calm harbour")
    async with MidjourneyHook() as hook:
        task = await hook.afetch_task(submitted.mj_task_id)
        listed = await hook.alist_tasks([submitted.mj_task_id])
    assert "***" in task.description
    assert KEY not in json.dumps(task.to_dict()) + json.dumps([t.to_dict() for t in listed])


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_no_trace_of_the_key_in_xcom_events_or_logs(request, echoing, run_dag, capfd, deferrable):
    with make_dag(unique_dag_id(request)) as dag:
        MidjourneyImagineOperator(task_id="ok", prompt="a calm harbour", deferrable=deferrable, poll_interval=0.05)
        MidjourneyImagineOperator(task_id="failed", prompt=f"a harbour that will {FAIL_WORD}",
                                  deferrable=deferrable, poll_interval=0.05)
        MidjourneyImagineOperator(task_id="banned", prompt=f"a {BANNED_WORD} harbour", deferrable=deferrable,
                                  poll_interval=0.05)
    dr = run_dag(dag)
    printed = capfd.readouterr()
    assert {k: ti.state for k, ti in task_instances(dr).items()} == {"ok": "success", "failed": "failed",
                                                                     "banned": "failed"}
    from airflow.utils.session import create_session

    with create_session() as session:  # the whole metadata DB: XComs, trigger events, TI rows
        dump = "\n".join(session.connection().connection.driver_connection.iterdump())
    assert dr.run_id in dump and "[key ***]" in dump
    home = Path(os.environ["AIRFLOW_HOME"])
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*") if p.is_file())
    for where, text in {"metadata database": dump, "stdout+stderr": printed.out + printed.err, "logs": logs}.items():
        assert KEY not in text, f"the key leaked into {where}"
