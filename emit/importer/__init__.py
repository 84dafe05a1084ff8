"""ONNX → IR: load, check, upgrade, bind dims, infer static shapes, fold constants."""

from __future__ import annotations

import os
import re
from collections import deque

import numpy as np
import onnx

from ..errors import EmitError, UnsupportedError, node_label
from ..ir import (
    ARENA,
    INPUT,
    OUTPUT,
    STRING_DTYPE,
    WEIGHT,
    Buffer,
    Node,
    Program,
    bodies,
    encode_strings,
    is_string,
    is_supported_dtype,
    walk_nodes,
)
from .bind import bind_input_shapes, declared_names, declared_shapes
from .functions import expand_function
from .hints import shape_from_consumers
from .load import load_model, opset_of
from .sequences import bind_container_input, graph_outputs
from .static import Value, _np_dtype, attr_value, infer_node, try_fold
from .subgraph import Scope, import_structured

COPY = "emit.Copy"  # internal op: copy a value into a graph output


def default_name(source) -> str:
    stem = os.path.splitext(os.path.basename(str(source)))[0] if not isinstance(source, onnx.ModelProto) else "model"
    name = re.sub(r"[^0-9a-zA-Z_]", "_", stem).strip("_").lower() or "model"
    return name if not name[0].isdigit() else f"m_{name}"


def import_model(
    source,
    shapes: dict[str, tuple[int, ...]] | None = None,
    dims: dict[str, int] | None = None,
    name: str | None = None,
    custom_ops: dict | None = None,
) -> Program:
    """`custom_ops`: (domain, op type) -> ops.custom.CustomOp, the user's C kernels for ops of their own domains."""
    model = load_model(source)
    graph = model.graph
    opsets = list(model.opset_import)
    shapes = dict(shapes or {})
    graph_inputs = {v.name for v in graph.input}
    hints = {k: v for k, v in shapes.items() if k not in graph_inputs and k in declared_names(graph)}
    bound = bind_input_shapes(graph, {k: v for k, v in shapes.items() if k not in hints}, dict(dims or {}))
    declared = declared_shapes(graph, hints)

    values: dict[str, Value] = {}
    for t in graph.initializer:
        arr = onnx.numpy_helper.to_array(t)
        values[t.name] = Value(arr.dtype, arr.shape, arr)
    initializer_names = set(values)
    input_names = []
    for v in graph.input:
        if v.name in initializer_names:
            continue  # old exporters list initializers as inputs too
        if not v.type.HasField("tensor_type"):  # a sequence or an optional: its tensors are inputs of their own
            input_names += bind_container_input(v, bound[v.name], values)
            continue
        input_names.append(v.name)
        values[v.name] = Value(_np_dtype(v.type.tensor_type.elem_type), bound[v.name])

    runtime: list[Node] = []
    unsupported: list[tuple[str, str, str]] = []
    unknown: set[str] = set()  # values downstream of an unsupported node
    walk(Scope(values, opsets, declared, runtime, unsupported, unknown, deque(graph.node), dict(custom_ops or {})))
    output_names = graph_outputs(graph, values, runtime) if not unsupported else []

    if unsupported:
        raise unsupported_error(unsupported)
    return _build_program(name or default_name(source), values, runtime, input_names, output_names, opset_of(model))


def walk(scope: Scope) -> None:
    """Visit scope.work's nodes in order: fold what is known, expand function bodies, compile control flow
    and sequences at import time (importer/subgraph.py, sequences.py), give the rest static types."""
    from ..ops import is_supported

    values, opsets, declared, work = scope.values, scope.opsets, scope.declared, scope.work
    runtime, unsupported, unknown = scope.runtime, scope.unsupported, scope.unknown
    index = 0
    while work:
        proto = work.popleft()
        index += 1
        if not proto.name:
            proto.name = f"{proto.op_type}_{index}"
        label = node_label(proto.op_type, proto.name)
        if any(i in unknown for i in proto.input):
            unknown.update(proto.output)
            continue
        for i in proto.input:
            if i and i not in values:
                raise EmitError(f"node {label}: input '{i}' is not produced by any earlier node")
        if import_structured(proto, scope):  # If, Loop, Scan, sequence and optional ops
            continue
        custom = scope.custom.get((proto.domain, proto.op_type))
        if custom is not None:
            runtime.append(custom_node(proto, custom, values, declared))
            continue
        foldable = is_supported(proto.op_type, proto.domain) or proto.domain in ("", "ai.onnx")
        if foldable and dequantizes_a_matmul_weight(proto, values, work):
            foldable = False  # the MatMul reads the int8 weight itself (passes/dequant.py): 4x fewer bytes to store
        folded = try_fold(proto, values, opsets) if foldable else None
        if folded is not None:
            for out, arr in zip((o for o in proto.output if o), folded):
                values[out] = Value(arr.dtype, tuple(arr.shape), arr)
            continue
        if not is_supported(proto.op_type, "" if proto.domain == "ai.onnx" else proto.domain):
            body = expand_function(proto, values, opsets)
            if body is not None:  # an op defined by an ONNX function: compile its body instead
                work.extendleft(reversed(body))
                continue
            unsupported.append((proto.op_type, proto.domain, proto.name))
            unknown.update(proto.output)
            continue
        # an output shape left open by a runtime value may be read off the declared tensors downstream
        hint = lambda o, known, n=proto: shape_from_consumers(o, known, work, values, declared, n)  # noqa: E731
        outs = infer_node(proto, values, opsets, declared, hint=hint)
        for out, val in zip(proto.output, outs):
            if out and val is not None:
                values[out] = val
        runtime.append(
            Node(
                op_type=proto.op_type,
                name=proto.name,
                inputs=list(proto.input),
                outputs=list(proto.output),
                attrs={a.name: attr_value(a) for a in proto.attribute},
                domain=proto.domain if proto.domain != "ai.onnx" else "",
            )
        )


def dequantizes_a_matmul_weight(proto: onnx.NodeProto, values: dict[str, Value], work: deque) -> bool:
    """A Cast of an int8 weight to float whose only reader is a Mul whose only reader is a MatMul's B: left to run
    time, where passes/dequant.py gives the MatMul the int8 weight and its scales instead."""
    if proto.op_type != "Cast" or not proto.input or proto.input[0] not in values:
        return False
    src = values[proto.input[0]]
    if getattr(src, "const", None) is None or np.dtype(src.dtype) != np.int8 or len(src.shape) != 2:
        return False
    readers = [n for n in work if proto.output[0] in n.input]
    if len(readers) != 1 or readers[0].op_type != "Mul":
        return False
    users = [n for n in work if readers[0].output[0] in n.input]
    return len(users) == 1 and users[0].op_type == "MatMul" and list(users[0].input[1:2]) == [readers[0].output[0]]


def custom_node(proto: onnx.NodeProto, custom, values: dict[str, Value], declared: dict) -> Node:
    """A node run by the user's kernel: its outputs take the model's declared static shape, else input 0's;
    input 0's dtype."""
    first = next((values[i] for i in proto.input if i), None)
    if first is None:
        raise EmitError(f"node {node_label(proto.op_type, proto.name)}: a custom operator needs at least one input "
                        "(its outputs take input 0's dtype)")
    for out in proto.output:
        if out:
            shape = declared.get(out)
            static = shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)
            values[out] = Value(first.dtype, tuple(shape) if static else tuple(first.shape))
    attrs = {a.name: attr_value(a) for a in proto.attribute}
    return Node(proto.op_type, proto.name, list(proto.input), list(proto.output), {**attrs, "__custom__": custom}, proto.domain)


def unsupported_error(missing: list[tuple[str, str, str]]) -> UnsupportedError:
    """One line naming every unsupported op with its nodes; the list rides along for `inspect`."""
    by_op: dict[str, list[str]] = {}
    for op_type, domain, node in missing:
        by_op.setdefault(f"{domain}::{op_type}" if domain else op_type, []).append(f"'{node}'")
    parts = [f"{op} (node{'s' if len(ns) > 1 else ''} {', '.join(ns[:3])}{', ...' if len(ns) > 3 else ''})" for op, ns in by_op.items()]
    from ..ops.registry import why_unsupported

    why = {k: why_unsupported(*reversed(k.split("::", 1))) if "::" in k else why_unsupported(k) for k in by_op}
    for k in why:  # an op of the user's own domain: say how to bring its kernel
        if "::" in k and not k.startswith("ai.onnx") and not why[k]:
            why[k] = f"a custom operator: give its C kernel with --custom-op {k}=kernel.c (docs/CUSTOM_OPS.md)"
    parts = [p + (f": {why[k]}" if why[k] else "") for p, k in zip(parts, by_op)]
    err = UnsupportedError(f"unsupported operator{'s' if len(parts) > 1 else ''}: {'; '.join(parts)}")
    err.nodes = missing  # type: ignore[attr-defined]
    return err


def _build_program(name, values, runtime, input_names, output_names, opset) -> Program:
    buffers: dict[str, Buffer] = {}

    def add(vname: str, storage: str) -> None:
        v = values[vname]
        shape = tuple(int(d) for d in v.shape)
        if is_string(v.dtype):  # fixed-width UTF-8 slots (ir.STRING_DTYPE)
            try:
                data = encode_strings(v.const, f"tensor '{vname}'") if storage == WEIGHT else None
            except ValueError as exc:
                raise UnsupportedError(str(exc)) from None
            buffers[vname] = Buffer(vname, STRING_DTYPE, shape, storage, data=data)
            return
        if not is_supported_dtype(v.dtype):
            raise UnsupportedError(f"tensor '{vname}' has dtype {np.dtype(v.dtype).name}, which is not supported yet")
        data = np.ascontiguousarray(v.const) if storage == WEIGHT else None
        buffers[vname] = Buffer(vname, np.dtype(v.dtype), shape, storage, data=data)

    for i in input_names:
        add(i, INPUT)
    for n in walk_nodes(runtime):  # nodes inside If/Loop/Scan bodies have buffers too
        for i in n.inputs:
            if i and i not in buffers:
                add(i, WEIGHT if values[i].const is not None else ARENA)
        for o in n.outputs:
            if o and o not in buffers:
                add(o, ARENA)
        for body in bodies(n):  # a loop's state lives in the body's formal inputs, written by the node
            for i in body.inputs + body.outputs:
                if i and i not in buffers:
                    add(i, WEIGHT if values[i].const is not None else ARENA)

    outputs: list[str] = []
    public: dict[str, str] = {}
    for o in output_names:
        if o not in values:
            raise EmitError(f"graph output '{o}' is not produced by any node")
        src = o
        if o in buffers and buffers[o].storage == ARENA and o not in outputs:
            buffers[o].storage = OUTPUT
            outputs.append(o)
            continue
        # a constant, an input, or a repeated output: copy it into an output of its own
        if src not in buffers:
            add(src, WEIGHT if values[src].const is not None else ARENA)
        out_name = f"{o}__out{len(outputs)}" if o in buffers and o in outputs or o in input_names or values[o].const is not None else o
        v = buffers[src]
        buffers[out_name] = Buffer(out_name, v.dtype, v.shape, OUTPUT)
        runtime.append(Node(COPY, f"copy_{out_name}", [src], [out_name]))
        outputs.append(out_name)
        if out_name != o:
            public[out_name] = o
    return Program(name, buffers, runtime, input_names, outputs, opset, public_names=public)


__all__ = ["import_model", "default_name", "COPY"]
