"""Fuse an activation into the Conv, ConvTranspose, Gemm or MatMul that feeds it.

The activation node disappears: the producer takes over its output buffer and records the
activation as attrs["__act__"] = (kind, params), which its lowering passes to the kernel epilogue
(see ACT_ENUM in emit/ops/gemm.py and EK_ACT_* in runtime_c/emit_runtime.h)."""

from __future__ import annotations

import math

import numpy as np

from ..ir import OUTPUT, WEIGHT, Node, Program
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


def _only_user(prog: Program, consumers: dict, name: str) -> Node | None:
    users = consumers.get(name, [])
    return users[0] if len(users) == 1 and name not in prog.outputs else None


def _silu_mul(prog: Program, consumers: dict, sig: Node) -> Node | None:
    """The Mul of `x * Sigmoid(x)` (SiLU, YOLO's activation) if `sig` is that Sigmoid: its output feeds only
    that Mul, whose other input is x, with x's shape, dtype and result shape."""
    if sig.op_type != "Sigmoid" or sig.domain != "" or not sig.inputs or not sig.inputs[0]:
        return None
    x, s = sig.inputs[0], sig.outputs[0]
    m = _only_user(prog, consumers, s)
    if m is None or m.op_type != "Mul" or m.domain != "" or sorted(m.inputs) != sorted([x, s]):
        return None
    bx, by = prog.buffers[x], prog.buffers[m.outputs[0]]
    if np.dtype(bx.dtype).name not in ("float32", "float64") or by.dtype != bx.dtype or by.shape != bx.shape:
        return None
    return m


def _fuse_silu(prog: Program) -> Program:
    """x * Sigmoid(x) -> one pass instead of two: the producer of x (a Conv, Gemm, ...) gets the SiLU epilogue
    when x feeds nothing else; otherwise the pair becomes one Swish node (alpha 1 is x * sigmoid(x))."""
    producers = prog.producers()
    consumers = prog.consumers()
    replaced: dict[int, Node | None] = {}
    for n in prog.nodes:
        m = _silu_mul(prog, consumers, n)
        if m is None or id(n) in replaced or id(m) in replaced:
            continue
        x = n.inputs[0]
        p = producers.get(x)
        if (p is not None and p.op_type in PRODUCERS and p.domain == "" and p.outputs[0] == x
                and "__act__" not in p.attrs and len(consumers.get(x, [])) == 2
                and prog.buffers[x].storage != OUTPUT and x not in prog.outputs):
            p.attrs["__act__"] = ("silu", ())
            absorb(prog, p, m, producers)
            replaced[id(n)] = replaced[id(m)] = None
        else:  # the Swish takes the Mul's place, where x and the Mul's other inputs are all computed
            replaced[id(n)] = None
            replaced[id(m)] = Node("Swish", f"{m.name}__silu", [x], list(m.outputs), attrs={"alpha": 1.0})
    prog.nodes = [replaced.get(id(n), n) for n in prog.nodes if replaced.get(id(n), n) is not None]
    return prog


def _other_scalar(prog: Program, node: Node, x: str) -> float | None:
    """The compile-time scalar that `node` (a binary op) combines with x, or None."""
    if node.domain != "" or len(node.inputs) != 2 or x not in node.inputs or node.inputs[0] == node.inputs[1]:
        return None
    v = _scalar(prog, node, 1 if node.inputs[0] == x else 0)
    return None if v is None or math.isnan(v) else v


def _divides_by_6(prog: Program, node: Node, x: str) -> bool:
    """node is x / 6 or x * (1/6)."""
    v = _other_scalar(prog, node, x)
    if v is None:
        return False
    return (node.op_type == "Div" and node.inputs[0] == x and v == 6.0) or (
        node.op_type == "Mul" and abs(v - 1 / 6) <= 1e-7)


def _hardswish_chain(prog: Program, producers: dict, consumers: dict, clip: Node) -> tuple[str, list[Node]] | None:
    """(x, the nodes) if `clip` is the middle of HardSwish written out: x * Clip(x + 3, 0, 6) / 6, the division
    before or after the product (paddle2onnx writes it so; as a HardSwish node the Conv before it applies it in its
    epilogue instead of four passes over the tensor)."""
    if activation(prog, clip) != ("clip", (0.0, 6.0)):
        return None
    prod = producers.get(clip.inputs[0])
    if prod is None or prod.op_type != "Add" or _only_user(prog, consumers, prod.outputs[0]) is not clip:
        return None
    x = next((i for i in prod.inputs if _other_scalar(prog, prod, i) == 3.0), None)
    u = _only_user(prog, consumers, clip.outputs[0])
    if x is None or u is None:
        return None
    v = _only_user(prog, consumers, u.outputs[0])
    if v is None:
        return None
    if u.op_type == "Mul" and sorted(u.inputs) == sorted([x, clip.outputs[0]]) and _divides_by_6(prog, v, u.outputs[0]):
        pass  # (x * clip) / 6
    elif _divides_by_6(prog, u, clip.outputs[0]) and v.op_type == "Mul" and sorted(v.inputs) == sorted([x, u.outputs[0]]):
        pass  # x * (clip / 6)
    else:
        return None
    bx, by = prog.buffers[x], prog.buffers[v.outputs[0]]
    if np.dtype(bx.dtype).name not in ("float32", "float64") or by.dtype != bx.dtype or by.shape != bx.shape:
        return None
    return x, [prod, clip, u, v]


def _fuse_hardswish(prog: Program) -> Program:
    producers = prog.producers()
    consumers = prog.consumers()
    replaced: dict[int, Node | None] = {}
    for n in prog.nodes:
        if n.op_type != "Clip" or id(n) in replaced:
            continue
        found = _hardswish_chain(prog, producers, consumers, n)
        if found is None or any(id(m) in replaced for m in found[1]):
            continue
        x, chain = found
        for m in chain[:-1]:
            replaced[id(m)] = None
        replaced[id(chain[-1])] = Node("HardSwish", f"{chain[-1].name}__hardswish", [x], list(chain[-1].outputs))
    prog.nodes = [replaced.get(id(n), n) for n in prog.nodes if replaced.get(id(n), n) is not None]
    return prog


def fuse_activations(prog: Program) -> Program:
    prog = _fuse_hardswish(prog)
    prog = _fuse_silu(prog)
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
