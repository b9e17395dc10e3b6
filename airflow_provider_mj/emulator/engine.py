"""The emulator's core: task store, clock, queueing and life cycle. Pure Python, no HTTP.

Nothing runs in the background. A job's whole schedule (when it starts, when it finishes or fails)
is decided when it is accepted; its status, progress and times are computed from the clock each
time the task is read. Thousands of tasks therefore cost a dict entry each and no CPU.

Queueing: the account has ``concurrency`` slots, kept as a heap of the times they become free.
An accepted job starts at ``max(now, earliest free slot)``; if that is in the future the job is
queued (code 22, status NOT_START until then). ``queue_limit`` bounds the number of jobs waiting.

Dialect differences (error shapes, 22/21 rewriting, relays' trimmed properties) are the app's
business, except :meth:`Engine.task_json`, which renders a task either way.

Reads (fetch, list-by-condition, the notify hook) see :meth:`Engine.read_view`: the job as the
account runs it (:meth:`Engine.status_of`), except that a *chatty* emulator moves progress on
nearly every read and gives IN_PROGRESS previews a new cache-busting query string each time,
and ``status_lag_seconds`` shows the job as it was that long ago (a relay's lagging copy).

The task, a submit's outcome and the request-field checks live in :mod:`.tasks`; the describe
and shorten texts in :mod:`.texts`. Their names are re-exported here.

Request rules that are the protocol's (lengths of ``state`` and ``notifyHook``, http(s) URLs,
data URLs, blend image count, ``botType`` and ``dimensions`` values) come from
:mod:`airflow_provider_mj.inputs`, the module the hook validates with, so the client and this
server cannot disagree about them; only the error shape (code 4) is the emulator's.
"""

from __future__ import annotations

import heapq
import itertools
import random
import re
import time
import uuid
from collections import Counter, OrderedDict, deque
from typing import Any, Callable
from urllib.parse import urlsplit

from airflow_provider_mj import inputs
from airflow_provider_mj.models import (
    buttons_for_action,
    parse_custom_id,
    split_numbered_prompts,
    split_shortened_prompts,
)

from . import images
from .settings import EmulatorSettings
from .tasks import (
    Accepted,
    Common,
    Job,
    SubmitError,
    View,
    accepted_reply,
    as_list,
    check_data_url,
    dumps,
    find_word,
    invalid,
    is_http_url,
    not_found,
    require_prompt,
)
from .texts import describe_text, shorten_text

__all__ = ["DIMENSIONS", "MAX_STATE_KEYS", "Accepted", "Common", "Counters", "Engine", "Job",
           "SubmitError", "View", "describe_text", "dumps", "invalid", "not_found", "shorten_text"]

#: Aspect ratio of each blend ``dimensions`` value (the values themselves: ``inputs.DIMENSIONS``).
DIMENSIONS = dict(zip(inputs.DIMENSIONS, ((2, 3), (1, 1), (3, 2))))
MAX_STATE_KEYS = 10_000

_AR = re.compile(r"--(?:ar|aspect)\s+(\d{1,3})\s*:\s*(\d{1,3})", re.I)


class Counters:
    """What ``/_emulator/counters`` reports."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.submits: Counter[str] = Counter()
        self.submits_by_state: Counter[str] = Counter()
        self.submit_codes: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.modes: Counter[str] = Counter()

    def count_submit(self, route: str, state: str | None) -> None:
        self.submits[route] += 1
        if state is not None:
            # Bounded: states are client-chosen strings.
            if state in self.submits_by_state or len(self.submits_by_state) < MAX_STATE_KEYS:
                self.submits_by_state[state] += 1
            else:
                self.submits_by_state["<other>"] += 1


# ---------------------------------------------------------------------------------------------
# The engine.
# ---------------------------------------------------------------------------------------------


class Engine:
    """Task store, clock and queue of one emulated account.

    :param settings: the emulator settings (replace them with :meth:`apply_settings`).
    :param clock: seconds since the epoch; tests pass a fake one.
    :param fail_job: called once per accepted job; True makes it end in FAILURE (fault injection).
    """

    def __init__(self, settings: EmulatorSettings, *, clock: Callable[[], float] = time.time,
                 fail_job: Callable[[], bool] | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.fail_job = fail_job or (lambda: False)
        self.counters = Counters()
        self._ids = itertools.count(int(clock() * 1000) * 1000 % 10**16)
        self._rng = random.Random()
        self._reads = itertools.count(1)
        self.reset()

    # -- state ----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every task, the queue and the counters."""
        self.tasks: OrderedDict[str, Job] = OrderedDict()
        self._slots: list[float] = [0.0] * self.settings.concurrency
        self._waiting: deque[float] = deque()
        self.counters.reset()

    def apply_settings(self, settings: EmulatorSettings) -> None:
        old = self.settings
        self.settings = settings
        if settings.concurrency != old.concurrency:
            now = self.clock()
            busy = sorted(self._slots, reverse=True)[: settings.concurrency]
            busy += [now] * (settings.concurrency - len(busy))
            heapq.heapify(busy)
            self._slots = busy
        self._prune(self.clock())

    def _prune(self, now: float) -> None:
        ttl, limit = self.settings.task_ttl_seconds, self.settings.max_tasks
        tasks = self.tasks
        while tasks:
            oldest = next(iter(tasks.values()))
            if len(tasks) > limit or now - oldest.submit_at > ttl:
                tasks.popitem(last=False)
            else:
                break

    def get(self, task_id: str) -> Job | None:
        job = self.tasks.get(task_id)
        if job is not None and self.clock() - job.submit_at > self.settings.task_ttl_seconds:
            self._prune(self.clock())
            return None
        return job

    def task_count(self) -> int:
        self._prune(self.clock())
        return len(self.tasks)

    def queued_count(self) -> int:
        now = self.clock()
        return sum(1 for start in self._waiting if start > now)

    # -- life cycle -----------------------------------------------------------------------------

    def status_of(self, job: Job, now: float | None = None) -> View:
        """Status, progress and times of ``job`` at ``now``."""
        now = self.clock() if now is None else now
        if job.start_at is None:
            return View("MODAL", "0%", None, None)
        if now < job.start_at:
            return View("NOT_START", "0%", None, None)
        start_ms = int(job.start_at * 1000)
        if job.fail_at is not None and now >= job.fail_at:
            return View("FAILURE", "", start_ms, int(job.fail_at * 1000))
        end = job.start_at + job.duration
        if now >= end:
            return View("SUCCESS", "100%", start_ms, int(end * 1000))
        phases = job.steps + 1
        phase = int((now - job.start_at) / job.duration * phases) if job.duration > 0 else phases
        if phase <= 0:
            return View("SUBMITTED", "0%", start_ms, None)
        phase = min(phase, job.steps)
        return View("IN_PROGRESS", f"{round(100 * phase / phases)}%", start_ms, None)

    def _schedule(self, job: Job, now: float) -> int | None:
        """Give ``job`` a start time; the number of jobs ahead of it if it is queued, else None."""
        waiting = self._waiting
        while waiting and waiting[0] <= now:
            waiting.popleft()
        earliest = self._slots[0]
        ahead: int | None = None
        if earliest > now:
            if len(waiting) >= self.settings.queue_limit:
                raise SubmitError(23, "queue is full, please try again later")
            ahead = len(waiting)
            start = earliest
        else:
            start = now
        job.start_at = start
        job.duration = self.settings.job_seconds
        job.steps = self.settings.progress_steps
        phase = job.duration / (job.steps + 1)
        fail_word = find_word(job.prompt, self.settings.fail_words)
        if fail_word is not None:
            # Like a real parameter error: fails right after being submitted.
            job.fail_at = start + phase
            job.fail_reason = "[Invalid parameter] Invalid value"
        elif self.fail_job():
            self.counters.faults["job_failure"] += 1
            job.fail_at = start + min(job.duration, phase * (job.steps // 2 + 1))
            job.fail_reason = "[Emulator fault] job failure injected"
        heapq.heapreplace(self._slots, job.end_at)
        if ahead is not None:
            waiting.append(start)
        return ahead

    def _new_job(self, action: str, prompt: str, common: Common, **kw: Any) -> Job:
        return Job(id=str(next(self._ids)), action=action, prompt=prompt, common=common,
                   submit_at=self.clock(), message_hash=str(uuid.uuid4()),
                   message_id=str(self._rng.randrange(10**18, 10**19)), **kw)

    def _admit(self, job: Job, route: str, *, modal: bool = False) -> Accepted:
        """Queue (or park in MODAL) and store a new job; count it."""
        now = self.clock()
        self._prune(now)
        ahead = None if modal else self._schedule(job, now)
        self.tasks[job.id] = job
        self._prune(now)
        self.counters.count_submit(route, job.common.state)
        return accepted_reply(job.id, ahead, modal)

    # -- submits --------------------------------------------------------------------------------

    def imagine(self, prompt: Any, base64_array: Any, common: Common) -> Accepted:
        common.validate()
        prompt = require_prompt(prompt)
        refs = [check_data_url(item, "base64Array") for item in as_list(base64_array, "base64Array")]
        self._check_banned(prompt)
        job = self._new_job("IMAGINE", prompt, common, image_kind="grid",
                            image_seed=images.digest("imagine", prompt, *refs),
                            cell=self._cell_for_prompt(prompt))
        return self._admit(job, "imagine")

    def blend(self, base64_array: Any, dimensions: Any, common: Common) -> Accepted:
        common.validate()
        items = as_list(base64_array, "base64Array")
        if not inputs.MIN_BLEND_IMAGES <= len(items) <= inputs.MAX_BLEND_IMAGES:
            raise invalid(f"base64Array must hold {inputs.MIN_BLEND_IMAGES} to {inputs.MAX_BLEND_IMAGES} images")
        refs = [check_data_url(item, "base64Array") for item in items]
        dims = str(dimensions or "SQUARE").upper()
        if dims not in DIMENSIONS:
            raise invalid(f"dimensions must be one of {', '.join(DIMENSIONS)}")
        cell = images.size_for_ratio(self.settings.image_size, *DIMENSIONS[dims])
        job = self._new_job("BLEND", "", common, image_kind="grid",
                            image_seed=images.digest("blend", dims, *refs), cell=cell)
        return self._admit(job, "blend")

    def describe(self, base64_data: Any, link: Any, common: Common, base_url: str) -> Accepted:
        common.validate()
        source_prompt = ""
        if base64_data:
            seed = images.digest("describe", check_data_url(base64_data, "base64"))
            ratio = (1, 1)
            input_url = ""
        elif link:
            if not isinstance(link, str) or not is_http_url(link):
                raise invalid("link must be an http(s) URL of an image")
            seed, ratio = images.digest("describe-link", link), (1, 1)
            own = images.parse_image_name(urlsplit(link).path.rsplit("/", 1)[-1])
            if own is not None:
                # One of our own images: describe what it shows, in the words of the task that made it.
                seed, ratio = own[0], (own[2], own[3])
                source_prompt = next((j.prompt for j in reversed(self.tasks.values())
                                      if j.image_seed == seed and j.prompt), "")
            input_url = link
        else:
            raise invalid("base64 or link is required")
        cell = images.size_for_ratio(self.settings.image_size, *ratio)
        job = self._new_job("DESCRIBE", "", common, image_seed=seed, cell=cell,
                            result_text=describe_text(seed, ratio, source_prompt), input_image_url=input_url)
        if not input_url:
            job.input_image_url = "/images/" + images.image_name(seed, "single", *cell)
        return self._admit(job, "describe")

    def shorten(self, prompt: Any, common: Common) -> Accepted:
        common.validate()
        prompt = require_prompt(prompt)
        self._check_banned(prompt)
        job = self._new_job("SHORTEN", prompt, common, result_text=shorten_text(prompt))
        return self._admit(job, "shorten")

    def action(self, task_id: Any, custom_id: Any, common: Common, *, remix: bool) -> Accepted:
        """Press a button of a finished task.

        :param remix: the caller asked for remix and the dialect honours it: a remixable button
            then answers 21 like the always-modal ones.
        """
        common.validate()
        if not isinstance(task_id, str) or not task_id.strip():
            raise invalid("taskId is required")
        if not isinstance(custom_id, str) or not custom_id.strip():
            raise invalid("customId is required")
        parent = self.get(task_id.strip())
        if parent is None:
            raise not_found("parent task")
        if self.status_of(parent).status != "SUCCESS":
            raise invalid("the parent task has not succeeded", relay_reason="task_status_not_success")
        custom_id = custom_id.strip()
        if custom_id not in {b.custom_id for b in buttons_for_action(parent.action, parent.message_hash)}:
            raise invalid("customId is not a button of the parent task")
        parsed = parse_custom_id(custom_id)
        if parsed is None:  # the table and buttons_for_action disagree: cannot happen
            raise invalid("unknown customId")
        kind, n = parsed.kind, parsed.index
        if kind.action is None:  # favorite: acknowledged, no task
            self.counters.count_submit("action", common.state)
            return Accepted(1, None, "Success", kind_name=kind.name)
        if kind.name in ("describe_pick", "shorten_pick"):
            # Read the parent's text the way a client reads it (the models' parsers).
            split = split_numbered_prompts if kind.name == "describe_pick" else split_shortened_prompts
            prompts = split(parent.result_text)
            if not 1 <= n <= len(prompts):
                raise invalid("no such prompt")
            prompt = prompts[n - 1]
            self._check_banned(prompt)
            job = self._new_job("IMAGINE", prompt, common, image_kind="grid",
                                image_seed=images.digest("imagine", prompt),
                                cell=self._cell_for_prompt(prompt))
            accepted = self._admit(job, "action")
            accepted.kind_name = kind.name
            return accepted

        job = self._new_job(kind.action, parent.prompt, common, cell=parent.cell, parent_id=parent.id)
        name = kind.name
        if name == "upsample":
            job.image_kind, job.image_seed = "single", images.cell_seed(parent.image_seed, n)
        elif name.startswith("upscale_"):
            job.image_kind = "hd"
            job.image_seed = parent.image_seed if name == "upscale_subtle" else images.digest(parent.image_seed, name)
        else:
            job.image_kind = "grid"
            job.seed_parts = (parent.image_seed, name, str(n))
            job.image_seed = images.digest(*job.seed_parts)
        modal = kind.always_modal or (remix and kind.remixable)
        if modal:
            job.modal_kind = name
        accepted = self._admit(job, "action", modal=modal)
        accepted.kind_name = name
        return accepted

    def modal(self, task_id: Any, prompt: Any, mask: Any, common: Common | None = None) -> Accepted:
        """Confirm a task waiting in MODAL: it starts (or queues) like any job."""
        if not isinstance(task_id, str) or not task_id.strip():
            raise invalid("taskId is required")
        job = self.get(task_id.strip())
        if job is None:
            raise not_found()
        if job.start_at is not None or job.modal_kind is None:
            raise invalid("the task is not waiting for a modal")
        if prompt is not None and not isinstance(prompt, str):
            raise invalid("prompt must be a string")
        mask_ref = ""
        if job.modal_kind == "vary_region":
            if not mask:
                raise invalid("maskBase64 is required for Vary (Region)")
            mask_ref = check_data_url(mask, "maskBase64")
        elif mask:
            mask_ref = check_data_url(mask, "maskBase64")
        if prompt and prompt.strip():
            self._check_banned(prompt.strip())
            job.prompt = prompt.strip()
            if job.action == "ZOOM":
                job.cell = self._cell_for_prompt(job.prompt, default=job.cell)
        job.image_seed = images.digest(*job.seed_parts, job.prompt, mask_ref)
        now = self.clock()
        ahead = self._schedule(job, now)  # SubmitError 23 leaves it in MODAL
        job.modal_kind = None
        self.counters.count_submit("modal", job.common.state)
        return accepted_reply(job.id, ahead, False)

    # -- reads ----------------------------------------------------------------------------------

    def read_view(self, job: Job, now: float | None = None) -> View:
        """The job as a read shows it at ``now`` (fetch, list-by-condition, notify hook).

        Calm (the default): :meth:`status_of`. ``status_lag_seconds`` shows the job as it was
        that long ago, as a relay's copy lags behind its upstream server. ``chatty`` moves
        progress by whole percents of the elapsed time (so nearly every poll reads a new value)
        where the calm emulator moves it in ``progress_steps`` steps.
        """
        settings = self.settings
        seen_at = (self.clock() if now is None else now) - settings.status_lag_seconds
        view = self.status_of(job, seen_at)
        if settings.chatty and view.status in ("SUBMITTED", "IN_PROGRESS") and job.duration > 0:
            assert job.start_at is not None  # started: SUBMITTED and IN_PROGRESS come after start
            percent = min(99, max(1, int((seen_at - job.start_at) / job.duration * 100)))
            view = View("IN_PROGRESS", f"{percent}%", view.start_ms, None)
        return view

    def image_seed(self, task_id: str) -> str:
        job = self.get(task_id)
        if job is None:
            raise not_found(relay_reason="task_no_found")
        status = self.status_of(job).status
        if not job.image_kind or status == "FAILURE":
            raise SubmitError(4, "the task has no image", http_status=400)
        if status != "SUCCESS":
            raise SubmitError(3, "no seed yet: the task has not finished")
        return str(int(job.image_seed[:8], 16))

    def task_dict(self, job: Job, base_url: str, relay: bool, now: float | None = None) -> dict[str, Any]:
        """The task as ``/mj/task/{id}/fetch`` shows it, in the proxy or relay dialect."""
        view = self.read_view(job, now)
        status = view.status
        empty = 0 if relay else None
        done = status == "SUCCESS"
        final_prompt = job.prompt
        description = "Submit success"
        if job.action in ("DESCRIBE", "SHORTEN"):
            final_prompt = job.result_text if done else ""
            if job.action == "SHORTEN" and done:
                description = job.result_text
        image_url = ""
        if job.input_image_url:
            image_url = job.input_image_url
        elif done:
            image_url = job.image_path(fmt=self.settings.image_format)
        elif status == "IN_PROGRESS":
            image_url = job.image_path(preview=int(view.progress.rstrip("%") or 0), fmt=self.settings.image_format)
            if image_url and self.settings.chatty:
                # new-api serves previews through its own origin with a cache-buster per read.
                image_url += f"?rand={next(self._reads)}"
        if image_url.startswith("/"):
            image_url = base_url + image_url
        if relay:
            properties: dict[str, Any] = {"finalPrompt": final_prompt}
        else:
            properties = {"finalPrompt": final_prompt, "messageHash": job.message_hash,
                          "messageId": job.message_id, "flags": 0, "discordInstanceId": "emulator",
                          "botType": job.common.bot_type or "MID_JOURNEY"}
            if job.common.notify_hook:
                properties["notifyHook"] = job.common.notify_hook
        prompt_en = final_prompt if job.action == "DESCRIBE" else job.prompt
        return {
            "id": job.id, "action": job.action, "status": status, "prompt": job.prompt,
            "promptEn": prompt_en, "description": description, "state": job.common.state,
            "submitTime": int(job.submit_at * 1000), "startTime": view.start_ms or empty,
            "finishTime": view.finish_ms or empty, "progress": view.progress,
            "imageUrl": image_url or ("" if relay else None),
            "failReason": job.fail_reason if status == "FAILURE" else ("" if relay else None),
            "properties": properties,
            "buttons": [b.to_api() for b in buttons_for_action(job.action, job.message_hash)] if done else [],
        }

    def task_json(self, job: Job, base_url: str, relay: bool) -> bytes:
        """:meth:`task_dict` as JSON bytes; cached once the task is finished."""
        key = (relay, base_url)
        cached = job.cache.get(key)
        if cached is not None:
            return cached
        now = self.clock()
        data = dumps(self.task_dict(job, base_url, relay, now))
        end = job.end_at
        if end is not None and now - self.settings.status_lag_seconds >= end and len(job.cache) < 4:
            job.cache[key] = data
        return data

    # -- helpers --------------------------------------------------------------------------------

    def _check_banned(self, prompt: str) -> None:
        word = find_word(prompt, self.settings.banned_words)
        if word is not None:
            raise SubmitError(24, f"banned prompt: {word}", properties={"bannedWord": word, "promptEn": prompt})

    def _cell_for_prompt(self, prompt: str, default: tuple[int, int] | None = None) -> tuple[int, int]:
        m = _AR.search(prompt)
        if m:
            w, h = int(m[1]), int(m[2])
            if w and h and 0.25 <= w / h <= 4:
                return images.size_for_ratio(self.settings.image_size, w, h)
        return default or images.size_for_ratio(self.settings.image_size, 1, 1)

