"""Helpers every op family uses to write C: literals, math function names, loop nests, broadcasting."""

from __future__ import annotations

import math
from functools import cache

import jinja2
import numpy as np

from ..ir import Buffer

_ENV = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, undefined=jinja2.StrictUndefined)


@cache
def _template(text: str) -> jinja2.Template:
    return _ENV.from_string(text)


def render(text: str, **kw) -> str:
    """Render a small jinja2 template of C text."""
    return _template(text).render(**kw)


def is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def is_signed(dtype) -> bool:
    return np.dtype(dtype).kind == "i"


def literal(value, dtype) -> str:
    """A C literal of `value` converted to `dtype`, exact for floats (round-trip repr)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        v = float(np.asarray(value, dtype=dt))
        suffix = "f" if dt == np.float32 else ""
        if math.isnan(v):
            return "NAN" if dt == np.float32 else "((double)NAN)"
        if math.isinf(v):
            inf = "HUGE_VALF" if dt == np.float32 else "HUGE_VAL"
            return inf if v > 0 else f"(-{inf})"
        text = repr(float(np.float32(v))) if dt == np.float32 else repr(v)
        if "e" not in text and "." not in text:
            text += ".0"
        return text + suffix
    if dt == np.bool_:
        return "1" if bool(value) else "0"
    v = int(value)
    if dt == np.int64:
        return f"INT64_C({v})" if v != -(2**63) else "INT64_MIN"
    if dt == np.uint64:
        return f"UINT64_C({v})"
    if dt == np.int32 and v == -(2**31):
        return "INT32_MIN"
    if dt == np.uint32:
        return f"{v}u"
    return str(v)


def math_fn(name: str, dtype) -> str:
    """`expf` for float, `exp` for double."""
    return name + "f" if np.dtype(dtype) == np.float32 else name


def strides(shape: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def index_expr(vars_: list[str], strides_: list[int]) -> str:
    terms = [f"{v}*{s}" if s != 1 else v for v, s in zip(vars_, strides_) if s != 0]
    return " + ".join(terms) if terms else "0"


def broadcast_strides(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Strides of an input broadcast (numpy rules) to out_shape: 0 where it repeats."""
    pad = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    st = strides(pad)
    return [0 if d == 1 and o != 1 else s for d, o, s in zip(pad, out_shape, st)]


def loop_nest(shape: tuple[int, ...], body: str, var: str = "i") -> str:
    """Nested for loops over `shape` with index variables i0, i1, ...; body sees them."""
    if not shape:
        return "{\n" + body + "\n}"
    head = "".join(f"for (size_t {var}{k} = 0; {var}{k} < {d}; ++{var}{k}) " for k, d in enumerate(shape))
    return head + "{\n" + body + "\n}"


def collapse(out_shape: tuple[int, ...], in_strides: list[list[int]]) -> tuple[tuple[int, ...], list[list[int]]]:
    """Merge adjacent axes that every operand walks contiguously, so loops are as flat as possible."""
    shape = list(out_shape)
    sts = [list(s) for s in in_strides]
    k = len(shape) - 1
    while k > 0:
        inner = shape[k]
        if all(s[k - 1] == s[k] * inner for s in sts):
            shape[k - 1] *= inner
            del shape[k]
            for s in sts:
                del s[k - 1]
        k -= 1
    return tuple(shape), sts


def elementwise(out: Buffer, operands: list[tuple[str, Buffer]], expr: str, out_ptr: str) -> str:
    """Loop writing out_ptr[...] = expr, where {0}, {1}, ... in expr are the operands' elements
    (numpy broadcasting)."""
    shape = tuple(out.shape)
    if out.size == 0:
        return "/* empty */"
    sts = [broadcast_strides(b.shape, shape) for _, b in operands] + [strides(shape)]
    cshape, csts = collapse(shape, sts)
    vars_ = [f"i{k}" for k in range(len(cshape))]
    elems = [f"{p}[{index_expr(vars_, s)}]" for (p, _), s in zip(operands, csts[:-1])]
    body = f"{out_ptr}[{index_expr(vars_, csts[-1])}] = {expr.format(*elems)};"
    return loop_nest(cshape, body)


def normalize_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


SUM_LANES = 16  # partial sums: one AVX-512 vector, four 16-byte ones


def _lanes(ctype: str, n: int, var: str, first: str, start: int, update: str, combine: str) -> str:
    """SUM_LANES running partial results `part[l]` over var < n (n >= 2 * SUM_LANES): `first` sets them up (terms
    below `start` included), `update` (with {l} for the lane) takes term var into lane l, whole rows of lanes then
    the tail into lane 0, and `combine` ends it."""
    lanes, tail = SUM_LANES, n % SUM_LANES
    return "\n".join([
        "{",
        f"    {ctype} part[{lanes}]{first};",
        f"    for (size_t b_ = {start}; b_ < {n - tail}; b_ += {lanes})",
        f"        for (size_t l_ = 0; l_ < {lanes}; ++l_) {{ const size_t {var} = b_ + l_; {update.format(l='l_')} }}",
        f"    for (size_t {var} = {n - tail}; {var} < {n}; ++{var}) {{ {update.format(l='0')} }}",
        f"    {combine}",
        "}",
    ])


def sum_loop(acc: str, ctype: str, n: int, term: str, var: str = "j") -> str:
    """C adding `term` (an expression of `var`) for var < n into the existing variable `acc`. Long sums keep
    SUM_LANES independent partial sums, which the compiler holds in vector lanes: one running sum is a
    dependency chain it may not reorder without -ffast-math. (The order differs from a left-to-right sum, as any
    vectorised runtime's does.)"""
    if n < 2 * SUM_LANES:
        return f"for (size_t {var} = 0; {var} < {n}; ++{var}) {acc} += {term};"
    return _lanes(ctype, n, var, " = { 0 }", 0, f"part[{{l}}] += {term};",
                  f"for (size_t l_ = 0; l_ < {SUM_LANES}; ++l_) {acc} += part[l_];")


def max_loop(acc: str, ctype: str, n: int, term: str, var: str = "j") -> str:
    """C setting `acc` to the largest `term` for var < n (n >= 1), as `if (t > acc) acc = t` from the first term on.
    Long rows keep SUM_LANES running maxima, which the compiler holds in vector lanes (one running maximum is a chain
    of compares: a softmax's max pass took longer than its e^x). A NaN can then stay in a lane where the single chain
    would have passed over it; a softmax row with a NaN is NaN whatever its max."""
    # a select, not an if: the lanes' loop then vectorises
    take = f"const {ctype} t_ = {term}; {{dst}} = t_ > {{dst}} ? t_ : {{dst}};"
    if n < 2 * SUM_LANES:
        return f"{{ const size_t {var} = 0; {acc} = {term}; }}\n" \
               f"for (size_t {var} = 1; {var} < {n}; ++{var}) {{ {take.format(dst=acc)} }}"
    first = f"; for (size_t {var} = 0; {var} < {SUM_LANES}; ++{var}) part[{var}] = {term}"
    return _lanes(ctype, n, var, first, SUM_LANES, take.format(dst="part[{l}]"),
                  f"{acc} = part[0]; for (size_t l_ = 1; l_ < {SUM_LANES}; ++l_) if (part[l_] > {acc}) {acc} = part[l_];")
