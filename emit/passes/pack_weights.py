"""Pack a Conv's float32 weights, once, at export time, into the layout the GEMM's micro-kernel reads
(runtime_c/emit_runtime.h, EK_PACK_ROWS): per group, the (m/group) x (c/group * kernel) matrix as groups of
PACK_ROWS output channels, each stored k-major, the last padded with zero rows. The kernel then reads the
weights of a register tile as one contiguous line per k instead of PACK_ROWS strided ones.

Only convolutions conv.c runs as a GEMM are packed (1x1 stride-1 unpadded ones, and any with more than one
input channel per group); depthwise ones read the plain layout. The node keeps the weight's ONNX shape in
attrs["__packed_w__"]; a new weight buffer holds the packed values (the old one may be shared)."""

from __future__ import annotations

import numpy as np

from ..ir import Node, Program
from ..ops.conv import MIN_POSITIONS

PACK_ROWS = 8  # EK_PACK_ROWS


def pack_rows(w: np.ndarray, group: int) -> np.ndarray:
    """w (m, c/group, k...) -> the packed layout as (row groups, K, PACK_ROWS), K = c/group * kernel: each group's
    rows padded to whole PACK_ROWS groups (storage quantises it per output channel: axes 0 and 2)."""
    mg = w.shape[0] // group
    padded = -(-mg // PACK_ROWS) * PACK_ROWS
    k = int(np.prod(w.shape[1:], dtype=np.int64))
    a = np.zeros((group, padded, k), w.dtype)
    a[:, :mg] = w.reshape(group, mg, k)
    # (group, row groups, PACK_ROWS, k) -> (group, row groups, k, PACK_ROWS)
    rows = a.reshape(group * padded // PACK_ROWS, PACK_ROWS, k)
    return np.ascontiguousarray(rows.transpose(0, 2, 1))


def _runs_as_gemm(n: Node, w: np.ndarray) -> bool:
    """conv.c's choice: 1x1 stride-1 unpadded (ek_conv_pointwise), or more than one input channel per group."""
    if w.shape[1] > 1:
        return True
    nsp = w.ndim - 2
    strides = n.attrs.get("strides") or [1] * nsp
    pads = n.attrs.get("pads") or [0] * (2 * nsp)
    return all(int(k) == 1 for k in w.shape[2:]) and all(int(s) == 1 for s in strides) and not any(pads)


def _worth_packing(n: Node, w: np.ndarray, positions: int) -> bool:
    group = int(n.attrs.get("group", 1))
    if w.ndim < 3 or group < 1 or w.shape[0] % group:
        return False  # the lowering reports what is wrong
    mg = w.shape[0] // group
    padding = -(-mg // PACK_ROWS) * PACK_ROWS - mg
    # at most 1/8 more bytes; and output positions enough for the register tiles: a few (a 1-D conv over 1-8
    # positions) run as dot products over the weights' rows, which need ONNX's layout
    return mg >= PACK_ROWS and padding * PACK_ROWS <= mg and positions >= MIN_POSITIONS and _runs_as_gemm(n, w)


def pack_conv_weights(prog: Program) -> Program:
    for n in prog.nodes:
        if n.op_type != "Conv" or n.domain != "" or len(n.inputs) < 2 or "__packed_w__" in n.attrs:
            continue
        w = prog.weight_value(n.inputs[1])
        out = prog.buffers[n.outputs[0]].shape
        positions = int(np.prod(out[2:], dtype=np.int64)) if len(out) > 2 else 0
        if w is None or w.dtype != np.float32 or not _worth_packing(n, w, positions):
            continue
        n.attrs["__packed_w__"] = tuple(int(d) for d in w.shape)
        n.inputs[1] = prog.add_weight(n.inputs[1], pack_rows(w, int(n.attrs.get("group", 1))), "__packed")
    return prog
