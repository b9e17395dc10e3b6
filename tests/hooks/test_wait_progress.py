"""The blocking wait reports every status/progress change (the operators publish previews from it)."""

from __future__ import annotations

import time

from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from tests.helpers import progress_lines


def test_on_progress_sees_each_change_once_including_the_running_preview(mj_connection):
    mj_connection.configure(job_seconds=1.0, progress_steps=4)
    seen = []
    with MidjourneyHook() as hook:
        mj_task_id = hook.imagine("a preview of a lighthouse").mj_task_id
        final = hook.wait_for_task(mj_task_id, poll_interval=0.05, deadline=time.time() + 20,
                                   on_progress=lambda task: seen.append((task.raw_status, task.progress, task.image_url)))
    states = [(status, progress) for status, progress, _ in seen]
    assert len(states) == len(set(states))
    assert states[-1] == ("SUCCESS", "100%")
    running = [url for status, _, url in seen if status == "IN_PROGRESS" and url]
    assert running, seen  # a preview image exists while the job runs
    assert seen[-1][2] == final.image_url


def test_a_chatty_relay_gets_the_first_line_status_changes_and_the_final_line(mj_connection, monkeypatch, capsys,
                                                                              caplog):
    # Progress moves on every read. The blocking wait logs progress within a status at most every
    # PROGRESS_LOG_POLLS poll intervals, like the trigger: made a minute here, so that what remains
    # is exactly the lines that must never be dropped, whatever the machine's load.
    from airflow_provider_mj import polling

    monkeypatch.setattr(polling, "PROGRESS_LOG_POLLS", 3000)  # 3000 x 0.02 s = 60 s
    caplog.set_level("INFO")
    mj_connection.configure(chatty=True, job_seconds=1.5)
    changes = []
    with MidjourneyHook() as hook:
        mj_task_id = hook.imagine("a chatty blocking wait").mj_task_id
        capsys.readouterr()
        caplog.clear()
        hook.wait_for_task(mj_task_id, poll_interval=0.02, deadline=time.time() + 20,
                           on_progress=lambda task: changes.append((task.raw_status, task.progress)))
    lines = progress_lines(capsys.readouterr().out + caplog.text, mj_task_id)
    assert len(lines) == 2, lines
    assert lines[0].startswith("IN_PROGRESS ") and lines[0].endswith("%")  # the first reading
    assert lines[1] == "SUCCESS 100%"  # the final line
    assert len(changes) > len(lines)  # on_progress (the preview link) still sees every change
