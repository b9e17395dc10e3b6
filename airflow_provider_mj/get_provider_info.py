"""Provider metadata for Airflow's providers manager (the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from airflow_provider_mj import __version__

#: Shown by Airflow's Providers page and ``GET /api/v2/providers`` (which fails without it).
DOCUMENTATION_URL = "https://github.com/airflow-provider-mj/airflow-provider-mj/blob/main/docs/index.md"

#: Extra fields of a ``midjourney`` connection, with their defaults. The hook reads the same table.
#: No name may contain one of Airflow's sensitive words (``auth_header``, ``token``, ``secret``,
#: ``proxy``...): Airflow would mask its value in the form and the REST API (see
#: ``tests/test_provider_info.py``). The auth style was called ``auth_header`` before; the hook still
#: reads that name (:data:`DEPRECATED_FIELD_NAMES`).
CONNECTION_FIELDS: dict[str, dict] = {
    "auth_style": {
        "label": "Auth header style",
        "description": "bearer: 'Authorization: Bearer <key>' (relays such as Crazyrouter). "
        "mj-api-secret: 'mj-api-secret: <key>' (midjourney-proxy servers).",
        "schema": {"type": ["string", "null"], "default": "bearer", "enum": ["bearer", "mj-api-secret"]},
    },
    "speed_mode": {
        "label": "Speed mode",
        "description": "fast, relax or turbo: routes go to /mj-fast, /mj-relax or /mj-turbo. "
        "Empty: plain /mj (the account default).",
        "schema": {"type": ["string", "null"], "enum": ["fast", "relax", "turbo"]},
    },
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "The whole of one HTTP request (connect, send, read the reply), not a Midjourney job.",
        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
    },
    "max_retries": {
        "label": "Max retries per request",
        "description": "Retries of one HTTP call on 429, 5xx and connection errors. Submits are "
        "retried only when the server cannot have accepted the job.",
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0, "maximum": 20},
    },
    "retry_min_wait": {
        "label": "Retry backoff: first wait (seconds)",
        "schema": {"type": ["number", "null"], "default": 1, "minimum": 0},
    },
    "retry_max_wait": {
        "label": "Retry backoff: longest wait (seconds)",
        "schema": {"type": ["number", "null"], "default": 30, "minimum": 0},
    },
}

#: Old extra names the hook still reads, with a deprecation warning: old name -> current name.
DEPRECATED_FIELD_NAMES: dict[str, str] = {"auth_header": "auth_style"}


def get_provider_info() -> dict:
    """Return the provider's metadata, in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-mj",
        "name": "Midjourney",
        "description": "Midjourney task API (/mj/... relays and midjourney-proxy servers): "
        "imagine, action, blend, describe, modal, shorten, with a deferrable sensor and trigger.",
        "versions": [__version__],
        "documentation-url": DOCUMENTATION_URL,
        "integrations": [
            {
                "integration-name": "Midjourney",
                "external-doc-url": "https://github.com/novicezk/midjourney-proxy",
                "tags": ["software"],
            }
        ],
        "operators": [
            {"integration-name": "Midjourney", "python-modules": ["airflow_provider_mj.operators.midjourney",
                                                                  "airflow_provider_mj.operators.save_image"]}
        ],
        "sensors": [
            {"integration-name": "Midjourney", "python-modules": ["airflow_provider_mj.sensors.midjourney"]}
        ],
        "hooks": [
            {"integration-name": "Midjourney", "python-modules": ["airflow_provider_mj.hooks.midjourney"]}
        ],
        "triggers": [
            {"integration-name": "Midjourney",
             "python-modules": ["airflow_provider_mj.triggers.midjourney", "airflow_provider_mj.triggers.room"]}
        ],
        "connection-types": [
            {
                "connection-type": "midjourney",
                "hook-class-name": "airflow_provider_mj.hooks.midjourney.MidjourneyHook",
                "hook-name": "Midjourney",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Base URL", "password": "API Key"},
                    "placeholders": {
                        "host": "https://your-relay.example.com  (or .../mj)",
                        "password": "sk-...",
                    },
                },
            }
        ],
        "extra-links": ["airflow_provider_mj.links.MidjourneyImageLink"],
    }
