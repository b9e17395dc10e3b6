"""Storage: where a downloaded image goes, written so that no reader ever sees half of it.

:class:`SavedImage` is what the hook's ``download_image`` / ``adownload_image`` return. The
writers here take the image as a stream of chunks and hash it as it passes (SHA-256 and size),
so memory stays flat whatever the image's size:

* **a local path** (``str``, :class:`os.PathLike`, or a ``file://`` ``ObjectStoragePath``): a
  temporary sibling ``.<name>.<random>.part`` is written, flushed, fsynced, then renamed into place
  (``os.replace`` is atomic);
* **an object store whose objects appear only when their upload completes** (S3, GCS, Azure
  Blob, see :data:`ATOMIC_UPLOAD_PROTOCOLS`): the final key is written directly, as one PUT or a
  multipart upload; a failure discards the upload, so no partial object is ever visible and no
  temporary object is left behind (a rename there would be a copy and a delete);
* **any other filesystem**: a temporary sibling, then a rename.

When the destination already holds exactly the same bytes (same size and SHA-256), nothing is
written (``SavedImage.written`` is False): saving the same task twice writes the object once.
Each save reports its final URI, once, to Airflow's hook-lineage collector.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

#: fsspec protocols whose objects become visible only when their upload completes.
ATOMIC_UPLOAD_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oci", "oss"})
#: Part size of streaming uploads to object stores (S3's minimum multipart part): bounds memory.
UPLOAD_BLOCK_BYTES = 5 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


class SavedImage(str):
    """One saved image. As a string it is where the image went, as ``download_image`` always returned.

    The string is the local path (``"/data/mj/cat.png"``) or the ``ObjectStoragePath`` as a string
    (``"s3://aws_default@bucket/mj/cat.png"``, connection id included). The attributes say the rest,
    for asset events and lineage, without reading the file again:

    :ivar uri: the saved image's URI without any connection id: ``file:///data/mj/cat.png``,
        ``s3://bucket/mj/cat.png``. This is what is reported to Airflow's hook lineage.
    :ivar path: the saved image as a :class:`pathlib.Path` (local) or ``ObjectStoragePath``.
    :ivar name: the file name, with the extension of the bytes (``cat.webp``).
    :ivar size_bytes: the size of the saved file, in bytes.
    :ivar sha256: the SHA-256 of the saved bytes, in hex.
    :ivar media_type: ``image/png``, ``image/webp`` or ``image/jpeg`` (read from the bytes), or
        the server's Content-Type for a format the provider does not know.
    :ivar source_url: the URL the image was downloaded from (signed CDN URLs carry tokens: keep it
        out of logs).
    :ivar mj_task_id: the Midjourney task whose image it is, when a task was given.
    :ivar written: False when the destination already held these exact bytes and was left alone.
    :ivar converted_from: the media type of the downloaded bytes when they were converted to
        the format the destination's extension asked for, else None.
    """

    _FIELDS = ("uri", "path", "name", "size_bytes", "sha256", "media_type", "source_url", "mj_task_id",
               "written", "converted_from")

    uri: str
    path: Any
    name: str
    size_bytes: int
    sha256: str
    media_type: str
    source_url: str
    mj_task_id: str | None
    written: bool
    converted_from: str | None

    def __new__(cls, location: str, **fields: Any) -> SavedImage:
        """Make one; ``fields`` are the attributes above (``mj_task_id``, ``source_url``... may be omitted)."""
        self = super().__new__(cls, location)
        defaults = {"source_url": "", "mj_task_id": None, "written": True, "converted_from": None}
        values = {**defaults, **fields}
        missing = [f for f in cls._FIELDS if f not in values]
        if missing:
            raise TypeError(f"SavedImage needs {', '.join(missing)}")
        for key in cls._FIELDS:
            object.__setattr__(self, key, values[key])
        return self

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("SavedImage is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (str(self), {key: getattr(self, key) for key in self._FIELDS}))

    def __repr__(self) -> str:
        return (f"SavedImage({str(self)!r}, uri={self.uri!r}, size_bytes={self.size_bytes}, "
                f"media_type={self.media_type!r}, sha256={self.sha256[:12]}...)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able facts (for XCom or asset extras): everything but ``path`` and ``source_url``."""
        return {"uri": self.uri, "location": str(self), "name": self.name, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "media_type": self.media_type, "mj_task_id": self.mj_task_id,
                "written": self.written, "converted_from": self.converted_from}


def _restore(location: str, fields: dict[str, Any]) -> SavedImage:
    return SavedImage(location, **fields)


# ---------------------------------------------------------------------------------------------
# Destinations
# ---------------------------------------------------------------------------------------------


class Destination:
    """Where a save goes: a folder (``parent``) and, unless the caller gave a folder, a file ``name``.

    :param destination: a local path (``str`` or :class:`os.PathLike`), an
        ``airflow.sdk.ObjectStoragePath``, or a URL string such as ``"s3://conn_id@bucket/key.png"``.
        An existing directory, or a path ending in ``/``, is a folder: the file name then comes
        from the caller's default.
    """

    def __init__(self, destination: Any) -> None:
        if isinstance(destination, str) and _URL.match(destination):
            from airflow.sdk import ObjectStoragePath

            raw = destination
            destination = ObjectStoragePath(destination)
        else:
            raw = os.fspath(destination) if isinstance(destination, (str, os.PathLike)) else str(destination)
        self.is_object = _is_object_path(destination)
        is_local_object = self.is_object and _protocol(destination) in ("file", "local")
        self.is_local = not self.is_object or is_local_object
        #: the ObjectStoragePath given (kept so that its string, with the conn id, is what we return)
        self._object = destination if self.is_object else None
        folder = raw.endswith(("/", os.sep))
        if self.is_object:
            path = destination
            if not folder:
                try:
                    folder = bool(path.is_dir())
                except Exception:  # a store that cannot tell: it is a file name
                    folder = False
        else:
            path = Path(raw).expanduser()
            folder = folder or path.is_dir()
        self.parent = path if folder else path.parent
        self.name: str | None = None if folder else path.name

    def child(self, name: str) -> Any:
        """The path of ``name`` in this destination's folder (Path or ObjectStoragePath)."""
        return self.parent / name


def _is_object_path(destination: Any) -> bool:
    try:
        from airflow.sdk import ObjectStoragePath
    except ImportError:  # pragma: no cover
        return False
    return isinstance(destination, ObjectStoragePath)


def _protocol(path: Any) -> str:
    protocol = getattr(path, "protocol", "") or ""
    return (protocol[0] if isinstance(protocol, (tuple, list)) else protocol).lower()


def uri_of(path: Any) -> str:
    """The URI of a saved path without connection id: ``file:///...``, ``s3://bucket/key``."""
    if not _is_object_path(path):
        return Path(path).absolute().as_uri()
    protocol = _protocol(path)
    if protocol in ("file", "local"):
        return Path(path.path).absolute().as_uri()
    return f"{protocol}://{path.path.lstrip('/')}"


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


class ImageWriter:
    """Write one file from chunks, atomically; hash it on the way. Use :func:`open_writer`.

    Call :meth:`write` per chunk, then :meth:`commit` (returns the :class:`SavedImage`) or
    :meth:`abort` (leaves nothing behind). A writer is single-use.
    """

    def __init__(self, final: Any, location: str, media_type: str) -> None:
        self.final = final
        self.location = location
        self.media_type = media_type
        self.size = 0
        self._sha = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        """Append ``chunk`` to the file."""
        self._sha.update(chunk)
        self.size += len(chunk)
        self._write(chunk)

    def commit(self, **extra: Any) -> SavedImage:
        """Make the file visible at its final path (unless identical bytes are there already)."""
        digest = self._sha.hexdigest()
        same = self._holds(digest)
        if same:
            self._discard()
        else:
            self._publish()
        return SavedImage(self.location, uri=uri_of(self.final), path=self.final, name=self.final.name,
                          size_bytes=self.size, sha256=digest, media_type=self.media_type, written=not same,
                          **extra)

    def abort(self) -> None:
        """Drop what was written; the final path is untouched."""
        with contextlib.suppress(Exception):
            self._discard()

    def _holds(self, digest: str) -> bool:
        try:
            if self._existing_size() != self.size:
                return False
            sha = hashlib.sha256()
            with self._open_existing() as handle:
                while chunk := handle.read(_READ_CHUNK):
                    sha.update(chunk)
            return sha.hexdigest() == digest
        except Exception:  # missing, or unreadable: write it
            return False

    # Subclasses: where the bytes go.
    def _write(self, chunk: bytes) -> None:
        raise NotImplementedError

    def _publish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def _existing_size(self) -> int:
        raise NotImplementedError

    def _open_existing(self) -> Any:
        raise NotImplementedError


class _LocalWriter(ImageWriter):
    """A temporary sibling, fsynced, then ``os.replace``d into place."""

    def __init__(self, final: Path, location: str, media_type: str, fs_path: Path) -> None:
        super().__init__(final, location, media_type)
        self._target = fs_path
        fs_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{fs_path.name}.", suffix=".part", dir=fs_path.parent)
        self._tmp = tmp
        self._handle = os.fdopen(fd, "wb")

    def _write(self, chunk: bytes) -> None:
        self._handle.write(chunk)

    def _close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def _publish(self) -> None:
        try:
            self._close()
            os.replace(self._tmp, self._target)
        except BaseException:
            self.abort()
            raise

    def _discard(self) -> None:
        self._handle.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def _existing_size(self) -> int:
        return self._target.stat().st_size

    def _open_existing(self) -> Any:
        return open(self._target, "rb")


class _UploadWriter(ImageWriter):
    """The final object, written directly; the upload is committed on success, discarded on failure."""

    def __init__(self, final: Any, location: str, media_type: str) -> None:
        super().__init__(final, location, media_type)
        # fs.open, not final.open: ObjectStoragePath's wrapper reports lineage on every write call.
        self._handle = final.fs.open(final.path, "wb", block_size=UPLOAD_BLOCK_BYTES)

    def _write(self, chunk: bytes) -> None:
        self._handle.write(chunk)

    def _publish(self) -> None:
        try:
            self._handle.close()
        except BaseException:
            self.abort()
            raise

    def _discard(self) -> None:
        discard = getattr(self._handle, "discard", None)
        if discard is not None:
            discard()  # fsspec's buffered files: abort the multipart upload, PUT nothing
            self._handle.closed = True  # so that nothing flushes it later (garbage collection)
        else:  # pragma: no cover - a writer without discard commits on close: remove the object
            self._handle.close()
            self.final.fs.rm(self.final.path)

    def _existing_size(self) -> int:
        return int(self.final.fs.info(self.final.path)["size"])

    def _open_existing(self) -> Any:
        return self.final.fs.open(self.final.path, "rb")


class _MoveWriter(_UploadWriter):
    """Other filesystems: a temporary sibling object, then a rename into place."""

    def __init__(self, final: Any, location: str, media_type: str) -> None:
        self._tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.part"
        with contextlib.suppress(Exception):
            final.parent.mkdir(parents=True, exist_ok=True)
        ImageWriter.__init__(self, final, location, media_type)
        self._handle = final.fs.open(self._tmp.path, "wb")

    def _publish(self) -> None:
        try:
            self._handle.close()
            self.final.fs.mv(self._tmp.path, self.final.path)
        except BaseException:
            self.abort()
            raise

    def _discard(self) -> None:
        with contextlib.suppress(Exception):
            self._handle.close()
        self.final.fs.rm(self._tmp.path)


def open_writer(destination: Destination, name: str, media_type: str) -> ImageWriter:
    """A writer for file ``name`` in ``destination``'s folder."""
    final = destination.child(name)
    location = str(final)
    if not destination.is_object:
        return _LocalWriter(final, location, media_type, final)
    if destination.is_local:
        return _LocalWriter(final, location, media_type, Path(final.path))
    if _protocol(final) in ATOMIC_UPLOAD_PROTOCOLS:
        return _UploadWriter(final, location, media_type)
    return _MoveWriter(final, location, media_type)


def save_bytes(destination: Destination, name: str, data: bytes, media_type: str, **extra: Any) -> SavedImage:
    """Write ``data`` (an image already in memory: a converted or split image) atomically."""
    writer = open_writer(destination, name, media_type)
    try:
        writer.write(data)
    except BaseException:
        writer.abort()
        raise
    return writer.commit(**extra)


def report_lineage(hook: Any, saved: SavedImage) -> None:
    """Tell Airflow's hook-lineage collector about one saved image: its final URI, once."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    get_hook_lineage_collector().add_output_asset(context=hook, uri=saved.uri)
