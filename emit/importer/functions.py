"""Ops without a lowering that ONNX defines by a function body are compiled as that body.

The body comes from the op's schema at the model's opset for the op's domain: a fixed body
(`has_function`) or one built for this node's attributes and input types
(`has_context_dependent_function`). It is bound to the call site here:

- attribute references (`ref_attr_name`) take the node's attribute, else the schema's default,
  else the attribute is dropped (the body's op then uses its own default);
- formal inputs/outputs become the node's actual names (an omitted optional input becomes '', an
  omitted optional output an internal name), every other value name is prefixed with the node's name
  (inside subgraph attributes too), and body nodes get unique names under the node's name.

The importer infers shapes and picks lowerings at the model's opsets, so a body written for another
version of the default domain is only used as is when every op it uses has the same schema at both
versions; otherwise an older body is upgraded with onnx's version converter, and a body that needs a
newer opset than the model imports (or fails to convert) is not expanded (None: the op stays unsupported).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import onnx
from onnx import helper

# schema domains whose function bodies are expanded; 'ai.onnx' is the default domain spelled out
_DOMAINS = ("", "ai.onnx.preview")


def _domain(d: str) -> str:
    return "" if d == "ai.onnx" else d


def _opset_version(opsets: Iterable[onnx.OperatorSetIdProto], domain: str) -> int | None:
    for o in opsets:
        if _domain(o.domain) == domain:
            return int(o.version)
    return None


def _type_proto(v) -> onnx.TypeProto:
    """A tensor TypeProto of a Value (dtype, static shape) for context-dependent function builders."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(v.dtype))
    return helper.make_tensor_type_proto(elem, [int(d) for d in v.shape])


def _schema_body(node: onnx.NodeProto, values: dict, domain: str, version: int) -> onnx.FunctionProto | None:
    """The body of `node`'s op as written for the newest function version <= `version`, or None."""
    try:
        schema = onnx.defs.get_schema(node.op_type, max_inclusive_version=version, domain=domain)
    except onnx.defs.SchemaError:
        return None
    raw = b""
    try:
        if schema.has_function:
            fn_versions = [v for v in schema.function_opset_versions if v <= version]
            if fn_versions:
                # asked at its own version the body is returned unvalidated; the caller checks ops
                raw = schema.get_function_with_opset_version(max(fn_versions))
        if not raw and schema.has_context_dependent_function:
            fn_versions = [v for v in schema.context_dependent_function_opset_versions if v <= version]
            if fn_versions:
                types = [_type_proto(values[i]).SerializeToString() if i and i in values else onnx.TypeProto().SerializeToString() for i in node.input]
                raw = schema.get_context_dependent_function_with_opset_version(max(fn_versions), node.SerializeToString(), types)
    except Exception:  # a builder that rejects this node's attributes or types: no body
        return None
    if not raw:
        return None
    body = onnx.FunctionProto()
    body.ParseFromString(raw)
    if not body.node:
        return None
    # attribute defaults live in the schema, not in the body
    for name, a in schema.attributes.items():
        if a.default_value.type != onnx.AttributeProto.UNDEFINED:
            d = onnx.AttributeProto()
            d.CopyFrom(a.default_value)
            d.name = name
            body.attribute_proto.append(d)
    return body


def _walk_nodes(nodes: Iterable[onnx.NodeProto]) -> Iterable[onnx.NodeProto]:
    """Every node, and every node of every subgraph attribute, recursively."""
    for n in nodes:
        yield n
        for a in n.attribute:
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else []):
                yield from _walk_nodes(g.node)


def _bind_attributes(nodes: Iterable[onnx.NodeProto], actual: dict[str, onnx.AttributeProto]) -> None:
    """Replace attribute references by the referenced values; drop the ones with no value."""
    for n in _walk_nodes(nodes):
        kept = []
        for a in n.attribute:
            if a.ref_attr_name:
                src = actual.get(a.ref_attr_name)
                if src is None:
                    continue
                b = onnx.AttributeProto()
                b.CopyFrom(src)
                b.name = a.name
                a = b
            kept.append(a)
        del n.attribute[:]
        n.attribute.extend(kept)


def renamer(formal: dict[str, str], taken: set[str], prefix: str, defined: set[str] | None = None):
    """name → the value bound to it (`formal`), or a fresh `prefix/name` not in `taken`; names outside `defined`
    (when given: values of an outer scope) and empty names stay as they are."""
    internal: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or (defined is not None and name not in defined):
            return name
        if name in formal:
            return formal[name]
        if name not in internal:
            new, k = f"{prefix}/{name}", 1
            while new in taken:
                new, k = f"{prefix}/{name}_{k}", k + 1
            taken.add(new)
            internal[name] = new
        return internal[name]

    return rename


def _rename_graph(g: onnx.GraphProto, rename: Callable[[str], str], prefix: str) -> None:
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        vi.name = rename(vi.name)
    for t in g.initializer:
        t.name = rename(t.name)
    for st in g.sparse_initializer:
        st.values.name = rename(st.values.name)
        st.indices.name = rename(st.indices.name)
    _rename_nodes(g.node, rename, prefix)


def _rename_nodes(nodes: Iterable[onnx.NodeProto], rename: Callable[[str], str], prefix: str) -> None:
    for k, n in enumerate(nodes):
        n.input[:] = [rename(x) for x in n.input]
        n.output[:] = [rename(x) for x in n.output]
        n.name = f"{prefix}/{n.name or f'{k}_{n.op_type}'}"
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _rename_graph(a.g, rename, n.name)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    _rename_graph(g, rename, n.name)


def _same_schemas(nodes: Iterable[onnx.NodeProto], have: int, want: int) -> bool:
    """Whether every default-domain op of the body means the same at opset `want` as at `have`."""
    if have == want:
        return True
    for n in _walk_nodes(nodes):
        if _domain(n.domain):
            continue
        try:
            a = onnx.defs.get_schema(n.op_type, max_inclusive_version=have, domain="")
            b = onnx.defs.get_schema(n.op_type, max_inclusive_version=want, domain="")
        except onnx.defs.SchemaError:
            return False
        if a.since_version != b.since_version:
            return False
    return True


def _upgrade(nodes: list[onnx.NodeProto], node: onnx.NodeProto, values: dict, opsets, have: int, want: int) -> list[onnx.NodeProto] | None:
    """The bound body converted from default-domain opset `have` to `want` by onnx's version converter."""
    from onnx import version_converter

    imports = [helper.make_opsetid(_domain(o.domain), o.version) for o in opsets if _domain(o.domain)]
    try:
        ins = [helper.make_value_info(i, _type_proto(values[i])) for i in dict.fromkeys(node.input) if i]
        outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
        model = helper.make_model(helper.make_graph(nodes, "body", ins, outs), opset_imports=[helper.make_opsetid("", have), *imports])
        converted = version_converter.convert_version(model, want)
    except Exception:
        return None
    result = list(converted.graph.node)
    # adapters may put new constants into initializers; the walk takes them as Constant nodes
    known = {i.name for i in ins}
    consts = [
        helper.make_node("Constant", [], [t.name], name=f"{node.name}/const_{t.name}", value=t)
        for t in converted.graph.initializer
        if t.name not in known
    ]
    return consts + result


def expand_function(node: onnx.NodeProto, values: dict, opsets) -> list[onnx.NodeProto] | None:
    """The nodes of `node`'s ONNX function body (renamed apart), or None if it has none."""
    domain = _domain(node.domain)
    if domain not in _DOMAINS:
        return None
    opsets = list(opsets)
    version = _opset_version(opsets, domain)
    model_onnx = _opset_version(opsets, "")
    if version is None or model_onnx is None:
        return None
    body = _schema_body(node, values, domain, version)
    if body is None:
        return None
    body_onnx = _opset_version(body.opset_import, "")
    if body_onnx is None:
        body_onnx = model_onnx
    if any(_domain(o.domain) not in ("", domain) and _opset_version(opsets, _domain(o.domain)) is None for o in body.opset_import):
        return None  # the body uses a domain the model does not import

    nodes = [onnx.NodeProto() for _ in body.node]
    for dst, src in zip(nodes, body.node):
        dst.CopyFrom(src)
    actual = {a.name: a for a in body.attribute_proto}  # schema defaults first, the node's own attributes win
    actual.update({a.name: a for a in node.attribute})
    _bind_attributes(nodes, actual)

    formal: dict[str, str] = {}
    for k, name in enumerate(body.input):
        formal[name] = node.input[k] if k < len(node.input) else ""
    for k, name in enumerate(body.output):
        if k < len(node.output) and node.output[k]:
            formal[name] = node.output[k]
    prefix = node.name or node.op_type
    rename = renamer(formal, set(values) | set(node.input) | set(node.output), prefix)
    _rename_nodes(nodes, rename, prefix)

    if not _same_schemas(nodes, body_onnx, model_onnx):
        if body_onnx > model_onnx:
            return None  # the body needs ops newer than the model's opset
        return _upgrade(nodes, node, values, opsets, body_onnx, model_onnx)
    return nodes


__all__ = ["expand_function"]
