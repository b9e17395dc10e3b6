"""The emulator's HTTP face: a FastAPI app built by :func:`create_app`.

One router per resource (submit, task, images, the emulator's own test routes); the ``/mj``
routers are mounted under ``/mj``, ``/mj-fast/mj``, ``/mj-relax/mj`` and ``/mj-turbo/mj``; the key
is checked by a dependency. The dialect (proxy or relay) only changes how answers are shaped here.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from airflow_provider_mj.exceptions import MidjourneyConfigurationError
from airflow_provider_mj.models import TaskOutcome

from . import engine as eng
from .engine import Accepted, Common, Engine, SubmitError, dumps
from .faults import FaultInjector, apply_faults, install_log_filter
from . import images
from .images import ImageCache
from .notify import Notifier
from .settings import EmulatorSettings

JSON = "application/json"
SPEED_PREFIXES = ("/mj", "/mj-fast/mj", "/mj-relax/mj", "/mj-turbo/mj")
SUBMIT_ROUTES = ("imagine", "action", "blend", "describe", "modal", "shorten")
#: The ``code`` of every error a relay finds itself (new-api's MjRequestError).
RELAY_OWN_ERROR_CODE = 4
#: Relays keep code 21 only for these buttons; any other 21 becomes 1.
RELAY_MODAL_KINDS = frozenset({"vary_region", "custom_zoom"})


class EmulatorState:
    """Everything one running emulator knows: settings, tasks, faults, image cache."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.injector = FaultInjector(settings.faults)
        self.engine = Engine(settings, fail_job=self.injector.fail_job)
        self.images = ImageCache(settings.image_cache_bytes)
        self.notifier = Notifier(self.engine, lambda: self.relay)
        self.notify_base_url = settings.public_base_url or ""

    @property
    def relay(self) -> bool:
        return self.settings.dialect == "relay"

    def configure(self, **changes: Any) -> EmulatorSettings:
        """Apply setting changes at run time; any fault change re-seeds the fault streams."""
        if changes.get("api_key") == "***":  # the masked value GET /_emulator/config shows
            changes.pop("api_key")
        new = self.settings.merged(**changes)
        self.settings = new
        self.engine.apply_settings(new)
        if new.image_cache_bytes != self.images.lru.maxsize:
            self.images = ImageCache(new.image_cache_bytes)  # images are re-made on demand
        if "faults" in changes or any(k.startswith("fault_") for k in changes):
            self.injector.reseed(new.faults)
        return new

    def reset(self) -> None:
        self.engine.reset()
        self.notifier.reset()
        self.images.lru.clear()
        self.injector.reseed(self.settings.faults)

    def counters(self) -> dict[str, Any]:
        c = self.engine.counters
        submits = {route: c.submits.get(route, 0) for route in SUBMIT_ROUTES}
        return {
            "submits": submits,
            "submits_by_state": dict(c.submits_by_state),
            "submit_codes": dict(c.submit_codes),
            "requests": dict(c.requests),
            "faults": dict(c.faults),
            "modes": dict(c.modes),
            "tasks": self.engine.task_count(),
            "queued": self.engine.queued_count(),
            "images_cached": len(self.images.lru),
            "image_cache_bytes": self.images.lru.currsize,
            "notifications": {"sent": self.notifier.sent, "failed": self.notifier.failed,
                              "watched": len(self.notifier.watched)},
        }


class EmulatorApp(FastAPI):
    """FastAPI, with the fault layer outermost (it must be able to drop the connection)."""

    emulator: EmulatorState

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:  # type: ignore[override]
        state = self.emulator
        return await apply_faults(scope, receive, send, super().__call__, injector=state.injector,
                                  counters=state.engine.counters, relay=state.relay)


# ---------------------------------------------------------------------------------------------
# Request bodies (camelCase, as on the wire). Wrong types answer code 4, like a real server.
# ---------------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class SubmitBody(_Body):
    state: str | None = None
    notifyHook: str | None = None
    botType: str | None = None
    accountFilter: dict[str, Any] | None = None


class ImagineBody(SubmitBody):
    prompt: str | None = None
    base64Array: list[str] | None = None


class ActionBody(SubmitBody):
    taskId: str | None = None
    customId: str | None = None
    enableRemix: bool | None = None
    chooseSameChannel: bool | None = None


class BlendBody(SubmitBody):
    base64Array: list[str] | None = None
    dimensions: str | None = None


class DescribeBody(SubmitBody):
    base64: str | None = None
    link: str | None = None


class ModalBody(_Body):
    taskId: str | None = None
    prompt: str | None = None
    maskBase64: str | None = None


class ShortenBody(SubmitBody):
    prompt: str | None = None


class ListBody(_Body):
    ids: list[str] | None = None


class SubmitEnvelope(BaseModel):
    """What every submit route answers (proxy dialect; relays answer errors differently)."""

    code: int
    description: str
    result: str | None = None
    properties: dict[str, Any] = {}


class AuthError(Exception):
    def __init__(self, missing: bool) -> None:
        super().__init__("unauthorized")
        self.missing = missing


# ---------------------------------------------------------------------------------------------
# The app.
# ---------------------------------------------------------------------------------------------


def create_app(settings: EmulatorSettings | None = None) -> EmulatorApp:
    """A new emulator app with its own, empty task store."""
    settings = settings or EmulatorSettings()
    state = EmulatorState(settings)
    install_log_filter()
    app = EmulatorApp(title="Midjourney task API emulator", version="1",
                      docs_url="/_emulator/docs", openapi_url="/_emulator/openapi.json", redoc_url=None)
    app.emulator = state

    def mode_of(request: Request) -> str:
        path = request.url.path
        for prefix in SPEED_PREFIXES[1:]:
            if path.startswith(prefix + "/"):
                return prefix[4:].split("/", 1)[0]
        return "default"

    def base_url(request: Request) -> str:
        return state.settings.public_base_url or str(request.base_url).rstrip("/")

    async def require_key(request: Request) -> None:
        key = state.settings.api_key
        if not key:
            return
        headers = request.headers
        supplied = []
        auth = headers.get("authorization")
        if auth and auth[:7].lower() == "bearer ":
            supplied.append(auth[7:].strip())
        if headers.get("mj-api-secret"):
            supplied.append(headers["mj-api-secret"].strip())
        if not any(hmac.compare_digest(s.encode(), key.encode()) for s in supplied):
            raise AuthError(missing=not (auth or headers.get("mj-api-secret")))

    def common(body: SubmitBody, request: Request) -> Common:
        if body.notifyHook:
            state.notify_base_url = base_url(request)
        return Common(state=body.state, notify_hook=body.notifyHook, bot_type=body.botType,
                      account_filter=body.accountFilter, mode=mode_of(request))

    def error_response(err: SubmitError) -> Response:
        # A relay answers the errors it finds itself in its own shape; anything its upstream
        # server refused (queue full, banned prompt...) it passes through as it came.
        if state.relay and err.relay_reason is not None:
            # new-api: code 4 (its "request error") for all of them, the reason as a name in
            # description, followed by a space (it appends an empty "result").
            return Response(dumps({"description": f"{err.relay_reason} ", "type": "upstream_error",
                                   "code": RELAY_OWN_ERROR_CODE}), status_code=400, media_type=JSON)
        return Response(dumps({"code": err.code, "description": err.description, "result": None,
                               "properties": err.properties}), status_code=err.http_status, media_type=JSON)

    def accepted_response(acc: Accepted) -> Response:
        code, description, properties = acc.code, acc.description, dict(acc.properties)
        if state.relay:
            # new-api style gateways hide the queue and most modal steps.
            if code == 22 or (code == 21 and acc.kind_name not in RELAY_MODAL_KINDS):
                code = 1
            if code == 1:
                description = "提交成功"
            properties = {}
        return Response(dumps({"code": code, "description": description, "result": acc.task_id,
                               "properties": properties}), media_type=JSON)

    def submit(fn: Any, *args: Any, **kw: Any) -> Response:
        counters = state.engine.counters
        try:
            acc = fn(*args, **kw)
        except SubmitError as err:
            counters.submit_codes[str(err.code)] += 1
            return error_response(err)
        counters.submit_codes[str(acc.code)] += 1
        job = state.engine.get(acc.task_id) if acc.task_id else None
        if job is not None and job.common.notify_hook:
            state.notifier.watch(acc.task_id, state.notify_base_url)
        return accepted_response(acc)

    # -- submit ---------------------------------------------------------------------------------
    submit_router = APIRouter(prefix="/submit", tags=["submit"])
    doc = {"response_model": SubmitEnvelope}

    @submit_router.post("/imagine", **doc)
    async def imagine(body: ImagineBody, request: Request) -> Response:
        return submit(state.engine.imagine, body.prompt, body.base64Array, common(body, request))

    @submit_router.post("/action", **doc)
    async def action(body: ActionBody, request: Request) -> Response:
        # A relay passes remix upstream; the upstream task waits in MODAL, but the relay answers
        # code 1 instead of 21 (PROTOCOL.md: "21 to 1 except for inpaint and custom zoom").
        remix = bool(body.enableRemix)
        return submit(state.engine.action, body.taskId, body.customId, common(body, request), remix=remix)

    @submit_router.post("/blend", **doc)
    async def blend(body: BlendBody, request: Request) -> Response:
        return submit(state.engine.blend, body.base64Array, body.dimensions, common(body, request))

    @submit_router.post("/describe", **doc)
    async def describe(body: DescribeBody, request: Request) -> Response:
        return submit(state.engine.describe, body.base64, body.link, common(body, request), base_url(request))

    @submit_router.post("/modal", **doc)
    async def modal(body: ModalBody) -> Response:
        return submit(state.engine.modal, body.taskId, body.prompt, body.maskBase64)

    @submit_router.post("/shorten", **doc)
    async def shorten(body: ShortenBody, request: Request) -> Response:
        return submit(state.engine.shorten, body.prompt, common(body, request))

    # -- task -----------------------------------------------------------------------------------
    task_router = APIRouter(prefix="/task", tags=["task"])

    @task_router.get("/{task_id}/fetch")
    async def fetch(task_id: str, request: Request) -> Response:
        job = state.engine.get(task_id)
        if job is None:
            if state.relay:
                return error_response(eng.not_found(relay_reason="task_no_found"))
            return Response(b"null", media_type=JSON)
        return Response(state.engine.task_json(job, base_url(request), state.relay), media_type=JSON)

    @task_router.post("/list-by-condition")
    async def list_by_condition(body: ListBody, request: Request) -> Response:
        base, relay, engine = base_url(request), state.relay, state.engine
        parts = []
        for task_id in dict.fromkeys(body.ids or ()):
            job = engine.get(task_id)
            if job is not None:
                parts.append(engine.task_json(job, base, relay))
        return Response(b"[" + b",".join(parts) + b"]", media_type=JSON)

    @task_router.get("/{task_id}/image-seed", response_model=SubmitEnvelope)
    async def image_seed(task_id: str) -> Response:
        try:
            seed = state.engine.image_seed(task_id)
        except SubmitError as err:
            return error_response(err)
        return Response(dumps({"code": 1, "description": "Success", "result": seed, "properties": {}}),
                        media_type=JSON)

    for prefix in SPEED_PREFIXES:
        app.include_router(submit_router, prefix=prefix, dependencies=[Depends(require_key)])
        app.include_router(task_router, prefix=prefix, dependencies=[Depends(require_key)])

    # -- images ---------------------------------------------------------------------------------
    @app.get("/images/{name}", tags=["images"])
    async def image(name: str, format: str | None = None) -> Response:  # noqa: A002 - the CDN's query name
        """An image by name; ``?format=webp|png|jpeg`` serves that format whatever the extension says."""
        if format is not None and format.lower() not in images.FORMATS:
            return Response(b"format must be png, webp or jpeg", status_code=400, media_type="text/plain")
        try:
            found = state.images.get(name, format.lower() if format else None)
        except MidjourneyConfigurationError as err:  # WebP or JPEG without Pillow
            return Response(str(err).encode(), status_code=501, media_type="text/plain")
        if found is None:
            return Response(b"image not found", status_code=404, media_type="text/plain")
        data, fmt = found
        return Response(data, media_type=fmt.media_type, headers={"cache-control": "public, max-age=86400"})

    # -- the emulator's own routes (no key, no faults) ------------------------------------------
    test_router = APIRouter(prefix="/_emulator", tags=["emulator"])

    @test_router.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "dialect": state.settings.dialect}

    @test_router.get("/counters")
    async def counters() -> dict[str, Any]:
        return state.counters()

    @test_router.post("/reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return {"ok": True}

    @test_router.get("/task/{task_id}/done")
    async def task_done(task_id: str) -> Response:
        # For benchmarks: a route a generic HTTP sensor can wait on (404 until the job is finished,
        # then 200). Counted in ``requests`` like the /mj routes, so its polls can be compared.
        state.engine.counters.requests["_emulator/task/done"] += 1
        engine = state.engine
        job = engine.get(task_id)
        if job is None:
            return Response(dumps({"id": task_id, "status": None}), status_code=404, media_type=JSON)
        view = engine.read_view(job)
        body = dumps({"id": task_id, "status": view.status})
        if view.outcome is not TaskOutcome.RUNNING:
            return Response(body, media_type=JSON)
        return Response(body, status_code=404, media_type=JSON)

    @test_router.get("/config")
    async def get_config() -> dict[str, Any]:
        return state.settings.to_dict()

    @test_router.post("/config")
    async def post_config(request: Request) -> Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise TypeError("the body must be a JSON object of settings")
            new = state.configure(**changes)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(new.to_dict())

    app.include_router(test_router)

    # -- errors ---------------------------------------------------------------------------------
    @app.exception_handler(AuthError)
    async def on_auth_error(request: Request, exc: AuthError) -> Response:
        if state.relay:
            return Response(dumps({"error": {"message": "invalid or missing API key",
                                             "type": "new_api_error"}}), status_code=401, media_type=JSON)
        # midjourney-proxy servers: empty body (novicezk) or plain text (trueai).
        if exc.missing:
            return Response(b"", status_code=401)
        return Response(b"Unauthorized: invalid mj-api-secret", status_code=401, media_type="text/plain")

    @app.exception_handler(RequestValidationError)
    async def on_invalid_body(request: Request, exc: RequestValidationError) -> Response:
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in exc.errors())
        err = eng.invalid(f"invalid request body: {fields}", relay_reason="bind_request_body_failed")
        if "/submit/" in request.url.path:
            state.engine.counters.submit_codes["4"] += 1
        return error_response(err)

    return app
