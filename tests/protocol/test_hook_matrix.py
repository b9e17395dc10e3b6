"""The real hook (sync and async) against the independent protocol relay, under every quirk profile."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_mj.exceptions import (
    MidjourneyAuthError,
    MidjourneyBannedPromptError,
    MidjourneyNotFoundError,
    MidjourneyTaskFailedError,
    MidjourneyValidationError,
)
from airflow_provider_mj.hooks.midjourney import MidjourneyHook
from tests.helpers import png_bytes, png_data_url
from tests.protocol.conftest import MATRIX
from tests.protocol.relay_server import BANNED_WORD, FAIL_WORD

ALL = pytest.mark.parametrize("relay_profile", MATRIX, indirect=True)
GRID = {"U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4", "reroll"}
UPSCALED = {"Upscale (Subtle)", "Upscale (Creative)", "Vary (Subtle)", "Vary (Strong)", "Vary (Region)",
            "Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom", "Pan Left", "Pan Right", "Pan Up", "Pan Down",
            "Favorite"}


def wait(hook, mj_task_id):
    return hook.wait_for_task(mj_task_id, poll_interval=0.05, deadline=time.time() + 15)


@ALL
def test_hook_every_endpoint(relay, tmp_path):
    hook = MidjourneyHook()
    q = relay.quirks

    grid_sub = hook.imagine("a lighthouse --ar 3:2", state="tag-grid")
    fail_sub = hook.imagine(f"a {FAIL_WORD} prompt")
    blend_sub = hook.blend([png_data_url(), png_bytes(color=(1, 2, 3))], dimensions="landscape")
    shorten_sub = hook.shorten("a very long and flowery prompt about a lighthouse at dusk")
    for sub in (grid_sub, fail_sub, blend_sub, shorten_sub):
        assert isinstance(sub.mj_task_id, str) and sub.mj_task_id.isdigit()
        assert sub.code in (1, 22)

    grid = wait(hook, grid_sub.mj_task_id)
    assert grid.id == grid_sub.mj_task_id and grid.status.value == "SUCCESS" and grid.action == "IMAGINE"
    assert grid.state == "tag-grid" and grid.image_url
    assert set(grid.custom_ids()) == GRID
    assert grid.custom_ids()["U2"].startswith("MJ::JOB::upsample::2::")
    assert grid.finish_time and grid.start_time

    with pytest.raises(MidjourneyTaskFailedError) as failed:
        wait(hook, fail_sub.mj_task_id)
    assert failed.value.fail_reason == "[Invalid parameter] Invalid value"
    assert failed.value.mj_task_id == fail_sub.mj_task_id

    blended = wait(hook, blend_sub.mj_task_id)
    assert blended.action == "BLEND" and set(blended.custom_ids()) == GRID
    shortened = wait(hook, shorten_sub.mj_task_id)
    assert shortened.shortened_prompts() == [f"short prompt {n}" for n in range(1, 6)]

    # A button by label (labels may be blank on the wire), then every upscale button.
    assert hook.resolve_button(grid, "U2") == grid.custom_ids()["U2"]
    up_sub = hook.action(grid.id, "U2")
    assert up_sub.mj_task_id and not up_sub.needs_modal
    upscaled = wait(hook, up_sub.mj_task_id)
    assert upscaled.action == "UPSCALE" and set(upscaled.custom_ids()) == UPSCALED

    describe_sub = hook.describe(link=upscaled.image_url)
    favorite = hook.action(upscaled.id, "Favorite")
    assert favorite.code == 1 and favorite.mj_task_id is None  # acknowledged, no task
    pan_sub = hook.action(upscaled.id, "Pan Left")
    zoom_sub = hook.action(upscaled.id, "Custom Zoom")
    assert zoom_sub.needs_modal and zoom_sub.mj_task_id  # code 21 survives even on relays
    zoom_modal = hook.modal(zoom_sub.mj_task_id, prompt="a lighthouse --zoom 2")
    region_sub = hook.action(upscaled.id, "Vary (Region)")
    assert region_sub.needs_modal and region_sub.mj_task_id
    region_modal = hook.modal(region_sub.mj_task_id, prompt="a lighthouse with a boat", mask=png_bytes())

    described = wait(hook, describe_sub.mj_task_id)
    prompts = described.describe_prompts()
    assert len(prompts) == 4 and prompts[0] == "a described picture number 1, soft light --ar 5:4"
    assert wait(hook, pan_sub.mj_task_id).action == "PAN"
    # Describe's and shorten's numbered buttons imagine from one of their prompts.
    assert set(described.custom_ids()) == {"1", "2", "3", "4"}
    assert set(shortened.custom_ids()) == {"1", "2", "3", "4", "5"}
    picked = [hook.action(described.id, "2"), hook.action(shortened.id, "5")]
    picked = [wait(hook, sub.mj_task_id) for sub in picked]
    assert [t.action for t in picked] == ["IMAGINE", "IMAGINE"]
    assert [t.prompt for t in picked] == [prompts[1], "short prompt 5"]
    zoomed = wait(hook, zoom_modal.mj_task_id)
    assert zoomed.action == "ZOOM" and zoomed.prompt == "a lighthouse --zoom 2"
    assert (zoom_modal.mj_task_id != zoom_sub.mj_task_id) == q.modal_new_id
    assert wait(hook, region_modal.mj_task_id).action == "INPAINT"

    # Reads.
    listed = hook.list_tasks([upscaled.id, grid.id, "1000000000000001"]) if not q.no_list_by_condition else None
    if listed is not None:
        assert [t.id for t in listed] == [upscaled.id, grid.id]
    seed = hook.image_seed(grid.id)
    assert seed.isdigit()
    saved = hook.download_image(grid, tmp_path / "grid.png")
    assert open(saved, "rb").read().startswith(b"\x89PNG")

    # Errors, by code and HTTP status only (descriptions may be Chinese).
    with pytest.raises(MidjourneyNotFoundError) as unknown:
        hook.fetch_task("1000000000000001")
    if q.dialect == "relay":  # HTTP 400 {"description","type","code"}: judged by code, never by description
        assert unknown.value.http_status == 400
        assert ("task_not_found" if q.string_codes else "code 3") in str(unknown.value)
        assert unknown.value.mj_task_id == "1000000000000001"
    with pytest.raises(MidjourneyNotFoundError):
        hook.image_seed("1000000000000001")
    with pytest.raises(MidjourneyValidationError):
        hook.image_seed(shortened.id)  # no image: HTTP 400 code 4
    with pytest.raises(MidjourneyNotFoundError):
        hook.action("1000000000000001", "MJ::JOB::upsample::1::0a1b")
    with pytest.raises(MidjourneyValidationError):
        hook.action(grid.id, "MJ::JOB::upsample::1::not-this-task")
    with pytest.raises(MidjourneyNotFoundError):
        hook.modal("1000000000000001", prompt="x")
    with pytest.raises(MidjourneyBannedPromptError):
        hook.imagine(f"a {BANNED_WORD}")

    counters = relay.counters()
    assert counters["submits"] == {"imagine": 2, "blend": 1, "shorten": 1, "describe": 1, "action": 6,
                                   "bookmark": 1, "modal": 2}
    assert counters["submits_by_state"] == {"tag-grid": 1}
    modal_bodies = counters["modal_bodies"]
    assert modal_bodies[1]["maskBase64"] is True and modal_bodies[0].get("maskBase64") is None
    # taskId goes back as the string the server gave, also when the server sent a number.
    assert all(isinstance(b["taskId"], str) for b in counters["action_bodies"] + modal_bodies)
    hook.close()


@ALL
async def test_async_reads(relay):
    hook = MidjourneyHook()
    ids = [hook.imagine(f"async read {i}").mj_task_id for i in range(3)]
    try:
        first = await hook.afetch_task(ids[0])
        assert first.id == ids[0]
        while True:
            tasks = await hook.alist_tasks(ids + ["1000000000000001"]) if not relay.quirks.no_list_by_condition \
                else [await hook.afetch_task(i) for i in ids]
            assert [t.id for t in tasks] == ids
            if all(t.status.value == "SUCCESS" for t in tasks):
                break
            await asyncio.sleep(0.05)
        assert set(tasks[0].custom_ids()) == GRID
        with pytest.raises(MidjourneyNotFoundError):
            await hook.afetch_task("1000000000000001")
    finally:
        await hook.aclose()
        hook.close()


@pytest.mark.parametrize("relay_profile", ["proxy_204_secret", "relay", "secret_text_401"], indirect=True)
def test_wrong_key_is_an_auth_error_whatever_the_401_body(relay, monkeypatch):
    relay.configure(api_key="another-key")
    try:
        hook = MidjourneyHook()
        with pytest.raises(MidjourneyAuthError):
            hook.imagine("no entry")
        with pytest.raises(MidjourneyAuthError):
            hook.fetch_task("1000000000000001")
    finally:
        relay.configure(api_key="relay-test-key")
        relay.relay._counters["auth_failures"] = 0
    assert relay.counters()["submits"] == {}
