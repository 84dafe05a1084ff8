"""Narrow floats (float16, bfloat16, float8, float4) are computed in float32.

The lowerings compute in float32 and float64 only; the narrow types are stored as bit patterns and
understood by Cast/CastLike, by the quantised side of QuantizeLinear/DequantizeLinear, and by the ops that
only move bytes. Every other node gets its narrow float inputs cast to float32 and writes float32 results
that are cast back:

    x16 ─ Add ─ y16     becomes     x16 ─ Cast ─ x32 ─ Add ─ y32 ─ Cast ─ y16

The result is rounded to the narrow type after every op, as ONNX's reference (numpy, ml_dtypes) rounds
it: elementwise ops, MatMul and float16 sums match it exactly; a Softmax is split into the reference's
steps (max, subtract, exp, sum, divide), each rounded, for the same reason. ml_dtypes sums bfloat16 one
rounded addition at a time, so bfloat16 reductions may differ from it in the last place.

Constant inputs are converted at compile time (float32 weights: twice a float16 weight's size, but op
lowerings can still read them as constants). The narrow ints (int4, uint4, int2, uint2) have no
arithmetic here: another op reading or writing them is refused."""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..errors import UnsupportedError, node_label
from ..ir import ARENA, WEIGHT, Buffer, Node, Program, bodies
from ..ops.cast import NARROW_FLOATS, NARROW_INTS

# ops that only move or select bytes: any dtype, narrow ones included, as stored
DATA_MOVEMENT = {
    "emit.Copy", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
    "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "Gather", "GatherElements", "GatherND", "Compress",
    "ReverseSequence", "Shape", "Size",
}
CONVERSIONS = {"Cast", "CastLike"}
CONTROL = {"If", "Loop", "Scan", "emit.SequenceAt"}  # they move their bodies' values in and out as stored
# the inputs and outputs that stay narrow (the quantised side); the float side is widened
QUANTISED_SIDE: dict[str, tuple[set[int], set[int]]] = {
    "QuantizeLinear": ({2}, {0}),
    "DequantizeLinear": ({0, 2}, set()),
}
_KEEPS = "Cast, CastLike, QuantizeLinear, DequantizeLinear and ops that only move data"


def _name(prog: Program, tensor: str) -> str:
    return np.dtype(prog.buffers[tensor].dtype).name


def _fresh(prog: Program, base: str) -> str:
    name, k = base, 1
    while name in prog.buffers:
        name, k = f"{base}_{k}", k + 1
    return name


def _widen_attrs(attrs: dict) -> dict:
    """Tensor attributes of a narrow float dtype (ConstantOfShape's value, ...) as float32."""
    return {
        k: v.astype(np.float32) if isinstance(v, np.ndarray) and v.dtype.name in NARROW_FLOATS else v for k, v in attrs.items()
    }


def _softmax_steps(prog: Program, n: Node) -> list[Node]:
    """Softmax on a narrow float as the steps of ONNX's reference (x - max, exp, sum, divide), each rounded to
    the narrow type as numpy rounds it; computed in float32 at once, results differ in the last place."""
    x, y = n.inputs[0], n.outputs[0]
    b = prog.buffers[x]
    axis = int(n.attrs.get("axis", -1))
    keep = tuple(1 if k == (axis % len(b.shape)) else d for k, d in enumerate(b.shape))
    names = {}
    for key, shape in (("max", keep), ("shifted", b.shape), ("exp", b.shape), ("sum", keep)):
        names[key] = _fresh(prog, f"{y}__{key}")
        prog.buffers[names[key]] = Buffer(names[key], b.dtype, shape, ARENA)
    reduce = {"axes": [axis], "keepdims": 1}
    return [
        Node("ReduceMax", f"{n.name}__max", [x], [names["max"]], dict(reduce)),
        Node("Sub", f"{n.name}__shift", [x, names["max"]], [names["shifted"]]),
        Node("Exp", f"{n.name}__exp", [names["shifted"]], [names["exp"]]),
        Node("ReduceSum", f"{n.name}__sum", [names["exp"]], [names["sum"]], dict(reduce)),
        Node("Div", f"{n.name}__div", [names["exp"], names["sum"]], [y]),
    ]


def widen_narrow_floats(prog: Program) -> Program:
    if not any(np.dtype(b.dtype).name in NARROW_FLOATS or np.dtype(b.dtype).name in NARROW_INTS for b in prog.buffers.values()):
        return prog
    prog.nodes = _widen(prog, prog.nodes)
    return prog


def _widen(prog: Program, given: list[Node]) -> list[Node]:
    nodes: list[Node] = []
    for n in given:
        softmax = n.op_type == "Softmax" and n.domain == "" and prog.opset >= 13 and _name(prog, n.inputs[0]) in NARROW_FLOATS
        nodes.extend(_softmax_steps(prog, n) if softmax and prog.buffers[n.inputs[0]].shape else [n])
    order: list[Node] = []
    wide: dict[str, str] = {}  # narrow tensor -> its float32 value (a weight, or a Cast's output)
    for n in nodes:
        for b in bodies(n):  # an If/Loop/Scan body gets casts of its own: it may run many times or not at all
            b.nodes = _widen(prog, b.nodes)
        if n.domain == "" and (n.op_type in DATA_MOVEMENT or n.op_type in CONVERSIONS or n.op_type in CONTROL):
            order.append(n)
            continue
        keep_in, keep_out = QUANTISED_SIDE.get(n.op_type, (set(), set())) if n.domain == "" else (set(), set())
        for k, t in enumerate(n.inputs + n.outputs):
            kept = k in keep_in if k < len(n.inputs) else k - len(n.inputs) in keep_out
            if t and not kept and _name(prog, t) in NARROW_INTS:
                raise UnsupportedError(
                    f"node {node_label(n.op_type, n.name)}: tensor '{prog.public(t)}' is {_name(prog, t)}, which only "
                    f"{_KEEPS} handle; {n.op_type} would compute on it"
                )
        for k, t in enumerate(n.inputs):
            if not t or k in keep_in or _name(prog, t) not in NARROW_FLOATS:
                continue
            if t not in wide:
                src = prog.buffers[t]
                w = _fresh(prog, f"{t}__f32")
                if src.storage == WEIGHT and src.data is not None:
                    prog.buffers[w] = Buffer(w, np.dtype(np.float32), src.shape, WEIGHT, data=np.asarray(src.data).astype(np.float32))
                else:
                    prog.buffers[w] = Buffer(w, np.dtype(np.float32), src.shape, ARENA)
                    order.append(Node("Cast", f"{t}__to_f32", [t], [w], {"to": 1}))
                wide[t] = w
            n.inputs[k] = wide[t]
        after: list[Node] = []
        for k, t in enumerate(n.outputs):
            if not t or k in keep_out or _name(prog, t) not in NARROW_FLOATS:
                continue
            narrow = prog.buffers[t]
            w = _fresh(prog, f"{t}__f32")
            prog.buffers[w] = Buffer(w, np.dtype(np.float32), narrow.shape, ARENA)
            n.outputs[k] = w
            # saturate=0: overflow gives infinity or NaN, as arithmetic in the narrow type would
            to = helper.np_dtype_to_tensor_dtype(np.dtype(narrow.dtype))
            after.append(Node("Cast", f"{t}__from_f32", [w], [t], {"to": to, "saturate": 0}))
        n.attrs = _widen_attrs(n.attrs)
        order.append(n)
        order.extend(after)
    return order


__all__ = ["widen_narrow_floats"]
