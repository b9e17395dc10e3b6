"""The "Midjourney image" button on a task instance in the Airflow UI.

How the URL gets to the UI in Airflow 3: the API server never runs provider code for links; it
reads the XCom ``_link_MidjourneyImageLink`` of the task instance. The worker writes that XCom at
the end of every try (``finalize`` calls :meth:`MidjourneyImageLink.get_link`, which reads the
XCom ``mj_image_url``), and our operators also write both keys as soon as they learn an image URL
(a preview while the job runs, the final image when it is done), so the button works while the
task is still running and after.

Every try starts by creating ``mj_image_url`` empty (:func:`declare_image_url`): at the end of a
try that has no image yet (a deferral, an early failure) the link's lookup then finds the empty
value instead of a missing XCom, which Airflow's client logs as ``[error] XCom not found`` though
nothing went wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from airflow_provider_mj.common import IMAGE_URL_XCOM_KEY

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class MidjourneyImageLink(BaseOperatorLink):
    """Opens the image of the Midjourney task a task instance submitted or waited for."""

    name = "Midjourney image"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(ti_key=ti_key, key=IMAGE_URL_XCOM_KEY)
        return str(url) if url else ""


def declare_image_url(ti: Any) -> None:
    """Create the ``mj_image_url`` XCom, empty, at the start of a try (see the module docstring)."""
    ti.xcom_push(key=IMAGE_URL_XCOM_KEY, value="")


def push_image_url(ti: Any, url: str | None) -> None:
    """Publish ``url`` for the link: the plain XCom and the one the API server reads."""
    if not url:
        return
    ti.xcom_push(key=IMAGE_URL_XCOM_KEY, value=url)
    ti.xcom_push(key=MidjourneyImageLink().xcom_key, value=url)
