"""Pooling: MaxPool (with Indices), AveragePool, LpPool, their Global forms, and MaxUnpool.
Generated loops with literal sizes: one window loop per output pixel, bounds checked per axis, except 2-D
MaxPool without Indices, which runs in loops that vectorise: row maxima then column maxima where that saves compares
(large kernels), else the maxima down each output row's window rows then across them."""

from __future__ import annotations

import numpy as np

from .common import is_float, literal, math_fn, strides, sum_loop
from .registry import Lowering, op

MAX_DTYPES = ("float32", "float64", "int8", "uint8")
FLOAT_DTYPES = ("float32", "float64")
# columns first: windows of at most this many rows, where all of them are in the input, take the rows' maxima in one
# loop over the row, not a pass over the scratch row per input row (squeezenet's 3x3 pools 1.2-1.4x faster natively)
WHOLE_WINDOW_ROWS = 4


def _check_dtype(ctx: Lowering, allowed: tuple[str, ...]) -> np.dtype:
    dt = np.dtype(ctx.input(0).dtype)
    if dt.name not in allowed:
        ctx.fail(f"dtype {dt.name} is not supported ({', '.join(allowed)} are)")
    return dt


def pool_pads(ctx: Lowering, ins: list[int], outs: list[int], kernel: list[int], st: list[int], dil: list[int]):
    """(begin, end) padding per spatial axis from pads / auto_pad."""
    nsp = len(ins)
    auto_pad = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, (o - 1) * s + (k - 1) * d + 1 - i) for o, s, k, d, i in zip(outs, st, kernel, dil, ins)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        return begin, [t - b for t, b in zip(total, begin)]
    if auto_pad == "VALID":
        return [0] * nsp, [0] * nsp
    pads = [int(v) for v in (ctx.attr("pads") or [0] * (2 * nsp))]
    return pads[:nsp], pads[nsp:]


def _pool(ctx: Lowering, kind: str) -> None:
    """kind: max, avg or lp."""
    x, y = ctx.input(0), ctx.output(0)
    dt = _check_dtype(ctx, MAX_DTYPES if kind == "max" else FLOAT_DTYPES)
    nsp = len(x.shape) - 2
    if nsp < 1:
        ctx.fail(f"input must be N x C x spatial (shape {x.shape})")
    kernel = [int(v) for v in ctx.attr("kernel_shape", [])]
    if len(kernel) != nsp:
        ctx.fail(f"kernel_shape {kernel} does not match the {nsp} spatial axes")
    st = [int(v) for v in (ctx.attr("strides") or [1] * nsp)]
    dil = [int(v) for v in (ctx.attr("dilations") or [1] * nsp)]
    ins, outs = [int(v) for v in x.shape[2:]], [int(v) for v in y.shape[2:]]
    begin, end = pool_pads(ctx, ins, outs, kernel, st, dil)
    if y.size == 0:
        return
    ct = y.ctype
    planes = int(x.shape[0] * x.shape[1])
    sin, sout = int(np.prod(ins)), int(np.prod(outs))
    # separable when it saves compares: rows then columns cost IH*OW*KW + OH*OW*KH, windows OH*OW*KH*KW (a 3x3
    # stride-2 pool does the same work both ways, and the window loop was faster there: no scratch pass)
    separable_cost = ins[0] * outs[1] * kernel[1] + outs[0] * outs[1] * kernel[0] if nsp == 2 else 0
    if kind == "max" and nsp == 2 and not ctx.has_output(1) and dil == [1, 1]:
        if 4 * separable_cost < 3 * sout * kernel[0] * kernel[1]:
            ctx.emit(_indent(_max_pool_separable(ctx, dt, planes, ins, outs, kernel, st, begin)))
            return
        if not ctx.attr("__window_loop__"):  # (passes/pool_loops.py: narrow rows of a native build keep the loop)
            ctx.emit(_indent(_max_pool_columns_first(ctx, dt, planes, ins, outs, kernel, st, begin)))
            return
    in_st = strides(tuple(ins))
    with_index = kind == "max" and ctx.has_output(1)
    count_pad = kind == "avg" and bool(ctx.attr("count_include_pad", 0))
    p = int(ctx.attr("p", 2)) if kind == "lp" else 0
    fabs, pw = math_fn("fabs", dt), math_fn("pow", dt)

    lines = [f"for (size_t nc = 0; nc < {planes}; ++nc) {{"]
    lines.append(f"const {ct} *xp = {ctx.ptr(x)} + nc * {sin};")
    lines.append(f"{ct} *yp = {ctx.ptr(y)} + nc * {sout};")
    if with_index:
        lines.append(f"int64_t *ip = {ctx.ptr(ctx.output(1))} + nc * {sout};")
    lines.append("size_t o = 0;")
    for a in range(nsp):
        lines.append(f"for (size_t o{a} = 0; o{a} < {outs[a]}; ++o{a}) {{")
        lines.append(f"const ptrdiff_t s{a} = (ptrdiff_t)(o{a} * {st[a]}) - {begin[a]};")
    if kind == "max":
        lines += [f"{ct} m = 0;", "ptrdiff_t at = -1;"]
    else:
        lines += [f"{ct} acc = 0;", "size_t cnt = 0;"]
    for a in range(nsp):
        lo, hi = (-begin[a], ins[a] + end[a]) if count_pad else (0, ins[a])
        lines.append(f"for (size_t k{a} = 0; k{a} < {kernel[a]}; ++k{a}) {{")
        lines.append(f"const ptrdiff_t i{a} = s{a} + (ptrdiff_t)(k{a} * {dil[a]});")
        lines.append(f"if (i{a} < {lo} || i{a} >= {hi}) continue;")
    flat = " + ".join(f"i{a} * {in_st[a]}" if in_st[a] != 1 else f"i{a}" for a in range(nsp))
    if kind == "max":
        lines += [
            f"const ptrdiff_t at1 = {flat};",
            "if (at < 0 || xp[at1] > m) {",
            "    m = xp[at1];",
            "    at = at1;",
            "}",
        ]
    else:
        if kind == "avg":
            term = "xp[at1]"
        elif p == 2:
            term = "xp[at1] * xp[at1]"
        elif p == 1:
            term = f"{fabs}(xp[at1])"
        else:
            term = f"{pw}({fabs}(xp[at1]), {literal(p, dt)})"
        lines.append("++cnt;")
        if count_pad:
            inside = " && ".join(f"i{a} >= 0 && i{a} < {ins[a]}" for a in range(nsp))
            lines.append(f"if ({inside}) {{")
            lines.append(f"    const ptrdiff_t at1 = {flat};")
            lines.append(f"    acc += {term};")
            lines.append("}")
        else:
            lines.append(f"const ptrdiff_t at1 = {flat};")
            lines.append(f"acc += {term};")
    lines += ["}"] * nsp
    if kind == "max":
        lines.append("yp[o] = m;")
        if with_index:
            if int(ctx.attr("storage_order", 0)) == 1:
                # column-major position of the same spatial index
                col_st = [int(np.prod(ins[:a])) for a in range(nsp)]
                parts = []
                for a in range(nsp):
                    parts.append(f"(at / {in_st[a]} % {ins[a]}) * {col_st[a]}")
                lines.append(f"ip[o] = at < 0 ? -1 : (int64_t)(nc * {sin}) + (int64_t)({' + '.join(parts)});")
            else:
                lines.append(f"ip[o] = at < 0 ? -1 : (int64_t)(nc * {sin}) + (int64_t)at;")
    elif kind == "avg":
        lines.append(f"yp[o] = cnt ? acc / ({ct})cnt : 0;")
    else:
        if p == 1:
            lines.append("yp[o] = acc;")
        elif p == 2:
            lines.append(f"yp[o] = {math_fn('sqrt', dt)}(acc);")
        else:
            lines.append(f"yp[o] = {pw}(acc, {literal(1.0 / p, dt)});")
        lines.append("(void)cnt;")
    lines.append("++o;")
    lines += ["}"] * nsp
    lines.append("}")
    ctx.emit(_indent(lines))


def _tap_range(count: int, size: int, stride: int, off: int) -> tuple[int, int]:
    """[lo, hi): the outputs o < count with 0 <= o*stride + off < size (off: the tap minus the padding)."""
    lo = 0 if off >= 0 else (-off + stride - 1) // stride
    hi = min(count, (size - 1 - off) // stride + 1) if size - 1 - off >= 0 else 0
    return (lo, hi) if hi > lo else (0, 0)


def _max_pool_separable(ctx: Lowering, dt: np.dtype, planes: int, ins: list[int], outs: list[int],
                        kernel: list[int], st: list[int], begin: list[int]) -> list[str]:
    """2-D MaxPool without Indices as two passes of 1-D maxima (a window's maximum is the maximum of its rows'):
    each input row's maxima over the kernel width into scratch, then the maxima of kernel-height runs of those,
    KH + KW compares per output instead of KH * KW, in loops over output columns with literal bounds that
    vectorise (SPPF's 5x5 pools: 36x slower than onnxruntime one window at a time). Same values as the direct
    loop: each window starts from its first in-bounds element (so a NaN there is kept and NaNs after it are not),
    then takes any greater one; a window wholly in the padding gives 0."""
    (ih_n, iw_n), (oh_n, ow_n), (kh_n, kw_n), (sh, sw), (ph, pw) = ins, outs, kernel, st, begin
    x, y = ctx.input(0), ctx.output(0)
    ct = y.ctype
    tmp = ctx.scratch(ih_n * ow_n * dt.itemsize, dt)
    col_taps, c_lo, c_hi = _column_taps(ow_n, iw_n, kw_n, sw, pw)
    lines = [f"for (size_t nc = 0; nc < {planes}; ++nc) {{",
             f"const {ct} *xp = {ctx.ptr(x)} + nc * {ih_n * iw_n};",
             f"{ct} *yp = {ctx.ptr(y)} + nc * {oh_n * ow_n};",
             f"for (size_t ih = 0; ih < {ih_n}; ++ih) {{",
             f"const {ct} *row = xp + ih * {iw_n};",
             f"{ct} *t = {tmp} + ih * {ow_n};"]
    if c_lo > 0 or c_hi < ow_n:
        lines.append(f"for (size_t ow = 0; ow < {ow_n}; ++ow) t[ow] = 0;")
    first_col = f"c < {pw} ? 0 : c - {pw}" if pw else "c"  # (no `c < 0`: -Wtype-limits)
    lines.append(f"for (size_t ow = {c_lo}; ow < {c_hi}; ++ow) {{")
    lines.append(f"const size_t c = ow * {sw};")
    lines.append(f"t[ow] = row[{first_col}];")
    lines.append("}")
    for k, (lo, hi) in enumerate(col_taps):
        if hi > lo:  # the range keeps the column ow*sw + k - pw in [0, iw), so the unsigned index never wraps
            col = f"ow * {sw} - {pw - k}" if pw > k else f"ow * {sw} + {k - pw}"
            lines.append(f"for (size_t ow = {lo}; ow < {hi}; ++ow) {{")
            lines.append(f"const {ct} v = row[{col}];")
            lines.append("t[ow] = v > t[ow] ? v : t[ow];")
            lines.append("}")
    lines.append("}")
    lines += [f"for (size_t oh = 0; oh < {oh_n}; ++oh) {{",
              f"{ct} *out = yp + oh * {ow_n};",
              *_window_rows(ih_n, ow_n, kh_n, sh, ph),
              f"const {ct} *t = {tmp} + r0 * {ow_n};",
              f"for (ow = 0; ow < {ow_n}; ++ow) out[ow] = t[ow];",
              "for (r = r0 + 1; r < r1; ++r) {",
              f"t += {ow_n};",
              f"for (ow = 0; ow < {ow_n}; ++ow) out[ow] = t[ow] > out[ow] ? t[ow] : out[ow];",
              "}",
              "}",
              "}"]
    return lines


def _column_taps(ow_n: int, iw_n: int, kw_n: int, sw: int, pw: int) -> tuple[list[tuple[int, int]], int, int]:
    """Each tap column's output range, and [c_lo, c_hi): the outputs whose window has an in-bounds column."""
    col_taps = [_tap_range(ow_n, iw_n, sw, k - pw) for k in range(kw_n)]
    c_lo = min((lo for lo, hi in col_taps if hi > lo), default=0)
    c_hi = max((hi for lo, hi in col_taps if hi > lo), default=0)
    return col_taps, c_lo, c_hi


def _window_rows(ih_n: int, ow_n: int, kh_n: int, sh: int, ph: int) -> list[str]:
    """C for output row oh's window rows [r0, r1) of the input, or a row of zeros and `continue` when the window is
    wholly in the padding; declares r and ow. Unsigned arithmetic on the padded row index oh*sh (gcc 12 -fwrapv,
    which Python's cffi builds pass, vectorised a signed version of the loop after it wrongly)."""
    return [f"const size_t top = oh * {sh}, r0 = {f'top < {ph} ? 0 : top - {ph}' if ph else 'top'};",
            f"const size_t end = {f'top + {kh_n} <= {ph} ? 0 : top + {kh_n} - {ph}' if ph else f'top + {kh_n}'};",
            f"const size_t r1 = end < {ih_n} ? end : {ih_n};",
            "size_t r, ow;",
            "if (r0 >= r1) {",
            f"for (ow = 0; ow < {ow_n}; ++ow) out[ow] = 0;",
            "continue;",
            "}"]


def _max_pool_columns_first(ctx: Lowering, dt: np.dtype, planes: int, ins: list[int], outs: list[int],
                            kernel: list[int], st: list[int], begin: list[int]) -> list[str]:
    """2-D MaxPool without Indices, where taking rows' maxima first saves nothing (3x3 or 2x2, stride 2): per output
    row, the maxima down its window's input rows over the whole row width (contiguous loops that vectorise), then
    each output's maximum of its window's columns of those, the outputs whose window is inside the row in one loop
    of literal offsets. One window at a time, with each tap's bounds checked and its position kept, ran 3-4x slower
    than onnxruntime's in wasm. Each window starts from its first in-bounds element and takes any greater one, as
    the separable path (a NaN at that element is kept); a window wholly in the padding gives 0."""
    (ih_n, iw_n), (oh_n, ow_n), (kh_n, kw_n), (sh, sw), (ph, pw) = ins, outs, kernel, st, begin
    x, y = ctx.input(0), ctx.output(0)
    ct = y.ctype
    tmp = ctx.scratch(iw_n * dt.itemsize, dt)
    col_taps, c_lo, c_hi = _column_taps(ow_n, iw_n, kw_n, sw, pw)
    # [i_lo, i_hi): the outputs all of whose taps are in the row; the others check each tap
    i_lo = max(lo for lo, _hi in col_taps)
    i_hi = min(hi for _lo, hi in col_taps)
    lines = [f"for (size_t nc = 0; nc < {planes}; ++nc) {{",
             f"const {ct} *xp = {ctx.ptr(x)} + nc * {ih_n * iw_n};",
             f"{ct} *yp = {ctx.ptr(y)} + nc * {oh_n * ow_n};",
             f"{ct} *t = {tmp};",
             f"for (size_t oh = 0; oh < {oh_n}; ++oh) {{",
             f"{ct} *out = yp + oh * {ow_n};",
             *_window_rows(ih_n, ow_n, kh_n, sh, ph),
             "size_t c;"]
    partial = [f"for (c = 0; c < {iw_n}; ++c) t[c] = xp[r0 * {iw_n} + c];",
               "for (r = r0 + 1; r < r1; ++r) {",
               f"const {ct} *row = xp + r * {iw_n};",
               f"for (c = 0; c < {iw_n}; ++c) t[c] = row[c] > t[c] ? row[c] : t[c];",
               "}"]
    if 2 <= kh_n <= WHOLE_WINDOW_ROWS:  # a window of all its rows: one pass, the rows' maxima in a register
        rows = [f"a{k} = xp + (r0 + {k}) * {iw_n}" for k in range(kh_n)]
        lines += [f"if (r1 - r0 == {kh_n}) {{",
                  f"const {ct} *{', *'.join(rows)};",
                  f"for (c = 0; c < {iw_n}; ++c) {{",
                  f"{ct} m = a0[c];",
                  *[f"m = a{k}[c] > m ? a{k}[c] : m;" for k in range(1, kh_n)],
                  "t[c] = m;",
                  "}",
                  "} else {",
                  *partial,
                  "}"]
    else:
        lines += partial
    if c_lo > 0 or c_hi < ow_n:
        lines.append(f"for (ow = 0; ow < {ow_n}; ++ow) out[ow] = 0;")
    if i_lo < i_hi:  # the window's first column is ow*sw - pw >= 0 here
        first = f"ow * {sw} - {pw}" if pw else f"ow * {sw}"
        lines += [f"for (ow = {i_lo}; ow < {i_hi}; ++ow) {{",
                  f"const {ct} *v = t + {first};",
                  f"{ct} m = v[0];"]
        lines += [f"m = v[{k}] > m ? v[{k}] : m;" for k in range(1, kw_n)]
        lines += ["out[ow] = m;", "}"]
    edges = [(c_lo, min(i_lo, c_hi)), (max(i_hi, c_lo, i_lo), c_hi)] if i_lo < i_hi else [(c_lo, c_hi)]
    for lo, hi in edges:
        if hi > lo:  # columns [c0, c1) of the window inside the row, in unsigned arithmetic as above
            lines += [f"for (ow = {lo}; ow < {hi}; ++ow) {{",
                      f"const size_t left = ow * {sw}, c0 = {f'left < {pw} ? 0 : left - {pw}' if pw else 'left'};",
                      f"const size_t c_end = {f'left + {kw_n} - {pw}' if pw else f'left + {kw_n}'};",
                      f"const size_t c1 = c_end < {iw_n} ? c_end : {iw_n};",
                      f"{ct} m = t[c0];",
                      "for (c = c0 + 1; c < c1; ++c) m = t[c] > m ? t[c] : m;",
                      "out[ow] = m;",
                      "}"]
    lines += ["}", "}"]
    return lines


def _indent(lines: list[str]) -> str:
    """Indent generated C by brace depth, for readable model.c files."""
    out, depth = [], 0
    for ln in lines:
        for sub in ln.split("\n"):
            s = sub.strip()
            if s.startswith("}"):
                depth -= 1
            out.append("    " * max(depth, 0) + s)
            depth += s.count("{") - s.count("}") + (1 if s.startswith("}") else 0)
    return "\n".join(out)


@op("MaxPool")
def lower_maxpool(ctx: Lowering) -> None:
    _pool(ctx, "max")


@op("AveragePool")
def lower_averagepool(ctx: Lowering) -> None:
    _pool(ctx, "avg")


@op("LpPool")
def lower_lppool(ctx: Lowering) -> None:
    _pool(ctx, "lp")


def _global(ctx: Lowering, kind: str) -> None:
    x, y = ctx.input(0), ctx.output(0)
    dt = _check_dtype(ctx, MAX_DTYPES if kind == "max" else FLOAT_DTYPES)
    if len(x.shape) < 2:
        ctx.fail(f"input must be N x C x spatial (shape {x.shape})")
    if y.size == 0:
        return
    planes, inner = int(x.shape[0] * x.shape[1]), int(np.prod(x.shape[2:], dtype=np.int64))
    ct, px, py = y.ctype, ctx.ptr(x), ctx.ptr(y)
    if inner == 0:
        ctx.fail("empty spatial axes")
    p = int(ctx.attr("p", 2))
    if kind == "max":
        body = f"{ct} m = xr[0];\nfor (size_t i = 1; i < {inner}; ++i) if (xr[i] > m) m = xr[i];\n{py}[nc] = m;"
    elif kind == "avg":
        body = f"{ct} s = 0;\n{sum_loop('s', ct, inner, 'xr[i]', 'i')}\n{py}[nc] = s / {literal(inner, dt)};"
    else:
        fabs, pw = math_fn("fabs", dt), math_fn("pow", dt)
        term = "xr[i] * xr[i]" if p == 2 else (f"{fabs}(xr[i])" if p == 1 else f"{pw}({fabs}(xr[i]), {literal(p, dt)})")
        fin = "s" if p == 1 else (f"{math_fn('sqrt', dt)}(s)" if p == 2 else f"{pw}(s, {literal(1.0 / p, dt)})")
        body = f"{ct} s = 0;\nfor (size_t i = 0; i < {inner}; ++i) s += {term};\n{py}[nc] = {fin};"
    ctx.emit(f"for (size_t nc = 0; nc < {planes}; ++nc) {{\nconst {ct} *xr = {px} + nc * {inner};\n{body}\n}}")


@op("GlobalMaxPool")
def lower_global_maxpool(ctx: Lowering) -> None:
    _global(ctx, "max")


@op("GlobalAveragePool")
def lower_global_averagepool(ctx: Lowering) -> None:
    _global(ctx, "avg")


@op("GlobalLpPool")
def lower_global_lppool(ctx: Lowering) -> None:
    _global(ctx, "lp")


@op("MaxUnpool")
def lower_maxunpool(ctx: Lowering) -> None:
    """y = 0, then y[I[i]] = x[i]: indices are flat positions in the output, as MaxPool produced them on
    an input of the output's shape. With an explicit output_shape this is onnxruntime's and PyTorch's
    reading (onnxruntime PR #2193, onnx issue #2398); onnx's reference instead scatters into the shape the
    attributes infer and pads that, which its backend case test_maxunpool_export_with_output_shape
    expects. A runtime output_shape is checked against the static output; an index outside it returns 1."""
    x, ind, y = ctx.input(0), ctx.input(1), ctx.output(0)
    if not is_float(x.dtype) and np.dtype(x.dtype).name not in MAX_DTYPES:
        ctx.fail(f"dtype {np.dtype(x.dtype).name} is not supported")
    if ind.size != x.size:
        ctx.fail(f"indices shape {ind.shape} differs from X's {x.shape}")
    if ctx.has_input(2):
        v = ctx.const(2)
        shp = ctx.input(2)
        if v is not None:
            if [int(a) for a in np.asarray(v).reshape(-1)] != list(y.shape):
                ctx.fail(f"output_shape {np.asarray(v).tolist()} differs from the static output shape {y.shape}")
        else:
            if shp.size != len(y.shape) or shp.dtype.kind not in "iu":
                ctx.fail(f"output_shape must hold {len(y.shape)} integers")
            cond = " || ".join(f"(int64_t){ctx.ptr(shp)}[{k}] != {literal(d, np.int64)}" for k, d in enumerate(y.shape))
            ctx.emit(f"if ({cond}) return 1; /* output_shape disagrees with the compiled shape */")
    if y.size == 0:
        return
    ctx.emit(f"memset({ctx.ptr(y)}, 0, {y.nbytes});")
    if x.size == 0:
        return
    ctx.emit(
        f"for (size_t i = 0; i < {x.size}; ++i) {{\n"
        f"    const int64_t at = (int64_t){ctx.ptr(ind)}[i];\n"
        f"    if (at < 0 || at >= {literal(y.size, np.int64)}) return 1; /* index out of range */\n"
        f"    {ctx.ptr(y)}[at] = {ctx.ptr(x)}[i];\n"
        "}"
    )
