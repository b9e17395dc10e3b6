"""A local emulator of the Midjourney task API (midjourney-proxy servers and new-api relays).

Cheap to import: FastAPI and uvicorn are only imported when an emulator is started.

    from airflow_provider_mj.emulator import start_emulator

    with start_emulator(job_seconds=0.3, dialect="relay", api_key="k") as emu:
        emu.base_url      # "http://127.0.0.1:<port>"
        emu.counters(); emu.configure(faults={"drop": 0.2}); emu.reset()

Also started by the ``mj-emulator`` command and ``python -m airflow_provider_mj.emulator``.
See docs/emulator.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import DEFAULT_BANNED_WORDS, DEFAULT_FAIL_WORDS, EmulatorSettings, FaultSettings

if TYPE_CHECKING:
    from .server import RunningEmulator

__all__ = ["DEFAULT_BANNED_WORDS", "DEFAULT_FAIL_WORDS", "EmulatorSettings", "FaultSettings",
           "start_emulator"]


def start_emulator(settings: EmulatorSettings | None = None, **overrides: Any) -> RunningEmulator:
    """Start an emulator in a background thread (see :func:`.server.start_emulator`)."""
    from .server import start_emulator as _start

    return _start(settings, **overrides)
