"""Run the emulator in-process: uvicorn in a background thread on a free loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from typing import Any

import uvicorn

from .app import create_app
from .settings import EmulatorSettings


class RunningEmulator:
    """A running emulator; also a context manager that stops it on exit.

    :ivar base_url: ``http://127.0.0.1:<port>`` (no trailing slash, no ``/mj``).
    """

    def __init__(self, settings: EmulatorSettings) -> None:
        self._sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET,
                                   socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((settings.host, settings.port))
        self.host, self.port = self._sock.getsockname()[:2]
        # Port 0 asked for a free port: the settings (and /_emulator/config) show the one it got.
        self.app = create_app(settings.merged(port=self.port))
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{self.port}"
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"mj-emulator-{self.port}", daemon=True)
        self._error: BaseException | None = None

    @property
    def settings(self) -> EmulatorSettings:
        return self.app.emulator.settings

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # surfaced by start()
            self._error = exc

    def start(self, timeout: float = 10.0) -> RunningEmulator:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the emulator failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator did not start in time")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self._sock.close()
        except OSError:
            pass

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def counters(self) -> dict[str, Any]:
        """``GET /_emulator/counters``."""
        return self._call("GET", "/_emulator/counters")

    def reset(self) -> None:
        """``POST /_emulator/reset``: forget tasks and counters, re-seed the faults."""
        self._call("POST", "/_emulator/reset", {})

    def configure(self, **changes: Any) -> dict[str, Any]:
        """``POST /_emulator/config``: change settings at run time; returns the new settings.

        ``faults`` may be a dict (merged into the current faults) or fault fields given flat as
        ``fault_<name>``; any fault change re-seeds the fault streams.
        """
        if "faults" in changes and hasattr(changes["faults"], "to_dict"):
            changes["faults"] = changes["faults"].to_dict()
        if "banned_words" in changes or "fail_words" in changes:
            for key in ("banned_words", "fail_words"):
                if key in changes:
                    changes[key] = list(changes[key])
        return self._call("POST", "/_emulator/config", changes)

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RunningEmulator {self.base_url} dialect={self.settings.dialect}>"


def start_emulator(settings: EmulatorSettings | None = None, **overrides: Any) -> RunningEmulator:
    """Start an emulator in a background thread and wait until it accepts connections.

    :param settings: the settings (default :class:`EmulatorSettings`()).
    :param overrides: settings fields to change (``job_seconds=0.2``, ``faults={"drop": 0.5}``,
        ``fault_drop=0.5``...). Binds ``127.0.0.1`` on a free port unless ``host``/``port`` say otherwise.
    :returns: a :class:`RunningEmulator` (use it as a context manager, or call ``stop()``).
    """
    settings = (settings or EmulatorSettings()).merged(**overrides)
    return RunningEmulator(settings).start()
