"""A second, independent Midjourney task API server, written only from ``/work/shared/PROTOCOL.md``.

It deliberately imports nothing from ``airflow_provider_mj`` and shares no code with the
emulator: if the provider and the emulator share a misunderstanding of the protocol, this server
should disagree with both. Every behaviour PROTOCOL.md lists as "servers differ" can be switched
on through :class:`Quirks` (in ``relay_model.py``, with the task record and the buttons), one at
a time or all together.

Run it in a background thread on 127.0.0.1 with :func:`start_relay`::

    with start_relay(Quirks(dialect="relay", blank_labels=True)) as relay:
        relay.base_url     # http://127.0.0.1:<port>  (plus Quirks.mount, if any)
        relay.counters()   # submits per endpoint, requests per route, speed prefixes seen...
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from aiohttp import web

from tests.protocol.relay_model import (
    ACTION_TABLE,
    BANNED_WORD,
    CANCEL_WORD,
    FAIL_WORD,
    GRID_ACTIONS,
    Quirks,
    Task,
    button,
    echo,
    grid_buttons,
    tiny_png,
    upscale_buttons,
    valid_data_url,
)


class Relay:
    """The server state and the aiohttp app."""

    def __init__(self, quirks: Quirks) -> None:
        self.q = quirks
        self.tasks: dict[str, Task] = {}
        self._ids = itertools.count(1741531578038000 + int(time.time() * 1000) % 100000 * 1000)
        self.lock = threading.Lock()
        self.base_url = ""
        self.reset_counters()

    def reset_counters(self) -> None:
        self._counters: dict[str, Any] = {"submits": {}, "requests": {}, "speed": {}, "auth_failures": 0, "refused": {},
                                          "submits_by_state": {}, "modal_bodies": [], "action_bodies": [],
                                          "auth_log": []}

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._counters)

    def _count(self, group: str, key: str) -> None:
        with self.lock:
            self._counters[group][key] = self._counters[group].get(key, 0) + 1

    # -- formatting ---------------------------------------------------------------------------

    def _id_out(self, task_id: str) -> Any:
        return int(task_id) if self.q.numeric_ids else task_id

    def _desc(self, english: str, chinese: str) -> str:
        return chinese if self.q.chinese_descriptions else english

    def _ok(self, code: int, result: str | None, description: str, properties: dict | None = None) -> web.Response:
        if self.q.dialect == "relay" and code == 22:
            code = 1
        body = {"code": code, "description": description,
                "result": self._id_out(result) if result is not None else None, "properties": properties or {}}
        return web.json_response(body)

    def _error(self, code: int, name: str, description: str, *, proxy_status: int = 200,
               properties: dict | None = None) -> web.Response:
        if self.q.dialect == "relay":
            return web.json_response(
                {"description": description, "type": self.q.error_type,
                 "code": name if self.q.string_codes else code},
                status=400,
            )
        return web.json_response({"code": code, "description": description, "result": None,
                                  "properties": properties or {}}, status=proxy_status)

    def _not_found(self, what: str = "task") -> web.Response:
        return self._error(3, "task_not_found", self._desc(f"{what} not found", "任务不存在"), proxy_status=404)

    def _invalid(self, description: str, name: str = "invalid_request") -> web.Response:
        return self._error(4, name, self._desc(description, "参数错误"))

    # -- task life cycle ----------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _new_task(self, action: str, prompt: str, body: dict, *, modal_kind: str | None = None,
                  parent: str | None = None) -> Task:
        task = Task(
            id=self._new_id(), action=action, prompt=prompt, state=body.get("state"),
            submit_ms=int(time.time() * 1000), started_at=time.monotonic(), modal=modal_kind is not None,
            modal_kind=modal_kind, fail=FAIL_WORD in (prompt or ""), parent=parent,
            cancel=CANCEL_WORD in (prompt or ""),
        )
        self.tasks[task.id] = task
        if task.state:
            with self.lock:
                by_state = self._counters["submits_by_state"]
                by_state[task.state] = by_state.get(task.state, 0) + 1
        return task

    def _phase(self, task: Task) -> tuple[str, int | None]:
        """(status, percent) of the true task now."""
        if task.modal:
            return "MODAL", 0
        elapsed = (time.monotonic() - task.started_at) / max(self.q.job_seconds, 1e-3)
        if task.cancel and elapsed >= 0.5:
            return "CANCEL", None
        if elapsed >= 1:
            return ("FAILURE", 100) if task.fail else ("SUCCESS", 100)
        if elapsed < 0.1:
            return "NOT_START", None
        if self.q.unknown_status and elapsed < 0.25:
            return self.q.unknown_status, None
        if elapsed < 0.3:
            return "SUBMITTED", 0
        return "IN_PROGRESS", max(1, min(99, int((elapsed - 0.3) / 0.7 * 100)))

    def snapshot(self, task: Task) -> dict[str, Any]:
        status, pct = self._phase(task)
        started = status in ("SUBMITTED", "IN_PROGRESS", "SUCCESS", "FAILURE")
        finished = status in ("SUCCESS", "FAILURE")
        not_yet = 0 if self.q.zero_times else None
        start_ms = task.submit_ms + 50 if started else not_yet
        finish_ms = task.submit_ms + int(self.q.job_seconds * 1000) if finished else not_yet
        if status == "FAILURE":
            progress: Any = "" if self.q.failure_progress_empty else "100%"
        elif pct is None:
            progress = None if self.q.zero_times else "0%"
        else:
            progress = f"{pct}%"
        image_url = ""
        if task.action == "DESCRIBE":
            image_url = task.describe_source or f"{self.base_url}/img/{task.id}.png"
        elif task.action != "SHORTEN" and status in ("IN_PROGRESS", "SUCCESS"):
            image_url = f"{self.base_url}/img/{task.id}{'' if status == 'SUCCESS' else '_preview'}.png"
            if self.q.relative_image_urls:
                image_url = f"{self.q.mount.rstrip('/')}/mj/image/{task.id}{'' if status == 'SUCCESS' else '_preview'}"
        final_prompt = task.prompt
        description = self._desc("Submit success", "提交成功")
        if status == "SUCCESS" and task.action == "DESCRIBE":
            final_prompt = "\n\n".join(
                f"{n}\ufe0f\u20e3 a described picture number {n}, soft light --ar 5:4" for n in range(1, 5)
            )
        if status == "SUCCESS" and task.action == "SHORTEN":
            final_prompt = (
                "**Important tokens**\n"
                + " ".join(f"{w} (0.{i})" for i, w in enumerate(task.prompt.split()[:3], 1))
                + "\n\n**Shortened prompts**\n"
                + "\n".join(f"{n}\ufe0f\u20e3 short prompt {n}" for n in range(1, 6))
            )
            description = final_prompt
        if status == "FAILURE":
            description = self._desc("Task failed", "任务失败")
        properties: dict[str, Any] = {"finalPrompt": final_prompt}
        if not self.q.properties_minimal:
            properties.update({"messageHash": task.hash, "messageId": str(uuid.uuid4().int)[:19],
                               "discordInstanceId": "1118138338562560102", "flags": 0})
        buttons: list[dict[str, Any]] = []
        if status == "SUCCESS":
            if task.action in GRID_ACTIONS:
                buttons = grid_buttons(task.hash)
            elif task.action == "UPSCALE":
                buttons = upscale_buttons(task.hash)
            elif task.action == "UPSCALE_HD":
                buttons = [button(f"MJ::BOOKMARK::{task.hash}", "", "\u2764\ufe0f")]
            elif task.action == "DESCRIBE":
                buttons = [button(f"MJ::Job::PicReader::{n}", str(n)) for n in range(1, 5)]
            elif task.action == "SHORTEN":
                buttons = [button(f"MJ::Job::PromptAnalyzer::{task.hash}::{n}", str(n)) for n in range(1, 6)]
        if self.q.blank_labels:
            buttons = [{**b, "label": "", "emoji": ""} for b in buttons]
        return {
            "id": self._id_out(task.id), "action": task.action, "status": status,
            "prompt": task.prompt, "promptEn": final_prompt if task.action == "DESCRIBE" else task.prompt,
            "description": description, "state": task.state, "submitTime": task.submit_ms,
            "startTime": start_ms, "finishTime": finish_ms, "progress": progress, "imageUrl": image_url,
            "failReason": "[Invalid parameter] Invalid value" if status == "FAILURE" else "",
            "properties": properties, "buttons": buttons,
        }

    def view(self, task: Task, endpoint: str) -> dict[str, Any]:
        """The snapshot an endpoint serves, with that endpoint's lag on status changes."""
        lag = self.q.fetch_lag if endpoint == "fetch" else self.q.list_lag
        now = self.snapshot(task)
        served = task.views.get(endpoint)
        if lag <= 0 or served is None:
            task.views[endpoint] = [now, 0]
            return now
        previous, spent = served
        if previous["status"] != now["status"] and spent < lag:
            served[1] = spent + 1
            return previous
        task.views[endpoint] = [now, 0]
        return now

    def visible(self, task: Task) -> bool:
        """False while a just-submitted task is not yet visible to reads (not_found_polls), and while
        a task that was seen running is lost (vanish_after, vanish_for)."""
        if task.reads < self.q.not_found_polls:
            task.reads += 1
            return False
        if task.gone_reads is not None:
            if self.q.vanish_for and task.gone_reads >= self.q.vanish_for:
                task.gone_reads = None
                task.in_progress_reads = -10**9  # back for good
                return True
            task.gone_reads += 1
            self._count("refused", "vanished")
            return False
        return True

    def _note_read(self, task: Task, served: dict[str, Any]) -> dict[str, Any]:
        if self.q.vanish_after and served["status"] == "IN_PROGRESS":
            task.in_progress_reads += 1
            if task.in_progress_reads == self.q.vanish_after:
                task.gone_reads = 0
        return served

    def _truly_success(self, task: Task) -> bool:
        return self._phase(task)[0] == "SUCCESS"

    # -- middleware -----------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        path = request.path
        mount = self.q.mount.rstrip("/")
        if mount:
            if not path.startswith(mount + "/"):
                return web.Response(status=404, text="404 page not found")
            path = path[len(mount):]
        if path.startswith("/img/"):
            return await handler(request)
        m = re.match(r"^/(?:mj-(fast|relax|turbo)/)?mj/(.+)$", path)
        if not m:
            return web.Response(status=404, text="404 page not found")
        speed = m.group(1) or "default"
        self._count("speed", speed)
        if self.q.expect_speed and speed != self.q.expect_speed:
            self._count("speed", "wrong_prefix")
        route = m.group(2)
        route_key = re.sub(r"^task/[^/]+/(fetch|image-seed)$", r"task/\1", route)
        self._count("requests", route_key)
        with self.lock:
            self._seen = getattr(self, "_seen", 0) + 1
            seen = self._seen
            if route.startswith("submit/"):
                self._seen_submits = getattr(self, "_seen_submits", 0) + 1
            seen_submits = getattr(self, "_seen_submits", 0)
        if self.q.throttle_every and seen % self.q.throttle_every == 0:
            self._count("refused", "429")
            return web.Response(status=429)
        if route == "submit/modal" and self.q.refuse_modal_submits:
            with self.lock:
                self._modal_refusals = getattr(self, "_modal_refusals", 0) + 1
                refuse = self._modal_refusals <= self.q.refuse_modal_submits
            if refuse:
                self._count("refused", "429 modal")
                return web.Response(status=429)
        if (self.q.unavailable_every and route.startswith("submit/") and request.method == "POST"
                and seen_submits % self.q.unavailable_every == 0):
            self._count("refused", "503")
            return web.json_response({"error": {"message": "no available channel", "type": "new_api_error"}},
                                     status=503)
        if self.q.auth_style:
            if self.q.auth_style == "bearer":
                presented = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
            else:
                presented = request.headers.get("mj-api-secret") or ""
            ok = presented in (self.q.api_key, *self.q.accepted_keys)
            ids = re.findall(r"\d{6,}", route)
            if route == "task/list-by-condition":
                try:
                    ids = [str(i) for i in (await request.json()).get("ids", [])]
                except Exception:
                    ids = []
            with self.lock:  # which key each request presented, for the rotation tests
                self._counters["auth_log"].append({"key": presented, "route": route_key, "ids": ids, "ok": ok})
            if not ok:
                with self.lock:
                    self._counters["auth_failures"] += 1
                if self.q.unauthorized_body == "empty":
                    return web.Response(status=401)
                if self.q.unauthorized_body == "text":
                    return web.Response(status=401, text="Unauthorized: invalid mj-api-secret")
                return web.json_response({"error": {"message": "无效的令牌 (invalid token)", "type": "new_api_error"}},
                                         status=401)
        response = await self.dispatch(request, route)
        if self.q.echo_key and isinstance(response, web.Response) and response.content_type == "application/json":
            presented = (request.headers.get("Authorization") or "").removeprefix("Bearer ") or \
                request.headers.get("mj-api-secret") or ""
            echoed = echo(json.loads(response.text), f" [key {presented}]")
            return web.json_response(echoed, status=response.status)
        return response

    async def dispatch(self, request: web.Request, route: str) -> web.StreamResponse:
        if request.method == "POST" and route.startswith("submit/"):
            endpoint = route[len("submit/"):]
            handler = getattr(self, f"submit_{endpoint}", None)
            if handler is None:
                return web.Response(status=404, text="404 page not found")
            try:
                body = await request.json()
            except Exception:
                return self._invalid("body is not JSON")
            if not isinstance(body, dict):
                return self._invalid("body must be an object")
            return handler(body)
        m = re.match(r"^task/([^/]+)/(fetch|image-seed)$", route)
        if m and request.method == "GET":
            return self.fetch(m.group(1)) if m.group(2) == "fetch" else self.image_seed(m.group(1))
        if re.match(r"^image/[^/]+$", route) and request.method == "GET" and self.q.relative_image_urls:
            return web.Response(body=tiny_png(), content_type="image/png")
        if route == "task/list-by-condition" and request.method == "POST":
            if self.q.no_list_by_condition:
                return web.Response(status=404, text="404 page not found")
            if self.q.list_mode == "envelope":
                return web.json_response({"code": 4, "description": "unsupported route", "result": None})
            if self.q.list_mode == "object":
                return web.json_response({"tasks": "not here", "total": 0})
            if self.q.list_mode in ("405", "500"):
                return web.Response(status=int(self.q.list_mode), text="list-by-condition is broken")
            if self.q.list_mode == "slow":
                await asyncio.sleep(self.q.list_slow_seconds)
            try:
                body = await request.json()
            except Exception:
                return self._invalid("body is not JSON")
            return self.list_by_condition(body if isinstance(body, dict) else {})
        return web.Response(status=404, text="404 page not found")

    # -- submits ------------------------------------------------------------------------------

    def _accepted(self, task: Task) -> web.Response:
        self._count("submits", task.action.lower() if task.action else "?")
        if self.q.queue_codes:
            return self._ok(22, task.id, self._desc("In queue", "排队中"), {"numberOfQueues": 1})
        return self._ok(1, task.id, self._desc("Submit success", "提交成功"))

    def submit_imagine(self, body: dict) -> web.Response:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._invalid("prompt is required", "prompt_is_required")
        images = body.get("base64Array") or []
        if not isinstance(images, list) or not all(valid_data_url(x) for x in images):
            return self._invalid("base64 format error")
        if BANNED_WORD in prompt:
            props = {"bannedWord": BANNED_WORD, "promptEn": prompt}
            if self.q.dialect == "relay":
                return self._error(24, "banned_prompt", self._desc("banned prompt", "可能包含敏感词"))
            return self._error(24, "banned_prompt", self._desc("banned prompt", "可能包含敏感词"), properties=props)
        return self._accepted(self._new_task("IMAGINE", prompt, body))

    def submit_blend(self, body: dict) -> web.Response:
        images = body.get("base64Array")
        if not isinstance(images, list) or not 2 <= len(images) <= 5 or not all(valid_data_url(x) for x in images):
            return self._invalid("base64List parameter error")
        dims = body.get("dimensions") or "SQUARE"
        if dims not in ("PORTRAIT", "SQUARE", "LANDSCAPE"):
            return self._invalid("dimensions parameter error")
        return self._accepted(self._new_task("BLEND", f"/blend {len(images)} images {dims}", body))

    def submit_describe(self, body: dict) -> web.Response:
        b64, link = body.get("base64"), body.get("link")
        if not b64 and not link:
            return self._invalid("base64 or link is required")
        if link and not (isinstance(link, str) and re.match(r"^https?://[^\s/]+", link)):
            return self._invalid("link parameter error")
        if b64 and not valid_data_url(b64):
            return self._invalid("base64 format error")
        task = self._new_task("DESCRIBE", "", body)
        task.describe_source = link or None
        return self._accepted(task)

    def submit_shorten(self, body: dict) -> web.Response:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._invalid("prompt is required", "prompt_is_required")
        return self._accepted(self._new_task("SHORTEN", prompt, body))

    def submit_action(self, body: dict) -> web.Response:
        with self.lock:
            self._counters["action_bodies"].append(dict(body))
        parent_id, custom_id = body.get("taskId"), body.get("customId")
        if parent_id in (None, "") or not custom_id:
            return self._invalid("taskId and customId are required")
        parent = self.tasks.get(str(parent_id))
        if parent is None:
            return self._not_found("parent task")
        if not self._truly_success(parent):
            return self._invalid("parent task status is not SUCCESS")
        if custom_id not in [b["customId"] for b in self.snapshot(parent)["buttons"]]:
            return self._invalid("customId is not a button of the task")
        for regex, action, always_modal, remixable in ACTION_TABLE:
            if regex.match(custom_id):
                break
        else:  # pragma: no cover - every button of ours is in the table
            return self._invalid("unknown customId")
        if action is None:  # Favorite: acknowledged, no task
            self._count("submits", "bookmark")
            return self._ok(1, None, self._desc("Success", "成功"))
        prompt = parent.prompt
        if custom_id.startswith("MJ::Job::PicReader::"):
            n = int(custom_id.rsplit("::", 1)[1])
            prompt = f"a described picture number {n}, soft light --ar 5:4"
        elif custom_id.startswith("MJ::Job::PromptAnalyzer::"):
            prompt = f"short prompt {custom_id.rsplit('::', 1)[1]}"
        remix = bool(body.get("enableRemix")) and remixable
        if always_modal or remix:
            kind = action if always_modal else "REMIX"
            task = self._new_task(action, prompt, body, modal_kind=kind, parent=parent.id)
            self._count("submits", "action")
            if self.q.dialect == "relay" and kind not in ("INPAINT", "ZOOM"):
                return self._ok(1, task.id, self._desc("Submit success", "提交成功"))
            return self._ok(21, task.id, self._desc("Waiting for window confirm", "窗口等待"),
                            {"finalPrompt": prompt, "remix": remix})
        if self.q.existed_21 and self.q.dialect == "proxy":
            for other in self.tasks.values():
                if other.parent == parent.id and getattr(other, "custom_id", None) == custom_id:
                    snap = self.snapshot(other)
                    self._count("submits", "existed")
                    return self._ok(21, other.id, "任务已存在",
                                    {"status": snap["status"], "imageUrl": snap["imageUrl"]})
        task = self._new_task(action, prompt, body, parent=parent.id)
        task.custom_id = custom_id
        self._count("submits", "action")
        return self._accepted_plain(task)

    def _accepted_plain(self, task: Task) -> web.Response:
        if self.q.queue_codes:
            return self._ok(22, task.id, self._desc("In queue", "排队中"), {"numberOfQueues": 2})
        return self._ok(1, task.id, self._desc("Submit success", "提交成功"))

    def submit_modal(self, body: dict) -> web.Response:
        with self.lock:
            self._counters["modal_bodies"].append({k: (v if k != "maskBase64" else bool(v)) for k, v in body.items()})
        task_id = body.get("taskId")
        task = self.tasks.get(str(task_id)) if task_id not in (None, "") else None
        if task is None:
            return self._not_found()
        if not task.modal:
            return self._invalid("task is not waiting for a modal")
        prompt = body.get("prompt")
        if task.modal_kind == "INPAINT":
            if not valid_data_url(body.get("maskBase64")):
                return self._invalid("maskBase64 is required")
        elif task.modal_kind == "ZOOM":
            if not isinstance(prompt, str) or not prompt.strip():
                return self._invalid("prompt is required", "prompt_is_required")
        self._count("submits", "modal")
        if isinstance(prompt, str) and prompt.strip():
            task.prompt = prompt.strip()
        if self.q.modal_new_id:
            del self.tasks[task.id]
            task.id = self._new_id()
            self.tasks[task.id] = task
        task.modal = False
        task.started_at = time.monotonic()
        task.views.clear()
        return self._accepted_plain(task)

    # -- reads --------------------------------------------------------------------------------

    def fetch(self, task_id: str) -> web.Response:
        task = self.tasks.get(task_id)
        if task is None or not self.visible(task):
            if self.q.dialect == "relay":
                return self._error(3, "task_not_found", self._desc("task_not_found", "任务不存在"))
            if self.q.fetch_envelope:
                return web.json_response({"code": 1, "description": "success", "result": None})
            if self.q.proxy_unknown == "204":
                return web.Response(status=204)
            return web.Response(status=200, body=b"null", content_type="application/json")
        if self.q.fetch_envelope:
            return web.json_response({"code": 1, "description": "success", "result": self.view(task, "fetch")})
        return web.json_response(self._note_read(task, self.view(task, "fetch")))

    def list_by_condition(self, body: dict) -> web.Response:
        ids = body.get("ids") or []
        if not isinstance(ids, list):
            return self._invalid("ids must be a list")
        out = []
        for task_id in dict.fromkeys(str(i) for i in ids):
            task = self.tasks.get(task_id)
            if task is not None and self.visible(task):
                out.append(self._note_read(task, self.view(task, "list")))
        if self.q.list_shuffle:
            out.reverse()
        return web.Response(text=json.dumps(out), content_type="application/json")

    def image_seed(self, task_id: str) -> web.Response:
        task = self.tasks.get(task_id)
        if task is None:
            if self.q.dialect == "relay":
                return self._error(3, "task_not_found", self._desc("task_not_found", "任务不存在"))
            return web.json_response({"code": 3, "description": "task not found", "result": None}, status=404)
        if task.action in ("SHORTEN",) or not self._truly_success(task) and task.action == "DESCRIBE":
            if self.q.dialect == "relay":
                return self._error(4, "invalid_request", self._desc("task has no image", "任务没有图片"))
            return web.json_response({"code": 4, "description": "task has no image", "result": None}, status=400)
        if not self._truly_success(task):
            return self._error(3, "seed_not_found", self._desc("no seed yet", "暂无种子"))
        return web.json_response({"code": 1, "description": self._desc("Success", "成功"),
                                  "result": str(int(task.id) % 4294967295), "properties": {}})

    async def image(self, request: web.Request) -> web.Response:
        return web.Response(body=tiny_png(), content_type="image/png")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=32 * 1024 * 1024)
        mount = self.q.mount.rstrip("/")
        app.router.add_get(mount + "/img/{name}", self.image)

        async def never(request):  # every /mj route is answered by the middleware
            return web.Response(status=404)

        app.router.add_route("*", "/{tail:.*}", never)
        return app


# ---------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------


class RunningRelay:
    def __init__(self, relay: Relay, host_url: str) -> None:
        self.relay = relay
        self.host_url = host_url
        self.base_url = host_url + relay.q.mount.rstrip("/")

    @property
    def quirks(self) -> Quirks:
        return self.relay.q

    def counters(self) -> dict[str, Any]:
        return self.relay.counters()

    def configure(self, **changes: Any) -> None:
        self.relay.q = replace(self.relay.q, **changes)

    def task_ids(self) -> list[str]:
        return list(self.relay.tasks)


@contextmanager
def start_relay(quirks: Quirks | None = None):
    """Serve :class:`Relay` on 127.0.0.1 on a free port, in a background thread."""
    relay = Relay(quirks or Quirks())
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def boot():
        runner = web.AppRunner(relay.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"] = runner
        state["port"] = runner.addresses[0][1]

    def run():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(boot())
        except BaseException as err:  # pragma: no cover - reported to the caller
            state["error"] = err
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(state["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="protocol-relay", daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in state or "port" not in state:
        raise RuntimeError(f"the protocol relay did not start: {state.get('error')!r}")
    host_url = f"http://127.0.0.1:{state['port']}"
    relay.base_url = host_url + relay.q.mount.rstrip("/")
    try:
        yield RunningRelay(relay, host_url)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
