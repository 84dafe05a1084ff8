"""Linear quantisation: QuantizeLinear and DequantizeLinear (per tensor, per axis, blocked), and the
requantising integer layers QLinearMatMul and QLinearConv (int32 accumulation, then
round-half-to-even and saturation to the output's integer range, as ONNX specifies).

Quantised types are int8/uint8/int16/uint16/int32, the sub-byte ints int4/uint4/int2/uint2 and the
float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz) and float4 e2m1fn types (stored as bit patterns, converted by
emit/ops/cast.py). Scales and the float side are float32 or float64: float16/bfloat16 ones arrive widened
to float32 (emit/passes/widen.py). DequantizeLinear computes in float32 as ONNX's reference does;
QuantizeLinear divides a float16 x by its scale in float32 where the reference divides in float16: a
quotient within a float16 rounding of a .5 tie may land one step apart. Scales and zero points may
be run-time inputs; only their shapes must be static."""

from __future__ import annotations

import numpy as np

from ..ir import Buffer, c_type
from .cast import F8_KINDS, NARROW_INTS, decode, dtype_name, encode
from .common import broadcast_strides, index_expr, math_fn, normalize_axis
from .conv import geometry
from .gemm import matmul_dims
from .registry import Lowering
from .shape import op, prod

QRANGE: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
    "uint16": (0, 65535),
    "int32": (-(2**31), 2**31 - 1),
    "int4": (-8, 7),
    "uint4": (0, 15),
    "int2": (-2, 1),
    "uint2": (0, 3),
}
_QUANT_TYPES = "int8, uint8, int16, uint16, int32, int4, uint4, int2, uint2, float8 e4m3fn/e4m3fnuz/e5m2/e5m2fnuz, float4 e2m1fn"
_TENSOR_DTYPES = {1: "float32", 11: "float64"}  # precision attribute values we can honour


def _int_lit(v: int) -> str:
    return "INT32_MIN" if v == -(2**31) else str(v)


def saturate(ctx: Lowering, dtype, expr: str) -> str:
    """C expression: the double `expr` (already rounded) clamped to dtype's range; NaN gives the lowest
    value (what onnxruntime gives)."""
    name = np.dtype(dtype).name
    if name not in QRANGE:
        ctx.fail(f"quantised dtype {name} is not supported ({_QUANT_TYPES} are)")
    lo, hi = QRANGE[name]
    ct = "int32_t" if name in NARROW_INTS else c_type(dtype)
    clamped = f"(!({expr} > {float(lo)!r}) ? ({ct}){_int_lit(lo)} : {expr} >= {float(hi)!r} ? ({ct}){hi} : ({ct}){expr})"
    return encode(clamped, "int32", dtype) if name in NARROW_INTS else clamped


def _layout(ctx: Lowering, x: Buffer, scale: Buffer) -> tuple[int, int, int, str]:
    """(outer, axis length, inner, C index of the scale element) for a per-tensor, per-axis or blocked
    quantisation of x; the loop variables are o, a, i."""
    rank = len(x.shape)
    block = int(ctx.attr("block_size", 0) or 0)
    if scale.size == 1 and block == 0:
        return 1, 1, x.size, "0"
    if rank == 0:
        ctx.fail(f"scale of shape {scale.shape} for a scalar input")
    axis = normalize_axis(int(ctx.attr("axis", 1)), rank)
    if not 0 <= axis < rank:
        ctx.fail(f"axis {ctx.attr('axis', 1)} is out of range for rank {rank}")
    outer, n, inner = prod(x.shape[:axis]), x.shape[axis], prod(x.shape[axis + 1 :])
    if block <= 0:
        if len(scale.shape) != 1 or scale.shape[0] != n:
            ctx.fail(f"scale of shape {scale.shape} is neither a scalar nor one per element of axis {axis} ({n})")
        return outer, n, inner, "a"
    nb = -(-n // block)
    want = tuple(x.shape[:axis]) + (nb,) + tuple(x.shape[axis + 1 :])
    if tuple(scale.shape) != want:
        ctx.fail(f"blocked scale of shape {scale.shape} does not match input {x.shape} (block_size={block} on axis {axis}: {want})")
    return outer, n, inner, f"(o*{nb} + a/{block})*{inner} + i"


def _loops(outer: int, n: int, inner: int, body: str) -> str:
    heads = [f"for (size_t {v} = 0; {v} < {d}; ++{v}) " for v, d in (("o", outer), ("a", n), ("i", inner))]
    return "".join(heads) + "{\n" + f"const size_t p = (o*{n} + a)*{inner} + i;\n" + body + "\n}"


def _check_zero_point(ctx: Lowering, i: int, scale: Buffer, dtype) -> Buffer | None:
    if not ctx.has_input(i):
        return None
    z = ctx.input(i)
    if tuple(z.shape) != tuple(scale.shape) and not (z.size == 1 and scale.size == 1):
        ctx.fail(f"zero point of shape {z.shape} differs from the scale's {scale.shape}")
    if np.dtype(z.dtype) != np.dtype(dtype):
        ctx.fail(f"zero point dtype {np.dtype(z.dtype).name} differs from {np.dtype(dtype).name}")
    return z


def _element(ctx: Lowering, buf: Buffer, index: str) -> str:
    """C expression of element `index` of a quantised tensor: its value (a narrow type decoded)."""
    e = f"{ctx.ptr(buf)}[{index}]"
    name = dtype_name(buf.dtype)
    if name in NARROW_INTS or name in F8_KINDS:
        if name in F8_KINDS:
            ctx.kernel("narrow")
        return decode(e, buf.dtype)
    return e


@op("QuantizeLinear")
def lower_quantize_linear(ctx: Lowering) -> None:
    """Integers: y = saturate(rint(x / scale) + zero_point), rint rounding half to even. float8: y = x / scale
    converted with the saturate attribute (the zero point must be 0); float4: y = x / scale + zero_point,
    converted (saturating), as ONNX's reference computes them."""
    x, scale, y = ctx.input(0), ctx.input(1), ctx.output(0)
    if {x.dtype.name, scale.dtype.name} - {"float32", "float64"}:
        ctx.fail(f"x and scale must be float32 or float64 (got {x.dtype.name}, {scale.dtype.name})")
    z = _check_zero_point(ctx, 2, scale, y.dtype)
    name = dtype_name(y.dtype)
    if name not in QRANGE and name not in F8_KINDS:
        ctx.fail(f"quantised dtype {name} is not supported ({_QUANT_TYPES} are)")
    if y.size == 0:
        return
    outer, n, inner, sidx = _layout(ctx, x, scale)
    prec = ctx.attr("precision", 0) or 0
    if prec and prec not in _TENSOR_DTYPES:
        ctx.fail(f"precision={prec} is not supported (float32 or float64 are)")
    ct = c_type(_TENSOR_DTYPES[prec]) if prec else x.ctype
    ratio = f"({ct}){ctx.ptr(x)}[p] / ({ct}){ctx.ptr(scale)}[s]"
    if name in F8_KINDS:
        ctx.kernel("narrow")
        if name == "float4_e2m1fn" and z is not None:
            ratio = f"{ratio} + ({ct}){_element(ctx, z, 's')}"
        elif z is not None:
            ctx.emit(f"(void){ctx.ptr(z)};")  # a float8 zero point is 0 (ONNX's reference ignores it)
        value = f"const {ct} q = {ratio};\n"
        store = encode("q", _TENSOR_DTYPES[prec] if prec else x.dtype, y.dtype, bool(int(ctx.attr("saturate", 1))))
    else:
        rint = math_fn("rint", np.float32 if ct == "float" else np.float64)
        zp = f" + (double){_element(ctx, z, 's')}" if z is not None else ""
        value = f"const double q = (double){rint}({ratio}){zp};\n"
        store = saturate(ctx, y.dtype, "q")
    body = f"const size_t s = {sidx}; (void)s;\n{value}{ctx.ptr(y)}[p] = {store};"
    ctx.emit(_loops(outer, n, inner, body))


@op("DequantizeLinear")
def lower_dequantize_linear(ctx: Lowering) -> None:
    """y = (x - zero_point) * scale, the difference exact in int64, the product in the scale's dtype; a float8
    or float4 x is read as its value (its zero point is 0 for float8 and ignored for float4, as in ONNX's
    reference)."""
    x, scale, y = ctx.input(0), ctx.input(1), ctx.output(0)
    name = dtype_name(x.dtype)
    if name not in QRANGE and name not in F8_KINDS:
        ctx.fail(f"quantised dtype {name} is not supported ({_QUANT_TYPES} are)")
    if {scale.dtype.name, y.dtype.name} - {"float32", "float64"}:
        ctx.fail(f"scale and output must be float32 or float64 (got {scale.dtype.name}, {y.dtype.name})")
    z = _check_zero_point(ctx, 2, scale, x.dtype)
    if y.size == 0:
        return
    outer, n, inner, sidx = _layout(ctx, x, scale)
    xv = _element(ctx, x, "p")
    if name in F8_KINDS:
        if z is not None:
            ctx.emit(f"(void){ctx.ptr(z)};")
        diff = xv
    else:
        diff = f"(int64_t){xv} - (int64_t){_element(ctx, z, 's')}" if z is not None else xv
    body = (
        f"const size_t s = {sidx}; (void)s;\n"
        f"{ctx.ptr(y)}[p] = ({y.ctype})(({scale.ctype})({diff}) * {ctx.ptr(scale)}[s]);"
    )
    ctx.emit(_loops(outer, n, inner, body))


# ---------------------------------------------------------------- requantising layers


def _per(ctx: Lowering, i: int, sizes: dict[int, str], what: str) -> str:
    """C expression of element of input i: a scalar, or indexed by sizes[its size] (per row/column/channel)."""
    b = ctx.input(i)
    if b.size == 1:
        return f"{ctx.ptr(b)}[0]"
    if len(b.shape) == 1 and b.size in sizes:
        return f"{ctx.ptr(b)}[{sizes[b.size]}]"
    ctx.fail(f"{what} '{ctx.node.inputs[i]}' of shape {b.shape} is not supported (a scalar{' or ' + ' / '.join(str(s) for s in sizes) + ' elements' if sizes else ''})")


def _zp(ctx: Lowering, i: int, sizes: dict[int, str], what: str) -> str:
    return f"(int32_t){_per(ctx, i, sizes, what)}" if ctx.has_input(i) else "0"


def _requant(ctx: Lowering, y: Buffer, acc: str, mult: str, yzp: str, ft: str) -> str:
    """C statements storing saturate(rint(acc * mult + y_zero_point)) to `yv` (the multiplier in the
    scales' float type, the product in double as the reference computes it)."""
    rint = "nearbyint"
    return (
        f"const {ft} mult = {mult};\n"
        f"const double r = {rint}((double){acc} * (double)mult + (double)({yzp}));\n"
        f"yv = {saturate(ctx, y.dtype, 'r')};"
    )


def _check_q(ctx: Lowering, bufs: list[int], outs: Buffer) -> str:
    """The float C type of the scales (inputs `bufs`), checking quantised dtypes of the rest."""
    fts = {np.dtype(ctx.input(i).dtype).name for i in bufs}
    if len(fts) != 1 or not fts <= {"float32", "float64"}:
        ctx.fail(f"scales must all be float32 (or all float64); got {sorted(fts)}")
    if np.dtype(outs.dtype).name not in ("int8", "uint8"):
        ctx.fail(f"output dtype {outs.dtype.name} is not supported (int8 and uint8 are)")
    return c_type(fts.pop())


@op("QLinearMatMul")
def lower_qlinear_matmul(ctx: Lowering) -> None:
    """y = saturate(rint((a - a_zp) @ (b - b_zp) * a_scale * b_scale / y_scale + y_zp)); b's and y's scale and
    zero point per tensor or per output column."""
    a, b, y = ctx.input(0), ctx.input(3), ctx.output(0)
    for buf in (a, b):
        if np.dtype(buf.dtype).name not in ("int8", "uint8"):
            ctx.fail(f"dtype {buf.dtype.name} is not supported (int8 and uint8 are)")
    ft = _check_q(ctx, [1, 4, 6], y)
    ash, bsh, m, k, n, batch = matmul_dims(ctx, a, b)
    if y.size == 0:
        return
    col = {n: "j"}
    as_, bs, ys = _per(ctx, 1, {}, "a_scale"), _per(ctx, 4, col, "b_scale"), _per(ctx, 6, col, "y_scale")
    za, zb, zy = _zp(ctx, 2, {}, "a_zero_point"), _zp(ctx, 5, col, "b_zero_point"), _zp(ctx, 7, col, "y_zero_point")
    vars_ = [f"i{d}" for d in range(len(batch))]

    def off(buf: Buffer, sh, step: int) -> str:
        e = index_expr(vars_, [s * step for s in broadcast_strides(sh, batch)])
        return ctx.ptr(buf) if e == "0" else f"{ctx.ptr(buf)} + {e}"

    body = (
        f"const {a.ctype} *pa = {off(a, ash[:-2], m * k)};\nconst {b.ctype} *pb = {off(b, bsh[:-2], k * n)};\n"
        f"{y.ctype} *py = {off(y, batch, m * n)};\n"
        f"for (size_t i = 0; i < {m}; ++i) for (size_t j = 0; j < {n}; ++j) {{\n"
        # products fit int32; the sum wraps (unsigned) instead of being undefined behaviour
        "uint32_t acc = 0;\n"
        f"const int32_t zb = {zb};\n"
        f"for (size_t k = 0; k < {k}; ++k) acc += (uint32_t)(((int32_t)pa[i*{k} + k] - {za}) * ((int32_t)pb[k*{n} + j] - zb));\n"
        f"{y.ctype} yv;\n"
        + _requant(ctx, y, "(int32_t)acc", f"{as_} * {bs} / {ys}", zy, ft)
        + f"\npy[i*{n} + j] = yv;\n}}"
    )
    head = "".join(f"for (size_t {v} = 0; {v} < {d}; ++{v}) " for v, d in zip(vars_, batch))
    ctx.emit(head + "{\n" + body + "\n}")


class _ConvView:
    """QLinearConv seen as a Conv (x, w, B at inputs 0, 1, 2) so conv.geometry applies."""

    _MAP = {0: 0, 1: 3, 2: 8}

    def __init__(self, ctx: Lowering) -> None:
        self.ctx = ctx

    def input(self, i: int) -> Buffer:
        return self.ctx.input(self._MAP[i])

    def has_input(self, i: int) -> bool:
        return self.ctx.has_input(self._MAP[i])

    def output(self, i: int = 0) -> Buffer:
        return self.ctx.output(i)

    def attr(self, name: str, default=None):
        return self.ctx.attr(name, default)

    def fail(self, why: str):
        return self.ctx.fail(why)


@op("QLinearConv")
def lower_qlinear_conv(ctx: Lowering) -> None:
    """Direct loop: int32 sum of (x - x_zp)(w - w_zp) (padding contributes 0) + B, then requantised with
    x_scale * w_scale / y_scale; w's scale and zero point per tensor or per output channel."""
    x, w, y = ctx.input(0), ctx.input(3), ctx.output(0)
    for buf in (x, w):
        if np.dtype(buf.dtype).name not in ("int8", "uint8"):
            ctx.fail(f"dtype {buf.dtype.name} is not supported (int8 and uint8 are)")
    ft = _check_q(ctx, [1, 4, 6], y)
    g = geometry(_ConvView(ctx), transpose=False)  # type: ignore[arg-type]
    if y.size == 0:
        return
    per_m = {g.m: "m"}
    xs, ws, ys = _per(ctx, 1, {}, "x_scale"), _per(ctx, 4, per_m, "w_scale"), _per(ctx, 6, {}, "y_scale")
    zx, zw, zy = _zp(ctx, 2, {}, "x_zero_point"), _zp(ctx, 5, per_m, "w_zero_point"), _zp(ctx, 7, {}, "y_zero_point")
    bias = "0"
    if ctx.has_input(8):
        bb = ctx.input(8)
        if bb.size != g.m or np.dtype(bb.dtype).name != "int32":
            ctx.fail(f"B must be int32 with one element per output channel (got {bb.dtype.name} {bb.shape})")
        bias = f"(uint32_t){ctx.ptr(bb)}[m]"
    cg, mg = g.c // g.group, g.m // g.group
    (ID, IH, IW), (OD, OH, OW), (KD, KH, KW) = g.inp, g.out, g.k
    sd, sh, sw = g.stride
    dd, dh, dw = g.dil
    pd, ph, pw = g.pad
    lines = [
        f"for (size_t n = 0; n < {g.n}; ++n) for (size_t m = 0; m < {g.m}; ++m) {{",
        f"    const {x.ctype} *xg = {ctx.ptr(x)} + (n * {g.c} + m / {mg} * {cg}) * {ID * IH * IW};",
        f"    const {w.ctype} *wm = {ctx.ptr(w)} + m * {cg * g.kk};",
        f"    {y.ctype} *ym = {ctx.ptr(y)} + (n * {g.m} + m) * {OD * OH * OW};",
        f"    const int32_t zw = {zw};",
        f"    for (size_t od = 0; od < {OD}; ++od) for (size_t oh = 0; oh < {OH}; ++oh) for (size_t ow = 0; ow < {OW}; ++ow) {{",
        # the sum wraps (unsigned) instead of being undefined behaviour
        f"        uint32_t acc = {bias};",
        f"        for (size_t ci = 0; ci < {cg}; ++ci) for (size_t kd = 0; kd < {KD}; ++kd) {{",
        f"            const ptrdiff_t id = (ptrdiff_t)(od * {sd} + kd * {dd}) - {pd};",
        f"            if (id < 0 || id >= {ID}) continue;",
        f"            for (size_t kh = 0; kh < {KH}; ++kh) {{",
        f"                const ptrdiff_t ih = (ptrdiff_t)(oh * {sh} + kh * {dh}) - {ph};",
        f"                if (ih < 0 || ih >= {IH}) continue;",
        f"                const {x.ctype} *xr = xg + (ci * {ID} + (size_t)id) * {IH * IW} + (size_t)ih * {IW};",
        f"                const {w.ctype} *wr = wm + ((ci * {KD} + kd) * {KH} + kh) * {KW};",
        f"                for (size_t kw = 0; kw < {KW}; ++kw) {{",
        f"                    const ptrdiff_t iw = (ptrdiff_t)(ow * {sw} + kw * {dw}) - {pw};",
        f"                    if (iw < 0 || iw >= {IW}) continue;",
        f"                    acc += (uint32_t)(((int32_t)xr[iw] - {zx}) * ((int32_t)wr[kw] - zw));",
        "                }",
        "            }",
        "        }",
        f"        {y.ctype} yv;",
        "        {",
        _requant(ctx, y, "(int32_t)acc", f"{xs} * {ws} / {ys}", zy, ft),
        "        }",
        f"        ym[(od * {OH} + oh) * {OW} + ow] = yv;",
        "    }",
        "}",
    ]
    ctx.emit("\n".join(lines))
