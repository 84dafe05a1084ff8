"""Indexing with run-time indices: Gather, GatherElements, GatherND, Scatter/ScatterElements/ScatterND,
OneHot, Compress, ReverseSequence; scans along an axis: CumSum, TopK, ArgMax/ArgMin; and the ops whose
output shape depends on data (Compress, NonZero, Unique), which work at run time when the output's
static shape is declared (the C counts and checks).

A run-time index outside its axis, or a runtime value (K, depth, condition) that disagrees with the
static output shape, makes <prefix>_run return 1 (we never read or write out of bounds)."""

from __future__ import annotations

import numpy as np

from ..ir import Buffer
from .common import is_float, normalize_axis, strides
from .registry import Lowering
from .shape import INDEX_ERROR, SHAPE_ERROR, affine, check_values, is_runtime, loops, op, prod


def _split(shape, axis: int) -> tuple[int, int, int]:
    """(outer, axis length, inner) of a shape around one axis."""
    return prod(shape[:axis]), shape[axis], prod(shape[axis + 1 :])


def _index_dtype_ok(ctx: Lowering, buf: Buffer, what: str) -> None:
    if buf.dtype.kind not in "iu":
        ctx.fail(f"{what} must be an integer tensor, got {buf.dtype.name}")


def read_index(var: str, expr: str, dim: int) -> str:
    """Declare int64_t `var` = the index at expr, negative counted from the end, checked against dim."""
    return f"int64_t {var} = (int64_t){expr};\nif ({var} < 0) {var} += {dim};\nif ({var} < 0 || {var} >= {dim}) {INDEX_ERROR}"


def copy_elems(dst: str, src: str, n: int, itemsize: int) -> str:
    """n elements from src to dst (pointer expressions)."""
    return f"*({dst}) = *({src});" if n == 1 else f"memcpy({dst}, {src}, {n * itemsize});"


# ---------------------------------------------------------------- gathers


@op("Gather")
def lower_gather(ctx: Lowering) -> None:
    x, ind, y = ctx.input(0), ctx.input(1), ctx.output(0)
    _index_dtype_ok(ctx, ind, "indices")
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(x.shape))
    outer, n, inner = _split(x.shape, axis)
    m = ind.size
    if y.size == 0:
        return
    body = (
        read_index("ix", f"{ctx.ptr(ind)}[j]", n)
        + "\n"
        + copy_elems(f"{ctx.ptr(y)} + (o*{m} + j)*{inner}", f"{ctx.ptr(x)} + (o*{n} + (size_t)ix)*{inner}", inner, y.dtype.itemsize)
    )
    ctx.emit(f"for (size_t o = 0; o < {outer}; ++o) for (size_t j = 0; j < {m}; ++j) {{\n{body}\n}}")


def _along_axis(ind_shape: tuple[int, ...], data_shape: tuple[int, ...], axis: int) -> tuple[str, str, int]:
    """Addressing of the *Elements ops, looping i0.. over the indices: the position in the indices
    (and updates/output), the data offset of every axis but `axis`, and the data stride along `axis`."""
    ds = strides(data_shape)
    vars_ = [f"i{k}" for k in range(len(data_shape))]
    pos = affine(vars_, strides(ind_shape))
    base = affine([v for k, v in enumerate(vars_) if k != axis], [st for k, st in enumerate(ds) if k != axis])
    return pos, base, ds[axis]


@op("GatherElements")
def lower_gather_elements(ctx: Lowering) -> None:
    x, ind, y = ctx.input(0), ctx.input(1), ctx.output(0)
    _index_dtype_ok(ctx, ind, "indices")
    rank = len(x.shape)
    axis = normalize_axis(int(ctx.attr("axis", 0)), rank)
    if y.size == 0:
        return
    pos, base, step = _along_axis(ind.shape, x.shape, axis)
    body = read_index("ix", f"{ctx.ptr(ind)}[{pos}]", x.shape[axis]) + f"\n{ctx.ptr(y)}[{pos}] = {ctx.ptr(x)}[{base} + (size_t)ix*{step}];"
    ctx.emit(loops(ind.shape, body))


def _nd_offset(ctx: Lowering, x: Buffer, tuple_ptr: str, first_axis: int, k: int) -> str:
    """C statements adding to `off` the offset of the index tuple at tuple_ptr (axes first_axis..+k)."""
    xs = strides(x.shape)
    lines = []
    for j in range(k):
        lines.append("{\n" + read_index("ix", f"{tuple_ptr}[{j}]", x.shape[first_axis + j]) + f"\noff += (size_t)ix*{xs[first_axis + j]};\n}}")
    return "\n".join(lines)


@op("GatherND")
def lower_gather_nd(ctx: Lowering) -> None:
    x, ind, y = ctx.input(0), ctx.input(1), ctx.output(0)
    _index_dtype_ok(ctx, ind, "indices")
    b = int(ctx.attr("batch_dims", 0))
    k = ind.shape[-1]
    if b + k > len(x.shape):
        ctx.fail(f"index tuples of length {k} after {b} batch dims exceed the data rank {len(x.shape)}")
    batches = prod(x.shape[:b])
    per_batch = prod(ind.shape[b:-1])
    piece = prod(x.shape[b + k :])
    if y.size == 0:
        return
    body = (
        f"const {ind.ctype} *t = {ctx.ptr(ind)} + (bb*{per_batch} + m)*{k};\n"
        f"size_t off = bb*{prod(x.shape[b:])};\n"
        f"{_nd_offset(ctx, x, 't', b, k)}\n"
        f"{'(void)t;' if k == 0 else ''}\n"
        + copy_elems(f"{ctx.ptr(y)} + (bb*{per_batch} + m)*{piece}", f"{ctx.ptr(x)} + off", piece, y.dtype.itemsize)
    )
    ctx.emit(f"for (size_t bb = 0; bb < {batches}; ++bb) for (size_t m = 0; m < {per_batch}; ++m) {{\n{body}\n}}")


# ---------------------------------------------------------------- scatters


def _combine(reduction: str, dst: str, src: str, dtype, nan_propagates: bool) -> str:
    """dst = reduction(dst, src) as a C statement."""
    if reduction in ("none", "", None):
        return f"{dst} = {src};"
    if reduction == "add":
        return f"{dst} = {dst} || {src};" if dtype == np.bool_ else f"{dst} += {src};"
    if reduction == "mul":
        return f"{dst} = {dst} && {src};" if dtype == np.bool_ else f"{dst} *= {src};"
    if reduction in ("max", "min"):
        cmp = ">" if reduction == "max" else "<"
        if nan_propagates and is_float(dtype):
            return f"if ({src} {cmp} {dst} || {src} != {src}) {dst} = {src};"
        return f"if ({src} {cmp} {dst}) {dst} = {src};"
    raise ValueError(reduction)


def _copy_input(ctx: Lowering, x: Buffer, y: Buffer) -> None:
    if y.nbytes:
        ctx.emit(f"memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, {y.nbytes});")


@op("ScatterElements", "Scatter")
def lower_scatter_elements(ctx: Lowering) -> None:
    x, ind, upd, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
    _index_dtype_ok(ctx, ind, "indices")
    reduction = ctx.attr("reduction", "none")
    if reduction not in ("none", "add", "mul", "max", "min"):
        ctx.fail(f"reduction '{reduction}' is not supported")
    rank = len(x.shape)
    axis = normalize_axis(int(ctx.attr("axis", 0)), rank)
    _copy_input(ctx, x, y)
    if ind.size == 0:
        return
    pos, base, step = _along_axis(ind.shape, y.shape, axis)
    dst = f"{ctx.ptr(y)}[{base} + (size_t)ix*{step}]"
    body = read_index("ix", f"{ctx.ptr(ind)}[{pos}]", x.shape[axis]) + "\n" + _combine(reduction, dst, f"{ctx.ptr(upd)}[{pos}]", y.dtype, False)
    ctx.emit(loops(ind.shape, body))


@op("ScatterND")
def lower_scatter_nd(ctx: Lowering) -> None:
    x, ind, upd, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
    _index_dtype_ok(ctx, ind, "indices")
    reduction = ctx.attr("reduction", "none")
    if reduction not in ("none", "add", "mul", "max", "min"):
        ctx.fail(f"reduction '{reduction}' is not supported")
    k = ind.shape[-1]
    if k > len(x.shape):
        ctx.fail(f"index tuples of length {k} exceed the data rank {len(x.shape)}")
    _copy_input(ctx, x, y)
    count, piece = prod(ind.shape[:-1]), prod(x.shape[k:])
    if count == 0 or piece == 0:
        return
    head = f"const {ind.ctype} *t = {ctx.ptr(ind)} + m*{k};\nsize_t off = 0;\n{_nd_offset(ctx, y, 't', 0, k)}\n{'(void)t;' if k == 0 else ''}\n"
    if reduction == "none":
        body = copy_elems(f"{ctx.ptr(y)} + off", f"{ctx.ptr(upd)} + m*{piece}", piece, y.dtype.itemsize)
    else:
        inner = _combine(reduction, f"{ctx.ptr(y)}[off + e]", f"{ctx.ptr(upd)}[m*{piece} + e]", y.dtype, True)
        body = f"for (size_t e = 0; e < {piece}; ++e) {{ {inner} }}"
    ctx.emit(f"for (size_t m = 0; m < {count}; ++m) {{\n{head}{body}\n}}")


# ---------------------------------------------------------------- others with run-time indices


def _check_depth(ctx: Lowering, depth: int) -> None:
    """OneHot's depth input must give the static output's size on the axis. A float depth may be
    truncated (onnxruntime) or rounded up (numpy's arange, the reference): either agrees."""
    v = ctx.const(1)
    if v is not None:
        d = float(np.asarray(v).reshape(-1)[0])
        if depth not in (int(np.trunc(d)), int(np.ceil(d))):
            ctx.fail(f"depth {d:g} does not give the static output's {depth} classes")
        return
    buf = ctx.input(1)
    if buf.size != 1:
        ctx.fail("depth must hold one value")
    p = f"{ctx.ptr(buf)}[0]"
    if is_float(buf.dtype):
        ok = f"(double){p} > {depth - 1}.0 && (double){p} < {depth + 1}.0"
    else:
        ok = f"(int64_t){p} == {depth}"
    ctx.emit(f"if (!({ok})) {SHAPE_ERROR}")


@op("OneHot")
def lower_one_hot(ctx: Lowering) -> None:
    ind, vals, y = ctx.input(0), ctx.input(2), ctx.output(0)
    axis = normalize_axis(int(ctx.attr("axis", -1)), len(y.shape))
    outer, depth, inner = _split(y.shape, axis)  # the output shape carries depth
    _check_depth(ctx, depth)
    if y.size == 0:
        return
    body = (
        f"int64_t ix = (int64_t){ctx.ptr(ind)}[o*{inner} + i];\n"
        f"if (ix < 0) ix += {depth};\n"
        f"{ctx.ptr(y)}[(o*{depth} + d)*{inner} + i] = ix == (int64_t)d ? on : off;"
    )
    ctx.emit(
        f"const {y.ctype} off = {ctx.ptr(vals)}[0], on = {ctx.ptr(vals)}[1];\n"
        f"for (size_t o = 0; o < {outer}; ++o) for (size_t d = 0; d < {depth}; ++d) for (size_t i = 0; i < {inner}; ++i) {{\n{body}\n}}"
    )


def _small_uint_table(name: str, values) -> str:
    vals = [int(v) for v in values]
    ctype = "uint16_t" if max(vals, default=0) < 1 << 16 else "uint32_t"
    return f"static const {ctype} {name}[{len(vals)}] = {{ {', '.join(map(str, vals))} }};"


@op("Compress")
def lower_compress(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    axis = ctx.attr("axis")
    if axis is None:
        outer, n, inner = 1, x.size, 1
    else:
        outer, n, inner = _split(x.shape, normalize_axis(int(axis), len(x.shape)))
    if is_runtime(ctx, 1):
        _compress_runtime(ctx, x, y, outer, n, inner, axis)
        return
    cond = ctx.const_required(1, "condition").reshape(-1).astype(bool)
    if cond[n:].any():
        ctx.fail(f"condition selects past the end of the axis ({n})")
    sel = np.nonzero(cond[:n])[0]
    if outer * len(sel) * inner != y.size:
        ctx.fail(f"condition selects {len(sel)} of {n}, which does not give the inferred shape {y.shape}")
    if y.size == 0:
        return
    body = copy_elems(f"{ctx.ptr(y)} + (o*{len(sel)} + j)*{inner}", f"{ctx.ptr(x)} + (o*{n} + sel[j])*{inner}", inner, y.dtype.itemsize)
    ctx.emit(_small_uint_table("sel", sel) + f"\nfor (size_t o = 0; o < {outer}; ++o) for (size_t j = 0; j < {len(sel)}; ++j) {{\n{body}\n}}")


def _compress_runtime(ctx: Lowering, x: Buffer, y: Buffer, outer: int, n: int, inner: int, axis) -> None:
    """Compress with a runtime condition: the C counts the selected entries, checks the count against the
    static output, then copies them in order."""
    cond = ctx.input(1)
    if len(cond.shape) != 1:
        ctx.fail("condition must be 1-D")
    m = y.size if axis is None else y.shape[normalize_axis(int(axis), len(x.shape))]
    if outer * m * inner != y.size:
        ctx.fail(f"output shape {y.shape} does not fit input {x.shape}")
    c, length = ctx.ptr(cond), cond.size
    # a selected entry past the end of the axis is an error (numpy's compress raises)
    code = (
        f"size_t cnt = 0;\nfor (size_t j = 0; j < {length}; ++j) if ({c}[j]) {{ if (j >= {n}) {SHAPE_ERROR} ++cnt; }}\n"
        if length
        else "const size_t cnt = 0;\n"
    )
    code += f"if (cnt != {m}) {SHAPE_ERROR}"
    use = min(length, n)
    if y.size and use:
        copy = copy_elems(f"{ctx.ptr(y)} + (o*{m} + w)*{inner}", f"{ctx.ptr(x)} + (o*{n} + j)*{inner}", inner, y.dtype.itemsize)
        code += (
            f"\nfor (size_t o = 0; o < {outer}; ++o) {{\nsize_t w = 0;\n"
            f"for (size_t j = 0; j < {use}; ++j) if ({c}[j]) {{\n{copy}\n++w;\n}}\n}}"
        )
    ctx.emit(code)


@op("ReverseSequence")
def lower_reverse_sequence(ctx: Lowering) -> None:
    x, lens, y = ctx.input(0), ctx.input(1), ctx.output(0)
    t_axis, b_axis = int(ctx.attr("time_axis", 0)), int(ctx.attr("batch_axis", 1))
    if sorted((t_axis, b_axis)) != [0, 1] or len(x.shape) < 2:
        ctx.fail("time_axis and batch_axis must be 0 and 1")
    steps, batch = x.shape[t_axis], x.shape[b_axis]
    inner = prod(x.shape[2:])
    if y.size == 0:
        return
    xs = strides(x.shape)
    t_st, b_st = xs[t_axis], xs[b_axis]
    body = (
        f"int64_t len = (int64_t){ctx.ptr(lens)}[b];\n"
        f"if (len < 0) len = 0;\nif (len > {steps}) len = {steps};\n"
        f"for (size_t t = 0; t < {steps}; ++t) {{\n"
        f"const size_t s = (int64_t)t < len ? (size_t)len - 1 - t : t;\n"
        + copy_elems(f"{ctx.ptr(y)} + b*{b_st} + t*{t_st}", f"{ctx.ptr(x)} + b*{b_st} + s*{t_st}", inner, y.dtype.itemsize)
        + "\n}"
    )
    ctx.emit(f"for (size_t b = 0; b < {batch}; ++b) {{\n{body}\n}}")


# ---------------------------------------------------------------- scans along an axis


def lower_scan(ctx: Lowering, name: str, identity: str, combine, need_rank: bool = False) -> None:
    """CumSum / CumProd: y[t] = combine(acc, x[t]) along the axis of input 1 (a constant or read at run
    time), starting from identity; combine(ctype, x_elem) gives the C expression of the next acc."""
    x, y = ctx.input(0), ctx.output(0)
    if x.dtype == np.bool_:
        ctx.fail(f"{name} of bool is not defined")
    if y.size == 0:
        return
    exclusive, reverse = int(ctx.attr("exclusive", 0)), int(ctx.attr("reverse", 0))
    rank = len(x.shape)
    if need_rank and rank == 0:
        ctx.fail("input must have rank >= 1")
    axis_v = ctx.const(1)
    if axis_v is not None:
        axis = normalize_axis(int(np.asarray(axis_v).reshape(-1)[0]), rank)
        if not 0 <= axis < rank:
            ctx.fail(f"axis {axis} is out of range for rank {rank}")
        outer, n, inner = (str(v) for v in _split(x.shape, axis))
        head = ""
    else:
        # a run-time axis: the output shape does not depend on it, only the walk does
        dims = ", ".join(str(d) for d in x.shape)
        head = (
            f"static const size_t dims[{rank}] = {{ {dims} }};\n"
            f"int64_t ax = (int64_t){ctx.ptr(ctx.input(1))}[0];\n"
            f"if (ax < 0) ax += {rank};\nif (ax < 0 || ax >= {rank}) {INDEX_ERROR}\n"
            "size_t outer = 1, inner = 1;\n"
            f"for (size_t d = 0; d < {rank}; ++d) {{ if ((int64_t)d < ax) outer *= dims[d]; else if ((int64_t)d > ax) inner *= dims[d]; }}\n"
            f"const size_t n = dims[ax];\n"
        )
        outer, n, inner = "outer", "n", "inner"
    nxt = combine(y.ctype, f"{ctx.ptr(x)}[p]")
    back = f"{n} - 1 - t" if reverse else "t"
    step = f"{ctx.ptr(y)}[p] = acc; acc = {nxt};" if exclusive else f"acc = {nxt}; {ctx.ptr(y)}[p] = acc;"
    ctx.emit(
        f"{head}for (size_t o = 0; o < {outer}; ++o) for (size_t i = 0; i < {inner}; ++i) {{\n"
        f"{y.ctype} acc = {identity};\n"
        f"for (size_t t = 0; t < {n}; ++t) {{ const size_t p = (o*{n} + {back})*{inner} + i; {step} }}\n}}"
    )


@op("CumSum")
def lower_cumsum(ctx: Lowering) -> None:
    lower_scan(ctx, "CumSum", "0", lambda ct, xe: f"({ct})(acc + {xe})")


def _better(dtype, largest: bool) -> str:
    """C macro body: is element a ranked strictly before b (NaN counts as the largest value)."""
    if not is_float(dtype):
        return "((a) > (b))" if largest else "((a) < (b))"
    if largest:
        return "((a) > (b) || ((a) != (a) && (b) == (b)))"
    return "((a) < (b) || ((a) == (a) && (b) != (b)))"


@op("TopK")
def lower_topk(ctx: Lowering) -> None:
    x, values, indices = ctx.input(0), ctx.output(0), ctx.output(1)  # both outputs are required
    axis = normalize_axis(int(ctx.attr("axis", -1)), len(x.shape))
    outer, n, inner = _split(x.shape, axis)
    k = values.shape[axis]  # the output shape carries K
    if ctx.opset >= 10 and ctx.has_input(1):
        check_values(ctx, 1, [k], "K")
    if k > n:
        ctx.fail(f"K = {k} is larger than the axis ({n})")
    if values.size == 0:
        return
    ct = x.ctype
    better = _better(x.dtype, bool(ctx.attr("largest", 1))).replace("(a)", "(va)").replace("(b)", "(vb)")
    # insertion into the (strided) index row, which is the only scratch needed: stable, so ties keep
    # the lower index first; the values are gathered at the end
    body = f"""const {ct} *xr = {ctx.ptr(x)} + o*{n * inner} + i;
int64_t *ir = {ctx.ptr(indices)} + o*{k * inner} + i;
size_t cnt = 0;
for (size_t t = 0; t < {n}; ++t) {{
    const {ct} va = xr[t*{inner}];
    size_t pos;
    if (cnt == {k}) {{
        const {ct} vb = xr[(size_t)ir[{(k - 1) * inner}]*{inner}];
        if (!{better}) continue;
        pos = {k - 1};
    }} else {{
        pos = cnt++;
    }}
    while (pos > 0) {{
        const {ct} vb = xr[(size_t)ir[(pos - 1)*{inner}]*{inner}];
        if (!{better}) break;
        ir[pos*{inner}] = ir[(pos - 1)*{inner}];
        --pos;
    }}
    ir[pos*{inner}] = (int64_t)t;
}}
for (size_t j = 0; j < {k}; ++j) {ctx.ptr(values)}[o*{k * inner} + i + j*{inner}] = xr[(size_t)ir[j*{inner}]*{inner}];"""
    ctx.emit(f"for (size_t o = 0; o < {outer}; ++o) for (size_t i = 0; i < {inner}; ++i) {{\n{body}\n}}")


@op("ArgMax", "ArgMin")
def lower_arg_extreme(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(x.shape))
    outer, n, inner = _split(x.shape, axis)
    if y.size == 0:
        return
    if n == 0:
        ctx.fail("ArgMax/ArgMin over an empty axis")
    last = bool(ctx.attr("select_last_index", 0))
    cmp = ">" if ctx.node.op_type == "ArgMax" else "<"
    if last:
        cmp += "="
    take = f"v {cmp} best"
    if is_float(x.dtype):  # numpy: the first (last) NaN wins
        take = f"{take} || (v != v{' && best == best' if not last else ''})"
    ctx.emit(
        f"for (size_t o = 0; o < {outer}; ++o) for (size_t i = 0; i < {inner}; ++i) {{\n"
        f"const {x.ctype} *xr = {ctx.ptr(x)} + o*{n * inner} + i;\n"
        f"{x.ctype} best = xr[0];\nsize_t at = 0;\n"
        f"for (size_t t = 1; t < {n}; ++t) {{ const {x.ctype} v = xr[t*{inner}]; if ({take}) {{ best = v; at = t; }} }}\n"
        f"{ctx.ptr(y)}[o*{inner} + i] = (int64_t)at;\n}}"
    )


# ---------------------------------------------------------------- data-dependent shapes


@op("NonZero")
def lower_nonzero(ctx: Lowering) -> None:
    """The output's static (declared) shape says how many elements are nonzero: the C counts them,
    checks, then writes each one's coordinates (row-major order, as numpy's nonzero)."""
    x, y = ctx.input(0), ctx.output(0)
    rank = len(x.shape)
    if len(y.shape) != 2 or y.shape[0] != rank:
        ctx.fail(f"output shape {y.shape} is not ({rank}, count)")
    m = y.shape[1]
    p = ctx.ptr(x)
    if x.size == 0:
        ctx.emit(f"if ({m} != 0) {SHAPE_ERROR}" if m else "/* empty */")
        return
    ctx.emit(f"size_t cnt = 0;\nfor (size_t i = 0; i < {x.size}; ++i) if ({p}[i] != 0) ++cnt;\nif (cnt != {m}) {SHAPE_ERROR}")
    if y.size == 0:
        return
    xs = strides(x.shape)
    coords = "\n".join(f"{ctx.ptr(y)}[{k * m} + w] = (int64_t)((i / {xs[k]}) % {x.shape[k]});" for k in range(rank))
    ctx.emit(f"size_t w = 0;\nfor (size_t i = 0; i < {x.size}; ++i) if ({p}[i] != 0) {{\n{coords}\n++w;\n}}")


@op("Unique")
def lower_unique(ctx: Lowering) -> None:
    """The number of unique items is static only when the model declares it (or --shape binds it, or the
    axis has at most one item): the C finds the items in first-occurrence order, checks their count,
    then sorts them (sorted=1: lexicographically over the item's elements, NaN last, as numpy)."""
    x, y = ctx.input(0), ctx.output(0)
    axis = ctx.attr("axis")
    if axis is None:
        outer, n, inner = 1, x.size, 1
    else:
        ax = normalize_axis(int(axis), len(x.shape))
        outer, n, inner = _split(x.shape, ax)
    m = y.size if axis is None else y.shape[ax]
    if outer * m * inner != y.size:
        ctx.fail(f"output shape {y.shape} does not fit input {x.shape}")
    if n == 0:
        ctx.emit(f"if ({m} != 0) {SHAPE_ERROR}" if m else "/* empty */")
        return
    xp, t = ctx.ptr(x), x.ctype
    uniq = ctx.scratch(8 * n, np.int64)  # first index of each unique item, in first-occurrence order
    inv = ctx.scratch(8 * n, np.int64)  # each item's unique rank
    cnt = ctx.scratch(8 * n, np.int64)
    if is_float(x.dtype):
        eq, lt = "(a == b || (a != a && b != b))", "(a < b || (a == a && b != b))"
    else:
        eq, lt = "a == b", "a < b"
    # items p and q (item indices) compared element by element over (outer, inner)
    walk = f"for (size_t o = 0; o < {outer} && r == 0; ++o) for (size_t i = 0; i < {inner} && r == 0; ++i) {{"
    elem = f"const {t} a = {xp}[(o*{n} + (size_t)p)*{inner} + i], b = {xp}[(o*{n} + (size_t)q)*{inner} + i];"
    code = [
        "size_t nu = 0;",
        f"for (size_t k = 0; k < {n}; ++k) {{",
        "    size_t u = 0;",
        "    for (; u < nu; ++u) {",
        f"        const int64_t p = {uniq}[u], q = (int64_t)k; int r = 0;",
        f"        {walk} {elem} if (!({eq})) r = 1; }}",
        "        if (r == 0) break;",
        "    }",
        f"    if (u == nu) {{ if (nu == {m}) {SHAPE_ERROR} {uniq}[nu] = (int64_t)k; {cnt}[nu] = 0; ++nu; }}",
        f"    {inv}[k] = (int64_t)u; ++{cnt}[u];",
        "}",
        f"if (nu != {m}) {SHAPE_ERROR}",
    ]
    if int(ctx.attr("sorted", 1)) and m > 1:
        # insertion sort of the unique items; `rank` maps first-occurrence rank -> sorted rank
        rank = ctx.scratch(8 * m, np.int64)
        code += [
            f"for (size_t u = 1; u < {m}; ++u) {{",
            f"    const int64_t q = {uniq}[u], c = {cnt}[u];",
            "    size_t j = u;",
            "    for (; j > 0; --j) {",
            f"        const int64_t p = {uniq}[j - 1]; int r = 0;",
            f"        {walk} {elem} if ({lt}) r = 1; else if (!({eq})) r = 2; }}",
            "        if (r != 2) break;",
            f"        {uniq}[j] = {uniq}[j - 1]; {cnt}[j] = {cnt}[j - 1];",
            "    }",
            f"    {uniq}[j] = q; {cnt}[j] = c;",
            "}",
            f"for (size_t u = 0; u < {m}; ++u) {rank}[{inv}[{uniq}[u]]] = (int64_t)u;",
            f"for (size_t k = 0; k < {n}; ++k) {inv}[k] = {rank}[{inv}[k]];",
        ]
    if y.size:
        copy = copy_elems(f"{ctx.ptr(y)} + (o*{m} + u)*{inner}", f"{xp} + (o*{n} + (size_t){uniq}[u])*{inner}", inner, y.dtype.itemsize)
        code.append(f"for (size_t o = 0; o < {outer}; ++o) for (size_t u = 0; u < {m}; ++u) {{\n{copy}\n}}")
    outs = {1: (uniq, m), 2: (inv, n), 3: (cnt, m)}
    for k, (src, length) in outs.items():
        if ctx.has_output(k):
            b = ctx.output(k)
            if b.size != length:
                ctx.fail(f"output {k} has shape {b.shape}, expected ({length},)")
            code.append(f"for (size_t u = 0; u < {length}; ++u) {ctx.ptr(b)}[u] = {src}[u];")
    ctx.emit("\n".join(code))


