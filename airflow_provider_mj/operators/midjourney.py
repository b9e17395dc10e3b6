"""One operator per route of the Midjourney task API.

The submit operators (imagine, action, blend, describe, modal, shorten) share their options and
their flow (submit, remember, wait or defer) through
:class:`~airflow_provider_mj.operators.base.BaseMidjourneySubmitOperator`; its docstring lists
the XComs they push. The read operators (list-by-condition, image-seed) return what the server
answered. Each class here only says what its endpoint needs.

The hook is imported lazily: DAG files import this module, and parsing must stay cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_mj import code21, inputs
from airflow_provider_mj.common import DEFAULT_CONN_ID
from airflow_provider_mj.exceptions import MidjourneyModalRequiredError, MidjourneyValidationError
from airflow_provider_mj.inputs import as_mj_task_id
from airflow_provider_mj.lazy_hook import MidjourneyHookMixin
from airflow_provider_mj.lineage import MidjourneyLineageMixin
from airflow_provider_mj.models import MidjourneyTask, SubmitResult, TaskOutcome, TaskStatus, task_outcome
from airflow_provider_mj.operators.base import (
    BaseMidjourneyNewJobOperator,
    BaseMidjourneySubmitOperator,
    BaseMidjourneyTrackedOperator,
    given,
)
from airflow_provider_mj.operators.save import ImageSavingMixin, button_of

# Names this module held before the operators were split by role; DAGs and tests import them here.
from airflow_provider_mj.common import CUSTOM_IDS_XCOM_KEY, MJ_TASK_ID_XCOM_KEY  # noqa: E402,F401,I001
from airflow_provider_mj.operators.base import DEFAULT_TIMEOUT  # noqa: F401
from airflow_provider_mj.operators.job_state import MidjourneyJobState  # noqa: F401

if TYPE_CHECKING:
    from airflow.sdk import Context


class MidjourneyImagineOperator(ImageSavingMixin, BaseMidjourneyNewJobOperator):
    """Generate a 2x2 grid of images from a prompt (``/mj/submit/imagine``).

    The finished task's buttons (``U1``..``U4``, ``V1``..``V4``, ``reroll``) feed
    :class:`MidjourneyActionOperator`.

    :param prompt: the prompt, Midjourney parameters included (``"a cat --ar 3:2 --v 6.1"``).
        Templated; map over it with ``.expand(prompt=[...])``.
    :param images: optional reference images (up to 5): data URLs, local paths or bytes. Templated.
    """

    endpoint = "imagine"
    template_fields: Sequence[str] = ("prompt", "images", "state", "notify_hook", "account_filter", "destination")

    def __init__(self, *, prompt: str, images: Sequence[Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.images = images

    def request_inputs(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "images": self.images, **self.account_inputs()}

    def prompt_for_messages(self) -> str | None:
        return self.prompt

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.imagine(self.prompt, images=self.images or None, **self.job_options())


class MidjourneyActionOperator(ImageSavingMixin, BaseMidjourneyTrackedOperator):
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
    """

    endpoint = "action"
    template_fields: Sequence[str] = (
        "mj_task_id", "button", "custom_id", "modal_prompt", "mask", "state", "notify_hook", "destination",
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

    def validate(self) -> None:
        has_button, has_custom_id = given(self.button), given(self.custom_id)
        if has_button == has_custom_id:
            raise MidjourneyValidationError(
                "MidjourneyActionOperator needs exactly one of button and custom_id after templating; "
                f"got button={self.button!r}, custom_id={self.custom_id!r}."
            )
        self._parent_id = as_mj_task_id(self.mj_task_id)

    def pressed_button(self) -> str | None:
        return button_of(self.button, self.custom_id)

    def lineage_parent(self) -> str | None:
        return as_mj_task_id(self.mj_task_id)  # not _parent_id: a deferred task resumes without validate()

    def request_inputs(self) -> dict[str, Any]:
        return {"parent": self._parent_id, "button": self.button, "custom_id": self.custom_id,
                "modal_prompt": self.modal_prompt, "mask": self.mask, "enable_remix": self.enable_remix}

    def _parent_task(self) -> MidjourneyTask:
        """The parent task, finished: reuse the upstream task dict when it is one, else fetch it."""
        upstream = self.mj_task_id
        if isinstance(upstream, dict) and upstream.get("buttons"):
            parent = MidjourneyTask.from_api(upstream)
            if task_outcome(parent) is TaskOutcome.SUCCEEDED:
                return parent
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
        if given(self.custom_id):
            return str(self.custom_id).strip()
        custom_id = self.hook.resolve_button(self._parent_task(), str(self.button).strip())
        self.log.info("Button %r of task %s is customId %s", self.button, self._parent_id, custom_id)
        return custom_id

    def _has_modal_input(self) -> bool:
        return given(self.modal_prompt) or given(self.mask)

    def _complete_modal(self, modal_task_id: str) -> SubmitResult:
        what = f"button {self.button!r}" if given(self.button) else f"customId {self.custom_id!r}"
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
            prompt=self.modal_prompt if given(self.modal_prompt) else None,
            mask=self.mask if given(self.mask) else None,
        )

    #: Longest time (seconds) to look for a MODAL task after a code-1 answer that may hide a code 21.
    MODAL_PROBE_SECONDS = code21.MODAL_PROBE_SECONDS

    def submit(self, context: Context) -> SubmitResult:
        custom_id = self._custom_id()
        result = self.hook.action(
            self._parent_id, custom_id, enable_remix=self.enable_remix,
            choose_same_channel=self.choose_same_channel, state=self.state, notify_hook=self.notify_hook,
        )
        if code21.may_hide_modal(result, custom_id, self.enable_remix) and self._waits_in_modal(result.mj_task_id):
            self.log.info("Midjourney answered code %s, but task %s waits in MODAL (a relay rewrote code 21).",
                          result.code, result.mj_task_id)
            result = code21.as_modal(result)
        if not result.needs_modal:  # a code 21 always names its MODAL task (the hook sees to it)
            return result
        # The MODAL task exists and is billed once completed: publish and remember it first.
        self.accepted(context, result.mj_task_id)
        return self._complete_modal(result.mj_task_id)

    def complete_modal(self, context: Context, task: MidjourneyTask) -> str:
        self.log.info("Midjourney task %s waits in MODAL (a relay rewrote code 21).", task.id)
        return self.resume(context, task)

    def _waits_in_modal(self, mj_task_id: str) -> bool:
        """Whether a task whose status says nothing yet waits in MODAL, without blocking a
        deferrable task: there the trigger's polls tell MODAL from a running job (and end the wait
        on MODAL: ``execute_complete`` then sends the input); a blocking task looks, for a bounded time.
        """
        if self.deferrable and self.wait_for_completion:
            self.modal_may_be_hidden = True
            return False
        return code21.waits_in_modal(
            self.hook.fetch_task, mj_task_id,
            within=min(self.MODAL_PROBE_SECONDS, self.timeout or self.MODAL_PROBE_SECONDS),
            poll_interval=self.poll_interval,
        )

    def resume(self, context: Context, task: MidjourneyTask) -> str:
        # The remembered job may be the MODAL task whose input was never sent (the try died, or
        # the modal submit was refused and is being tried again). A job not visible yet, or not
        # started, may still be that MODAL task: look before waiting on it, as after a submit.
        if task.raw_status.upper() != "MODAL" and not (
            task.status in (TaskStatus.NOT_START, TaskStatus.UNKNOWN) and self._waits_in_modal(task.id)
        ):
            return task.id
        mj_task_id = self._complete_modal(task.id).mj_task_id
        self.accepted(context, mj_task_id)
        return mj_task_id


class MidjourneyBlendOperator(ImageSavingMixin, BaseMidjourneyNewJobOperator):
    """Blend 2 to 5 images into a new 2x2 grid (``/mj/submit/blend``).

    :param images: 2 to 5 images: data URLs (``data:image/png;base64,...``), local paths or bytes.
        Checked locally before any request. Templated.
    :param dimensions: ``SQUARE`` (1:1, default), ``PORTRAIT`` (2:3) or ``LANDSCAPE`` (3:2).
    """

    endpoint = "blend"
    template_fields: Sequence[str] = ("images", "dimensions", "state", "notify_hook", "account_filter",
                                      "destination")

    def __init__(self, *, images: Sequence[Any], dimensions: str = "SQUARE", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.images = images
        self.dimensions = dimensions

    def validate(self) -> None:
        # Before anything else, the retry's re-attach lookup included: 2 to 5 images.
        inputs.check_image_count(self.images, min_count=inputs.MIN_BLEND_IMAGES, max_count=inputs.MAX_BLEND_IMAGES)

    def request_inputs(self) -> dict[str, Any]:
        return {"images": self.images, "dimensions": self.dimensions, **self.account_inputs()}

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.blend(self.images, dimensions=self.dimensions, **self.job_options())


class MidjourneyDescribeOperator(MidjourneyLineageMixin, BaseMidjourneyNewJobOperator):
    """Describe an image: four prompts that could have made it (``/mj/submit/describe``).

    Give exactly one of ``image`` and ``link``. The returned task dict carries ``prompts``: the
    four prompts as plain strings.

    :param image: the image: a data URL, a local path or bytes. Templated.
    :param link: an ``http(s)`` URL of the image, instead of ``image``. Templated.
    """

    endpoint = "describe"
    template_fields: Sequence[str] = ("image", "link", "state", "notify_hook", "account_filter")

    def __init__(self, *, image: Any = None, link: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if (image is None) == (link is None):
            raise MidjourneyValidationError(
                "MidjourneyDescribeOperator takes exactly one of image (data URL, path or bytes) and link (a URL)."
            )
        self.image = image
        self.link = link

    def validate(self) -> None:
        if given(self.image) == given(self.link):
            raise MidjourneyValidationError(
                "MidjourneyDescribeOperator needs exactly one of image and link after templating; "
                f"got image={'<given>' if given(self.image) else None}, link={self.link!r}."
            )

    def request_inputs(self) -> dict[str, Any]:
        return {"image": self.image, "link": self.link, **self.account_inputs()}

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.describe(
            image=self.image if given(self.image) else None,
            link=self.link if given(self.link) else None,
            **self.job_options(),
        )

    def extra_result(self, task: MidjourneyTask) -> dict[str, Any]:
        return {"prompts": task.describe_prompts()}


class MidjourneyModalOperator(MidjourneyLineageMixin, BaseMidjourneySubmitOperator):
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

    def lineage_parent(self) -> str | None:
        return as_mj_task_id(self.mj_task_id)

    def request_inputs(self) -> dict[str, Any]:
        return {"mj_task_id": self._modal_task_id, "prompt": self.prompt, "mask": self.mask}

    def prompt_for_messages(self) -> str | None:
        return self.prompt

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.modal(
            self._modal_task_id,
            prompt=self.prompt if given(self.prompt) else None,
            mask=self.mask if given(self.mask) else None,
        )


class MidjourneyShortenOperator(MidjourneyLineageMixin, BaseMidjourneyNewJobOperator):
    """Analyse a prompt and propose shorter versions (``/mj/submit/shorten``).

    The returned task dict carries ``prompts``: the shortened prompts as plain strings.

    :param prompt: the prompt to shorten. Templated.
    """

    endpoint = "shorten"
    template_fields: Sequence[str] = ("prompt", "state", "notify_hook", "account_filter")

    def __init__(self, *, prompt: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt

    def request_inputs(self) -> dict[str, Any]:
        return {"prompt": self.prompt, **self.account_inputs()}

    def prompt_for_messages(self) -> str | None:
        return self.prompt

    def submit(self, context: Context) -> SubmitResult:
        return self.hook.shorten(self.prompt, **self.job_options())

    def extra_result(self, task: MidjourneyTask) -> dict[str, Any]:
        return {"prompts": task.shortened_prompts()}


class MidjourneyListTasksOperator(MidjourneyHookMixin, BaseOperator):
    """Read several tasks in one request (``/mj/task/list-by-condition``).

    Returns a list of task dicts (``MidjourneyTask.to_dict()``) in the order of ``mj_task_ids``
    (servers answer in any order; the hook puts them back in yours); ids the server does not know
    are left out.

    :param mj_task_ids: the task ids, or task dicts (e.g. the outputs of mapped submit
        operators). Templated.
    :param midjourney_conn_id: the Airflow connection of the Midjourney API.
    """

    template_fields: Sequence[str] = ("mj_task_ids",)
    ui_color = "#e8f0fe"

    def __init__(self, *, mj_task_ids: Sequence[Any], midjourney_conn_id: str = DEFAULT_CONN_ID,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mj_task_ids = mj_task_ids
        self.midjourney_conn_id = midjourney_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        ids_given = self.mj_task_ids
        if isinstance(ids_given, (str, dict, MidjourneyTask)):
            ids_given = [ids_given]
        if ids_given is None:
            raise MidjourneyValidationError("mj_task_ids must be a list of task ids, e.g. ['1320098173412546'].")
        ids = [as_mj_task_id(item, field="mj_task_ids[]") for item in ids_given]
        tasks = self.hook.list_tasks(ids)
        self.log.info("Read %d of %d Midjourney task(s)", len(tasks), len(ids))
        return [task.to_dict() for task in tasks]


class MidjourneyImageSeedOperator(MidjourneyHookMixin, BaseOperator):
    """Read the seed of a finished task's image (``/mj/task/{id}/image-seed``); returns it as a string.

    :param mj_task_id: the task: its id or its task dict. Templated.
    :param midjourney_conn_id: the Airflow connection of the Midjourney API.
    """

    template_fields: Sequence[str] = ("mj_task_id",)
    ui_color = "#e8f0fe"

    def __init__(self, *, mj_task_id: Any, midjourney_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mj_task_id = mj_task_id
        self.midjourney_conn_id = midjourney_conn_id

    def execute(self, context: Context) -> str:
        mj_task_id = as_mj_task_id(self.mj_task_id)
        seed = self.hook.image_seed(mj_task_id)
        self.log.info("Seed of Midjourney task %s: %s", mj_task_id, seed)
        return seed
