"""What every submit operator shares: its options, its hook, and the flow submit -> remember -> wait.

Submit operators (imagine, action, blend, describe, modal, shorten) share one shape, the dbt Cloud
provider's: validate locally, submit through the hook, remember the job in the durable task state
(:mod:`~airflow_provider_mj.operators.job_state`) and push the ``mj_task_id`` XCom at once (before
any waiting), then either return, block on
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

import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf

from airflow_provider_mj.common import CUSTOM_IDS_XCOM_KEY, DEFAULT_CONN_ID, MJ_TASK_ID_XCOM_KEY
from airflow_provider_mj.exceptions import MidjourneyServerError, MidjourneyTimeoutError, MidjourneyValidationError
from airflow_provider_mj.lazy_hook import MidjourneyHookMixin
from airflow_provider_mj.links import MidjourneyImageLink, declare_image_url, push_image_url
from airflow_provider_mj.models import MidjourneyTask, SubmitResult, TaskOutcome, task_outcome
from airflow_provider_mj.operators.job_state import MidjourneyJobState, fingerprint
from airflow_provider_mj.operators.room import RoomWaitMixin
from airflow_provider_mj.triggers.midjourney import DEFAULT_MAX_WAIT, EVENT_MODAL, MidjourneyTaskTrigger, task_from_event

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Default deadline on a Midjourney job, in seconds (relays fail their own jobs after one hour).
DEFAULT_TIMEOUT = 3600.0


def given(value: Any) -> bool:
    """A parameter counts as given unless it is None or a blank string (a template may render '')."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    return True


_COMMON_PARAMS_DOC = """
    :param midjourney_conn_id: the Airflow connection of the Midjourney API
        (default ``midjourney_default``).
    :param wait_for_completion: wait until the Midjourney job is finished (default). The return
        value is then the finished task dict; with False it is the ``mj_task_id`` string and the
        task ends as soon as the job is accepted.
    :param deferrable: wait on the triggerer (frees the worker slot) instead of blocking the
        worker. Default: ``[operators] default_deferrable``.
    :param poll_interval: seconds between two polls of the job (default 5).
    :param timeout: seconds the Midjourney job may take, counted from its first submit (default
        3600). The deadline is fixed once, before the first submit, as an absolute time, and holds
        in both wait modes and across deferral. While the account is full (the server refuses the
        submit: queue full, HTTP 429 or 503) the task waits for room and submits again within this
        deadline, whatever the connection's ``max_retries``, on the triggerer when deferrable (see
        :mod:`~airflow_provider_mj.operators.room`). Past it the task fails with
        ``MidjourneyTimeoutError`` (retried by Airflow's ``retries``; a retry re-attaches to the same job with a fresh
        ``timeout``). None: 24 hours.
    :param durable: re-attach to the job an earlier try of this task instance submitted (Airflow's
        ``task_state_store``) instead of submitting again (default True). See
        :class:`~airflow_provider_mj.operators.job_state.MidjourneyJobState`.
"""


#: Parameters of the operators whose job the server tags and reports on (action and the new jobs).
_TRACKED_PARAMS_DOC = """
    :param state: a tag (<= 255 chars) stored on the task and echoed back. Templated.
    :param notify_hook: URL the server POSTs the task to on every change. Templated.
"""


#: Parameters of the operators that start a new job (imagine, blend, describe, shorten).
_NEW_JOB_PARAMS_DOC = """
    :param bot_type: ``MID_JOURNEY`` (default) or ``NIJI_JOURNEY``.
    :param account_filter: ``{"modes": ["FAST"|"RELAX"|"TURBO"], "instanceId": ..., "remix": bool}``.
"""


class BaseMidjourneySubmitOperator(RoomWaitMixin, MidjourneyHookMixin, BaseOperator):
    """Common behaviour of the submit operators: submit, remember, then wait or defer.

    Subclasses implement :meth:`submit` (one call to the hook) and :meth:`request_inputs`, and
    may override :meth:`validate`, :meth:`extra_result`, :meth:`resume` and
    :meth:`prompt_for_messages`. Every submit operator takes these parameters:
    """

    __doc__ = (__doc__ or "").rstrip() + "\n" + _COMMON_PARAMS_DOC

    #: The parameter docs a subclass inherits from its bases (appended to its own docstring).
    inherited_params_doc: str = _COMMON_PARAMS_DOC

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The reference docs are built from each operator's docstring: give every operator the
        # full list of its parameters without hand-kept copies of the ones its bases define.
        if cls.__doc__ and ":param midjourney_conn_id:" not in cls.__doc__:
            cls.__doc__ = cls.__doc__.rstrip() + "\n" + cls.inherited_params_doc

    operator_extra_links = (MidjourneyImageLink(),)
    ui_color = "#e8f0fe"

    #: Shown in the logs and in error messages.
    endpoint: str = ""

    def __init__(
        self,
        *,
        midjourney_conn_id: str = DEFAULT_CONN_ID,
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

    def _prepare(self, context: Context) -> None:
        self.validate()
        self._request = fingerprint({"endpoint": self.endpoint, **self.request_inputs()})
        self._job_state = MidjourneyJobState(context, self.log, enabled=self.durable)

    def execute(self, context: Context) -> Any:
        declare_image_url(context["ti"])
        self._prepare(context)
        # The job's deadline is fixed once, before the first submit: waiting for room on a full
        # account (operators/room.py) and running the job share it.
        deadline = time.time() + (self.timeout if self.timeout is not None else DEFAULT_MAX_WAIT)
        done, value = self.begin_when_room(context, deadline)
        if done:
            return value
        return self._wait(context, value, deadline)

    def _begin(self, context: Context) -> tuple[bool, Any]:
        """Re-attach to the job of an earlier try, or submit: ``(True, result)`` when nothing is
        left to wait for, else ``(False, mj_task_id)``. A refused submit raises (see operators/room.py).
        """
        earlier = self._job_state.recall(self.hook, self._request)
        if earlier is not None:
            context["ti"].xcom_push(key=MJ_TASK_ID_XCOM_KEY, value=earlier.id)
            push_image_url(context["ti"], earlier.image_url)
            mj_task_id = self.resume(context, earlier)
            if mj_task_id == earlier.id and task_outcome(earlier) is TaskOutcome.SUCCEEDED:
                return True, (self._finish(context, earlier) if self.wait_for_completion else earlier.id)
            return False, mj_task_id
        result = self.submit(context)
        if not result.mj_task_id:
            # Only a button that creates no task (Favorite) gets here: the hook raises
            # MidjourneySubmitUncertainError for any other accepted submit that names no task.
            self.log.info("Midjourney accepted the %s request (code %s); it created no task.",
                          self.endpoint, result.code)
            return True, None
        mj_task_id = result.mj_task_id
        self.accepted(context, mj_task_id)
        if result.queued:
            self.log.info("Midjourney task %s is queued (%s ahead of it)", mj_task_id,
                          result.number_of_queues if result.number_of_queues is not None else "?")
        self.log.info("Submitted Midjourney %s job: mj_task_id=%s", self.endpoint, mj_task_id)
        return False, mj_task_id

    def _wait(self, context: Context, mj_task_id: str, deadline: float) -> Any:
        """Wait for an accepted job (or defer on the triggerer), unless ``wait_for_completion`` is off."""
        if not self.wait_for_completion:
            return mj_task_id
        if self.deferrable:
            self._defer(context, mj_task_id, deadline)
        shown: list[str] = []

        def show_preview(task: MidjourneyTask) -> None:
            # The "Midjourney image" link follows the job: the preview while it runs.
            if task.image_url and task.image_url not in shown:
                shown.append(task.image_url)
                push_image_url(context["ti"], task.image_url)

        task = self.hook.wait_for_task(mj_task_id, poll_interval=self.poll_interval, deadline=deadline,
                                       visible_by=self._job_state.visible_by, on_progress=show_preview)
        return self._finish(context, task)

    def _defer(self, context: Context, mj_task_id: str, deadline: float) -> None:
        # The "not visible yet" grace of the job accepted last (by this try, or by the one the
        # task state recalled), whichever way the wait came here.
        self.defer(
            trigger=MidjourneyTaskTrigger(
                mj_task_id=mj_task_id,
                midjourney_conn_id=self.midjourney_conn_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
                prompt=self.prompt_for_messages(),
                visible_by=self._job_state.visible_by,
                modal_ends_wait=self.modal_may_be_hidden,
            ),
            method_name="execute_complete",
            timeout=self.deferral_timeout(context),
        )

    #: Set by :meth:`submit` when the reply may hide a MODAL task: the trigger then looks for it.
    modal_may_be_hidden: bool = False

    def complete_modal(self, context: Context, task: MidjourneyTask) -> str:
        """The trigger found ``task`` waiting in MODAL: send its input; return the id to wait for."""
        raise MidjourneyServerError(f"Midjourney task {task.id} waits in MODAL, which {self.endpoint} never opens",
                                    mj_task_id=task.id)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: the finished task dict, or the error it reported."""
        if isinstance(event, dict) and event.get("status") == EVENT_MODAL:
            # The triggerer's first polls found the MODAL task a relay's code 1 hid: complete it and
            # wait again, on the triggerer, to the same deadline.
            task = task_from_event(event)
            self._prepare(context)
            mj_task_id = self.complete_modal(context, task)
            deadline = event.get("deadline") or time.time() + (self.timeout or DEFAULT_MAX_WAIT)
            self._defer(context, mj_task_id, float(deadline))
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


class BaseMidjourneyTrackedOperator(BaseMidjourneySubmitOperator):
    """A submit whose job the server tags with ``state`` and reports to ``notify_hook``: action and
    the new-job operators (modal, which completes a job, takes neither).

    These operators take, besides their own parameters:
    """

    inherited_params_doc = _TRACKED_PARAMS_DOC + _COMMON_PARAMS_DOC

    def __init__(self, *, state: str | None = None, notify_hook: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.notify_hook = notify_hook


class BaseMidjourneyNewJobOperator(BaseMidjourneyTrackedOperator):
    """A submit that starts a new job on the account: imagine, blend, describe and shorten.

    These operators take, besides their own parameters:
    """

    inherited_params_doc = _TRACKED_PARAMS_DOC + _NEW_JOB_PARAMS_DOC + _COMMON_PARAMS_DOC

    def __init__(self, *, bot_type: str | None = None, account_filter: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bot_type = bot_type
        self.account_filter = account_filter

    def job_options(self) -> dict[str, Any]:
        """The options as the hook's submit methods take them."""
        return {"state": self.state, "notify_hook": self.notify_hook, "bot_type": self.bot_type,
                "account_filter": self.account_filter}

    def account_inputs(self) -> dict[str, Any]:
        """The options that change which job is made (``state`` and ``notify_hook`` do not)."""
        return {"bot_type": self.bot_type, "account_filter": self.account_filter}
