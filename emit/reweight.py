"""New values for a model's initializers from a checkpoint (`onnx-emit weights`): match checkpoint keys to
initializer names, put the values into the ONNX model, recompile, and write a model.weights whose layout hash
must equal the build's, so the built module takes it without recompiling."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import EmitError


@dataclass
class Parameter:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class Match:
    matched: dict[str, np.ndarray] = field(default_factory=dict)  # model name -> value, cast to the model's dtype
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)  # name -> (checkpoint, model shape)
    ignored: list[str] = field(default_factory=list)  # non-float entries the model lacks (BatchNorm's step counters)


def _is_generated(name: str) -> bool:
    """Names exporters make up for folded constants ('onnx::Conv_16', '/0/Constant_output_0'): no checkpoint has them."""
    return name.startswith(("onnx::", "/", "_v_")) or name == ""


def model_parameters(model: onnx.ModelProto) -> dict[str, Parameter]:
    """The initializers, plus the outputs of Identity nodes reading one (torch's exporter shares initializers whose
    initial values were equal — a fresh BatchNorm's weight and running_var — through such Identities)."""
    params = {}
    for t in model.graph.initializer:
        params[t.name] = Parameter(t.name, tuple(t.dims), np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)))
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input and node.input[0] in params and node.output[0] not in params:
            p = params[node.input[0]]
            params[node.output[0]] = Parameter(node.output[0], p.shape, p.dtype)
    return params


def match_checkpoint(model: onnx.ModelProto, tensors: dict[str, np.ndarray]) -> Match:
    params = model_parameters(model)
    m = Match()
    for key, value in tensors.items():
        p = params.get(key)
        if p is None:
            (m.unexpected if value.dtype.kind in "fcV" else m.ignored).append(key)
        elif [d for d in value.shape if d != 1] != [d for d in p.shape if d != 1]:  # [N] fits [1, N]; nothing else
            m.mismatched[key] = (list(value.shape), list(p.shape))
        else:
            m.matched[key] = np.asarray(value).astype(p.dtype).reshape(p.shape)
    m.missing = [n for n, p in params.items() if n not in tensors and not _is_generated(n) and p.dtype.kind == "f"]
    return m


def check_match(m: Match, what: str) -> None:
    """One error naming every missing, unexpected and shape-mismatched key at once."""
    parts = []
    if m.missing:
        parts.append(f"missing {len(m.missing)} ({', '.join(m.missing)})")
    if m.unexpected:
        parts.append(f"unexpected {len(m.unexpected)} ({', '.join(m.unexpected)})")
    if m.mismatched:
        shapes = "; ".join(f"{k}: checkpoint {c}, model {w}" for k, (c, w) in m.mismatched.items())
        parts.append(f"shape mismatch {len(m.mismatched)} ({shapes})")
    if parts:
        raise EmitError(f"{what}: {'; '.join(parts)} — see --list-keys, fix names with --key-remap 'REGEX=REPLACEMENT'")


def with_values(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose initializers hold `values`; an Identity alias given its own value becomes an
    initializer of its own."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    for t in g.initializer:
        if t.name in values:
            t.CopyFrom(numpy_helper.from_array(values[t.name], t.name))
    inits = {t.name for t in g.initializer}
    keep = []
    for node in g.node:
        name = node.output[0] if node.op_type == "Identity" and node.output else None
        if name in values and name not in inits and node.input[0] in inits:
            g.initializer.append(numpy_helper.from_array(values[name], name))
        else:
            keep.append(node)
    if len(keep) != len(g.node):
        del g.node[:]
        g.node.extend(keep)
    return out
