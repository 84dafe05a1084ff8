"""Load an ONNX file (external data too), check it, upgrade old opsets, inline local functions."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import version_converter

from ..errors import EmitError

MIN_OPSET = 13  # below this, ops take attributes where newer ones take inputs; upgrade first


def load_model(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        model = source
    else:
        path = Path(source)
        if not path.is_file():
            raise EmitError(f"{path}: no such file")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf gives long, unhelpful messages
            raise EmitError(f"{path}: not a valid ONNX model (cannot parse protobuf: {type(exc).__name__})") from None
        if not model.graph.node and not model.graph.output:
            raise EmitError(f"{path}: not a valid ONNX model (empty graph)")
        _load_external(model, path.parent)
    if not model.opset_import:
        raise EmitError("not a valid ONNX model: no opset_import")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmitError(f"invalid ONNX model: {first}") from None
    except ValueError:
        pass  # models over 2 GB cannot be checked in memory; the importer still validates them node by node
    model = _inline_functions(model)
    return _upgrade(model)


def _load_external(model: onnx.ModelProto, base: Path) -> None:
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    missing = set()
    for t in _all_tensors(model):
        if uses_external_data(t):
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            if not (base / loc).is_file():
                missing.add(loc)
    if missing:
        raise EmitError(f"missing external data file(s) {', '.join(sorted(missing))} next to the model in {base}")
    try:
        load_external_data_for_model(model, str(base))
    except Exception as exc:
        raise EmitError(f"cannot read external data: {exc}") from None


def _all_tensors(model: onnx.ModelProto):
    yield from model.graph.initializer
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 1


def _inline_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    if not model.functions:
        return model
    from onnx import inliner

    return inliner.inline_local_functions(model)


def _upgrade(model: onnx.ModelProto) -> onnx.ModelProto:
    """Old opsets go through onnx's converter; where it fails the ops handle the old form themselves."""
    if opset_of(model) >= MIN_OPSET:
        return model
    if opset_of(model) < 9 and any(n.op_type == "Scan" for n in model.graph.node):
        return model  # the converter drops Scan-8's batch axis from the graph's inputs; emit/importer/subgraph.py runs Scan-8 as is
    try:
        converted = version_converter.convert_version(_legacy_hardmax(model), MIN_OPSET)
        if opset_of(model) < 11:
            _keep_legacy_resize(converted.graph)
        onnx.checker.check_model(converted)
        return converted
    except Exception:
        return model


def _legacy_hardmax(model: onnx.ModelProto) -> onnx.ModelProto:
    """Hardmax before opset 13 works on the input flattened to 2-D at `axis`; the converter keeps the
    node as is, which changes its meaning: spell the old form out (Flatten, Hardmax, Reshape back)."""
    if not any(n.op_type == "Hardmax" and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model
    old, model = model, onnx.ModelProto()
    model.CopyFrom(old)
    nodes = []
    for k, n in enumerate(model.graph.node):
        if n.op_type != "Hardmax" or n.domain not in ("", "ai.onnx"):
            nodes.append(n)
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        x, y, tag = n.input[0], n.output[0], f"__hardmax{k}"
        make = onnx.helper.make_node
        nodes += [
            make("Shape", [x], [f"{tag}_shape"], name=f"{tag}_s"),
            make("Flatten", [x], [f"{tag}_2d"], name=f"{tag}_f", axis=axis),
            make("Hardmax", [f"{tag}_2d"], [f"{tag}_h"], name=n.name or f"{tag}_h", axis=1),
            make("Reshape", [f"{tag}_h", f"{tag}_shape"], [y], name=f"{tag}_r"),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _keep_legacy_resize(graph: onnx.GraphProto) -> None:
    """The converter turns Upsample and Resize-10 into a Resize-11+ with the default (half_pixel)
    coordinates, which changes the results: restore their asymmetric coordinates and legacy
    nearest rounding ("simple", which emit.ops.resize implements)."""
    for node in graph.node:
        if node.op_type == "Resize" and node.domain in ("", "ai.onnx"):
            names = {a.name for a in node.attribute}
            if "coordinate_transformation_mode" not in names:
                node.attribute.append(onnx.helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
            if "nearest_mode" not in names:
                node.attribute.append(onnx.helper.make_attribute("nearest_mode", "simple"))
        for a in node.attribute:
            for g in [a.g] if a.HasField("g") else list(a.graphs):
                _keep_legacy_resize(g)
