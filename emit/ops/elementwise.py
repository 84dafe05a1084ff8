"""Elementwise ops with numpy broadcasting: unary math and activations, binary arithmetic, logic
and comparisons, variadic Max/Min/Sum/Mean, Where, Clip, PRelu.

Every loop body loads its operands into named locals (`x`, `a`, `b`, ...) and assigns one C
expression, so expressions can use an operand several times at no cost. Integer add/sub/mul/neg
go through unsigned arithmetic: they wrap like numpy instead of hitting signed-overflow UB."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from ..ir import Buffer, c_type
from .cast import cast_expr
from .common import broadcast_strides, collapse, index_expr, is_float, literal, loop_nest, math_fn, strides
from .registry import Lowering, op
from .strings import lower_string_equal

# an operand of a loop: the buffer, the local name its element gets, and optionally the shape it
# is broadcast from (when it differs from the buffer's own, e.g. old-opset axis broadcasting)
Operand = tuple  # (Buffer, str) | (Buffer, str, tuple[int, ...])


def _uses(name: str, code: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", code) is not None


def ew_loop(ctx: Lowering, out: Buffer, operands: list[Operand], expr: str, pre: str = "", setup: str = "") -> str:
    """Loop over out's elements: load each operand (broadcast, numpy rules) into a const local of
    its name, run the statements `pre`, then store `expr`. `setup` runs once before the loop."""
    shape = tuple(out.shape)
    if out.size == 0:
        return "".join(f"(void){ctx.ptr(o[0])};\n" for o in operands) + "/* empty */"
    used = [o for o in operands if _uses(o[1], pre + "\n" + expr)]
    # an operand the expression ignores still counts as used (no unused-parameter/variable warning)
    voids = "".join(f"(void){ctx.ptr(o[0])};\n" for o in operands if o not in used)
    sts = [broadcast_strides(o[2] if len(o) > 2 else o[0].shape, shape) for o in used] + [strides(shape)]
    cshape, csts = collapse(shape, sts)
    vars_ = [f"i{k}" for k in range(len(cshape))]
    lines = [f"const {o[0].ctype} {o[1]} = {ctx.ptr(o[0])}[{index_expr(vars_, s)}];" for o, s in zip(used, csts)]
    if pre:
        lines.append(pre)
    lines.append(f"{ctx.ptr(out)}[{index_expr(vars_, csts[-1])}] = {expr};")
    loop = voids + loop_nest(cshape, "\n".join(lines))
    return f"{setup}\n{loop}" if setup else loop


# ---------------------------------------------------------------- integer helpers


def _wide_unsigned(dt) -> str:
    """The unsigned type integer arithmetic of dt runs in (no promotion to signed int)."""
    return "uint64_t" if np.dtype(dt).itemsize == 8 else "uint32_t"


def _wrap(a: str, opr: str, b: str, dt) -> str:
    """a opr b in dt's integer type, modulo 2**bits (numpy's overflow behaviour), no UB."""
    u = _wide_unsigned(dt)
    return f"(({c_type(dt)})(({u})({a}) {opr} ({u})({b})))"


def _is_unsigned(dt) -> bool:
    return np.dtype(dt).kind == "u"


def _is_int(dt) -> bool:
    return np.dtype(dt).kind in "iu"


# ---------------------------------------------------------------- unary expressions

UnaryFn = Callable[[str, np.dtype, dict], str]


def _float_only(fn_name: str) -> UnaryFn:
    return lambda x, dt, at: f"{math_fn(fn_name, dt)}({x})"


def _softplus(x: str, dt) -> str:
    # stable form of log(1 + exp(x)): no overflow for large x
    e, l1p = math_fn("exp", dt), math_fn("log1p", dt)
    return f"({x} > 0 ? {x} + {l1p}({e}(-{x})) : {l1p}({e}({x})))"


def _sigmoid(x: str, dt) -> str:
    e, one = math_fn("exp", dt), literal(1, dt)
    return f"({x} >= 0 ? {one} / ({one} + {e}(-{x})) : {e}({x}) / ({one} + {e}({x})))"


def _clamp01(v: str, dt) -> str:
    """min(max(v, 0), 1) that keeps NaN (like numpy's clip)."""
    z, one = literal(0, dt), literal(1, dt)
    return f"(({v}) < {z} ? {z} : (({v}) > {one} ? {one} : ({v})))"


def _abs(x: str, dt, at: dict) -> str:
    if is_float(dt):
        return f"{math_fn('fabs', dt)}({x})"
    if _is_unsigned(dt):
        return x
    return f"({x} < 0 ? ({c_type(dt)})(-({_wide_unsigned(dt)})({x})) : {x})"


def _neg(x: str, dt, at: dict) -> str:
    if is_float(dt):
        return f"(-{x})"
    return f"(({c_type(dt)})(-({_wide_unsigned(dt)})({x})))"


def _sign(x: str, dt, at: dict) -> str:
    if _is_unsigned(dt):
        return f"({x} > 0)"
    if not is_float(dt):
        return f"(({c_type(dt)})(({x} > 0) - ({x} < 0)))"
    one = literal(1, dt)
    return f"({x} > 0 ? {one} : ({x} < 0 ? -{one} : {x}))"  # 0 and NaN map to themselves


def _relu(x: str, dt, at: dict) -> str:
    if _is_unsigned(dt):
        return x
    return f"({x} < 0 ? {literal(0, dt)} : {x})"  # NaN stays NaN, as np.maximum(x, 0)


def _isinf(x: str, dt, at: dict) -> str:
    pos, neg = at.get("detect_positive", 1), at.get("detect_negative", 1)
    inf = literal(math.inf, dt)
    if pos and neg:
        return f"(isinf({x}) != 0)"
    if pos:
        return f"({x} == {inf})"
    if neg:
        return f"({x} == -{inf})"
    return "0"


def _elu(x: str, dt, at: dict) -> str:
    alpha = literal(at.get("alpha", 1.0), dt)
    return f"({x} < 0 ? {alpha} * {math_fn('expm1', dt)}({x}) : {x})"


def _selu(x: str, dt, at: dict) -> str:
    alpha = at.get("alpha", 1.67326319217681884765625)
    gamma = at.get("gamma", 1.05070102214813232421875)
    g, ga = literal(gamma, dt), literal(np.float64(gamma) * np.float64(alpha), dt)
    return f"({x} > 0 ? {g} * {x} : {ga} * {math_fn('expm1', dt)}({x}))"


def _leaky(x: str, dt, at: dict) -> str:
    return f"({x} < 0 ? {literal(at.get('alpha', 0.01), dt)} * {x} : {x})"


def _hardsigmoid(x: str, dt, at: dict) -> str:
    alpha, beta = literal(at.get("alpha", 0.2), dt), literal(at.get("beta", 0.5), dt)
    return _clamp01(f"{alpha} * {x} + {beta}", dt)


def _hardswish(x: str, dt, at: dict) -> str:
    return f"({x} * {_clamp01(f'{literal(1 / 6, dt)} * {x} + {literal(0.5, dt)}', dt)})"


def _thresholded(x: str, dt, at: dict) -> str:
    return f"({x} > {literal(at.get('alpha', 1.0), dt)} ? {x} : {literal(0, dt)})"


def _celu(x: str, dt, at: dict) -> str:
    alpha = at.get("alpha", 1.0)
    a, inv = literal(alpha, dt), literal(1.0 / alpha, dt)
    return f"({x} > 0 ? {x} : {a} * {math_fn('expm1', dt)}({x} * {inv}))"


def _gelu(x: str, dt, at: dict) -> str:
    half, one = literal(0.5, dt), literal(1, dt)
    approx = at.get("approximate", "none")
    if approx == "tanh":
        k, c = literal(math.sqrt(2 / math.pi), dt), literal(0.044715, dt)
        return f"({half} * {x} * ({one} + {math_fn('tanh', dt)}({k} * ({x} + {c} * {x} * {x} * {x}))))"
    if approx != "none":
        raise ValueError(f"approximate='{approx}' is not supported (none, tanh)")
    return f"({half} * {x} * ({one} + {math_fn('erf', dt)}({x} * {literal(math.sqrt(0.5), dt)})))"


def _shrink(x: str, dt, at: dict) -> str:
    lambd, bias = at.get("lambd", 0.5), at.get("bias", 0.0)
    if is_float(dt):
        lam, b, z = literal(lambd, dt), literal(bias, dt), literal(0, dt)
        return f"({x} < -{lam} ? {x} + {b} : ({x} > {lam} ? {x} - {b} : {z}))"
    # integers: compare and add in double, as the float attributes promote them
    xd, lam, b = f"(double){x}", literal(lambd, "float64"), literal(bias, "float64")
    lo, hi = cast_expr(f"({xd} + {b})", "float64", dt), cast_expr(f"({xd} - {b})", "float64", dt)
    return f"({xd} < -{lam} ? {lo} : ({xd} > {lam} ? {hi} : 0))"


def _swish(x: str, dt, at: dict) -> str:
    alpha, one = literal(at.get("alpha", 1.0), dt), literal(1, dt)
    return f"({x} / ({one} + {math_fn('exp', dt)}(-{alpha} * {x})))"


def _mish(x: str, dt, at: dict) -> str:
    return f"({x} * {math_fn('tanh', dt)}({_softplus(x, dt)}))"


# ONNX op : C math function (float variant by suffix); nearbyint rounds half to even like np.round
_MATH_FNS = """Exp:exp Log:log Sqrt:sqrt Sin:sin Cos:cos Tan:tan Asin:asin Acos:acos Atan:atan Sinh:sinh Cosh:cosh
Tanh:tanh Asinh:asinh Acosh:acosh Atanh:atanh Ceil:ceil Floor:floor Erf:erf Round:nearbyint"""

UNARY: dict[str, UnaryFn] = {
    "Abs": _abs,
    "Neg": _neg,
    "Sign": _sign,
    "Relu": _relu,
    **{op_: _float_only(fn) for op_, fn in (pair.split(":") for pair in _MATH_FNS.split())},
    "Reciprocal": lambda x, dt, at: f"({literal(1, dt)} / {x})",
    "Sigmoid": lambda x, dt, at: _sigmoid(x, dt),
    "Softplus": lambda x, dt, at: _softplus(x, dt),
    "Softsign": lambda x, dt, at: f"({x} / ({literal(1, dt)} + {math_fn('fabs', dt)}({x})))",
    "IsNaN": lambda x, dt, at: f"(isnan({x}) != 0)",
    "IsInf": _isinf,
    "Not": lambda x, dt, at: f"(!{x})",
    "BitwiseNot": lambda x, dt, at: f"(({c_type(dt)})~{x})",
    "Elu": _elu,
    "Selu": _selu,
    "LeakyRelu": _leaky,
    "HardSigmoid": _hardsigmoid,
    "HardSwish": _hardswish,
    "ThresholdedRelu": _thresholded,
    "Celu": _celu,
    "Mish": _mish,
    "Gelu": _gelu,
    "Shrink": _shrink,
    "Swish": _swish,
}

# unary ops that also take integer inputs (all others are float-only in ONNX)
_INT_OK = {"Abs", "Neg", "Sign", "Relu", "BitwiseNot", "Shrink", "Not"}


def unary_expr(op_type: str, attrs: dict, x: str, dtype) -> str:
    """The C expression of a unary elementwise op applied to the side-effect-free expression x
    (reusable by fusion passes)."""
    return UNARY[op_type](x, np.dtype(dtype), attrs)


def _vector_kernel(kind: str, attrs: dict, dtype) -> str | None:
    """The runtime_c/gemm.c array kernel computing this op, if any: float32 e^x through a polynomial the
    compiler vectorises, instead of one libm call per element."""
    if np.dtype(dtype) != np.float32:
        return None
    if kind == "Swish" and float(attrs.get("alpha", 1.0)) == 1.0:
        return "ek_ssilu"  # also x * Sigmoid(x), rewritten by emit/passes/fuse_act.py
    return {"Sigmoid": "ek_ssigmoid", "Exp": "ek_sexp", "Erf": "ek_serf"}.get(kind)


@op(*UNARY)
def lower_unary(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    kind = ctx.node.op_type
    if not is_float(x.dtype) and kind not in _INT_OK:
        ctx.fail(f"{kind} on {x.dtype.name} is not supported (float32/float64 only)")
    fn = _vector_kernel(kind, ctx.node.attrs, x.dtype)
    if fn is not None and y.size > 0:
        ctx.kernel("gemm")
        ctx.emit(f"{fn}({ctx.ptr(x)}, {ctx.ptr(y)}, {y.size});")
        return
    try:
        expr = unary_expr(kind, ctx.node.attrs, "x", x.dtype)
    except ValueError as exc:
        ctx.fail(str(exc))
    ctx.emit(ew_loop(ctx, y, [(x, "x")], expr))


# ---------------------------------------------------------------- binary ops


def _old_broadcast_shape(ctx: Lowering, a: Buffer, b: Buffer) -> tuple[int, ...]:
    """Before opset 7, B broadcast to A only with broadcast=1, aligned at `axis` (default: trailing)."""
    if ctx.opset >= 7 or not ctx.attr("broadcast", 0) or "axis" not in ctx.node.attrs:
        return tuple(b.shape)
    axis = ctx.attr("axis")
    axis = axis + len(a.shape) if axis < 0 else axis
    return (1,) * axis + tuple(b.shape) + (1,) * (len(a.shape) - axis - len(b.shape))


def _binary_expr(ctx: Lowering, kind: str, dt: np.dtype, bdt: np.dtype) -> tuple[str, str]:
    """(pre statements, expression) of `a kind b` for element dtype dt (b's dtype bdt)."""
    ct = c_type(dt)
    flt = is_float(dt)
    if kind in ("Add", "Sub", "Mul"):
        opr = {"Add": "+", "Sub": "-", "Mul": "*"}[kind]
        return "", f"(a {opr} b)" if flt else _wrap("a", opr, "b", dt)
    if kind == "Div":
        if flt:
            return "", "(a / b)"
        if _is_unsigned(dt):
            return "", f"(b != 0 ? ({ct})(a / b) : 0)"  # x/0 is 0 (numpy) rather than a trap
        # C division truncates toward zero like onnxruntime; MIN/-1 wraps instead of trapping
        return "", f"(b == 0 ? 0 : (b == -1 ? ({ct})(-({_wide_unsigned(dt)})a) : ({ct})(a / b)))"
    if kind == "Mod":
        return _mod(ctx, dt)
    if kind == "Pow":
        return _pow(dt, bdt)
    if kind == "BitShift":
        return "", _bitshift(ctx, dt)
    if kind in ("BitwiseAnd", "BitwiseOr", "BitwiseXor"):
        opr = {"BitwiseAnd": "&", "BitwiseOr": "|", "BitwiseXor": "^"}[kind]
        return "", f"(({ct})(a {opr} b))"
    if kind in ("And", "Or", "Xor"):
        return "", {"And": "(a && b)", "Or": "(a || b)", "Xor": "(a != b)"}[kind]
    cmp = {"Equal": "==", "Less": "<", "LessOrEqual": "<=", "Greater": ">", "GreaterOrEqual": ">="}[kind]
    return "", f"(a {cmp} b)"


def _mod(ctx: Lowering, dt: np.dtype) -> tuple[str, str]:
    ct = c_type(dt)
    fmod = ctx.attr("fmod", 0)
    if is_float(dt):
        f = math_fn("fmod", dt)
        if fmod:
            return "", f"{f}(a, b)"
        # numpy's np.mod: the result takes the divisor's sign; an exact zero is signed like b
        pre = f"const {ct} m = {f}(a, b);"
        return pre, f"(m != 0 ? (((b < 0) != (m < 0)) ? m + b : m) : {math_fn('copysign', dt)}({literal(0, dt)}, b))"
    if _is_unsigned(dt):
        return "", f"(b != 0 ? ({ct})(a % b) : 0)"
    # signed: C's % truncates (fmod=1); x%0 -> 0 and MIN%-1 -> 0 instead of trapping
    pre = f"const {ct} m = (b == 0 || b == -1) ? 0 : ({ct})(a % b);"
    if fmod:
        return pre, "m"
    return pre, f"((m != 0 && ((m < 0) != (b < 0))) ? ({ct})(m + b) : m)"


def _pow(dt: np.dtype, bdt: np.dtype) -> tuple[str, str]:
    """Pow(a, b) returns a's dtype; numpy computes mixed int/float in double, ints exactly."""
    ct = c_type(dt)
    if is_float(dt):
        if dt == np.float32 and bdt == np.float32:
            return "", "powf(a, b)"
        return "", f"(({ct})pow((double)a, (double)b))"
    if is_float(bdt):
        return "const double p = pow((double)a, (double)b);", cast_expr("p", "float64", dt)
    # integer ** integer: square-and-multiply modulo 2**bits; negative exponents give 1/a**|b| truncated
    u = _wide_unsigned(dt)
    neg = "(a == 1 ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0))" if not _is_unsigned(dt) else "(a == 1)"
    neg_check = "b < 0" if not _is_unsigned(bdt) else "0"
    pre = (
        f"{u} r = 1, base = ({u})a;\n"
        f"uint64_t e = (uint64_t)b;\n"
        f"if ({neg_check}) {{ r = ({u}){neg}; e = 0; }}\n"
        f"while (e) {{ if (e & 1) r *= base; base *= base; e >>= 1; }}"
    )
    return pre, f"(({ct})r)"


def _bitshift(ctx: Lowering, dt: np.dtype) -> str:
    ct = c_type(dt)
    bits = dt.itemsize * 8
    left = ctx.attr("direction", "") == "LEFT"
    if ctx.attr("direction", "") not in ("LEFT", "RIGHT"):
        ctx.fail(f"direction '{ctx.attr('direction', '')}' must be LEFT or RIGHT")
    signed = not _is_unsigned(dt)
    valid = f"(b >= 0 && b < {bits})" if signed else f"(b < {bits})"
    if left:
        return f"({valid} ? ({ct})(({_wide_unsigned(dt)})a << b) : 0)"
    if not signed:
        return f"({valid} ? ({ct})(a >> b) : 0)"
    # arithmetic shift right without relying on implementation-defined >> of negatives
    return f"({valid} ? ({ct})(a < 0 ? ~(~a >> b) : a >> b) : (a < 0 ? -1 : 0))"


_BINARY = [
    "Add", "Sub", "Mul", "Div", "Mod", "Pow", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
    "And", "Or", "Xor", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
]  # fmt: skip


@op(*_BINARY)
def lower_binary(ctx: Lowering) -> None:
    a, b, y = ctx.input(0), ctx.input(1), ctx.output(0)
    kind = ctx.node.op_type
    if kind == "Equal" and a.dtype.kind == "S":
        return lower_string_equal(ctx)
    if kind in ("And", "Or", "Xor") and (a.dtype != np.bool_ or b.dtype != np.bool_):
        ctx.fail(f"{kind} needs bool inputs")
    pre, expr = _binary_expr(ctx, kind, np.dtype(a.dtype), np.dtype(b.dtype))
    ctx.emit(ew_loop(ctx, y, [(a, "a"), (b, "b", _old_broadcast_shape(ctx, a, b))], expr, pre))


# ---------------------------------------------------------------- variadic, Where, Clip, PRelu


@op("Max", "Min", "Sum", "Mean")
def lower_variadic(ctx: Lowering) -> None:
    y = ctx.output(0)
    dt = np.dtype(y.dtype)
    ins = [(ctx.input(k), f"x{k}") for k in range(ctx.n_inputs) if ctx.has_input(k)]
    kind = ctx.node.op_type
    steps = [f"{c_type(dt)} acc = x0;"]
    for _, name in ins[1:]:
        if kind in ("Max", "Min"):
            cmp = ">" if kind == "Max" else "<"
            # NaN propagates from either side, as np.maximum / np.minimum
            nan = f" || {name} != {name}" if is_float(dt) else ""
            steps.append(f"acc = ({name} {cmp} acc{nan}) ? {name} : acc;")
        else:
            steps.append(f"acc = {'acc + ' + name if is_float(dt) else _wrap('acc', '+', name, dt)};")
    expr = "acc"
    if kind == "Mean" and len(ins) > 1:
        expr = f"(acc / {literal(len(ins), dt)})" if is_float(dt) else f"({c_type(dt)})(acc / {len(ins)})"
    ctx.emit(ew_loop(ctx, y, ins, expr, "\n".join(steps)))


@op("Where")
def lower_where(ctx: Lowering) -> None:
    c, a, b, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
    ctx.emit(ew_loop(ctx, y, [(c, "c"), (a, "a"), (b, "b")], "(c ? a : b)"))


@op("Clip")
def lower_clip(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    dt = np.dtype(x.dtype)
    ct = c_type(dt)
    setup: list[str] = []
    bounds: dict[str, str] = {}
    for name, idx in (("min", 1), ("max", 2)):
        if name in ctx.node.attrs:  # opset < 11
            bounds[name] = literal(ctx.attr(name), dt)
        elif ctx.has_input(idx):
            buf = ctx.input(idx)
            if buf.size != 1:
                ctx.fail(f"{name} must be a scalar, got shape {list(buf.shape)}")
            const = ctx.const(idx)
            if y.size == 0:
                setup.append(f"(void){ctx.ptr(buf)};")
            elif const is not None:
                bounds[name] = literal(const.reshape(-1)[0], dt)
            else:
                setup.append(f"const {ct} {name}_v = {ctx.ptr(buf)}[0];")
                bounds[name] = f"{name}_v"
    if is_float(dt):  # a missing bound is the finite lowest/max (spec, onnxruntime): it clamps +-inf
        fmax = float(np.finfo(dt).max)
        bounds.setdefault("min", literal(-fmax, dt))
        bounds.setdefault("max", literal(fmax, dt))
    expr = "x"
    if "min" in bounds:  # NaN stays NaN, min > max gives max (np.clip)
        expr = f"(x < {bounds['min']} ? {bounds['min']} : x)"
    if "max" in bounds:
        expr = f"({expr} > {bounds['max']} ? {bounds['max']} : {expr})"
    if y.size == 0:
        ctx.emit("\n".join(setup))
    ctx.emit(ew_loop(ctx, y, [(x, "x")], expr, setup="\n".join(setup) if y.size else ""))


@op("PRelu")
def lower_prelu(ctx: Lowering) -> None:
    x, s, y = ctx.input(0), ctx.input(1), ctx.output(0)
    dt = np.dtype(x.dtype)
    shape = _prelu_slope_shape(ctx, tuple(x.shape), tuple(s.shape))
    if _is_unsigned(dt):
        expr = "x"  # x < 0 never happens
    else:
        prod = "(s * x)" if is_float(dt) else _wrap("s", "*", "x", dt)
        expr = f"(x < 0 ? {prod} : x)"  # NaN stays NaN
    ctx.emit(ew_loop(ctx, y, [(x, "x"), (s, "s", shape)], expr))


def _prelu_slope_shape(ctx: Lowering, xs: tuple[int, ...], ss: tuple[int, ...]) -> tuple[int, ...]:
    """Numpy (unidirectional) broadcasting; for old models a 1-D slope whose length matches exactly
    one axis of x (e.g. per-channel slopes) applies along that axis."""
    try:
        if np.broadcast_shapes(xs, ss) == xs:
            return ss
    except ValueError:
        pass
    if len(ss) == 1:
        hits = [k for k, d in enumerate(xs) if d == ss[0]]
        if len(hits) == 1:
            return tuple(d if k == hits[0] else 1 for k, d in enumerate(xs))
    ctx.fail(f"slope shape {list(ss)} does not broadcast to input shape {list(xs)}")


# Ops whose lowering (ew_loop, or a vector kernel that allows x == y) reads every input element at the output's own
# index only and before storing it: the output may take the memory of an input of its shape and dtype that dies
# there (emit/passes/in_place.py).
POINTWISE = frozenset(UNARY) | frozenset(_BINARY) | {"Max", "Min", "Sum", "Mean", "Where", "Clip", "PRelu"}
