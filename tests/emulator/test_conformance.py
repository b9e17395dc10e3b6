"""The emulator speaks PROTOCOL.md: every route, both dialects, both auth styles, every code."""

from __future__ import annotations

import re
import time

import pytest
import requests

from airflow_provider_mj.models import MidjourneyTask, buttons_for_action, split_shortened_prompts

from . import _png
from .conftest import JOB_SECONDS, PNG_1, PNG_2, Client

PREFIXES = ("/mj", "/mj-fast/mj", "/mj-relax/mj", "/mj-turbo/mj")


# ---------------------------------------------------------------------------------------------
# Routes and prefixes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_route_answers_under_every_speed_prefix(emu, prefix):
    c = Client(emu, prefix=prefix)
    task = c.imagine_done("a lighthouse")
    assert c.post("task/list-by-condition", {"ids": [task["id"]]}).json()[0]["id"] == task["id"]
    assert c.get(f"task/{task['id']}/image-seed").json()["code"] == 1
    assert c.press(task, "U1").json()["code"] == 1
    assert c.post("submit/blend", {"base64Array": [PNG_1, PNG_2]}).json()["code"] == 1
    assert c.post("submit/describe", {"base64": PNG_1}).json()["code"] == 1
    assert c.post("submit/shorten", {"prompt": "a very long prompt"}).json()["code"] == 1
    modal_id = c.press(c.wait(c.press(task, "U2").json()["result"]), "Custom Zoom").json()["result"]
    assert c.post("submit/modal", {"taskId": modal_id, "prompt": "x --zoom 2"}).json()["code"] == 1
    mode = "default" if prefix == "/mj" else prefix.split("/")[1][3:]
    assert emu.counters()["modes"][mode] >= 8


def test_image_urls_are_absolute_and_point_back_at_the_emulator(client, emu):
    task = client.imagine_done()
    assert task["imageUrl"].startswith(emu.base_url + "/images/")
    reply = requests.get(task["imageUrl"])
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"


def test_public_base_url_is_used_for_image_urls(client, emu):
    emu.configure(public_base_url="https://cdn.example.com/")
    task = client.imagine_done()
    assert task["imageUrl"].startswith("https://cdn.example.com/images/")


# ---------------------------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------------------------


def test_no_key_configured_means_open(client):
    assert client.post("submit/imagine", {"prompt": "x"}).json()["code"] == 1


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer sekrit"}, {"mj-api-secret": "sekrit"}])
def test_both_auth_styles_are_accepted(emu, headers):
    emu.configure(api_key="sekrit")
    assert Client(emu, headers).post("submit/imagine", {"prompt": "x"}).json()["code"] == 1


def test_proxy_missing_key_is_401_with_empty_body(emu):
    emu.configure(api_key="sekrit")
    reply = Client(emu).post("submit/imagine", {"prompt": "x"})
    assert reply.status_code == 401 and reply.content == b""


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer nope"}, {"mj-api-secret": "nope"},
                                     {"Authorization": "sekrit"}])
def test_proxy_wrong_key_is_401_plain_text(emu, headers):
    emu.configure(api_key="sekrit")
    reply = Client(emu, headers).get("task/1/fetch")
    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("text/plain") and reply.text


def test_relay_bad_key_is_401_new_api_error(relay_emu):
    relay_emu.configure(api_key="sekrit")
    reply = Client(relay_emu, {"Authorization": "Bearer nope"}).post("submit/imagine", {"prompt": "x"})
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "new_api_error" and reply.json()["error"]["message"]


def test_emulator_and_image_routes_need_no_key(emu):
    task = Client(emu).imagine_done()
    emu.configure(api_key="sekrit")
    assert requests.get(task["imageUrl"]).status_code == 200
    assert requests.get(emu.base_url + "/_emulator/counters").status_code == 200
    assert Client(emu).get(f"task/{task['id']}/fetch").status_code == 401


# ---------------------------------------------------------------------------------------------
# Life cycle and timing
# ---------------------------------------------------------------------------------------------


def test_life_cycle_goes_submitted_in_progress_success_with_rising_progress(emu):
    emu.configure(job_seconds=0.6, progress_steps=3)
    c = Client(emu)
    before = int(time.time() * 1000)
    task_id = c.submit("imagine", {"prompt": "timed"})
    seen = []
    while True:
        task = c.fetch(task_id)
        seen.append((task["status"], task["progress"], task["imageUrl"], task["startTime"], task["finishTime"]))
        if task["status"] == "SUCCESS":
            break
        time.sleep(0.02)
    statuses = [s[0] for s in seen]
    assert statuses[0] == "SUBMITTED" and seen[0][1] == "0%" and seen[0][4] is None
    assert "IN_PROGRESS" in statuses
    progress = [int(p[:-1]) for s, p, *_ in seen if s == "IN_PROGRESS"]
    assert progress == sorted(progress) and set(progress) <= {25, 50, 75} and len(set(progress)) >= 2
    # One preview per progress step (the picture fills with progress), like a real server's
    # preview URL that changes while the job runs.
    previews = {url for s, _, url, *_ in seen if s == "IN_PROGRESS"}
    assert len(previews) == len(set(progress)) and all("preview" in url for url in previews)
    assert task["progress"] == "100%" and "preview" not in task["imageUrl"] and len(task["buttons"]) == 9
    assert before <= task["submitTime"] <= task["startTime"] < task["finishTime"]
    assert abs(task["finishTime"] - task["startTime"] - 600) <= 5
    assert task["failReason"] is None and task["state"] is None


def test_preview_image_is_a_png_while_in_progress(emu):
    emu.configure(job_seconds=1.0)
    c = Client(emu)
    task = c.wait(c.submit("imagine", {"prompt": "preview"}), ("IN_PROGRESS",))
    data = requests.get(task["imageUrl"]).content
    assert _png.size(data) == (480, 480) and "grid" in _png.text(data)["Comment"]


def test_state_is_echoed_on_the_task(client):
    task = client.imagine_done(state="tag-1")
    assert task["state"] == "tag-1"


def test_fail_word_ends_in_failure_with_a_reason(client):
    task = client.wait(client.submit("imagine", {"prompt": "a emulator-fail cat"}))
    assert task["status"] == "FAILURE" and task["failReason"] and task["finishTime"]
    assert task["buttons"] == [] and task["imageUrl"] is None


def test_finished_task_shows_the_models_buttons(client):
    task = client.imagine_done()
    expected = [b.to_api() for b in buttons_for_action("IMAGINE", task["properties"]["messageHash"])]
    assert task["buttons"] == expected
    assert re.fullmatch(r"\d{16}", task["id"])
    assert re.fullmatch(r"[0-9a-f-]{36}", task["properties"]["messageHash"])


# ---------------------------------------------------------------------------------------------
# Queueing
# ---------------------------------------------------------------------------------------------


def test_jobs_beyond_concurrency_are_queued_with_code_22_then_run(emu):
    emu.configure(concurrency=1, queue_limit=2, job_seconds=0.3)
    c = Client(emu)
    first = c.submit("imagine", {"prompt": "one"})
    second = c.post("submit/imagine", {"prompt": "two"}).json()
    third = c.post("submit/imagine", {"prompt": "three"}).json()
    assert second["code"] == 22 and second["properties"]["numberOfQueues"] == 0
    assert third["code"] == 22 and third["properties"]["numberOfQueues"] == 1
    queued = c.fetch(second["result"])
    assert queued["status"] == "NOT_START" and queued["startTime"] is None
    refused = c.post("submit/imagine", {"prompt": "four"}).json()
    assert refused["code"] == 23 and refused["result"] is None
    one = c.wait(first)
    two = c.wait(second["result"], timeout=5)
    assert two["status"] == "SUCCESS" and two["startTime"] >= one["finishTime"] - 1
    assert emu.counters()["submit_codes"] == {"1": 1, "22": 2, "23": 1}


def test_queue_limit_zero_refuses_everything_beyond_concurrency(emu):
    emu.configure(concurrency=1, queue_limit=0)
    c = Client(emu)
    c.submit("imagine", {"prompt": "one"})
    assert c.post("submit/imagine", {"prompt": "two"}).json()["code"] == 23


def test_relay_rewrites_queued_22_to_1(relay_emu):
    relay_emu.configure(concurrency=1)
    r = Client(relay_emu)
    r.submit("imagine", {"prompt": "one"})
    queued = r.post("submit/imagine", {"prompt": "two"}).json()
    assert queued["code"] == 1 and queued["result"]
    assert r.fetch(queued["result"])["status"] == "NOT_START"


# ---------------------------------------------------------------------------------------------
# Proxy dialect errors (HTTP 200 with a code, 404 for a missing parent)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route, body", [
    ("imagine", {"prompt": ""}),
    ("imagine", {"prompt": "   "}),
    ("imagine", {}),
    ("imagine", {"prompt": "x", "base64Array": ["data:image/png;base64,@@@"]}),
    ("imagine", {"prompt": "x", "base64Array": ["http://example.com/a.png"]}),
    ("imagine", {"prompt": "x", "state": "s" * 256}),
    ("imagine", {"prompt": "x", "notifyHook": "http://h/" + "x" * 2000}),
    ("imagine", {"prompt": "x", "notifyHook": "ftp://example.com/hook"}),
    ("imagine", {"prompt": "x", "botType": "OTHER_BOT"}),
    ("imagine", {"prompt": 42}),
    ("blend", {"base64Array": [PNG_1]}),
    ("blend", {"base64Array": [PNG_1] * 6}),
    ("blend", {}),
    ("blend", {"base64Array": [PNG_1, "data:text/plain;base64,eA=="]}),
    ("blend", {"base64Array": [PNG_1, PNG_2], "dimensions": "WIDE"}),
    ("describe", {}),
    ("describe", {"link": "ftp://example.com/a.png"}),
    ("describe", {"link": "not a url"}),
    ("describe", {"base64": "data:image/png;base64,"}),
    ("shorten", {"prompt": ""}),
    ("action", {"taskId": "", "customId": "MJ::JOB::upsample::1::x"}),
    ("action", {"taskId": "1", "customId": ""}),
    ("modal", {"taskId": ""}),
])
def test_proxy_validation_errors_are_code_4_with_http_200(client, route, body):
    reply = client.post(f"submit/{route}", body)
    assert reply.status_code == 200
    assert reply.json()["code"] == 4 and reply.json()["result"] is None


def test_state_of_255_chars_and_https_hook_are_fine(client):
    body = {"prompt": "x", "state": "s" * 255, "notifyHook": "https://example.com/hook"}
    assert client.post("submit/imagine", body).json()["code"] == 1


def test_body_that_is_not_json_is_code_4(client):
    reply = client.session.post(client.base + "/mj/submit/imagine", data=b"{not json",
                                headers={"content-type": "application/json"})
    assert reply.status_code == 200 and reply.json()["code"] == 4


def test_banned_word_is_code_24_with_the_word(client):
    reply = client.post("submit/imagine", {"prompt": "a Banned-Word here"}).json()
    assert reply["code"] == 24
    assert reply["properties"]["bannedWord"] == "banned-word"
    assert reply["properties"]["promptEn"] == "a Banned-Word here"


def test_banned_words_are_configurable(emu, client):
    emu.configure(banned_words=["gore"])
    assert client.post("submit/imagine", {"prompt": "gore"}).json()["code"] == 24
    assert client.post("submit/imagine", {"prompt": "banned-word"}).json()["code"] == 1


def test_action_on_unknown_parent_is_404_code_3(client):
    reply = client.post("submit/action", {"taskId": "1234567890123456", "customId": "MJ::JOB::upsample::1::x"})
    assert reply.status_code == 404 and reply.json()["code"] == 3


def test_action_on_unfinished_parent_is_code_4(emu):
    emu.configure(job_seconds=5)
    c = Client(emu)
    task_id = c.submit("imagine", {"prompt": "slow"})
    reply = c.post("submit/action", {"taskId": task_id, "customId": "MJ::JOB::upsample::1::x"})
    assert reply.status_code == 200 and reply.json()["code"] == 4


def test_action_with_a_custom_id_not_on_the_parent_is_code_4(client):
    task = client.imagine_done()
    other = "MJ::JOB::upsample::1::00000000-0000-0000-0000-000000000000"
    assert client.post("submit/action", {"taskId": task["id"], "customId": other}).json()["code"] == 4
    zoom_on_grid = f"MJ::Outpaint::50::1::{task['properties']['messageHash']}::SOLO"
    assert client.post("submit/action", {"taskId": task["id"], "customId": zoom_on_grid}).json()["code"] == 4


def test_modal_on_unknown_task_is_404_code_3(client):
    reply = client.post("submit/modal", {"taskId": "1234567890123456", "prompt": "x"})
    assert reply.status_code == 404 and reply.json()["code"] == 3


def test_fetch_of_unknown_id_is_200_null_in_proxy(client):
    reply = client.get("task/1234567890123456/fetch")
    assert reply.status_code == 200 and reply.json() is None


def test_image_seed_codes(emu):
    emu.configure(job_seconds=3)
    c = Client(emu)
    unknown = c.get("task/1234567890123456/image-seed")
    assert unknown.status_code == 404 and unknown.json()["code"] == 3
    running = c.get(f"task/{c.submit('imagine', {'prompt': 'x'})}/image-seed")
    assert running.status_code == 200 and running.json()["code"] == 3
    emu.configure(job_seconds=0.1)
    shorten = c.wait(c.submit("shorten", {"prompt": "a long prompt"}))
    no_image = c.get(f"task/{shorten['id']}/image-seed")
    assert no_image.status_code == 400 and no_image.json()["code"] == 4
    task = c.imagine_done("seeded")
    seed = c.get(f"task/{task['id']}/image-seed").json()
    assert seed["code"] == 1 and seed["result"].isdigit()
    again = c.imagine_done("seeded")
    assert c.get(f"task/{again['id']}/image-seed").json()["result"] == seed["result"]


# ---------------------------------------------------------------------------------------------
# Relay dialect
# ---------------------------------------------------------------------------------------------


def _relay_error(reply):
    """A relay's own error (new-api): HTTP 400, integer code 4, the reason as a name in description."""
    assert reply.status_code == 400, (reply.status_code, reply.text)
    body = reply.json()
    assert body["type"] == "upstream_error" and body["code"] == 4, body
    return body["description"].strip()


def test_relay_refuses_an_action_on_an_unfinished_parent_itself(relay_emu):
    relay_emu.configure(job_seconds=30)
    r = Client(relay_emu)
    running = r.submit("imagine", {"prompt": "still running"})
    custom_id = "MJ::JOB::upsample::1::26d56b92-4ed6-45e2-8561-563797923135"
    assert _relay_error(r.post("submit/action", {"taskId": running, "customId": custom_id})) == "task_status_not_success"


def _passed_through(reply, code):
    """An upstream refusal a relay passes on as it came: HTTP 200, the midjourney-proxy envelope."""
    assert reply.status_code == 200, (reply.status_code, reply.text)
    body = reply.json()
    assert body["code"] == code and body["result"] is None and "type" not in body, body
    return body


def test_relay_errors_are_http_400_upstream_error(relay):
    assert _relay_error(relay.post("submit/imagine", {"prompt": ""})) == "prompt_is_required"
    assert _relay_error(relay.post("submit/action", {"taskId": "1234567890123456",
                                                     "customId": "MJ::JOB::upsample::1::x"})) == "task_not_found"
    assert _relay_error(relay.post("submit/modal", {"taskId": "1234567890123456"})) == "task_not_found"
    # new-api's own spelling on these two routes.
    assert _relay_error(relay.get("task/1234567890123456/fetch")) == "task_no_found"
    assert _relay_error(relay.get("task/1234567890123456/image-seed")) == "task_no_found"
    assert _relay_error(relay.post("submit/imagine", {"prompt": 5})) == "bind_request_body_failed"
    # As new-api writes it: the name, then a space.
    assert relay.post("submit/imagine", {"prompt": ""}).json() == {
        "description": "prompt_is_required ", "type": "upstream_error", "code": 4}


def test_relay_passes_upstream_refusals_through_as_http_200_envelopes(relay):
    _passed_through(relay.post("submit/blend", {"base64Array": [PNG_1]}), 4)
    banned = _passed_through(relay.post("submit/imagine", {"prompt": "banned-word"}), 24)
    assert banned["properties"]["bannedWord"] == "banned-word"


def test_relay_passes_queue_full_through_as_http_200_code_23(relay_emu):
    relay_emu.configure(concurrency=1, queue_limit=0)
    r = Client(relay_emu)
    r.submit("imagine", {"prompt": "one"})
    _passed_through(r.post("submit/imagine", {"prompt": "two"}), 23)


def test_relay_keeps_only_final_prompt_and_uses_zero_times(relay_emu):
    relay_emu.configure(job_seconds=2)
    r = Client(relay_emu)
    task = r.fetch(r.submit("imagine", {"prompt": "relay cat"}))
    assert task["properties"] == {"finalPrompt": "relay cat"}
    assert task["finishTime"] == 0 and task["failReason"] == ""


def test_relay_task_buttons_still_carry_the_hash(relay):
    task = relay.imagine_done("relay")
    assert task["properties"] == {"finalPrompt": "relay"}
    assert relay.press(task, "U1").json()["code"] == 1


def test_relay_rewrites_remix_21_to_1_but_the_task_still_waits_in_modal(relay):
    task = relay.imagine_done()
    reply = relay.press(task, "V1", enableRemix=True).json()
    assert reply["code"] == 1
    assert relay.get(f"task/{reply['result']}/fetch").json()["status"] == "MODAL"
    assert relay.post("submit/modal", {"taskId": reply["result"], "prompt": "remixed"}).json()["code"] == 1
    child = relay.wait(reply["result"])
    assert child["status"] == "SUCCESS" and child["action"] == "VARIATION"


def test_relay_keeps_21_for_inpaint_and_custom_zoom(relay):
    upscaled = relay.wait(relay.press(relay.imagine_done(), "U1").json()["result"])
    assert relay.press(upscaled, "Vary (Region)").json()["code"] == 21
    assert relay.press(upscaled, "Custom Zoom").json()["code"] == 21


# ---------------------------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label, action", [
    ("U1", "UPSCALE"), ("U4", "UPSCALE"), ("V1", "VARIATION"), ("V3", "VARIATION"), ("reroll", "REROLL"),
])
def test_grid_buttons_make_the_right_task(client, label, action):
    reply = client.press(client.imagine_done(), label).json()
    assert reply["code"] == 1
    child = client.wait(reply["result"])
    assert child["status"] == "SUCCESS" and child["action"] == action
    expected = 9 if action != "UPSCALE" else 13
    assert len(child["buttons"]) == expected


@pytest.mark.parametrize("label, action", [
    ("Upscale (Subtle)", "UPSCALE_HD"), ("Upscale (Creative)", "UPSCALE_HD"),
    ("Vary (Subtle)", "VARIATION"), ("Vary (Strong)", "VARIATION"),
    ("Zoom Out 2x", "ZOOM"), ("Zoom Out 1.5x", "ZOOM"),
    ("Pan Left", "PAN"), ("Pan Right", "PAN"), ("Pan Up", "PAN"), ("Pan Down", "PAN"),
])
def test_upscale_buttons_make_the_right_task(client, label, action):
    upscaled = client.wait(client.press(client.imagine_done(), "U2").json()["result"])
    reply = client.press(upscaled, label).json()
    assert reply["code"] == 1
    child = client.wait(reply["result"])
    assert child["status"] == "SUCCESS" and child["action"] == action
    assert child["prompt"] == "a cat"


def test_favorite_is_code_1_without_a_task(client, emu):
    upscaled = client.wait(client.press(client.imagine_done(), "U1").json()["result"])
    tasks = emu.counters()["tasks"]
    reply = client.press(upscaled, "Favorite").json()
    assert reply["code"] == 1 and reply["result"] is None
    assert emu.counters()["tasks"] == tasks


def test_action_children_can_be_pressed_again(client):
    grid = client.wait(client.press(client.imagine_done(), "V1").json()["result"])
    upscaled = client.wait(client.press(grid, "U3").json()["result"])
    hd = client.wait(client.press(upscaled, "Upscale (Subtle)").json()["result"])
    assert hd["action"] == "UPSCALE_HD" and [b["customId"].split("::")[1] for b in hd["buttons"]] == ["BOOKMARK"]


# ---------------------------------------------------------------------------------------------
# Modal flow
# ---------------------------------------------------------------------------------------------


def test_vary_region_waits_in_modal_then_runs_with_a_mask(client):
    upscaled = client.wait(client.press(client.imagine_done(), "U1").json()["result"])
    reply = client.press(upscaled, "Vary (Region)").json()
    assert reply["code"] == 21 and reply["result"]
    waiting = client.fetch(reply["result"])
    assert waiting["status"] == "MODAL" and waiting["action"] == "INPAINT"
    assert client.post("submit/modal", {"taskId": reply["result"], "prompt": "a hat"}).json()["code"] == 4
    started = client.post("submit/modal", {"taskId": reply["result"], "prompt": "a hat", "maskBase64": PNG_1}).json()
    assert started["code"] == 1 and started["result"] == reply["result"]
    done = client.wait(reply["result"])
    assert done["status"] == "SUCCESS" and done["prompt"] == "a hat" and done["buttons"]
    assert client.post("submit/modal", {"taskId": reply["result"], "maskBase64": PNG_1}).json()["code"] == 4


def test_custom_zoom_waits_in_modal_then_runs_with_a_prompt(client):
    upscaled = client.wait(client.press(client.imagine_done(), "U1").json()["result"])
    reply = client.press(upscaled, "Custom Zoom").json()
    assert reply["code"] == 21 and client.fetch(reply["result"])["status"] == "MODAL"
    assert client.post("submit/modal", {"taskId": reply["result"], "prompt": "a cat --zoom 2 --ar 3:2"}).json()["code"] == 1
    done = client.wait(reply["result"])
    assert done["action"] == "ZOOM" and done["status"] == "SUCCESS"
    assert _png.size(requests.get(done["imageUrl"]).content) == (480, 320)


@pytest.mark.parametrize("label", ["V2", "reroll", "Vary (Strong)", "Pan Up"])
def test_remix_makes_remixable_buttons_answer_21(client, label):
    task = client.imagine_done()
    if label in ("Vary (Strong)", "Pan Up"):
        task = client.wait(client.press(task, "U1").json()["result"])
    reply = client.press(task, label, enableRemix=True).json()
    assert reply["code"] == 21
    assert client.post("submit/modal", {"taskId": reply["result"], "prompt": "remixed"}).json()["code"] == 1
    assert client.wait(reply["result"])["prompt"] == "remixed"


def test_remix_does_not_affect_upscale(client):
    assert client.press(client.imagine_done(), "U1", enableRemix=True).json()["code"] == 1


# ---------------------------------------------------------------------------------------------
# Describe and shorten
# ---------------------------------------------------------------------------------------------

DESCRIBE_FORMAT = re.compile(r"^1\ufe0f\u20e3 .+\n\n2\ufe0f\u20e3 .+\n\n3\ufe0f\u20e3 .+\n\n4\ufe0f\u20e3 .+$")


def test_describe_gives_four_prompts_in_the_documented_format(client):
    task = client.wait(client.submit("describe", {"base64": PNG_1}))
    assert task["action"] == "DESCRIBE" and task["status"] == "SUCCESS"
    assert DESCRIBE_FORMAT.match(task["properties"]["finalPrompt"])
    assert task["promptEn"] == task["properties"]["finalPrompt"]
    assert len(MidjourneyTask.from_api(task).describe_prompts()) == 4
    assert requests.get(task["imageUrl"]).status_code == 200


def test_describe_is_deterministic_per_image(client):
    one = client.wait(client.submit("describe", {"base64": PNG_1}))["properties"]["finalPrompt"]
    again = client.wait(client.submit("describe", {"base64": PNG_1}))["properties"]["finalPrompt"]
    other = client.wait(client.submit("describe", {"base64": PNG_2}))["properties"]["finalPrompt"]
    assert one == again and one != other


def test_describe_accepts_links_to_its_own_images_and_other_http_links(client):
    grid = client.imagine_done("to describe --ar 3:2")
    own = client.wait(client.submit("describe", {"link": grid["imageUrl"]}))
    assert own["imageUrl"] == grid["imageUrl"] and "--ar 3:2" in own["properties"]["finalPrompt"]
    other = client.wait(client.submit("describe", {"link": "https://example.com/cat.png"}))
    assert DESCRIBE_FORMAT.match(other["properties"]["finalPrompt"])
    assert other["imageUrl"] == "https://example.com/cat.png"


def test_describe_buttons_imagine_the_chosen_prompt(client):
    task = client.wait(client.submit("describe", {"base64": PNG_1}))
    chosen = MidjourneyTask.from_api(task).describe_prompts()[2]
    child = client.wait(client.press(task, "3").json()["result"])
    assert child["action"] == "IMAGINE" and child["prompt"] == chosen and child["status"] == "SUCCESS"


def test_shorten_gives_important_tokens_and_five_shortened_prompts(client):
    prompt = "a very beautiful portrait of an old fisherman with a pipe, dramatic light --ar 2:3"
    task = client.wait(client.submit("shorten", {"prompt": prompt}))
    text = task["properties"]["finalPrompt"]
    assert task["description"] == text and "IMPORTANT TOKENS" in text
    lines = re.findall(r"^([1-5])\ufe0f\u20e3 (.+)$", text.split("Shortened prompts")[1], re.M)
    assert [n for n, _ in lines] == ["1", "2", "3", "4", "5"]
    assert split_shortened_prompts(text) == [line for _, line in lines]
    assert task["imageUrl"] is None
    assert task["buttons"] == [b.to_api() for b in buttons_for_action("SHORTEN", task["properties"]["messageHash"])]
    child = client.wait(client.press(task, "5").json()["result"])
    assert child["prompt"] == lines[4][1]


def test_shorten_respects_banned_words(client):
    assert client.post("submit/shorten", {"prompt": "banned-word"}).json()["code"] == 24


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def _image(task):
    return requests.get(task["imageUrl"]).content


def test_same_prompt_gives_identical_bytes_and_other_prompts_differ(client):
    one, again = _image(client.imagine_done("same")), _image(client.imagine_done("same"))
    assert one == again and one != _image(client.imagine_done("different"))


def test_grid_is_2x2_and_upscale_is_one_quadrant(client):
    grid_task = client.imagine_done("quadrants")
    grid = _image(grid_task)
    assert _png.size(grid) == (480, 480) and _png.text(grid)["Comment"].startswith("grid")
    quads = [_png.quadrant(grid, n) for n in (1, 2, 3, 4)]
    assert len({b"".join(q) for q in quads}) == 4
    for n in (1, 4):
        single = _image(client.wait(client.press(grid_task, f"U{n}").json()["result"]))
        assert _png.size(single) == (240, 240) and _png.text(single)["Comment"].startswith("single")
        assert _png.pixels(single) == quads[n - 1]


def test_upscale_hd_is_a_single_image_twice_as_large(client):
    upscaled = client.wait(client.press(client.imagine_done(), "U1").json()["result"])
    hd = client.wait(client.press(upscaled, "Upscale (Creative)").json()["result"])
    assert _png.size(_image(hd)) == (480, 480) and _png.text(_image(hd))["Comment"].startswith("single")


@pytest.mark.parametrize("dimensions, size", [
    ("PORTRAIT", (320, 480)), ("SQUARE", (480, 480)), ("LANDSCAPE", (480, 320)), (None, (480, 480)),
])
def test_blend_honours_dimensions(client, dimensions, size):
    body = {"base64Array": [PNG_1, PNG_2, PNG_1]}
    if dimensions:
        body["dimensions"] = dimensions
    task = client.wait(client.submit("blend", body))
    assert task["action"] == "BLEND" and len(task["buttons"]) == 9
    width, height = _png.size(_image(task))
    assert (width, height) == size
    ratio = {"PORTRAIT": 2 / 3, "LANDSCAPE": 3 / 2}.get(dimensions, 1)
    assert width / height == pytest.approx(ratio)


def test_grid_kinds_of_actions_are_grids(client):
    upscaled = client.wait(client.press(client.imagine_done(), "U1").json()["result"])
    for label in ("Zoom Out 2x", "Pan Left", "Vary (Subtle)"):
        child = client.wait(client.press(upscaled, label).json()["result"])
        assert _png.text(_image(child))["Comment"].startswith("grid")


def test_unknown_image_is_404(emu):
    assert requests.get(emu.base_url + "/images/nothing.png").status_code == 404
    assert requests.get(emu.base_url + "/images/0123456789abcdef_grid_9999x9999.png").status_code == 404


# ---------------------------------------------------------------------------------------------
# list-by-condition
# ---------------------------------------------------------------------------------------------


def test_list_by_condition_returns_known_tasks_and_omits_unknown(client):
    a, b = client.submit("imagine", {"prompt": "a"}), client.submit("imagine", {"prompt": "b"})
    tasks = client.post("task/list-by-condition", {"ids": [a, "1234567890123456", b, a]}).json()
    assert sorted(t["id"] for t in tasks) == sorted([a, b])
    assert client.post("task/list-by-condition", {"ids": []}).json() == []
    assert client.post("task/list-by-condition", {}).json() == []


def test_relay_list_by_condition(relay):
    a = relay.submit("imagine", {"prompt": "a"})
    assert [t["id"] for t in relay.post("task/list-by-condition", {"ids": [a, "nope"]}).json()] == [a]


# ---------------------------------------------------------------------------------------------
# Counters, reset, config, expiry
# ---------------------------------------------------------------------------------------------


def test_counters_count_submits_states_requests_and_tasks(client, emu):
    task = client.imagine_done(state="batch-1")
    client.post("submit/imagine", {"prompt": "x", "state": "batch-1"})
    client.post("submit/imagine", {"prompt": ""})
    client.press(task, "U1")
    counters = emu.counters()
    assert counters["submits"]["imagine"] == 2 and counters["submits"]["action"] == 1
    assert counters["submits"]["blend"] == 0
    assert counters["submits_by_state"] == {"batch-1": 2}
    assert counters["requests"]["submit/imagine"] == 3 and counters["requests"]["task/fetch"] >= 1
    assert counters["tasks"] == 3 and counters["faults"] == {}
    emu.reset()
    after = emu.counters()
    assert after["tasks"] == 0 and after["submits"]["imagine"] == 0 and after["requests"] == {}
    assert client.get(f"task/{task['id']}/fetch").json() is None


def test_config_rejects_unknown_fields_and_bad_values(emu):
    for body in ({"no_such_setting": 1}, {"dialect": "other"}, {"faults": {"drop": 2}}, {"concurrency": 0}):
        reply = requests.post(emu.base_url + "/_emulator/config", json=body)
        assert reply.status_code == 400 and reply.json()["error"]
    config = requests.get(emu.base_url + "/_emulator/config").json()
    assert config["dialect"] == "proxy" and config["job_seconds"] == JOB_SECONDS


def test_config_masks_the_api_key(emu):
    emu.configure(api_key="sekrit")
    assert requests.get(emu.base_url + "/_emulator/config").json()["api_key"] == "***"


def test_tasks_expire_after_their_ttl(emu):
    emu.configure(task_ttl_seconds=0.3)
    c = Client(emu)
    task_id = c.submit("imagine", {"prompt": "ephemeral"})
    assert c.fetch(task_id) is not None
    time.sleep(0.4)
    assert c.fetch(task_id) is None
    assert emu.counters()["tasks"] == 0


def test_oldest_tasks_are_evicted_beyond_max_tasks(emu):
    emu.configure(max_tasks=5, queue_limit=100)
    c = Client(emu)
    ids = [c.submit("imagine", {"prompt": f"p{n}"}, expect=(1, 22)) for n in range(8)]
    assert emu.counters()["tasks"] == 5
    assert [c.fetch(i) is None for i in ids] == [True] * 3 + [False] * 5
