"""Weights as C string literals: `"\\xNN..."` compiles about ten times faster than float lists."""

from __future__ import annotations

import numpy as np

BYTES_PER_LINE = 48

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def string_literal_lines(data: bytes) -> str:
    """The bytes as adjacent string literals, one line each, every byte written as \\xNN."""
    raw = np.frombuffer(data, dtype=np.uint8)
    n = raw.size
    if n == 0:
        return '""'
    quad = np.empty((n, 4), dtype=np.uint8)
    quad[:, 0] = ord("\\")
    quad[:, 1] = ord("x")
    quad[:, 2] = _HEX[raw >> 4]
    quad[:, 3] = _HEX[raw & 15]
    full = n // BYTES_PER_LINE * BYTES_PER_LINE
    lines = []
    if full:
        body = quad[:full].reshape(-1, BYTES_PER_LINE * 4)
        framed = np.empty((body.shape[0], body.shape[1] + 4), dtype=np.uint8)
        framed[:, 0] = framed[:, 1] = ord(" ")
        framed[:, 2] = ord('"')
        framed[:, 3:-1] = body
        framed[:, -1] = ord('"')
        lines.append(b"\n".join(bytes(r) for r in framed).decode("ascii"))
    if full < n:
        lines.append('  "' + quad[full:].tobytes().decode("ascii") + '"')
    return "\n".join(lines)


def little_endian_bytes(arr: np.ndarray) -> bytes:
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    return a.tobytes()
