"""Static shape rules for ops onnx's shape inference does not cover: ai.onnx.ml ops whose schema has
no inference function, and com.microsoft contrib ops (no schema in onnx at all)."""

from __future__ import annotations

import numpy as np
import onnx

from .static import Value

F32 = np.dtype(np.float32)
_GELU = {"Gelu", "FastGelu", "BiasGelu", "QuickGelu"}
_SKIP_NORM = {"SkipLayerNormalization", "SkipSimplifiedLayerNormalization"}


def shape_rule(node: onnx.NodeProto, values: dict[str, Value]) -> list[Value | None] | None:
    """Output types of a node these rules know, or None (then onnx's inference runs)."""
    if not node.input or node.input[0] not in values:
        return None
    x = values[node.input[0]]
    shape = tuple(x.shape)
    outs = [o for o in node.output]
    if node.domain == "ai.onnx.ml":
        if node.op_type in ("Scaler", "Normalizer"):
            return [Value(F32, shape)]
        if node.op_type == "LinearRegressor":
            targets = next((a.i for a in node.attribute if a.name == "targets"), 1)
            return [Value(F32, (shape[0] if len(shape) == 2 else 1, int(targets)))]
        return None
    if node.domain != "com.microsoft":
        return None
    if node.op_type in _GELU:
        return [Value(x.dtype, shape)] + [None] * (len(outs) - 1)
    if node.op_type in _SKIP_NORM:
        stat = Value(F32, shape[:-1] + (1,))
        kinds = [Value(x.dtype, shape), stat, stat, Value(x.dtype, shape)]
        return [kinds[k] if o else None for k, o in enumerate(outs[:4])]
    return None
