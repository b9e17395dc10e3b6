"""Local validation of request inputs and image helpers, shared by the hook and the emulator.

Everything a submit sends is checked here *before* any request leaves the machine, so a typo
costs nothing (no quota, no queue slot) and the error says what to change. Each check raises
:class:`~airflow_provider_mj.exceptions.MidjourneyValidationError`.

Images may be given as a data URL (``data:image/png;base64,...``), a local file path (``str`` or
:class:`pathlib.Path`) or raw ``bytes``; :func:`to_data_url` turns any of them into the data URL
the API wants, sniffing the real image type from its first bytes.

This module imports only the standard library (and our exceptions, models and imaging modules),
so the emulator can use the very same rules.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlsplit

from airflow_provider_mj.exceptions import MidjourneyValidationError
from airflow_provider_mj.imaging import sniff_image_type
from airflow_provider_mj.models import MidjourneyTask

#: Longest prompt accepted locally. Midjourney itself cuts prompts far shorter than this; the
#: limit only catches obvious mistakes (a whole file pasted as a prompt).
MAX_PROMPT_LENGTH = 6000
#: ``state`` is echoed back on the task; servers store at most 255 characters.
MAX_STATE_LENGTH = 255
#: ``notifyHook`` is a callback URL; servers store at most 2000 characters.
MAX_NOTIFY_HOOK_LENGTH = 2000
#: ``/submit/blend`` takes 2 to 5 images.
MIN_BLEND_IMAGES = 2
MAX_BLEND_IMAGES = 5

#: Blend aspect ratios: PORTRAIT (2:3), SQUARE (1:1, the default), LANDSCAPE (3:2).
DIMENSIONS: tuple[str, ...] = ("PORTRAIT", "SQUARE", "LANDSCAPE")
#: Which Discord bot runs the job.
BOT_TYPES: tuple[str, ...] = ("MID_JOURNEY", "NIJI_JOURNEY")
#: Values of ``accountFilter.modes``.
ACCOUNT_MODES: tuple[str, ...] = ("RELAX", "FAST", "TURBO")
#: Image types a data URL may carry, by MIME type.
IMAGE_MIME_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp", "image/gif")

#: Anything :func:`to_data_url` accepts.
ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]

_DATA_URL = re.compile(r"^data:(?P<mime>[A-Za-z0-9.+/-]+);base64,(?P<data>.*)$", re.DOTALL)


def _fail(message: str) -> MidjourneyValidationError:
    return MidjourneyValidationError(message)


def _short(value: Any, limit: int = 60) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[: limit - 1] + "\u2026")


# ---------------------------------------------------------------------------------------------
# Text fields
# ---------------------------------------------------------------------------------------------


def validate_prompt(prompt: Any, *, field: str = "prompt", required: bool = True) -> str | None:
    """Check a prompt: a non-blank string of at most :data:`MAX_PROMPT_LENGTH` characters.

    :param prompt: the prompt text.
    :param field: the parameter name used in the error message.
    :param required: when False, ``None`` or ``""`` is accepted and returned as ``None``.
    :return: the prompt with surrounding whitespace removed (or ``None`` when optional and empty).
    """
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        if required:
            raise _fail(f"{field} is empty: pass the text Midjourney should work from, e.g. {field}='a red fox'.")
        return None
    if not isinstance(prompt, str):
        raise _fail(f"{field} must be a string, got {type(prompt).__name__}.")
    prompt = prompt.strip()
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise _fail(
            f"{field} is {len(prompt)} characters long; the limit is {MAX_PROMPT_LENGTH}. Shorten it "
            "(the shorten endpoint can help)."
        )
    return prompt


def validate_state(state: Any) -> str | None:
    """Check ``state``, the free tag echoed back on the task: a string of at most 255 characters.

    :param state: the tag, or ``None``.
    :return: the tag unchanged (``None`` stays ``None``).
    """
    if state is None:
        return None
    if not isinstance(state, str):
        raise _fail(f"state must be a string, got {type(state).__name__}: convert it with str() or json.dumps().")
    if len(state) > MAX_STATE_LENGTH:
        raise _fail(
            f"state is {len(state)} characters long; servers keep at most {MAX_STATE_LENGTH}. Use a shorter "
            "tag (for example the Airflow run id) and keep bigger data in XCom."
        )
    return state


def validate_http_url(url: Any, *, field: str, max_length: int | None = None) -> str:
    """Check that ``url`` is an absolute ``http://`` or ``https://`` URL with a host.

    :param url: the URL.
    :param field: the parameter name used in the error message.
    :param max_length: the longest URL accepted, if any.
    :return: the URL with surrounding whitespace removed.
    """
    if not isinstance(url, str) or not url.strip():
        raise _fail(f"{field} must be an http(s) URL such as 'https://example.com/cat.png', got {_short(url)}.")
    url = url.strip()
    if max_length is not None and len(url) > max_length:
        raise _fail(f"{field} is {len(url)} characters long; the limit is {max_length}.")
    if any(ch.isspace() for ch in url):
        raise _fail(f"{field} contains whitespace: {_short(url)}. Percent-encode it (%20).")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        raise _fail(f"{field} is not a valid URL: {_short(url)}.") from None
    if parts.scheme.lower() not in ("http", "https") or not hostname:
        raise _fail(
            f"{field} must be an absolute http:// or https:// URL with a host, got {_short(url)}."
        )
    return url


def validate_notify_hook(url: Any) -> str | None:
    """Check ``notifyHook``: an http(s) callback URL of at most 2000 characters, or ``None``."""
    if url is None or url == "":
        return None
    return validate_http_url(url, field="notify_hook", max_length=MAX_NOTIFY_HOOK_LENGTH)


def validate_link(url: Any) -> str:
    """Check the ``link`` of a describe request: the http(s) URL of an image."""
    return validate_http_url(url, field="link", max_length=MAX_NOTIFY_HOOK_LENGTH)


def _enum(value: Any, allowed: tuple[str, ...], field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{field} must be one of {', '.join(allowed)}, got {_short(value)}.")
    normal = re.sub(r"[\s-]+", "_", value.strip()).upper()
    if normal not in allowed:
        raise _fail(f"{field} must be one of {', '.join(allowed)} (any case), got {_short(value)}.")
    return normal


def validate_dimensions(dimensions: Any) -> str:
    """Check a blend's ``dimensions``: PORTRAIT, SQUARE or LANDSCAPE, in any case.

    :return: the upper-case value the API expects; ``None`` gives ``"SQUARE"``.
    """
    if dimensions is None:
        return "SQUARE"
    return _enum(dimensions, DIMENSIONS, "dimensions")


def validate_bot_type(bot_type: Any) -> str | None:
    """Check ``botType``: MID_JOURNEY or NIJI_JOURNEY, in any case (``None``: the server default)."""
    if bot_type is None or bot_type == "":
        return None
    return _enum(bot_type, BOT_TYPES, "bot_type")


def validate_account_filter(account_filter: Any) -> dict[str, Any] | None:
    """Check ``accountFilter`` (``{"modes": [...], "instanceId": ..., "remix": bool}``).

    ``modes`` entries are upper-cased and must be RELAX, FAST or TURBO; other keys pass through
    unchanged, since servers add their own.
    """
    if account_filter is None:
        return None
    if not isinstance(account_filter, Mapping):
        raise _fail(
            "account_filter must be a dict such as {'modes': ['FAST'], 'instanceId': '...'}, got "
            f"{type(account_filter).__name__}."
        )
    out = dict(account_filter)
    modes = out.get("modes")
    if modes is not None:
        if isinstance(modes, str) or not isinstance(modes, Iterable):
            raise _fail("account_filter['modes'] must be a list such as ['FAST'] or ['RELAX', 'FAST'].")
        out["modes"] = [_enum(m, ACCOUNT_MODES, "account_filter['modes']") for m in modes]
    if "remix" in out and out["remix"] is not None and not isinstance(out["remix"], bool):
        raise _fail("account_filter['remix'] must be True or False.")
    if "instanceId" in out and out["instanceId"] is not None and not isinstance(out["instanceId"], str):
        raise _fail("account_filter['instanceId'] must be a string.")
    return out


def validate_mj_task_id(mj_task_id: Any, *, field: str = "mj_task_id") -> str:
    """Check a Midjourney task id: a non-blank string (ints are accepted and converted).

    :return: the id as a string, without surrounding whitespace.
    """
    if isinstance(mj_task_id, int) and not isinstance(mj_task_id, bool):
        mj_task_id = str(mj_task_id)
    if not isinstance(mj_task_id, str) or not mj_task_id.strip():
        raise _fail(
            f"{field} is empty: pass the id a submit returned (SubmitResult.mj_task_id, the 'mj_task_id' XCom)."
        )
    mj_task_id = mj_task_id.strip()
    if "/" in mj_task_id or any(ch.isspace() for ch in mj_task_id) or len(mj_task_id) > 200:
        raise _fail(f"{field} {_short(mj_task_id)} is not a task id (a task id looks like '1320098173412546').")
    return mj_task_id


def as_mj_task_id(value: Any, *, field: str = "mj_task_id") -> str:
    """Accept a task id in every shape a DAG naturally has it, and check it.

    A string (or int) id; a task dict as the submit operators return it (``{"id": ...}``, so
    ``mj_task_id=imagine.output`` works); a :class:`~airflow_provider_mj.models.MidjourneyTask`.
    """
    if isinstance(value, MidjourneyTask):
        value = value.id
    elif isinstance(value, dict):
        value = value.get("id") or value.get("mj_task_id") or value.get("result")
    return validate_mj_task_id(value, field=field)


def validate_mj_task_ids(mj_task_ids: Any) -> list[str]:
    """Check a list of task ids (for list-by-condition); a single string is not accepted."""
    if isinstance(mj_task_ids, (str, bytes)) or not isinstance(mj_task_ids, Iterable):
        raise _fail("mj_task_ids must be a list of task ids, e.g. ['1320098173412546'].")
    return [validate_mj_task_id(i, field="mj_task_ids[]") for i in mj_task_ids]


def validate_custom_id(custom_id: Any) -> str:
    """Check a button ``customId``: a non-blank string such as ``MJ::JOB::upsample::1::<hash>``."""
    if not isinstance(custom_id, str) or not custom_id.strip():
        raise _fail(
            "custom_id is empty: pass a customId from the parent task's buttons, or a button label "
            "such as 'U1' (MidjourneyHook.resolve_button turns labels into customIds)."
        )
    return custom_id.strip()


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def is_data_url(value: Any) -> bool:
    """True when ``value`` is a string that starts like a data URL (``data:...``)."""
    return isinstance(value, str) and value.lstrip()[:5].lower() == "data:"


def parse_data_url(value: Any, *, field: str = "image") -> tuple[str, bytes]:
    """Split a data URL into its MIME type and decoded bytes, checking it on the way.

    The format is ``data:image/<png|jpeg|webp|gif>;base64,<base64>``.

    :param value: the data URL.
    :param field: the parameter name used in the error message.
    :return: ``(mime_type, image_bytes)``.
    """
    example = "data:image/png;base64,iVBORw0KGgo..."
    if not isinstance(value, str):
        raise _fail(f"{field} must be a data URL like {example!r}, got {type(value).__name__}.")
    match = _DATA_URL.match(value.strip())
    if not match:
        raise _fail(
            f"{field} is not a base64 data URL (expected {example!r}, got {_short(value, 40)}). Pass a "
            "local file path or bytes instead and the hook will encode it."
        )
    mime = match.group("mime").lower()
    if mime not in IMAGE_MIME_TYPES:
        raise _fail(
            f"{field} has type {mime!r}; Midjourney accepts {', '.join(IMAGE_MIME_TYPES)}. Convert the image first."
        )
    payload = re.sub(r"\s+", "", match.group("data"))
    if not payload:
        raise _fail(f"{field} is a data URL with no image data after 'base64,'.")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(f"{field} is a data URL whose data is not valid base64; re-encode the image.") from None
    if not data:
        raise _fail(f"{field} is a data URL with no image data after 'base64,'.")
    return mime, data


def validate_data_url(value: Any, *, field: str = "image") -> str:
    """Check a data URL (``data:image/png;base64,...``) and return it in canonical form."""
    mime, data = parse_data_url(value, field=field)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _encode(data: bytes, field: str, origin: str) -> str:
    if not data:
        raise _fail(f"{field}: {origin} is empty.")
    mime = sniff_image_type(data)
    if mime is None:
        raise _fail(
            f"{field}: {origin} is not a PNG, JPEG, WEBP or GIF image (its first bytes do not match any). "
            "Convert it to one of those."
        )
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def to_data_url(image: Any, *, field: str = "image") -> str:
    """Turn an image into the data URL the API expects.

    :param image: a data URL (checked and returned), a local file path (``str`` or
        :class:`pathlib.Path`; its type is sniffed from its first bytes), or the image ``bytes``.
        http(s) URLs are refused: the submit routes take the image itself (describe has ``link``).
    :param field: the parameter name used in error messages.
    :return: ``data:image/<type>;base64,<data>``.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _encode(bytes(image), field, "the bytes given")
    if is_data_url(image):
        return validate_data_url(image, field=field)
    if isinstance(image, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", image.strip()):
        scheme = image.strip().split("://", 1)[0].lower()
        if scheme in ("http", "https"):
            raise _fail(
                f"{field} is a URL ({_short(image, 50)}); this parameter needs the image itself. Download it "
                "first, or for describe pass it as link=..."
            )
        raise _fail(f"{field} must be a data URL, a local file path or bytes, got {_short(image, 50)}.")
    if isinstance(image, (str, os.PathLike)):
        if isinstance(image, str) and not image.strip():
            raise _fail(f"{field} is empty: pass a data URL, a local file path or bytes.")
        path = Path(os.fspath(image)).expanduser()
        if not path.exists():
            raise _fail(
                f"{field}: no file at {str(path)!r} (and it is not a data URL like 'data:image/png;base64,...'). "
                "Check the path; relative paths are resolved from the worker's current directory."
            )
        if not path.is_file():
            raise _fail(f"{field}: {str(path)!r} is not a file.")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise _fail(f"{field}: cannot read {str(path)!r}: {err.strerror or err}.") from None
        return _encode(data, field, f"the file {str(path)!r}")
    raise _fail(f"{field} must be a data URL, a local file path or bytes, got {type(image).__name__}.")


def to_data_urls(
    images: Any,
    *,
    field: str = "images",
    min_count: int = 0,
    max_count: int | None = None,
) -> list[str]:
    """Turn a list of images into data URLs (see :func:`to_data_url`), checking how many there are.

    :param images: a list (or other iterable) of images; a single image is refused, to catch
        ``images="a.png"`` when a list was meant.
    :param field: the parameter name used in error messages.
    :param min_count: the fewest images accepted.
    :param max_count: the most images accepted, if limited.
    """
    items = check_image_count(images, field=field, min_count=min_count, max_count=max_count)
    return [to_data_url(item, field=f"{field}[{i}]") for i, item in enumerate(items)]


def check_image_count(images: Any, *, field: str = "images", min_count: int = 0,
                      max_count: int | None = None) -> list[Any]:
    """Check that ``images`` is a list of ``min_count`` to ``max_count`` items; return it as a list.

    Only the count and the shape are checked (no file is read), so operators call it first thing.
    """
    if images is None:
        images = []
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)) or not isinstance(images, Iterable):
        raise _fail(f"{field} must be a list of images (data URLs, file paths or bytes), e.g. ['a.png', 'b.png'].")
    items = list(images)
    if len(items) < min_count or (max_count is not None and len(items) > max_count):
        bounds = f"{min_count} to {max_count}" if max_count is not None else f"at least {min_count}"
        raise _fail(f"{field} has {len(items)} image(s); this endpoint takes {bounds}.")
    return items


__all__ = [
    "ACCOUNT_MODES",
    "BOT_TYPES",
    "DIMENSIONS",
    "IMAGE_MIME_TYPES",
    "MAX_BLEND_IMAGES",
    "MAX_NOTIFY_HOOK_LENGTH",
    "MAX_PROMPT_LENGTH",
    "MAX_STATE_LENGTH",
    "MIN_BLEND_IMAGES",
    "check_image_count",
    "is_data_url",
    "parse_data_url",
    "sniff_image_type",
    "to_data_url",
    "to_data_urls",
    "validate_account_filter",
    "validate_bot_type",
    "validate_custom_id",
    "validate_data_url",
    "validate_dimensions",
    "validate_http_url",
    "validate_link",
    "validate_mj_task_id",
    "validate_mj_task_ids",
    "validate_notify_hook",
    "validate_prompt",
    "validate_state",
]
