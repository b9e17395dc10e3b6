"""Storage: writing a downloaded image so that no reader ever sees half of it.

:func:`write_image` is what :meth:`MidjourneyHook.download_image
<airflow_provider_mj.hooks.midjourney.MidjourneyHook.download_image>` uses. A local path gets a
temporary sibling, flushed and fsynced, then renamed into place; object storage
(``airflow.sdk.ObjectStoragePath`` or a URL such as ``s3://bucket/key.png``) gets a temporary
object renamed into place where the store can rename, else the object written directly (a single
PUT is already atomic there), and its size checked.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from airflow_provider_mj.exceptions import MidjourneyServerError


def write_image(destination: Any, name: str, data: bytes) -> str:
    """Write ``data`` to ``destination`` atomically; return the final path as a string.

    :param destination: a local path (``str`` or :class:`os.PathLike`), an
        ``airflow.sdk.ObjectStoragePath``, or a URL string such as ``"s3://bucket/key.png"``.
        An existing directory (or a path ending in ``/``) gets ``name`` appended.
    :param name: the file name to use when ``destination`` is a directory.
    :param data: the bytes to write.
    """
    if isinstance(destination, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", destination):
        from airflow.sdk import ObjectStoragePath

        destination = ObjectStoragePath(destination)
    if isinstance(destination, (str, os.PathLike)) and not _is_object_path(destination):
        return _write_local_atomically(destination, name, data)
    return _write_object_atomically(destination, name, data)


def _is_object_path(destination: Any) -> bool:
    try:
        from airflow.sdk import ObjectStoragePath
    except ImportError:  # pragma: no cover
        return False
    return isinstance(destination, ObjectStoragePath)


def _write_local_atomically(destination: str | os.PathLike[str], name: str, data: bytes) -> str:
    raw = os.fspath(destination)
    path = Path(raw).expanduser()
    if path.is_dir() or raw.endswith(("/", os.sep)):
        path = path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return str(path)


def _write_object_atomically(destination: Any, name: str, data: bytes) -> str:
    path = destination
    try:
        is_dir = path.is_dir()
    except Exception:
        is_dir = False
    if is_dir or str(path).endswith("/"):
        path = path / name
    with contextlib.suppress(Exception):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.part"
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
        try:
            tmp.rename(path)
            renamed = True
        except (NotImplementedError, OSError, AttributeError):
            renamed = False
        if not renamed:
            with path.open("wb") as handle:
                handle.write(data)
    finally:
        with contextlib.suppress(Exception):
            if tmp.exists():
                tmp.unlink()
    try:
        size = path.stat().st_size
    except Exception:
        size = len(data)
    if size != len(data):
        raise MidjourneyServerError(
            f"Writing the image to {path} left {size} bytes instead of {len(data)}; the object store may be "
            "inconsistent. Run the task again."
        )
    return str(path)

