"""The shared task model: parsing every server's quirks into one shape."""

from __future__ import annotations

import json

import pendulum
import pytest

from airflow_provider_mj.models import (
    Button,
    MidjourneyTask,
    SubmitResult,
    TaskOutcome,
    TaskStatus,
    buttons_for_action,
    parse_custom_id,
    split_numbered_prompts,
    split_shortened_prompts,
    task_outcome,
)

HASH = "26d56b92-4ed6-45e2-8561-563797923135"

PROTOCOL_EXAMPLE = {
    "id": "1320098173412546", "action": "IMAGINE", "status": "SUCCESS", "prompt": "cat --v 6.1",
    "promptEn": "cat --v 6.1", "description": "Submit success", "state": "my-tag",
    "submitTime": 1741531578038, "startTime": 1741531580190, "finishTime": 1741531608566,
    "progress": "100%", "imageUrl": "https://x.example/cat_26d56b92.png", "failReason": "",
    "properties": {"finalPrompt": "cat --v 6.1", "messageHash": HASH},
    "buttons": [
        {"customId": f"MJ::JOB::upsample::1::{HASH}", "emoji": "", "label": "U1", "style": 2, "type": 2},
        {"customId": f"MJ::JOB::reroll::0::{HASH}::SOLO", "emoji": "\U0001f504", "label": "", "style": 2, "type": 2},
        {"customId": f"MJ::JOB::variation::1::{HASH}", "emoji": "", "label": "V1", "style": 2, "type": 2},
    ],
}


def test_protocol_example_parses_and_round_trips_unchanged():
    task = MidjourneyTask.from_api(PROTOCOL_EXAMPLE)
    assert task.status is TaskStatus.SUCCESS
    assert task.outcome is TaskOutcome.SUCCEEDED
    assert task.message_hash == HASH
    assert task.submit_time == 1741531578038
    assert task.progress_percent == 100
    assert task.to_dict() == PROTOCOL_EXAMPLE
    json.dumps(task.to_dict())


def test_empty_labels_get_names_from_the_custom_id():
    blank = dict(PROTOCOL_EXAMPLE, buttons=[dict(b, label="", emoji="") for b in PROTOCOL_EXAMPLE["buttons"]])
    task = MidjourneyTask.from_api(blank)
    assert task.custom_ids() == {
        "U1": f"MJ::JOB::upsample::1::{HASH}",
        "reroll": f"MJ::JOB::reroll::0::{HASH}::SOLO",
        "V1": f"MJ::JOB::variation::1::{HASH}",
    }
    assert task.find_button("u1").custom_id.endswith("upsample::1::" + HASH)
    assert task.find_button("\U0001f504").custom_id.startswith("MJ::JOB::reroll")
    assert task.find_button("U2") is None


def test_times_of_zero_and_nulls_mean_not_yet():
    task = MidjourneyTask.from_api({"id": "1", "status": "SUBMITTED", "startTime": 0, "finishTime": None,
                                    "progress": None, "buttons": None, "properties": None})
    assert task.start_time is None and task.finish_time is None
    assert task.progress_percent is None
    assert task.buttons == [] and task.properties == {}
    assert task.outcome is TaskOutcome.RUNNING


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("NOT_START", "running"), ("SUBMITTED", "running"), ("IN_PROGRESS", "running"), ("MODAL", "running"),
     ("SUCCESS", "succeeded"), ("FAILURE", "failed"), ("CANCEL", "failed"), ("SOMETHING_NEW", "running"),
     ("", "running"), ("success", "succeeded")],
)
def test_one_definition_of_done(status, outcome):
    assert task_outcome(MidjourneyTask.from_api({"id": "1", "status": status})).value == outcome


def test_task_times_are_timezone_aware_pendulum_datetimes_with_a_duration():
    task = MidjourneyTask.from_api(PROTOCOL_EXAMPLE)
    assert task.submitted_at == pendulum.datetime(2025, 3, 9, 14, 46, 18, 38000, tz="UTC")
    for moment in (task.submitted_at, task.started_at, task.finished_at):
        assert isinstance(moment, pendulum.DateTime) and moment.utcoffset().total_seconds() == 0
    assert task.started_at.timestamp() == 1741531580.190
    assert task.finished_at.timestamp() == 1741531608.566
    assert isinstance(task.duration, pendulum.Duration)
    assert task.duration.total_seconds() == pytest.approx(28.376)
    assert (task.started_at - task.submitted_at).total_seconds() == pytest.approx(2.152)  # time in the queue


@pytest.mark.parametrize("missing", [None, 0, "0", ""])
def test_a_time_that_is_null_or_zero_is_none_and_so_is_the_duration(missing):
    task = MidjourneyTask.from_api({**PROTOCOL_EXAMPLE, "status": "IN_PROGRESS", "finishTime": missing})
    assert task.finished_at is None and task.duration is None
    assert task.started_at is not None
    queued = MidjourneyTask.from_api({"id": "1", "status": "SUBMITTED", "submitTime": 1741531578038,
                                      "startTime": missing})
    assert queued.started_at is None and queued.duration is None and queued.submitted_at is not None


def test_unknown_status_is_not_terminal():
    # task_outcome is the one definition of "done" (TaskStatus keeps no second one).
    assert TaskStatus.parse("WEIRD") is TaskStatus.UNKNOWN
    assert task_outcome(MidjourneyTask(id="1", status=TaskStatus.UNKNOWN)) is TaskOutcome.RUNNING
    assert task_outcome(MidjourneyTask(id="1", status=TaskStatus.FAILURE)) is TaskOutcome.FAILED


def test_every_button_kind_round_trips_through_its_custom_id():
    for action in ("IMAGINE", "UPSCALE", "DESCRIBE", "SHORTEN"):
        for button in buttons_for_action(action, HASH):
            parsed = parse_custom_id(button.custom_id)
            assert parsed is not None, button.custom_id
            assert button.display_label == parsed.label


def test_upscaled_task_offers_the_documented_buttons():
    labels = [b.display_label for b in buttons_for_action("UPSCALE", HASH)]
    for wanted in ("Upscale (Subtle)", "Upscale (Creative)", "Vary (Subtle)", "Vary (Strong)", "Vary (Region)",
                   "Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom", "Pan Left", "Favorite"):
        assert wanted in labels
    assert parse_custom_id(f"MJ::JOB::upsample_v7_2x_subtle::1::{HASH}::SOLO").label == "Upscale (Subtle)"
    assert parse_custom_id(f"MJ::Inpaint::1::{HASH}::SOLO").kind.always_modal
    assert parse_custom_id(f"MJ::CustomZoom::{HASH}").kind.always_modal
    assert parse_custom_id("MJ::Something::new") is None


def test_unknown_button_keeps_its_server_label():
    assert Button(custom_id="MJ::Unknown::1", label="Web").display_label == "Web"


def test_describe_prompts_split_on_keycaps():
    text = "1\ufe0f\u20e3 a cat --ar 5:4\n\n2\ufe0f\u20e3 a dog\n\n3\ufe0f\u20e3 a fox\n\n4\ufe0f\u20e3 an owl --ar 1:1"
    assert split_numbered_prompts(text) == ["a cat --ar 5:4", "a dog", "a fox", "an owl --ar 1:1"]


def test_shortened_prompts_are_read_from_their_section():
    text = "IMPORTANT TOKENS\ncat, hat\n\nShortened prompts\n1\ufe0f\u20e3 cat hat\n2\ufe0f\u20e3 cat\n3\ufe0f\u20e3 hat"
    assert split_shortened_prompts(text) == ["cat hat", "cat", "hat"]


def test_submit_result_accepts_string_ids_and_null_result():
    ok = SubmitResult.from_api({"code": 22, "description": "queued", "result": 1320098173412546,
                                "properties": {"numberOfQueues": 2}})
    assert ok.mj_task_id == "1320098173412546" and ok.queued and ok.number_of_queues == 2
    favorite = SubmitResult.from_api({"code": 1, "description": "ok", "result": None})
    assert favorite.mj_task_id is None and not favorite.needs_modal


def test_numeric_ids_become_strings_in_the_returned_dict():
    task = MidjourneyTask.from_api({"id": 1320098173412546, "status": "SUCCESS"})
    assert task.id == "1320098173412546"
    assert task.to_dict()["id"] == "1320098173412546"
