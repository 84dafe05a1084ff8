"""Cast and CastLike between the IR dtypes (float32/64, int8..64, uint8..64, bool), without C undefined behaviour."""

from __future__ import annotations

import numpy as np

from ..ir import c_type
from .registry import Lowering, op

# float -> integer conversion is undefined in C when the value is out of range (and traps in wasm).
# We reproduce what onnxruntime and numpy give on x86-64 (checked value by value): conversion
# through a 32- or 64-bit signed integer where out-of-range and NaN inputs become the "integer
# indefinite" INT_MIN, then wrapping to the target width. int8/16/32 and uint8/16 go via int32,
# int64 via int64; uint32 and uint64 take values in [2**(n-1), 2**n) directly, values at or above
# 2**n give 0, everything below goes via int32 / int64.
_VIA_INT32 = {"int8", "int16", "int32", "uint8", "uint16"}


def _in_range(x: str, bits: int, suffix: str) -> str:
    lim = f"{float(2 ** (bits - 1))!r}{suffix}"
    return f"({x} >= -{lim} && {x} < {lim})"


def cast_expr(x: str, src: np.dtype | str, dst: np.dtype | str) -> str:
    """C expression converting `x` (a side-effect-free expression of dtype src) to dtype dst."""
    s, d = np.dtype(src), np.dtype(dst)
    if s == d:
        return x
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


@op("Cast", "CastLike")
def lower_cast(ctx: Lowering) -> None:
    from .elementwise import ew_loop

    x, y = ctx.input(0), ctx.output(0)
    if ctx.node.op_type == "CastLike" and ctx.has_input(1):
        ctx.emit(f"(void){ctx.ptr(ctx.input(1))};")  # only its dtype matters; keep C from warning it is unused
    ctx.emit(ew_loop(ctx, y, [(x, "x")], cast_expr("x", x.dtype, y.dtype)))
