"""The engine on a fake clock: life cycle, queueing, expiry, without HTTP."""

from __future__ import annotations

import base64

import pytest

from airflow_provider_mj.emulator import images
from airflow_provider_mj.emulator.engine import Common, Engine, SubmitError
from airflow_provider_mj.emulator.settings import EmulatorSettings
from airflow_provider_mj.emulator.texts import KEYCAPS
from airflow_provider_mj.models import MidjourneyTask


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make(**kw):
    clock = Clock()
    return Engine(EmulatorSettings(job_seconds=10, progress_steps=3, **kw), clock=clock), clock


def status(engine, task_id):
    view = engine.status_of(engine.get(task_id))
    return view.status, view.progress


def test_life_cycle_phases_follow_the_clock():
    engine, clock = make()
    task_id = engine.imagine("cat", None, Common()).task_id
    expected = [(0, ("SUBMITTED", "0%")), (2.4, ("SUBMITTED", "0%")), (2.6, ("IN_PROGRESS", "25%")),
                (5.1, ("IN_PROGRESS", "50%")), (7.6, ("IN_PROGRESS", "75%")), (10, ("SUCCESS", "100%"))]
    start = clock.now
    for offset, want in expected:
        clock.now = start + offset
        assert status(engine, task_id) == want, offset
    task = engine.task_dict(engine.get(task_id), "http://e", relay=False)
    assert task["finishTime"] - task["startTime"] == 10_000


def test_queue_starts_jobs_as_slots_free():
    engine, clock = make(concurrency=2, queue_limit=2)
    t0 = clock.now
    codes = [engine.imagine(f"p{n}", None, Common()) for n in range(4)]
    assert [a.code for a in codes] == [1, 1, 22, 22]
    assert [a.properties.get("numberOfQueues") for a in codes[2:]] == [0, 1]
    with pytest.raises(SubmitError) as err:
        engine.imagine("p5", None, Common())
    assert err.value.code == 23
    assert status(engine, codes[2].task_id)[0] == "NOT_START"
    clock.now = t0 + 10
    assert status(engine, codes[0].task_id)[0] == "SUCCESS"
    assert status(engine, codes[2].task_id)[0] == "SUBMITTED"
    assert engine.queued_count() == 0
    assert engine.imagine("p6", None, Common()).code == 22  # slots busy until t0 + 20
    clock.now = t0 + 30
    assert all(status(engine, a.task_id)[0] == "SUCCESS" for a in codes)


def test_raising_concurrency_frees_slots_at_once():
    engine, clock = make(concurrency=1, queue_limit=5)
    engine.imagine("a", None, Common())
    assert engine.imagine("b", None, Common()).code == 22
    engine.apply_settings(engine.settings.merged(concurrency=3))
    assert engine.imagine("c", None, Common()).code == 1


def test_ttl_and_max_tasks_bound_the_store():
    engine, clock = make(max_tasks=3, task_ttl_seconds=60, queue_limit=100)
    ids = [engine.imagine(f"p{n}", None, Common()).task_id for n in range(5)]
    assert list(engine.tasks) == ids[2:]
    clock.now += 61
    assert engine.get(ids[-1]) is None and engine.task_count() == 0


def test_fail_word_fails_right_after_submission():
    engine, clock = make()
    task_id = engine.imagine("an emulator-fail prompt", None, Common()).task_id
    clock.now += 2.6
    assert status(engine, task_id) == ("FAILURE", "")
    assert engine.get(task_id).fail_reason


def test_injected_job_failure_is_counted():
    clock = Clock()
    engine = Engine(EmulatorSettings(job_seconds=10), clock=clock, fail_job=lambda: True)
    task_id = engine.imagine("cat", None, Common()).task_id
    clock.now += 10
    assert status(engine, task_id)[0] == "FAILURE"
    assert engine.counters.faults["job_failure"] == 1


def test_zero_job_seconds_finishes_at_once():
    engine, clock = make()
    engine.apply_settings(engine.settings.merged(job_seconds=0))
    assert status(engine, engine.imagine("x", None, Common()).task_id) == ("SUCCESS", "100%")


def test_ids_are_unique_16_digit_strings_across_resets():
    engine, _ = make()
    first = engine.imagine("x", None, Common()).task_id
    engine.reset()
    second = engine.imagine("x", None, Common()).task_id
    assert len(first) == len(second) == 16 and first != second


def test_submits_by_state_is_bounded(monkeypatch):
    from airflow_provider_mj.emulator import engine as module

    monkeypatch.setattr(module, "MAX_STATE_KEYS", 3)
    engine, _ = make(queue_limit=100, concurrency=100)
    for n in range(6):
        engine.shorten("x", Common(state=f"s{n}"))
    assert dict(engine.counters.submits_by_state) == {"s0": 1, "s1": 1, "s2": 1, "<other>": 3}


def test_calm_reads_repeat_between_progress_steps():
    engine, clock = make()
    job = engine.get(engine.imagine("calm", None, Common()).task_id)
    clock.now += 3
    first = engine.task_json(job, "http://e", relay=True)
    clock.now += 1
    assert engine.task_json(job, "http://e", relay=True) == first


def test_chatty_progress_moves_with_the_clock_and_previews_bust_caches():
    engine, clock = make(chatty=True)
    job = engine.get(engine.imagine("chatty", None, Common()).task_id)
    start = clock.now
    seen = []
    for offset in (0.5, 1.5, 3.0, 9.95):
        clock.now = start + offset
        seen.append(engine.task_dict(job, "http://e", relay=True))
    assert [t["status"] for t in seen] == ["IN_PROGRESS"] * 4
    assert [t["progress"] for t in seen] == ["5%", "15%", "30%", "99%"]
    urls = [t["imageUrl"] for t in seen]
    assert len(set(urls)) == 4 and all("?rand=" in u for u in urls)
    # Two reads at the same instant still differ: the cache-buster changes on every read.
    assert engine.task_json(job, "http://e", relay=True) != engine.task_json(job, "http://e", relay=True)
    clock.now = start + 10
    done = engine.task_dict(job, "http://e", relay=True)
    assert done["status"] == "SUCCESS" and done["progress"] == "100%" and "?" not in done["imageUrl"]


def test_status_lag_shows_the_job_as_it_was():
    engine, clock = make(status_lag_seconds=4)
    task_id = engine.imagine("lagging", None, Common()).task_id
    job = engine.get(task_id)
    clock.now += 10
    assert status(engine, task_id) == ("SUCCESS", "100%")  # the account is done...
    assert engine.read_view(job).status == "IN_PROGRESS"  # ...the relay does not show it yet
    assert engine.task_json(job, "http://e", relay=True) != engine.task_json(job, "http://e", relay=False)
    assert b'"IN_PROGRESS"' in engine.task_json(job, "http://e", relay=True)
    clock.now += 4
    assert engine.read_view(job).status == "SUCCESS"
    assert b'"SUCCESS"' in engine.task_json(job, "http://e", relay=True)


def test_shared_request_rules_answer_code_4():
    engine, _ = make()
    for bad in (Common(state="s" * 256), Common(notify_hook="ftp://x/y"), Common(notify_hook="http://h/" + "a" * 2000),
                Common(bot_type="niji_journey")):
        with pytest.raises(SubmitError) as err:
            engine.imagine("x", None, bad)
        assert err.value.code == 4
    for refs in (["data:text/plain;base64,aGk="], ["data:image/png;base64,%%%"], ["not a data url"]):
        with pytest.raises(SubmitError) as err:
            engine.imagine("x", refs, Common())
        assert err.value.code == 4 and "base64Array" in err.value.description


def _press(engine, parent_id, label):
    """Press the button labelled ``label`` of the finished task ``parent_id``: the new job."""
    task = MidjourneyTask.from_api(engine.task_dict(engine.get(parent_id), "http://e", relay=False))
    [button] = [b for b in task.buttons if b.label == label]
    child = engine.action(parent_id, button.custom_id, Common(), remix=False)
    return task, engine.get(child.task_id)


def test_a_describe_prompt_button_imagines_that_prompt():
    engine, clock = make()
    image = "data:image/png;base64," + base64.b64encode(images.render("0123456789abcdef", "single", 32, 32)).decode()
    parent = engine.describe(image, None, Common(), "http://e").task_id
    clock.now += 10
    described, job = _press(engine, parent, "2")

    assert job.action == "IMAGINE" and job.prompt == described.describe_prompts()[1]
    assert f"{KEYCAPS[1]} {job.prompt}" in described.final_prompt


def test_a_shortened_prompt_button_imagines_that_prompt():
    engine, clock = make()
    parent = engine.shorten("a very old lighthouse on a windswept cliff at dusk --ar 3:2", Common()).task_id
    clock.now += 10
    shortened, job = _press(engine, parent, "3")

    assert job.action == "IMAGINE" and job.prompt == shortened.shortened_prompts()[2]
    assert f"{KEYCAPS[2]} {job.prompt}" in shortened.description.split("Shortened prompts")[1]
