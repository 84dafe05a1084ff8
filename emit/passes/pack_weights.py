"""Pack a Conv's float32 weights, once, at export time, into the layout the GEMM's micro-kernel reads
(runtime_c/emit_runtime.h, EK_PACK_ROWS): per group, the (m/group) x (c/group * kernel) matrix as groups of
PACK_ROWS output channels, each stored k-major, the last padded with zero rows. The kernel then reads the
weights of a register tile as one contiguous line per k instead of PACK_ROWS strided ones. On an AVX-512 host,
convs whose products have 17-63 columns (7x7 outputs) get groups of PACK_FEW = 16 rows instead: one vector per k,
which gemm.c's few_cols multiplies with the output channels along the vectors.

Only convolutions conv.c runs as a GEMM are packed (1x1 stride-1 unpadded ones, and any with more than one
input channel per group); depthwise ones read the plain layout. The node keeps the weight's ONNX shape in
attrs["__packed_w__"] and the group size in attrs["__pack_rows__"]; a new weight buffer holds the packed values
(the old one may be shared)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..ir import Node, Program
from ..ops.conv import MIN_POSITIONS, stride1_column_planes

PACK_ROWS = 8  # EK_PACK_ROWS
PACK_FEW = 16  # EK_PACK_FEW: a product of few columns, run by AVX-512 builds with the channels along the vectors
FEW_POSITIONS = (17, 63)  # gemm.c's few_cols (N < 64): output positions that fill 32-column panels badly (7x7: 77%)


@functools.cache
def host_has_avx512() -> bool:
    """The native target builds with -march=native on this machine: AVX-512 there makes gemm.c's vectors 16 floats."""
    try:
        return any(line.startswith("flags") and " avx512f" in line
                   for line in Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        return False


def pack_rows(w: np.ndarray, group: int, rows: int = PACK_ROWS) -> np.ndarray:
    """w (m, c/group, k...) -> the packed layout as (row groups, K, rows), K = c/group * kernel: each group's rows
    padded to whole groups of `rows` (storage quantises it per output channel: axes 0 and 2)."""
    mg = w.shape[0] // group
    padded = -(-mg // rows) * rows
    k = int(np.prod(w.shape[1:], dtype=np.int64))
    a = np.zeros((group, padded, k), w.dtype)
    a[:, :mg] = w.reshape(group, mg, k)
    # (group, row groups, rows, k) -> (group, row groups, k, rows)
    groups = a.reshape(group * padded // rows, rows, k)
    return np.ascontiguousarray(groups.transpose(0, 2, 1))


def _runs_as_gemm(n: Node, w: np.ndarray) -> bool:
    """conv.c's choice: 1x1 stride-1 unpadded (ek_conv_pointwise), or more than one input channel per group."""
    if w.shape[1] > 1:
        return True
    nsp = w.ndim - 2
    strides = n.attrs.get("strides") or [1] * nsp
    pads = n.attrs.get("pads") or [0] * (2 * nsp)
    return all(int(k) == 1 for k in w.shape[2:]) and all(int(s) == 1 for s in strides) and not any(pads)


def _few_columns(n: Node, w: np.ndarray, out: tuple, positions: int) -> bool:
    """Whether the conv's products have FEW_POSITIONS columns: its output positions, or by windows of a padded band
    (a stride-1 2-D kernel), those plus the padded columns between rows ((kw - 1) * dilation each, conv.c's band
    row; ops/conv.py's column planes have none)."""
    cols, group = positions, int(n.attrs.get("group", 1))
    stride1 = [int(s) for s in n.attrs.get("strides") or [1, 1]] == [1, 1]
    if len(out) >= 4 and w.shape[-1] > 1 and stride1 and not stride1_column_planes(
            int(w.shape[-2]), int(w.shape[-1]), int(w.shape[1]), int(w.shape[0]) // group):
        dil = int((n.attrs.get("dilations") or [1])[-1])
        cols += (int(out[-2]) - 1) * (int(w.shape[-1]) - 1) * dil
    return FEW_POSITIONS[0] <= positions and cols <= FEW_POSITIONS[1]


def _rows_per_group(n: Node, w: np.ndarray, out: tuple, positions: int, avx512: bool) -> int:
    """EK_PACK_FEW for few output positions in an AVX-512 build, EK_PACK_ROWS for others, 0: not worth packing."""
    group = int(n.attrs.get("group", 1))
    if w.ndim < 3 or group < 1 or w.shape[0] % group:
        return 0  # the lowering reports what is wrong
    mg = w.shape[0] // group
    # output positions enough for the register tiles: a few (a 1-D conv over 1-8 positions) run as dot products
    # over the weights' rows, which need ONNX's layout
    if positions < MIN_POSITIONS or not _runs_as_gemm(n, w):
        return 0
    for rows in ([PACK_FEW] if avx512 and _few_columns(n, w, out, positions) else []) + [PACK_ROWS]:
        padding = -(-mg // rows) * rows - mg
        if mg >= rows and padding * 8 <= mg:  # at most 1/8 more bytes
            return rows
    return 0


def pack_conv_weights(prog: Program, avx512: bool | None = None) -> Program:
    """avx512: whether the build's vectors are 16 floats (default: this machine's, which builds the native target)."""
    avx512 = host_has_avx512() if avx512 is None else avx512
    for n in prog.nodes:
        if n.op_type != "Conv" or n.domain != "" or len(n.inputs) < 2 or "__packed_w__" in n.attrs:
            continue
        w = prog.weight_value(n.inputs[1])
        out = prog.buffers[n.outputs[0]].shape
        positions = int(np.prod(out[2:], dtype=np.int64)) if len(out) > 2 else 0
        rows = _rows_per_group(n, w, out, positions, avx512) if w is not None and w.dtype == np.float32 else 0
        if not rows:
            continue
        n.attrs["__packed_w__"] = tuple(int(d) for d in w.shape)
        n.attrs["__pack_rows__"] = rows
        n.inputs[1] = prog.add_weight(n.inputs[1], pack_rows(w, int(n.attrs.get("group", 1)), rows), "__packed")
    return prog
