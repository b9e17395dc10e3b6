"""Every endpoint of the hook against the emulator, in both dialects and both auth styles."""

from __future__ import annotations

import time

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyBannedPromptError,
    MidjourneyButtonNotFoundError,
    MidjourneyNotFoundError,
    MidjourneyQueueFullError,
    MidjourneyTaskFailedError,
    MidjourneyTimeoutError,
    MidjourneyValidationError,
)
from airflow_provider_mj.models import MidjourneyTask, SubmitResult, TaskStatus
from tests.hooks.conftest import SECRET_KEY

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _done(hook, result: SubmitResult) -> MidjourneyTask:
    return hook.wait_for_task(result.mj_task_id, poll_interval=0.05, deadline=time.time() + 15)


@pytest.mark.parametrize("auth_style", ["bearer", "mj-api-secret"])
def test_imagine_with_either_auth_style(emu, make_hook, auth_style):
    hook = make_hook(emu.base_url, SECRET_KEY, auth_style=auth_style)
    result = hook.imagine("a red fox", state="tag-1")
    assert isinstance(result, SubmitResult) and result.code in (1, 22) and result.mj_task_id
    task = _done(hook, result)
    assert task.status is TaskStatus.SUCCESS and task.state == "tag-1" and task.image_url
    assert emu.counters()["submits_by_state"] == {"tag-1": 1}


def test_imagine_sends_reference_images(hook, emu):
    result = hook.imagine("a red fox", images=[PNG])
    assert _done(hook, result).status is TaskStatus.SUCCESS


def test_wrong_key_is_an_auth_error(emu, make_hook):
    hook = make_hook(emu.base_url, "sk-wrong")
    with pytest.raises(MidjourneyAuthError, match="auth_style"):
        hook.imagine("a red fox")


def test_missing_key_is_an_auth_error(emu, make_hook):
    with pytest.raises(MidjourneyAuthError):
        make_hook(emu.base_url).fetch_task("1")


def test_action_presses_a_button_by_custom_id_or_label(hook):
    parent = _done(hook, hook.imagine("a red fox"))
    by_id = hook.action(parent.id, parent.custom_ids()["U1"])
    by_label = hook.action(parent.id, "V2")
    upscaled = _done(hook, by_id)
    assert upscaled.action == "UPSCALE"
    assert _done(hook, by_label).action == "VARIATION"
    assert "Zoom Out 2x" in upscaled.button_labels()


def test_action_on_an_unknown_parent_is_not_found(hook):
    with pytest.raises(MidjourneyNotFoundError):
        hook.action("1111111111111111", "MJ::JOB::upsample::1::26d56b92-4ed6-45e2-8561-563797923135")


def test_action_with_a_custom_id_not_on_the_parent_is_a_validation_error(hook):
    parent = _done(hook, hook.imagine("a red fox"))
    with pytest.raises(MidjourneyValidationError):
        hook.action(parent.id, "MJ::JOB::upsample::1::00000000-0000-0000-0000-000000000000")


def test_vary_region_needs_modal_then_completes(hook, emu):
    parent = _done(hook, hook.imagine("a red fox"))
    upscaled = _done(hook, hook.action(parent.id, "U1"))
    pending = hook.action(upscaled.id, "Vary (Region)")
    assert pending.needs_modal
    final = hook.modal(pending.mj_task_id, prompt="a red fox with a hat", mask=PNG)
    assert final.code == 1
    assert _done(hook, final).status is TaskStatus.SUCCESS


def test_modal_on_an_unknown_task_is_not_found(hook):
    with pytest.raises(MidjourneyNotFoundError):
        hook.modal("1111111111111111", prompt="x")


def test_blend(hook):
    result = hook.blend([PNG, PNG, PNG], dimensions="landscape")
    assert _done(hook, result).action == "BLEND"


def test_describe_from_an_image_and_from_a_link(hook):
    from_image = _done(hook, hook.describe(image=PNG))
    from_link = _done(hook, hook.describe(link="https://example.com/cat.png"))
    assert len(from_image.describe_prompts()) == 4
    assert from_link.action == "DESCRIBE"


def test_shorten(hook):
    task = _done(hook, hook.shorten("a very long and winding prompt about a red fox in the snow"))
    assert task.action == "SHORTEN" and task.shortened_prompts()


def test_fetch_and_list_tasks(hook):
    a = hook.imagine("one").mj_task_id
    b = hook.imagine("two").mj_task_id
    assert hook.fetch_task(a).id == a
    tasks = hook.list_tasks([b, "9999999999999999", a])
    assert [t.id for t in tasks] == [b, a]  # unknown ids left out, order of the request kept
    assert hook.list_tasks([]) == []


def test_fetch_of_an_unknown_id_is_not_found(hook):
    with pytest.raises(MidjourneyNotFoundError) as info:
        hook.fetch_task("9999999999999999")
    assert info.value.mj_task_id == "9999999999999999"


def test_image_seed(hook):
    task = _done(hook, hook.imagine("a red fox"))
    assert hook.image_seed(task.id).strip()
    with pytest.raises(MidjourneyNotFoundError):
        hook.image_seed("9999999999999999")


def test_banned_prompt(hook, dialect):
    with pytest.raises(MidjourneyBannedPromptError) as info:
        hook.imagine("a banned-word here")
    if dialect == "proxy":  # relays keep only description/type/code
        assert info.value.banned_word == "banned-word"


def test_queue_full(hook, emu):
    emu.configure(concurrency=1, queue_limit=0, job_seconds=5)
    hook.config  # noqa: B018
    hook.imagine("first")
    with pytest.raises(MidjourneyQueueFullError):
        hook.imagine("second")


def test_server_side_validation_error_code_4(hook, emu):
    parent = hook.imagine("still running")  # not SUCCESS yet: the server answers code 4
    emu.configure(job_seconds=5)
    with pytest.raises(MidjourneyValidationError):
        hook.action(parent.mj_task_id, "MJ::JOB::upsample::1::26d56b92-4ed6-45e2-8561-563797923135")


def test_wait_for_task_raises_on_failure_with_reason(hook):
    result = hook.imagine("this will emulator-fail")
    with pytest.raises(MidjourneyTaskFailedError) as info:
        _done(hook, result)
    assert info.value.fail_reason and info.value.mj_task_id == result.mj_task_id
    assert info.value.prompt == "this will emulator-fail"


def test_wait_for_task_deadline(hook, emu):
    emu.configure(job_seconds=10)
    result = hook.imagine("slow fox")
    with pytest.raises(MidjourneyTimeoutError) as info:
        hook.wait_for_task(result.mj_task_id, poll_interval=0.05, deadline=time.time() + 0.3)
    assert info.value.mj_task_id == result.mj_task_id


def test_wait_for_task_logs_progress_changes(hook, caplog, capsys):
    caplog.set_level("INFO")
    _done(hook, hook.imagine("a red fox"))
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err  # Airflow's structlog writes to stdout
    assert "IN_PROGRESS" in text and "%" in text and "SUCCESS 100%" in text


def test_resolve_button_labels_custom_ids_and_missing_ones(hook):
    task = _done(hook, hook.imagine("a red fox"))
    reroll = hook.resolve_button(task, "reroll")
    assert reroll.startswith("MJ::JOB::reroll::")
    assert hook.resolve_button(task.id, "u1") == task.custom_ids()["U1"]  # by id: fetched
    assert hook.resolve_button(task.to_dict(), reroll) == reroll  # a customId on the task
    with pytest.raises(MidjourneyButtonNotFoundError) as info:
        hook.resolve_button(task, "Zoom Out 2x")
    assert "U1" in info.value.available and "U1" in str(info.value)


def test_resolve_button_with_blank_server_labels():
    from airflow_provider_mj.hooks import MidjourneyHook

    raw = {"id": "1", "status": "SUCCESS", "buttons": [
        {"customId": "MJ::JOB::upsample::1::26d56b92-4ed6-45e2-8561-563797923135", "label": ""},
        {"customId": "MJ::JOB::reroll::0::26d56b92-4ed6-45e2-8561-563797923135::SOLO", "label": "", "emoji": "🔄"},
    ]}
    hook = MidjourneyHook()
    assert hook.resolve_button(raw, "U1").startswith("MJ::JOB::upsample::1::")
    assert hook.resolve_button(raw, "🔄").startswith("MJ::JOB::reroll::")


@pytest.mark.parametrize("mode", ["fast", "relax", "turbo"])
def test_speed_mode_routes(emu, make_hook, mode):
    hook = make_hook(emu.base_url, SECRET_KEY, speed_mode=mode)
    hook.fetch_task(hook.imagine("a red fox").mj_task_id)
    assert emu.counters()["modes"] == {mode: 2}


def test_base_url_with_trailing_mj(emu, make_hook):
    hook = make_hook(emu.base_url + "/mj/", SECRET_KEY)
    assert hook.imagine("a red fox").mj_task_id
