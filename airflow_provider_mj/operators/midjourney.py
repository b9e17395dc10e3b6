"""One operator per route of the Midjourney task API.

Submit operators (imagine, action, blend, describe, modal, shorten) share one shape, the dbt Cloud
provider's: validate locally, submit through the hook, push the ``mj_task_id`` XCom at once (before
any waiting), remember the job in the durable task state, then either return, block on
:meth:`MidjourneyHook.wait_for_task <airflow_provider_mj.hooks.midjourney.MidjourneyHook.wait_for_task>`
or defer to :class:`~airflow_provider_mj.triggers.midjourney.MidjourneyTaskTrigger`.

XComs of every submit operator:

* ``mj_task_id``: the Midjourney task id, pushed as soon as the job is accepted;
* ``return_value``: the finished task as the API returned it (``MidjourneyTask.to_dict()``; plus
  ``prompts`` for describe and shorten), or the ``mj_task_id`` string with
  ``wait_for_completion=False``;
* ``custom_ids``: button label -> customId of the finished task (``{"U1": "MJ::JOB::..."}``);
* ``mj_image_url``: the image URL (read by the "Midjourney image" extra link).

The hook is imported lazily: DAG files import this module, and parsing must stay cheap.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf

from airflow_provider_mj.exceptions import (
    MidjourneyModalRequiredError,
    MidjourneyNotFoundError,
    MidjourneyServerError,
    MidjourneyTimeoutError,
    MidjourneyValidationError,
)
from airflow_provider_mj.inputs import validate_mj_task_id
from airflow_provider_mj.links import MidjourneyImageLink, push_image_url
from airflow_provider_mj.models import (
    NOT_VISIBLE_GRACE_SECONDS,
    MidjourneyTask,
    SubmitResult,
    TaskOutcome,
    TaskStatus,
    can_open_modal,
    task_outcome,
)
from airflow_provider_mj.triggers.midjourney import DEFAULT_MAX_WAIT, MidjourneyTaskTrigger, task_from_event

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_mj.hooks.midjourney import MidjourneyHook

#: XCom keys pushed by the submit operators.
MJ_TASK_ID_XCOM_KEY = "mj_task_id"
CUSTOM_IDS_XCOM_KEY = "custom_ids"
#: Default deadline on a Midjourney job, in seconds (relays fail their own jobs after one hour).
DEFAULT_TIMEOUT = 3600.0


def as_mj_task_id(value: Any, *, field: str = "mj_task_id") -> str:
    """Accept a task id in every shape a DAG naturally has it.

    A string (or int) id; a task dict as the submit operators return it (``{"id": ...}``, so
    ``mj_task_id=imagine.output`` works); a :class:`MidjourneyTask`.
    """
    if isinstance(value, MidjourneyTask):
        value = value.id
    elif isinstance(value, dict):
        value = value.get("id") or value.get("mj_task_id") or value.get("result")
    return validate_mj_task_id(value, field=field)


def _given(value: Any) -> bool:
    """A parameter counts as given unless it is None or a blank string (a template may render '')."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    return True


def _fingerprint(value: Any) -> str:
    """A short stable digest of a submit's inputs (bytes and paths included)."""

    def norm(v: Any) -> Any:
        if isinstance(v, (bytes, bytearray)):
            return "bytes:" + hashlib.sha256(bytes(v)).hexdigest()
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if v is None or isinstance(v, (str, int, float, bool)):
            return v
        return str(v)

    raw = json.dumps(norm(value), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class MidjourneyJobState:
    """Exactly-once groundwork: the submitted job, remembered in Airflow's durable task state.

    After a submit is accepted, ``{"mj_task_id": ..., "request": <digest of the inputs>}`` is
    written to ``context["task_state_store"]`` (Airflow 3.3+) under :attr:`KEY`, before any
    waiting. That store survives retries and deferral, so when a later try of the same task
    instance starts, :meth:`recall` finds the job and the operator re-attaches to it instead of
    paying for a second one:

    * job still running (or waiting in MODAL) or SUCCESS -> re-attach;
    * job FAILURE/CANCEL, unknown to the server, or submitted with other inputs -> submit again.

    Without a ``task_state_store`` (Airflow < 3.3) a warning is logged and every try submits.
    """

    KEY = "mj_job"

    def __init__(self, context: Context, log: Any, *, enabled: bool = True) -> None:
        self.log = log
        #: Until when (epoch seconds) "no such task" means the job is not visible yet.
        self.visible_by: float | None = None
        self._store = context.get("task_state_store") if enabled else None  # type: ignore[union-attr]
        if enabled and self._store is None:
            log.warning(
                "task_state_store is not available (Airflow < 3.3): if this try fails after the "
                "Midjourney job is accepted, the next try submits a new job instead of re-attaching."
            )

    def recall(self, hook: MidjourneyHook, request: str) -> MidjourneyTask | None:
        """The job an earlier try submitted with the same inputs, if it is worth re-attaching to."""
        if self._store is None:
            return None
        stored = self._store.get(self.KEY)
        if not isinstance(stored, dict) or not stored.get("mj_task_id"):
            return None
        mj_task_id = str(stored["mj_task_id"])
        submitted_at = stored.get("submitted_at")
        if isinstance(submitted_at, (int, float)):
            self.visible_by = float(submitted_at) + NOT_VISIBLE_GRACE_SECONDS
        if stored.get("request") != request:
            self.log.info(
                "An earlier try submitted Midjourney task %s with other inputs: submitting a new job.",
                mj_task_id,
            )
            return None
        try:
            task = hook.fetch_task(mj_task_id)
        except MidjourneyNotFoundError:
            if self.visible_by is not None and time.time() < self.visible_by:
                # Submitted moments ago: a lagging relay, not a lost job. Paying twice is worse
                # than waiting a little; the wait fails if it is still unknown after the grace.
                self.log.info(
                    "Midjourney task %s from an earlier try is not visible on the server yet: "
                    "re-attaching to it instead of submitting again.", mj_task_id,
                )
                return MidjourneyTask(id=mj_task_id, status=TaskStatus.UNKNOWN)
            self.log.warning(
                "Midjourney task %s from an earlier try is unknown to the server: submitting a new job.",
                mj_task_id,
            )
            return None
        if task_outcome(task) is TaskOutcome.FAILED:
            self.log.warning(
                "Midjourney task %s from an earlier try ended in %s (%s): submitting a new job.",
                mj_task_id, task.raw_status or task.status.value, task.fail_reason or "no reason given",
            )
            return None
        self.log.info(
            "Re-attaching to Midjourney task %s submitted by an earlier try (status %s %s) "
            "instead of submitting it again.",
            mj_task_id, task.raw_status or task.status.value, task.progress,
        )
        return task

    def remember(self, mj_task_id: str, request: str) -> None:
        submitted_at = time.time()
        self.visible_by = submitted_at + NOT_VISIBLE_GRACE_SECONDS
        if self._store is not None:
            self._store.set(self.KEY, {"mj_task_id": mj_task_id, "request": request, "submitted_at": submitted_at})


_COMMON_PARAMS_DOC = """
    :param midjourney_conn_id: the Airflow connection of the Midjourney API
        (default ``midjourney_default``).
    :param wait_for_completion: wait until the Midjourney job is finished (default). The return
        value is then the finished task dict; with False it is the ``mj_task_id`` string and the
        task ends as soon as the job is accepted.
    :param deferrable: wait on the triggerer (frees the worker slot) instead of blocking the
        worker. Default: ``[operators] default_deferrable``.
    :param poll_interval: seconds between two polls of the job (default 5).
    :param timeout: seconds the Midjourney job may take, counted from its submission (default
        3600). The deadline is fixed once, at submit, as an absolute time, and holds in both wait
        modes and across deferral; past it the task fails with ``MidjourneyTimeoutError``
        (retried by Airflow's ``retries``; a retry re-attaches to the same job with a fresh
        ``timeout``). None: 24 hours.
    :param durable: re-attach to the job an earlier try of this task instance submitted (Airflow
        3.3 ``task_state_store``) instead of submitting again (default True). See
        :class:`MidjourneyJobState`.
"""


class BaseMidjourneySubmitOperator(BaseOperator):
    """Common behaviour of the submit operators: submit, remember, then wait or defer.

    Subclasses implement :meth:`submit` (one call to the hook) and :meth:`request_inputs`, and
    may override :meth:`validate`, :meth:`extra_result`, :meth:`resume` and
    :meth:`prompt_for_messages`. Every submit operator takes these parameters:
    """

    __doc__ = (__doc__ or "").rstrip() + "\n" + _COMMON_PARAMS_DOC

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The reference docs are built from each operator's docstring: give every operator the
        # full list of its parameters without six hand-kept copies of the common ones.
        if cls.__doc__ and ":param midjourney_conn_id:" not in cls.__doc__:
            cls.__doc__ = cls.__doc__.rstrip() + "\n" + _COMMON_PARAMS_DOC

    operator_extra_links = (MidjourneyImageLink(),)
    ui_color = "#e8f0fe"

    #: Shown in the logs and in error messages.
    endpoint: str = ""

    def __init__(
        self,
        *,
        midjourney_conn_id: str = "midjourney_default",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        timeout: float | None = DEFAULT_TIMEOUT,
        durable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(poll_interval, (int, float)) or poll_interval <= 0:
            raise MidjourneyValidationError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise MidjourneyValidationError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self.midjourney_conn_id = midjourney_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = float(poll_interval)
        self.timeout = float(timeout) if timeout is not None else None
        self.durable = durable

    @cached_property
    def hook(self) -> MidjourneyHook:
        from airflow_provider_mj.hooks.midjourney import MidjourneyHook

        return MidjourneyHook(midjourney_conn_id=self.midjourney_conn_id)

    # -- for subclasses --------------------------------------------------------------------------

    def validate(self) -> None:
        """Checks on the rendered parameters that must pass before any request is sent."""

    def request_inputs(self) -> dict[str, Any]:
        """The inputs that define the job (to tell a retry from a changed task)."""
        raise NotImplementedError

    def submit(self, context: Context) -> SubmitResult:
        """Send the submit request; return the accepted result."""
        raise NotImplementedError

    def prompt_for_messages(self) -> str | None:
        return None

    def extra_result(self, task: MidjourneyTask) -> dict[str, Any]:
        """Keys added to the returned task dict (``prompts`` for describe and shorten)."""
        return {}

    def resume(self, context: Context, task: MidjourneyTask) -> str:
        """Continue a job found in the task state; return the id to wait for."""
        return task.id

    # -- the flow --------------------------------------------------------------------------------

    def accepted(self, context: Context, mj_task_id: str) -> None:
        """Remember and publish an accepted job, before any waiting.

        The durable record is written first: if publishing the XCom fails (the API server is
        briefly unreachable), the next try still finds the job instead of paying for another.
        """
        self._job_state.remember(mj_task_id, self._request)
        context["ti"].xcom_push(key=MJ_TASK_ID_XCOM_KEY, value=mj_task_id)

    def execute(self, context: Context) -> Any:
        self.validate()
        self._request = _fingerprint({"endpoint": self.endpoint, **self.request_inputs()})
        self._job_state = MidjourneyJobState(context, self.log, enabled=self.durable)

        earlier = self._job_state.recall(self.hook, self._request)
        if earlier is not None:
            context["ti"].xcom_push(key=MJ_TASK_ID_XCOM_KEY, value=earlier.id)
            push_image_url(context["ti"], earlier.image_url)
            mj_task_id = self.resume(context, earlier)
            if mj_task_id == earlier.id and task_outcome(earlier) is TaskOutcome.SUCCEEDED:
                return self._finish(context, earlier) if self.wait_for_completion else earlier.id
        else:
            result = self.submit(context)
            if not result.mj_task_id:
                if result.needs_modal:
                    raise MidjourneyServerError(
                        f"/submit/{self.endpoint} answered code 21 (modal) without a task id",
                        code=result.code, description=result.description,
                    )
                # Some buttons (Favorite) are acknowledged without creating a task.
                self.log.info("Midjourney accepted the %s request (code %s); it created no task.",
                              self.endpoint, result.code)
                return None
            mj_task_id = result.mj_task_id
            self.accepted(context, mj_task_id)
            if result.queued:
                self.log.info("Midjourney task %s is queued (%s ahead of it)", mj_task_id,
                              result.number_of_queues if result.number_of_queues is not None else "?")
            self.log.info("Submitted Midjourney %s job: mj_task_id=%s", self.endpoint, mj_task_id)
        deadline = time.time() + (self.timeout if self.timeout is not None else DEFAULT_MAX_WAIT)

        if not self.wait_for_completion:
            return mj_task_id
        if self.deferrable:
            self.defer(
                trigger=MidjourneyTaskTrigger(
                    mj_task_id=mj_task_id,
                    midjourney_conn_id=self.midjourney_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                    prompt=self.prompt_for_messages(),
                    visible_by=self._job_state.visible_by,
                ),
                method_name="execute_complete",
            )
        shown: list[str] = []

        def show_preview(task: MidjourneyTask) -> None:
            # The "Midjourney image" link follows the job: the preview while it runs.
            if task.image_url and task.image_url not in shown:
                shown.append(task.image_url)
                push_image_url(context["ti"], task.image_url)

        task = self.hook.wait_for_task(mj_task_id, poll_interval=self.poll_interval, deadline=deadline,
                                       visible_by=self._job_state.visible_by, on_progress=show_preview)
        return self._finish(context, task)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: the finished task dict, or the error it reported."""
        try:
            task = task_from_event(event)
        except MidjourneyTimeoutError as err:
            # The trigger's timeout event carries the task id and last status, not the prompt:
            # add it, so a deferred timeout reads like a blocking one.
            prompt = self.prompt_for_messages()
            if err.prompt or not prompt:
                raise
            richer = MidjourneyTimeoutError(str(err), prompt=prompt)
            richer.mj_task_id = (event or {}).get("mj_task_id") or err.mj_task_id
            raise richer from None
        return self._finish(context, task)

    def _finish(self, context: Context, task: MidjourneyTask) -> dict[str, Any]:
        ti = context["ti"]
        ti.xcom_push(key=CUSTOM_IDS_XCOM_KEY, value=task.custom_ids())
        push_image_url(ti, task.image_url)
        self.log.info("Midjourney task %s finished: %s %s", task.id, task.raw_status, task.image_url)
        result = task.to_dict()
        result.update(self.extra_result(task))
        return result


class MidjourneyImagineOperator(BaseMidjourneySubmitOperator):
    """Generate a 2x2 grid of images from a prompt (``/mj/submit/imagine``).

    The finished task's buttons (``U1``..``U4``, ``V1``..``V4``, ``reroll``) feed
    :class:`MidjourneyActionOperator`.

    :param prompt: the prompt, Midjourney parameters included (``"a cat --ar 3:2 --v 6.1"``).
        Templated; map over it with ``.expand(prompt=[...])``.
    :param images: optional reference images (up to 5): data URLs, local paths or bytes. Templated.
    :param state: a tag (<= 255 chars) stored on the task and echoed back. Templated.
    :param notify_hook: URL the server POSTs the task to on every change. Templated.
    :param bot_type: ``MID_JOURNEY`` (default) or ``NIJI_JOURNEY``.
    :param account_filter: ``{"modes": ["FAST"|"RELAX"|"TURBO"], "instanceId": ..., "remix": bool}``.
    """

    endpoint = "imagine"
    template_fields: Sequence[str] = ("prompt", "images", "state", "notify_hook", "account_filter")

    def __init__(
        self,
        *,
        prompt: str,
        images: Sequence[Any] | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
        bot_type: str | None = None,
        account_filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.images = images
        self.state = state
        self.notify_hook = notify_hook
        self.bot_type = bot_type
        self.account_filter = account_filter

    def request_inputs(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "images": self.images, "bot_type": self.bot_type,
                "account_filter": self.account_filter}

    def prompt_for_messages(self) -> str | None:
        return self.prompt

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.imagine(
            self.prompt, images=self.images or None, state=self.state, notify_hook=self.notify_hook,
            bot_type=self.bot_type, account_filter=self.account_filter,
        )


class MidjourneyActionOperator(BaseMidjourneySubmitOperator):
    """Press a button of a finished task: upscale, vary, reroll, zoom, pan... (``/mj/submit/action``).

    Give exactly one of ``button`` (a label, resolved against the parent task's buttons) or
    ``custom_id``. Buttons that open a form in Discord (``Custom Zoom``, ``Vary (Region)``, any
    remixable button with ``enable_remix=True``) answer code 21: the operator then completes the
    modal itself with ``modal_prompt`` and/or ``mask``; without them it fails with
    :class:`~airflow_provider_mj.exceptions.MidjourneyModalRequiredError` naming the MODAL task,
    which :class:`MidjourneyModalOperator` can finish.

    :param mj_task_id: the parent task: its id, or the task dict an upstream submit operator
        returned (``mj_task_id=imagine.output`` works, as does
        ``XComArg(imagine, key="mj_task_id")``). Templated.
    :param button: the button's label: ``U1``..``U4``, ``V1``..``V4``, ``reroll``,
        ``Upscale (Subtle)``, ``Upscale (Creative)``, ``Vary (Subtle)``, ``Vary (Strong)``,
        ``Vary (Region)``, ``Zoom Out 2x``, ``Zoom Out 1.5x``, ``Custom Zoom``, ``Pan Left``...
        (case-insensitive). An unknown label fails with the list of labels the parent has.
        Templated; map over it with ``.expand(button=["U1", "U2", "U3", "U4"])``.
    :param custom_id: the button's customId (``MJ::JOB::upsample::1::<hash>``), instead of
        ``button``. Templated.
    :param modal_prompt: the prompt for the modal (Custom Zoom: ``"a cat --zoom 2"``; remix: the
        new prompt). Templated.
    :param mask: the Vary (Region) mask: data URL, local path or bytes. Templated.
    :param enable_remix: ask for remix mode (variations, reroll and pan then wait for a modal).
    :param choose_same_channel: run on the same Discord channel/account as the parent.
    :param state: a tag (<= 255 chars) stored on the task. Templated.
    :param notify_hook: URL the server POSTs the task to on every change. Templated.
    """

    endpoint = "action"
    template_fields: Sequence[str] = (
        "mj_task_id", "button", "custom_id", "modal_prompt", "mask", "state", "notify_hook",
    )

    def __init__(
        self,
        *,
        mj_task_id: Any,
        button: str | None = None,
        custom_id: str | None = None,
        modal_prompt: str | None = None,
        mask: Any = None,
        enable_remix: bool | None = None,
        choose_same_channel: bool | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if button is not None and custom_id is not None:
            raise MidjourneyValidationError(
                "MidjourneyActionOperator takes either button (a label such as 'U1') or custom_id "
                "(a customId such as 'MJ::JOB::upsample::1::<hash>'), not both."
            )
        if button is None and custom_id is None:
            raise MidjourneyValidationError(
                "MidjourneyActionOperator needs button (a label such as 'U1', 'V2', 'Zoom Out 2x') "
                "or custom_id (a customId from the parent task's buttons)."
            )
        self.mj_task_id = mj_task_id
        self.button = button
        self.custom_id = custom_id
        self.modal_prompt = modal_prompt
        self.mask = mask
        self.enable_remix = enable_remix
        self.choose_same_channel = choose_same_channel
        self.state = state
        self.notify_hook = notify_hook

    def validate(self) -> None:
        has_button, has_custom_id = _given(self.button), _given(self.custom_id)
        if has_button == has_custom_id:
            raise MidjourneyValidationError(
                "MidjourneyActionOperator needs exactly one of button and custom_id after templating; "
                f"got button={self.button!r}, custom_id={self.custom_id!r}."
            )
        self._parent_id = as_mj_task_id(self.mj_task_id)

    def request_inputs(self) -> dict[str, Any]:
        return {"parent": self._parent_id, "button": self.button, "custom_id": self.custom_id,
                "modal_prompt": self.modal_prompt, "mask": self.mask, "enable_remix": self.enable_remix}

    def _parent_task(self) -> MidjourneyTask:
        """The parent task, finished: reuse the upstream task dict when it is one, else fetch it."""
        given = self.mj_task_id
        if isinstance(given, dict) and given.get("buttons") and str(given.get("status")) == "SUCCESS":
            return MidjourneyTask.from_api(given)
        parent = self.hook.fetch_task(self._parent_id)
        if task_outcome(parent) is not TaskOutcome.SUCCEEDED:
            status = parent.raw_status or parent.status.value
            hint = f" ({parent.fail_reason})" if parent.fail_reason else ""
            raise MidjourneyValidationError(
                f"Cannot press {self.button!r} on Midjourney task {parent.id}: it is {status}{hint}. "
                "Buttons exist only once a task ended in SUCCESS; wait for it first "
                "(an upstream submit operator with wait_for_completion=True, or MidjourneyTaskSensor).",
                mj_task_id=parent.id,
            )
        return parent

    def _custom_id(self) -> str:
        if _given(self.custom_id):
            return str(self.custom_id).strip()
        custom_id = self.hook.resolve_button(self._parent_task(), str(self.button).strip())
        self.log.info("Button %r of task %s is customId %s", self.button, self._parent_id, custom_id)
        return custom_id

    def _has_modal_input(self) -> bool:
        return _given(self.modal_prompt) or _given(self.mask)

    def _complete_modal(self, modal_task_id: str) -> SubmitResult | None:
        what = f"button {self.button!r}" if _given(self.button) else f"customId {self.custom_id!r}"
        if not self._has_modal_input():
            raise MidjourneyModalRequiredError(
                f"Pressing {what} on Midjourney task {self._parent_id} opened a modal: MODAL task "
                f"{modal_task_id} waits for input. Give this operator modal_prompt (Custom Zoom, "
                "remix) and/or mask (Vary (Region)), or finish it with "
                f"MidjourneyModalOperator(mj_task_id='{modal_task_id}', prompt=..., mask=...).",
                mj_task_id=modal_task_id,
            )
        self.log.info("Midjourney task %s waits for modal input: submitting it", modal_task_id)
        return self.hook.modal(
            modal_task_id,
            prompt=self.modal_prompt if _given(self.modal_prompt) else None,
            mask=self.mask if _given(self.mask) else None,
        )

    #: Longest time (seconds) to look for a MODAL task after a code-1 answer that may hide a code 21.
    MODAL_PROBE_SECONDS = 30.0

    def _waits_in_modal(self, mj_task_id: str) -> bool:
        """Whether a task accepted with code 1 actually waits in status MODAL.

        Relays rewrite code 21 to 1 (all but Vary (Region) and Custom Zoom), so a remix answered
        with code 1 may still be a MODAL task that would wait for input forever. Its status
        tells: MODAL, or running/finished. A relay refreshes its view of a new job only every
        ~15 s, so NOT_START, an unknown status or "not found" are read again, for a bounded time.
        """
        give_up = time.monotonic() + min(self.MODAL_PROBE_SECONDS, self.timeout or self.MODAL_PROBE_SECONDS)
        while True:
            try:
                task: MidjourneyTask | None = self.hook.fetch_task(mj_task_id)
            except MidjourneyNotFoundError:
                task = None
            if task is not None:
                if task.status is TaskStatus.MODAL:
                    return True
                if task.status not in (TaskStatus.NOT_START, TaskStatus.UNKNOWN):
                    return False
            if time.monotonic() >= give_up:
                return False
            time.sleep(min(self.poll_interval, max(0.0, give_up - time.monotonic())))

    def submit(self, context: Context) -> SubmitResult:
        custom_id = self._custom_id()
        result = self.hook.action(
            self._parent_id, custom_id, enable_remix=self.enable_remix,
            choose_same_channel=self.choose_same_channel, state=self.state, notify_hook=self.notify_hook,
        )
        if (result.mj_task_id and not result.needs_modal and can_open_modal(custom_id, self.enable_remix)
                and self._waits_in_modal(result.mj_task_id)):
            self.log.info("Midjourney answered code %s, but task %s waits in MODAL (a relay rewrote code 21).",
                          result.code, result.mj_task_id)
            result = SubmitResult(code=SubmitResult.MODAL, description=result.description,
                                  mj_task_id=result.mj_task_id, properties=result.properties)
        if not result.needs_modal or not result.mj_task_id:
            return result
        # The MODAL task exists and is billed once completed: publish and remember it first.
        self.accepted(context, result.mj_task_id)
        modal = self._complete_modal(result.mj_task_id)
        if modal is not None and modal.mj_task_id:
            return modal
        return result

    def resume(self, context: Context, task: MidjourneyTask) -> str:
        if task.raw_status.upper() != "MODAL":
            return task.id
        modal = self._complete_modal(task.id)
        mj_task_id = modal.mj_task_id if modal is not None and modal.mj_task_id else task.id
        self.accepted(context, mj_task_id)
        return mj_task_id


class MidjourneyBlendOperator(BaseMidjourneySubmitOperator):
    """Blend 2 to 5 images into a new 2x2 grid (``/mj/submit/blend``).

    :param images: 2 to 5 images: data URLs (``data:image/png;base64,...``), local paths or bytes.
        Checked locally before any request. Templated.
    :param dimensions: ``SQUARE`` (1:1, default), ``PORTRAIT`` (2:3) or ``LANDSCAPE`` (3:2).
    :param state: a tag (<= 255 chars) stored on the task. Templated.
    :param notify_hook: URL the server POSTs the task to on every change. Templated.
    :param bot_type: ``MID_JOURNEY`` (default) or ``NIJI_JOURNEY``.
    :param account_filter: ``{"modes": [...], "instanceId": ..., "remix": bool}``.
    """

    endpoint = "blend"
    template_fields: Sequence[str] = ("images", "dimensions", "state", "notify_hook", "account_filter")

    def __init__(
        self,
        *,
        images: Sequence[Any],
        dimensions: str = "SQUARE",
        state: str | None = None,
        notify_hook: str | None = None,
        bot_type: str | None = None,
        account_filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.images = images
        self.dimensions = dimensions
        self.state = state
        self.notify_hook = notify_hook
        self.bot_type = bot_type
        self.account_filter = account_filter

    def request_inputs(self) -> dict[str, Any]:
        return {"images": self.images, "dimensions": self.dimensions, "bot_type": self.bot_type,
                "account_filter": self.account_filter}

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.blend(
            self.images, dimensions=self.dimensions, state=self.state, notify_hook=self.notify_hook,
            bot_type=self.bot_type, account_filter=self.account_filter,
        )


class MidjourneyDescribeOperator(BaseMidjourneySubmitOperator):
    """Describe an image: four prompts that could have made it (``/mj/submit/describe``).

    Give exactly one of ``image`` and ``link``. The returned task dict carries ``prompts``: the
    four prompts as plain strings.

    :param image: the image: a data URL, a local path or bytes. Templated.
    :param link: an ``http(s)`` URL of the image, instead of ``image``. Templated.
    :param state: a tag (<= 255 chars) stored on the task. Templated.
    :param notify_hook: URL the server POSTs the task to on every change. Templated.
    :param bot_type: ``MID_JOURNEY`` (default) or ``NIJI_JOURNEY``.
    :param account_filter: ``{"modes": [...], "instanceId": ..., "remix": bool}``.
    """

    endpoint = "describe"
    template_fields: Sequence[str] = ("image", "link", "state", "notify_hook", "account_filter")

    def __init__(
        self,
        *,
        image: Any = None,
        link: str | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
        bot_type: str | None = None,
        account_filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (image is None) == (link is None):
            raise MidjourneyValidationError(
                "MidjourneyDescribeOperator takes exactly one of image (data URL, path or bytes) and link (a URL)."
            )
        self.image = image
        self.link = link
        self.state = state
        self.notify_hook = notify_hook
        self.bot_type = bot_type
        self.account_filter = account_filter

    def validate(self) -> None:
        if _given(self.image) == _given(self.link):
            raise MidjourneyValidationError(
                "MidjourneyDescribeOperator needs exactly one of image and link after templating; "
                f"got image={'<given>' if _given(self.image) else None}, link={self.link!r}."
            )

    def request_inputs(self) -> dict[str, Any]:
        return {"image": self.image, "link": self.link, "bot_type": self.bot_type,
                "account_filter": self.account_filter}

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.describe(
            image=self.image if _given(self.image) else None,
            link=self.link if _given(self.link) else None,
            state=self.state, notify_hook=self.notify_hook, bot_type=self.bot_type,
            account_filter=self.account_filter,
        )

    def extra_result(self, task: MidjourneyTask) -> dict[str, Any]:
        return {"prompts": task.describe_prompts()}


class MidjourneyModalOperator(BaseMidjourneySubmitOperator):
    """Complete a task waiting in status MODAL (``/mj/submit/modal``).

    A button such as ``Custom Zoom`` or ``Vary (Region)`` (or any remix) answers code 21 and
    leaves a MODAL task; this operator sends its input. :class:`MidjourneyActionOperator` does it
    itself when given ``modal_prompt``/``mask``; use this operator when the input comes later.

    :param mj_task_id: the MODAL task (the id in the ``MidjourneyModalRequiredError`` message, or
        the ``mj_task_id`` XCom of the action), or its task dict. Templated.
    :param prompt: the modal's prompt (Custom Zoom: ``"... --zoom 2"``; remix: the new prompt).
        Templated.
    :param mask: the Vary (Region) mask: data URL, local path or bytes. Templated.
    """

    endpoint = "modal"
    template_fields: Sequence[str] = ("mj_task_id", "prompt", "mask")

    def __init__(self, *, mj_task_id: Any, prompt: str | None = None, mask: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mj_task_id = mj_task_id
        self.prompt = prompt
        self.mask = mask

    def validate(self) -> None:
        self._modal_task_id = as_mj_task_id(self.mj_task_id)

    def request_inputs(self) -> dict[str, Any]:
        return {"mj_task_id": self._modal_task_id, "prompt": self.prompt, "mask": self.mask}

    def prompt_for_messages(self) -> str | None:
        return self.prompt

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.modal(
            self._modal_task_id,
            prompt=self.prompt if _given(self.prompt) else None,
            mask=self.mask if _given(self.mask) else None,
        )


class MidjourneyShortenOperator(BaseMidjourneySubmitOperator):
    """Analyse a prompt and propose shorter versions (``/mj/submit/shorten``).

    The returned task dict carries ``prompts``: the shortened prompts as plain strings.

    :param prompt: the prompt to shorten. Templated.
    :param state: a tag (<= 255 chars) stored on the task. Templated.
    :param notify_hook: URL the server POSTs the task to on every change. Templated.
    :param bot_type: ``MID_JOURNEY`` (default) or ``NIJI_JOURNEY``.
    :param account_filter: ``{"modes": [...], "instanceId": ..., "remix": bool}``.
    """

    endpoint = "shorten"
    template_fields: Sequence[str] = ("prompt", "state", "notify_hook", "account_filter")

    def __init__(
        self,
        *,
        prompt: str,
        state: str | None = None,
        notify_hook: str | None = None,
        bot_type: str | None = None,
        account_filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.state = state
        self.notify_hook = notify_hook
        self.bot_type = bot_type
        self.account_filter = account_filter

    def request_inputs(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "bot_type": self.bot_type, "account_filter": self.account_filter}

    def prompt_for_messages(self) -> str | None:
        return self.prompt

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.shorten(
            self.prompt, state=self.state, notify_hook=self.notify_hook, bot_type=self.bot_type,
            account_filter=self.account_filter,
        )

    def extra_result(self, task: MidjourneyTask) -> dict[str, Any]:
        return {"prompts": task.shortened_prompts()}


class MidjourneyListTasksOperator(BaseOperator):
    """Read several tasks in one request (``/mj/task/list-by-condition``).

    Returns a list of task dicts (``MidjourneyTask.to_dict()``); ids the server does not know are
    left out, and the order is the server's.

    :param mj_task_ids: the task ids, or task dicts (e.g. the outputs of mapped submit
        operators). Templated.
    :param midjourney_conn_id: the Airflow connection of the Midjourney API.
    """

    template_fields: Sequence[str] = ("mj_task_ids",)
    ui_color = "#e8f0fe"

    def __init__(self, *, mj_task_ids: Sequence[Any], midjourney_conn_id: str = "midjourney_default",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mj_task_ids = mj_task_ids
        self.midjourney_conn_id = midjourney_conn_id

    @cached_property
    def hook(self) -> MidjourneyHook:
        from airflow_provider_mj.hooks.midjourney import MidjourneyHook

        return MidjourneyHook(midjourney_conn_id=self.midjourney_conn_id)

    def execute(self, context: Context) -> list[dict[str, Any]]:
        given = self.mj_task_ids
        if isinstance(given, (str, dict, MidjourneyTask)):
            given = [given]
        if given is None:
            raise MidjourneyValidationError("mj_task_ids must be a list of task ids, e.g. ['1320098173412546'].")
        ids = [as_mj_task_id(item, field="mj_task_ids[]") for item in given]
        tasks = self.hook.list_tasks(ids)
        self.log.info("Read %d of %d Midjourney task(s)", len(tasks), len(ids))
        return [task.to_dict() for task in tasks]


class MidjourneyImageSeedOperator(BaseOperator):
    """Read the seed of a finished task's image (``/mj/task/{id}/image-seed``); returns it as a string.

    :param mj_task_id: the task: its id or its task dict. Templated.
    :param midjourney_conn_id: the Airflow connection of the Midjourney API.
    """

    template_fields: Sequence[str] = ("mj_task_id",)
    ui_color = "#e8f0fe"

    def __init__(self, *, mj_task_id: Any, midjourney_conn_id: str = "midjourney_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mj_task_id = mj_task_id
        self.midjourney_conn_id = midjourney_conn_id

    @cached_property
    def hook(self) -> MidjourneyHook:
        from airflow_provider_mj.hooks.midjourney import MidjourneyHook

        return MidjourneyHook(midjourney_conn_id=self.midjourney_conn_id)

    def execute(self, context: Context) -> str:
        mj_task_id = as_mj_task_id(self.mj_task_id)
        seed = self.hook.image_seed(mj_task_id)
        self.log.info("Seed of Midjourney task %s: %s", mj_task_id, seed)
        return seed
