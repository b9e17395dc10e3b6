"""Deterministic placeholder images: PNG written with zlib and struct only; WebP and JPEG with Pillow.

An image is fully described by its URL name ``<seed>_<kind>_<w>x<h>.<ext>``: the emulator keeps no
image per task, it re-makes any image from its name, and caches the bytes in a bounded LRU. The
same name always gives the same bytes.

Formats, as relays and CDNs serve them: the extension ``.png``, ``.webp`` or ``.jpg`` picks the
encoding, and a ``?format=webp`` (or ``png``, ``jpeg``) query overrides it whatever the name says,
as Discord's media proxy does, so a ``.png`` link can answer WebP bytes. PNG needs nothing; WebP
and JPEG are encoded by :func:`airflow_provider_mj.imaging.encode` (the provider's own formats and
Pillow settings: WebP lossless, so its pixels equal the PNG's), which needs Pillow, the optional
``images`` extra: the emulator stays dependency-free, and without Pillow those requests answer
HTTP 501 with :func:`~airflow_provider_mj.imaging.require_pillow`'s message saying what to install.

What a picture shows, so that it reads as what it is: a small landscape (sky, sun, three ridges)
in a palette taken from the prompt's words ("dusk" is orange, "ocean" blue, "night" dark...), a
dark frame that becomes the gutter between the four images of a grid, the image's number (1..4)
in its top-left corner, and a small "EMULATOR" mark in its bottom-right corner.

A seed is 16 hex digits: 3 for the palette, 12 of hash, and 1 for the image's number in its grid
(0 when it is not a grid image). :func:`cell_seed` keeps the palette and sets the number, so the
upscale of grid image N (``single`` of ``cell_seed(seed, N)``) shows exactly the pixels of
quadrant N of the grid.

Kinds: ``grid`` (2x2), ``single`` (one picture: upscales, described images) and the previews a
running job shows, ``grid-preview<P>`` / ``single-preview<P>`` with ``P`` its progress percent
(``grid-preview`` alone is 50%): the top ``P`` percent of the picture, coarse, over a hatched
"still rendering" area, with the percentage written on it.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import re
import struct
import zlib

import cachetools

from airflow_provider_mj import imaging
from airflow_provider_mj.imaging import ImageFormat

MAX_SIDE = 2048
_NAME = re.compile(
    r"^(?P<seed>[0-9a-f]{16})_(?P<kind>(?:grid|single)(?:-preview(?:[0-9]{1,2})?)?)_(?P<w>\d{1,4})x(?P<h>\d{1,4})"
    r"\.(?P<ext>png|webp|jpg)$"
)
#: Image formats the emulator serves, by the name an extension or ``?format=`` gives them.
FORMATS: dict[str, ImageFormat] = {ext[1:]: fmt for ext, fmt in imaging.FORMATS_BY_EXTENSION.items()}
_SEED = re.compile(r"^[0-9a-f]{16}$")

# ---------------------------------------------------------------------------------------------
# Seeds and palettes
# ---------------------------------------------------------------------------------------------

#: Words that set the hue (degrees). The first one in the prompt wins.
_HUES = {
    "red": 0, "crimson": 350, "scarlet": 5, "fire": 12, "lava": 8, "sunset": 18, "dusk": 22,
    "autumn": 28, "orange": 30, "copper": 26, "rust": 20, "amber": 40, "desert": 38, "sand": 42,
    "gold": 46, "golden": 46, "honey": 44, "sunflower": 50, "sunflowers": 50, "yellow": 55, "lemon": 58,
    "lime": 85, "spring": 95, "meadow": 100, "grass": 105, "green": 120, "forest": 125, "jungle": 130,
    "moss": 90, "emerald": 145, "mint": 155, "teal": 175, "turquoise": 172, "lagoon": 180, "ice": 190,
    "cyan": 188, "glacier": 195, "ocean": 205, "sea": 205, "lake": 200, "river": 200, "rain": 210,
    "rainy": 210, "sky": 208, "blue": 220, "winter": 205, "snow": 205, "snowy": 205, "navy": 228,
    "moon": 225, "midnight": 235, "indigo": 250, "lavender": 265, "purple": 275, "violet": 280,
    "plum": 290, "magenta": 305, "neon": 300, "pink": 330, "cherry": 340, "rose": 345, "blossom": 335,
}
#: Words that set the tone: 1 dark, 2 pale, 3 vivid (0: neither).
_TONES = {
    **dict.fromkeys(("night", "midnight", "dark", "storm", "stormy", "noir", "shadow", "moonlit", "cave"), 1),
    **dict.fromkeys(("snow", "snowy", "winter", "fog", "foggy", "mist", "misty", "pastel", "pale",
                     "watercolor", "watercolour", "morning", "dawn"), 2),
    **dict.fromkeys(("neon", "vivid", "bright", "cyberpunk", "saturated", "psychedelic"), 3),
}


def _palette_code(parts: tuple[str, ...]) -> int:
    """12 bits: hue (6 bits, from a colour word, else from the words' hash) and tone (2 bits).

    Parts that are seeds themselves (a parent image) pass their palette on, unless the other parts
    name a colour or tone of their own (a zoom or remix with a new prompt).
    """
    words = [w for part in parts if not _SEED.match(part) for w in re.findall(r"[a-z]+", part.lower())]
    hue = next((_HUES[w] for w in words if w in _HUES), None)
    tone = next((_TONES[w] for w in words if w in _TONES), None)
    parent = next((int(part[:3], 16) for part in parts if _SEED.match(part)), None)
    if parent is not None and hue is None and tone is None:
        return parent
    if hue is None:
        hue = int(hashlib.sha256(" ".join(words).encode()).hexdigest()[:4], 16) % 360
    return (round(hue / 360 * 64) % 64) << 2 | (tone or 0)


def digest(*parts: str) -> str:
    """A 16-hex-digit seed from text parts (stable across runs and machines), number 0."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return f"{_palette_code(parts):03x}{h.hexdigest()[:12]}0"


def cell_seed(grid_seed: str, index: int) -> str:
    """The seed of image ``index`` (1..4) of a grid: what U<index> upscales (same palette)."""
    h = hashlib.sha256(f"{grid_seed}\x00cell\x00{index}".encode()).hexdigest()
    return f"{grid_seed[:3]}{h[:12]}{index:x}"


def image_name(seed: str, kind: str, width: int, height: int, fmt: str = "png") -> str:
    """The URL name of an image; ``fmt`` is ``png``, ``webp`` or ``jpeg``."""
    return f"{seed}_{kind}_{width}x{height}{FORMATS[fmt].extension}"


def format_of(name: str) -> ImageFormat:
    """The format a valid image name's extension asks for."""
    return FORMATS[name.rpartition(".")[2]]


def preview_kind(kind: str, percent: int) -> str:
    """The kind of the preview of a ``grid``/``single`` image at ``percent`` progress (0..99)."""
    return f"{kind}-preview{max(0, min(99, int(percent)))}"


def parse_image_name(name: str) -> tuple[str, str, int, int] | None:
    """``(seed, kind, width, height)`` of a valid image name, else None."""
    m = _NAME.match(name)
    if not m:
        return None
    w, h = int(m["w"]), int(m["h"])
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        return None
    if m["kind"].startswith("grid") and (w % 2 or h % 2):
        return None
    return m["seed"], m["kind"], w, h


def size_for_ratio(long_side: int, ratio_w: int, ratio_h: int) -> tuple[int, int]:
    """Width and height of one image whose long side is ``long_side`` and aspect ``w:h``."""
    if ratio_w >= ratio_h:
        return long_side, max(1, round(long_side * ratio_h / ratio_w))
    return max(1, round(long_side * ratio_w / ratio_h)), long_side


# ---------------------------------------------------------------------------------------------
# A tiny bitmap font (5x7) for numbers and the mark
# ---------------------------------------------------------------------------------------------

_GLYPHS = {
    "0": "01110 10001 10011 10101 11001 10001 01110", "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111", "3": "11110 00001 00001 01110 00001 00001 11110",
    "4": "00010 00110 01010 10010 11111 00010 00010", "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110", "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110", "9": "01110 10001 10001 01111 00001 00010 01100",
    "%": "11001 11010 00010 00100 01000 01011 10011", "A": "01110 10001 10001 11111 10001 10001 10001",
    "E": "11111 10000 10000 11110 10000 10000 11111", "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001", "O": "01110 10001 10001 10001 10001 10001 01110",
    "R": "11110 10001 10001 11110 10100 10010 10001", "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
}
_FONT = {ch: [[bit == "1" for bit in row] for row in rows.split()] for ch, rows in _GLYPHS.items()}


def _text_size(text: str, scale: int) -> tuple[int, int]:
    return (6 * len(text) - 1) * scale, 7 * scale


def _draw_text(canvas: list[bytearray], x0: int, y0: int, text: str, scale: int,
               color: tuple[int, int, int], alpha: float = 1.0) -> None:
    """Write ``text`` with its top-left corner at (x0, y0); pixels outside the canvas are skipped.

    Each lit glyph pixel is a ``scale`` x ``scale`` square, written a row slice at a time.
    """
    height, width = len(canvas), len(canvas[0]) // 3 if canvas else 0
    solid = bytes(color)
    for i, ch in enumerate(text):
        for gy, row in enumerate(_FONT.get(ch, ())):
            for gx, on in enumerate(row):
                left = x0 + (i * 6 + gx) * scale
                xa, xb = max(0, left), min(width, left + scale)
                if not on or xb <= xa:
                    continue
                for y in range(max(0, y0 + gy * scale), min(height, y0 + (gy + 1) * scale)):
                    line = canvas[y]
                    if alpha >= 1.0:
                        line[3 * xa:3 * xb] = solid * (xb - xa)
                    else:
                        under = line[3 * xa:3 * xb]
                        line[3 * xa:3 * xb] = bytes(int(u + (c - u) * alpha) for u, c in zip(under, solid * (xb - xa)))


def _fill(canvas: list[bytearray], x0: int, y0: int, x1: int, y1: int, color: bytes) -> None:
    width = len(canvas[0]) // 3
    x0, x1 = max(0, x0), min(width, x1)
    for y in range(max(0, y0), min(len(canvas), y1)):
        canvas[y][3 * x0:3 * x1] = color * (x1 - x0)


# ---------------------------------------------------------------------------------------------
# The picture
# ---------------------------------------------------------------------------------------------

GUTTER = (22, 22, 26)
_INK = (250, 250, 250)


def _rgb(h: float, s: float, v: float) -> bytes:
    return bytes(round(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, max(0.0, min(1.0, s)), max(0.0, min(1.0, v))))


class _Scene:
    """A landscape from a seed: a sky gradient, a sun (or moon) and three ridges, in its palette."""

    def __init__(self, seed: str) -> None:
        code = int(seed[:3], 16)
        raw = hashlib.sha256(seed.encode()).digest()
        hue = (code >> 2) / 64 + (raw[0] / 255 - 0.5) * 0.08  # the four images of a grid differ a little
        tone = code & 3
        sat, sky_v, ridge_v = {0: (0.55, (0.80, 0.97), (0.62, 0.45, 0.28)),
                               1: (0.55, (0.22, 0.42), (0.20, 0.13, 0.07)),
                               2: (0.22, (0.93, 1.00), (0.86, 0.76, 0.64)),
                               3: (0.92, (0.85, 1.00), (0.70, 0.50, 0.30))}[tone]
        self.sky_top, self.sky_bottom = _rgb(hue + 0.55, sat * 0.45, sky_v[0]), _rgb(hue + 0.02, sat * 0.6, sky_v[1])
        self.sun = _rgb(hue + 0.08, 0.15 if tone == 1 else 0.45, 1.0)
        self.sun_at = (0.2 + 0.6 * raw[1] / 255, 0.18 + 0.22 * raw[2] / 255, 0.08 + 0.06 * raw[3] / 255)
        self.ridges = []
        for k in range(3):
            base = 0.45 + 0.13 * k + 0.08 * raw[4 + k] / 255
            waves = [(1 + raw[8 + 2 * k + j] % 3 + j * 2, raw[14 + 2 * k + j] / 255 * 2 * math.pi,
                      (0.06 if j == 0 else 0.03) * (1 - 0.25 * k)) for j in range(2)]
            self.ridges.append((base, waves, _rgb(hue - 0.04 * k, sat * (0.7 + 0.15 * k), ridge_v[k])))

    def rows(self, width: int, height: int, block: int) -> list[bytes]:
        """``height`` rows of ``width`` RGB pixels, drawn in squares of ``block`` pixels."""
        lw, lh = -(-width // block), -(-height // block)
        sky = [_mix(self.sky_top, self.sky_bottom, y / max(1, lh - 1)) for y in range(lh)]
        su, sv, sr = self.sun_at
        aspect = width / height
        columns = []
        for x in range(lw):
            u = (x + 0.5) / lw
            col = list(sky)
            dx = (u - su) * aspect
            if abs(dx) < sr:  # the sun's vertical span in this column
                half = math.sqrt(sr * sr - dx * dx)
                top, bottom = max(0, round((sv - half) * lh)), min(lh, round((sv + half) * lh))
                col[top:bottom] = [self.sun] * (bottom - top)
            for base, waves, color in self.ridges:
                v = base + sum(amp * math.sin(freq * u * 2 * math.pi + phase) for freq, phase, amp in waves)
                top = max(0, min(lh, round(v * lh)))
                col[top:] = [color] * (lh - top)
            columns.append([c * block for c in col])
        out: list[bytes] = []
        for row in zip(*columns):
            line = b"".join(row)[: 3 * width]
            out.extend([line] * block)
        return out[:height]


def _mix(a: bytes, b: bytes, t: float) -> bytes:
    return bytes(round(x + (y - x) * t) for x, y in zip(a, b))


def _picture(seed: str, width: int, height: int, percent: int | None) -> list[bytes]:
    """One framed image: the scene, its number, the emulator mark; partial when ``percent`` is set."""
    frame = max(1, min(width, height) // 60)
    scale = max(1, min(width, height) // 80)
    scene = _Scene(seed)
    if percent is None:
        canvas = [bytearray(row) for row in scene.rows(width, height, block=max(1, min(width, height) // 80))]
    else:
        # What Midjourney shows while it works: a coarse picture that grows down the image.
        coarse = scene.rows(width, height, block=max(2, min(width, height) // 16))
        shown = round(height * percent / 100)
        stripe = (b"\x3a\x3a\x40" * 6 + b"\x30\x30\x36" * 6) * (width // 12 + 2)
        canvas = [bytearray(coarse[y] if y < shown else stripe[3 * (y % 12):3 * (y % 12) + 3 * width])
                  for y in range(height)]
        label = f"{percent}%"
        tw, th = _text_size(label, 2 * scale)
        x0, y0 = (width - tw) // 2, (height - th) // 2
        _fill(canvas, x0 - 2 * scale, y0 - 2 * scale, x0 + tw + 2 * scale, y0 + th + 2 * scale, bytes(GUTTER))
        _draw_text(canvas, x0, y0, label, 2 * scale, _INK)
    number = int(seed[-1], 16)
    if 1 <= number <= 4 and width >= 24 and height >= 24:
        size = max(1, 3 * scale // 2)
        tw, th = _text_size(str(number), size)
        pad, x0, y0 = 2 * scale, frame + 3 * scale, frame + 3 * scale
        _fill(canvas, x0 - pad, y0 - pad, x0 + tw + pad, y0 + th + pad, bytes(GUTTER))
        _draw_text(canvas, x0, y0, str(number), size, _INK)
    mark, mark_scale = "EMULATOR", max(1, scale // 2)
    tw, th = _text_size(mark, mark_scale)
    if tw + 2 * frame + 4 * scale < width and th + 2 * frame < height // 3:
        _draw_text(canvas, width - frame - 2 * scale - tw, height - frame - 2 * scale - th, mark, mark_scale,
                   _INK, 0.85)
    gutter = bytes(GUTTER)
    for y, line in enumerate(canvas):
        if y < frame or y >= height - frame:
            line[:] = gutter * width
        else:
            line[: 3 * frame] = gutter * frame
            line[3 * (width - frame):] = gutter * frame
    return [bytes(line) for line in canvas]


# ---------------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rows: list[bytes], text: dict[str, str] | None = None) -> bytes:
    """An 8-bit RGB PNG from raw rows (filter type 0)."""
    raw = b"".join(b"\x00" + row for row in rows)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in (text or {}).items():
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    out.append(_chunk(b"IDAT", zlib.compress(raw, 3)))  # level 3: 5x faster than 6 here, files 1.7x larger
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def render(seed: str, kind: str, width: int, height: int, fmt: str = "png") -> bytes:
    """The bytes of an image name's parts, encoded as ``fmt`` (``png``, ``webp`` or ``jpeg``).

    :raises airflow_provider_mj.exceptions.MidjourneyConfigurationError: WebP or JPEG without Pillow.
    """
    base, _, preview = kind.partition("-preview")
    percent = (int(preview) if preview else 50) if "-preview" in kind else None
    if base == "single":
        rows = _picture(seed, width, height, percent)
    elif base == "grid":
        cw, ch = width // 2, height // 2
        cells = [_picture(cell_seed(seed, n), cw, ch, percent) for n in (1, 2, 3, 4)]
        rows = [a + b for a, b in zip(cells[0], cells[1])] + [a + b for a, b in zip(cells[2], cells[3])]
    else:
        raise ValueError(f"unknown image kind {kind!r}")
    image_format = FORMATS[fmt]
    if image_format is not imaging.PNG:
        pillow = imaging.require_pillow(f"Serving {image_format.name.upper()} images")
        return imaging.encode(pillow.frombytes("RGB", (width, height), b"".join(rows)), image_format)
    text = {"Software": "mj-emulator", "Comment": f"{kind} {seed}"}
    return encode_png(width, height, rows, text)


class ImageCache:
    """Rendered images, an LRU bounded by their total bytes (:class:`cachetools.LRUCache`).

    An image larger than the whole bound is rendered and served, but not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        #: (seed, kind, width, height, format) -> bytes; ``currsize`` is the bytes held.
        self.lru: cachetools.LRUCache = cachetools.LRUCache(max_bytes, getsizeof=len)
        self._render = cachetools.cached(self.lru)(render)

    def get(self, name: str, fmt: str | None = None) -> tuple[bytes, ImageFormat] | None:
        """The bytes (rendered or cached) and format of a valid image name, None for a bad name.

        :param fmt: serve this format (a key of :data:`FORMATS`) instead of the name's.
        :raises airflow_provider_mj.exceptions.MidjourneyConfigurationError: WebP or JPEG without Pillow.
        """
        parsed = parse_image_name(name)
        if parsed is None:
            return None
        image_format = FORMATS[fmt] if fmt else format_of(name)
        return self._render(*parsed, image_format.name), image_format
