"""The API key never shows: not in errors, reprs or logs, and it is registered with the masker."""

from __future__ import annotations

import pytest

from airflow_provider_mj.exceptions import MidjourneyError
from airflow_provider_mj.hooks import MidjourneyHook
from tests.hooks.conftest import SECRET_KEY


def test_key_is_not_in_repr(hook):
    assert SECRET_KEY not in repr(hook)
    assert SECRET_KEY not in repr(hook.config) and SECRET_KEY not in str(hook.config)


def test_key_is_registered_with_the_secrets_masker(hook):
    from airflow.sdk.log import _secrets_masker

    hook.config  # noqa: B018
    assert SECRET_KEY not in _secrets_masker().redact(f"header Bearer {SECRET_KEY}")


def test_key_is_never_in_errors_or_logs(emu, make_hook, canned, capsys, caplog):
    caplog.set_level("DEBUG")
    errors: list[MidjourneyError] = []
    # A server that echoes the key back in its error text, then faults that get retried and logged.
    server = canned()
    hook = make_hook(server.base_url, SECRET_KEY, max_retries=1)
    for status, body in [(401, f"invalid token {SECRET_KEY}"),
                         (400, {"description": f"bad key {SECRET_KEY}", "type": "upstream_error", "code": 4}),
                         (502, f"<html>{SECRET_KEY}</html>"),
                         (200, f"<html>{SECRET_KEY}</html>")]:
        server.reply(status, body)
        for call in (lambda: hook.fetch_task("1"), lambda: hook.imagine("x")):
            with pytest.raises(MidjourneyError) as info:
                call()
            errors.append(info.value)
    emu_hook = make_hook(emu.base_url, SECRET_KEY, max_retries=1)
    emu.configure(faults={"server_error": 1.0})
    with pytest.raises(MidjourneyError) as info:
        emu_hook.list_tasks(["1"])
    errors.append(info.value)
    captured = capsys.readouterr()
    for err in errors:
        assert SECRET_KEY not in str(err) and SECRET_KEY not in repr(err)
        assert SECRET_KEY not in err.description
    assert SECRET_KEY not in captured.out + captured.err + caplog.text


def test_configuration_errors_do_not_show_the_key(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT",
                       '{"conn_type": "midjourney", "host": "ftp://x", "password": "%s"}' % SECRET_KEY)
    with pytest.raises(MidjourneyError) as info:
        MidjourneyHook().fetch_task("1")
    assert SECRET_KEY not in str(info.value)
