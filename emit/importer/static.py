"""Walk the graph once in order: fold every node whose inputs are all known values, give every
other node static output shapes (onnx's own inference, run per node on bound shapes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..codegen.storage import BLOCKS_MIN_ELEMENTS, BLOCKS_RATIO
from ..codegen.weights import compact_blocks
from ..errors import EmitError, UnsupportedError, node_label

# nodes whose result is random or which the compiler must keep as runtime work
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
# a constant result above this size that is much larger than the constants it comes from is computed at run time,
# unless it is a few distinct blocks repeated (a fill): those are stored compactly (codegen/storage.py's blocks)
EXPAND_LIMIT = 1 << 20
_SMALL_CONST = 1 << 16  # constant inputs up to this many elements are shown to shape inference


@dataclass
class Value:
    dtype: np.dtype
    shape: tuple[int, ...]
    const: np.ndarray | None = None


def attr_value(a: onnx.AttributeProto):
    if a.type == onnx.AttributeProto.GRAPH:
        return a.g
    if a.type == onnx.AttributeProto.GRAPHS:
        return list(a.graphs)
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


def _np_dtype(elem_type: int) -> np.dtype:
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _elem_type(dtype: np.dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _single_node_model(node: onnx.NodeProto, values: dict[str, Value], opsets, with_consts: bool) -> onnx.ModelProto:
    inputs, inits = [], []
    for name in dict.fromkeys(i for i in node.input if i):
        v = values[name]
        if v.const is not None and (with_consts or v.const.size <= _SMALL_CONST):
            inits.append(numpy_helper.from_array(np.asarray(v.const), name))
        else:
            inputs.append(helper.make_tensor_value_info(name, _elem_type(v.dtype), list(v.shape)))
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = helper.make_graph([node], "n", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=list(opsets), ir_version=10)


# ops whose onnx inference gives nothing or fails (function bodies with defaulted attributes);
# their one output has the type and shape of input 0
SAME_AS_INPUT = {"GroupNormalization", "MeanVarianceNormalization"}
# ops whose output length is set by the input's values, not by a shape input
DATA_DEPENDENT = {"Unique", "NonZero", "Compress", "NonMaxSuppression", "StringSplit"}


def infer_node(node: onnx.NodeProto, values: dict[str, Value], opsets, declared: dict | None = None, hint=None) -> list[Value | None]:
    """Static output types of one node, or raise naming the node. Where inference leaves a shape open
    (it depends on a runtime value), a static shape the model declares for that output is used, or
    else the one `hint(name, known_dims)` reads off its consumers (importer/hints.py)."""
    declared = declared or {}
    from .rules import shape_rule

    ruled = shape_rule(node, values)
    if ruled is not None:
        return ruled
    if node.op_type in SAME_AS_INPUT and node.domain in ("", "ai.onnx") and len(node.output) == 1 and node.input[0] in values:
        x = values[node.input[0]]
        return [Value(x.dtype, tuple(x.shape))]
    model = _single_node_model(node, values, opsets, with_consts=False)
    label = node_label(node.op_type, node.name)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=False)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise EmitError(f"node {label}: shape inference failed: {msg[:300]}") from None
    found = {vi.name: vi for vi in list(inferred.graph.output) + list(inferred.graph.value_info)}
    result: list[Value | None] = []
    for o in node.output:
        if not o:
            result.append(None)
            continue
        vi = found.get(o)
        tt = vi.type.tensor_type if vi is not None and vi.type.HasField("tensor_type") else None
        if tt is None or not tt.elem_type:
            raise UnsupportedError(f"node {label}: output '{o}' is not a tensor or has unknown type")
        open_shape = not tt.HasField("shape") or any(not d.HasField("dim_value") for d in tt.shape.dim)
        if open_shape and o not in declared and hint is not None:
            known = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim] if tt.HasField("shape") else None
            implied = hint(o, known)
            if implied is not None:
                result.append(Value(_np_dtype(tt.elem_type), tuple(implied)))
                continue
        if open_shape and o in declared:
            known = tt.shape.dim if tt.HasField("shape") else None
            want = declared[o]
            if known is not None and (len(known) != len(want) or any(d.HasField("dim_value") and d.dim_value != w for d, w in zip(known, want))):
                raise EmitError(f"node {label}: output '{o}' is declared as {list(want)}, which contradicts shape inference")
            result.append(Value(_np_dtype(tt.elem_type), tuple(want)))
            continue
        if open_shape and node.op_type in DATA_DEPENDENT and node.domain in ("", "ai.onnx"):
            raise UnsupportedError(
                f"node {label}: output '{o}' has no static shape (how many elements {node.op_type} returns depends on "
                f"the input's values; declare the output's shape in the model or bind it with --shape {o}=DxD...)"
            )
        if open_shape:
            raise UnsupportedError(
                f"node {label}: output '{o}' has no static shape (it depends on runtime values; "
                f"make the inputs that set shapes constant, or bind its shape with --shape {o}=DxD...)"
            )
        result.append(Value(_np_dtype(tt.elem_type), tuple(d.dim_value for d in tt.shape.dim)))
    return result


def evaluate_node(node: onnx.NodeProto, values: dict[str, Value], opsets) -> list[np.ndarray] | None:
    """Compute a node on constant inputs with onnx's reference implementation; None if it can't."""
    from onnx.reference import ReferenceEvaluator

    model = _single_node_model(node, values, opsets, with_consts=True)
    try:
        outs = ReferenceEvaluator(model).run(None, {})
    except Exception:
        return None
    return [np.asarray(o) for o in outs]


def shape_of(node: onnx.NodeProto, v: Value) -> np.ndarray:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(v.shape)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = max(0, min(rank, end + rank if end < 0 else end))
    return np.array(v.shape[start:end], dtype=np.int64)


def _repeats(a: np.ndarray) -> bool:
    """A float32 result storage keeps as its repeated blocks (a fill, a tiled pattern): folding it costs no bytes."""
    return a.dtype == np.float32 and a.size >= BLOCKS_MIN_ELEMENTS and compact_blocks(a, BLOCKS_RATIO) is not None


def try_fold(node: onnx.NodeProto, values: dict[str, Value], opsets) -> list[np.ndarray] | None:
    """The node's outputs if they are known before run time."""
    if node.op_type in _NEVER_FOLD or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "DequantizeLinear" and node.input and node.input[0] in values \
            and np.dtype(values[node.input[0]].dtype).name in ("int8", "uint8"):
        return None  # an int8 QDQ weight stays integer so passes/qdq.py can compute in integers; it folds the rest
    if node.op_type == "Constant":
        a = node.attribute[0]
        val = attr_value(a)
        if a.name == "value_float":
            val = np.array(val, dtype=np.float32)
        elif a.name == "value_floats":
            val = np.array(val, dtype=np.float32)
        elif a.name == "value_int":
            val = np.array(val, dtype=np.int64)
        elif a.name == "value_ints":
            val = np.array(val, dtype=np.int64)
        elif isinstance(val, str) or (isinstance(val, list) and val and isinstance(val[0], str)):
            raise UnsupportedError(f"node {node_label(node.op_type, node.name)}: string constants are not supported")
        return [np.asarray(val)]
    ins = [values[i] for i in node.input if i]
    if node.op_type == "Shape" and ins:
        return [shape_of(node, ins[0])]
    if node.op_type == "Size" and ins:
        return [np.array(int(np.prod(ins[0].shape, dtype=np.int64)), dtype=np.int64)]
    if any(getattr(v, "const", None) is None for v in ins):
        return None
    if any(g for a in node.attribute for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else [])):
        return None
    outs = evaluate_node(node, values, opsets)
    if outs is not None:
        in_bytes = sum(v.const.nbytes for v in ins)
        out_bytes = sum(o.nbytes for o in outs)
        if out_bytes > EXPAND_LIMIT and out_bytes > 2 * in_bytes and not all(_repeats(o) for o in outs):
            return None  # folding would grow the binary (a widening Cast of int8 weights): do it at run time
    return outs
