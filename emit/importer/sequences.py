"""Sequences and optionals at compile time.

A sequence whose length and element shapes are known at compile time is a list of tensor names
(SeqValue); an empty optional is a NoneValue and a present one is just its value. Sequence ops
then only rearrange names (SequenceInsert, SequenceErase, SequenceAt with a constant position,
SequenceLength is a constant) or become tensor ops (SplitToSequence is a Split, ConcatFromSequence
a Concat, SequenceMap its body once per element). What would make a length or an element's shape
depend on run-time data gets an exact reason; SequenceAt with a run-time position over elements of
one shape is the one sequence op left for run time (emit.SequenceAt, emit/ops/sequence.py).

A graph input that is a sequence is bound to a length and element shapes (`shapes={"x": [(2, 3),
(4, 3)]}`) and becomes one tensor input per element, named `x[0]`, `x[1]`, ...; a sequence graph
output becomes outputs `y[0]`, `y[1]`, .... An optional input is bound to `None` (empty) or to a shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper

from ..errors import EmitError, UnsupportedError, node_label
from ..ir import Node
from .static import Value, _np_dtype

if TYPE_CHECKING:
    from .subgraph import Scope


@dataclass
class SeqValue:
    """A sequence known at compile time: the names of its tensors, in order."""

    elems: list[str]
    dtype: np.dtype | None = None


@dataclass
class NoneValue:
    """An empty optional."""

    kind: str = "tensor"


def is_container(v: Any) -> bool:
    return isinstance(v, (SeqValue, NoneValue))


# ---------------------------------------------------------------- graph inputs and outputs


def _kind(t: onnx.TypeProto) -> str:
    return t.WhichOneof("value") or "unknown"


def _elem(t: onnx.TypeProto) -> onnx.TypeProto:
    return t.optional_type.elem_type if _kind(t) == "optional_type" else t


def _example(name: str, t: onnx.TypeProto) -> str:
    if _kind(t) == "sequence_type":
        return f"shapes={{'{name}': [(2, 3), (4, 3)]}} (one shape per element)"
    return f"shapes={{'{name}': (2, 3)}}"


def _is_shape(s: Any) -> bool:
    return isinstance(s, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in s)


def bind_container_shapes(v: onnx.ValueInfoProto, shapes: dict) -> Any:
    """The binding of a sequence or optional graph input: a list of element shapes (a sequence), a shape
    (a tensor), or None (an empty optional)."""
    t = v.type
    kind, inner = _kind(t), _elem(t)
    if kind not in ("sequence_type", "optional_type") or _kind(inner) not in ("tensor_type", "sequence_type"):
        raise EmitError(f"input '{v.name}' is a {kind.removesuffix('_type')}; only tensor, sequence and optional inputs are supported")
    if v.name not in shapes:
        tt = inner.tensor_type if _kind(inner) == "tensor_type" else None
        if tt is not None and tt.HasField("shape") and all(d.HasField("dim_value") and d.dim_value > 0 for d in tt.shape.dim):
            return tuple(d.dim_value for d in tt.shape.dim)  # a present optional tensor of declared shape
        what = "a sequence of tensors" if kind == "sequence_type" else "an optional"
        empty = f"shapes={{'{v.name}': None}} (empty) or " if kind == "optional_type" else ""
        raise EmitError(
            f"input '{v.name}' is {what}, compiled with a fixed length and element shapes: bind it with "
            f"{empty}{_example(v.name, inner)} (Python API)"
        )
    s = shapes[v.name]
    if s is None:
        if kind != "optional_type":
            raise EmitError(f"input '{v.name}': only an optional can be bound to None (empty)")
        return None
    if _kind(inner) == "sequence_type":
        if not isinstance(s, (list, tuple)) or not all(_is_shape(e) for e in s) or _is_shape(s) and s:
            raise EmitError(f"input '{v.name}' is a sequence: bind it with a list of element shapes, e.g. {_example(v.name, inner)}")
        return [tuple(int(d) for d in e) for e in s]
    if not _is_shape(s):
        raise EmitError(f"input '{v.name}' is an optional tensor: bind it with a shape, e.g. {_example(v.name, inner)}, or None")
    return tuple(int(d) for d in s)


def _tensor_dtype(name: str, t: onnx.TypeProto) -> np.dtype:
    if _kind(t) != "tensor_type" or not t.tensor_type.elem_type:
        raise EmitError(f"input '{name}': elements must be tensors of a known type")
    return _np_dtype(t.tensor_type.elem_type)


def bind_container_input(v: onnx.ValueInfoProto, bound: Any, values: dict) -> list[str]:
    """Values for a sequence/optional graph input; the names of the tensor inputs it becomes."""
    inner = _elem(v.type)
    if bound is None:
        values[v.name] = NoneValue("sequence" if _kind(inner) == "sequence_type" else "tensor")
        return []
    if _kind(inner) == "tensor_type":
        values[v.name] = Value(_tensor_dtype(v.name, inner), tuple(bound))
        return [v.name]
    dtype = _tensor_dtype(v.name, inner.sequence_type.elem_type)
    names = []
    for k, shape in enumerate(bound):
        names.append(f"{v.name}[{k}]")
        values[names[-1]] = Value(dtype, tuple(shape))
    values[v.name] = SeqValue(names, dtype)
    return names


def graph_outputs(graph: onnx.GraphProto, values: dict, runtime: list[Node]) -> list[str]:
    """The graph's output names, a sequence output spelled out as one output per element (`y[0]`, ...)."""
    names = []
    for o in graph.output:
        v = values.get(o.name)
        if isinstance(v, NoneValue):
            raise UnsupportedError(f"graph output '{o.name}' is an empty optional; a compiled model only returns tensors")
        if not isinstance(v, SeqValue):
            names.append(o.name)
            continue
        for k, e in enumerate(v.elems):
            out = f"{o.name}[{k}]"
            if e == out:  # already named as this output's element
                names.append(out)
                continue
            ev = values[e]
            if out in values:
                raise EmitError(f"graph output '{o.name}': the name '{out}' for its element {k} is taken")
            values[out] = Value(ev.dtype, tuple(ev.shape))
            runtime.append(Node("Identity", out, [e], [out]))
            names.append(out)
    return names


# ---------------------------------------------------------------- helpers


def alias(scope: Scope, src: str, dst: str) -> None:
    """`dst` holds what `src` holds: the same sequence, the same constant, or a copy made at run time."""
    v = scope.values[src]
    if is_container(v) or v.const is not None:
        scope.values[dst] = v
        return
    scope.values[dst] = Value(v.dtype, tuple(v.shape))
    scope.runtime.append(Node("Identity", dst, [src], [dst]))


def _axes_node(scope: Scope, op: str, x: str, out: str, axes: list[int], name: str) -> onnx.NodeProto:
    if scope.opset >= 13:
        a = scope.constant(f"{name}/axes", np.array(axes, dtype=np.int64))
        return helper.make_node(op, [x, a], [out], name=name)
    return helper.make_node(op, [x], [out], name=name, axes=axes)


def stack_rows(scope: Scope, parts: list[str], out: str, axis: int, name: str, new_axis: bool = True) -> None:
    """`out` = the tensors `parts` concatenated along `axis` (each given a new axis there first);
    `name` is the node's, for the nodes made here."""
    for p in parts:
        if is_container(scope.values[p]):
            raise UnsupportedError(f"node '{name}': '{p}' is a sequence or optional; only tensors can be stacked")
    if len(parts) == 1 and not new_axis:
        alias(scope, parts[0], out)
        return
    nodes, pieces = [], []
    for k, p in enumerate(parts):
        if not new_axis:
            pieces.append(p)
            continue
        rank = len(scope.values[p].shape) + 1
        u = out if len(parts) == 1 else scope.fresh(f"{out}/row{k}")
        nodes.append(_axes_node(scope, "Unsqueeze", p, u, [axis + rank if axis < 0 else axis], f"{name}/unsqueeze{k}"))
        pieces.append(u)
    if len(parts) > 1:
        nodes.append(helper.make_node("Concat", pieces, [out], name=f"{name}/concat", axis=axis))
    scope.run(nodes)


def _seq(scope: Scope, proto: onnx.NodeProto, i: int) -> SeqValue:
    v = scope.values[proto.input[i]]
    if not isinstance(v, SeqValue):
        raise UnsupportedError(f"node {node_label(proto.op_type, proto.name)}: input '{proto.input[i]}' is not a sequence")
    return v


def _position(scope: Scope, proto: onnx.NodeProto, i: int, n: int, default: int, insert: bool = False) -> int:
    label = node_label(proto.op_type, proto.name)
    if i >= len(proto.input) or not proto.input[i]:
        return default
    v = scope.values[proto.input[i]]
    if is_container(v) or v.const is None:
        raise UnsupportedError(
            f"node {label}: position '{proto.input[i]}' is a run-time value; a sequence's layout must be known at compile time "
            "(make the position a constant)"
        )
    p = int(np.asarray(v.const).reshape(-1)[0])
    hi = n if insert else n - 1
    if not -n <= p <= hi:
        raise EmitError(f"node {label}: position {p} is out of range for a sequence of {n} tensors")
    return p + n if p < 0 else p


def _attrs(proto: onnx.NodeProto) -> dict:
    return {a.name: (a.g if a.type == onnx.AttributeProto.GRAPH else helper.get_attribute_value(a)) for a in proto.attribute}


# ---------------------------------------------------------------- sequence and optional ops

SEQUENCE_OPS = {
    "SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceAt", "SequenceErase", "SequenceLength",
    "ConcatFromSequence", "SplitToSequence", "SequenceMap", "Optional", "OptionalHasElement", "OptionalGetElement",
}  # fmt: skip


def import_sequence(proto: onnx.NodeProto, scope: Scope) -> bool:
    label = node_label(proto.op_type, proto.name)
    ins = [scope.values.get(i) if i else None for i in proto.input]
    op = proto.op_type
    if op not in SEQUENCE_OPS:
        if op == "Identity" and is_container(ins[0]):
            scope.values[proto.output[0]] = ins[0]
            return True
        bad = next((i for i, v in zip(proto.input, ins) if is_container(v)), None)
        if bad is not None:
            kind = "a sequence" if isinstance(scope.values[bad], SeqValue) else "an empty optional"
            raise UnsupportedError(f"node {label}: input '{bad}' is {kind}; {op} takes tensors")
        return False
    out = proto.output[0] if proto.output else ""
    a = _attrs(proto)
    if op == "SequenceEmpty":
        scope.values[out] = SeqValue([], _np_dtype(a.get("dtype", onnx.TensorProto.FLOAT)))
    elif op == "SequenceConstruct":
        scope.values[out] = SeqValue(list(proto.input), np.dtype(ins[0].dtype) if ins and ins[0] is not None else None)
    elif op == "SequenceInsert":
        s = _seq(scope, proto, 0)
        pos = _position(scope, proto, 2, len(s.elems), len(s.elems), insert=True)
        elems = list(s.elems)
        elems.insert(pos, proto.input[1])
        scope.values[out] = SeqValue(elems, s.dtype)
    elif op == "SequenceErase":
        s = _seq(scope, proto, 0)
        if not s.elems:
            raise EmitError(f"node {label}: erasing from an empty sequence")
        pos = _position(scope, proto, 1, len(s.elems), len(s.elems) - 1)
        scope.values[out] = SeqValue(s.elems[:pos] + s.elems[pos + 1 :], s.dtype)
    elif op == "SequenceLength":
        s = _seq(scope, proto, 0)
        scope.values[out] = Value(np.dtype(np.int64), (), np.array(len(s.elems), dtype=np.int64))
    elif op == "SequenceAt":
        _sequence_at(proto, scope)
    elif op == "ConcatFromSequence":
        s = _seq(scope, proto, 0)
        if not s.elems:
            raise EmitError(f"node {label}: concatenating an empty sequence")
        stack_rows(scope, s.elems, out, int(a["axis"]), proto.name, new_axis=bool(a.get("new_axis", 0)))
    elif op == "SplitToSequence":
        _split_to_sequence(proto, scope, a)
    elif op == "SequenceMap":
        _sequence_map(proto, scope, a)
    elif op == "Optional":
        if proto.input and proto.input[0]:
            alias(scope, proto.input[0], out)
        else:
            t = a.get("type")
            scope.values[out] = NoneValue("sequence" if t is not None and _kind(t) == "sequence_type" else "tensor")
    elif op == "OptionalHasElement":
        has = bool(proto.input) and bool(proto.input[0]) and not isinstance(ins[0], NoneValue)
        scope.values[out] = Value(np.dtype(np.bool_), (), np.array(has))
    elif op == "OptionalGetElement":
        if isinstance(ins[0], NoneValue):
            raise UnsupportedError(f"node {label}: the optional '{proto.input[0]}' is empty (known at compile time), so it has no element to get")
        alias(scope, proto.input[0], out)
    return True


def _sequence_at(proto: onnx.NodeProto, scope: Scope) -> None:
    label = node_label(proto.op_type, proto.name)
    s = _seq(scope, proto, 0)
    out = proto.output[0]
    n = len(s.elems)
    pv = scope.values[proto.input[1]]
    if not is_container(pv) and pv.const is not None:
        alias(scope, s.elems[_position(scope, proto, 1, n, 0)], out)
        return
    if not n:
        raise EmitError(f"node {label}: reading from an empty sequence")
    types = {(np.dtype(scope.values[e].dtype), tuple(scope.values[e].shape)) for e in s.elems}
    if len(types) != 1:
        raise UnsupportedError(
            f"node {label}: position '{proto.input[1]}' is a run-time value and the sequence's tensors have different shapes, "
            "so the result's shape would depend on it (make the position a constant)"
        )
    dtype, shape = types.pop()
    scope.values[out] = Value(dtype, shape)
    scope.runtime.append(Node("emit.SequenceAt", proto.name, [proto.input[1], *s.elems], [out]))


def _split_to_sequence(proto: onnx.NodeProto, scope: Scope, a: dict) -> None:
    label = node_label(proto.op_type, proto.name)
    x = scope.values[proto.input[0]]
    out = proto.output[0]
    rank = len(x.shape)
    axis = int(a.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    dim = int(x.shape[axis])
    squeeze = False
    if len(proto.input) > 1 and proto.input[1]:
        sv = scope.values[proto.input[1]]
        if is_container(sv) or sv.const is None:
            raise UnsupportedError(
                f"node {label}: the number and shapes of the pieces depend on input '{proto.input[1]}' (split), which is "
                "a run-time value; make it a constant"
            )
        split = np.asarray(sv.const).astype(np.int64)
        if split.ndim == 0:
            step = int(split)
            if step <= 0:
                raise EmitError(f"node {label}: split {step} must be positive")
            sizes = [step] * (dim // step) + ([dim % step] if dim % step else [])
        else:
            sizes = [int(v) for v in split.reshape(-1)]
            if sum(sizes) != dim:
                raise EmitError(f"node {label}: split sizes {sizes} do not add up to {dim}")
    else:
        sizes = [1] * dim
        squeeze = not int(a.get("keepdims", 1))
    names = [scope.fresh(f"{out}[{k}]") for k in range(len(sizes))]
    nodes = []
    if sizes:
        pieces = [scope.fresh(f"{n}/piece") for n in names] if squeeze else names
        if scope.opset >= 13:
            sp = scope.constant(f"{out}/split", np.array(sizes, dtype=np.int64))
            nodes.append(helper.make_node("Split", [proto.input[0], sp], pieces, name=f"{proto.name}/split", axis=axis))
        else:
            nodes.append(helper.make_node("Split", [proto.input[0]], pieces, name=f"{proto.name}/split", axis=axis, split=sizes))
        if squeeze:
            for k, (p, n) in enumerate(zip(pieces, names)):
                nodes.append(_axes_node(scope, "Squeeze", p, n, [axis], f"{proto.name}/squeeze{k}"))
    scope.run(nodes)
    scope.values[out] = SeqValue(names, np.dtype(x.dtype))


def _sequence_map(proto: onnx.NodeProto, scope: Scope, a: dict) -> None:
    from .subgraph import bind_graph, walk_graph

    label = node_label(proto.op_type, proto.name)
    g = a["body"]
    s0 = _seq(scope, proto, 0)
    n = len(s0.elems)
    ins = [scope.values[i] for i in proto.input]
    for i, v in zip(proto.input, ins):
        if isinstance(v, SeqValue) and len(v.elems) != n:
            raise EmitError(f"node {label}: input sequences have {n} and {len(v.elems)} tensors")
        if isinstance(v, NoneValue):
            raise UnsupportedError(f"node {label}: input '{i}' is an empty optional")
    formal = [v.name for v in g.input]
    results: list[list[str]] = [[] for _ in proto.output]
    for k in range(n):
        actual = [v.elems[k] if isinstance(v, SeqValue) else i for i, v in zip(proto.input, ins)]
        body = bind_graph(g, f"{proto.name}/{k}", scope, dict(zip(formal, actual)))
        if not walk_graph(scope, body, scope.runtime):
            scope.unknown.update(proto.output)
            return
        for j, o in enumerate(body.output):
            results[j].append(o.name)
    for out, names in zip(proto.output, results):
        if out:
            dtype = np.dtype(scope.values[names[0]].dtype) if names else None
            scope.values[out] = SeqValue(names, dtype)


__all__ = ["SeqValue", "NoneValue", "is_container", "import_sequence", "alias", "stack_rows", "bind_container_shapes", "bind_container_input", "graph_outputs"]
