"""Redirects: the API key reaches the connection's origin only, and a submit is never re-sent elsewhere.

Two real loopback servers: the "relay" (the connection's origin) answers redirects, the "CDN"
(another port on 127.0.0.1, so another origin) records every header it receives. Both auth
styles, the sync path (requests) and the async path (aiohttp), API calls and image downloads.
"""

from __future__ import annotations

import pytest

from airflow_provider_mj.exceptions import MidjourneyConfigurationError
from airflow_provider_mj.hooks import MidjourneyHook
from tests.helpers import png_bytes
from tests.hooks.conftest import SECRET_KEY

AUTH_STYLES = ["bearer", "mj-api-secret"]

TASK = {"id": "1741531578038001", "action": "IMAGINE", "status": "SUCCESS", "progress": "100%",
        "imageUrl": "", "buttons": [], "properties": {}}


def _carries_key(request: dict) -> bool:
    """Whether a recorded request carried the key in any header (name or value, any style)."""
    for name, value in request["headers"].items():
        if name.lower() in ("authorization", "mj-api-secret") or SECRET_KEY in str(value):
            return True
    return False


@pytest.fixture
def relay_and_cdn(canned):
    return canned(), canned()


@pytest.mark.parametrize("auth_style", AUTH_STYLES)
def test_an_image_redirected_to_a_cdn_gets_no_key(relay_and_cdn, make_hook, tmp_path, auth_style):
    relay, cdn = relay_and_cdn
    relay.reply(302, b"", {"Location": f"{cdn.base_url}/cdn/grid.png?sig=abc"})
    cdn.reply(200, png_bytes(), {"Content-Type": "image/png"})
    hook = make_hook(relay.base_url, SECRET_KEY, auth_style=auth_style)
    final = hook.download_image(f"{relay.base_url}/mj/image/1741531578038001", tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes() == png_bytes() and final.endswith("grid.png")
    assert [r["path"] for r in cdn.requests] == ["/cdn/grid.png?sig=abc"]
    assert _carries_key(relay.requests[0]), "the relay's own origin must get the key (else nothing is shown)"
    assert not any(_carries_key(r) for r in cdn.requests)


@pytest.mark.parametrize("auth_style", AUTH_STYLES)
def test_a_fetch_redirected_to_another_origin_gets_no_key_sync(relay_and_cdn, make_hook, auth_style):
    relay, cdn = relay_and_cdn
    relay.reply(302, b"", {"Location": f"{cdn.base_url}/mj/task/{TASK['id']}/fetch"})
    cdn.reply(200, TASK)
    hook = make_hook(relay.base_url, SECRET_KEY, auth_style=auth_style)
    assert hook.fetch_task(TASK["id"]).id == TASK["id"]
    assert _carries_key(relay.requests[0])
    assert len(cdn.requests) == 1 and not _carries_key(cdn.requests[0])


@pytest.mark.parametrize("auth_style", AUTH_STYLES)
async def test_a_fetch_redirected_to_another_origin_gets_no_key_async(relay_and_cdn, make_hook, auth_style):
    relay, cdn = relay_and_cdn
    relay.reply(307, b"", {"Location": f"{cdn.base_url}/mj/task/{TASK['id']}/fetch"})
    cdn.reply(200, TASK)
    make_hook(relay.base_url, SECRET_KEY, auth_style=auth_style)
    async with MidjourneyHook() as ahook:
        assert (await ahook.afetch_task(TASK["id"])).id == TASK["id"]
    assert _carries_key(relay.requests[0])
    assert len(cdn.requests) == 1 and not _carries_key(cdn.requests[0])


@pytest.mark.parametrize("auth_style", AUTH_STYLES)
@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_key_dropped_at_another_origin_never_reaches_it_on_later_hops(relay_and_cdn, make_hook, auth_style,
                                                                             path):
    # relay -> CDN -> CDN (another path) -> back to the relay: the CDN never sees the key.
    relay, cdn = relay_and_cdn
    relay.reply(302, b"", {"Location": f"{cdn.base_url}/hop1"})
    relay.reply(200, TASK)
    cdn.reply(302, b"", {"Location": "/hop2"})
    cdn.reply(302, b"", {"Location": f"{relay.base_url}/mj/task/{TASK['id']}/fetch"})
    hook = make_hook(relay.base_url, SECRET_KEY, auth_style=auth_style)
    if path == "sync":
        assert hook.fetch_task(TASK["id"]).id == TASK["id"]
    else:
        async with MidjourneyHook() as ahook:
            assert (await ahook.afetch_task(TASK["id"])).id == TASK["id"]
    assert [r["path"] for r in cdn.requests] == ["/hop1", "/hop2"]
    assert not any(_carries_key(r) for r in cdn.requests)
    assert _carries_key(relay.requests[0])


@pytest.mark.parametrize("auth_style", AUTH_STYLES)
@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_redirect_within_the_origin_keeps_the_key(canned, make_hook, auth_style, path):
    relay = canned()
    relay.reply(301, b"", {"Location": f"/v2/mj/task/{TASK['id']}/fetch"})
    relay.reply(200, TASK)
    hook = make_hook(relay.base_url, SECRET_KEY, auth_style=auth_style)
    if path == "sync":
        hook.fetch_task(TASK["id"])
    else:
        async with MidjourneyHook() as ahook:
            await ahook.afetch_task(TASK["id"])
    assert [r["path"] for r in relay.requests] == [f"/mj/task/{TASK['id']}/fetch", f"/v2/mj/task/{TASK['id']}/fetch"]
    assert all(_carries_key(r) for r in relay.requests)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirected_submit_is_not_followed_and_says_where(relay_and_cdn, make_hook, status):
    relay, cdn = relay_and_cdn
    port = cdn.base_url.rsplit(":", 1)[1]
    relay.reply(status, b"", {"Location": f"http://user:hunter2@127.0.0.1:{port}/mj/submit/imagine?token=t0k3n"})
    hook = make_hook(relay.base_url, SECRET_KEY)
    with pytest.raises(MidjourneyConfigurationError) as info:
        hook.imagine("a lighthouse at dawn")
    text = str(info.value)
    assert f"http://127.0.0.1:{port}/mj/submit/imagine" in text and f"HTTP {status}" in text
    assert "Base URL" in text
    for secret in ("hunter2", "user:", "t0k3n", SECRET_KEY):
        assert secret not in text
    assert [(r["method"], r["path"]) for r in relay.requests] == [("POST", "/mj/submit/imagine")]
    assert cdn.requests == []


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_redirected_batch_read_is_not_followed(relay_and_cdn, make_hook, path):
    # list-by-condition is a POST: following a 302 would turn it into a body-less GET elsewhere.
    relay, cdn = relay_and_cdn
    relay.reply(302, b"", {"Location": f"{cdn.base_url}/mj/task/list-by-condition"})
    hook = make_hook(relay.base_url, SECRET_KEY)
    with pytest.raises(MidjourneyConfigurationError, match="redirect"):
        if path == "sync":
            hook.list_tasks([TASK["id"]])
        else:
            async with MidjourneyHook() as ahook:
                await ahook.alist_tasks([TASK["id"]])
    assert cdn.requests == [] and len(relay.requests) == 1


@pytest.mark.parametrize("path", ["sync", "async"])
async def test_a_redirect_loop_is_a_configuration_error(canned, make_hook, path):
    relay = canned()
    relay.reply(302, b"", {"Location": "/loop"})
    hook = make_hook(relay.base_url, SECRET_KEY, max_retries=0)
    with pytest.raises(MidjourneyConfigurationError, match="redirected more than"):
        if path == "sync":
            hook.fetch_task(TASK["id"])
        else:
            async with MidjourneyHook() as ahook:
                await ahook.afetch_task(TASK["id"])
    assert 2 <= len(relay.requests) <= 10
