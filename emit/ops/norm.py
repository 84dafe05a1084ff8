"""Normalisations: Softmax, LogSoftmax, Hardmax, LayerNormalization, RMSNormalization,
InstanceNormalization, GroupNormalization, LRN, LpNormalization, MeanVarianceNormalization.

Most of them work on "rows": for every (outer, inner) position, the n elements a stride `inner`
apart. Statistics are two-pass (mean, then squared deviations) like the ONNX references."""

from __future__ import annotations

import numpy as np

from ..ir import Buffer
from .common import broadcast_strides, is_float, literal, math_fn, max_loop, normalize_axis, strides, sum_loop
from .reduce import axis_groups, loops
from .registry import Lowering, op


def _prod(dims) -> int:
    return int(np.prod(list(dims), dtype=np.int64)) if len(dims) else 1


def _float_only(ctx: Lowering, buf: Buffer) -> None:
    if not is_float(buf.dtype):
        ctx.fail(f"{ctx.node.op_type} of dtype {np.dtype(buf.dtype).name} is not supported (float32/float64 only)")


def _times(var: str, k: int) -> str:
    return var if k == 1 else f"{var}*{k}"


def _axis(ctx: Lowering, rank: int, default: int) -> int:
    a = int(ctx.attr("axis", default))
    if not -rank <= a < max(rank, 1):
        ctx.fail(f"axis {a} is out of range for rank {rank}")
    return normalize_axis(a, rank)


def _rows(shape: tuple[int, ...], axis: int, flatten_tail: bool) -> tuple[int, int, int]:
    """(outer, n, inner): one axis, or with flatten_tail every axis from `axis` on (the 2-D coercion
    of the opset < 13 softmax family and of LayerNormalization)."""
    if flatten_tail:
        return _prod(shape[:axis]), _prod(shape[axis:]), 1
    return _prod(shape[:axis]), shape[axis], _prod(shape[axis + 1 :])


def _row_head(outer: int, n: int, inner: int) -> str:
    """Loops over the rows; the body sees `base` (offset of a row's first element)."""
    head = ""
    if outer > 1:
        head += f"for (size_t a = 0; a < {outer}; ++a) "
    if inner > 1:
        head += f"for (size_t b = 0; b < {inner}; ++b) "
    terms = ([_times("a", n * inner)] if outer > 1 else []) + (["b"] if inner > 1 else [])
    base = " + ".join(terms) if terms else "0"
    return head + "{\n" + f"    const size_t base = {base};\n"


# ---------------------------------------------------------------- Softmax family


@op("Softmax", "LogSoftmax", "Hardmax")
def lower_softmax(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    _float_only(ctx, x)
    if y.size == 0:
        return
    rank = len(x.shape)
    if rank == 0:
        ctx.fail("input must have rank >= 1")
    old = ctx.opset < 13  # before opset 13 the input is coerced to 2-D at `axis`
    axis = _axis(ctx, rank, 1 if old else -1)
    outer, n, inner = _rows(tuple(x.shape), axis, flatten_tail=old)
    t, xp, yp = x.ctype, ctx.ptr(x), ctx.ptr(y)
    j = _times("j", inner)
    kind = ctx.node.op_type
    body = [f"    const {t} *xr = {xp} + base;", f"    {t} *yr = {yp} + base;"]
    if kind == "Hardmax":
        # the first largest element wins (np.argmax)
        body += [
            "    size_t best = 0;",
            f"    for (size_t j = 1; j < {n}; ++j) if (xr[{j}] > xr[{_times('best', inner)}]) best = j;",
            f"    for (size_t j = 0; j < {n}; ++j) yr[{j}] = j == best ? {literal(1, t_dt(x))} : {literal(0, t_dt(x))};",
        ]
    else:
        exp, log = math_fn("exp", x.dtype), math_fn("log", x.dtype)
        body += [f"    {t} mx;", _indent(max_loop("mx", t, n, f"xr[{j}]")), f"    {t} sum = 0;"]
        if kind == "Softmax" and t == "float" and inner == 1 and n >= 16:
            # contiguous float rows: the vectorised e^x of gemm.c and a lane-parallel sum, not a libm call per element
            ctx.kernel("gemm")
            body += [
                f"    for (size_t j = 0; j < {n}; ++j) yr[j] = xr[j] - mx;",
                f"    ek_sexp(yr, yr, {n});",
                _indent(sum_loop("sum", t, n, "yr[j]")),
                "    const float inv = 1.0f / sum;",
                f"    for (size_t j = 0; j < {n}; ++j) yr[j] *= inv;",
            ]
        elif kind == "Softmax":
            body += [
                f"    for (size_t j = 0; j < {n}; ++j) {{ const {t} e = {exp}(xr[{j}] - mx); yr[{j}] = e; sum += e; }}",
                f"    const {t} inv = {literal(1, t_dt(x))} / sum;",
                f"    for (size_t j = 0; j < {n}; ++j) yr[{j}] *= inv;",
            ]
        else:
            body += [
                f"    for (size_t j = 0; j < {n}; ++j) sum += {exp}(xr[{j}] - mx);",
                f"    const {t} shift = mx + {log}(sum);",
                f"    for (size_t j = 0; j < {n}; ++j) yr[{j}] = xr[{j}] - shift;",
            ]
    ctx.emit(_row_head(outer, n, inner) + "\n".join(body) + "\n}")


def _indent(code: str) -> str:
    return "\n".join("    " + ln for ln in code.splitlines())


def t_dt(buf: Buffer) -> np.dtype:
    return np.dtype(buf.dtype)


# ---------------------------------------------------------------- Layer / RMS normalisation


def _param_index(ctx: Lowering, p: Buffer, x_shape: tuple[int, ...], axis: int, what: str) -> str:
    """How a Scale/B tensor broadcast over the normalised axes [axis, rank) is indexed by `j`,
    the flat position inside a row."""
    st = broadcast_strides(tuple(p.shape), x_shape)
    if len(p.shape) > len(x_shape) or any(s for s, d in zip(st[:axis], x_shape[:axis]) if d != 1):
        ctx.fail(f"{what} of shape {tuple(p.shape)} must broadcast to the normalised shape {x_shape[axis:]}")
    tail = st[axis:]
    if not any(tail):
        return "0"
    if tail == strides(x_shape[axis:]):
        return "j"
    # a partial broadcast (e.g. one value per leading normalised axis): unflatten j
    inner = strides(x_shape[axis:])
    terms = [f"(j / {q} % {d})*{s}" for q, d, s in zip(inner, x_shape[axis:], tail) if s]
    return " + ".join(terms)


def _compute_type(ctx: Lowering, x: Buffer) -> tuple[str, np.dtype]:
    """The type statistics are computed in: stash_type (1 = float32, 11 = float64), at least x's."""
    stash = int(ctx.attr("stash_type", 1))
    if stash not in (1, 11):
        ctx.fail(f"stash_type {stash} is not supported (1 or 11)")
    if stash == 11 or np.dtype(x.dtype) == np.float64:
        return "double", np.dtype(np.float64)
    return "float", np.dtype(np.float32)


@op("LayerNormalization", "RMSNormalization")
def lower_layer_norm(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    _float_only(ctx, x)
    rms = ctx.node.op_type == "RMSNormalization"
    shape = tuple(x.shape)
    rank = len(shape)
    if rank == 0:
        ctx.fail("input must have rank >= 1")
    axis = _axis(ctx, rank, -1)
    outer, n, _ = _rows(shape, axis, flatten_tail=True)
    if x.size == 0:
        return
    u, udt = _compute_type(ctx, x)
    eps = literal(float(ctx.attr("epsilon", 1e-5)), udt)
    sqrt = math_fn("sqrt", udt)
    scale = ctx.input(1)
    s_idx = _param_index(ctx, scale, shape, axis, "Scale")
    bias = ctx.input(2) if not rms and ctx.has_input(2) else None
    affine = f"xd * inv * ({u}){ctx.ptr(scale)}[{s_idx}]"
    if bias is not None:
        affine += f" + ({u}){ctx.ptr(bias)}[{_param_index(ctx, bias, shape, axis, 'B')}]"
    t = x.ctype
    lines = [
        f"for (size_t a = 0; a < {outer}; ++a) {{",
        f"    const {t} *xr = {ctx.ptr(x)} + a*{n};",
        f"    {t} *yr = {ctx.ptr(y)} + a*{n};",
    ]
    if rms:
        lines += [
            f"    {u} ss = 0;",
            _indent(sum_loop("ss", u, n, f"({u})xr[j] * ({u})xr[j]")),
            f"    const {u} inv = {literal(1, udt)} / {sqrt}(ss / {literal(n, udt)} + {eps});",
            f"    for (size_t j = 0; j < {n}; ++j) {{ const {u} xd = ({u})xr[j]; yr[j] = ({t})({affine}); }}",
        ]
    else:
        lines += [
            f"    {u} mean = 0, var = 0;",
            _indent(sum_loop("mean", u, n, f"({u})xr[j]")),
            f"    mean /= {literal(n, udt)};",
            _indent(sum_loop("var", u, n, f"(({u})xr[j] - mean) * (({u})xr[j] - mean)")),
            f"    var /= {literal(n, udt)};",
            f"    const {u} inv = {literal(1, udt)} / {sqrt}(var + {eps});",
            f"    for (size_t j = 0; j < {n}; ++j) {{ const {u} xd = ({u})xr[j] - mean; yr[j] = ({t})({affine}); }}",
        ]
        for k, name in ((1, "mean"), (2, "inv")):
            if ctx.has_output(k):
                out = ctx.output(k)
                lines.append(f"    {ctx.ptr(out)}[a] = ({out.ctype}){name};")
    lines.append("}")
    ctx.emit("\n".join(lines))


# ---------------------------------------------------------------- Instance / Group normalisation


def _group_norm_code(
    ctx: Lowering, x: Buffer, y: Buffer, groups: int, scale: Buffer, bias: Buffer, per_group: bool, eps: float, u: str, udt
) -> str:
    """Normalise x (N, C, spatial...) over each group of C/groups channels and the spatial axes,
    then y = scale * xhat + bias with one scale/bias per channel (or per group)."""
    shape = tuple(x.shape)
    nb, c = shape[0], shape[1]
    sp = _prod(shape[2:])
    cg = c // groups
    n = cg * sp
    t = x.ctype
    sqrt = math_fn("sqrt", udt)
    pidx = "g" if per_group else ("g*" + str(cg) + " + cc" if cg > 1 else "g")
    return "\n".join(
        [
            f"for (size_t a = 0; a < {nb}; ++a) for (size_t g = 0; g < {groups}; ++g) {{",
            f"    const {t} *xr = {ctx.ptr(x)} + (a*{groups} + g)*{n};",
            f"    {t} *yr = {ctx.ptr(y)} + (a*{groups} + g)*{n};",
            f"    {u} mean = 0, var = 0;",
            _indent(sum_loop("mean", u, n, f"({u})xr[j]")),
            f"    mean /= {literal(n, udt)};",
            _indent(sum_loop("var", u, n, f"(({u})xr[j] - mean) * (({u})xr[j] - mean)")),
            f"    var /= {literal(n, udt)};",
            f"    const {u} inv = {literal(1, udt)} / {sqrt}(var + {literal(eps, udt)});",
            f"    for (size_t cc = 0; cc < {cg}; ++cc) {{",
            f"        const {u} s = ({u}){ctx.ptr(scale)}[{pidx}] * inv, bb = ({u}){ctx.ptr(bias)}[{pidx}];",
            f"        for (size_t k = 0; k < {sp}; ++k) yr[cc*{sp} + k] = ({t})((({u})xr[cc*{sp} + k] - mean) * s + bb);",
            "    }",
            "}",
        ]
    )


def _channels_first(ctx: Lowering) -> tuple[Buffer, Buffer]:
    """Input and output of a float op over an (N, C, spatial...) tensor."""
    x, y = ctx.input(0), ctx.output(0)
    _float_only(ctx, x)
    if len(x.shape) < 2:
        ctx.fail("input must have rank >= 2 (N, C, ...)")
    return x, y


@op("InstanceNormalization")
def lower_instance_norm(ctx: Lowering) -> None:
    x, y = _channels_first(ctx)
    if x.size == 0:
        return
    c = x.shape[1]
    scale, bias = ctx.input(1), ctx.input(2)
    if scale.size != c or bias.size != c:
        ctx.fail(f"scale and B must have {c} elements (one per channel)")
    u, udt = _compute_type(ctx, x)  # InstanceNormalization has no stash_type: x's own precision
    ctx.emit(_group_norm_code(ctx, x, y, c, scale, bias, True, float(ctx.attr("epsilon", 1e-5)), u, udt))


@op("GroupNormalization")
def lower_group_norm(ctx: Lowering) -> None:
    x, y = _channels_first(ctx)
    groups = int(ctx.attr("num_groups", 0))
    c = x.shape[1]
    if groups <= 0 or c % groups:
        ctx.fail(f"num_groups {groups} must divide the {c} channels")
    if x.size == 0:
        return
    scale, bias = ctx.input(1), ctx.input(2)
    # opset 18 has one scale/bias per group, opset 21 one per channel: the shapes tell which
    if scale.size == c and bias.size == c:
        per_group = groups == c
    elif scale.size == groups and bias.size == groups:
        per_group = True
    else:
        ctx.fail(f"scale and bias must have {c} (channels) or {groups} (groups) elements")
    u, udt = _compute_type(ctx, x)
    ctx.emit(_group_norm_code(ctx, x, y, groups, scale, bias, per_group, float(ctx.attr("epsilon", 1e-5)), u, udt))


# ---------------------------------------------------------------- LRN, Lp, MVN


@op("LRN")
def lower_lrn(ctx: Lowering) -> None:
    x, y = _channels_first(ctx)
    if x.size == 0:
        return
    size = int(ctx.attr("size", 0))
    if size <= 0:
        ctx.fail("attribute 'size' must be positive")
    alpha, beta, bias = (float(ctx.attr(k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    dt = t_dt(x)
    nb, c = x.shape[0], x.shape[1]
    sp = _prod(x.shape[2:])
    lo, hi = (size - 1) // 2, size // 2  # floor and ceil of (size-1)/2
    t = x.ctype
    ctx.emit(
        "\n".join(
            [
                f"for (size_t a = 0; a < {nb}; ++a) for (size_t ch = 0; ch < {c}; ++ch) {{",
                f"    const size_t c0 = {f'ch < {lo} ? 0 : ch - {lo}' if lo else 'ch'}, c1 = ch + {hi} < {c} ? ch + {hi} : {c - 1};",
                f"    const {t} *xa = {ctx.ptr(x)} + a*{c * sp};",
                f"    for (size_t k = 0; k < {sp}; ++k) {{",
                f"        {t} ss = 0;",
                f"        for (size_t q = c0; q <= c1; ++q) ss += xa[q*{sp} + k] * xa[q*{sp} + k];",
                f"        {ctx.ptr(y)}[(a*{c} + ch)*{sp} + k] = xa[ch*{sp} + k] / "
                f"{math_fn('pow', dt)}({literal(bias, dt)} + {literal(alpha / size, dt)} * ss, {literal(beta, dt)});",
                "    }",
                "}",
            ]
        )
    )


@op("LpNormalization")
def lower_lp_norm(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    _float_only(ctx, x)
    rank = len(x.shape)
    if rank == 0:
        ctx.fail("input must have rank >= 1")
    p = int(ctx.attr("p", 2))
    if p not in (1, 2):
        ctx.fail(f"p = {p} is not supported (1 or 2)")
    if x.size == 0:
        return
    axis = _axis(ctx, rank, -1)
    outer, n, inner = _rows(tuple(x.shape), axis, flatten_tail=False)
    t, dt = x.ctype, t_dt(x)
    j = _times("j", inner)
    term = f"{math_fn('fabs', dt)}(xr[{j}])" if p == 1 else f"xr[{j}] * xr[{j}]"
    norm = "s" if p == 1 else f"{math_fn('sqrt', dt)}(s)"
    body = [
        f"    const {t} *xr = {ctx.ptr(x)} + base;",
        f"    {t} *yr = {ctx.ptr(y)} + base;",
        f"    {t} s = 0;",
        f"    for (size_t j = 0; j < {n}; ++j) s += {term};",
        f"    const {t} nrm = {norm};",
        # a zero norm gives 0, not 0/0
        f"    for (size_t j = 0; j < {n}; ++j) yr[{j}] = nrm == 0 ? 0 : xr[{j}] / nrm;",
    ]
    ctx.emit(_row_head(outer, n, inner) + "\n".join(body) + "\n}")


@op("MeanVarianceNormalization")
def lower_mvn(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    _float_only(ctx, x)
    if x.size == 0:
        return
    rank = len(x.shape)
    axes = ctx.attr("axes", [0, 2, 3])
    red = set()
    for a in axes:
        if not -rank <= a < rank:
            ctx.fail(f"axis {a} is out of range for rank {rank}")
        red.add(normalize_axis(int(a), rank))
    n = _prod([x.shape[a] for a in red])
    kept, rgroups = axis_groups(tuple(x.shape), red)
    khead, koff = loops(kept, "k")
    rhead, roff = loops(rgroups, "r")
    t, dt = x.ctype, t_dt(x)
    # y = (x - mean) / (sqrt(var) + 1e-9), as the function body of the op defines it
    ctx.emit(
        "\n".join(
            [
                f"{khead}{{",
                f"    const {t} *xr = {ctx.ptr(x)} + {koff};",
                f"    {t} *yr = {ctx.ptr(y)} + {koff};",
                f"    {t} mean = 0, var = 0;",
                f"    {rhead}mean += xr[{roff}];",
                f"    mean /= {literal(n, dt)};",
                f"    {rhead}{{ const {t} d = xr[{roff}] - mean; var += d * d; }}",
                f"    var /= {literal(n, dt)};",
                f"    const {t} inv = {literal(1, dt)} / ({math_fn('sqrt', dt)}(var) + {literal(1e-9, dt)});",
                f"    {rhead}yr[{roff}] = (xr[{roff}] - mean) * inv;",
                "}",
            ]
        )
    )
