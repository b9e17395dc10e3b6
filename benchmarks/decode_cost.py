"""Decoding cost: reading a list-by-condition reply, with the standard library's json and with msgspec.

The coalesced poller reads every waiting task once per interval, so decoding that reply is most
of what a waiting trigger costs between two events. This measures, per task of a 500-task reply
as the emulator renders it (relay dialect; IN_PROGRESS tasks with a preview URL, or finished
tasks with their nine buttons), in one process, all in the same run:

* ``json + model``: ``json.loads`` of the body, then a ``MidjourneyTask`` per task (how the
  hook's ``list_tasks`` reads it);
* ``msgspec + model``: the same with ``msgspec.json.decode``;
* ``json, fields only``: ``json.loads``, then only ``id``, ``status`` and ``progress`` read;
* ``msgspec, fields only``: the body split into raw tasks (``list[msgspec.Raw]``), each copied and
  decoded into a three-field struct: the hook's ``TaskReading`` objects, what the poller gets;
* ``msgspec, unchanged``: the body split into raw tasks, each looked up in the previous reply's
  set of raw tasks (the cost of skipping unchanged tasks by their bytes, for comparison).

    .venv/bin/python benchmarks/decode_cost.py           # 500 tasks, best of 7 rounds (~10 s)
    .venv/bin/python benchmarks/decode_cost.py --quick   # 100 tasks, 2 rounds

The poller uses the msgspec "fields only" way (it wins here) and builds a task model only for a
reading that wakes a waiter.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402


def reply_body(count: int, finished: bool) -> bytes:
    """A list-by-condition body of ``count`` tasks, rendered by the emulator's engine."""
    from airflow_provider_mj.emulator.engine import Common, Engine
    from airflow_provider_mj.emulator.settings import EmulatorSettings

    clock = [1_700_000_000.0]
    engine = Engine(EmulatorSettings(job_seconds=10, concurrency=count, queue_limit=count, max_tasks=count * 2,
                                     chatty=True), clock=lambda: clock[0])
    jobs = [engine.get(engine.imagine(f"a lighthouse on a cliff, number {n} --ar 3:2", None, Common()).task_id)
            for n in range(count)]
    clock[0] += 11 if finished else 4
    return b"[" + b",".join(engine.task_json(job, "https://relay.example", relay=True) for job in jobs) + b"]"


def best_of(rounds: int, fn) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 tasks, 2 rounds")
    args = parser.parse_args()
    count, rounds = (100, 2) if args.quick else (500, 7)

    import msgspec

    from airflow_provider_mj.hooks.errors import RequestContext
    from airflow_provider_mj.hooks.replies import _split_readings
    from airflow_provider_mj.models import MidjourneyTask

    split = msgspec.json.Decoder(list[msgspec.Raw])

    def json_model(body):
        return [MidjourneyTask.from_api(item) for item in json.loads(body)]

    def msgspec_model(body):
        return [MidjourneyTask.from_api(item) for item in msgspec.json.decode(body)]

    def json_fields(body):
        return [(t.get("id"), t.get("status"), t.get("progress")) for t in json.loads(body)]

    ctx = RequestContext(kind="readings", route="task/list-by-condition", secret="sk-a-key-the-reply-does-not-hold")

    def msgspec_fields(body):  # exactly what the poller's hook call does (with an API key set)
        return _split_readings(body, ctx, "https://relay.example")

    def msgspec_unchanged(body, previous):
        return [bytes(raw) in previous for raw in split.decode(body)]

    print(f"machine: {machine()}, msgspec {msgspec.__version__}")
    print(f"{count} tasks per reply, best of {rounds} rounds")
    print()
    print("| reply | json + model | msgspec + model | json, fields only | msgspec, fields only | msgspec, unchanged |")
    print("|---|---:|---:|---:|---:|---:|")
    for finished in (False, True):
        body = reply_body(count, finished)
        previous = {bytes(raw) for raw in split.decode(body)}
        figures = [best_of(rounds, lambda f=f: f(body)) for f in (json_model, msgspec_model, json_fields, msgspec_fields)]
        figures.append(best_of(rounds, lambda: msgspec_unchanged(body, previous)))
        label = "finished tasks (9 buttons)" if finished else "IN_PROGRESS tasks (preview)"
        cells = " | ".join(f"{t / count * 1e6:.2f} us" for t in figures)
        print(f"| {label}, {len(body) // count} B/task | {cells} |")
        base = figures[0]
        print(f"  ratios to json + model: " + ", ".join(f"{base / t:.1f}x" for t in figures[1:]))


if __name__ == "__main__":
    main()
