"""Code 21 and the MODAL status: the two ways real servers bend them, handled in one place.

Code 21 means "a task was created in status MODAL; it waits for ``/mj/submit/modal``" (Custom
Zoom, Vary (Region), any remix). Two servers' habits blur that, and both are read here:

* novicezk's midjourney-proxy also answers 21 ("task already exists") when the same button of the
  same task is pressed again; the reply then names that earlier task, which is not MODAL.
  :func:`is_existing_task` tells such a reply and :func:`as_accepted` reads it as an accepted
  job (code 1) naming that task, so nobody waits for a modal that will never come (the hook
  applies both to every action).
* Relays rewrite 21 to 1 (all but Vary (Region) and Custom Zoom), so a button that can open a
  modal, answered with code 1, may still have left a MODAL task that would wait for input
  forever. :func:`may_hide_modal` says when to look, and :func:`waits_in_modal` looks, for a
  bounded time (the action operator does both before it waits for the job).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from airflow_provider_mj.exceptions import MidjourneyNotFoundError
from airflow_provider_mj.models import MidjourneyTask, SubmitResult, TaskStatus, can_open_modal

#: Longest time (seconds) to look for a MODAL task after a code-1 answer that may hide a code 21.
MODAL_PROBE_SECONDS = 30.0


def _with_code(result: SubmitResult, code: int) -> SubmitResult:
    return SubmitResult(code=code, description=result.description, mj_task_id=result.mj_task_id,
                        properties=result.properties)


def is_existing_task(result: SubmitResult, custom_id: str, enable_remix: bool | None) -> bool:
    """Whether a code-21 reply to an action is midjourney-proxy's "task already exists".

    It is when the button cannot open a modal (see :func:`~airflow_provider_mj.models.can_open_modal`)
    and the reply does not say the task is MODAL.
    """
    return bool(result.needs_modal and result.mj_task_id and not can_open_modal(custom_id, enable_remix)
                and str(result.properties.get("status") or "").upper() != "MODAL")


def as_accepted(result: SubmitResult) -> SubmitResult:
    """The same reply, read as the accepted job (code 1) it names: "task already exists" is that job."""
    return _with_code(result, SubmitResult.SUBMITTED)


def may_hide_modal(result: SubmitResult, custom_id: str, enable_remix: bool | None) -> bool:
    """Whether an accepted (code 1/22) action may be a MODAL task behind a relay's rewritten code."""
    return bool(result.mj_task_id) and not result.needs_modal and can_open_modal(custom_id, enable_remix)


def as_modal(result: SubmitResult) -> SubmitResult:
    """The same reply, read as the code 21 the relay rewrote away."""
    return _with_code(result, SubmitResult.MODAL)


def waits_in_modal(
    fetch_task: Callable[[str], MidjourneyTask],
    mj_task_id: str,
    *,
    within: float,
    poll_interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Whether a task accepted with code 1 actually waits in status MODAL.

    Its status tells: MODAL, or running/finished. A relay refreshes its view of a new job only
    every ~15 s, so NOT_START, an unknown status or "not found" are read again, for at most
    ``within`` seconds.

    :param fetch_task: reads the task (the hook's ``fetch_task``).
    :param mj_task_id: the task the action created.
    :param within: seconds to keep looking while the status says nothing yet.
    :param poll_interval: seconds between two reads.
    :param sleep: how to wait between reads.
    """
    give_up = time.monotonic() + within
    while True:
        try:
            task: MidjourneyTask | None = fetch_task(mj_task_id)
        except MidjourneyNotFoundError:
            task = None
        if task is not None:
            if task.status is TaskStatus.MODAL:
                return True
            if task.status not in (TaskStatus.NOT_START, TaskStatus.UNKNOWN):
                return False
        if time.monotonic() >= give_up:
            return False
        sleep(min(poll_interval, max(0.0, give_up - time.monotonic())))
