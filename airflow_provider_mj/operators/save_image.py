"""Save the image of a finished Midjourney task that an earlier task returned.

For DAGs whose submit tasks do not save themselves (``destination``), or that save a task made
elsewhere: ``MidjourneySaveImageOperator(mj_task=upscale.output, destination=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_mj.common import DEFAULT_CONN_ID, SAVED_URI_XCOM_KEY
from airflow_provider_mj.exceptions import MidjourneyValidationError
from airflow_provider_mj.inputs import validate_mj_task_id
from airflow_provider_mj.lazy_hook import MidjourneyHookMixin
from airflow_provider_mj.lineage import JobLineage, MidjourneyLineageMixin, task_dataset_name
from airflow_provider_mj.models import MidjourneyTask, TaskOutcome, TaskStatus, task_outcome
from airflow_provider_mj.operators.save import (
    button_of,
    check_destination,
    publish_saved,
    save_task_image,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class MidjourneySaveImageOperator(MidjourneyLineageMixin, MidjourneyHookMixin, BaseOperator):
    """Save the image of a finished Midjourney task to a local path or object storage.

    No job is submitted: saving again (a re-run, a retry) only downloads the image again and
    overwrites the same file atomically. Returns the task dict with ``saved_uri`` added; the
    XCom ``mj_saved_uri`` holds the URI; every asset outlet gets an event with the image's
    extras (see :func:`~airflow_provider_mj.operators.save.asset_extra`).

    :param mj_task: the task: its finished task dict (what a submit operator returned; used as
        is, no request) or its Midjourney task id (read from the server). Templated.
    :param destination: a local path or ``ObjectStoragePath`` URL, a folder (ending in ``/``) or a
        file name pattern (see :mod:`airflow_provider_mj.operators.save`). Templated.
    :param button: the button the task came from, for the file name and the extras (read from
        the task's customId when not given). Templated.
    :param midjourney_conn_id: the Airflow connection of the Midjourney API.
    """

    template_fields: Sequence[str] = ("mj_task", "destination", "button")
    ui_color = "#e8f0fe"

    def __init__(self, *, mj_task: Any, destination: Any, button: str | None = None,
                 midjourney_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mj_task = mj_task
        self.destination = destination
        self.button = button
        self.midjourney_conn_id = midjourney_conn_id

    def _task(self) -> MidjourneyTask:
        given = self.mj_task
        if isinstance(given, MidjourneyTask):
            task = given
        elif isinstance(given, Mapping):
            task = MidjourneyTask.from_api(dict(given))
            if not task.id:
                raise MidjourneyValidationError(
                    "mj_task is a dict without an 'id': pass the task dict a Midjourney operator returned, or its id."
                )
        else:
            task = MidjourneyTask(id=validate_mj_task_id(given, field="mj_task"), status=TaskStatus.UNKNOWN)
        if task_outcome(task) is TaskOutcome.SUCCEEDED and task.image_url:
            return task
        fetched = self.hook.fetch_task(task.id)
        if task_outcome(fetched) is not TaskOutcome.SUCCEEDED or not fetched.image_url:
            raise MidjourneyValidationError(
                f"Midjourney task {task.id} is {fetched.raw_status or fetched.status.value} and "
                f"{'has an image' if fetched.image_url else 'has no image'}: only a finished task's image "
                "can be saved (describe and shorten tasks make none).",
                mj_task_id=task.id,
            )
        return fetched

    def execute(self, context: Context) -> dict[str, Any]:
        destination = check_destination(self.destination)
        task = self._task()
        button = button_of(self.button, _custom_id_of(task))
        saved = save_task_image(self.hook, task, destination, button=button,
                                map_index=getattr(context["ti"], "map_index", None), log=self.log)
        context["ti"].xcom_push(key=SAVED_URI_XCOM_KEY, value=saved.uri)
        lineage = JobLineage()
        lineage.inputs.append(task_dataset_name(self.hook.config.base_url, task.id))
        lineage.facet = {"mj_task_id": task.id, "action": task.action or None, "prompt": task.prompt or None,
                         "state": task.state or None}
        self.lineage = lineage
        publish_saved(self, context, task, saved, button=button)
        result = task.to_dict()
        result["saved_uri"] = saved.uri
        return result


def _custom_id_of(task: MidjourneyTask) -> str | None:
    """The customId that made ``task``, when its server says (trueai keeps it in properties)."""
    value = task.properties.get("customId") if isinstance(task.properties, dict) else None
    return value if isinstance(value, str) else None
