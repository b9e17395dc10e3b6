"""OpenLineage for the Midjourney operators: what a job read, what it made, and the job itself.

``apache-airflow-providers-openlineage`` calls ``get_openlineage_facets_on_complete`` on an
operator when its task succeeds. Ours report:

* **inputs**: the source images (blend's images, describe's image or link, imagine's reference
  images; local files and URLs, not inline data URLs or bytes, which have no address) and the
  Midjourney task a job started from (the parent of an action, the MODAL task of a modal);
* **outputs**: the Midjourney task the job made (so an upscale links to its imagine) and every
  image saved to a destination;
* a ``midjourney`` run facet: the prompt, the Midjourney task id, its action, the button and the
  ``state`` tag.

Dataset names follow the OpenLineage naming spec: a local file is namespace ``file``, name its
absolute path; ``s3://bucket/key`` is namespace ``s3://bucket``, name ``key`` (the Airflow
connection id in an ``ObjectStoragePath`` URL is dropped); an ``http(s)`` URL is namespace
``https://host``, name its path; a Midjourney task is namespace ``midjourney://<api host>``,
name ``task/<id>``.

OpenLineage is optional: nothing here imports it until the OpenLineage listener, which is
installed with it, asks for lineage.
"""

from __future__ import annotations

import functools
import os
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: The key of our run facet in an OpenLineage event.
RUN_FACET_KEY = "midjourney"
#: Where the run facet's fields are described.
RUN_FACET_SCHEMA_URL = (
    "https://github.com/airflow-provider-mj/airflow-provider-mj/blob/main/docs/howto/assets-and-lineage.md"
    "#the-midjourney-run-facet"
)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


def dataset_name(location: Any) -> tuple[str, str] | None:
    """(namespace, name) of a file, URL or ``ObjectStoragePath``; None for inline data (bytes, data URLs)."""
    if isinstance(location, (bytes, bytearray)) or location is None:
        return None
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    text = str(location).strip()
    if not text or text.startswith("data:"):
        return None
    if not _URL.match(text):
        return "file", str(Path(text).expanduser().absolute())
    parts = urllib.parse.urlsplit(text)
    host = parts.netloc.rpartition("@")[2]  # an ObjectStoragePath's connection id is no part of the data
    if parts.scheme == "file":
        return "file", urllib.parse.unquote(parts.path) or "/"
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{host}", parts.path or "/"
    return f"{parts.scheme}://{host}", parts.path.lstrip("/") or "/"


def task_dataset_name(base_url: str, mj_task_id: str) -> tuple[str, str]:
    """(namespace, name) of a Midjourney task on the API server at ``base_url``."""
    host = urllib.parse.urlsplit(base_url).netloc.rpartition("@")[2]
    return f"midjourney://{host}", f"task/{mj_task_id}"


def source_locations(images: Any) -> list[tuple[str, str]]:
    """The datasets of source images given as paths, URLs or a list of them (inline data is left out)."""
    if images is None:
        return []
    if isinstance(images, (str, bytes, bytearray, os.PathLike)):
        images = [images]
    found = []
    for image in images if isinstance(images, Iterable) else [images]:
        named = dataset_name(image)
        if named is not None and named not in found:
            found.append(named)
    return found


@functools.cache
def _run_facet_class() -> type:
    import attr
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attr.define
    class MidjourneyRunFacet(RunFacet):
        """What the Midjourney job was: its task id, action, prompt, button and state tag."""

        mjTaskId: str  # noqa: N815 (OpenLineage facets use camelCase fields)
        action: str | None = None
        prompt: str | None = None
        button: str | None = None
        state: str | None = None

        @staticmethod
        def _get_schema() -> str:
            return RUN_FACET_SCHEMA_URL

    return MidjourneyRunFacet


def operator_lineage(*, inputs: Iterable[tuple[str, str]], outputs: Iterable[tuple[str, str]],
                     run_facet: dict[str, Any] | None) -> Any:
    """An ``OperatorLineage`` of datasets given as (namespace, name) pairs, and our run facet."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    def datasets(pairs: Iterable[tuple[str, str]]) -> list[Any]:
        unique = list(dict.fromkeys(pairs))
        return [Dataset(namespace=namespace, name=name) for namespace, name in unique]

    facets = {}
    if run_facet and run_facet.get("mj_task_id"):
        facets[RUN_FACET_KEY] = _run_facet_class()(
            mjTaskId=str(run_facet["mj_task_id"]), action=run_facet.get("action"), prompt=run_facet.get("prompt"),
            button=run_facet.get("button"), state=run_facet.get("state"),
        )
    return OperatorLineage(inputs=datasets(inputs), outputs=datasets(outputs), run_facets=facets)


class JobLineage:
    """What one run of an operator read and made, as (namespace, name) pairs, and its run facet."""

    def __init__(self) -> None:
        self.inputs: list[tuple[str, str]] = []
        self.outputs: list[tuple[str, str]] = []
        self.facet: dict[str, Any] | None = None

    def saved(self, uri: str) -> None:
        named = dataset_name(uri)
        if named is not None:
            self.outputs.append(named)


class MidjourneyLineageMixin:
    """``get_openlineage_facets_on_complete`` for the submit operators.

    Put before the base operator class: when the job is finished it records what the job read
    (:meth:`lineage_sources`, :meth:`lineage_parent`) and made in ``self.lineage``, which the
    OpenLineage listener reads in the same process when the task succeeds.
    """

    lineage: JobLineage | None = None

    def lineage_sources(self) -> list[tuple[str, str]]:
        """The source images this operator was given (its ``images``, ``image`` or ``link``)."""
        found: list[tuple[str, str]] = []
        for attribute in ("images", "image", "link"):
            found += source_locations(getattr(self, attribute, None))
        return found

    def lineage_parent(self) -> str | None:
        """The Midjourney task this job started from (action, modal), if any."""
        return None

    def _finish(self, context: Any, task: Any) -> dict[str, Any]:
        result = super()._finish(context, task)  # type: ignore[misc]
        base_url = self.hook.config.base_url  # type: ignore[attr-defined]
        lineage = JobLineage()
        lineage.inputs.extend(self.lineage_sources())
        parent = self.lineage_parent()
        if parent:
            lineage.inputs.append(task_dataset_name(base_url, parent))
        if task.id:
            lineage.outputs.append(task_dataset_name(base_url, task.id))
        lineage.facet = {"mj_task_id": task.id, "action": task.action or None,
                         "prompt": task.prompt or getattr(self, "prompt", None) or None,
                         "state": task.state or None}
        self.lineage = lineage
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs, outputs and the ``midjourney`` run facet of the finished job (see the module docstring)."""
        recorded = self.lineage
        if recorded is None:
            return operator_lineage(inputs=[], outputs=[], run_facet=None)
        return operator_lineage(inputs=recorded.inputs, outputs=recorded.outputs, run_facet=recorded.facet)
