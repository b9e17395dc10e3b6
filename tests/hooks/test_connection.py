"""Reading the ``midjourney`` connection: base URL forms, both AIRFLOW_CONN_ forms, extras, errors."""

from __future__ import annotations

import json

import pytest

from airflow_provider_mj.exceptions import MidjourneyConfigurationError
from airflow_provider_mj.hooks import MidjourneyHook
from airflow_provider_mj.hooks.midjourney import parse_connection
from tests.hooks.conftest import SECRET_KEY
from tests.helpers import connection_json


def _conn(host, password=None, schema=None, port=None, **extra):
    from airflow.sdk import Connection

    return Connection(conn_id="mj", conn_type="midjourney", host=host, password=password, schema=schema,
                      port=port, extra=json.dumps(extra) if extra else None)


@pytest.mark.parametrize(
    "host,expected",
    [
        ("https://relay.example.com", "https://relay.example.com"),
        ("https://relay.example.com/", "https://relay.example.com"),
        ("https://relay.example.com/mj", "https://relay.example.com"),
        ("https://relay.example.com/mj/", "https://relay.example.com"),
        ("relay.example.com", "https://relay.example.com"),
        ("relay.example.com/mj", "https://relay.example.com"),
        ("http://relay.example.com:8080/mj", "http://relay.example.com:8080"),
        ("https://gw.example.com/api/mj", "https://gw.example.com/api"),
        ("localhost:8080", "http://localhost:8080"),
        ("127.0.0.1:9000/mj", "http://127.0.0.1:9000"),
    ],
)
def test_base_url_forms_users_paste(host, expected):
    config = parse_connection(_conn(host))
    assert config.base_url == expected
    assert config.url("submit/imagine") == expected + "/mj/submit/imagine"


def test_scheme_extra_and_http_schema_choose_the_scheme():
    assert parse_connection(_conn("relay.example.com", scheme="http")).base_url == "http://relay.example.com"
    assert parse_connection(_conn("relay.example.com", schema="http")).base_url == "http://relay.example.com"


def test_port_field_is_added_to_the_host():
    assert parse_connection(_conn("relay.example.com", port=8443)).base_url == "https://relay.example.com:8443"


def test_base_url_extra_overrides_host():
    config = parse_connection(_conn("ignored", base_url="http://10.0.0.5:8080/mj"))
    assert config.base_url == "http://10.0.0.5:8080"


@pytest.mark.parametrize("mode", ["fast", "relax", "turbo"])
def test_speed_mode_prefixes_every_route(mode):
    config = parse_connection(_conn("https://relay.example.com", speed_mode=mode))
    assert config.url("task/1/fetch") == f"https://relay.example.com/mj-{mode}/mj/task/1/fetch"


def test_speed_mode_in_the_pasted_url_is_understood():
    config = parse_connection(_conn("https://relay.example.com/mj-relax/mj"))
    assert config.speed_mode == "relax" and config.base_url == "https://relay.example.com"
    with pytest.raises(MidjourneyConfigurationError, match="speed_mode"):
        parse_connection(_conn("https://relay.example.com/mj-relax", speed_mode="fast"))


def test_defaults_come_from_connection_fields():
    config = parse_connection(_conn("https://relay.example.com"))
    assert (config.auth_style, config.speed_mode, config.timeout, config.max_retries,
            config.retry_min_wait, config.retry_max_wait) == ("bearer", None, 30.0, 5, 1.0, 30.0)


def test_prefixed_extras_are_read():
    config = parse_connection(_conn("https://r.example.com", **{
        "extra__midjourney__auth_style": "mj-api-secret", "extra__midjourney__speed_mode": "relax",
        "extra__midjourney__timeout": "12", "extra__midjourney__max_retries": "2"}))
    assert (config.auth_style, config.speed_mode, config.timeout, config.max_retries) == (
        "mj-api-secret", "relax", 12.0, 2)


def test_both_auth_styles():
    bearer = parse_connection(_conn("https://r.example.com", password="k1"))
    secret = parse_connection(_conn("https://r.example.com", password="k1", auth_style="mj-api-secret"))
    assert bearer.auth_headers() == {"Authorization": "Bearer k1"}
    assert secret.auth_headers() == {"mj-api-secret": "k1"}
    assert parse_connection(_conn("https://r.example.com")).auth_headers() == {}


@pytest.mark.parametrize(
    "url,same",
    [
        ("https://R.example.com/mj/image/1", True),
        ("https://r.example.com:443/mj/image/1", True),  # the default port, spelt out
        ("https://r.example.com:8443/mj/image/1", False),
        ("http://r.example.com/mj/image/1", False),
        ("https://cdn.example.com/r.example.com/1", False),
    ],
)
def test_the_key_origin_is_scheme_host_and_port(url, same):
    from airflow_provider_mj.hooks.connection import origin_of

    # One rule for downloads and redirect hops alike: an image URL gets the key only on this origin.
    assert (origin_of(url) == parse_connection(_conn("https://r.example.com", password="k1")).origin) is same


@pytest.mark.parametrize(
    "extra,field",
    [
        ({"auth_style": "basic"}, "auth_style"),
        ({"speed_mode": "slow"}, "speed_mode"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"max_retries": 99}, "max_retries"),
        ({"retry_min_wait": -1}, "retry_min_wait"),
        ({"retry_min_wait": 10, "retry_max_wait": 1}, "retry_min_wait"),
    ],
)
def test_invalid_extras_name_the_field(extra, field):
    with pytest.raises(MidjourneyConfigurationError, match=field):
        parse_connection(_conn("https://relay.example.com", **extra))


@pytest.mark.parametrize("host", ["", "ftp://relay.example.com", "https://user:pw@relay.example.com",
                                  "https://relay.example.com/?a=1"])
def test_invalid_hosts_are_refused(host):
    with pytest.raises(MidjourneyConfigurationError, match="Base URL|scheme"):
        parse_connection(_conn(host))


def test_a_key_with_a_line_break_is_refused_without_showing_it():
    with pytest.raises(MidjourneyConfigurationError) as info:
        parse_connection(_conn("https://r.example.com", password=SECRET_KEY + "\nX-Evil: 1"))
    assert SECRET_KEY not in str(info.value)


def test_missing_connection_says_how_to_create_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", raising=False)
    with pytest.raises(MidjourneyConfigurationError) as info:
        MidjourneyHook().fetch_task("1")
    message = str(info.value)
    assert "midjourney_default" in message and "AIRFLOW_CONN_MIDJOURNEY_DEFAULT" in message
    assert "airflow connections add" in message


def test_json_form_of_airflow_conn_env(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT",
                       connection_json("https://relay.example.com/mj", SECRET_KEY, speed_mode="fast"))
    config = MidjourneyHook().config
    assert config.base_url == "https://relay.example.com"
    assert config.speed_mode == "fast" and config.api_key == SECRET_KEY


def test_uri_form_of_airflow_conn_env(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_MIDJOURNEY_DEFAULT",
        "midjourney://:sk-abc%2F123@relay.example.com:8443/mj?auth_style=mj-api-secret&speed_mode=relax&timeout=10",
    )
    config = MidjourneyHook().config
    assert config.base_url == "https://relay.example.com:8443"
    assert config.api_key == "sk-abc/123"
    assert (config.auth_style, config.speed_mode, config.timeout) == ("mj-api-secret", "relax", 10.0)


def test_uri_form_with_http_scheme_extra(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", "midjourney://:k@10.1.2.3:8080?scheme=http")
    assert MidjourneyHook().config.base_url == "http://10.1.2.3:8080"


def test_uri_form_with_protocol_in_host(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MIDJOURNEY_DEFAULT", "midjourney://http://:k@10.1.2.3:8080/mj")
    assert MidjourneyHook().config.base_url == "http://10.1.2.3:8080"


def test_the_hook_works_with_the_json_connection_of_the_shared_fixture(mj_connection):
    hook = MidjourneyHook()
    assert hook.list_tasks([]) == []
    assert hook.test_connection()[0] is True


def test_hook_metadata():
    assert MidjourneyHook.conn_name_attr == "midjourney_conn_id"
    assert MidjourneyHook.default_conn_name == "midjourney_default"
    assert MidjourneyHook.conn_type == "midjourney"
    assert MidjourneyHook.hook_name == "Midjourney"
    # The connection form is declared in get_provider_info(), not with the deprecated hook methods.
    assert "get_ui_field_behaviour" not in MidjourneyHook.__dict__
    assert "get_connection_form_widgets" not in MidjourneyHook.__dict__


def test_the_deprecated_auth_header_name_is_still_read_with_a_warning():
    with pytest.warns(FutureWarning, match="rename it to 'auth_style'"):
        config = parse_connection(_conn("https://r.example.com", password="k1", auth_header="mj-api-secret"))
    assert config.auth_style == "mj-api-secret" and config.auth_headers() == {"mj-api-secret": "k1"}
    with pytest.warns(FutureWarning, match="ignored because 'auth_style' is set"):
        config = parse_connection(_conn("https://r.example.com", auth_header="mj-api-secret", auth_style="bearer"))
    assert config.auth_style == "bearer"


def test_a_masked_auth_header_saved_back_by_a_form_says_what_to_do():
    # Airflow masks 'auth_header' as a secret; a form saved back can store the mask itself.
    with pytest.raises(MidjourneyConfigurationError, match=r"Airflow's mask '\*\*\*'.*Set 'auth_style'"):
        parse_connection(_conn("https://r.example.com", auth_header="***"))
