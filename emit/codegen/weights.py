"""Weights as C string literals: `"\\xNN..."` compiles about ten times faster than float lists; and the blocks a
weight repeats, for the compact "blocks" form (codegen/storage.py)."""

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


# elements per block of the "blocks" form, tried in this order: long blocks make a short index, short ones catch
# patterns that do not line up with long ones (a constant row of 320 floats: blocks of 64 repeat, of 256 do not)
REPEAT_BLOCKS = (256, 64, 16)


def repeated_blocks(a: np.ndarray, block: int = REPEAT_BLOCKS[0]) -> tuple[np.ndarray, np.ndarray]:
    """a's elements in blocks of `block` (the last padded with zeros): the distinct blocks, bit for bit, and for each
    block its index among them (uint32). A weight computed from a fill (an architecture-only model's ConstantOfShape,
    then folded BatchNorm, packing, Winograd's transform) is a few distinct blocks repeated."""
    flat = np.ascontiguousarray(a).reshape(-1)
    count = -(-flat.size // block)
    rows = np.zeros(count * block, flat.dtype)
    rows[:flat.size] = flat
    rows = rows.reshape(count, block)
    keys = rows.view(np.dtype((np.void, block * flat.itemsize))).reshape(count)
    _, first, index = np.unique(keys, return_index=True, return_inverse=True)
    return rows[first], index.reshape(count).astype(np.uint32)


def compact_blocks(a: np.ndarray, ratio: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(distinct blocks, index, block length) taking at most 1/ratio of a's bytes with the best of REPEAT_BLOCKS, or
    None. A much better fit with a long block ends the search early (each try sorts all the blocks)."""
    best = None
    for block in REPEAT_BLOCKS:
        distinct, index = repeated_blocks(a, block)
        size = distinct.nbytes + index.nbytes
        if best is None or size < best[0]:
            best = (size, distinct, index, block)
        if size * 8 * ratio <= a.nbytes:
            break
    return best[1:] if best and best[0] * ratio <= a.nbytes else None
