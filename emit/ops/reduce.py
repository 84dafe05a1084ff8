"""Reductions: ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare, and Einsum.

A reduction is one loop nest: outer loops over the kept axes (in order, so the output is written
contiguously), inner loops over the reduced axes. Adjacent axes of the same kind are merged."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..ir import Buffer, c_type
from .common import index_expr, is_float, literal, math_fn, normalize_axis, strides
from .registry import Lowering, op
from .shape import SHAPE_ERROR


def axis_groups(shape: tuple[int, ...], reduced: set[int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(size, stride) loops of the kept and of the reduced axes of a contiguous tensor; size-1 axes
    are dropped and neighbours of the same kind merged."""
    st = strides(shape)
    kept: list[tuple[int, int]] = []
    red: list[tuple[int, int]] = []
    prev: bool | None = None
    for ax, d in enumerate(shape):
        if d == 1:
            continue
        is_red = ax in reduced
        target = red if is_red else kept
        if prev == is_red and target and target[-1][1] == st[ax] * d:
            target[-1] = (target[-1][0] * d, st[ax])
        else:
            target.append((d, st[ax]))
        prev = is_red
    return kept, red


def loops(groups: list[tuple[int, int]], var: str) -> tuple[str, str]:
    """`for` headers over the groups and the offset expression they walk."""
    head = "".join(f"for (size_t {var}{k} = 0; {var}{k} < {d}; ++{var}{k}) " for k, (d, _) in enumerate(groups))
    offset = index_expr([f"{var}{k}" for k in range(len(groups))], [s for _, s in groups])
    return head, offset


@dataclass
class Spec:
    """How one reduction accumulates: C type of the accumulator, its start value, the statement
    folding element `v` into `acc`, and the result expression (sees `acc`)."""

    acc: str
    init: str
    update: str
    result: str
    empty: float | int | bool  # result of a reduction over no element


def _int_limits(dt: np.dtype) -> tuple[int, int]:
    if dt == np.bool_:
        return 0, 1
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


def reduce_spec(kind: str, dt: np.dtype, n: int) -> Spec:
    """The accumulation of reduction `kind` for element dtype dt over n elements."""
    t = c_type(dt)
    if is_float(dt):
        sqrt, log, fabs = math_fn("sqrt", dt), math_fn("log", dt), math_fn("fabs", dt)
        zero, one = literal(0, dt), literal(1, dt)
        return {
            "Sum": Spec(t, zero, "acc += v;", "acc", 0),
            "Mean": Spec(t, zero, "acc += v;", f"acc / {literal(max(n, 1), dt)}", float("nan")),
            "Max": Spec(t, literal(-np.inf, dt), "if (v > acc || v != v) acc = v;", "acc", -np.inf),
            "Min": Spec(t, literal(np.inf, dt), "if (v < acc || v != v) acc = v;", "acc", np.inf),
            "Prod": Spec(t, one, "acc *= v;", "acc", 1),
            "L1": Spec(t, zero, f"acc += {fabs}(v);", "acc", 0),
            "L2": Spec(t, zero, "acc += v * v;", f"{sqrt}(acc)", 0),
            "LogSum": Spec(t, zero, "acc += v;", f"{log}(acc)", -np.inf),
            "SumSquare": Spec(t, zero, "acc += v * v;", "acc", 0),
            "LogSumExp": Spec(t, zero, f"acc += {math_fn('exp', dt)}(v - mx);", f"{log}(acc) + mx", -np.inf),
        }[kind]
    lo, hi = _int_limits(dt)
    signed = dt.kind == "i"
    if kind in ("Max", "Min"):
        init = literal(lo if kind == "Max" else hi, dt)
        cmp = ">" if kind == "Max" else "<"
        return Spec(t, init, f"if (v {cmp} acc) acc = v;", "acc", lo if kind == "Max" else hi)
    if dt == np.bool_:
        raise ValueError("bool")
    # integer sums and products wrap like numpy's: accumulate modulo 2^64, then narrow
    absval = "(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v)" if signed else "(uint64_t)v"
    wide = "int64_t" if signed else "uint64_t"
    specs = {
        "Sum": Spec("uint64_t", "0", "acc += (uint64_t)v;", f"({t})acc", 0),
        "Mean": Spec("uint64_t", "0", "acc += (uint64_t)v;", f"({t})(({wide})({t})acc / {max(n, 1)})", 0),
        "Prod": Spec("uint64_t", "1", "acc *= (uint64_t)v;", f"({t})acc", 1),
        "L1": Spec("uint64_t", "0", f"acc += {absval};", f"({t})acc", 0),
        "SumSquare": Spec("uint64_t", "0", "acc += (uint64_t)v * (uint64_t)v;", f"({t})acc", 0),
        # the rest goes through double, as the float definition does
        "L2": Spec("double", "0.0", "acc += (double)v * (double)v;", f"({t})sqrt(acc)", 0),
        "LogSum": Spec("double", "0.0", "acc += (double)v;", f"({t})log(acc)", lo),
        "LogSumExp": Spec("double", "0.0", "acc += exp((double)v - mx);", f"({t})(log(acc) + mx)", lo),
    }
    return specs[kind]


def reduction_code(x: Buffer, y: Buffer, xp: str, yp: str, reduced: set[int], spec: Spec, two_pass_max: bool = False) -> str:
    """C text computing y from x by `spec` over the `reduced` axes of x (y holds the kept axes in order)."""
    if y.size == 0:
        return "/* empty */"
    if x.size == 0:
        val = literal(spec.empty, y.dtype)
        return f"for (size_t i = 0; i < {y.size}; ++i) {yp}[i] = {val};"
    kept, red = axis_groups(tuple(x.shape), reduced)
    khead, koff = loops(kept, "k")
    rhead, roff = loops(red, "r")
    t = x.ctype
    lines = ["size_t o = 0;", f"{khead}{{", f"    const {t} *xp = {xp} + {koff};", f"    {spec.acc} acc = {spec.init};"]
    if two_pass_max:
        # log-sum-exp: shift by the largest finite element so exp cannot overflow
        mt = spec.acc
        lines += [
            f"    {mt} mx = {literal(-np.inf, np.float64 if mt == 'double' else x.dtype)};",
            f"    {rhead}{{ const {mt} v = ({mt})xp[{roff}]; if (isfinite(v) && v > mx) mx = v; }}",
            "    if (!isfinite(mx)) mx = 0;",
        ]
    lines += [
        f"    {rhead}{{ const {t} v = xp[{roff}]; {spec.update} }}",
        f"    {yp}[o++] = {spec.result};",
        "}",
    ]
    return "\n".join(lines)


_REDUCE_KINDS = {
    "ReduceSum": "Sum",
    "ReduceMean": "Mean",
    "ReduceMax": "Max",
    "ReduceMin": "Min",
    "ReduceProd": "Prod",
    "ReduceL1": "L1",
    "ReduceL2": "L2",
    "ReduceLogSum": "LogSum",
    "ReduceLogSumExp": "LogSumExp",
    "ReduceSumSquare": "SumSquare",
}


def reduced_axes(ctx: Lowering, rank: int) -> list[set[int]]:
    """The axes a Reduce* node reduces: attribute (old opsets) or constant input 1 (ReduceSum 13+,
    the others 18+); absent or empty means all axes, or none with noop_with_empty_axes.
    A run-time axes input gives the candidates its static shapes allow (see _axes_from_shapes)."""
    if "axes" not in ctx.node.attrs and ctx.has_input(1) and ctx.const(1) is None:
        return _axes_from_shapes(ctx)
    axes = ctx.attr_or_const("axes", 1)
    if axes is None or len(np.atleast_1d(np.asarray(axes))) == 0:
        return [set() if ctx.attr("noop_with_empty_axes", 0) else set(range(rank))]
    out = set()
    for a in np.atleast_1d(np.asarray(axes)).tolist():
        if not -rank <= a < max(rank, 1):
            ctx.fail(f"axis {a} is out of range for rank {rank}")
        out.add(normalize_axis(int(a), rank))
    return [out]


def _axes_from_shapes(ctx: Lowering) -> list[set[int]]:
    """Axes sets a run-time axes input can hold, given the static input and output shapes, up to
    axes of size 1 (reducing those or not gives the same result). With keepdims there is one; without,
    (3, 2, 2) -> (3, 2) may reduce axis 1 or 2, and the generated code picks at run time."""
    xs, ys = tuple(ctx.input(0).shape), tuple(ctx.output(0).shape)
    rank = len(xs)
    if ctx.input(1).size == 0:  # known empty: all axes, or none
        return [set() if ctx.attr("noop_with_empty_axes", 0) else set(range(rank))]
    why = f"input '{ctx.node.inputs[1]}' (axes) is computed at run time and does not fit the shapes {xs} -> {ys}"
    if ctx.attr("keepdims", 1):
        if len(ys) != rank or any(y not in (1, x) for x, y in zip(xs, ys)):
            ctx.fail(why)
        return [{a for a in range(rank) if ys[a] == 1 and xs[a] != 1}]
    found: dict[frozenset[int], set[int]] = {}
    for red in combinations(range(rank), rank - len(ys)) if len(ys) <= rank else []:
        if tuple(d for a, d in enumerate(xs) if a not in red) == ys:
            found.setdefault(frozenset(a for a in red if xs[a] != 1), set(red))
    if not found or rank > 63:
        ctx.fail(why)
    return list(found.values())


def _axes_mask_code(ctx: Lowering, rank: int) -> str:
    """C computing `mask`, the bit set of the run-time axes (normalised, size-1 axes cleared)."""
    ax = ctx.input(1)
    ones = sum(1 << a for a, d in enumerate(ctx.input(0).shape) if d == 1)
    return (
        "uint64_t mask = 0;\n"
        f"for (size_t k = 0; k < {ax.size}; ++k) {{\n"
        f"    int64_t a = (int64_t){ctx.ptr(ax)}[k];\n"
        f"    if (a < 0) a += {rank};\n"
        f"    if (a < 0 || a >= {rank}) {SHAPE_ERROR}\n"
        "    mask |= (uint64_t)1 << a;\n"
        "}" + (f"\nmask &= ~UINT64_C({ones});" if ones else "")
    )


@op(*_REDUCE_KINDS)
def lower_reduce(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    kind = _REDUCE_KINDS[ctx.node.op_type]
    rank = len(x.shape)
    keep = ctx.attr("keepdims", 1)
    codes = []
    for red in reduced_axes(ctx, rank):
        want = tuple(1 if a in red else d for a, d in enumerate(x.shape)) if keep else tuple(d for a, d in enumerate(x.shape) if a not in red)
        if tuple(y.shape) != want:
            ctx.fail(f"output shape {tuple(y.shape)} does not match the reduction of {tuple(x.shape)} (expected {want})")
        n = int(np.prod([x.shape[a] for a in red], dtype=np.int64)) if red else 1
        try:
            spec = reduce_spec(kind, np.dtype(x.dtype), n)
        except (KeyError, ValueError):
            ctx.fail(f"{ctx.node.op_type} of dtype {np.dtype(x.dtype).name} is not supported")
        code = reduction_code(x, y, ctx.ptr(x), ctx.ptr(y), red, spec, two_pass_max=kind == "LogSumExp")
        codes.append((sum(1 << a for a in red if x.shape[a] != 1), code))
    if not _runtime_axes(ctx):
        ctx.emit(codes[0][1])
        return
    # run-time axes: the static shapes allow one or more axes sets; the C picks the one the axes name
    # and returns 1 when they name none (the compiled output shape would be wrong)
    parts = [_axes_mask_code(ctx, rank)]
    for k, (mask, code) in enumerate(codes):
        parts += [f"{'} else ' if k else ''}if (mask == UINT64_C({mask})) {{", "    " + code.replace("\n", "\n    ")]
    parts += ["} else {", f"    {SHAPE_ERROR}", "}"]
    ctx.emit("\n".join(parts))


def _runtime_axes(ctx: Lowering) -> bool:
    return "axes" not in ctx.node.attrs and ctx.has_input(1) and ctx.const(1) is None and ctx.input(1).size > 0


# ---------------------------------------------------------------- Einsum


def _parse_einsum(ctx: Lowering, equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Operand terms and output term with '...' replaced by placeholder letters."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        ctx.fail(f"equation '{equation}' names {len(terms)} operands, the node has {len(ranks)}")
    n_ell = 0
    for term, r in zip(terms, ranks):
        if "..." in term:
            n_ell = max(n_ell, r - (len(term) - 3))
    ell = [chr(0x100 + k) for k in range(n_ell)]  # letters no equation uses
    out_terms = []
    for term, r in zip(terms, ranks):
        if "..." in term:
            e = r - (len(term) - 3)
            term = term.replace("...", "".join(ell[n_ell - e :]))
        if len(term) != r or not all(c.isalpha() or ord(c) >= 0x100 for c in term):
            ctx.fail(f"equation '{equation}': term '{term}' does not match an operand of rank {r}")
        out_terms.append(term)
    if arrow:
        out = rhs.replace("...", "".join(ell))
    else:
        counts: dict[str, int] = {}
        for term in out_terms:
            for c in term:
                counts[c] = counts.get(c, 0) + 1
        out = "".join(ell) + "".join(sorted(c for c, k in counts.items() if k == 1 and ord(c) < 0x100))
    if len(set(out)) != len(out) or not all(c.isalpha() or ord(c) >= 0x100 for c in out):
        ctx.fail(f"equation '{equation}': bad output term")
    return out_terms, out


@op("Einsum")
def lower_einsum(ctx: Lowering) -> None:
    ins = [ctx.input(i) for i in range(ctx.n_inputs)]
    y = ctx.output(0)
    dt = np.dtype(y.dtype)
    if dt == np.bool_:
        ctx.fail("Einsum of bool is not supported")
    terms, out = _parse_einsum(ctx, str(ctx.attr("equation", "")), [len(b.shape) for b in ins])
    sizes: dict[str, int] = {}
    for term, b in zip(terms, ins):
        for c, d in zip(term, b.shape):
            if sizes.get(c, 1) not in (1, d) and d != 1:
                ctx.fail(f"label '{c}' has sizes {sizes[c]} and {d}")
            sizes[c] = max(sizes.get(c, 1), d) if d != 0 else 0
    for c in out:
        if c not in sizes:
            ctx.fail(f"output label '{c}' is not in any operand")
    if tuple(sizes[c] for c in out) != tuple(y.shape):
        ctx.fail(f"output shape {tuple(y.shape)} does not match the equation (expected {tuple(sizes[c] for c in out)})")
    if y.size == 0:
        return
    contracted = [c for c in dict.fromkeys("".join(terms)) if c not in out]
    t = y.ctype
    if any(sizes[c] == 0 for c in contracted):
        ctx.emit(f"for (size_t i = 0; i < {y.size}; ++i) {ctx.ptr(y)}[i] = 0;")
        return
    var = {c: f"e{k}" for k, c in enumerate(list(out) + contracted)}

    def head(letters: list[str]) -> str:
        return "".join(f"for (size_t {var[c]} = 0; {var[c]} < {sizes[c]}; ++{var[c]}) " for c in letters if sizes[c] != 1)

    elems = []
    for term, b in zip(terms, ins):
        st = strides(tuple(b.shape))
        coef: dict[str, int] = {}
        for c, s, d in zip(term, st, b.shape):
            if d != 1:  # size-1 dims broadcast (and a diagonal adds the strides of its repeats)
                coef[c] = coef.get(c, 0) + s
        idx = index_expr([var[c] for c in coef if sizes[c] != 1], [coef[c] for c in coef if sizes[c] != 1])
        elems.append(f"{ctx.ptr(b)}[{idx}]")
    if is_float(dt):
        acc, prod = t, " * ".join(elems)
    else:
        acc, prod = "uint64_t", " * ".join(f"(uint64_t){e}" for e in elems)  # wraps like numpy
    ctx.emit(
        "\n".join(
            [
                "size_t o = 0;",
                f"{head(list(out))}{{",
                f"    {acc} acc = 0;",
                f"    {head(contracted)}{{ acc += {prod}; }}",
                f"    {ctx.ptr(y)}[o++] = ({t})acc;",
                "}",
            ]
        )
    )
