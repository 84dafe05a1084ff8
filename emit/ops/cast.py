"""Cast and CastLike between every pair of IR dtypes: float32/64, int8..64, uint8..64, bool, and the narrow
types stored as bit patterns — float16, bfloat16, float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz, e8m0fnu),
float4 e2m1fn, int4/uint4, int2/uint2 — without C undefined behaviour.

A narrow value is read as float32 (narrow floats, exact) or int32 (narrow ints) and then converted as that
type is; a value is written to a narrow float by runtime_c/narrow.c (round to nearest even, as ONNX's
reference does) and to a narrow int by keeping its low bits (numpy's and ml_dtypes' wrap-around). Every
other op computes on narrow floats in float32 (emit/passes/widen.py puts Casts around it)."""

from __future__ import annotations

import numpy as np

from ..ir import c_type
from .registry import Lowering, op

# float -> integer conversion is undefined in C when the value is out of range (and traps in wasm).
# We reproduce what onnxruntime and numpy give on x86-64 (checked value by value): conversion
# through a 32- or 64-bit signed integer where out-of-range and NaN inputs become the "integer
# indefinite" INT_MIN, then wrapping to the target width. int8/16/32 and uint8/16 go via int32,
# int64 via int64; uint32 and uint64 take values in [2**(n-1), 2**n) directly, values at or above
# 2**n give 0, everything below goes via int32 / int64. The sub-byte ints go via int32 too (ml_dtypes).
_VIA_INT32 = {"int8", "int16", "int32", "uint8", "uint16"}

# narrow float dtype -> runtime_c/narrow.c kind of the float8/float4 coders (float16, bfloat16, e8m0 have their own)
F8_KINDS = {
    "float8_e4m3fn": "EK_F8_E4M3FN",
    "float8_e4m3fnuz": "EK_F8_E4M3FNUZ",
    "float8_e5m2": "EK_F8_E5M2",
    "float8_e5m2fnuz": "EK_F8_E5M2FNUZ",
    "float4_e2m1fn": "EK_F4_E2M1",
}
NARROW_FLOATS = {"float16", "bfloat16", "float8_e8m0fnu", *F8_KINDS}
# narrow int dtype -> (bits, signed); one element per byte, only the low bits count
NARROW_INTS = {"int4": (4, True), "uint4": (4, False), "int2": (2, True), "uint2": (2, False)}
_ROUND_MODES = {"up": "EK_ROUND_UP", "down": "EK_ROUND_DOWN", "nearest": "EK_ROUND_NEAREST"}


def dtype_name(dtype) -> str:
    return np.dtype(dtype).name


def is_narrow(dtype) -> bool:
    return dtype_name(dtype) in NARROW_FLOATS or dtype_name(dtype) in NARROW_INTS


def wide_dtype(dtype) -> str:
    """The standard dtype a narrow one is read as: float32 (floats, exactly) or int32 (ints)."""
    return "int32" if dtype_name(dtype) in NARROW_INTS else "float32"


def decode(x: str, dtype) -> str:
    """C expression of the value of the narrow element `x` as wide_dtype(dtype)."""
    name = dtype_name(dtype)
    if name in NARROW_INTS:
        bits, signed = NARROW_INTS[name]
        mask, top = (1 << bits) - 1, 1 << (bits - 1)
        return f"(((int32_t)(({x}) & {mask}) ^ {top}) - {top})" if signed else f"((int32_t)(({x}) & {mask}))"
    if name == "float16":
        return f"ek_f16_to_f32({x})"
    if name == "bfloat16":
        return f"ek_bf16_to_f32({x})"
    if name == "float8_e8m0fnu":
        return f"ek_e8m0_to_f32({x})"
    return f"ek_f8_to_f32({x}, {F8_KINDS[name]})"


def encode(x: str, src, dst, saturate: bool = True, round_mode: str = "up") -> str:
    """C expression writing `x` (a side-effect-free expression of the standard dtype src) as the narrow dtype dst."""
    s, d = np.dtype(src), dtype_name(dst)
    if d in NARROW_INTS:
        mask = (1 << NARROW_INTS[d][0]) - 1
        if s.kind == "f":
            # ml_dtypes (ONNX's reference): truncate toward zero; out of the type's range, NaN and inf give 0
            # (integer sources wrap, below)
            bits, signed = NARROW_INTS[d]
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            sfx = ".0f" if s == np.float32 else ".0"
            x = f"(({x}) > {lo - 1}{sfx} && ({x}) < {hi + 1}{sfx} ? (int32_t)({x}) : 0)"
        return f"((uint8_t)((uint32_t)({x}) & {mask}u))"
    # ml_dtypes (ONNX's reference for bfloat16, float8, float4) rounds a double to float32 first; numpy
    # rounds a double to float16 directly, which rounding the float32 "to odd" reproduces
    if s == np.float64:
        f = f"ek_f64_to_f32_odd({x})" if d == "float16" else f"((float)({x}))"
    elif s == np.float32:
        f = x
    elif s.itemsize >= 4:  # int32/64: exact in double up to 2**53 (int32 always)
        f = f"ek_f64_to_f32_odd((double)({x}))" if d == "float16" else f"((float)({x}))"
    else:  # bool, int8/16, uint8/16: exact in float32
        f = f"((float)({x}))"
    if d == "float16":
        return f"ek_f32_to_f16({f})"
    if d == "bfloat16":
        return f"ek_f32_to_bf16({f})"
    if d == "float8_e8m0fnu":
        if round_mode not in _ROUND_MODES:
            raise ValueError(f"round_mode '{round_mode}' is not one of {sorted(_ROUND_MODES)}")
        return f"ek_f32_to_e8m0({f}, {int(bool(saturate))}, {_ROUND_MODES[round_mode]})"
    return f"ek_f32_to_f8({f}, {F8_KINDS[d]}, {int(bool(saturate))})"


def _in_range(x: str, bits: int, suffix: str) -> str:
    lim = f"{float(2 ** (bits - 1))!r}{suffix}"
    return f"({x} >= -{lim} && {x} < {lim})"


def cast_expr(x: str, src: np.dtype | str, dst: np.dtype | str, saturate: bool = True, round_mode: str = "up") -> str:
    """C expression converting `x` (a side-effect-free expression of dtype src) to dtype dst. A narrow src
    is decoded in place (where x appears more than once, decode it into a local first, as lower_cast does)."""
    s, d = np.dtype(src), np.dtype(dst)
    if s == d:
        return x
    if is_narrow(s):
        x, s = decode(x, s), np.dtype(wide_dtype(s))
        if s == d:
            return x
    if is_narrow(d):
        return encode(x, s, d, saturate, round_mode)
    ct = c_type(d)
    if d == np.bool_:
        return f"({x} != 0)"
    if s.kind != "f" or d.kind == "f":
        # int/bool -> anything and float -> float: C conversions are defined (narrowing to a
        # signed int is implementation-defined: modulo on gcc, clang, emcc)
        return f"(({ct})({x}))"
    sfx = "f" if s == np.float32 else ""
    via32 = f"({_in_range(x, 32, sfx)} ? (int32_t)({x}) : INT32_MIN)"
    via64 = f"({_in_range(x, 64, sfx)} ? (int64_t)({x}) : INT64_MIN)"
    if d.name in _VIA_INT32:
        return f"(({ct}){via32})"
    if d == np.int64:
        return via64
    bits = d.itemsize * 8
    half, full = f"{float(2 ** (bits - 1))!r}{sfx}", f"{float(2**bits)!r}{sfx}"
    low = via32 if bits == 32 else via64
    return f"({x} >= {half} ? ({x} < {full} ? ({ct})({x}) : ({ct})0) : ({ct}){low})"


def uses_narrow_kernel(*dtypes) -> bool:
    """Whether converting between these dtypes calls runtime_c/narrow.c."""
    return any(dtype_name(d) in NARROW_FLOATS for d in dtypes)


# whole-tensor conversions (the ones widen.py inserts around float16/bfloat16 work): one kernel call
_ARRAY_FNS = {
    ("float16", "float32"): "ek_f16_to_f32_n",
    ("float32", "float16"): "ek_f32_to_f16_n",
    ("bfloat16", "float32"): "ek_bf16_to_f32_n",
    ("float32", "bfloat16"): "ek_f32_to_bf16_n",
}


@op("Cast", "CastLike")
def lower_cast(ctx: Lowering) -> None:
    from .elementwise import ew_loop

    x, y = ctx.input(0), ctx.output(0)
    if ctx.node.op_type == "CastLike" and ctx.has_input(1):
        ctx.emit(f"(void){ctx.ptr(ctx.input(1))};")  # only its dtype matters; keep C from warning it is unused
    saturate = bool(int(ctx.attr("saturate", 1)))
    round_mode = str(ctx.attr("round_mode", "up"))
    if dtype_name(y.dtype) == "float8_e8m0fnu" and round_mode not in _ROUND_MODES:
        ctx.fail(f"round_mode '{round_mode}' is not one of {', '.join(sorted(_ROUND_MODES))}")
    if uses_narrow_kernel(x.dtype, y.dtype):
        ctx.kernel("narrow")
    fn = _ARRAY_FNS.get((dtype_name(x.dtype), dtype_name(y.dtype)))
    if fn and tuple(x.shape) == tuple(y.shape):
        ctx.emit(f"{fn}({ctx.ptr(x)}, {ctx.ptr(y)}, {y.size});" if y.size else "/* empty */")
        return
    pre, var, src = "", "x", x.dtype
    if is_narrow(x.dtype) and dtype_name(x.dtype) != dtype_name(y.dtype):
        src = np.dtype(wide_dtype(x.dtype))
        pre, var = f"const {c_type(src)} v = {decode('x', x.dtype)};", "v"
    ctx.emit(ew_loop(ctx, y, [(x, "x")], cast_expr(var, src, y.dtype, saturate, round_mode), pre=pre))
