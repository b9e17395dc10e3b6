"""The Midjourney hook: every endpoint of a Midjourney task API server, as one method each.

:class:`MidjourneyHook` speaks the ``/mj/...`` protocol of midjourney-proxy servers and of the
relays that resell them (new-api style gateways such as Crazyrouter). This module holds only the
API methods: submits, reads, waiting, buttons and downloads. What they stand on lives next to it:

* :mod:`~airflow_provider_mj.hooks.connection`: the connection and its checked config;
* :mod:`~airflow_provider_mj.hooks.transport`: the HTTP sessions and sending, sync and async;
* :mod:`~airflow_provider_mj.hooks.redirects`: the key stays on the connection's origin;
* :mod:`~airflow_provider_mj.hooks.deadlines`: the connection's timeout bounds a whole request;
* :mod:`~airflow_provider_mj.hooks.retries`: the retry policy (read its docstring for which
  failures are retried, and why a submit is retried only when the server cannot have taken it);
* :mod:`~airflow_provider_mj.hooks.replies`: reading replies of both server dialects;
* :mod:`~airflow_provider_mj.hooks.errors`: what a code means, and the error a user reads;
* :mod:`~airflow_provider_mj.hooks.downloads`: image downloads (which URL, streaming, sync and async);
* :mod:`~airflow_provider_mj.hooks.storage`: atomic writes of downloaded images (:class:`SavedImage`).

The names those modules export are importable from here as well, as they always were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

from airflow_provider_mj import code21, inputs
from airflow_provider_mj.common import CONN_TYPE, DEFAULT_CONN_ID
from airflow_provider_mj.exceptions import (
    MidjourneyButtonNotFoundError,
    MidjourneyError,
    MidjourneyNotFoundError,
    MidjourneyTaskFailedError,
    MidjourneyTimeoutError,
    MidjourneyValidationError,
)
from airflow_provider_mj.hooks import downloads
from airflow_provider_mj.hooks.connection import MidjourneyConnectionConfig, parse_connection
from airflow_provider_mj.hooks.errors import RequestContext, uncertain_error
from airflow_provider_mj.hooks.replies import TaskReading, interpret_response, parse_retry_after
from airflow_provider_mj.hooks.retries import short_reason
from airflow_provider_mj.hooks.storage import SavedImage
from airflow_provider_mj.hooks.transport import MidjourneyBaseHook, async_session_count
from airflow_provider_mj.models import MidjourneyTask, SubmitResult, TaskOutcome, button_creates_task, task_outcome
from airflow_provider_mj.visibility import TaskSighting

#: The task id :meth:`MidjourneyHook.test_connection` fetches: one no server has.
PROBE_TASK_ID = "0000000000000000"

#: Submit routes, by hook method.
SUBMIT_ROUTES: dict[str, str] = {
    "imagine": "submit/imagine",
    "action": "submit/action",
    "blend": "submit/blend",
    "describe": "submit/describe",
    "modal": "submit/modal",
    "shorten": "submit/shorten",
}


def _clean_body(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


class JobOptions(TypedDict, total=False):
    """The options of every submit that starts a new job: ``imagine``, ``blend``, ``describe``, ``shorten``.

    Each is optional and checked locally before any request:

    * ``state``: a tag (<= 255 characters) the server echoes on the task; set it to find the job
      again if a reply is ever lost;
    * ``notify_hook``: an http(s) URL the server POSTs the task to on every change (relays may
      ignore it);
    * ``bot_type``: ``"MID_JOURNEY"`` (default) or ``"NIJI_JOURNEY"``;
    * ``account_filter``: ``{"modes": ["FAST"], "instanceId": ..., "remix": bool}``.
    """

    state: str | None
    notify_hook: str | None
    bot_type: str | None
    account_filter: dict[str, Any] | None


def _job_fields(*, state: str | None = None, notify_hook: str | None = None, bot_type: str | None = None,
                account_filter: Any = None) -> dict[str, Any]:
    """The request fields of :class:`JobOptions` (``action`` takes only the first two), validated."""
    return {
        "state": inputs.validate_state(state),
        "notifyHook": inputs.validate_notify_hook(notify_hook),
        "botType": inputs.validate_bot_type(bot_type),
        "accountFilter": inputs.validate_account_filter(account_filter),
    }


class MidjourneyHook(MidjourneyBaseHook):
    """Talk to a Midjourney task API server (a relay such as Crazyrouter, or a midjourney-proxy).

    The hook reads the Airflow connection lazily, on the first call, so constructing it at DAG
    parse time costs nothing. Every call validates its inputs locally before any request; every
    outcome other than success raises a :class:`~airflow_provider_mj.exceptions.MidjourneyError`
    subclass whose message says what to do next. Retries follow the policy in the docstring of
    :mod:`~airflow_provider_mj.hooks.retries`. The hook is a context manager (``with`` closes
    its HTTP session; ``async with`` releases its share of the event loop's aiohttp session).

    :param midjourney_conn_id: the Airflow connection of type ``midjourney`` to use.
    """

    conn_name_attr = "midjourney_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Midjourney"

    def test_connection(self) -> tuple[bool, str]:
        """Check the base URL and the API key (the UI's "Test" button); creates no job.

        Fetches a task id no server has: ``fetch`` is the one route every server has (not all have
        ``list-by-condition``), and every server answers an unknown id in a known way (``null``,
        HTTP 204, code 3, or a relay's ``task_not_found``). A bare HTTP 404 without such a code is
        a wrong Base URL (no ``/mj`` routes there), a 401/403 a wrong key or auth style.
        """
        route = self._fetch_route(PROBE_TASK_ID)
        try:
            self._call("GET", route, "task", mj_task_id=PROBE_TASK_ID)
        except MidjourneyNotFoundError as err:
            if err.http_status == 404 and err.code != 3:
                return False, (
                    f"GET /mj/{route} answered HTTP 404 without a Midjourney error code: there is no Midjourney "
                    f"API at {self.config.base_url}. Check the Base URL (the server's host, with or without /mj) "
                    "and speed_mode."
                )
        except MidjourneyError as err:
            return False, str(err)
        return True, "Connection to the Midjourney API succeeded (the key was accepted; no job was created)."

    # -- sync transport -------------------------------------------------------------------------

    def _submit(self, endpoint: str, body: dict[str, Any], *, mj_task_id: str | None = None,
                prompt: str | None = None, creates_task: bool = True) -> SubmitResult:
        route = SUBMIT_ROUTES[endpoint]
        result = self._call("POST", route, "submit", json_body=_clean_body(body), mj_task_id=mj_task_id,
                            prompt=prompt)
        if not result.mj_task_id and (creates_task or result.needs_modal):
            # "Accepted" without naming the task: the job may exist (and be billed), but there is
            # nothing to wait for. Success would hide it and a retry could pay for it twice.
            ctx = RequestContext(kind="submit", route=route, conn_id=self.midjourney_conn_id,
                                 mj_task_id=mj_task_id, prompt=prompt)
            raise uncertain_error(ctx, f"the server answered code {result.code} but named no task id (result "
                                       "is empty)", code=result.code, description=result.description)
        self.log.info(
            "Midjourney %s accepted: code %s, mj_task_id %s%s.", endpoint, result.code, result.mj_task_id,
            f", {result.number_of_queues} in queue" if result.queued and result.number_of_queues is not None else "",
        )
        return result

    def imagine(self, prompt: str, *, images: Iterable[Any] | None = None,
                **options: Unpack[JobOptions]) -> SubmitResult:
        """Submit an imagine job (``/mj/submit/imagine``): text, optionally with reference images.

        :param prompt: the prompt, with any Midjourney parameters (``"a red fox --ar 3:2 --v 6.1"``).
        :param images: reference images (``base64Array``): data URLs, local file paths or bytes.
        :param options: the :class:`JobOptions` (``state``, ``notify_hook``, ``bot_type``, ``account_filter``).
        :return: the accepted job (code 1, 21 or 22); ``mj_task_id`` is the new task.
        """
        prompt = inputs.validate_prompt(prompt)
        body = {"prompt": prompt, **_job_fields(**options)}
        if images is not None:
            urls = inputs.to_data_urls(images, field="images")
            if urls:
                body["base64Array"] = urls
        return self._submit("imagine", body, prompt=prompt)

    def action(
        self,
        mj_task_id: str,
        custom_id: str,
        *,
        enable_remix: bool | None = None,
        choose_same_channel: bool | None = None,
        state: str | None = None,
        notify_hook: str | None = None,
    ) -> SubmitResult:
        """Press a button of a finished task (``/mj/submit/action``): upscale, vary, zoom, pan...

        :param mj_task_id: the parent task (it must have succeeded).
        :param custom_id: the button's customId from the parent's ``buttons``. A label such as
            ``"U1"`` or ``"Zoom Out 2x"`` is accepted too: it is resolved with
            :meth:`resolve_button` (one fetch of the parent).
        :param enable_remix: ask for remix mode (variation, reroll and pan then answer code 21 and
            wait for :meth:`modal`).
        :param choose_same_channel: run on the same Discord channel as the parent (trueai servers).
        :param state: a tag (<= 255 characters) the server echoes on the task.
        :param notify_hook: an http(s) callback URL (optional).
        :return: the accepted job; ``needs_modal`` is True for code 21 (call :meth:`modal`). A code
            21 for a button that cannot open a modal is midjourney-proxy's "task already exists":
            it is returned as an accepted job (code 1) naming that existing task.
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        custom_id = inputs.validate_custom_id(custom_id)
        common = _job_fields(state=state, notify_hook=notify_hook)
        for flag_name, flag in (("enable_remix", enable_remix), ("choose_same_channel", choose_same_channel)):
            if flag is not None and not isinstance(flag, bool):
                raise MidjourneyValidationError(f"{flag_name} must be True, False or None, got {flag!r}.")
        if not custom_id.upper().startswith("MJ::"):
            custom_id = self.resolve_button(mj_task_id, custom_id)
        body = {
            "taskId": mj_task_id, "customId": custom_id, "enableRemix": enable_remix,
            "chooseSameChannel": choose_same_channel, "state": common["state"],
            "notifyHook": common["notifyHook"],
        }
        result = self._submit("action", body, mj_task_id=mj_task_id, creates_task=button_creates_task(custom_id))
        if code21.is_existing_task(result, custom_id, enable_remix):
            self.log.info("Midjourney answered code 21 for %s: task %s already exists (%s); it is that job.",
                          custom_id, result.mj_task_id, result.properties.get("status") or "status not given")
            return code21.as_accepted(result)
        return result

    def blend(self, images: Iterable[Any], *, dimensions: str = "SQUARE",
              **options: Unpack[JobOptions]) -> SubmitResult:
        """Blend 2 to 5 images into a new grid (``/mj/submit/blend``).

        :param images: 2 to 5 images: data URLs, local file paths or bytes.
        :param dimensions: ``"PORTRAIT"`` (2:3), ``"SQUARE"`` (1:1) or ``"LANDSCAPE"`` (3:2), any case.
        :param options: the :class:`JobOptions`.
        :return: the accepted job.
        """
        dims = inputs.validate_dimensions(dimensions)
        common = _job_fields(**options)
        urls = inputs.to_data_urls(images, field="images", min_count=inputs.MIN_BLEND_IMAGES,
                                   max_count=inputs.MAX_BLEND_IMAGES)
        return self._submit("blend", {"base64Array": urls, "dimensions": dims, **common})

    def describe(self, *, image: Any = None, link: str | None = None,
                 **options: Unpack[JobOptions]) -> SubmitResult:
        """Ask for four prompts that describe an image (``/mj/submit/describe``). Give exactly one source.

        :param image: the image: a data URL, a local file path or bytes (sent as ``base64``).
        :param link: or the http(s) URL of the image (sent as ``link``).
        :param options: the :class:`JobOptions`.
        :return: the accepted job; the finished task's ``describe_prompts()`` gives the prompts.
        """
        if image is None and (link is None or link == ""):
            raise MidjourneyValidationError(
                "describe needs an image: pass image= (a data URL, file path or bytes) or link= (an http(s) URL)."
            )
        if image is not None and link:
            raise MidjourneyValidationError("describe takes one image: pass image= or link=, not both.")
        body = _job_fields(**options)
        if image is not None:
            body["base64"] = inputs.to_data_url(image, field="image")
        else:
            body["link"] = inputs.validate_link(link)
        return self._submit("describe", body)

    def modal(self, mj_task_id: str, *, prompt: str | None = None, mask: Any = None) -> SubmitResult:
        """Complete a task waiting in status MODAL (code 21) (``/mj/submit/modal``).

        :param mj_task_id: the task id a code-21 submit returned.
        :param prompt: the prompt for custom zoom, remix or Vary (Region).
        :param mask: for Vary (Region): the mask image (data URL, file path or bytes), sent as
            ``maskBase64``.
        :return: the accepted job.
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        prompt = inputs.validate_prompt(prompt, required=False)
        body: dict[str, Any] = {"taskId": mj_task_id, "prompt": prompt}
        if mask is not None:
            body["maskBase64"] = inputs.to_data_url(mask, field="mask")
        return self._submit("modal", body, mj_task_id=mj_task_id, prompt=prompt)

    def shorten(self, prompt: str, **options: Unpack[JobOptions]) -> SubmitResult:
        """Ask Midjourney to analyse and shorten a prompt (``/mj/submit/shorten``).

        :param prompt: the prompt to shorten.
        :param options: the :class:`JobOptions`.
        :return: the accepted job; the finished task's ``shortened_prompts()`` gives the prompts.
        """
        prompt = inputs.validate_prompt(prompt)
        body = {"prompt": prompt, **_job_fields(**options)}
        return self._submit("shorten", body, prompt=prompt)

    # -- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _fetch_route(mj_task_id: str) -> str:
        return f"task/{quote(mj_task_id, safe='')}/fetch"

    def fetch_task(self, mj_task_id: str) -> MidjourneyTask:
        """Read one task (``GET /mj/task/{id}/fetch``).

        :param mj_task_id: the task id.
        :raises MidjourneyNotFoundError: the server does not know the id (whichever way it says so:
            ``null``, HTTP 204, HTTP 404 or a relay's ``task_not_found``).
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        return self._call("GET", self._fetch_route(mj_task_id), "task", mj_task_id=mj_task_id)

    async def afetch_task(self, mj_task_id: str) -> MidjourneyTask:
        """Async :meth:`fetch_task`, for triggers: same parsing and errors, on aiohttp."""
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        return await self._acall("GET", self._fetch_route(mj_task_id), "task", mj_task_id=mj_task_id)

    @staticmethod
    def _order(tasks: list[MidjourneyTask], ids: list[str]) -> list[MidjourneyTask]:
        rank = {task_id: i for i, task_id in enumerate(ids)}
        return sorted(tasks, key=lambda t: rank.get(t.id, len(rank)))

    def list_tasks(self, mj_task_ids: Iterable[str]) -> list[MidjourneyTask]:
        """Read many tasks at once (``POST /mj/task/list-by-condition``).

        :param mj_task_ids: the task ids. Unknown ids are left out of the result (no error).
        :return: the tasks found, in the order of ``mj_task_ids``. An empty list sends no request.
        """
        ids = list(dict.fromkeys(inputs.validate_mj_task_ids(mj_task_ids)))
        if not ids:
            return []
        tasks = self._call("POST", "task/list-by-condition", "tasks", json_body={"ids": ids})
        return self._order(tasks, ids)

    async def alist_tasks(self, mj_task_ids: Iterable[str], *, retry: bool = True) -> list[MidjourneyTask]:
        """Async :meth:`list_tasks`, for triggers: same parsing and errors, on aiohttp.

        :param retry: False sends the call once, without the connection's retries (the poller
            falls back to per-task fetches instead of waiting on a failing batch route).
        """
        ids = list(dict.fromkeys(inputs.validate_mj_task_ids(mj_task_ids)))
        if not ids:
            return []
        tasks = await self._acall("POST", "task/list-by-condition", "tasks", json_body={"ids": ids}, retry=retry)
        return self._order(tasks, ids)

    async def alist_task_readings(self, mj_task_ids: list[str], *, retry: bool = True) -> list[TaskReading]:
        """:meth:`alist_tasks` for the coalesced poller: the same request and errors, but each task
        as a :class:`~airflow_provider_mj.hooks.replies.TaskReading` (three fields decoded, the
        full model built only if asked), in the server's order.

        :param mj_task_ids: distinct, already validated task ids (the poller validates each
            subscriber's id once, not on every poll).
        :param retry: as for :meth:`alist_tasks`.
        """
        if not mj_task_ids:
            return []
        return await self._acall("POST", "task/list-by-condition", "readings", json_body={"ids": mj_task_ids},
                                 retry=retry)

    def image_seed(self, mj_task_id: str) -> str:
        """The seed of a task's image (``GET /mj/task/{id}/image-seed``).

        :param mj_task_id: a finished task with an image.
        :raises MidjourneyNotFoundError: unknown task, or the server has no seed for it.
        :raises MidjourneyValidationError: the task has no image.
        """
        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        return self._call("GET", f"task/{quote(mj_task_id, safe='')}/image-seed", "seed", mj_task_id=mj_task_id)

    # -- waiting --------------------------------------------------------------------------------

    def wait_for_task(
        self, mj_task_id: str, *, poll_interval: float = 5.0, deadline: float | None = None,
        visible_by: float | None = None, on_progress: Callable[[MidjourneyTask], None] | None = None,
    ) -> MidjourneyTask:
        """Poll a task until it finishes (blocking), logging its progress like the trigger does.

        "Finished" is decided by :func:`~airflow_provider_mj.models.task_outcome`, as in the sensor
        and the trigger; unknown or lagging statuses count as still running. Temporary errors
        (already retried inside each fetch) do not end the wait before the deadline; without a
        deadline, ten failed polls in a row end it (the last error is raised). The log gets
        the first reading and every status change (the final one included), and progress within
        a status at most every four poll intervals (the trigger's rule,
        :class:`~airflow_provider_mj.polling.ProgressThrottle`), so a relay whose progress moves
        on every read does not flood it.

        :param mj_task_id: the task to wait for.
        :param poll_interval: seconds between polls (vendors recommend 3 to 5).
        :param deadline: give up at this time, in epoch seconds (``time.time() + 600``); None: no limit.
        :param visible_by: epoch seconds until which "no such task" means "not visible yet" rather
            than an error (a just-submitted job on a lagging relay); None: not found fails at once.
            A task already read that then answers "no such task" is reported lost after a few
            answers in a row, whatever the grace (:class:`~airflow_provider_mj.visibility.TaskSighting`).
        :param on_progress: called with the task whenever its status or progress changes, logged
            or not (the operators use it to publish the preview image for the "Midjourney image" link).
        :return: the task, in status SUCCESS.
        :raises MidjourneyTaskFailedError: the job ended in FAILURE or CANCEL (``fail_reason`` says why).
        :raises MidjourneyTimeoutError: the deadline passed first (the job may still finish).
        """
        from airflow_provider_mj.polling import PROGRESS_LOG_POLLS, ProgressThrottle  # polling imports hooks

        mj_task_id = inputs.validate_mj_task_id(mj_task_id)
        if not isinstance(poll_interval, (int, float)) or isinstance(poll_interval, bool) or poll_interval < 0:
            raise MidjourneyValidationError(f"poll_interval must be a number of seconds >= 0, got {poll_interval!r}.")
        throttle = ProgressThrottle(PROGRESS_LOG_POLLS * poll_interval)
        last_seen: tuple[str, str] | None = None
        task: MidjourneyTask | None = None
        sighting = TaskSighting(mj_task_id, visible_by)
        failures = 0
        while True:
            try:
                # Each fetch (its retries included) ends by the deadline, however slowly it is answered.
                task = self._call("GET", self._fetch_route(mj_task_id), "task", mj_task_id=mj_task_id,
                                  deadline=deadline)
                sighting.seen(task)
                failures = 0
            except MidjourneyNotFoundError as err:
                self.log.info("Midjourney task %s %s.", mj_task_id, sighting.missing(err))  # or raises
                task = None
            except MidjourneyError as err:
                if not err.retryable:
                    raise
                failures += 1
                if deadline is None and failures >= 10:
                    raise
                self.log.warning("Polling Midjourney task %s failed (%s); will poll again.", mj_task_id,
                                 short_reason(err))
            if task is not None:
                seen = (task.raw_status or task.status.value, task.progress)
                if seen != last_seen:
                    now = time.monotonic()
                    if throttle.wants(*seen, now):
                        self.log.info("Midjourney task %s: %s %s", mj_task_id, seen[0], seen[1] or "")
                        throttle.shown(*seen, now)
                    last_seen = seen
                    if on_progress is not None:
                        on_progress(task)
                outcome = task_outcome(task)
                if outcome is TaskOutcome.SUCCEEDED:
                    return task
                if outcome is TaskOutcome.FAILED:
                    raise MidjourneyTaskFailedError.for_task(task)
            now = time.time()
            if deadline is not None and now >= deadline:
                where = f"still {last_seen[0]} {last_seen[1]}".rstrip() if last_seen else "never read"
                raise MidjourneyTimeoutError(
                    f"Midjourney job {mj_task_id} did not finish before the deadline ({where}). It may still "
                    "finish: fetch it later by its id rather than submitting again, or allow a longer timeout.",
                    mj_task_id=mj_task_id, prompt=task.prompt if task is not None and task.prompt else None,
                )
            wait = poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - now))
            self._sleep(wait)

    # -- buttons ----------------------------------------------------------------------------------

    def resolve_button(self, task_or_id: MidjourneyTask | Mapping[str, Any] | str, button: str) -> str:
        """The customId of a task's button, given its label (``"U1"``, ``"reroll"``, ``"Zoom Out 2x"``).

        Labels are matched case-insensitively and also work when the server sent empty labels
        (they are derived from the customId). A customId that is on the task is returned as is.

        :param task_or_id: the parent task (:class:`MidjourneyTask`, its dict, or its id: fetched).
        :param button: a label or a customId.
        :raises MidjourneyButtonNotFoundError: the task has no such button; ``available`` lists its labels.
        """
        if not isinstance(button, str) or not button.strip():
            raise MidjourneyValidationError("button is empty: pass a label such as 'U1' or a customId.")
        if isinstance(task_or_id, MidjourneyTask):
            task = task_or_id
        elif isinstance(task_or_id, Mapping):
            task = MidjourneyTask.from_api(dict(task_or_id))
        else:
            task = self.fetch_task(task_or_id)
        wanted = button.strip()
        if task.has_custom_id(wanted):
            return wanted
        found = task.find_button(wanted)
        if found is not None:
            return found.custom_id
        labels = task.button_labels()
        if not labels:
            why = (f"it has no buttons (status {task.raw_status or task.status.value}); buttons appear when a "
                   "task succeeds, and describe/shorten/upscale-HD tasks have few or none")
        else:
            why = f"its buttons are: {', '.join(labels)}"
        raise MidjourneyButtonNotFoundError(
            f"Task {task.id or '?'} has no button {wanted!r}; {why}.", available=labels, mj_task_id=task.id or None,
        )

    # -- downloads ----------------------------------------------------------------------------------

    def download_image(self, url_or_task: Any, destination: Any, *, split_grid: bool = False) -> Any:
        """Download a task's image to a local path or object storage: streamed, typed, atomic.

        The image is streamed to the destination in chunks (memory stays flat whatever its size)
        and hashed on the way. Its format is read from its first bytes, not from the URL (relays
        serve WebP or JPEG under ``.png`` links):

        * a destination without an image extension (``out/cat``, or a folder) gets the right one
          (``cat.webp``); a folder gets the URL's file name (or the task id);
        * a name whose extension disagrees with the bytes (``cat.png``, WebP bytes) is converted
          to the format the name asks for when Pillow (``airflow-provider-mj[images]``) is
          installed (PNG and WebP losslessly), else saved under the right extension
          (``cat.webp``) with a warning in the log.

        Writes are atomic (see :mod:`~airflow_provider_mj.hooks.storage`): a local file goes to
        a temporary sibling renamed into place; an object store (S3, GCS, Azure) gets the final
        object in one upload, discarded on failure, so no partial object is ever visible. When
        the destination already holds the same bytes nothing is written. Downloads are retried
        like other reads; the API key is sent only to the API server's own origin. The saved
        URI is reported once to Airflow's hook lineage.

        :param url_or_task: an image URL (absolute, or relative to the base URL), or a task
            (:class:`MidjourneyTask` or its dict) whose ``imageUrl`` is downloaded.
        :param destination: a local path (``str`` or :class:`pathlib.Path`), an
            ``airflow.sdk.ObjectStoragePath``, or a URL string such as
            ``"s3://aws_default@bucket/key.png"``. An existing directory (or a path ending in
            ``/``) is a folder.
        :param split_grid: cut a 2x2 grid into its four images and save those, as
            ``<name>_1`` .. ``<name>_4`` (Midjourney's order), instead of the grid: the four
            grid-size images without paying for four upscale jobs. Needs Pillow
            (``airflow-provider-mj[images]``); PNG and WebP are written losslessly.
        :return: a :class:`~airflow_provider_mj.hooks.storage.SavedImage`: a ``str`` of where the
            image went (as this method always returned) with ``uri``, ``path``, ``size_bytes``,
            ``sha256``, ``media_type``, ``source_url``, ``mj_task_id`` and ``written``. With
            ``split_grid=True``, a list of four of them.
        """
        return downloads.download(self, url_or_task, destination, split_grid=split_grid)

    async def adownload_image(self, url_or_task: Any, destination: Any, *, split_grid: bool = False) -> Any:
        """:meth:`download_image` for code on an event loop (a trigger): same arguments, same result.

        The network is read with the loop's shared aiohttp session; blocking writes (files,
        object stores) run in a worker thread, chunk by chunk.
        """
        return await downloads.adownload(self, url_or_task, destination, split_grid=split_grid)


__all__ = [
    "MidjourneyConnectionConfig",
    "JobOptions",
    "MidjourneyHook",
    "SUBMIT_ROUTES",
    "SavedImage",
    "async_session_count",
    "interpret_response",
    "parse_connection",
    "parse_retry_after",
]
