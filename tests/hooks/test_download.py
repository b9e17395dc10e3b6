"""download_image: atomic writes to a local path and to object storage, never a partial file."""

from __future__ import annotations


import pytest

from airflow_provider_mj.exceptions import MidjourneyNotFoundError, MidjourneyValidationError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_download_to_a_local_file(hook, finished, tmp_path):
    target = tmp_path / "out" / "fox.png"
    final = hook.download_image(finished, target)
    assert final == str(target)
    assert target.read_bytes().startswith(PNG_MAGIC)
    assert _leftovers(target.parent) == []


def test_download_into_a_directory_uses_the_url_file_name(hook, finished, tmp_path):
    final = hook.download_image(finished.image_url, str(tmp_path) + "/")
    assert final.startswith(str(tmp_path)) and final.endswith(".png")


def test_download_from_a_task_dict_replaces_the_file_atomically(hook, finished, tmp_path):
    target = tmp_path / "fox.png"
    target.write_bytes(b"old")
    hook.download_image(finished.to_dict(), target)
    assert target.read_bytes().startswith(PNG_MAGIC) and _leftovers(tmp_path) == []


def test_download_to_object_storage(hook, finished, tmp_path):
    from airflow.sdk import ObjectStoragePath

    target = ObjectStoragePath(f"file://{tmp_path}/store/fox.png")
    final = hook.download_image(finished, target)
    assert final.endswith("/store/fox.png")
    assert (tmp_path / "store" / "fox.png").read_bytes().startswith(PNG_MAGIC)
    assert _leftovers(tmp_path / "store") == []


def test_download_to_an_object_storage_url_string(hook, finished, tmp_path):
    final = hook.download_image(finished, f"file://{tmp_path}/fox2.png")
    assert (tmp_path / "fox2.png").exists() and final.endswith("fox2.png")


def test_a_failed_download_leaves_no_file(hook, emu, tmp_path):
    target = tmp_path / "missing.png"
    with pytest.raises(MidjourneyNotFoundError):
        hook.download_image(emu.base_url + "/images/nope.png", target)
    assert list(tmp_path.iterdir()) == []


def test_a_task_without_image_is_refused(hook, tmp_path):
    with pytest.raises(MidjourneyValidationError, match="no imageUrl"):
        hook.download_image({"id": "1", "status": "IN_PROGRESS"}, tmp_path / "x.png")


def test_an_html_page_is_not_saved_as_an_image(canned, make_hook, tmp_path):
    from airflow_provider_mj.exceptions import MidjourneyServerError

    server = canned()
    server.reply(200, "<html>login</html>", {"Content-Type": "text/html"})
    hook = make_hook(server.base_url, max_retries=0)
    with pytest.raises(MidjourneyServerError):
        hook.download_image(server.base_url + "/img.png", tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_the_key_is_sent_only_to_the_api_origin(canned, make_hook, tmp_path):
    api, cdn = canned(), canned()
    cdn.reply(200, PNG_MAGIC + b"\x00" * 16, {"Content-Type": "image/png"})
    api.reply(200, PNG_MAGIC + b"\x00" * 16, {"Content-Type": "image/png"})
    hook = make_hook(api.base_url, "sk-origin-check")
    hook.download_image(cdn.base_url + "/a.png", tmp_path / "a.png")
    hook.download_image("/images/b.png", tmp_path / "b.png")  # relative: on the API server
    assert "Authorization" not in cdn.requests[0]["headers"]
    assert api.requests[0]["headers"].get("Authorization") == "Bearer sk-origin-check"


@pytest.mark.parametrize("auth_style", ["bearer", "mj-api-secret"])
async def test_an_async_download_redirected_to_a_cdn_gets_no_key(canned, make_hook, tmp_path, auth_style):
    from airflow_provider_mj.hooks import MidjourneyHook
    from tests.hooks.conftest import SECRET_KEY

    relay, cdn = canned(), canned()
    relay.reply(302, b"", {"Location": f"{cdn.base_url}/cdn/grid.png?sig=abc"})
    cdn.reply(200, PNG_MAGIC + b"\x00" * 64, {"Content-Type": "image/png"})
    make_hook(relay.base_url, SECRET_KEY, auth_style=auth_style)
    async with MidjourneyHook() as ahook:
        saved = await ahook.adownload_image(f"{relay.base_url}/mj/image/1741531578038001", tmp_path / "grid")
    assert saved.name == "grid.png" and (tmp_path / "grid.png").read_bytes().startswith(PNG_MAGIC)
    relay_headers = {k.lower(): v for k, v in relay.requests[0]["headers"].items()}
    assert SECRET_KEY in " ".join(relay_headers.values())  # the relay's own origin gets it
    assert [r["path"] for r in cdn.requests] == ["/cdn/grid.png?sig=abc"]
    assert not any(SECRET_KEY in str(v) or k.lower() in ("authorization", "mj-api-secret")
                   for r in cdn.requests for k, v in r["headers"].items())
