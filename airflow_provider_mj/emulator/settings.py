"""Settings of the emulator: plain dataclasses, cheap to import (no FastAPI, no uvicorn)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DIALECTS = ("proxy", "relay")
#: What ``image_format`` may be (``webp`` and ``jpeg`` need Pillow).
IMAGE_FORMATS = ("png", "webp", "jpeg")

#: A prompt containing one of these is refused with code 24 (``properties.bannedWord``).
DEFAULT_BANNED_WORDS: tuple[str, ...] = ("banned-word",)
#: A prompt containing one of these is accepted, then its job ends in FAILURE.
DEFAULT_FAIL_WORDS: tuple[str, ...] = ("emulator-fail",)

FAULT_KINDS = ("rate_limit", "server_error", "slow", "drop", "malformed", "job_failure", "lost_reply")


@dataclass(frozen=True)
class FaultSettings:
    """Fault injection: each rate is the probability (0..1) that one request (or job) gets the fault.

    Every kind draws from its own ``random.Random`` stream seeded from ``seed``, so a run with the
    same seed and the same sequence of requests injects the same faults. All rates are 0 by default.
    Faults apply to the ``/mj`` routes only, never to ``/_emulator`` or ``/images``.

    :param seed: seed of the fault streams; changing any fault setting at run time re-seeds them.
    :param rate_limit: HTTP 429 with a ``Retry-After`` header (empty body in the proxy dialect;
        a relay's saturated-channel error, ``code`` 30, in the relay dialect).
    :param server_error: HTTP 500 (proxy) or 503 (relay), the request is not processed.
    :param slow: the reply is delayed by ``slow_seconds``, then the request is processed normally.
    :param drop: the connection is closed without any reply; the request is not processed.
    :param malformed: HTTP 200 with a truncated, invalid JSON body; the request is not processed.
    :param job_failure: an accepted job ends in FAILURE (``failReason`` says it was injected).
    :param lost_reply: submit routes only: the job IS created and counted, then the connection is
        closed without a reply (the client cannot know its task id).
    :param slow_seconds: delay of a ``slow`` reply.
    :param retry_after: value of the ``Retry-After`` header of a 429, in seconds.
    """

    seed: int = 0
    rate_limit: float = 0.0
    server_error: float = 0.0
    slow: float = 0.0
    drop: float = 0.0
    malformed: float = 0.0
    job_failure: float = 0.0
    lost_reply: float = 0.0
    slow_seconds: float = 2.0
    retry_after: int = 1

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"fault rate {kind!r} must be a number in [0, 1], got {rate!r}")
        if self.slow_seconds < 0:
            raise ValueError("slow_seconds must be >= 0")
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")

    def merged(self, changes: FaultSettings | dict[str, Any] | None) -> FaultSettings:
        """A copy with ``changes`` applied (a dict of fields, or a whole FaultSettings)."""
        if changes is None:
            return self
        if isinstance(changes, FaultSettings):
            return changes
        if not isinstance(changes, dict):
            raise TypeError(f"faults must be a dict or FaultSettings, got {type(changes).__name__}")
        _check_keys(FaultSettings, changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything that shapes the emulator's behaviour; each field is also a CLI flag, except
    ``chatty`` and ``status_lag_seconds`` (set them with ``POST /_emulator/config``).

    :param api_key: the key clients must send (``Authorization: Bearer`` or ``mj-api-secret``);
        None means the ``/mj`` routes are open.
    :param dialect: ``"proxy"`` (a midjourney-proxy server: errors in the envelope, HTTP 200) or
        ``"relay"`` (a new-api style gateway: errors as HTTP 400 ``upstream_error``).
    :param job_seconds: how long a running job takes from start to SUCCESS.
    :param progress_steps: number of IN_PROGRESS progress values (3 gives 25%, 50%, 75%).
    :param concurrency: jobs running at once on the (single) account; more are queued (code 22).
    :param queue_limit: jobs allowed to wait for a slot; one more is refused with code 23.
    :param banned_words: a prompt containing one (case-insensitive) is refused with code 24.
    :param fail_words: a prompt containing one is accepted, then its job ends in FAILURE.
    :param task_ttl_seconds: tasks older than this are forgotten (fetch then says not found).
    :param max_tasks: at most this many tasks are kept; the oldest are forgotten first.
    :param image_size: long side, in pixels, of one image (an upscale); a grid is twice as large.
    :param image_cache_bytes: bound of the cache of generated images (they are re-made on demand).
    :param image_format: the format of the images tasks link to: ``png``, or ``webp`` / ``jpeg``
        (those need Pillow). Any image also answers ``?format=`` whatever its link says.
    :param public_base_url: base of the ``imageUrl`` links; default: the base URL of each request.
    :param host: interface to bind (CLI and ``start_emulator``).
    :param port: port to bind; 0 picks a free one.
    :param faults: fault injection, see :class:`FaultSettings`.
    :param chatty: behave like a chatty relay: progress moves on nearly every read (whole
        percents of the elapsed time instead of ``progress_steps`` steps) and an IN_PROGRESS
        preview ``imageUrl`` carries a new cache-busting query string on every read.
    :param status_lag_seconds: reads show each job as it was this long ago (a relay's copy of
        its upstream lags); 0: no lag.
    """

    api_key: str | None = None
    dialect: str = "proxy"
    job_seconds: float = 5.0
    progress_steps: int = 3
    concurrency: int = 3
    queue_limit: int = 10
    banned_words: tuple[str, ...] = DEFAULT_BANNED_WORDS
    fail_words: tuple[str, ...] = DEFAULT_FAIL_WORDS
    task_ttl_seconds: float = 3600.0
    max_tasks: int = 10_000
    image_size: int = 240
    image_cache_bytes: int = 16 * 1024 * 1024
    image_format: str = "png"
    public_base_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    faults: FaultSettings = field(default_factory=FaultSettings)
    chatty: bool = False
    status_lag_seconds: float = 0.0

    def __post_init__(self) -> None:
        # Accept lists (JSON, CLI) for the word tuples and a dict for faults.
        object.__setattr__(self, "banned_words", tuple(str(w) for w in self.banned_words or ()))
        object.__setattr__(self, "fail_words", tuple(str(w) for w in self.fail_words or ()))
        if isinstance(self.faults, dict):
            object.__setattr__(self, "faults", FaultSettings().merged(self.faults))
        if self.dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, got {self.dialect!r}")
        if self.job_seconds < 0:
            raise ValueError("job_seconds must be >= 0")
        if self.status_lag_seconds < 0:
            raise ValueError("status_lag_seconds must be >= 0")
        if self.progress_steps < 0:
            raise ValueError("progress_steps must be >= 0")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.queue_limit < 0:
            raise ValueError("queue_limit must be >= 0")
        if self.task_ttl_seconds <= 0:
            raise ValueError("task_ttl_seconds must be > 0")
        if self.max_tasks < 1:
            raise ValueError("max_tasks must be >= 1")
        if not 16 <= self.image_size <= 1024:
            raise ValueError("image_size must be in 16..1024")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError("image_format must be png, webp or jpeg")
        if self.public_base_url:
            object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))
        if self.api_key == "":
            object.__setattr__(self, "api_key", None)

    def merged(self, **changes: Any) -> EmulatorSettings:
        """A copy with ``changes`` applied.

        ``faults`` may be a dict (merged into the current faults) or a FaultSettings; fault fields
        may also be given flat with a ``fault_`` prefix (``fault_drop=0.5``), as the CLI does.
        """
        changes = dict(changes)
        fault_changes: dict[str, Any] = {}
        for key in list(changes):
            if key.startswith("fault_"):
                fault_changes[key[len("fault_"):]] = changes.pop(key)
        faults = changes.pop("faults", None)
        _check_keys(EmulatorSettings, changes)
        new_faults = self.faults.merged(faults).merged(fault_changes or None)
        return dataclasses.replace(self, **changes, faults=new_faults)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["banned_words"] = list(self.banned_words)
        data["fail_words"] = list(self.fail_words)
        if data["api_key"]:
            data["api_key"] = "***"
        return data


def _check_keys(cls: type, changes: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
