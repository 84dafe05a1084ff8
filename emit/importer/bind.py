"""Bind every graph input to a static shape: --shape for whole inputs, --dim for symbolic dims."""

from __future__ import annotations

import re

import onnx

from ..errors import EmitError

_DIMS = re.compile(r"^\d+(x\d+)*$")


def parse_shape_option(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME=1x3x224x224` -> ("NAME", (1, 3, 224, 224)); a scalar is `NAME=` (empty dims)."""
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise EmitError(f"malformed --shape '{text}': expected NAME=DxDxD, e.g. x=1x3x224x224")
    dims = dims.strip().lower()
    if dims == "":
        return name, ()
    if not _DIMS.match(dims):
        raise EmitError(f"malformed --shape '{text}': dims must be positive integers joined by 'x', e.g. x=1x3x224x224")
    shape = tuple(int(d) for d in dims.split("x"))
    if any(d <= 0 for d in shape):
        raise EmitError(f"malformed --shape '{text}': every dim must be at least 1")
    return name, shape


def parse_dim_option(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value.strip().isdigit() or int(value) <= 0:
        raise EmitError(f"malformed --dim '{text}': expected SYMBOL=N with N a positive integer, e.g. batch=1")
    return name.strip(), int(value)


def bind_input_shapes(
    graph: onnx.GraphProto,
    shapes: dict[str, tuple[int, ...]],
    dims: dict[str, int],
) -> dict[str, tuple[int, ...]]:
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    known = {v.name for v in inputs}
    for name in shapes:
        if name not in known:
            raise EmitError(f"--shape names '{name}', which is not a model input or a tensor of the graph (inputs: {', '.join(sorted(known))})")
    bound: dict[str, tuple[int, ...]] = {}
    for v in inputs:
        if not v.type.HasField("tensor_type"):  # a sequence or an optional (importer/sequences.py)
            from .sequences import bind_container_shapes

            bound[v.name] = bind_container_shapes(v, shapes)
            continue
        declared = v.type.tensor_type.shape.dim if v.type.tensor_type.HasField("shape") else None
        if v.name in shapes:
            shape = shapes[v.name]
            if declared is not None and len(declared) != len(shape):
                raise EmitError(f"--shape {v.name}: model declares rank {len(declared)}, got rank {len(shape)}")
            for axis, (d, want) in enumerate(zip(declared or [], shape)):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != want:
                    raise EmitError(f"--shape {v.name}: axis {axis} is fixed at {d.dim_value} in the model, got {want}")
            bound[v.name] = tuple(shape)
            continue
        if declared is None:
            raise EmitError(f"input '{v.name}' has no declared shape: pass --shape {v.name}=DxDxD")
        shape_list = []
        for axis, d in enumerate(declared):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape_list.append(d.dim_value)
            elif d.HasField("dim_param") and d.dim_param in dims:
                shape_list.append(dims[d.dim_param])
            else:
                example = "x".join(str(x.dim_value) if x.HasField("dim_value") and x.dim_value > 0 else "1" for x in declared)
                if d.HasField("dim_param") and d.dim_param:
                    raise EmitError(
                        f"input '{v.name}' has unbound symbolic dimension '{d.dim_param}' at axis {axis}: "
                        f"pass --dim {d.dim_param}=1 or --shape {v.name}={example}"
                    )
                raise EmitError(f"input '{v.name}' has an unknown dimension at axis {axis}: pass --shape {v.name}={example}")
        bound[v.name] = tuple(shape_list)
    return bound


def declared_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name the graph knows: node outputs and declared values."""
    names = {o for n in graph.node for o in n.output if o}
    names.update(v.name for v in list(graph.output) + list(graph.value_info))
    return names


def declared_shapes(graph: onnx.GraphProto, hints: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Static shapes the model declares for outputs and intermediates, overridden by --shape for them:
    used where a shape depends on a runtime value (a Reshape whose shape is an input) but is declared."""
    out: dict[str, tuple[int, ...]] = {}
    for v in list(graph.value_info) + list(graph.output):
        tt = v.type.tensor_type if v.type.HasField("tensor_type") else None
        if tt is None or not tt.HasField("shape"):
            continue
        dims = tt.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            out[v.name] = tuple(d.dim_value for d in dims)
    out.update(hints)
    return out
