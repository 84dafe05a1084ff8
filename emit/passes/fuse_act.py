"""Fuse an activation into the Conv, ConvTranspose, Gemm or MatMul that feeds it.

The activation node disappears: the producer takes over its output buffer and records the
activation as attrs["__act__"] = (kind, params), which its lowering passes to the kernel epilogue
(see ACT_ENUM in emit/ops/gemm.py and EK_ACT_* in runtime_c/emit_runtime.h)."""

from __future__ import annotations

import math

import numpy as np

from ..ir import WEIGHT, Node, Program
from .simplify import absorb, sole_producer

PRODUCERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _scalar(prog: Program, node: Node, i: int) -> float | None:
    """Constant scalar input i; None if absent; NaN marks 'not a compile-time scalar'."""
    if i >= len(node.inputs) or not node.inputs[i]:
        return None
    b = prog.buffers[node.inputs[i]]
    if b.storage != WEIGHT or b.data is None or b.data.size != 1:
        return math.nan
    return float(np.asarray(b.data).reshape(()))


def activation(prog: Program, n: Node) -> tuple[str, tuple[float, ...]] | None:
    """(kind, params) if n is an activation the kernels can apply as they store, else None."""
    if n.domain != "" or not n.inputs or not n.inputs[0]:
        return None
    t = n.op_type
    if t == "Relu":
        return "relu", ()
    if t == "Sigmoid":
        return "sigmoid", ()
    if t == "HardSigmoid":
        return "hardsigmoid", (float(n.attrs.get("alpha", 0.2)), float(n.attrs.get("beta", 0.5)))
    if t == "HardSwish":
        return "hardswish", ()
    if t == "LeakyRelu":
        return "leakyrelu", (float(n.attrs.get("alpha", 0.01)),)
    if t == "Clip":
        if prog.opset < 11:
            lo, hi = n.attrs.get("min", -math.inf), n.attrs.get("max", math.inf)
        else:
            lo, hi = _scalar(prog, n, 1), _scalar(prog, n, 2)
            if (lo is not None and math.isnan(lo)) or (hi is not None and math.isnan(hi)):
                return None
            lo = -math.inf if lo is None else lo
            hi = math.inf if hi is None else hi
        return "clip", (float(lo), float(hi))
    return None


def fuse_activations(prog: Program) -> Program:
    producers = prog.producers()
    consumers = prog.consumers()
    dropped: set[int] = set()
    for n in prog.nodes:
        act = activation(prog, n)
        if act is None:
            continue
        src = n.inputs[0]
        p = sole_producer(prog, producers, consumers, src, PRODUCERS)
        if p is None:
            continue
        x, y = prog.buffers[src], prog.buffers[n.outputs[0]]
        if np.dtype(x.dtype).name not in ("float32", "float64") or x.dtype != y.dtype or x.shape != y.shape:
            continue
        p.attrs["__act__"] = act
        absorb(prog, p, n, producers)
        dropped.add(id(n))
    prog.nodes = [n for n in prog.nodes if id(n) not in dropped]
    return prog
