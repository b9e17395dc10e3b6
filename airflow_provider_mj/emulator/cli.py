"""The ``mj-emulator`` command (also ``python -m airflow_provider_mj.emulator``)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Sequence

from .settings import (
    DEFAULT_BANNED_WORDS,
    DEFAULT_FAIL_WORDS,
    DIALECTS,
    IMAGE_FORMATS,
    EmulatorSettings,
    FaultSettings,
)

READY_LINE = "Midjourney emulator listening on {url}"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" only where the help text does not already say what the default is.

    Options whose default is computed (``--api-key`` from the environment, the word lists, the
    base URL of each request) say it in their own words; flags that are off unless given need none.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    d = EmulatorSettings()
    f = FaultSettings()
    p = argparse.ArgumentParser(
        prog="mj-emulator",
        description="A local emulator of the Midjourney task API (/mj/submit/..., /mj/task/...). "
                    "Prints 'Midjourney emulator listening on http://HOST:PORT' once it accepts connections.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--host", default=d.host, help="interface to bind")
    p.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one")
    p.add_argument("--dialect", choices=DIALECTS, default=d.dialect,
                   help="proxy: a midjourney-proxy server; relay: a new-api style gateway")
    p.add_argument("--api-key", default=None,
                   help="key clients must send (Bearer or mj-api-secret); default $MJ_EMULATOR_API_KEY, "
                        "none = open")
    p.add_argument("--job-seconds", type=float, default=d.job_seconds, help="duration of a running job")
    p.add_argument("--progress-steps", type=int, default=d.progress_steps,
                   help="number of IN_PROGRESS progress values")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="jobs running at once (more are queued)")
    p.add_argument("--queue-limit", type=int, default=d.queue_limit, help="jobs allowed to wait (more: code 23)")
    p.add_argument("--banned-word", action="append", dest="banned_words", metavar="WORD",
                   help=f"refuse prompts containing WORD with code 24 (repeatable; default {list(DEFAULT_BANNED_WORDS)})")
    p.add_argument("--no-banned-words", action="store_true", help="ban nothing")
    p.add_argument("--fail-word", action="append", dest="fail_words", metavar="WORD",
                   help=f"jobs whose prompt contains WORD end in FAILURE (repeatable; default {list(DEFAULT_FAIL_WORDS)})")
    p.add_argument("--task-ttl-seconds", type=float, default=d.task_ttl_seconds, help="forget tasks older than this")
    p.add_argument("--max-tasks", type=int, default=d.max_tasks, help="keep at most this many tasks (oldest evicted)")
    p.add_argument("--image-size", type=int, default=d.image_size, help="long side of one image, pixels")
    p.add_argument("--image-cache-bytes", type=int, default=d.image_cache_bytes, help="bound of the image cache")
    p.add_argument("--image-format", choices=IMAGE_FORMATS, default=d.image_format,
                   help="format of the images tasks link to (webp and jpeg need Pillow)")
    p.add_argument("--public-base-url", default=None, help="base of imageUrl links (default: each request's)")
    p.add_argument("--seed", type=int, default=f.seed, help="seed of the fault streams")
    for kind, help_text in (("rate-limit", "HTTP 429 + Retry-After"), ("server-error", "HTTP 500/503"),
                            ("slow", "reply delayed by --slow-seconds"), ("drop", "connection closed, no reply"),
                            ("malformed", "invalid JSON body"), ("job-failure", "job ends in FAILURE"),
                            ("lost-reply", "submit accepted, then connection closed")):
        p.add_argument(f"--fault-{kind}", type=float, default=getattr(f, kind.replace("-", "_")), metavar="RATE",
                       help=f"rate (0..1) of faults: {help_text}")
    p.add_argument("--slow-seconds", type=float, default=f.slow_seconds, help="delay of a slow reply")
    p.add_argument("--retry-after", type=int, default=f.retry_after, help="Retry-After of a 429, seconds")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--access-log", action="store_true", help="log every request")
    return p


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    faults = FaultSettings(
        seed=args.seed, rate_limit=args.fault_rate_limit, server_error=args.fault_server_error,
        slow=args.fault_slow, drop=args.fault_drop, malformed=args.fault_malformed,
        job_failure=args.fault_job_failure, lost_reply=args.fault_lost_reply,
        slow_seconds=args.slow_seconds, retry_after=args.retry_after,
    )
    banned = () if args.no_banned_words else tuple(args.banned_words or DEFAULT_BANNED_WORDS)
    return EmulatorSettings(
        api_key=args.api_key or os.environ.get("MJ_EMULATOR_API_KEY") or None, dialect=args.dialect, job_seconds=args.job_seconds,
        progress_steps=args.progress_steps, concurrency=args.concurrency, queue_limit=args.queue_limit,
        banned_words=banned, fail_words=tuple(args.fail_words or DEFAULT_FAIL_WORDS),
        task_ttl_seconds=args.task_ttl_seconds, max_tasks=args.max_tasks, image_size=args.image_size,
        image_cache_bytes=args.image_cache_bytes, image_format=args.image_format,
        public_base_url=args.public_base_url,
        host=args.host, port=args.port, faults=faults,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))

    import uvicorn

    from .app import create_app

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        print(f"mj-emulator: cannot bind {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 2
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    settings = settings.merged(port=port)  # --port 0: /_emulator/config shows the port it got

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None):  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            if self.started:
                print(READY_LINE.format(url=url), flush=True)

    config = uvicorn.Config(create_app(settings), log_level=args.log_level, access_log=args.access_log,
                            lifespan="off", timeout_graceful_shutdown=2)
    _Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
