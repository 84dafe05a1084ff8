"""Compare an exported model with onnxruntime on the same inputs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import onnx

from .errors import EmitError


@dataclass
class OutputReport:
    name: str
    max_abs: float
    max_rel: float
    ref_max: float
    ok: bool


def sample_inputs(specs, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs: normal floats, 0/1 ints (valid indices for any table; ones for masks), random bools."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        dt = np.dtype(s.dtype)
        if is_float_dtype(dt):
            feeds[s.name] = rng.standard_normal(s.shape).astype(dt)
        elif dt == np.bool_:
            feeds[s.name] = rng.random(s.shape) < 0.5
        elif "mask" in s.name.lower():
            feeds[s.name] = np.ones(s.shape, dtype=dt)
        else:
            feeds[s.name] = rng.integers(0, 2, size=s.shape).astype(dt)
    return feeds


def run_onnxruntime(model_path: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise EmitError("verify needs onnxruntime: pip install onnxruntime") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def is_float_dtype(dtype) -> bool:
    """numpy's floats and ml_dtypes' (bfloat16, float8_*, float4_*: numpy kind 'V')."""
    dt = np.dtype(dtype)
    return dt.kind in "fc" or (dt.kind == "V" and dt.name.startswith(("float", "bfloat")))


def compare(name: str, got: np.ndarray, ref: np.ndarray, rtol: float, atol: float, elementwise: bool = False) -> OutputReport:
    """Pass when |got-ref| <= atol + rtol*max(1, max|ref|) everywhere (NaN equals NaN; integers exact; rtol at least
    two ulps of a float16/bfloat16/float8 output).
    elementwise=True uses the ONNX backend-test convention instead: |got-ref| <= atol + rtol*|ref| per element."""
    ref = np.asarray(ref)
    if got.shape != ref.shape:
        return OutputReport(name, float("inf"), float("inf"), 0.0, False)
    if not is_float_dtype(ref.dtype):
        bad = int(np.count_nonzero(got != ref))
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if got.size else 0.0
        return OutputReport(name, diff, diff, 0.0, bad == 0)
    if not elementwise and ref.dtype.itemsize <= 2:
        # float16, bfloat16, float8 outputs: onnxruntime rounds its own way (float16 kernels, float32 accumulation),
        # so allow two units in the last place of the output's type
        import ml_dtypes

        rtol = max(rtol, 2 * float(ml_dtypes.finfo(ref.dtype).eps))
    g, r = got.astype(np.float64), ref.astype(np.float64)
    both_nan = np.isnan(g) & np.isnan(r)
    same_inf = np.isinf(r) & (g == r)
    with np.errstate(invalid="ignore"):  # inf - inf: masked just below
        d = np.where(both_nan | same_inf, 0.0, np.abs(g - r))
    d = np.where(np.isnan(d), np.inf, d)
    finite = np.isfinite(r)
    ref_max = float(np.max(np.abs(r[finite]))) if finite.any() else 0.0
    max_abs = float(d.max()) if d.size else 0.0
    if elementwise:
        # per-element bound, so small reference values are not hidden behind the largest one
        bound = atol + rtol * np.where(np.isfinite(r), np.abs(r), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(d > 0, d / np.abs(r), 0.0)  # inf where ref is 0
        max_rel = float(np.nanmax(rel)) if d.size else 0.0
        return OutputReport(name, max_abs, max_rel, ref_max, bool(np.all(d <= bound)))
    scale = max(1.0, ref_max)
    max_rel = max_abs / scale
    return OutputReport(name, max_abs, max_rel, ref_max, bool(max_abs <= atol + rtol * scale))


# --- `verify --per-node`: expose every intermediate tensor, report the first node that leaves the tolerance ---


class Intermediate(NamedTuple):
    """One node output of the main graph, in the graph's (topological) node order."""

    node: str  # the node's name, or "<op_type>#<index>" when it has none
    op_type: str
    tensor: str


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name a node of `graph` reads, subgraphs (If/Loop/Scan bodies) included: bodies read outer values."""
    names: set[str] = set()
    for node in graph.node:
        names.update(i for i in node.input if i)
        for a in node.attribute:
            for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                names |= _names_read(g)
    return names


def _known_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """name → type from onnx's shape inference, over what the model declares (all there is when inference fails)."""
    g = model.graph
    types = {v.name: v.type for v in [*g.input, *g.output, *g.value_info]}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is optional: emit infers static shapes itself; only elem types and ranks are needed here
        return types
    types.update({v.name: v.type for v in inferred.graph.value_info})
    return types


def _emit_types(model: onnx.ModelProto, shapes: dict | None, dims: dict | None) -> dict[str, tuple[int, int]]:
    """name → (onnx elem type, rank) of every tensor emit's importer gives a buffer: it has a static type for what
    onnx's inference leaves open (a Loop's outputs, contrib ops). Empty when the importer refuses the model."""
    from .importer import import_model
    from .ir import is_string

    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the importer names unnamed nodes in place
    try:
        prog = import_model(copy, shapes=shapes, dims=dims)
    except EmitError:
        return {}  # the build reports why
    types = {}
    for name, buf in prog.buffers.items():
        if is_string(buf.dtype):
            continue
        try:
            types[name] = (onnx.helper.np_dtype_to_tensor_dtype(np.dtype(buf.dtype)), len(buf.shape))
        except (KeyError, TypeError, ValueError):
            continue
    return types


def expose_intermediates(model: onnx.ModelProto, shapes: dict | None = None,
                         dims: dict | None = None) -> tuple[onnx.ModelProto, list[Intermediate]]:
    """A copy of `model` with each tensor-typed node output of the main graph appended to graph.output, and the list of
    node outputs to compare, in node order (outputs the model already has are compared too, not appended twice).
    shapes/dims: the --shape/--dim bindings, used only when onnx's inference leaves an elem type or rank open.

    Skipped: empty names; outputs no node reads (a Dropout mask, MaxPool Indices: they cannot cause a mismatch
    downstream, and exposing them would force computing them); sequences, optionals, maps and strings (the wasm runner
    takes numbers only); tensors whose elem type or rank neither onnx nor emit's importer knows (onnx.checker wants a
    shape on every graph output)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    types = _known_types(model)
    emit_types: dict[str, tuple[int, int]] | None = None  # computed on first need: it imports the whole model
    exposed = {o.name for o in g.output}
    read = _names_read(g)
    checked: list[Intermediate] = []
    for index, node in enumerate(g.node):
        label = node.name or f"{node.op_type}#{index}"
        for name in node.output:
            if not name or (name not in read and name not in exposed):
                continue
            t = types.get(name)
            kind = t.WhichOneof("value") if t is not None else None
            if kind not in (None, "tensor_type"):
                continue  # a sequence / optional / map
            elem = t.tensor_type.elem_type if kind else onnx.TensorProto.UNDEFINED
            rank = len(t.tensor_type.shape.dim) if kind and t.tensor_type.HasField("shape") else None
            if name not in exposed and (elem == onnx.TensorProto.UNDEFINED or rank is None):
                if emit_types is None:
                    emit_types = _emit_types(model, shapes, dims)
                if name not in emit_types:
                    continue
                elem, rank = emit_types[name]
            if elem == onnx.TensorProto.STRING:
                continue
            if name not in exposed:
                # rank only, every dim unknown: a declared static shape would become a hint to emit's shape inference
                g.output.append(onnx.helper.make_tensor_value_info(name, elem, [None] * rank))
                exposed.add(name)
            checked.append(Intermediate(label, node.op_type, name))
    return out, checked


def compare_intermediates(checked: list[Intermediate], got: dict[str, np.ndarray], ref: dict[str, np.ndarray],
                          rtol: float, atol: float) -> list[tuple[Intermediate, OutputReport]]:
    """compare() on every checked tensor, in node order."""
    missing = [c.tensor for c in checked if c.tensor not in got or c.tensor not in ref]
    if missing:
        raise EmitError(f"--per-node: tensor '{missing[0]}' is missing from the {'onnx-emit' if missing[0] not in got else 'onnxruntime'} results")
    return [(c, compare(c.tensor, got[c.tensor], ref[c.tensor], rtol, atol)) for c in checked]


def first_mismatch(results: list[tuple[Intermediate, OutputReport]]) -> tuple[Intermediate, OutputReport] | None:
    """The earliest node (in graph order) whose output is out of tolerance; None when all pass."""
    return next(((c, r) for c, r in results if not r.ok), None)


def per_node_lines(results: list[tuple[Intermediate, OutputReport]]) -> list[str]:
    """The per-node summary `verify --per-node` prints before the per-output report."""
    first = first_mismatch(results)
    if first is None:
        return [f"per-node: all {len(results)} intermediate tensors within tolerance"]
    c, r = first
    bad = sum(not rep.ok for _, rep in results)
    return [f"first mismatch: node '{c.node}' ({c.op_type}) output '{c.tensor}': max abs err {r.max_abs:.3g}, "
            f"max rel err {r.max_rel:.3g} (max |ref| {r.ref_max:.3g})",
            f"per-node: {bad} of {len(results)} intermediate tensors out of tolerance"]


def save_for_onnxruntime(model: onnx.ModelProto, path: str) -> None:
    """Write `model` where onnxruntime can read it; over protobuf's 2 GB limit the weights go to a file beside it."""
    if model.ByteSize() < 2**31 - 2**24:
        onnx.save_model(model, path)
        return
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # saving as external data rewrites the initializers in place; the caller's model stays whole
    onnx.save_model(copy, path, save_as_external_data=True, location=os.path.basename(path) + ".data")
