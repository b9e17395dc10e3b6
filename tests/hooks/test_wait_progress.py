"""The blocking wait reports every status/progress change (the operators publish previews from it)."""

from __future__ import annotations

import time

from airflow_provider_mj.hooks.midjourney import MidjourneyHook


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
