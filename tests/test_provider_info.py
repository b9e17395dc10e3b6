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


def test_airflow_cli_lists_the_provider_and_its_connection_type():
    """What a user runs after ``pip install``: ``airflow providers list`` / ``airflow providers hooks``."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    airflow = str(Path(sys.executable).with_name("airflow"))
    env = dict(os.environ)
    listed = subprocess.run([airflow, "providers", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "airflow-provider-mj" in listed.stdout
    hooks = subprocess.run([airflow, "providers", "hooks"], capture_output=True, text=True, env=env, timeout=120)
    assert hooks.returncode == 0, hooks.stderr[-2000:]
    line = next(row for row in hooks.stdout.splitlines() if row.startswith("midjourney "))
    assert "airflow_provider_mj.hooks.midjourney.MidjourneyHook" in line


def test_a_plain_pip_install_ships_the_package_and_registers_the_provider(tmp_path):
    """``pip install .`` (not editable): the wheel carries every module and the entry point."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(tmp_path)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("airflow_provider_mj-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("hooks/midjourney.py", "operators/midjourney.py", "sensors/midjourney.py",
                   "triggers/midjourney.py", "emulator/app.py", "get_provider_info.py", "models.py",
                   "py.typed"):
        assert f"airflow_provider_mj/{module}" in names, module
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_provider_mj.get_provider_info:get_provider_info" in entry_points
    assert "mj-emulator = airflow_provider_mj.emulator.cli:main" in entry_points
    assert not any(n.startswith(("tests/", "dags/")) for n in names)


def test_providers_rest_api_describes_the_provider_with_its_documentation_url():
    """Airflow's ``GET /api/v2/providers`` (the UI's Providers page) reads ``documentation-url``
    from every provider's metadata and fails for all providers when one lacks it."""
    _distribution()
    from airflow.api_fastapi.core_api.services.public.providers import _provider_mapper
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_mj.get_provider_info import DOCUMENTATION_URL

    response = _provider_mapper(ProvidersManager().providers["airflow-provider-mj"])
    assert response.package_name == "airflow-provider-mj"
    assert response.documentation_url == DOCUMENTATION_URL
    urls = dict(entry.split(", ", 1) for entry in metadata.distribution("airflow-provider-mj").metadata.get_all("Project-URL"))
    assert urls["Documentation"] == DOCUMENTATION_URL


def test_distribution_metadata_is_that_of_an_airflow_provider():
    meta = _distribution().metadata
    classifiers = meta.get_all("Classifier")
    assert "Framework :: Apache Airflow" in classifiers
    assert "Framework :: Apache Airflow :: Provider" in classifiers
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL"))
    assert set(urls) >= {"Documentation", "Source", "Changelog"}
    requires = [r for r in meta.get_all("Requires-Dist") if r.startswith("apache-airflow") and "extra" not in r]
    assert requires == ["apache-airflow>=3.3"]
    assert (Path(__file__).resolve().parent.parent / "airflow_provider_mj" / "py.typed").exists()


def test_no_connection_field_is_a_name_airflow_masks():
    """Airflow hides the value of any extra whose name holds a sensitive word (``auth_header``,
    ``token``, ``secret``, ``proxy``...): the form would show "Select Value" and the REST API '***'."""
    from airflow._shared.secrets_masker import should_hide_value_for_key

    assert should_hide_value_for_key("auth_header"), "the check itself must be able to fail"
    assert [name for name in CONNECTION_FIELDS if should_hide_value_for_key(name)] == []
    assert [name for name in CONNECTION_FIELDS if should_hide_value_for_key(f"extra__midjourney__{name}")] == []


def test_the_connection_form_metadata_shows_the_auth_style_default_unmasked():
    """What the UI's connection form receives from Airflow's API server: the default, not '***'."""
    _distribution()
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "midjourney"]
    assert meta.extra_fields["auth_style"]["value"] == "bearer"
    assert {name: spec["value"] for name, spec in meta.extra_fields.items()} == {
        name: field["schema"].get("default") for name, field in CONNECTION_FIELDS.items()}


def test_the_rest_api_shows_the_auth_style_of_a_connection():
    """``GET /api/v2/connections/{id}`` (and ``airflow connections``) redact sensitive extras."""
    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse

    shown = ConnectionResponse.model_validate({
        "connection_id": "mj", "conn_type": "midjourney", "description": None, "host": "https://r.example.com",
        "login": None, "schema": None, "port": None, "password": "sk-1234567890", "team_name": None,
        "extra": json.dumps({"auth_style": "mj-api-secret", "auth_header": "mj-api-secret", "speed_mode": "relax"}),
    })
    extra = json.loads(shown.extra)
    assert extra["auth_style"] == "mj-api-secret" and extra["speed_mode"] == "relax"
    assert extra["auth_header"] == "***"  # why the old name had to go
    assert shown.password == "***"
