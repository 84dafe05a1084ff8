"""Data movement with static offsets: Transpose, Concat, Split, Slice, Expand, Tile, Pad, DepthToSpace,
SpaceToDepth, CenterCropPad, fills (ConstantOfShape, EyeLike, Range), Trilu, Col2Im, Shape/Size.

Most of them are one strided copy: every source and destination offset is an affine function of the
output coordinates, so they share `strided_copy`, which merges axes and copies whole rows with memcpy.

Shape-setting inputs (starts/ends, pads, repeats, split, shape, block_shape ...) may be runtime values
when the model declares (or the user binds) the output's static shape. Where the static shapes say
everything the op needs (Split sizes, Tile repeats, Expand, ConstantOfShape), the C only checks that the
runtime values agree with them; where they do not (Slice offsets and steps, Pad amounts, Col2Im blocks,
Range start/delta), the C reads the values. Either way a disagreement makes <prefix>_run return 1."""

from __future__ import annotations

import re

import numpy as np

from ..ir import ARENA, Buffer
from .common import broadcast_strides, collapse, literal, normalize_axis, strides
from .registry import Lowering
from .registry import op as _register

# return code of <prefix>_run when a runtime index is out of range (Gather, Scatter, ...)
INDEX_ERROR = "return 1; /* index out of range */"
# ... and when a runtime shape-setting input disagrees with the compiled (static) output shape
SHAPE_ERROR = "return 1; /* a runtime shape input disagrees with the compiled shape */"


def prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


# ---------------------------------------------------------------- helpers shared with index.py


def op(*op_types: str):
    """registry.op, plus `(void)t;` for every arena pointer of the node the C never mentions (an empty
    tensor is never touched; its pointer is still declared): -Wunused-variable stays quiet."""

    def deco(fn):
        def lower(ctx: Lowering) -> None:
            fn(ctx)
            code = "\n".join(ctx.lines)
            seen: set[str] = set()
            for name in [*ctx.node.inputs, *ctx.node.outputs]:
                if not name or ctx.prog.root(name).storage != ARENA:
                    continue
                p = ctx.ptr(name)
                if p not in seen and not re.search(rf"(?<![0-9A-Za-z_]){re.escape(p)}(?![0-9A-Za-z_])", code):
                    ctx.emit(f"(void){p};")
                seen.add(p)

        lower.__name__ = lower.__qualname__ = fn.__name__
        lower.__doc__ = fn.__doc__
        return _register(*op_types)(lower)

    return deco


def loops(shape: tuple[int, ...] | list[int], body: str, var: str = "i", ctype: str = "size_t") -> str:
    """Nested for loops over `shape` (index variables var0, var1, ...)."""
    if not len(shape):
        return "{\n" + body + "\n}"
    head = "".join(f"for ({ctype} {var}{k} = 0; {var}{k} < {d}; ++{var}{k}) " for k, d in enumerate(shape))
    return head + "{\n" + body + "\n}"


def named_loops(axes: list[tuple[str, int]], body: str, ctype: str = "size_t") -> str:
    """Nested for loops, one per (variable, extent)."""
    head = "".join(f"for ({ctype} {v} = 0; {v} < {d}; ++{v}) " for v, d in axes)
    return head + "{\n" + body + "\n}"


def affine(vars_: list[str], strides_: list[int], offset: int = 0) -> str:
    """`offset + v0*s0 + v1*s1 ...` (strides may be negative: variables are then ptrdiff_t)."""
    terms = [str(offset)] if offset else []
    for v, s in zip(vars_, strides_):
        if s == 1:
            terms.append(v)
        elif s:
            terms.append(f"{v}*{s}" if s > 0 else f"{v}*({s})")
    return " + ".join(terms) if terms else "0"


def strided_copy(itemsize: int, shape, dst: str, dst_strides, dst_off: int, src: str, src_strides, src_off: int) -> str:
    """dst[dst_off + sum i_k*dst_strides_k] = src[src_off + sum i_k*src_strides_k] over `shape`."""
    shape = list(shape)
    if prod(shape) == 0:
        return "/* empty */"
    keep = [k for k, d in enumerate(shape) if d != 1]
    shape = [shape[k] for k in keep]
    ss = [src_strides[k] for k in keep]
    ds = [dst_strides[k] for k in keep]
    cshape, (ss, ds) = collapse(tuple(shape), [ss, ds])
    cshape = list(cshape)
    row = 1
    if cshape and ss[-1] == 1 and ds[-1] == 1 and cshape[-1] > 1:
        row = cshape.pop()  # contiguous in both: memcpy whole rows
        ss, ds = ss[:-1], ds[:-1]
    ctype = "ptrdiff_t" if any(s < 0 for s in ss + ds) else "size_t"
    vars_ = [f"i{k}" for k in range(len(cshape))]
    d_at, s_at = affine(vars_, ds, dst_off), affine(vars_, ss, src_off)
    if row > 1:
        body = f"memcpy({dst} + {d_at}, {src} + {s_at}, {row * itemsize});"
    else:
        body = f"{dst}[{d_at}] = {src}[{s_at}];"
    return loops(cshape, body, ctype=ctype) if cshape else body


def copy_region(ctx: Lowering, x: Buffer, y: Buffer, shape, dst_start, src_start, src_steps=None) -> str:
    """Copy a box of `shape` from x (starting at src_start, stepping src_steps) into y at dst_start."""
    xs, ys = strides(x.shape), strides(y.shape)
    steps = src_steps or [1] * len(shape)
    return strided_copy(
        y.dtype.itemsize,
        shape,
        ctx.ptr(y),
        ys,
        sum(a * s for a, s in zip(dst_start, ys)),
        ctx.ptr(x),
        [st * s for st, s in zip(steps, xs)],
        sum(a * s for a, s in zip(src_start, xs)),
    )


def _offset(b: Buffer, index) -> int:
    """Bytes from b's start to the element at `index`."""
    return sum(a * s for a, s in zip(index, strides(b.shape))) * b.dtype.itemsize


def fill(y: Buffer, ptr: str, value: str) -> str:
    """Every element of y set to the C expression `value` (memset for a zero literal)."""
    if y.size == 0:
        return "/* empty */"
    if value in ("0", "0.0f", "0.0", "INT64_C(0)", "UINT64_C(0)", "0u"):
        return f"memset({ptr}, 0, {y.nbytes});"
    return f"for (size_t i = 0; i < {y.size}; ++i) {ptr}[i] = {value};"


def transpose_copy(ctx: Lowering, x: Buffer, y: Buffer, in_shape, perm) -> str:
    """y = transpose(reshape(x, in_shape), perm)."""
    xs = strides(tuple(in_shape))
    out_shape = [in_shape[p] for p in perm]
    return strided_copy(y.dtype.itemsize, out_shape, ctx.ptr(y), strides(tuple(out_shape)), 0, ctx.ptr(x), [xs[p] for p in perm], 0)


def scalar_expr(ctx: Lowering, i: int, dtype) -> str | None:
    """A scalar input as a C expression: a literal when constant, else its first element at run time."""
    if not ctx.has_input(i):
        return None
    v = ctx.const(i)
    if v is not None:
        return literal(np.asarray(v).reshape(-1)[0], dtype) if np.asarray(v).size else None
    if ctx.input(i).size == 0:
        return None
    return f"({ctx.ptr(ctx.input(i))}[0])"


def ints(ctx: Lowering, name: str, index: int, default=None) -> list[int] | None:
    """An int list given as attribute (old opsets) or as a constant input (new ones)."""
    v = ctx.attr_or_const(name, index, default)
    if v is None:
        return None
    return [int(a) for a in np.asarray(v).reshape(-1)]


def is_runtime(ctx: Lowering, i: int) -> bool:
    """Input i is present and its value is only known at run time."""
    return ctx.has_input(i) and ctx.const(i) is None


def int_table(ctx: Lowering, i: int, name: str) -> tuple[str, int]:
    """(C declaration, length): after the declaration `(int64_t)name[j]` is element j of the integer
    input i -- a static table when it is a constant, a pointer to it when it is a runtime value.
    A length 0 declares nothing."""
    buf = ctx.input(i)
    v = ctx.const(i)
    if v is not None:
        vals = [int(a) for a in np.asarray(v).reshape(-1)]
        if not vals:
            return "", 0
        return f"static const int64_t {name}[{len(vals)}] = {{ {', '.join(literal(a, np.int64) for a in vals)} }};", len(vals)
    if buf.dtype.kind not in "iu":
        ctx.fail(f"input '{ctx.node.inputs[i]}' must be an integer tensor, got {buf.dtype.name}")
    if buf.size == 0:
        return "", 0
    return f"const {buf.ctype} *{name} = {ctx.ptr(buf)};", buf.size


def check_values(ctx: Lowering, i: int, expected: list[int], what: str) -> None:
    """The integer input i must hold exactly `expected` (what the static output shape implies):
    checked now when it is a constant, else by the C at run time (a mismatch returns 1)."""
    v = ctx.const(i)
    if v is not None:
        got = [int(a) for a in np.asarray(v).reshape(-1)]
        if got != list(expected):
            ctx.fail(f"{what} {got} do not give the static output shape (they should be {list(expected)})")
        return
    buf = ctx.input(i)
    if buf.dtype.kind not in "iu":
        ctx.fail(f"{what} must be an integer tensor, got {buf.dtype.name}")
    if buf.size != len(expected):
        ctx.fail(f"{what} has {buf.size} values, the static output shape needs {len(expected)}")
    if expected:
        p = ctx.ptr(buf)
        cond = " || ".join(f"(int64_t){p}[{j}] != {literal(e, np.int64)}" for j, e in enumerate(expected))
        ctx.emit(f"if ({cond}) {SHAPE_ERROR}")


def read_axes(ctx: Lowering, i: int, rank: int, count: int) -> str:
    """C statements: `int64_t ax[j]` for j < count = the axes input i (normalised, checked to be in range
    and distinct; a bad one returns 1), or 0..count-1 when the input is absent."""
    if not ctx.has_input(i):
        return f"for (size_t j = 0; j < {count}; ++j) ax[j] = (int64_t)j;"
    decl, n = int_table(ctx, i, "axes_in")
    if n != count:
        ctx.fail(f"{n} axes for {count} values")
    return (
        f"{decl}\n{{\nunsigned char seen[{rank}] = {{ 0 }};\n"
        f"for (size_t j = 0; j < {count}; ++j) {{\n"
        f"int64_t a = (int64_t)axes_in[j];\nif (a < 0) a += {rank};\n"
        f"if (a < 0 || a >= {rank} || seen[a]) {SHAPE_ERROR}\nseen[a] = 1;\nax[j] = a;\n}}\n}}"
    )


# ---------------------------------------------------------------- ops


@op("Transpose")
def lower_transpose(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    rank = len(x.shape)
    perm = ctx.attr("perm") or list(range(rank))[::-1]
    perm = [normalize_axis(int(p), rank) for p in perm]
    if sorted(perm) != list(range(rank)):
        ctx.fail(f"perm {perm} is not a permutation of the {rank} axes")
    ctx.emit(transpose_copy(ctx, x, y, x.shape, perm))


@op("Concat")
def lower_concat(ctx: Lowering) -> None:
    y = ctx.output(0)
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(y.shape))
    at = 0
    for i in range(ctx.n_inputs):
        if not ctx.has_input(i):
            continue
        x = ctx.input(i)
        start = [0] * len(y.shape)
        start[axis] = at
        # an input that is a view of its block of y was written there by its producer (passes/views.py)
        if x.size and not ctx.prog.lies_at(x.name, y.name, _offset(y, start)):
            ctx.emit(copy_region(ctx, x, y, x.shape, start, [0] * len(x.shape)))
        at += x.shape[axis] if x.shape else 0
    if at != (y.shape[axis] if y.shape else 0):
        ctx.fail(f"inputs add up to {at} along axis {axis}, the output has {y.shape[axis]}")


@op("Split")
def lower_split(ctx: Lowering) -> None:
    # the output shapes already hold the split sizes, whichever way they were given
    x = ctx.input(0)
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(x.shape))
    if ctx.opset >= 13 and ctx.has_input(1):
        check_values(ctx, 1, [ctx.output(k).shape[axis] for k in range(len(ctx.node.outputs))], "split sizes")
    at = 0
    for k in range(len(ctx.node.outputs)):
        if not ctx.has_output(k):
            continue
        y = ctx.output(k)
        start = [0] * len(x.shape)
        start[axis] = at
        if not ctx.prog.lies_at(y.name, x.name, _offset(x, start)):  # else read in place (passes/views.py)
            ctx.emit(copy_region(ctx, x, y, y.shape, [0] * len(y.shape), start))
        at += y.shape[axis]
    if at > x.shape[axis]:
        ctx.fail(f"the outputs take {at} along axis {axis}, the input has {x.shape[axis]}")


def slice_params(dim: int, start: int, end: int, step: int) -> tuple[int, int]:
    """ONNX Slice clamping: (first index, count)."""
    if step == 0:
        raise ValueError("step 0")
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = max(0, min(dim, start)), max(0, min(dim, end))
        count = max(0, -(-(end - start) // step))
    else:
        start, end = max(0, min(dim - 1, start)), max(-1, min(dim - 1, end))
        count = max(0, -(-(start - end) // -step))
    return start, count


def _slice_runtime(ctx: Lowering, x: Buffer, y: Buffer) -> None:
    """Slice whose starts/ends/axes/steps are (partly) runtime values: the C applies ONNX's clamping per
    axis, checks that the counts are the static output shape, then copies with runtime offsets/strides."""
    rank = len(x.shape)
    if rank == 0:
        ctx.fail("Slice of a scalar")
    starts, n = int_table(ctx, 1, "starts")
    ends, n_ends = int_table(ctx, 2, "ends")
    if n != n_ends or n > rank:
        ctx.fail(f"{n} starts and {n_ends} ends for an input of rank {rank}")
    steps, n_steps = int_table(ctx, 4, "steps") if ctx.has_input(4) else ("", n)
    if n_steps != n:
        ctx.fail(f"{n_steps} steps for {n} starts")
    dims = ", ".join(literal(d, np.int64) for d in x.shape)
    want = ", ".join(literal(d, np.int64) for d in y.shape)
    code = [
        f"static const int64_t dims[{rank}] = {{ {dims} }}, want[{rank}] = {{ {want} }};",
        f"int64_t first[{rank}], step[{rank}], cnt[{rank}];",
        f"for (size_t k = 0; k < {rank}; ++k) {{ first[k] = 0; step[k] = 1; cnt[k] = dims[k]; }}",
    ]
    if n:
        code += [
            f"int64_t ax[{n}];",
            read_axes(ctx, 3, rank, n),
            starts,
            ends,
            steps,
            f"for (size_t j = 0; j < {n}; ++j) {{",
            "const int64_t a = ax[j], d = dims[a];",
            f"const int64_t st = {'(int64_t)steps[j]' if steps else 'INT64_C(1)'};",
            "int64_t s = (int64_t)starts[j], e = (int64_t)ends[j], c;",
            f"if (st == 0) {SHAPE_ERROR}",
            "if (s < 0) s += d;",
            "if (e < 0) e += d;",
            "if (st > 0) {",
            "    s = s < 0 ? 0 : (s > d ? d : s);",
            "    e = e < 0 ? 0 : (e > d ? d : e);",
            "    c = e > s ? (int64_t)((uint64_t)(e - s - 1) / (uint64_t)st) + 1 : 0;",
            "} else {",
            "    s = s < 0 ? 0 : (s > d - 1 ? d - 1 : s);",
            "    e = e < -1 ? -1 : (e > d - 1 ? d - 1 : e);",
            "    c = s > e ? (int64_t)((uint64_t)(s - e - 1) / ((uint64_t)0 - (uint64_t)st)) + 1 : 0;",
            "}",
            "if (d == 0) { s = 0; c = 0; }",
            "first[a] = s;",
            "step[a] = c > 1 ? st : 1; /* |st| < d then, so step*stride cannot overflow */",
            "cnt[a] = c;",
            "}",
        ]
    code.append(f"for (size_t k = 0; k < {rank}; ++k) if (cnt[k] != want[k]) {SHAPE_ERROR}")
    code.append("(void)first;\n(void)step;  /* unread when the output is empty */")
    if y.size:
        xs = strides(x.shape)
        code.append("ptrdiff_t base = 0;")
        code += [f"base += (ptrdiff_t)first[{k}] * {xs[k]};" for k in range(rank) if xs[k]]
        keep = [k for k in range(rank) if y.shape[k] != 1]
        code += [f"const ptrdiff_t sx{k} = (ptrdiff_t)step[{k}] * {xs[k]};" for k in keep]
        ys = strides(y.shape)
        vars_ = [f"i{k}" for k in keep]
        dst = affine(vars_, [ys[k] for k in keep])
        src = " + ".join(["base"] + [f"(ptrdiff_t)i{k}*sx{k}" for k in keep])
        elem = named_loops([(f"i{k}", y.shape[k]) for k in keep], f"{ctx.ptr(y)}[{dst}] = {ctx.ptr(x)}[{src}];")
        last = rank - 1
        if keep and keep[-1] == last:
            # contiguous rows when the innermost step is 1: memcpy them
            outer = keep[:-1]
            row_src = " + ".join(["base"] + [f"(ptrdiff_t)i{k}*sx{k}" for k in outer])
            row_dst = affine([f"i{k}" for k in outer], [ys[k] for k in outer])
            row = f"memcpy({ctx.ptr(y)} + {row_dst}, {ctx.ptr(x)} + {row_src}, {y.shape[last] * y.dtype.itemsize});"
            rows = named_loops([(f"i{k}", y.shape[k]) for k in outer], row)
            code.append(f"if (sx{last} == 1) {{\n{rows}\n}} else {{\n{elem}\n}}")
        else:
            code.append(elem)
    ctx.emit("\n".join(c for c in code if c))


@op("Slice")
def lower_slice(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    rank = len(x.shape)
    if ctx.opset < 10 or "starts" in ctx.node.attrs:
        starts, ends, axes, steps = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"), None
    elif any(is_runtime(ctx, i) for i in (1, 2, 3, 4)):
        _slice_runtime(ctx, x, y)
        return
    else:
        starts = ints(ctx, "starts", 1)
        ends = ints(ctx, "ends", 2)
        axes = ints(ctx, "axes", 3)
        steps = ints(ctx, "steps", 4)
    if starts is None or ends is None or len(starts) != len(ends):
        ctx.fail("starts and ends must be given with the same length")
    axes = list(range(len(starts))) if axes is None else [normalize_axis(int(a), rank) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    first, step = [0] * rank, [1] * rank
    shape = list(x.shape)
    for a, s, e, st in zip(axes, starts, ends, steps):
        if int(st) == 0:
            ctx.fail("a step of 0 is not allowed")
        first[a], shape[a] = slice_params(x.shape[a], int(s), int(e), int(st))
        step[a] = int(st)
    if tuple(shape) != tuple(y.shape):
        ctx.fail(f"slice gives shape {tuple(shape)}, shape inference said {y.shape}")
    ctx.emit(copy_region(ctx, x, y, shape, [0] * rank, first, step))


@op("Expand")
def lower_expand(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    rank = len(y.shape)
    xin = (1,) * (rank - len(x.shape)) + tuple(x.shape)
    if len(x.shape) > rank or any(i != o and i != 1 for i, o in zip(xin, y.shape)):
        ctx.fail(f"the output shape {y.shape} is not a broadcast of the input's {x.shape}")
    if is_runtime(ctx, 1):
        # shape s broadcast with the input gives the output: per (right-aligned) axis s == out, or s == 1
        # where the input already has the output's size
        shp = ctx.input(1)
        if shp.dtype.kind not in "iu" or len(shp.shape) != 1 or shp.size > rank:
            ctx.fail(f"shape must be a 1-D integer tensor of at most {rank} values")
        conds = []
        for j in range(shp.size):
            k = rank - shp.size + j
            v = f"(int64_t){ctx.ptr(shp)}[{j}]"
            ok = f"{v} == {literal(y.shape[k], np.int64)}" + (f" || {v} == 1" if xin[k] == y.shape[k] and y.shape[k] != 1 else "")
            conds.append(f"!({ok})")
        if conds:
            ctx.emit(f"if ({' || '.join(conds)}) {SHAPE_ERROR}")
    ctx.emit(strided_copy(y.dtype.itemsize, y.shape, ctx.ptr(y), strides(y.shape), 0, ctx.ptr(x), broadcast_strides(x.shape, y.shape), 0))


@op("Tile")
def lower_tile(ctx: Lowering) -> None:
    # out axis k splits into (repeat r_k, element d_k): dst strides (d_k*os_k, os_k), src (0, is_k)
    x, y = ctx.input(0), ctx.output(0)
    if len(x.shape) != len(y.shape):
        ctx.fail(f"input rank {len(x.shape)} differs from the output's {len(y.shape)}")
    for d, o in zip(x.shape, y.shape):
        if (d == 0 and o != 0) or (d and o % d):
            ctx.fail(f"output dim {o} is not a multiple of input dim {d}")
    if ctx.has_input(1):
        reps = ctx.input(1)
        if is_runtime(ctx, 1):
            if reps.size != len(x.shape):
                ctx.fail(f"{reps.size} repeats for an input of rank {len(x.shape)}")
            # repeats = out/in where the input axis is not empty; any repeat >= 0 where it is
            p = ctx.ptr(reps)
            conds = [f"(int64_t){p}[{k}] != {o // d}" if d else f"(int64_t){p}[{k}] < 0" for k, (d, o) in enumerate(zip(x.shape, y.shape))]
            if conds:
                ctx.emit(f"if ({' || '.join(conds)}) {SHAPE_ERROR}")
        elif all(x.shape):
            check_values(ctx, 1, [o // d for d, o in zip(x.shape, y.shape)], "repeats")
    if y.size == 0:
        return
    xs, ys = strides(x.shape), strides(y.shape)
    shape, ss, ds = [], [], []
    for d, o, s_in, s_out in zip(x.shape, y.shape, xs, ys):
        shape += [o // d, d]
        ss += [0, s_in]
        ds += [d * s_out, s_out]
    ctx.emit(strided_copy(y.dtype.itemsize, shape, ctx.ptr(y), ds, 0, ctx.ptr(x), ss, 0))


def place_constant(ctx: Lowering, x: Buffer, y: Buffer, begins: list[int], value: str) -> None:
    """y = x shifted by `begins` per axis (negative: cropped), the rest filled with `value`."""
    box, dst, src = [], [], []
    for d_in, d_out, b in zip(x.shape, y.shape, begins):
        dst.append(max(b, 0))
        src.append(max(-b, 0))
        box.append(max(0, min(d_out - dst[-1], d_in - src[-1])))
    if prod(box) < y.size:
        ctx.emit(fill(y, ctx.ptr(y), value))
    if prod(box):
        ctx.emit(copy_region(ctx, x, y, box, dst, src))


def _index_map(dim: int, begin: int, end: int, mode: str) -> np.ndarray:
    """Source index of each output position along one axis for edge/reflect/wrap padding."""
    base = np.arange(dim)
    padded = np.pad(base, (max(begin, 0), max(end, 0)), mode=mode)
    return padded[max(-begin, 0) : len(padded) - max(-end, 0)]


def _mapped_copy(ctx: Lowering, x: Buffer, y: Buffer, maps: list[np.ndarray]) -> None:
    """y[o] = x[map_0[o_0], map_1[o_1], ...]; axes whose map is a plain shift are plain strides."""
    xs, ys = strides(x.shape), strides(y.shape)
    tables, src_terms = [], []
    offset = 0
    for k, m in enumerate(maps):
        if len(m) and np.array_equal(m, np.arange(len(m)) + m[0]):
            offset += int(m[0]) * xs[k]
            if xs[k] and len(m) > 1:
                src_terms.append(f"i{k}*{xs[k]}" if xs[k] != 1 else f"i{k}")
        else:
            tables.append(f"static const uint32_t map{k}[{len(m)}] = {{ {', '.join(str(int(v)) for v in m)} }};")
            src_terms.append(f"(size_t)map{k}[i{k}]" + (f"*{xs[k]}" if xs[k] != 1 else ""))
    src = " + ".join(([str(offset)] if offset else []) + src_terms) or "0"
    dst = affine([f"i{k}" for k in range(len(ys))], ys)
    body = f"{ctx.ptr(y)}[{dst}] = {ctx.ptr(x)}[{src}];"
    ctx.emit("\n".join(tables + [loops(y.shape, body)]))


def _pad_runtime(ctx: Lowering, x: Buffer, y: Buffer, mode: str, value: str) -> None:
    """Pad whose pads (or axes) are runtime values: the C reads them, checks that they give the static
    output shape, and maps every output coordinate to its source along each axis."""
    rank = len(x.shape)
    if mode not in ("constant", "reflect", "edge", "wrap"):
        ctx.fail(f"mode '{mode}' is not supported")
    for d, o in zip(x.shape, y.shape):
        if d == 0 and o and mode != "constant":
            ctx.fail(f"{mode} padding of an axis of size 0")
    if rank == 0:
        ctx.fail("Pad of a scalar")
    naxes = (ctx.input(3).size if is_runtime(ctx, 3) else np.asarray(ctx.const(3)).size) if ctx.has_input(3) else rank
    pads, npads = int_table(ctx, 1, "pads")
    if npads != 2 * naxes:
        ctx.fail(f"{npads} pads for {naxes} axes")
    dims = ", ".join(literal(d, np.int64) for d in x.shape)
    outd = ", ".join(literal(d, np.int64) for d in y.shape)
    code = [
        f"static const int64_t dims[{rank}] = {{ {dims} }}, outd[{rank}] = {{ {outd} }};",
        f"int64_t b[{rank}], e[{rank}];",
        f"for (size_t k = 0; k < {rank}; ++k) b[k] = e[k] = 0;",
    ]
    if naxes:
        code += [
            f"int64_t ax[{naxes}];",
            read_axes(ctx, 3, rank, naxes),
            pads,
            f"for (size_t j = 0; j < {naxes}; ++j) {{ b[ax[j]] = (int64_t)pads[j]; e[ax[j]] = (int64_t)pads[{naxes} + j]; }}",
        ]
    # bounded pads first, so that the sum (and every source index below) cannot overflow
    code.append(
        f"for (size_t k = 0; k < {rank}; ++k) "
        f"if (b[k] < -dims[k] || e[k] < -dims[k] || b[k] > outd[k] || e[k] > outd[k] || dims[k] + b[k] + e[k] != outd[k]) {SHAPE_ERROR}"
    )
    if y.size and x.size == 0:
        code.append(fill(y, ctx.ptr(y), value))
    elif y.size:
        xs, ys = strides(x.shape), strides(y.shape)
        # innermost first: each level computes its source index s<k> once, then runs the levels inside it
        body = f"{ctx.ptr(y)}[{affine([f'i{k}' for k in range(rank)], ys)}] = {ctx.ptr(x)}[{affine([f's{k}' for k in range(rank)], xs)}];"
        for k in reversed(range(rank)):
            d = x.shape[k]
            t = f"const int64_t t = (int64_t)i{k} - b[{k}];"
            if mode == "constant":
                at = affine([f"i{j}" for j in range(k + 1)], ys[: k + 1])
                inner = prod(y.shape[k + 1 :])
                fill_block = f"{ctx.ptr(y)}[{at}] = {value};" if inner == 1 else f"for (size_t q = 0; q < {inner}; ++q) {ctx.ptr(y)}[{at} + q] = {value};"
                src = f"if (t < 0 || t >= {d}) {{ {fill_block} continue; }}\nconst size_t s{k} = (size_t)t;"
            elif mode == "edge":
                src = f"const size_t s{k} = t < 0 ? 0 : (t >= {d} ? {d - 1} : (size_t)t);"
            elif mode == "wrap":
                src = f"int64_t m = t % {d};\nif (m < 0) m += {d};\nconst size_t s{k} = (size_t)m;"
            elif d == 1:  # reflect of one element: numpy repeats it
                src = f"const size_t s{k} = 0;\n(void)t;"
            else:  # reflect: the input repeats with period 2(d-1), mirrored (numpy's reflect, also for wide pads)
                per = 2 * (d - 1)
                src = f"int64_t m = t % {per};\nif (m < 0) m += {per};\nconst size_t s{k} = (size_t)(m < {d} ? m : {per} - m);"
            body = f"for (size_t i{k} = 0; i{k} < {y.shape[k]}; ++i{k}) {{\n{t}\n{src}\n{body}\n}}"
        code.append(body)
    ctx.emit("\n".join(c for c in code if c))


@op("Pad")
def lower_pad(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    rank = len(x.shape)
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads = ctx.attr("pads", ctx.attr("paddings"))
        value = literal(ctx.attr("value", 0.0), y.dtype)
        axes = None
    else:
        value = scalar_expr(ctx, 2, y.dtype) or literal(0, y.dtype)
        if is_runtime(ctx, 1) or is_runtime(ctx, 3):
            _pad_runtime(ctx, x, y, mode, value)
            return
        pads = ints(ctx, "pads", 1)
        axes = ints(ctx, "axes", 3)
    if pads is None:
        ctx.fail("pads are missing")
    axes = list(range(rank)) if axes is None else [normalize_axis(a, rank) for a in axes]
    if len(pads) != 2 * len(axes):
        ctx.fail(f"{len(pads)} pads for {len(axes)} axes")
    begins, ends = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begins[a], ends[a] = int(pads[i]), int(pads[len(axes) + i])
    if tuple(d + b + e for d, b, e in zip(x.shape, begins, ends)) != tuple(y.shape):
        ctx.fail(f"pads {pads} do not give the inferred shape {y.shape}")
    if y.size == 0:
        return
    if mode == "constant":
        place_constant(ctx, x, y, begins, value)
        return
    if mode not in ("reflect", "edge", "wrap"):
        ctx.fail(f"mode '{mode}' is not supported")
    for d, b, e in zip(x.shape, begins, ends):
        if d == 0 or (mode == "reflect" and d == 1 and (b > 0 or e > 0)):
            ctx.fail(f"{mode} padding of an axis of size {d}")
    ctx.emit("/* " + mode + " pad */")
    _mapped_copy(ctx, x, y, [_index_map(d, b, e, mode) for d, b, e in zip(x.shape, begins, ends)])


@op("CenterCropPad")
def lower_center_crop_pad(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    rank = len(x.shape)
    if len(y.shape) != rank:
        ctx.fail(f"input rank {rank} differs from the output's {len(y.shape)}")
    axes = [normalize_axis(int(a), rank) for a in ctx.attr("axes", list(range(rank)))]
    if any(x.shape[k] != y.shape[k] for k in range(rank) if k not in axes):
        ctx.fail(f"axes {axes} leave other axes of {x.shape} changed in {y.shape}")
    check_values(ctx, 1, [y.shape[a] for a in axes], "shape")
    # the output shape already says the target size of every axis; crop/pad symmetrically (floor to the start)
    begins = [(o - d) // 2 if o >= d else -((d - o) // 2) for d, o in zip(x.shape, y.shape)]
    place_constant(ctx, x, y, begins, literal(0, y.dtype))


def _block_size(ctx: Lowering) -> int:
    bs = ctx.attr("blocksize")
    if not bs or int(bs) <= 0:
        ctx.fail("blocksize must be a positive integer")
    return int(bs)


@op("DepthToSpace")
def lower_depth_to_space(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    if len(x.shape) != 4:
        ctx.fail("only 4-D inputs are supported")
    bs = _block_size(ctx)
    n, c, h, w = x.shape
    mode = ctx.attr("mode", "DCR")
    if mode == "DCR":
        ctx.emit(transpose_copy(ctx, x, y, (n, bs, bs, c // (bs * bs), h, w), (0, 3, 4, 1, 5, 2)))
    elif mode == "CRD":
        ctx.emit(transpose_copy(ctx, x, y, (n, c // (bs * bs), bs, bs, h, w), (0, 1, 4, 2, 5, 3)))
    else:
        ctx.fail(f"mode '{mode}' is not supported")


@op("SpaceToDepth")
def lower_space_to_depth(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    if len(x.shape) != 4:
        ctx.fail("only 4-D inputs are supported")
    bs = _block_size(ctx)
    n, c, h, w = x.shape
    mode = ctx.attr("mode", "DCR")
    perm = {"DCR": (0, 3, 5, 1, 2, 4), "CRD": (0, 1, 3, 5, 2, 4)}.get(mode)
    if perm is None:
        ctx.fail(f"mode '{mode}' is not supported")
    ctx.emit(transpose_copy(ctx, x, y, (n, c, h // bs, bs, w // bs, bs), perm))


@op("ConstantOfShape")
def lower_constant_of_shape(ctx: Lowering) -> None:
    y = ctx.output(0)
    if ctx.has_input(0):
        check_values(ctx, 0, list(y.shape), "shape")
    value = ctx.attr("value")
    v = 0 if value is None else np.asarray(value).reshape(-1)[0]
    ctx.emit(fill(y, ctx.ptr(y), literal(v, y.dtype)))


@op("EyeLike")
def lower_eye_like(ctx: Lowering) -> None:
    y = ctx.output(0)
    if len(y.shape) != 2:
        ctx.fail("EyeLike needs a 2-D input")
    rows, cols = y.shape
    k = int(ctx.attr("k", 0))
    ctx.emit(fill(y, ctx.ptr(y), literal(0, y.dtype)))
    first_row, last_row = max(0, -k), min(rows, cols - k)  # rows r with 0 <= r + k < cols
    if last_row > first_row:
        ctx.emit(
            f"for (size_t r = {first_row}; r < {last_row}; ++r) {ctx.ptr(y)}[r*{cols} + r + {k}] = {literal(1, y.dtype)};"
            if k >= 0
            else f"for (size_t r = {first_row}; r < {last_row}; ++r) {ctx.ptr(y)}[r*{cols} + r - {-k}] = {literal(1, y.dtype)};"
        )


@op("Range")
def lower_range(ctx: Lowering) -> None:
    # the output length is static (inference saw constant start/limit/delta, or bound them); start and
    # delta may still be run-time scalars
    y = ctx.output(0)
    start, delta = scalar_expr(ctx, 0, y.dtype), scalar_expr(ctx, 2, y.dtype)
    if start is None or delta is None:
        ctx.fail("start and delta are required")
    if any(is_runtime(ctx, i) for i in range(3)):
        _range_check(ctx, y)
    if y.size == 0:
        return
    # integers in 64-bit arithmetic: i*delta must not wrap in a narrow type before it is added
    acc = y.ctype if y.dtype.kind == "f" else ("uint64_t" if y.dtype.kind == "u" else "int64_t")
    ctx.emit(
        f"const {acc} start = ({acc}){start}, delta = ({acc}){delta};\n"
        f"for (size_t i = 0; i < {y.size}; ++i) {ctx.ptr(y)}[i] = ({y.ctype})(start + ({acc})i * delta);"
    )


def _range_check(ctx: Lowering, y: Buffer) -> None:
    """C: the element count max(ceil((limit - start) / delta), 0) of runtime start/limit/delta must be
    the static length (computed exactly for integers, in double for floats as numpy's arange does)."""
    dt = y.dtype
    start, limit, delta = (scalar_expr(ctx, i, dt) for i in range(3))
    if start is None or limit is None or delta is None:
        ctx.fail("start, limit and delta must be scalars")
    n = y.size
    if dt.kind == "f":
        code = (
            f"const double r0 = (double){start}, r1 = (double){limit}, rd = (double){delta};\n"
            "double rc;\n"
            f"if (rd == 0.0) {SHAPE_ERROR}\n"
            "rc = ceil((r1 - r0) / rd);\n"
            f"if (rc != rc) {SHAPE_ERROR}\n"
            "if (rc < 0.0) rc = 0.0;\n"
            f"if (rc != {float(n)!r}) {SHAPE_ERROR}"
        )
    else:
        # exact in uint64: |limit - start| and |delta| always fit
        ct = "uint64_t" if dt.kind == "u" else "int64_t"
        code = (
            f"const {ct} r0 = ({ct}){start}, r1 = ({ct}){limit}, rd = ({ct}){delta};\n"
            "uint64_t rc = 0;\n"
            f"if (rd == 0) {SHAPE_ERROR}\n"
            "if (rd > 0 && r1 > r0) rc = ((uint64_t)r1 - (uint64_t)r0 - 1) / (uint64_t)rd + 1;\n"
            + ("" if dt.kind == "u" else "if (rd < 0 && r0 > r1) rc = ((uint64_t)r0 - (uint64_t)r1 - 1) / ((uint64_t)0 - (uint64_t)rd) + 1;\n")
            + f"if (rc != {n}u) {SHAPE_ERROR}"
        )
    ctx.emit(code)


@op("Trilu")
def lower_trilu(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    if len(x.shape) < 2:
        ctx.fail("Trilu needs an input of rank 2 or more")
    if y.size == 0:
        return
    k = scalar_expr(ctx, 1, np.int64) or "INT64_C(0)"
    upper = int(ctx.attr("upper", 1))
    *batch, rows, cols = x.shape
    keep = "d >= k" if upper else "d <= k"
    body = (
        f"const int64_t d = (int64_t)c - (int64_t)r;\n"
        f"const size_t p = b*{rows * cols} + r*{cols} + c;\n"
        f"{ctx.ptr(y)}[p] = {keep} ? {ctx.ptr(x)}[p] : {literal(0, y.dtype)};"
    )
    ctx.emit(
        f"const int64_t k = {k};\n"
        f"for (size_t b = 0; b < {prod(batch)}; ++b) for (size_t r = 0; r < {rows}; ++r) for (size_t c = 0; c < {cols}; ++c) {{\n"
        f"{body}\n}}"
    )


@op("Shape")
def lower_shape(ctx: Lowering) -> None:
    # the importer folds Shape; this only runs when its input came from a node it could not see through
    x, y = ctx.input(0), ctx.output(0)
    rank = len(x.shape)
    start, end = int(ctx.attr("start", 0)), int(ctx.attr("end", rank))
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = max(0, min(rank, end + rank if end < 0 else end))
    dims = x.shape[start:end]
    ctx.emit("\n".join(f"{ctx.ptr(y)}[{i}] = {literal(d, np.int64)};" for i, d in enumerate(dims)) or "/* empty */")


@op("Size")
def lower_size(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    ctx.emit(f"{ctx.ptr(y)}[0] = {literal(x.size, np.int64)};")


@op("Col2Im")
def lower_col2im(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    image = list(y.shape[2:])
    if ctx.has_input(1):
        check_values(ctx, 1, image, "image_shape")
    if is_runtime(ctx, 2):
        _col2im_runtime(ctx, x, y)
        return
    block = [int(b) for b in ctx.const_required(2, "block_shape").reshape(-1)]
    nd = len(block)
    if len(image) != nd or len(x.shape) != 3:
        ctx.fail("input must be (N, C*prod(block_shape), L) and image_shape match block_shape")
    dil = [int(v) for v in ctx.attr("dilations", [1] * nd)]
    st = [int(v) for v in ctx.attr("strides", [1] * nd)]
    pads = [int(v) for v in ctx.attr("pads", [0] * 2 * nd)]
    grid = [(image[d] + pads[d] + pads[nd + d] - dil[d] * (block[d] - 1) - 1) // st[d] + 1 for d in range(nd)]
    n_blocks = prod(block)
    if prod(grid) != x.shape[2] or x.shape[1] != y.shape[1] * n_blocks:
        ctx.fail(f"input shape {x.shape} does not match image {image}, block {block}")
    ctx.emit(fill(y, ctx.ptr(y), literal(0, y.dtype)))
    if y.size == 0 or x.size == 0:
        return
    kv, lv = [f"k{d}" for d in range(nd)], [f"l{d}" for d in range(nd)]
    checks = " || ".join(f"p{d} < 0 || p{d} >= {image[d]}" for d in range(nd))
    coords = "\n".join(
        f"const ptrdiff_t p{d} = (ptrdiff_t)(l{d}*{st[d]} + k{d}*{dil[d]}) - {pads[d]};" for d in range(nd)
    )
    body = (
        f"{coords}\nif ({checks}) continue;\n"
        f"{ctx.ptr(y)}[nc*{prod(image)} + {affine([f'(size_t)p{d}' for d in range(nd)], strides(tuple(image)))}] += "
        f"{ctx.ptr(x)}[(nc*{n_blocks} + {affine(kv, strides(tuple(block)))})*{prod(grid)} + {affine(lv, strides(tuple(grid)))}];"
    )
    inner = loops(grid, body, var="l")
    inner = loops(block, inner, var="k")
    ctx.emit(f"for (size_t nc = 0; nc < {y.shape[0] * y.shape[1]}; ++nc) {inner}")


def _col2im_runtime(ctx: Lowering, x: Buffer, y: Buffer) -> None:
    """Col2Im with a runtime block_shape: the C checks it against the static shapes (channels, number
    of blocks), then loops over blocks and grid positions with runtime bounds."""
    image = list(y.shape[2:])
    nd = len(image)
    blk = ctx.input(2)
    if blk.dtype.kind not in "iu" or blk.size != nd or len(x.shape) != 3 or len(y.shape) < 3:
        ctx.fail("input must be (N, C*prod(block_shape), L) and block_shape have one value per image axis")
    dil = [int(v) for v in ctx.attr("dilations", [1] * nd)]
    st = [int(v) for v in ctx.attr("strides", [1] * nd)]
    pads = [int(v) for v in ctx.attr("pads", [0] * 2 * nd)]
    ch, cols, length = y.shape[1], x.shape[1], x.shape[2]
    p = ctx.ptr(blk)
    code = []
    for d in range(nd):
        # block dims bounded by C*prod(block) first, so that nothing below overflows
        code.append(f"const int64_t b{d} = (int64_t){p}[{d}];\nif (b{d} < 1 || b{d} > {max(cols, 1)}) {SHAPE_ERROR}")
    code.append("int64_t nb = 1;")
    code += [f"nb *= b{d};\nif (nb > {max(cols, 1)}) {SHAPE_ERROR}" for d in range(nd)]
    code.append(f"if (nb * {ch} != {cols}) {SHAPE_ERROR}")
    for d in range(nd):
        num = f"{image[d] + pads[d] + pads[nd + d] - 1} - {dil[d]} * (b{d} - 1)"
        code.append(f"const int64_t g{d} = ({num}) < 0 ? 0 : ({num}) / {st[d]} + 1;")
    code.append(f"if ({' || '.join(f'g{d} < 1' for d in range(nd))} || {' * '.join(f'g{d}' for d in range(nd))} != {length}) {SHAPE_ERROR}")
    code.append(fill(y, ctx.ptr(y), literal(0, y.dtype)))
    if y.size and x.size:
        istr = strides(tuple(image))
        checks = " || ".join(f"q{d} < 0 || q{d} >= {image[d]}" for d in range(nd))
        kflat = "k0"
        lflat = "l0"
        for d in range(1, nd):
            kflat = f"({kflat}) * b{d} + k{d}"
            lflat = f"({lflat}) * g{d} + l{d}"
        coords = "\n".join(f"const int64_t q{d} = l{d} * {st[d]} + k{d} * {dil[d]} - {pads[d]};" for d in range(nd))
        dst = " + ".join(f"(size_t)q{d} * {istr[d]}" if istr[d] != 1 else f"(size_t)q{d}" for d in range(nd))
        body = (
            f"{coords}\nif ({checks}) continue;\n"
            f"{ctx.ptr(y)}[nc*{prod(image)} + {dst}] += {ctx.ptr(x)}[(nc*(size_t)nb + (size_t)({kflat}))*{length} + (size_t)({lflat})];"
        )
        for d in reversed(range(nd)):
            body = f"for (int64_t l{d} = 0; l{d} < g{d}; ++l{d}) {{\n{body}\n}}"
        for d in reversed(range(nd)):
            body = f"for (int64_t k{d} = 0; k{d} < b{d}; ++k{d}) {{\n{body}\n}}"
        code.append(f"for (size_t nc = 0; nc < {y.shape[0] * ch}; ++nc) {{\n{body}\n}}")
    ctx.emit("\n".join(code))
