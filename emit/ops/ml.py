"""ai.onnx.ml: Binarizer, ArrayFeatureExtractor, LabelEncoder (numeric keys), Scaler, Normalizer,
LinearRegressor, LinearClassifier (integer labels), TreeEnsemble (opset 5) and TreeEnsembleRegressor.

The oracle is onnxruntime, including its quirks: scores are float; a single-score post transform is
only PROBIT (LOGISTIC/SOFTMAX need two scores or more); a binary LinearClassifier adds the second
class as 1 - score. Trees are tables (feature, threshold, mode, next nodes) walked by one generic C
loop, so a forest of thousands of nodes stays a few static arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import STRING_BYTES, Buffer, encode_strings
from .common import is_float, literal
from .registry import Lowering, op
from .shape import INDEX_ERROR

ML = "ai.onnx.ml"


def _table(name: str, ctype: str, values, dtype) -> str:
    vals = list(values)
    if not vals:
        vals = [0]
    body = ", ".join(literal(v, dtype) for v in vals)
    return f"static const {ctype} {name}[{len(vals)}] = {{ {body} }};"


def _rows(x: Buffer) -> tuple[int, int]:
    """(rows, features) of an [N, C] or [C] input."""
    if len(x.shape) == 1:
        return 1, x.shape[0]
    if len(x.shape) == 2:
        return x.shape[0], x.shape[1]
    return 0, 0


def _features(ctx: Lowering) -> tuple[Buffer, int, int]:
    x = ctx.input(0)
    n, c = _rows(x)
    if len(x.shape) not in (1, 2):
        ctx.fail(f"input must be [N, C] or [C], got shape {x.shape}")
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        ctx.fail(f"input dtype {x.dtype.name} is not supported")
    return x, n, c


# ---------------------------------------------------------------- small ops


@op("Binarizer", domain=ML)
def lower_binarizer(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    thr = literal(float(ctx.attr("threshold", 0.0)), x.dtype) if is_float(x.dtype) else str(float(ctx.attr("threshold", 0.0)))
    if y.size:
        one, zero = literal(1, y.dtype), literal(0, y.dtype)
        ctx.emit(f"for (size_t i = 0; i < {y.size}; ++i) {ctx.ptr(y)}[i] = {ctx.ptr(x)}[i] > {thr} ? {one} : {zero};")


@op("ArrayFeatureExtractor", domain=ML)
def lower_array_feature_extractor(ctx: Lowering) -> None:
    """Z[..., j] = X[..., Y[j]] (the indices flattened); an index outside the last axis returns 1."""
    x, ind, z = ctx.input(0), ctx.input(1), ctx.output(0)
    if ind.dtype != np.int64:
        ctx.fail(f"indices must be int64, got {ind.dtype.name}")
    if not x.shape:
        ctx.fail("input must have rank >= 1")
    last = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64)) if len(x.shape) > 1 else 1
    k = ind.size
    if z.size != rows * k:
        ctx.fail(f"output shape {z.shape} does not match {rows} rows of {k} indices")
    if z.size == 0:
        return
    ctx.emit(
        f"for (size_t j = 0; j < {k}; ++j) {{\n"
        f"    const int64_t c = {ctx.ptr(ind)}[j];\n"
        f"    if (c < 0 || c >= {last}) {INDEX_ERROR}\n"
        f"    for (size_t r = 0; r < {rows}; ++r) {ctx.ptr(z)}[r*{k} + j] = {ctx.ptr(x)}[r*{last} + (size_t)c];\n"
        "}"
    )


def _label_keys_values(ctx: Lowering) -> tuple[list, list, object, np.dtype]:
    a = ctx.node.attrs
    if "values_strings" in a or ("values_tensor" in a and np.asarray(a["values_tensor"]).dtype.kind in "OSU"):
        ctx.fail("string values are not supported (string keys are)")
    keys = a.get("keys_int64s") or a.get("keys_floats") or a.get("keys_strings")
    if keys is None and "keys_tensor" in a:
        keys = np.asarray(a["keys_tensor"]).reshape(-1).tolist()
    if "values_tensor" in a:
        vt = np.asarray(a["values_tensor"])
        values, vdt = vt.reshape(-1).tolist(), vt.dtype
        dt = a.get("default_tensor")
        default = np.asarray(dt).reshape(-1)[0].item() if dt is not None else 0
    elif "values_int64s" in a:
        values, vdt, default = list(a["values_int64s"]), np.dtype(np.int64), a.get("default_int64", -1)
    else:
        values, vdt, default = list(a.get("values_floats") or []), np.dtype(np.float32), a.get("default_float", -0.0)
    if keys is None or len(keys) != len(values):
        ctx.fail("keys and values must be given and have the same length")
    return list(keys), values, default, vdt


@op("LabelEncoder", domain=ML)
def lower_label_encoder(ctx: Lowering) -> None:
    """y = the value of the key equal to x, else the default: a binary search over the keys sorted at
    compile time (the first of repeated keys wins; NaN matches nothing, as in onnxruntime)."""
    x, y = ctx.input(0), ctx.output(0)
    if x.dtype.kind not in "fiuS":
        ctx.fail(f"input dtype {x.dtype.name} is not supported")
    keys, values, default, vdt = _label_keys_values(ctx)
    if np.dtype(y.dtype) != vdt:
        ctx.fail(f"output dtype {y.dtype.name} differs from the values' {vdt.name}")
    if x.dtype.kind == "S":
        return _label_encode_strings(ctx, keys, values, default, vdt)
    kd = np.dtype(x.dtype)
    pairs: dict = {}
    for k, v in zip(keys, values):
        kv = np.asarray(k).astype(kd).item()
        if kv == kv:  # a NaN key never matches (onnxruntime); NaN inputs get the default
            pairs.setdefault(kv, v)
    order = sorted(pairs)
    if y.size == 0:
        return
    t = x.ctype
    code = [f"for (size_t i = 0; i < {y.size}; ++i) {{", f"    const {t} v = {ctx.ptr(x)}[i];", f"    {y.ctype} r = {literal(default, vdt)};"]
    if order:
        code[0:0] = [_table("lk", t, order, kd), _table("lv", y.ctype, [pairs[k] for k in order], vdt)]
        code += [
            f"    size_t lo = 0, hi = {len(order)};",
            "    while (lo < hi) { const size_t mid = lo + (hi - lo) / 2; if (lk[mid] < v) lo = mid + 1; else hi = mid; }",
            f"    if (lo < {len(order)} && lk[lo] == v) r = lv[lo];",
        ]
    code += [f"    {ctx.ptr(y)}[i] = r;", "}"]
    ctx.emit("\n".join(code))


def _label_encode_strings(ctx: Lowering, keys: list, values: list, default, vdt: np.dtype) -> None:
    """String keys: the same binary search over the keys sorted as bytes, compared with strncmp."""
    x, y = ctx.input(0), ctx.output(0)
    try:
        slots = encode_strings(np.array(keys, dtype=object), "keys")
    except ValueError as exc:
        ctx.fail(str(exc))
    pairs: dict = {}
    for k, v in zip(slots.tolist(), values):
        pairs.setdefault(k, v)
    order = sorted(pairs)
    if y.size == 0:
        return
    code = [f"for (size_t i = 0; i < {y.size}; ++i) {{", f"    const char *v = {ctx.ptr(x)} + i*{STRING_BYTES};", f"    {y.ctype} r = {literal(default, vdt)};"]
    if order:
        texts = ", ".join('"' + "".join(f"\\x{c:02x}" for c in k) + '"' for k in order)
        code[0:0] = [f"static const char lk[{len(order)}][{STRING_BYTES}] = {{ {texts} }};", _table("lv", y.ctype, [pairs[k] for k in order], vdt)]
        code += [
            f"    size_t lo = 0, hi = {len(order)};",
            f"    while (lo < hi) {{ const size_t mid = lo + (hi - lo) / 2; if (strncmp(lk[mid], v, {STRING_BYTES}) < 0) lo = mid + 1; else hi = mid; }}",
            f"    if (lo < {len(order)} && strncmp(lk[lo], v, {STRING_BYTES}) == 0) r = lv[lo];",
        ]
    code += [f"    {ctx.ptr(y)}[i] = r;", "}"]
    ctx.emit("\n".join(code))


@op("Scaler", domain=ML)
def lower_scaler(ctx: Lowering) -> None:
    x, n, c = _features(ctx)
    y = ctx.output(0)
    offset = [float(v) for v in ctx.attr("offset", [])] or [0.0]
    scale = [float(v) for v in ctx.attr("scale", [])] or [1.0]
    for name, vals in (("offset", offset), ("scale", scale)):
        if len(vals) not in (1, c):
            ctx.fail(f"{name} has {len(vals)} values for {c} features")
    if y.size == 0:
        return
    off = "so[0]" if len(offset) == 1 else "so[j]"
    sc = "ss[0]" if len(scale) == 1 else "ss[j]"
    ctx.emit(
        _table("so", "float", offset, np.float32)
        + "\n"
        + _table("ss", "float", scale, np.float32)
        + f"\nfor (size_t i = 0; i < {n}; ++i) for (size_t j = 0; j < {c}; ++j)"
        f" {ctx.ptr(y)}[i*{c} + j] = ((float){ctx.ptr(x)}[i*{c} + j] - {off}) * {sc};"
    )


@op("Normalizer", domain=ML)
def lower_normalizer(ctx: Lowering) -> None:
    """Row-wise, in float as onnxruntime: MAX divides by the largest value, L1 by the sum of |x|, L2 by
    the root of the sum of squares; a zero norm copies the row."""
    x, n, c = _features(ctx)
    y = ctx.output(0)
    norm = str(ctx.attr("norm", "MAX"))
    if y.size == 0:
        return
    xp, yp = ctx.ptr(x), ctx.ptr(y)
    row = f"const {x.ctype} *xr = {xp} + i*{c};\nfloat *yr = {yp} + i*{c};"
    if norm == "MAX":
        body = (
            f"float m = {FLT_LOWEST};\n"
            f"for (size_t j = 0; j < {c}; ++j) if ((float)xr[j] > m) m = (float)xr[j];\n"
            f"for (size_t j = 0; j < {c}; ++j) yr[j] = m != 0.0f ? (float)xr[j] / m : (float)xr[j];"
        )
    elif norm == "L1":
        body = (
            "float s = 0.0f;\n"
            f"for (size_t j = 0; j < {c}; ++j) s += fabsf((float)xr[j]);\n"
            f"for (size_t j = 0; j < {c}; ++j) yr[j] = s != 0.0f ? (float)xr[j] / s : (float)xr[j];"
        )
    elif norm == "L2":
        body = (
            "float s = 0.0f;\n"
            f"for (size_t j = 0; j < {c}; ++j) s += (float)xr[j] * (float)xr[j];\n"
            f"for (size_t j = 0; j < {c}; ++j) {{\n"
            "    const float q = (float)xr[j] * (float)xr[j];\n"
            "    yr[j] = s != 0.0f ? (xr[j] < 0 ? -sqrtf(q / s) : sqrtf(q / s)) : (float)xr[j];\n"
            "}"
        )
    else:
        ctx.fail(f"norm '{norm}' is not MAX, L1 or L2")
    ctx.emit(f"for (size_t i = 0; i < {n}; ++i) {{\n{row}\n{body}\n}}")


# ---------------------------------------------------------------- scores and post transforms

_TRANSFORMS = ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT")

FLT_LOWEST = "(-3.40282347e+38f)"  # -FLT_MAX without <float.h>


def _probit(e: str) -> str:
    """C block: e = onnxruntime's probit of e (sqrt(2) * erfinv(2e - 1) by its log-based approximation)."""
    return (
        f"{{ const float e_x = 2.0f * {e} - 1.0f, e_s = e_x < 0.0f ? -1.0f : 1.0f;"
        " const float e_l = logf((1.0f - e_x) * (1.0f + e_x));"
        " const float e_v = 2.0f / (3.14159f * 0.147f) + 0.5f * e_l, e_v2 = 1.0f / 0.147f * e_l;"
        f" {e} = 1.41421356f * e_s * sqrtf(-e_v + sqrtf(e_v * e_v - e_v2)); }}"
    )


def _logistic(e: str) -> str:
    return f"({e} < 0.0f ? 1.0f - 1.0f / (1.0f + expf(-fabsf({e}))) : 1.0f / (1.0f + expf(-fabsf({e}))))"


def transform_code(ctx: Lowering, transform: str, s: str, n: int) -> str:
    """C applying onnxruntime's post transform to the n float scores at `s` (for n == 1 only PROBIT
    applies, as in onnxruntime)."""
    if transform not in _TRANSFORMS:
        ctx.fail(f"post_transform '{transform}' is not one of {', '.join(_TRANSFORMS)}")
    if transform == "NONE" or (n == 1 and transform != "PROBIT"):
        return ""
    if transform == "PROBIT":
        return f"for (size_t k = 0; k < {n}; ++k) {_probit(f'{s}[k]')}"
    if transform == "LOGISTIC":
        return f"for (size_t k = 0; k < {n}; ++k) {s}[k] = {_logistic(f'{s}[k]')};"
    head = f"float mx = {FLT_LOWEST}, sum = 0.0f;\nfor (size_t k = 0; k < {n}; ++k) if ({s}[k] > mx) mx = {s}[k];\n"
    if transform == "SOFTMAX":
        return head + f"for (size_t k = 0; k < {n}; ++k) {{ {s}[k] = expf({s}[k] - mx); sum += {s}[k]; }}\n" + (
            f"for (size_t k = 0; k < {n}; ++k) {s}[k] /= sum;"
        )
    # SOFTMAX_ZERO: zero scores stay (almost) zero
    return head + (
        "const float em = expf(-mx);\n"
        f"for (size_t k = 0; k < {n}; ++k) {{\n"
        f"    if ({s}[k] > 0.0000001f || {s}[k] < -0.0000001f) {{ {s}[k] = expf({s}[k] - mx); sum += {s}[k]; }}\n"
        f"    else {s}[k] *= em;\n"
        "}\n"
        f"for (size_t k = 0; k < {n}; ++k) {s}[k] /= sum;"
    )


def _linear(ctx: Lowering, x: Buffer, n: int, c: int, targets: int, coef: list[float], icpt: list[float] | None, sp: str) -> str:
    """C: float scores sp[i*targets + t] = X[i] . coef[t] + intercept[t]."""
    if len(coef) != targets * c:
        ctx.fail(f"{len(coef)} coefficients for {targets} targets of {c} features")
    lines = [_table("lc", "float", coef, np.float32)]
    if icpt is not None:
        lines.append(_table("li", "float", icpt, np.float32))
    init = "li[t]" if icpt is not None else "0.0f"
    lines.append(
        f"for (size_t i = 0; i < {n}; ++i) for (size_t t = 0; t < {targets}; ++t) {{\n"
        f"    float acc = 0.0f;\n"
        f"    for (size_t j = 0; j < {c}; ++j) acc += (float){ctx.ptr(x)}[i*{c} + j] * lc[t*{c} + j];\n"
        f"    {sp}[i*{targets} + t] = acc + {init};\n"
        "}"
    )
    return "\n".join(lines)


@op("LinearRegressor", domain=ML)
def lower_linear_regressor(ctx: Lowering) -> None:
    x, n, c = _features(ctx)
    y = ctx.output(0)
    targets = int(ctx.attr("targets", 1))
    coef = [float(v) for v in ctx.attr("coefficients", [])]
    icpt = [float(v) for v in ctx.attr("intercepts", [])]
    if y.dtype != np.float32 or y.size != n * targets:
        ctx.fail(f"output {y.shape} {y.dtype.name} is not float [{n}, {targets}]")
    if y.size == 0:
        return
    code = _linear(ctx, x, n, c, targets, coef, icpt if len(icpt) == targets else None, ctx.ptr(y))
    post = transform_code(ctx, str(ctx.attr("post_transform", "NONE")), "s", targets)
    if post:
        code += f"\nfor (size_t i = 0; i < {n}; ++i) {{\nfloat *s = {ctx.ptr(y)} + i*{targets};\n{post}\n}}"
    ctx.emit(code)


@op("LinearClassifier", domain=ML)
def lower_linear_classifier(ctx: Lowering) -> None:
    """Labels: the best score's class (one score: > 0 is the second label). Scores: X . coef + intercepts,
    post-transformed; one score with two labels becomes [1 - s, s] (onnxruntime, which applies only
    LOGISTIC or PROBIT to a single score)."""
    x, n, c = _features(ctx)
    if ctx.attr("classlabels_strings"):
        ctx.fail("string class labels are not supported (string tensors are not supported)")
    labels = [int(v) for v in ctx.attr("classlabels_ints", [])]
    coef = [float(v) for v in ctx.attr("coefficients", [])]
    icpt = [float(v) for v in ctx.attr("intercepts", [])]
    classes = len(icpt)
    if classes == 0 or len(coef) != classes * c:
        ctx.fail(f"{len(coef)} coefficients and {classes} intercepts do not fit {c} features")
    second = classes == 1 and len(labels) == 2
    if classes > 1 and len(labels) != classes:
        ctx.fail(f"{len(labels)} class labels for {classes} classes")
    lab, zb = ctx.output(0), ctx.output(1) if ctx.has_output(1) else None
    width = 2 if second else classes
    transform = str(ctx.attr("post_transform", "NONE"))
    if n == 0:
        return
    sp = ctx.scratch(4 * n * classes, np.float32)
    code = [_linear(ctx, x, n, c, classes, coef, icpt, sp)]
    if classes == 1:
        pos, neg = (labels[1], labels[0]) if len(labels) == 2 else (1, 0)
        code.append(
            f"for (size_t i = 0; i < {n}; ++i) {ctx.ptr(lab)}[i] = {sp}[i] > 0.0f ? {literal(pos, np.int64)} : {literal(neg, np.int64)};"
        )
    else:
        code += [
            _table("cl", "int64_t", labels, np.int64),
            f"for (size_t i = 0; i < {n}; ++i) {{",
            f"    size_t best = 0;\n    for (size_t t = 1; t < {classes}; ++t) if ({sp}[i*{classes} + t] > {sp}[i*{classes} + best]) best = t;",
            f"    {ctx.ptr(lab)}[i] = cl[best];",
            "}",
        ]
    if zb is not None:
        if zb.dtype != np.float32 or zb.size != n * width:
            ctx.fail(f"scores output {zb.shape} is not float [{n}, {width}]")
        zp = ctx.ptr(zb)
        if classes == 1 and transform == "PROBIT":
            if second:
                ctx.fail("PROBIT on a binary classifier with two labels leaves onnxruntime's second score unset")
            code.append(f"for (size_t i = 0; i < {n}; ++i) {_probit(f'{sp}[i]')}")
            code.append(f"for (size_t i = 0; i < {n}; ++i) {zp}[i] = {sp}[i];")
        elif second:
            # onnxruntime 1.2x+: LOGISTIC (only) is applied to the one score before it becomes [1 - s, s]
            v = _logistic(f"{sp}[i]") if transform == "LOGISTIC" else f"{sp}[i]"
            code.append(f"for (size_t i = 0; i < {n}; ++i) {{ const float v = {v}; {zp}[2*i] = 1.0f - v; {zp}[2*i + 1] = v; }}")
        else:
            code.append(f"for (size_t i = 0; i < {n * classes}; ++i) {zp}[i] = {sp}[i];")
            post = transform_code(ctx, transform, "s", classes)
            if post:
                code.append(f"for (size_t i = 0; i < {n}; ++i) {{\nfloat *s = {zp} + i*{classes};\n{post}\n}}")
    ctx.emit("\n".join(code))


# ---------------------------------------------------------------- tree ensembles

_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5, "BRANCH_MEMBER": 6}
_AGG = ("AVERAGE", "SUM", "MIN", "MAX")
_MISSING_TRUE = 8  # flag on a mode: a NaN feature takes the true branch


@dataclass
class Forest:
    """Trees as tables: node k tests feature[k] against threshold[k] by mode[k] and goes to true_next[k]
    or false_next[k]; a next value < 0 is leaf -(v + 1), whose (target, weight) pairs are
    leaf_start[l] .. leaf_start[l + 1] of targets/weights. A root may be a leaf too."""

    feature: list[int] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    mode: list[int] = field(default_factory=list)
    true_next: list[int] = field(default_factory=list)
    false_next: list[int] = field(default_factory=list)
    member_start: list[int] = field(default_factory=list)
    members: list[float] = field(default_factory=list)
    leaf_start: list[int] = field(default_factory=lambda: [0])
    targets: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)

    def add_leaf(self, pairs: list[tuple[int, float]]) -> int:
        for t, w in pairs:
            self.targets.append(int(t))
            self.weights.append(float(w))
        self.leaf_start.append(len(self.targets))
        return -(len(self.leaf_start) - 1)  # leaf l is stored as -(l + 1)


def _forest_v5(ctx: Lowering) -> Forest:
    a = ctx.node.attrs
    splits = np.asarray(a["nodes_splits"]).reshape(-1).tolist()
    modes = np.asarray(a["nodes_modes"]).reshape(-1).astype(int).tolist()
    feats = [int(v) for v in a["nodes_featureids"]]
    tids, fids = [int(v) for v in a["nodes_truenodeids"]], [int(v) for v in a["nodes_falsenodeids"]]
    tleaf, fleaf = [int(v) for v in a["nodes_trueleafs"]], [int(v) for v in a["nodes_falseleafs"]]
    ltarget = [int(v) for v in a["leaf_targetids"]]
    lweight = np.asarray(a["leaf_weights"]).reshape(-1).tolist()
    miss = [int(v) for v in a.get("nodes_missing_value_tracks_true") or [0] * len(modes)]
    members = np.asarray(a["membership_values"]).reshape(-1).tolist() if "membership_values" in a else []
    f = Forest()
    leaf_ref = {i: f.add_leaf([(ltarget[i], lweight[i])]) for i in range(len(ltarget))}
    sets: list[list[float]] = [[]]
    for v in members:  # sets are separated by NaN, one per MEMBER node in node order
        if v != v:
            sets.append([])
        else:
            sets[-1].append(float(v))
    member_of, k = {}, 0
    for i, m in enumerate(modes):
        if m == 6:
            if k >= len(sets):
                ctx.fail("membership_values has fewer sets than BRANCH_MEMBER nodes")
            member_of[i], k = sets[k], k + 1
    for i in range(len(modes)):
        if not 0 <= modes[i] <= 6:
            ctx.fail(f"node mode {modes[i]} is not supported")
        f.feature.append(feats[i])
        f.threshold.append(float(splits[i]))
        f.mode.append(modes[i] | (_MISSING_TRUE if miss[i] else 0))
        f.member_start.append(len(f.members))
        f.members.extend(member_of.get(i, []))
        f.true_next.append(leaf_ref[tids[i]] if tleaf[i] else tids[i])
        f.false_next.append(leaf_ref[fids[i]] if fleaf[i] else fids[i])
    f.member_start.append(len(f.members))
    for r in (int(v) for v in a["tree_roots"]):
        is_leaf = tleaf[r] and fleaf[r] and tids[r] == fids[r]
        f.roots.append(leaf_ref[tids[r]] if is_leaf else r)
    return f


def _forest_v3(ctx: Lowering, prefix: str) -> Forest:
    """TreeEnsembleRegressor/Classifier: nodes named by (tree id, node id); leaves carry weights for
    `prefix` (target_ or class_) ids."""
    a = ctx.node.attrs
    tree_ids, node_ids = [int(v) for v in a["nodes_treeids"]], [int(v) for v in a["nodes_nodeids"]]
    modes = [str(m) for m in a["nodes_modes"]]
    values = np.asarray(a["nodes_values_as_tensor"] if "nodes_values_as_tensor" in a else a.get("nodes_values", [0.0] * len(modes)))
    values = values.reshape(-1).tolist()
    feats = [int(v) for v in a["nodes_featureids"]]
    tids, fids = [int(v) for v in a["nodes_truenodeids"]], [int(v) for v in a["nodes_falsenodeids"]]
    miss = [int(v) for v in a.get("nodes_missing_value_tracks_true") or [0] * len(modes)]
    w_key = f"{prefix}weights"
    wts = np.asarray(a[f"{w_key}_as_tensor"] if f"{w_key}_as_tensor" in a else a.get(w_key, [])).reshape(-1).tolist()
    pairs: dict[tuple[int, int], list[tuple[int, float]]] = {}
    for t, nd, target, w in zip(a[f"{prefix}treeids"], a[f"{prefix}nodeids"], a[f"{prefix}ids"], wts):
        pairs.setdefault((int(t), int(nd)), []).append((int(target), float(w)))
    if int(a.get("n_targets", 1)) == 1 and prefix == "target_":
        pairs = {k: v[:1] for k, v in pairs.items()}  # onnxruntime reads one weight per leaf for one target
    f = Forest()
    index = {(t, nd): i for i, (t, nd) in enumerate(zip(tree_ids, node_ids))}
    ref: dict[int, int] = {}
    branch = [i for i, m in enumerate(modes) if m != "LEAF"]
    for i, m in enumerate(modes):
        if m == "LEAF":
            ref[i] = f.add_leaf(pairs.get((tree_ids[i], node_ids[i]), []))
    for k, i in enumerate(branch):
        ref[i] = k
    for i in branch:
        if modes[i] not in _MODES or modes[i] == "BRANCH_MEMBER":
            ctx.fail(f"node mode '{modes[i]}' is not supported")
        f.feature.append(feats[i])
        f.threshold.append(float(values[i]))
        f.mode.append(_MODES[modes[i]] | (_MISSING_TRUE if miss[i] else 0))
        f.member_start.append(0)
        for nxt, out in ((tids[i], f.true_next), (fids[i], f.false_next)):
            j = index.get((tree_ids[i], nxt))
            if j is None:
                ctx.fail(f"tree {tree_ids[i]} has no node {nxt}")
            out.append(ref[j])
    f.member_start.append(0)
    for t in dict.fromkeys(tree_ids):
        root = min((i for i, tt in enumerate(tree_ids) if tt == t), key=lambda i: node_ids[i])
        f.roots.append(ref[root])
    return f


def _forest_code(ctx: Lowering, f: Forest, x: Buffer, n: int, c: int, n_targets: int, thr_dt: np.dtype, acc: str, sp: str, hp: str) -> str:
    """C: for every row, sp[i*n_targets + t] accumulates leaf weights per `agg` with has-flags in hp."""
    if any(not 0 <= ft < c for ft in f.feature):
        ctx.fail(f"a node reads a feature outside the {c} features")
    if any(not 0 <= t < n_targets for t in f.targets):
        ctx.fail(f"a leaf names a target outside the {n_targets} targets")
    tt = "double" if thr_dt == np.float64 else "float"
    n_nodes = len(f.feature)
    idx = "int32_t"
    lines = [
        _table("tf", "uint32_t", f.feature, np.uint32),
        _table("tth", tt, f.threshold, thr_dt),
        _table("tm", "uint8_t", f.mode, np.uint8),
        _table("ttn", idx, f.true_next, np.int32),
        _table("tfn", idx, f.false_next, np.int32),
        _table("tls", "uint32_t", f.leaf_start, np.uint32),
        _table("tlt", "uint32_t", f.targets, np.uint32),
        _table("tlw", acc, f.weights, np.float64 if acc == "double" else np.float32),
        _table("troot", idx, f.roots, np.int32),
    ]
    has_member = bool(f.members)
    if has_member:
        lines += [_table("tms", "uint32_t", f.member_start, np.uint32), _table("tmv", tt, f.members, thr_dt)]
    cmp = [
        "case 0: go = v <= th; break;",
        "case 1: go = v < th; break;",
        "case 2: go = v >= th; break;",
        "case 3: go = v > th; break;",
        "case 4: go = v == th; break;",
        "case 5: go = v != th; break;",
    ]
    if has_member:
        cmp.append("case 6: for (uint32_t m = tms[r]; m < tms[r + 1]; ++m) if (v == tmv[m]) go = 1; break;")
    agg = ctx.attr("aggregate_function", "SUM")
    agg = _AGG[int(agg)] if isinstance(agg, int) else str(agg)
    if agg not in _AGG:
        ctx.fail(f"aggregate_function '{agg}' is not supported")
    if agg in ("SUM", "AVERAGE"):
        update = f"{sp}[o + t] += w;"
    else:
        op_ = "<" if agg == "MIN" else ">"
        update = f"if (!{hp}[o + t] || w {op_} {sp}[o + t]) {{ {sp}[o + t] = w; }}"
    lines += [
        f"for (size_t i = 0; i < {n}; ++i) {{",
        f"    const {x.ctype} *xr = {ctx.ptr(x)} + i*{c};",
        f"    const size_t o = i*{n_targets};",
        f"    for (size_t t = 0; t < {n_targets}; ++t) {{ {sp}[o + t] = 0; {hp}[o + t] = 0; }}",
        f"    for (size_t k = 0; k < {len(f.roots)}; ++k) {{",
        f"        {idx} r = troot[k];",
        "        while (r >= 0) {",
        f"            const {tt} v = ({tt})xr[tf[r]], th = tth[r];",
        "            int go = 0;",
        "            switch (tm[r] & 7) {",
        *("            " + s for s in cmp),
        "            default: break;",
        "            }",
        f"            if (!go && (tm[r] & {_MISSING_TRUE}) && v != v) go = 1;",
        "            r = go ? ttn[r] : tfn[r];",
        "        }",
        "        {",
        f"            const {idx} l = -r - 1;",
        "            for (uint32_t q = tls[l]; q < tls[l + 1]; ++q) {",
        f"                const size_t t = tlt[q]; const {acc} w = tlw[q];",
        f"                {update} {hp}[o + t] = 1;",
        "            }",
        "        }",
        "    }",
        "}",
    ]
    if n_nodes == 0:
        lines = [ln for ln in lines if not ln.startswith(("static const uint32_t tf[", "static const uint8_t tm["))]
    return "\n".join(lines)


def _finalize_regression(ctx: Lowering, n: int, n_targets: int, n_trees: int, base: list[float], acc: str, sp: str, hp: str, yp: str, ot: str) -> str:
    """onnxruntime's FinalizeScores: the aggregate plus base values, then the post transform."""
    agg = ctx.attr("aggregate_function", "SUM")
    agg = _AGG[int(agg)] if isinstance(agg, int) else str(agg)
    transform = ctx.attr("post_transform", "NONE")
    transform = _TRANSFORMS[[0, 2, 1, 3, 4][int(transform)]] if isinstance(transform, int) else str(transform)
    if n_targets == 1:
        origin = base[0] if len(base) == 1 else 0.0
        bias = [origin]
    else:
        bias = base if len(base) == n_targets else [0.0] * n_targets
    score = {
        "SUM": f"{sp}[o + t]",
        "AVERAGE": f"{sp}[o + t] / {literal(n_trees, np.float64 if acc == 'double' else np.float32)}",
    }.get(agg, f"({hp}[o + t] ? {sp}[o + t] : 0)")
    ctype = acc
    lines = [
        _table("tbv", ctype, bias, np.float64 if acc == "double" else np.float32),
        f"for (size_t i = 0; i < {n}; ++i) {{",
        f"    const size_t o = i*{n_targets};",
        f"    float s[{n_targets}];" if transform != "NONE" else "",
        f"    for (size_t t = 0; t < {n_targets}; ++t) {{",
        # onnxruntime: with several targets, one no leaf wrote stays 0 (no base value)
        f"        const {acc} v = {score} + tbv[t];" if n_targets == 1 else f"        const {acc} v = {hp}[o + t] ? {score} + tbv[t] : 0;",
        "        s[t] = (float)v;" if transform != "NONE" else f"        {yp}[o + t] = ({ot})v;",
        "    }",
    ]
    if transform != "NONE":
        post = transform_code(ctx, transform, "s", n_targets)
        lines += [post, f"    for (size_t t = 0; t < {n_targets}; ++t) {yp}[o + t] = ({ot})s[t];"]
    lines.append("}")
    return "\n".join(ln for ln in lines if ln)


def _regression(ctx: Lowering, f: Forest, n_targets: int, thr_dt: np.dtype, base: list[float]) -> None:
    x, n, c = _features(ctx)
    y = ctx.output(0)
    if not is_float(y.dtype) or y.size != n * n_targets:
        ctx.fail(f"output {y.shape} {y.dtype.name} is not a float [{n}, {n_targets}]")
    if n == 0 or n_targets == 0:
        return
    acc = "double" if y.dtype == np.float64 or thr_dt == np.float64 else "float"
    sp = ctx.scratch(8 * n * n_targets, np.float64 if acc == "double" else np.float32)
    hp = ctx.scratch(n * n_targets, np.uint8)
    ctx.emit(_forest_code(ctx, f, x, n, c, n_targets, thr_dt, acc, sp, hp))
    ctx.emit(_finalize_regression(ctx, n, n_targets, len(f.roots), base, acc, sp, hp, ctx.ptr(y), y.ctype))


@op("TreeEnsemble", domain=ML)
def lower_tree_ensemble(ctx: Lowering) -> None:
    x = ctx.input(0)
    splits = np.asarray(ctx.attr("nodes_splits"))
    thr_dt = np.dtype(np.float64) if splits.dtype == np.float64 or x.dtype == np.float64 else np.dtype(np.float32)
    _regression(ctx, _forest_v5(ctx), int(ctx.attr("n_targets", 1)), thr_dt, [])


@op("TreeEnsembleRegressor", domain=ML)
def lower_tree_ensemble_regressor(ctx: Lowering) -> None:
    x = ctx.input(0)
    as_tensor = "nodes_values_as_tensor" in ctx.node.attrs and np.asarray(ctx.attr("nodes_values_as_tensor")).dtype == np.float64
    thr_dt = np.dtype(np.float64) if as_tensor or x.dtype == np.float64 else np.dtype(np.float32)
    bv = ctx.attr("base_values_as_tensor")
    base = np.asarray(bv).reshape(-1).tolist() if bv is not None else [float(v) for v in ctx.attr("base_values", []) or []]
    _regression(ctx, _forest_v3(ctx, "target_"), int(ctx.attr("n_targets", 1)), thr_dt, base)
