"""Deterministic PNG images, written with zlib and struct only (no Pillow).

An image is fully described by its URL name ``<seed>_<kind>_<w>x<h>.png``: the emulator keeps no
image per task, it re-makes any image from its name, and caches the bytes in a bounded LRU. The
same seed always gives the same bytes, and the upscale of grid image N shows exactly the pixels
of quadrant N of the grid (its seed is :func:`cell_seed` of the grid's seed).

Kinds: ``grid`` (2x2 grid, each cell the picture of ``cell_seed(seed, n)``), ``single`` (one picture
of ``seed``: upscales, described images), and ``grid-preview`` / ``single-preview`` (the same, darker:
what ``imageUrl`` shows while a job runs).
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections import OrderedDict

MAX_SIDE = 2048
_NAME = re.compile(r"^(?P<seed>[0-9a-f]{16})_(?P<kind>grid|grid-preview|single|single-preview)_(?P<w>\d{1,4})x(?P<h>\d{1,4})\.png$")


def digest(*parts: str) -> str:
    """A 16-hex-digit seed from text parts (stable across runs and machines)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def cell_seed(grid_seed: str, index: int) -> str:
    """The seed of image ``index`` (1..4) of a grid: what U<index> upscales."""
    return digest(grid_seed, "cell", str(index))


def image_name(seed: str, kind: str, width: int, height: int) -> str:
    return f"{seed}_{kind}_{width}x{height}.png"


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


class _Picture:
    """An abstract picture from a seed: horizontal bands, each split into coloured blocks.

    Drawn in relative coordinates, so the same picture renders at any size; rows inside a band
    are identical, which makes rendering a few bytes operations per band.
    """

    def __init__(self, seed: str) -> None:
        raw = hashlib.sha256(seed.encode()).digest() + hashlib.sha256(seed.encode() + b"+").digest()
        self.bands: list[tuple[float, list[tuple[float, bytes]]]] = []
        n_bands = 3 + raw[0] % 4
        pos = 1
        cuts = sorted({(raw[pos + i] / 255.0) for i in range(n_bands - 1)} | {1.0})
        pos += n_bands
        for end in cuts:
            n_blocks = 1 + raw[pos % len(raw)] % 4
            pos += 1
            blocks = []
            for b in range(n_blocks):
                color = bytes(raw[(pos + k) % len(raw)] for k in range(3))
                pos += 3
                blocks.append(((b + 1) / n_blocks, color))
            self.bands.append((end, blocks))

    def rows(self, width: int, height: int, dim: bool = False) -> list[bytes]:
        """``height`` rows of ``width`` RGB pixels."""
        out: list[bytes] = []
        y = 0
        for end, blocks in self.bands:
            stop = height if end >= 1.0 else min(height, round(end * height))
            if stop <= y:
                continue
            parts, x = [], 0
            for frac, color in blocks:
                x_end = width if frac >= 1.0 else round(frac * width)
                if dim:
                    color = bytes(c // 2 + 40 for c in color)
                parts.append(color * (x_end - x))
                x = x_end
            row = b"".join(parts)
            out.extend([row] * (stop - y))
            y = stop
        return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rows: list[bytes], text: dict[str, str] | None = None) -> bytes:
    """An 8-bit RGB PNG from raw rows (filter type 0)."""
    raw = b"".join(b"\x00" + row for row in rows)
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in (text or {}).items():
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    out.append(_chunk(b"IDAT", zlib.compress(raw, 6)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def render(seed: str, kind: str, width: int, height: int) -> bytes:
    """The PNG bytes of an image name's parts."""
    dim = kind.endswith("-preview")
    if kind in ("single", "single-preview"):
        rows = _Picture(seed).rows(width, height, dim=dim)
    elif kind in ("grid", "grid-preview"):
        cw, ch = width // 2, height // 2
        cells = [_Picture(cell_seed(seed, n)).rows(cw, ch, dim=dim) for n in (1, 2, 3, 4)]
        rows = [a + b for a, b in zip(cells[0], cells[1])] + [a + b for a, b in zip(cells[2], cells[3])]
    else:
        raise ValueError(f"unknown image kind {kind!r}")
    text = {"Software": "mj-emulator", "Comment": f"{kind} {seed}"}
    return encode_png(width, height, rows, text)


class ImageCache:
    """A bounded LRU of rendered PNGs, by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self.bytes = 0

    def get(self, name: str) -> bytes | None:
        """The PNG of a valid image name (rendered or cached), None for a bad name."""
        data = self._items.get(name)
        if data is not None:
            self._items.move_to_end(name)
            return data
        parsed = parse_image_name(name)
        if parsed is None:
            return None
        data = render(*parsed)
        if len(data) <= self.max_bytes:
            self._items[name] = data
            self.bytes += len(data)
            while self.bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self.bytes -= len(old)
        return data

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)
