"""A tiny PNG reader for the tests (8-bit RGB, filter type 0: what the emulator writes)."""

from __future__ import annotations

import struct
import zlib


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        out.append((kind, body))
        pos += 12 + length
    assert out[0][0] == b"IHDR" and out[-1][0] == b"IEND"
    return out


def size(data: bytes) -> tuple[int, int]:
    """Width and height from IHDR."""
    ihdr = chunks(data)[0][1]
    return struct.unpack(">II", ihdr[:8])


def text(data: bytes) -> dict[str, str]:
    return {k.decode(): v.decode("latin-1") for kind, body in chunks(data) if kind == b"tEXt"
            for k, v in [body.split(b"\x00", 1)]}


def pixels(data: bytes) -> list[bytes]:
    """The rows of RGB bytes."""
    parts = chunks(data)
    width, height, depth, color = struct.unpack(">IIBB", parts[0][1][:10])
    assert (depth, color) == (8, 2)
    raw = zlib.decompress(b"".join(body for kind, body in parts if kind == b"IDAT"))
    stride = 1 + 3 * width
    assert len(raw) == stride * height
    rows = []
    for y in range(height):
        row = raw[y * stride:(y + 1) * stride]
        assert row[0] == 0, "only filter type 0 is expected"
        rows.append(row[1:])
    return rows


def quadrant(data: bytes, n: int) -> list[bytes]:
    """Grid image ``n`` (1..4: top-left, top-right, bottom-left, bottom-right)."""
    rows = pixels(data)
    width, height = size(data)
    cw, ch = width // 2, height // 2
    top = rows[:ch] if n in (1, 2) else rows[ch:]
    left = n in (1, 3)
    return [r[: 3 * cw] if left else r[3 * cw:] for r in top]
