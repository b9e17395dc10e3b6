"""Image downloads: streamed from the server to the destination in chunks, sync and async.

What :meth:`MidjourneyHook.download_image
<airflow_provider_mj.hooks.midjourney.MidjourneyHook.download_image>` and its async twin stand
on: which URL a URL or task stands for (:func:`image_source`, checked before any request), the
download, and the lineage report of what was saved. The image is never held in memory whole:
each chunk of :data:`CHUNK_BYTES` is hashed and written as it arrives
(:mod:`~airflow_provider_mj.hooks.storage` writes it atomically). The first bytes decide the format (:func:`~airflow_provider_mj.imaging.sniff`), hence the file's extension;
only a conversion to the format a destination's extension asks for, or the grid split, goes
through a local temporary file first, because Pillow needs the whole image.

A download is retried like every read (one tenacity policy, :mod:`~airflow_provider_mj.hooks.retries`);
a try that fails half-way leaves nothing at the destination, and the next try starts afresh.
The API key is sent only when the image is on the API server's own origin, and never follows a
redirect off it (:mod:`~airflow_provider_mj.hooks.redirects`).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urljoin, urlsplit

from airflow_provider_mj import imaging, inputs
from airflow_provider_mj.exceptions import (
    MidjourneyError,
    MidjourneyNotFoundError,
    MidjourneyServerError,
    MidjourneyValidationError,
)
from airflow_provider_mj.hooks.connection import USER_AGENT, MidjourneyConnectionConfig, origin_of
from airflow_provider_mj.hooks.redirects import MAX_REDIRECTS, aiohttp_guard, raise_for_redirect, shown_url
from airflow_provider_mj.hooks.errors import RequestContext, body_snippet
from airflow_provider_mj.hooks.replies import interpret_response
from airflow_provider_mj.hooks.retries import retrying
from airflow_provider_mj.hooks.storage import (
    Destination,
    ImageWriter,
    SavedImage,
    open_writer,
    report_lineage,
    save_bytes,
)
from airflow_provider_mj.models import MidjourneyTask, TaskOutcome, task_outcome

#: Bytes read from the network, hashed and written at a time.
CHUNK_BYTES = 256 * 1024
#: At most this much of an error reply is read (to quote it in the error).
_ERROR_BODY_BYTES = 64 * 1024


def image_source(hook: Any, url_or_task: Any, split_grid: bool) -> tuple[str, str | None]:
    """What a download fetches: the absolute image URL and the task it belongs to (if known).

    Everything here is checked before any request: an image URL (absolute, or relative to the
    base URL) or a task with an ``imageUrl``, an http(s) URL, and Pillow when the grid is split.
    """
    base = hook.config.base_url + "/"
    mj_task_id = None
    if isinstance(url_or_task, (MidjourneyTask, Mapping)):
        task = url_or_task if isinstance(url_or_task, MidjourneyTask) else MidjourneyTask.from_api(dict(url_or_task))
        if not task.image_url:
            raise MidjourneyValidationError(
                f"Task {task.id or '?'} has no imageUrl (status {task.raw_status or task.status.value}); wait for it "
                "to succeed first (describe and shorten tasks may have no image).",
                mj_task_id=task.id or None,
            )
        if task_outcome(task) is not TaskOutcome.SUCCEEDED:
            hook.log.warning("Task %s is %s; its imageUrl may be a preview.", task.id, task.raw_status)
        url, mj_task_id = urljoin(base, task.image_url), task.id or None
    elif isinstance(url_or_task, str) and url_or_task.strip():
        url = urljoin(base, url_or_task.strip())
    else:
        raise MidjourneyValidationError("download_image needs an image URL or a task (MidjourneyTask or its dict).")
    try:
        inputs.validate_http_url(url, field="image URL")
    except MidjourneyValidationError:
        raise MidjourneyValidationError(f"The image URL {url[:80]!r} is not an http(s) URL.") from None
    if split_grid:
        imaging.require_pillow("split_grid=True")
    return url, mj_task_id


def _reported(hook: Any, saved: SavedImage | list[SavedImage]) -> SavedImage | list[SavedImage]:
    """Report each saved image to the hook lineage, once, and log it."""
    for one in saved if isinstance(saved, list) else [saved]:
        report_lineage(hook, one)
        hook.log.info("%s %d bytes of %s to %s.", "Saved" if one.written else "Kept the identical",
                      one.size_bytes, one.media_type, one)
    return saved


def default_stem(url: str, mj_task_id: str | None) -> str:
    """The file name (without extension) of an image saved into a folder: the URL's, else the task id."""
    stem = PurePosixPath(unquote(urlsplit(url).path)).stem
    stem = "".join(ch for ch in stem if ch.isalnum() or ch in "-_.")
    return stem or mj_task_id or "midjourney"


def _stem_of(name: str) -> str:
    return name[: name.rfind(".")] if imaging.format_for_name(name) else name


class ImageReceiver:
    """One try of one download: from the first bytes it decides what to write where, then writes.

    Used alike by the blocking and the async path: :meth:`begin` with the reply's headers and its
    first bytes, :meth:`feed` per further chunk, then :meth:`finish` (the saved image, or the four
    images of a split grid) or :meth:`abort` (nothing left behind).
    """

    def __init__(self, *, url: str, mj_task_id: str | None, destination: Destination, split_grid: bool,
                 ctx: RequestContext, log: Any) -> None:
        self.url, self.mj_task_id, self.destination = url, mj_task_id, destination
        self.split_grid, self.ctx, self.log = split_grid, ctx, log
        self._writer: ImageWriter | None = None
        self._spool: IO[bytes] | None = None
        self._name = ""
        self._fmt: imaging.ImageFormat | None = None
        self._convert_to: imaging.ImageFormat | None = None

    # -- deciding -------------------------------------------------------------------------------

    def begin(self, status: int, headers: Mapping[str, str], head: bytes) -> None:
        """Check the first bytes, choose the file name and open the writer; then write ``head``."""
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not head:
            raise MidjourneyServerError(f"The image at {shown_url(self.url)} is empty.", http_status=status,
                                        mj_task_id=self.mj_task_id)
        fmt = imaging.sniff(head[: imaging.SNIFF_BYTES])
        if fmt is None and (content_type in ("text/html", "application/json", "text/plain")
                            or head.lstrip()[:1] in (b"<", b"{")):
            raise MidjourneyServerError(
                f"The image URL {shown_url(self.url)} answered {content_type or 'text'} instead of an image: "
                f"{body_snippet(head, self.ctx)!r}.", http_status=status, mj_task_id=self.mj_task_id,
            )
        self._fmt = fmt
        media_type = fmt.media_type if fmt else (content_type or "application/octet-stream")
        requested = self.destination.name
        wanted = imaging.format_for_name(requested) if requested else None
        stem = _stem_of(requested) if requested else default_stem(self.url, self.mj_task_id)
        if self.split_grid:
            self._spool = tempfile.TemporaryFile(prefix="mj-grid-")
            self._name, self._convert_to = stem, wanted or fmt or imaging.PNG
        elif fmt is None:
            self.log.warning("The image at %s is not PNG, WebP or JPEG (Content-Type %r); saving it as it came.",
                             shown_url(self.url), content_type or "none")
            self._name = requested or stem
            self._writer = open_writer(self.destination, self._name, media_type)
        elif wanted is not None and wanted is not fmt and imaging.has_pillow():
            self.log.info("The image is %s; converting it to %s, as %s asks.", fmt.name.upper(),
                          wanted.name.upper(), requested)
            self._spool = tempfile.TemporaryFile(prefix="mj-convert-")
            self._name, self._convert_to = requested or stem, wanted
        else:
            if wanted is not None and wanted is not fmt:
                self.log.warning(
                    "The image is %s, not %s as the name %s says; saving it as %s. Install "
                    "'airflow-provider-mj[images]' to have it converted instead.",
                    fmt.name.upper(), wanted.name.upper(), requested, stem + fmt.extension,
                )
            keep = requested if wanted is fmt else None
            self._name = keep or stem + fmt.extension
            self._writer = open_writer(self.destination, self._name, media_type)
        self.feed(head)

    # -- writing --------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Write one more chunk."""
        if self._spool is not None:
            self._spool.write(chunk)
        elif self._writer is not None:
            self._writer.write(chunk)

    def finish(self) -> SavedImage | list[SavedImage]:
        """Publish what was written (converted or split first when asked)."""
        extra = {"source_url": self.url, "mj_task_id": self.mj_task_id}
        try:
            if self._writer is not None:
                return self._writer.commit(**extra)
            assert self._spool is not None and self._convert_to is not None
            self._spool.seek(0)
            fmt = self._convert_to
            source_type = self._fmt.media_type if self._fmt else None
            if self.split_grid:
                parts = self._decode(imaging.split_grid, fmt)
                return [save_bytes(self.destination, f"{self._name}_{n}{fmt.extension}", data, fmt.media_type,
                                   converted_from=source_type if self._fmt is not fmt else None, **extra)
                        for n, data in enumerate(parts, start=1)]
            data = self._decode(imaging.convert, fmt)
            return save_bytes(self.destination, self._name, data, fmt.media_type, converted_from=source_type,
                              **extra)
        except BaseException:
            self.abort()
            raise
        finally:
            if self._spool is not None:
                self._spool.close()

    def _decode(self, work: Any, fmt: imaging.ImageFormat) -> Any:
        """Run a Pillow step on the downloaded image; an image Pillow cannot read is the server's fault."""
        try:
            return work(self._spool, fmt)
        except MidjourneyError:
            raise
        except Exception as err:  # Pillow: UnidentifiedImageError, OSError (truncated), ValueError
            raise MidjourneyServerError(
                f"The image at {shown_url(self.url)} could not be decoded ({type(err).__name__}: {err}); "
                "it may be truncated or not an image.", mj_task_id=self.mj_task_id,
            ) from None

    def abort(self) -> None:
        """Leave nothing behind."""
        if self._writer is not None:
            self._writer.abort()
        if self._spool is not None:
            with contextlib.suppress(Exception):
                self._spool.close()


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def _request_headers(config: MidjourneyConnectionConfig, url: str) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "image/png,image/webp,image/jpeg,image/*;q=0.8,*/*;q=0.5"}
    if origin_of(url) == config.origin:
        headers.update(config.auth_headers())
    return headers


def _check_status(status: int, headers: Mapping[str, str], body: bytes, url: str, ctx: RequestContext,
                  config: MidjourneyConnectionConfig) -> None:
    if status in (401, 403, 429) or status >= 500:
        interpret_response("download", status, headers, body, route=ctx.route, conn_id=ctx.conn_id,
                           mj_task_id=ctx.mj_task_id, secret=config.api_key)
    if status == 404:
        raise MidjourneyNotFoundError(
            f"The image is gone (HTTP 404 for {shown_url(url)}): image URLs of some servers expire; "
            "fetch the task again for a fresh imageUrl.", http_status=404, mj_task_id=ctx.mj_task_id,
        )
    if not 200 <= status < 300:
        raise MidjourneyServerError(f"The image download failed (HTTP {status} for {shown_url(url)}).",
                                    http_status=status, mj_task_id=ctx.mj_task_id)


def _head(chunks: Iterator[bytes]) -> bytes:
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= imaging.SNIFF_BYTES:
            break
    return head


def download(hook: Any, url_or_task: Any, destination: Any, *,
             split_grid: bool = False) -> SavedImage | list[SavedImage]:
    """Stream the image of ``url_or_task`` to ``destination`` with the hook's session and retry policy (blocking)."""
    import requests

    from airflow_provider_mj.hooks.transport import _requests_failure

    url, mj_task_id = image_source(hook, url_or_task, split_grid)
    config = hook.config
    session = hook.get_conn()
    target = destination if isinstance(destination, Destination) else Destination(destination)
    headers = _request_headers(config, url)
    ctx = RequestContext(kind="download", route=urlsplit(url).path, conn_id=hook.midjourney_conn_id,
                         mj_task_id=mj_task_id, secret=config.api_key)

    def get_once() -> SavedImage | list[SavedImage]:
        receiver = ImageReceiver(url=url, mj_task_id=mj_task_id, destination=target, split_grid=split_grid,
                                 ctx=ctx, log=hook.log)
        try:
            with session.get(url, headers=headers, timeout=(config.timeout, config.timeout),
                             stream=True) as response:
                status = response.status_code
                raise_for_redirect(status, response.headers.get("Location"), url=url, ctx=ctx)
                if not 200 <= status < 300:
                    body = response.raw.read(_ERROR_BODY_BYTES, decode_content=True) or b""
                    _check_status(status, response.headers, body, url, ctx, config)
                chunks = response.iter_content(CHUNK_BYTES)
                receiver.begin(status, response.headers, _head(chunks))
                for chunk in chunks:
                    receiver.feed(chunk)
        except requests.RequestException as err:
            receiver.abort()
            raise _requests_failure(ctx, err) from None
        except BaseException:
            receiver.abort()
            raise
        return receiver.finish()

    policy = retrying(config, is_submit=False, what="Image download", log=hook.log, sleep=hook._sleep)
    return _reported(hook, policy(get_once))


async def adownload(hook: Any, url_or_task: Any, destination: Any, *,
                    split_grid: bool = False) -> SavedImage | list[SavedImage]:
    """:func:`download` on the running event loop (the trigger's).

    The network is read with the loop's shared aiohttp session; file and object-store writes,
    which block, run in a worker thread chunk by chunk, so the loop never waits on them.
    """
    import aiohttp

    from airflow_provider_mj.hooks.transport import _aiohttp_failure

    url, mj_task_id = image_source(hook, url_or_task, split_grid)
    config = await hook.aget_config()  # the hook's own, current connection (the shared session holds none)
    entry = await hook._aentry()
    target = destination if isinstance(destination, Destination) else await asyncio.to_thread(
        Destination, destination)
    headers = _request_headers(config, url)
    ctx = RequestContext(kind="download", route=urlsplit(url).path, conn_id=hook.midjourney_conn_id,
                         mj_task_id=mj_task_id, secret=config.api_key)
    timeout = aiohttp.ClientTimeout(total=None, connect=config.timeout, sock_read=config.timeout)

    async def get_once() -> SavedImage | list[SavedImage]:
        receiver = ImageReceiver(url=url, mj_task_id=mj_task_id, destination=target, split_grid=split_grid,
                                 ctx=ctx, log=hook.log)
        try:
            async with entry.session.get(url, headers=headers, timeout=timeout, max_redirects=MAX_REDIRECTS,
                                         middlewares=(aiohttp_guard(url),)) as response:
                status = response.status
                raise_for_redirect(status, response.headers.get("Location"), url=url, ctx=ctx)
                if not 200 <= status < 300:
                    body = await response.content.read(_ERROR_BODY_BYTES)
                    _check_status(status, response.headers, body, url, ctx, config)
                head = b""
                started = False
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    if started:
                        await asyncio.to_thread(receiver.feed, chunk)
                        continue
                    head += chunk
                    if len(head) >= imaging.SNIFF_BYTES:
                        await asyncio.to_thread(receiver.begin, status, response.headers, head)
                        started = True
                if not started:
                    await asyncio.to_thread(receiver.begin, status, response.headers, head)
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            await asyncio.to_thread(receiver.abort)
            raise _aiohttp_failure(ctx, err) from None
        except BaseException:
            await asyncio.to_thread(receiver.abort)
            raise
        return await asyncio.to_thread(receiver.finish)

    policy = retrying(config, is_submit=False, what="Image download", log=hook.log, sleep=hook._asleep,
                      is_async=True)
    return _reported(hook, await policy(get_once))
