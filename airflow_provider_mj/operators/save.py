"""Saving a finished job's image from the task that made it, and publishing it as an asset event.

Used by the operators whose job yields an image (imagine, action, blend: their ``destination``
parameter) and by :class:`~airflow_provider_mj.operators.save_image.MidjourneySaveImageOperator`.
The bytes are fetched and written by the hook
(:meth:`MidjourneyHook.download_image <airflow_provider_mj.hooks.midjourney.MidjourneyHook.download_image>`:
streamed, atomic, hashed, typed from its bytes); this module decides *where* (the destination
pattern) and tells Airflow *what* was made (the asset event and its extras, see :func:`asset_extra`).

A destination is a local path or any ``ObjectStoragePath`` URL (``s3://aws_default@bucket/mj/``),
rendered by Jinja first, then filled with what is known only once the job is done:

* ``{mj_task_id}``: the Midjourney task id;
* ``{action}``: the task's action in lower case (``imagine``, ``upscale``, ``blend``...);
* ``{button}``: the pressed button (``U1``), empty when there is none;
* ``{map_index}``: the map index of the task instance (0 when the task is not mapped); format
  specs work (``{map_index:02d}``).

A destination ending in ``/`` (or an existing local folder) is a folder: the file is named after
the Midjourney task id inside it. A name without an image extension gets the one of the image's
bytes (``.png``, ``.webp``, ``.jpg``); a name with one keeps it (see the hook for conversion).
The same task instance always gets the same name, so a re-run overwrites its own file
(atomically) instead of adding a new one.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_mj.common import SAVED_URI_XCOM_KEY
from airflow_provider_mj.exceptions import MidjourneyValidationError
from airflow_provider_mj.lineage import MidjourneyLineageMixin
from airflow_provider_mj.models import MidjourneyTask, parse_custom_id
from airflow_provider_mj.operators.base import given

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_mj.hooks.midjourney import MidjourneyHook
    from airflow_provider_mj.hooks.storage import SavedImage

#: The placeholders a destination may use, filled after the job is done.
DESTINATION_FIELDS = ("mj_task_id", "action", "button", "map_index")
#: The file name (the hook adds the extension) used when the destination is a folder.
FOLDER_FILE_NAME = "{mj_task_id}"
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


def check_destination(destination: Any) -> str:
    """The rendered destination as a string, or a clear error before any request is sent."""
    if isinstance(destination, os.PathLike):
        destination = os.fspath(destination)
    elif not isinstance(destination, str) and type(destination).__name__ == "ObjectStoragePath":
        destination = str(destination)
    if not isinstance(destination, str) or not destination.strip():
        raise MidjourneyValidationError(
            f"destination must be a local path or an ObjectStoragePath URL (e.g. '/data/mj/' or "
            f"'s3://aws_default@bucket/mj/{{mj_task_id}}.png'), got {destination!r}."
        )
    destination = destination.strip()
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(destination) if name is not None]
    except ValueError as err:
        raise MidjourneyValidationError(
            f"destination {destination!r} is not a valid pattern ({err}); write a literal brace as '{{{{' or '}}}}'."
        ) from None
    unknown = sorted({name for name in fields if name not in DESTINATION_FIELDS})
    if unknown:
        raise MidjourneyValidationError(
            f"destination {destination!r} uses unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
            f"the ones filled after the job are {', '.join('{' + n + '}' for n in DESTINATION_FIELDS)} "
            "(anything known before the run, like the date, is Jinja: '{{ ds }}')."
        )
    try:
        destination.format(mj_task_id="1", action="imagine", button="U1", map_index=0)
    except (ValueError, TypeError, IndexError) as err:
        raise MidjourneyValidationError(f"destination {destination!r} is not a valid pattern: {err}.") from None
    return destination


def button_of(button: Any = None, custom_id: Any = None) -> str | None:
    """The button a task came from: the label given to the operator, else read from its customId."""
    if isinstance(button, str) and button.strip():
        return button.strip()
    if isinstance(custom_id, str) and custom_id.strip():
        parsed = parse_custom_id(custom_id.strip())
        if parsed is not None:
            return parsed.label
    return None


def _safe(value: str) -> str:
    """A value fit for a file name: no separators, no spaces, nothing a shell or URL would mangle."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("_")


def target_of(destination: str, task: MidjourneyTask, *, button: str | None, map_index: int | None) -> str:
    """The file a finished task's image goes to (see the module docstring for the rules)."""
    values = {
        "mj_task_id": _safe(task.id) or "midjourney",
        "action": _safe((task.action or "image").lower()),
        "button": _safe(button or ""),
        "map_index": map_index if isinstance(map_index, int) and map_index >= 0 else 0,
    }
    target = destination.format(**values)
    is_url = bool(_URL.match(target))
    if target.endswith("/") or (not is_url and (target.endswith(os.sep) or Path(target).expanduser().is_dir())):
        target = target.rstrip("/" + os.sep) + "/" + FOLDER_FILE_NAME.format(**values)
    if not is_url:
        target = str(Path(target).expanduser().absolute())
    return target


def save_task_image(hook: MidjourneyHook, task: MidjourneyTask, destination: str, *, button: str | None,
                    map_index: int | None, log: Any) -> SavedImage:
    """Download ``task``'s image to ``destination`` (a checked pattern) through the hook."""
    target = target_of(destination, task, button=button, map_index=map_index)
    saved = hook.download_image(task, target)
    log.info("Saved the image of Midjourney task %s to %s (%d bytes, sha256 %s).",
             task.id, saved.uri, saved.size_bytes, saved.sha256)
    return saved


def asset_extra(task: MidjourneyTask, *, button: str | None, saved: SavedImage | None,
                prompt: str | None = None, image_url: str | None = None) -> dict[str, Any]:
    """The extras of the asset event of a finished task: what a downstream DAG needs, no request needed.

    ``mj_task_id``, ``action``, ``prompt``, ``button`` (if any), ``image_url`` (the source),
    ``state`` (the Midjourney tag, if set) and, once saved, ``uri``, ``size_bytes``, ``sha256``
    and ``media_type``.
    """
    extra: dict[str, Any] = {
        "mj_task_id": task.id,
        "action": task.action or None,
        "prompt": task.prompt or task.final_prompt or prompt or None,
        "image_url": image_url or task.image_url or None,
        "state": task.state or None,
    }
    if button:
        extra["button"] = button
    if saved is not None:
        extra.update(uri=saved.uri, size_bytes=saved.size_bytes, sha256=saved.sha256, media_type=saved.media_type)
    return {key: value for key, value in extra.items() if value is not None}


def publish_asset_events(context: Context, outlets: Any, extra: dict[str, Any]) -> int:
    """Attach ``extra`` to this task's asset events; return how many outlets got it.

    A fixed ``Asset`` outlet gets the extras on the event Airflow emits when the task succeeds
    (one event per task instance, mapped ones included). An ``AssetAlias`` outlet gets an event
    for the asset of the saved file itself (its URI, connection id left out), which suits
    destinations templated per run or per map index; without a saved file there is no such asset
    and the alias gets nothing.
    """
    from airflow.sdk import Asset, AssetAlias

    events = context.get("outlet_events")
    if events is None or not outlets:
        return 0
    published = 0
    for outlet in outlets:
        if isinstance(outlet, AssetAlias):
            if "uri" in extra:
                events[outlet].add(Asset(uri=extra["uri"]), extra=dict(extra))
                published += 1
        elif isinstance(outlet, Asset):
            events[outlet].extra.update(extra)
            published += 1
    return published


_DESTINATION_DOC = """
    :param destination: where to save the finished image: a local path or an
        ``ObjectStoragePath`` URL, a folder (ending in ``/``) or a file name pattern with
        ``{mj_task_id}``, ``{action}``, ``{button}``, ``{map_index}``
        (see :mod:`airflow_provider_mj.operators.save`). Templated. The returned task dict then
        carries ``saved_uri``, the XCom ``mj_saved_uri`` holds it, and every asset outlet of the
        task (a fixed ``Asset`` or an ``AssetAlias``) gets an event whose extras describe the
        image (:func:`~airflow_provider_mj.operators.save.asset_extra`). Default: not saved (a
        fixed ``Asset`` outlet still gets the task's extras).
"""


class ImageSavingMixin(MidjourneyLineageMixin, BaseOperator):
    """The ``destination`` option of the operators whose job yields an image (and their lineage).

    Listed before the operator's base class. It derives from ``BaseOperator`` only so that
    Airflow knows ``destination`` as a parameter (``.partial(destination=...)`` of a mapped task).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The reference docs are built from the docstrings: each operator lists destination too.
        if cls.__doc__ and ":param destination:" not in cls.__doc__:
            cls.__doc__ = cls.__doc__.rstrip() + "\n" + _DESTINATION_DOC

    def __init__(self, *, destination: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.destination = destination

    def execute(self, context: Context) -> Any:
        # A bad destination fails before the job is submitted (and paid for), not after it.
        self._checked_destination()
        return super().execute(context)  # type: ignore[misc]

    def _checked_destination(self) -> str | None:
        return check_destination(self.destination) if given(self.destination) else None

    def pressed_button(self) -> str | None:
        """The button this operator pressed (the action operator says which)."""
        return None

    def _finish(self, context: Context, task: MidjourneyTask) -> dict[str, Any]:
        result = super()._finish(context, task)
        saved = None
        button = self.pressed_button()
        destination = self._checked_destination()  # again: a deferred task resumes in a new process
        if destination:
            ti = context["ti"]
            saved = save_task_image(self.hook, task, destination, button=button,  # type: ignore[attr-defined]
                                    map_index=getattr(ti, "map_index", None), log=self.log)  # type: ignore[attr-defined]
            ti.xcom_push(key=SAVED_URI_XCOM_KEY, value=saved.uri)
            result["saved_uri"] = saved.uri
        publish_saved(self, context, task, saved, button=button)
        return result


def publish_saved(operator: Any, context: Context, task: MidjourneyTask, saved: SavedImage | None, *,
                  button: str | None) -> None:
    """Tell Airflow what ``operator`` made: its asset events' extras and its lineage."""
    # The URL the image came from: the hook already resolved a relative imageUrl, in the tasks it
    # reads and in what it downloads.
    extra = asset_extra(task, button=button, saved=saved, prompt=getattr(operator, "prompt", None),
                        image_url=saved.source_url if saved is not None else None)
    publish_asset_events(context, getattr(operator, "outlets", None), extra)
    lineage = operator.lineage
    if lineage is not None:
        if saved is not None:
            lineage.saved(saved.uri)
        if lineage.facet is not None and button:
            lineage.facet["button"] = button

