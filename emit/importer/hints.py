"""Static shapes for intermediates whose shape depends on a runtime value, read off their consumers.

A model usually declares only its outputs. When a node's output shape is left open by inference (a
ReduceSum whose axes, a Range whose limit is a runtime input) and that tensor only flows through
shape-preserving ops (Cast, Sqrt, Mul by a scalar, ...) into a declared output, the declared shape
fixes it. The op's lowering still reads the runtime value in C and returns 1 when it disagrees, so a
hint can never make the C compute wrong values, only refuse an input at run time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx

from .static import Value

# one output with exactly the shape of input 0
SAME_SHAPE = {
    "Abs", "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "BitwiseNot", "Cast", "CastLike", "Ceil", "Celu", "Clip",
    "Cos", "Cosh", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity", "IsInf", "IsNaN",
    "LeakyRelu", "Log", "LogSoftmax", "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu", "Shrink", "Sigmoid",
    "Sign", "Sin", "Sinh", "Softmax", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Hardmax",
}  # fmt: skip
# one output, the multidirectional broadcast of all inputs
BROADCAST = {
    "Add", "And", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Div", "Equal", "Greater", "GreaterOrEqual",
    "Less", "LessOrEqual", "Max", "Mean", "Min", "Mod", "Mul", "Or", "Pow", "PRelu", "Sub", "Sum", "Where", "Xor",
}  # fmt: skip

_BUDGET = 2000  # consumer edges visited per query: a big graph with an unresolvable shape gives up quickly


def shape_from_consumers(
    name: str,
    known: list[int | None] | None,
    pending: Iterable[onnx.NodeProto],
    values: Mapping[str, Value],
    declared: Mapping[str, tuple[int, ...]],
    node: onnx.NodeProto | None = None,
) -> tuple[int, ...] | None:
    """The static shape of `name` (an output of `node`) implied by a declared tensor downstream, or None.
    `known` holds the dims inference did find (None where open; the list is None when even the rank is
    open); `pending` are the nodes not yet visited by the importer (the consumers, function bodies included)."""
    if node is not None and node.op_type == "Unique" and node.domain in ("", "ai.onnx"):
        return _unique_shapes(node, values, declared).get(name)
    nodes = list(pending)
    budget = [_BUDGET]

    def consumers(t: str) -> list[onnx.NodeProto]:
        return [n for n in nodes if t in n.input and n.domain in ("", "ai.onnx")]

    def resolve(t: str, known_t: list[int | None] | None, depth: int) -> tuple[int, ...] | None:
        if t in declared:
            return _fit(declared[t], known_t)
        if depth > 64:
            return None
        for n in consumers(t):
            budget[0] -= 1
            if budget[0] < 0 or not n.output or not n.output[0]:
                return None
            out = n.output[0]
            if n.op_type in SAME_SHAPE and n.input[0] == t:
                got = resolve(out, known_t, depth + 1)
            elif n.op_type in BROADCAST:
                s = resolve(out, None, depth + 1)
                got = None if s is None else _unbroadcast(s, known_t, [values.get(i) for i in n.input if i and i != t])
            else:
                got = None
            if got is not None:
                return got
        return None

    return resolve(name, known, 0)


def _fit(shape: tuple[int, ...], known: list[int | None] | None) -> tuple[int, ...] | None:
    """`shape` if it agrees with what inference knows."""
    if known is not None and (len(known) != len(shape) or any(k is not None and k != s for k, s in zip(known, shape))):
        return None
    return tuple(shape)


def _unbroadcast(out: tuple[int, ...], known: list[int | None] | None, others: list[Value | None]) -> tuple[int, ...] | None:
    """The shape of one broadcast operand, given the result's shape and the other operands' shapes.
    A dim where another operand already has the result's size could be 1 or that size: unknown,
    unless inference knows it. An operand not yet computed is taken as not widening this one."""
    rank = len(known) if known is not None else len(out)
    if rank > len(out):
        return None
    dims: list[int] = []
    for j in range(rank):
        s = out[len(out) - rank + j]
        k = known[j] if known is not None else None
        if k is not None:
            if k not in (1, s):
                return None
            dims.append(k)
            continue
        ambiguous = False
        for v in others:
            if v is None or s == 1:
                continue
            pos = len(v.shape) - (len(out) - (len(out) - rank + j))
            if 0 <= pos < len(v.shape) and v.shape[pos] == s:
                ambiguous = True
        if ambiguous:
            return None
        dims.append(s)
    return tuple(dims)


def _unique_shapes(node: onnx.NodeProto, values: Mapping[str, Value], declared: Mapping[str, tuple[int, ...]]) -> dict:
    """Unique's four outputs share one count: a declared one fixes the others; an axis with at most
    one item has exactly that many unique items."""
    x = values.get(node.input[0])
    if x is None:
        return {}
    axis = next((a.i for a in node.attribute if a.name == "axis"), None)
    shape = tuple(x.shape)
    if axis is not None and not -len(shape) <= axis < len(shape):
        return {}
    n = int(np.prod(shape)) if axis is None else shape[axis]
    outs = list(node.output) + [""] * (4 - len(node.output))
    count = n if n <= 1 else None
    for k, o in enumerate(outs):
        if o and o in declared and k != 2:
            d = declared[o]
            count = (d[0] if len(d) == 1 else None) if k or axis is None else (d[axis] if len(d) == len(shape) else None)
            break
    if count is None:
        return {}
    y = (count,) if axis is None else shape[:axis % len(shape)] + (count,) + shape[axis % len(shape) + 1 :]
    return {o: s for o, s in zip(outs, [y, (count,), (n,), (count,)]) if o}
