"""com.microsoft contrib ops that transformer exports use: Gelu, BiasGelu, FastGelu, QuickGelu,
SkipLayerNormalization and SkipSimplifiedLayerNormalization (onnxruntime's definitions; their static
shapes come from importer/rules.py since onnx has no schema for them)."""

from __future__ import annotations

from ..ir import Buffer
from .common import is_float, literal, math_fn
from .registry import Lowering, op

MS = "com.microsoft"


def _float_in(ctx: Lowering, b: Buffer) -> None:
    if not is_float(b.dtype):
        ctx.fail(f"dtype {b.dtype.name} is not supported (float32/float64 only)")


def _bias_expr(ctx: Lowering, i: int, x: Buffer) -> str:
    """`+ bias[i % H]` for an optional 1-D bias over the last axis, or ''."""
    if not ctx.has_input(i):
        return ""
    b = ctx.input(i)
    h = x.shape[-1] if x.shape else 1
    if b.size != h:
        ctx.fail(f"bias has {b.size} values, the last axis {h}")
    return f" + {ctx.ptr(b)}[i % {h}]"


def _unary(ctx: Lowering, bias_input: int | None, body: str) -> None:
    """y[i] = body(v) with v = x[i] (+ bias over the last axis)."""
    x, y = ctx.input(0), ctx.output(0)
    _float_in(ctx, x)
    if y.size == 0:
        return
    bias = _bias_expr(ctx, bias_input, x) if bias_input is not None else ""
    t = x.ctype
    ctx.emit(f"for (size_t i = 0; i < {y.size}; ++i) {{\n    const {t} v = {ctx.ptr(x)}[i]{bias};\n    {ctx.ptr(y)}[i] = {body};\n}}")


@op("Gelu", domain=MS)
def lower_gelu(ctx: Lowering) -> None:
    dt = ctx.input(0).dtype
    _unary(ctx, None, f"{literal(0.5, dt)} * v * ({literal(1, dt)} + {math_fn('erf', dt)}(v * {literal(0.7071067811865476, dt)}))")


@op("BiasGelu", domain=MS)
def lower_bias_gelu(ctx: Lowering) -> None:
    dt = ctx.input(0).dtype
    _unary(ctx, 1, f"{literal(0.5, dt)} * v * ({literal(1, dt)} + {math_fn('erf', dt)}(v * {literal(0.7071067811865476, dt)}))")


@op("FastGelu", domain=MS)
def lower_fast_gelu(ctx: Lowering) -> None:
    # the tanh approximation: 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
    dt = ctx.input(0).dtype
    k, c = literal(0.7978845608028654, dt), literal(0.044715, dt)
    _unary(ctx, 1, f"{literal(0.5, dt)} * v * ({literal(1, dt)} + {math_fn('tanh', dt)}({k} * (v + {c} * v * v * v)))")


@op("QuickGelu", domain=MS)
def lower_quick_gelu(ctx: Lowering) -> None:
    dt = ctx.input(0).dtype
    a = literal(float(ctx.attr("alpha", 1.702)), dt)
    _unary(ctx, None, f"v / ({literal(1, dt)} + {math_fn('exp', dt)}(-{a} * v))")


@op("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", domain=MS)
def lower_skip_layer_norm(ctx: Lowering) -> None:
    """s = input + skip (+ bias); y = (s - mean) / sqrt(var + eps) * gamma (+ beta) over the last axis
    (the simplified form: s / sqrt(mean(s^2) + eps) * gamma). skip may be broadcast over the batch.
    Optional outputs: mean, 1/std, and s itself."""
    simplified = ctx.node.op_type == "SkipSimplifiedLayerNormalization"
    x, skip, gamma, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
    _float_in(ctx, x)
    if not x.shape:
        ctx.fail("input must have rank >= 1")
    h = x.shape[-1]
    rows = x.size // h if h else 0
    if skip.size not in (x.size,) and (x.size == 0 or skip.size == 0 or x.size % skip.size or skip.shape[-1:] != (h,)):
        ctx.fail(f"skip shape {skip.shape} does not fit input {x.shape}")
    beta = None if simplified or not ctx.has_input(3) else ctx.input(3)
    bias = ctx.input(3 if simplified else 4) if ctx.has_input(3 if simplified else 4) else None
    for name, b in (("gamma", gamma), ("beta", beta), ("bias", bias)):
        if b is not None and b.size != h:
            ctx.fail(f"{name} has {b.size} values, the hidden size is {h}")
    if y.size == 0:
        return
    eps = float(ctx.attr("epsilon", 1e-12))
    t = x.ctype
    outs = [ctx.output(k) if ctx.has_output(k) else None for k in range(4)]
    sum_out = outs[3]
    # s is kept in the sum output when there is one, else in y (overwritten in place by the result)
    sp = ctx.ptr(sum_out) if sum_out is not None else ctx.ptr(y)
    skip_rows = skip.size // h
    lines = [
        f"for (size_t r = 0; r < {rows}; ++r) {{",
        f"    const {t} *xr = {ctx.ptr(x)} + r*{h};",
        f"    const {t} *kr = {ctx.ptr(skip)} + (r % {skip_rows})*{h};",
        f"    {t} *sr = {sp} + r*{h};",
        f"    {t} *yr = {ctx.ptr(y)} + r*{h};",
        "    double mean = 0.0, sq = 0.0, var, inv;",
        f"    for (size_t j = 0; j < {h}; ++j) {{",
        f"        const {t} v = xr[j] + kr[j]" + (f" + {ctx.ptr(bias)}[j]" if bias is not None else "") + ";",
        "        sr[j] = v; mean += (double)v; sq += (double)v * (double)v;",
        "    }",
        f"    mean /= {h}.0; sq /= {h}.0;",
    ]
    if simplified:
        lines += [f"    inv = 1.0 / sqrt(sq + {eps!r});", "    var = sq;"]
        norm = f"({t})((double)sr[j] * inv)"
    else:
        lines += ["    var = sq - mean * mean;", "    if (var < 0.0) var = 0.0;", f"    inv = 1.0 / sqrt(var + {eps!r});"]
        norm = f"({t})(((double)sr[j] - mean) * inv)"
    tail = f" + {ctx.ptr(beta)}[j]" if beta is not None else ""
    lines.append(f"    for (size_t j = 0; j < {h}; ++j) yr[j] = {norm} * {ctx.ptr(gamma)}[j]{tail};")
    for k, expr in ((1, "mean"), (2, "inv")):
        if outs[k] is not None:
            if outs[k].size != rows:
                ctx.fail(f"output {k} has shape {outs[k].shape}, expected {rows} values")
            lines.append(f"    {ctx.ptr(outs[k])}[r] = ({outs[k].ctype}){expr};")
    lines.append("    (void)var; (void)mean;")
    lines.append("}")
    ctx.emit("\n".join(lines))
