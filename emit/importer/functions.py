"""Ops without a lowering that ONNX defines by a function body are compiled as that body."""

from __future__ import annotations

import onnx


def expand_function(node: onnx.NodeProto, values: dict, opsets) -> list[onnx.NodeProto] | None:
    """The nodes of `node`'s ONNX function body (renamed apart), or None if it has none."""
    return None
