"""Provider metadata: valid for Airflow, and registered when the project is installed."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from airflow_provider_mj.get_provider_info import CONNECTION_FIELDS, get_provider_info


def test_provider_info_matches_airflows_schema():
    import airflow
    import jsonschema

    schema_path = Path(airflow.__file__).parent / "provider_info.schema.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_connection_type_points_at_the_hook():
    from airflow_provider_mj.hooks import MidjourneyHook

    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["connection-type"] == MidjourneyHook.conn_type == "midjourney"
    assert conn_type["hook-class-name"] == f"{MidjourneyHook.__module__}.{MidjourneyHook.__name__}"
    assert set(conn_type["conn-fields"]) == set(CONNECTION_FIELDS)


def _distribution():
    try:
        return metadata.distribution("airflow-provider-mj")
    except metadata.PackageNotFoundError:
        pytest.skip("the project is not installed (pip install -e .)")


def test_installed_distribution_declares_the_provider_entry_point():
    dist = _distribution()
    points = [ep for ep in dist.entry_points if ep.group == "apache_airflow_provider"]
    assert [ep.value for ep in points] == ["airflow_provider_mj.get_provider_info:get_provider_info"]
    assert points[0].load()()["package-name"] == "airflow-provider-mj"


def test_providers_manager_lists_the_provider_and_connection_type():
    _distribution()
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-mj" in manager.providers
    hook_info = manager.hooks.get("midjourney")
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_mj.hooks.midjourney.MidjourneyHook"
    assert hook_info.connection_id_attribute_name == "midjourney_conn_id"
