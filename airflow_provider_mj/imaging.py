"""Image formats: what the bytes are (PNG, WebP, JPEG), converting between them, and the grid split.

Relays and CDNs serve Midjourney images as PNG, WebP or JPEG whatever the URL's extension says,
so the provider reads the format from the first bytes (:func:`sniff`), never from the URL.
:func:`sniff_image_type` is the one table of leading bytes, also used for the images a submit
sends (:mod:`~airflow_provider_mj.inputs`, which accepts GIF too).
Reading the format needs nothing; converting and splitting need Pillow, from the optional extra
``airflow-provider-mj[images]`` (:func:`require_pillow` says so when it is missing).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO, Any

from airflow_provider_mj.exceptions import MidjourneyConfigurationError

#: How many leading bytes :func:`sniff` needs.
SNIFF_BYTES = 16


@dataclass(frozen=True)
class ImageFormat:
    """One image format: its short name, media type, file extension and Pillow's name for it."""

    name: str
    media_type: str
    extension: str
    pillow_name: str


PNG = ImageFormat("png", "image/png", ".png", "PNG")
WEBP = ImageFormat("webp", "image/webp", ".webp", "WEBP")
JPEG = ImageFormat("jpeg", "image/jpeg", ".jpg", "JPEG")

#: The extensions a destination may ask for, and the format each one means.
FORMATS_BY_EXTENSION: dict[str, ImageFormat] = {".png": PNG, ".webp": WEBP, ".jpg": JPEG, ".jpeg": JPEG}


_BY_MEDIA_TYPE = {fmt.media_type: fmt for fmt in (PNG, WEBP, JPEG)}


def sniff_image_type(data: bytes) -> str | None:
    """The media type of an image from its first bytes (PNG, JPEG, WebP, GIF), or ``None``."""
    head = bytes(data[:SNIFF_BYTES])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def sniff(head: bytes) -> ImageFormat | None:
    """The format of an image from its first :data:`SNIFF_BYTES` bytes, None when it is none the
    provider saves (GIF included: a download of one is kept as it came)."""
    return _BY_MEDIA_TYPE.get(sniff_image_type(head) or "")


def format_for_name(name: str) -> ImageFormat | None:
    """The format a file name asks for by its extension (``cat.PNG`` -> PNG), None for no image extension."""
    dot = name.rfind(".")
    return FORMATS_BY_EXTENSION.get(name[dot:].lower()) if dot > 0 else None


def has_pillow() -> bool:
    """Whether Pillow (the ``images`` extra) is importable."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def require_pillow(feature: str) -> Any:
    """``PIL.Image``, or a clear error naming the extra that brings it."""
    try:
        from PIL import Image
    except ImportError:
        raise MidjourneyConfigurationError(
            f"{feature} needs Pillow, which is not installed. Install the provider's images extra: "
            "pip install 'airflow-provider-mj[images]'."
        ) from None
    return Image


def _save_options(fmt: ImageFormat) -> dict[str, Any]:
    if fmt is WEBP:
        return {"lossless": True, "quality": 100, "method": 4}
    if fmt is JPEG:
        return {"quality": 95}
    return {"optimize": False, "compress_level": 6}


def encode(image: Any, fmt: ImageFormat) -> bytes:
    """Encode a Pillow image: PNG and WebP lossless (pixel-exact), JPEG at quality 95."""
    if fmt is JPEG and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, fmt.pillow_name, **_save_options(fmt))
    return out.getvalue()


def convert(source: IO[bytes], fmt: ImageFormat) -> bytes:
    """Re-encode the image read from ``source`` in ``fmt`` (needs Pillow)."""
    image_module = require_pillow(f"Converting an image to {fmt.name.upper()}")
    with image_module.open(source) as image:
        image.load()
        return encode(image, fmt)


def split_grid(source: IO[bytes], fmt: ImageFormat) -> list[bytes]:
    """Cut a 2x2 grid into its four images, in Midjourney's order (1 2 / 3 4), encoded in ``fmt``.

    An odd width or height leaves the last column or row out, as the grid's cells are equal.
    """
    image_module = require_pillow("split_grid=True")
    with image_module.open(source) as grid:
        grid.load()
        width, height = grid.size
        if width < 2 or height < 2:
            raise ValueError(f"A {width}x{height} image is too small to be a 2x2 grid.")
        cw, ch = width // 2, height // 2
        boxes = [(0, 0, cw, ch), (cw, 0, 2 * cw, ch), (0, ch, cw, 2 * ch), (cw, ch, 2 * cw, 2 * ch)]
        return [encode(grid.crop(box), fmt) for box in boxes]
