"""Data movement with static offsets: Transpose, Concat, Split, Slice, Expand, Tile, Pad, DepthToSpace,
SpaceToDepth, CenterCropPad, fills (ConstantOfShape, EyeLike, Range), Trilu, Col2Im, Shape/Size.

Most of them are one strided copy: every source and destination offset is an affine function of the
output coordinates, so they share `strided_copy`, which merges axes and copies whole rows with memcpy."""

from __future__ import annotations

import re

import numpy as np

from ..ir import ARENA, Buffer
from .common import broadcast_strides, collapse, literal, normalize_axis, strides
from .registry import Lowering
from .registry import op as _register

# return code of <prefix>_run when a runtime index is out of range (Gather, Scatter, ...)
INDEX_ERROR = "return 1; /* index out of range */"


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
        if x.size:
            start = [0] * len(y.shape)
            start[axis] = at
            ctx.emit(copy_region(ctx, x, y, x.shape, start, [0] * len(x.shape)))
        at += x.shape[axis] if x.shape else 0
    if at != (y.shape[axis] if y.shape else 0):
        ctx.fail(f"inputs add up to {at} along axis {axis}, the output has {y.shape[axis]}")


@op("Split")
def lower_split(ctx: Lowering) -> None:
    # the output shapes already hold the split sizes, whichever way they were given
    x = ctx.input(0)
    axis = normalize_axis(int(ctx.attr("axis", 0)), len(x.shape))
    at = 0
    for k in range(len(ctx.node.outputs)):
        if not ctx.has_output(k):
            continue
        y = ctx.output(k)
        start = [0] * len(x.shape)
        start[axis] = at
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


@op("Slice")
def lower_slice(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    rank = len(x.shape)
    if ctx.opset < 10 or "starts" in ctx.node.attrs:
        starts, ends, axes, steps = ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"), None
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
    ctx.emit(strided_copy(y.dtype.itemsize, y.shape, ctx.ptr(y), strides(y.shape), 0, ctx.ptr(x), broadcast_strides(x.shape, y.shape), 0))


@op("Tile")
def lower_tile(ctx: Lowering) -> None:
    # out axis k splits into (repeat r_k, element d_k): dst strides (d_k*os_k, os_k), src (0, is_k)
    x, y = ctx.input(0), ctx.output(0)
    if y.size == 0:
        return
    xs, ys = strides(x.shape), strides(y.shape)
    shape, ss, ds = [], [], []
    for d, o, s_in, s_out in zip(x.shape, y.shape, xs, ys):
        if o % d:
            ctx.fail(f"output dim {o} is not a multiple of input dim {d}")
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
        pads = ints(ctx, "pads", 1)
        value = scalar_expr(ctx, 2, y.dtype) or literal(0, y.dtype)
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
    if y.size == 0:
        return
    # integers in 64-bit arithmetic: i*delta must not wrap in a narrow type before it is added
    acc = y.ctype if y.dtype.kind == "f" else ("uint64_t" if y.dtype.kind == "u" else "int64_t")
    ctx.emit(
        f"const {acc} start = ({acc}){start}, delta = ({acc}){delta};\n"
        f"for (size_t i = 0; i < {y.size}; ++i) {ctx.ptr(y)}[i] = ({y.ctype})(start + ({acc})i * delta);"
    )


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
    block = [int(b) for b in ctx.const_required(2, "block_shape").reshape(-1)]
    image = list(y.shape[2:])
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
