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
    # rows of `  "\xNN...\xNN"\n`, built as one array: no Python loop per line
    rows = -(-n // BYTES_PER_LINE)
    padded = np.zeros((rows * BYTES_PER_LINE, 4), dtype=np.uint8)
    padded[:n] = quad
    framed = np.empty((rows, BYTES_PER_LINE * 4 + 5), dtype=np.uint8)
    framed[:, 0] = framed[:, 1] = ord(" ")
    framed[:, 2] = framed[:, -2] = ord('"')
    framed[:, -1] = ord("\n")
    framed[:, 3:-2] = padded.reshape(rows, -1)
    text = framed.tobytes()
    tail = n - (rows - 1) * BYTES_PER_LINE  # bytes on the last line
    cut = len(text) - (BYTES_PER_LINE - tail) * 4 - 2
    return (text[:cut] + b'"').decode("ascii")


def little_endian_bytes(arr: np.ndarray) -> bytes:
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    return a.tobytes()
