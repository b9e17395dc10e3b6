"""A sensor that waits for a Midjourney task someone else submitted."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowSensorTimeout

from airflow_provider_mj import visibility
from airflow_provider_mj.common import CUSTOM_IDS_XCOM_KEY, DEFAULT_CONN_ID
from airflow_provider_mj.exceptions import MidjourneyNotFoundError, MidjourneyTimeoutError
from airflow_provider_mj.inputs import as_mj_task_id
from airflow_provider_mj.lazy_hook import MidjourneyHookMixin
from airflow_provider_mj.links import MidjourneyImageLink, declare_image_url, push_image_url
from airflow_provider_mj.models import MidjourneyTask, TaskOutcome, task_outcome
from airflow_provider_mj.triggers.midjourney import MidjourneyTaskTrigger, task_failed_error, task_from_event

if TYPE_CHECKING:
    from airflow.sdk import Context


class MidjourneyTaskSensor(MidjourneyHookMixin, BaseSensorOperator):
    """Wait until a Midjourney task is finished; return it like the submit operators do.

    Works in ``poke`` and ``reschedule`` modes and deferred (``deferrable=True``, on the
    triggerer). The return value is the finished task dict (``MidjourneyTask.to_dict()``); the
    ``custom_ids`` XCom maps button labels to customIds. A task that ends in FAILURE or CANCEL
    fails the sensor with :class:`~airflow_provider_mj.exceptions.MidjourneyTaskFailedError`.

    :param mj_task_id: the task to wait for: its id, or a task dict (``mj_task_id=imagine.output``).
        Templated.
    :param midjourney_conn_id: the Airflow connection of the Midjourney API.
    :param deferrable: wait on the triggerer instead of a worker. Default:
        ``[operators] default_deferrable``.
    :param poke_interval: seconds between two polls (default 5).
    :param timeout: seconds before the sensor gives up (``AirflowSensorTimeout``); Airflow's
        sensor default (7 days) applies when not given.
    :param mode: ``poke`` (default) or ``reschedule``; ignored when deferrable.

    A task the server does not know is reported as :class:`~airflow_provider_mj.exceptions.MidjourneyNotFoundError`,
    but only once ``NOT_VISIBLE_GRACE_SECONDS`` (60 s, :mod:`~airflow_provider_mj.visibility`) have passed since the sensor started: relays
    show a job they just accepted only after their next refresh, so a sensor right behind a submit
    (``wait_for_completion=False``) may read "not found" at first.
    """

    template_fields: Sequence[str] = ("mj_task_id",)
    operator_extra_links = (MidjourneyImageLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        mj_task_id: Any,
        midjourney_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float | timedelta = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.mj_task_id = mj_task_id
        self.midjourney_conn_id = midjourney_conn_id
        self.deferrable = deferrable

    def _visible_by(self, context: Context) -> float:
        """Epoch seconds until which "no such task" means "not visible yet" (kept across reschedules)."""
        if getattr(self, "_visible_by_at", None) is None:
            started: float | None = None
            if self.reschedule:
                try:
                    first = context["ti"].get_first_reschedule_date(context)
                    started = first.timestamp() if first is not None else None
                except Exception:  # an older task SDK: count from this poke
                    started = None
            self._visible_by_at = visibility.visible_by(started or None)
        return self._visible_by_at

    def poke(self, context: Context) -> bool | PokeReturnValue:
        mj_task_id = as_mj_task_id(self.mj_task_id)
        visible_by = self._visible_by(context)
        sighting = getattr(self, "_sighting", None)
        if sighting is None or sighting.mj_task_id != mj_task_id:  # kept between pokes of one process
            sighting = self._sighting = visibility.TaskSighting(mj_task_id, visible_by)
        try:
            task = self.hook.fetch_task(mj_task_id)
        except MidjourneyNotFoundError as err:
            self.log.info("Midjourney task %s %s.", mj_task_id, sighting.missing(err))  # or raises
            return False
        sighting.seen(task)
        outcome = task_outcome(task)
        if outcome is TaskOutcome.FAILED:
            raise task_failed_error(task)
        if task.image_url and task.image_url != getattr(self, "_pushed_image_url", None):
            push_image_url(context["ti"], task.image_url)  # a preview while running: the link works now
            self._pushed_image_url = task.image_url
        if outcome is TaskOutcome.RUNNING:
            self.log.info("Midjourney task %s: %s %s", mj_task_id, task.raw_status, task.progress)
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._finish(context, task))

    def execute(self, context: Context) -> Any:
        declare_image_url(context["ti"])
        if not self.deferrable:
            return super().execute(context)
        # One poke first: a finished task needs no trigger.
        done = self.poke(context)
        if done:
            return done.xcom_value if isinstance(done, PokeReturnValue) else None
        self.defer(
            trigger=MidjourneyTaskTrigger(
                mj_task_id=as_mj_task_id(self.mj_task_id),
                midjourney_conn_id=self.midjourney_conn_id,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
                visible_by=self._visible_by(context),
            ),
            method_name="execute_complete",
            timeout=self.deferral_timeout(context),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: the finished task dict, or the error it reported."""
        try:
            task = task_from_event(event)
        except MidjourneyTimeoutError as err:
            raise AirflowSensorTimeout(str(err)) from err
        push_image_url(context["ti"], task.image_url)
        return self._finish(context, task)

    def _finish(self, context: Context, task: MidjourneyTask) -> dict[str, Any]:
        context["ti"].xcom_push(key=CUSTOM_IDS_XCOM_KEY, value=task.custom_ids())
        return task.to_dict()
