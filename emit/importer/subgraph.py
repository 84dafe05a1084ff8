"""Control flow at import time: If, Loop and Scan.

A subgraph is renamed apart (every name it defines gets the node's name as prefix; names it reads from
outside stay) and walked by the same importer walk as the main graph, so folding, function bodies,
shape inference and declared-shape hints all work inside it, and outer values it reads are just values.

- If with a constant condition is its chosen branch, inlined. With a runtime condition both branches
  are compiled as bodies of one If node (emit/ops/control.py writes `if (c) {...} else {...}`); each
  output must have the same static type in both branches.
- Loop and Scan compile their body once, run in a C loop, when the loop-carried values keep their
  shapes. A Loop with a constant trip count whose carried values are sequences, or change shape, is
  unrolled instead (each iteration walked with its iteration number as a constant).
- The static row count of a Loop's scan outputs is the constant trip count, or the shape the model
  declares for the output; the C checks the iterations actually run against it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import EmitError, UnsupportedError, node_label
from ..ir import Body, Node
from .bind import declared_shapes
from .functions import _rename_graph, renamer
from .hints import shape_from_consumers
from .sequences import NoneValue, SeqValue, alias, import_sequence, is_container, stack_rows
from .static import Value

UNROLL_MAX_ITERATIONS = 4096
UNROLL_MAX_NODES = 20000  # iterations x body nodes
MAX_SCAN_ELEMENTS = 1 << 26  # a scan output sized by a huge constant trip count (a while loop) needs a declared shape


@dataclass
class Scope:
    """What the importer walk works on: the values known so far (shared by every scope, names are
    unique), the nodes left to visit, and where runtime nodes go (the graph, or a body)."""

    values: dict[str, Any]
    opsets: list
    declared: dict[str, tuple[int, ...]]
    runtime: list[Node]
    unsupported: list[tuple[str, str, str]]
    unknown: set[str]
    work: deque = field(default_factory=deque)
    custom: dict = field(default_factory=dict)  # (domain, op type) -> ops.custom.CustomOp, from --custom-op

    def child(self, nodes, runtime: list[Node] | None = None, declared: dict | None = None) -> Scope:
        return Scope(self.values, self.opsets, {**self.declared, **(declared or {})}, self.runtime if runtime is None else runtime,
                     self.unsupported, self.unknown, deque(nodes), self.custom)

    @property
    def opset(self) -> int:
        return next((int(o.version) for o in self.opsets if o.domain in ("", "ai.onnx")), 1)

    def fresh(self, base: str) -> str:
        """A value name no scope uses yet."""
        name, k = base, 1
        while name in self.values:
            name, k = f"{base}_{k}", k + 1
        return name

    def constant(self, base: str, arr: np.ndarray) -> str:
        name = self.fresh(base)
        self.values[name] = Value(arr.dtype, tuple(arr.shape), arr)
        return name

    def run(self, nodes, runtime: list[Node] | None = None, declared: dict | None = None) -> None:
        """Walk `nodes` now (into `runtime`, default this scope's)."""
        from . import walk

        walk(self.child(nodes, runtime, declared))


def import_structured(proto: onnx.NodeProto, scope: Scope) -> bool:
    """Handle `proto` if it is control flow or works on sequences/optionals; False if it is an ordinary op."""
    if proto.domain not in ("", "ai.onnx"):
        return False
    if proto.op_type == "If":
        _import_if(proto, scope)
        return True
    if proto.op_type == "Loop":
        _import_loop(proto, scope)
        return True
    if proto.op_type == "Scan":
        _import_scan(proto, scope)
        return True
    return import_sequence(proto, scope)


# ---------------------------------------------------------------- subgraphs


def _defined(g: onnx.GraphProto) -> set[str]:
    """Every name a graph (and the graphs nested in it) defines."""
    names = {v.name for v in g.input} | {t.name for t in g.initializer}
    for n in g.node:
        names.update(o for o in n.output if o)
        for a in n.attribute:
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                names |= _defined(sub)
    return names


def bind_graph(g: onnx.GraphProto, prefix: str, scope: Scope, formal: dict[str, str] | None = None) -> onnx.GraphProto:
    """A copy of `g` whose formal inputs named in `formal` read the given values and whose other
    definitions are renamed apart under `prefix`; names read from outer scopes stay."""
    formal = formal or {}
    g2 = onnx.GraphProto()
    g2.CopyFrom(g)
    rename = renamer(formal, set(scope.values), prefix, defined=_defined(g2))
    _rename_graph(g2, rename, prefix)
    return g2


def walk_graph(scope: Scope, g: onnx.GraphProto, runtime: list[Node], outputs: list | None = None) -> bool:
    """Walk a bound subgraph's nodes into `runtime`; False if something in it is unsupported. `outputs`
    are static shapes known for the graph's outputs from outside (None where not known): where inference
    inside leaves an output's shape open, they fix it, as a declared shape would."""
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        scope.values[t.name] = Value(arr.dtype, tuple(arr.shape), arr)
    declared = {o.name: tuple(s) for o, s in zip(g.output, outputs or []) if s is not None}
    declared.update(declared_shapes(g, {}))
    before = len(scope.unsupported)
    scope.run(g.node, runtime, declared)
    return len(scope.unsupported) == before and all(o.name in scope.values for o in g.output)


def _uses(nodes: list[Node]) -> set[str]:
    return {i for n in nodes for i in n.inputs if i}


def make_body(scope: Scope, nodes: list[Node], inputs: list[str], outputs: list[str], keep=()) -> tuple[Body, list[str]]:
    """The Body of compiled nodes, and the outer names it reads (the node takes them as extra inputs).
    A body output that is one of its formal inputs gets a copy of its own: the node copies outputs
    back into the formal inputs after each iteration, and a swap must not read a half-updated state."""
    formal = {i for i in inputs if i}
    outs = []
    for k, o in enumerate(outputs):
        if o in formal:
            dst = scope.fresh(f"{o}/out{k}")
            v = scope.values[o]
            scope.values[dst] = Value(v.dtype, v.shape)
            nodes.append(Node("Identity", dst, [o], [dst]))
            o = dst
        outs.append(o)
    used = _uses(nodes) | set(outs)
    defined = formal | {o for n in nodes for o in n.outputs if o}
    captures = list(dict.fromkeys(i for i in [*(i for n in nodes for i in n.inputs), *outs] if i and i not in defined))
    ins = [i if i in used or i in keep else "" for i in inputs]  # `keep`: loop state, copied in and out even if unread
    return Body(nodes, ins, outs), captures


def _formals(scope: Scope, g: onnx.GraphProto, kinds: list[Value]) -> list[str]:
    names = [v.name for v in g.input]
    if len(names) != len(kinds):
        raise EmitError(f"subgraph '{g.name}' takes {len(names)} inputs, its node gives {len(kinds)}")
    for n, v in zip(names, kinds):
        scope.values[n] = Value(v.dtype, tuple(v.shape))
    return names


def _tensor(scope: Scope, label: str, name: str, what: str) -> Value:
    v = scope.values[name]
    if is_container(v):
        kind = "a sequence" if isinstance(v, SeqValue) else "an empty optional"
        raise UnsupportedError(f"node {label}: {what} '{name}' is {kind}; only tensors are supported there")
    return v


# ---------------------------------------------------------------- If


def _import_if(proto: onnx.NodeProto, scope: Scope) -> None:
    label = node_label(proto.op_type, proto.name)
    branches = {a.name: a.g for a in proto.attribute if a.type == onnx.AttributeProto.GRAPH}
    cond = _tensor(scope, label, proto.input[0], "condition")
    if cond.const is not None:  # a constant condition: the chosen branch is the node
        g = bind_graph(branches["then_branch" if bool(np.asarray(cond.const).reshape(-1)[0]) else "else_branch"], proto.name, scope)
        if not walk_graph(scope, g, scope.runtime):
            scope.unknown.update(proto.output)
            return
        for src, out in zip((o.name for o in g.output), proto.output):
            if out:
                alias(scope, src, out)
        return

    compiled: dict[str, tuple[list[Node], list[str]]] = {}
    for key in ("then_branch", "else_branch"):
        g = bind_graph(branches[key], f"{proto.name}/{key.split('_')[0]}", scope)
        nodes: list[Node] = []
        if not walk_graph(scope, g, nodes, [scope.declared.get(o) for o in proto.output]):
            scope.unknown.update(proto.output)
            return
        compiled[key] = (nodes, [o.name for o in g.output])
    (then_nodes, then_outs), (else_nodes, else_outs) = compiled["then_branch"], compiled["else_branch"]
    flat_out: list[str] = []
    flat_then: list[str] = []
    flat_else: list[str] = []
    for k, out in enumerate(proto.output):
        tv, ev = scope.values[then_outs[k]], scope.values[else_outs[k]]
        if isinstance(tv, NoneValue) and isinstance(ev, NoneValue):
            scope.values[out] = tv
            continue
        if isinstance(tv, NoneValue) or isinstance(ev, NoneValue):
            raise UnsupportedError(
                f"node {label}: output '{out}' is an empty optional in one branch and holds a value in the other; "
                "whether it is empty would be decided at run time (make the condition constant)"
            )
        if isinstance(tv, SeqValue) or isinstance(ev, SeqValue):
            tl = len(tv.elems) if isinstance(tv, SeqValue) else None
            el = len(ev.elems) if isinstance(ev, SeqValue) else None
            if tl is None or el is None or tl != el:
                raise UnsupportedError(
                    f"node {label}: output '{out}' is a sequence of {tl if tl is not None else 'no'} tensors in then_branch "
                    f"and of {el if el is not None else 'no'} in else_branch; a compiled If needs the same length in both"
                )
            names = []
            for j, (a, b) in enumerate(zip(tv.elems, ev.elems)):
                _same_type(scope, label, f"'{out}' element {j}", a, b)
                name = scope.fresh(f"{out}[{j}]")
                scope.values[name] = Value(scope.values[a].dtype, tuple(scope.values[a].shape))
                names.append(name)
            scope.values[out] = SeqValue(names, tv.dtype)
            flat_out += names
            flat_then += tv.elems
            flat_else += ev.elems
            continue
        _same_type(scope, label, f"output {k} ('{out}')", then_outs[k], else_outs[k])
        flat_out.append(out)
        flat_then.append(then_outs[k])
        flat_else.append(else_outs[k])
        if out:
            scope.values[out] = Value(tv.dtype, tuple(tv.shape))
    then_body, then_caps = make_body(scope, then_nodes, [], flat_then)
    else_body, else_caps = make_body(scope, else_nodes, [], flat_else)
    captures = list(dict.fromkeys(then_caps + else_caps))
    scope.runtime.append(
        Node("If", proto.name, [proto.input[0], *captures], flat_out,
             attrs={"__bodies__": {"then_branch": then_body, "else_branch": else_body}, "__n_inputs__": 1})
    )


def _same_type(scope: Scope, label: str, what: str, a: str, b: str) -> None:
    va, vb = scope.values[a], scope.values[b]
    if np.dtype(va.dtype) != np.dtype(vb.dtype):
        raise UnsupportedError(f"node {label}: {what} is {np.dtype(va.dtype).name} in then_branch but {np.dtype(vb.dtype).name} in else_branch")
    if tuple(va.shape) != tuple(vb.shape):
        raise UnsupportedError(
            f"node {label}: {what} has shape {list(va.shape)} in then_branch but {list(vb.shape)} in else_branch; "
            "a compiled If needs one static shape for both branches (make the condition constant, or declare "
            "shapes that make the branches agree)"
        )


# ---------------------------------------------------------------- Loop


def _scalar_const(v: Value | None):
    if v is None or v.const is None:
        return None
    return np.asarray(v.const).reshape(-1)[0]


def _import_loop(proto: onnx.NodeProto, scope: Scope) -> None:
    label = node_label(proto.op_type, proto.name)
    g = next(a.g for a in proto.attribute if a.name == "body")
    m_name = proto.input[0] if len(proto.input) > 0 else ""
    c_name = proto.input[1] if len(proto.input) > 1 else ""
    inits = list(proto.input[2:])
    n_carried = len(inits)
    n_scan = len(g.output) - 1 - n_carried
    if n_scan < 0:
        raise EmitError(f"node {label}: the body has {len(g.output)} outputs for {n_carried} loop-carried values")
    m = _tensor(scope, label, m_name, "trip count") if m_name else None
    c = _tensor(scope, label, c_name, "condition") if c_name else None
    trip = _scalar_const(m)
    trip = int(trip) if trip is not None else None
    cond0 = _scalar_const(c)
    cond0 = True if not c_name else (bool(cond0) if cond0 is not None else None)
    containers = any(is_container(scope.values[i]) for i in inits if i)
    unrollable = trip is not None and cond0 is not None and trip <= UNROLL_MAX_ITERATIONS and trip * max(1, len(g.node)) <= UNROLL_MAX_NODES
    if trip is None:
        why_not = f"the trip count '{m_name}' is a run-time value" if m_name else "it has no trip count"
    elif cond0 is None:
        why_not = f"the condition '{c_name}' is a run-time value"
    else:
        why_not = f"{trip} iterations of {len(g.node)} nodes are more than are unrolled"
    if containers:
        if not unrollable:
            raise UnsupportedError(
                f"node {label}: a loop-carried value is a sequence or optional, which is compiled by unrolling the loop "
                f"with its length known at each iteration; not here: {why_not}"
            )
        _unroll_loop(proto, scope, g, trip if cond0 else 0, n_carried, n_scan)
        return
    mark = (len(scope.runtime), len(scope.unsupported))
    try:
        _compile_loop(proto, scope, g, m_name, c_name, inits, trip, n_scan)
    except _ShapeChange as exc:
        if not unrollable:
            raise UnsupportedError(f"node {label}: {exc}; such a loop is unrolled instead, but not here: {why_not}") from None
        del scope.runtime[mark[0]:]
        del scope.unsupported[mark[1]:]
        _unroll_loop(proto, scope, g, trip if cond0 else 0, n_carried, n_scan)


class _ShapeChange(Exception):
    pass


def _compile_loop(proto, scope: Scope, g, m_name: str, c_name: str, inits: list[str], trip: int | None, n_scan: int) -> None:
    label = node_label(proto.op_type, proto.name)
    g = bind_graph(g, proto.name, scope)
    init_vals = [_tensor(scope, label, i, "loop-carried value") for i in inits]
    formals = _formals(scope, g, [Value(np.dtype(np.int64), ()), Value(np.dtype(np.bool_), ()), *init_vals])
    nodes: list[Node] = []
    declared_scans = [scope.declared.get(o) for o in proto.output[len(inits):]]
    known = [None, *(v.shape for v in init_vals), *(d[1:] if d else None for d in declared_scans)]
    try:
        ok = walk_graph(scope, g, nodes, known)
    except EmitError as exc:
        raise _ShapeChange(f"its body has no static shapes when compiled once for every iteration ({exc})") from None
    if not ok:
        scope.unknown.update(proto.output)
        return
    outs = [o.name for o in g.output]
    n_carried = len(inits)
    for k, (init, out) in enumerate(zip(init_vals, outs[1 : 1 + n_carried])):
        v = scope.values[out]
        if is_container(v) or np.dtype(v.dtype) != np.dtype(init.dtype) or tuple(v.shape) != tuple(init.shape):
            got = "a sequence" if is_container(v) else f"{np.dtype(v.dtype).name} {list(v.shape)}"
            raise _ShapeChange(f"loop-carried value {k} ('{inits[k]}') starts as {np.dtype(init.dtype).name} {list(init.shape)} and becomes {got} in one iteration")
    # static rows of the scan outputs: a declared shape, else the constant trip count
    rows = None
    for k in range(n_scan):
        out = proto.output[n_carried + k] if n_carried + k < len(proto.output) else ""
        if not out:
            continue  # nobody reads it
        v = _tensor(scope, label, outs[1 + n_carried + k], "scan output")
        want = scope.declared.get(out) or shape_from_consumers(out, [None, *v.shape], scope.work, scope.values, scope.declared, proto)
        if want is not None:
            if tuple(want[1:]) != tuple(v.shape):
                raise EmitError(f"node {label}: scan output '{out}' is declared as {list(want)}, its rows are {list(v.shape)}")
            r = int(want[0])
        elif trip is not None and trip * max(1, int(np.prod(v.shape, dtype=np.int64))) > MAX_SCAN_ELEMENTS:
            raise UnsupportedError(
                f"node {label}: scan output '{out}' would be compiled with one row for each of the trip count's {trip} "
                f"iterations; a loop that stops earlier by its condition needs the output's shape declared, or bound "
                f"with --shape {out}=DxD..."
            )
        elif trip is not None:
            r = trip  # if the loop can stop early, the C checks that it ran exactly this many times
        else:
            raise UnsupportedError(
                f"node {label}: scan output '{out}' has one row per iteration, and the trip count '{m_name}' "
                f"is set at run time; declare the output's shape in the model or bind it with --shape {out}=DxD..."
            )
        if rows is not None and r != rows:
            raise EmitError(f"node {label}: scan outputs declare {rows} and {r} rows")
        rows = r
    for k, out in enumerate(proto.output):
        if not out:
            continue
        v = scope.values[outs[1 + k]]
        scope.values[out] = Value(v.dtype, tuple(v.shape)) if k < n_carried else Value(v.dtype, (rows, *v.shape))
    body, captures = make_body(scope, nodes, formals, outs, keep=formals[2:])
    scope.runtime.append(
        Node("Loop", proto.name, [m_name, c_name, *inits, *captures], list(proto.output),
             attrs={"__bodies__": {"body": body}, "__n_inputs__": 2 + len(inits), "__rows__": rows})
    )


def _unroll_loop(proto, scope: Scope, g, trip: int, n_carried: int, n_scan: int) -> None:
    label = node_label(proto.op_type, proto.name)
    names = [v.name for v in g.input]
    cur = list(proto.input[2:])
    cond = proto.input[1] if len(proto.input) > 1 and proto.input[1] else scope.constant(f"{proto.name}/true", np.array(True))
    parts: list[list[str]] = [[] for _ in range(n_scan)]
    for i in range(trip):
        it = scope.constant(f"{proto.name}/iter{i}", np.array(i, dtype=np.int64))
        formal = dict(zip(names, [it, cond, *cur]))
        body = bind_graph(g, f"{proto.name}/{i}", scope, formal)
        if not walk_graph(scope, body, scope.runtime):
            scope.unknown.update(proto.output)
            return
        outs = [o.name for o in body.output]
        go = _scalar_const(scope.values[outs[0]]) if not is_container(scope.values[outs[0]]) else None
        if go is None:
            raise UnsupportedError(
                f"node {label}: the loop's condition is computed at run time, so the number of iterations is not "
                "known at compile time (needed here: a loop-carried value is a sequence or changes shape)"
            )
        cond, cur = outs[0], outs[1 : 1 + n_carried]
        for k in range(n_scan):
            parts[k].append(outs[1 + n_carried + k])
        if not bool(go):
            break
    for src, out in zip(cur, proto.output[:n_carried]):
        if out:
            alias(scope, src, out)
    for k, out in enumerate(proto.output[n_carried:]):
        if out:
            if not parts[k]:
                raise UnsupportedError(f"node {label}: the loop runs no iteration, so scan output '{out}' is empty with an unknown row shape")
            stack_rows(scope, parts[k], out, 0, proto.name)


# ---------------------------------------------------------------- Scan


def _import_scan(proto: onnx.NodeProto, scope: Scope) -> None:
    label = node_label(proto.op_type, proto.name)
    attrs = {a.name: (a.g if a.type == onnx.AttributeProto.GRAPH else helper.get_attribute_value(a)) for a in proto.attribute}
    g = attrs["body"]
    n_in = int(attrs["num_scan_inputs"])
    legacy = scope.opset < 9  # Scan-8: a batch axis first, sequence_lens, time on axis 1
    ins = list(proto.input[1:] if legacy else proto.input)
    n_state = len(ins) - n_in
    states, scans = ins[:n_state], ins[n_state:]
    n_out_scan = len(g.output) - n_state
    if legacy:
        seq_lens = proto.input[0] if proto.input else ""
        in_axes, in_dirs = [0] * n_in, list(attrs.get("directions", [0] * n_in))
        out_axes, out_dirs = [0] * n_out_scan, [0] * n_out_scan
    else:
        in_axes = list(attrs.get("scan_input_axes", [0] * n_in))
        in_dirs = list(attrs.get("scan_input_directions", [0] * n_in))
        out_axes = list(attrs.get("scan_output_axes", [0] * n_out_scan))
        out_dirs = list(attrs.get("scan_output_directions", [0] * n_out_scan))
    state_vals = [_tensor(scope, label, s, "state") for s in states]
    scan_vals = [_tensor(scope, label, s, "scan input") for s in scans]
    batch = 1
    if legacy:
        all_vals = state_vals + scan_vals
        batch = int(all_vals[0].shape[0]) if all_vals and all_vals[0].shape else 1
        if any(not v.shape or v.shape[0] != batch for v in all_vals):
            raise EmitError(f"node {label}: inputs disagree on the batch size")
        state_vals = [Value(v.dtype, tuple(v.shape[1:])) for v in state_vals]
        scan_vals = [Value(v.dtype, tuple(v.shape[1:])) for v in scan_vals]
    in_axes = [a + len(v.shape) if a < 0 else a for a, v in zip(in_axes, scan_vals)]
    lengths = {int(v.shape[a]) for a, v in zip(in_axes, scan_vals)}
    if len(lengths) != 1:
        raise EmitError(f"node {label}: scan inputs have different lengths {sorted(lengths)} along their scan axes")
    steps = lengths.pop()
    if legacy and seq_lens:
        lens = scope.values[seq_lens]
        if lens.const is None or any(int(x) != steps for x in np.asarray(lens.const).reshape(-1)):
            raise UnsupportedError(
                f"node {label}: sequence_lens '{seq_lens}' must be a constant equal to the full length {steps} "
                "(per-batch lengths set at run time are not compiled)"
            )
    slices = [Value(v.dtype, tuple(d for j, d in enumerate(v.shape) if j != a)) for a, v in zip(in_axes, scan_vals)]
    g = bind_graph(g, proto.name, scope)
    formals = _formals(scope, g, state_vals + slices)
    nodes: list[Node] = []
    if not walk_graph(scope, g, nodes, [v.shape for v in state_vals]):
        scope.unknown.update(proto.output)
        return
    outs = [o.name for o in g.output]
    for k, (init, out) in enumerate(zip(state_vals, outs[:n_state])):
        v = scope.values[out]
        if is_container(v) or np.dtype(v.dtype) != np.dtype(init.dtype) or tuple(v.shape) != tuple(init.shape):
            got = "a sequence" if is_container(v) else f"{np.dtype(v.dtype).name} {list(v.shape)}"
            raise UnsupportedError(f"node {label}: state {k} ('{states[k]}') starts as {np.dtype(init.dtype).name} {list(init.shape)} and becomes {got} in one step")
    out_shapes = []
    for k in range(n_out_scan):
        v = _tensor(scope, label, outs[n_state + k], "scan output")
        a = out_axes[k] + len(v.shape) + 1 if out_axes[k] < 0 else out_axes[k]
        out_axes[k] = a
        out_shapes.append((v.dtype, (*v.shape[:a], steps, *v.shape[a:])))
    for k, out in enumerate(proto.output):
        if not out:
            continue
        if k < n_state:
            v = scope.values[outs[k]]
            dtype, shape = v.dtype, tuple(v.shape)
        else:
            dtype, shape = out_shapes[k - n_state]
        scope.values[out] = Value(dtype, (batch, *shape) if legacy else tuple(shape))
    body, captures = make_body(scope, nodes, formals, outs, keep=formals[:n_state])
    scope.runtime.append(
        Node("Scan", proto.name, [*states, *scans, *captures], list(proto.output),
             attrs={"__bodies__": {"body": body}, "__n_inputs__": len(ins), "__steps__": steps, "__batch__": batch if legacy else 0,
                    "__states__": n_state, "__in_axes__": in_axes, "__in_dirs__": in_dirs, "__out_axes__": out_axes, "__out_dirs__": out_dirs})
    )


__all__ = ["Scope", "import_structured", "bind_graph", "walk_graph", "make_body"]
