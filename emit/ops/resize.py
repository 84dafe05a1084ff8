"""Resize (opsets 10-19) and Upsample (7, 9): every mode, coordinate transformation, nearest rounding,
antialias, axes, keep_aspect_ratio_policy and tf_crop_and_resize extrapolation, at any rank.

Resizing is separable: each output element is a sum over a small grid of input taps whose weight is the
product of one weight per resized axis. Per axis, the compiler computes the taps (input offset and
weight of every output position) in numpy now and emits them as static const tables; the C walks the
output once. Nearest mode (one tap of weight 1 per position) becomes a pure gather.
When scales, sizes or roi are runtime values (the output shape is still static), the C computes the
same taps at run time into arena scratch and returns 1 if the values imply another output shape."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ir import Buffer, c_type
from .common import literal, strides
from .registry import Lowering, op

# legacy rounding of Upsample / Resize-10 (onnxruntime's "simple"): floor when upsampling, ceil when
# downsampling an axis; emit.importer marks the Resize nodes it upgrades from those ops with it
SIMPLE = "simple"
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", SIMPLE)
COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_crop_and_resize")


@dataclass
class Params:
    mode: str = "nearest"
    coord: str = "half_pixel"
    nearest: str = "round_prefer_floor"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    extrapolation: float = 0.0
    antialias: bool = False


@dataclass
class AxisTaps:
    """Taps of one output axis: offsets[out, n] (input element offsets) and weights[out, n];
    weights is None for a gather (one tap of weight 1); extrap[out] marks tf_crop_and_resize positions
    outside the input."""

    offsets: np.ndarray
    weights: np.ndarray | None
    extrap: np.ndarray | None


# --- per-axis coefficients (all float64, as the ONNX reference computes them) ---


def _source_coords(p: Params, out_len: int, in_len: int, scale: float, roi: tuple[float, float] | None) -> np.ndarray:
    """Input coordinate of every output position."""
    y = np.arange(out_len, dtype=np.float64)
    out_w = scale * in_len  # the unrounded output length
    c = p.coord
    if c == "align_corners":
        return np.zeros(out_len) if out_w == 1 else y * (in_len - 1) / (out_w - 1)
    if c == "asymmetric":
        return y / scale
    if c == "tf_crop_and_resize":
        assert roi is not None
        start, end = roi
        if out_w == 1:
            x = np.full(out_len, (end - start) * (in_len - 1) / 2)
        else:
            x = y * (end - start) * (in_len - 1) / (out_w - 1)
        return x + start * (in_len - 1)
    if c == "pytorch_half_pixel":
        # the spec and onnxruntime map a length-1 output to 0 (the ONNX reference uses -0.5)
        return np.zeros(out_len) if out_len == 1 else (y + 0.5) / scale - 0.5
    if c == "half_pixel":
        return (y + 0.5) / scale - 0.5
    # half_pixel_symmetric: the centre of the rounded output maps to the centre of the input
    offset = in_len / 2 * (1 - out_len / out_w)
    return offset + (y + 0.5) / scale - 0.5


def _cubic(a: float, d: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel at distances d."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _coeffs(p: Params, ratio: np.ndarray, scale: float) -> np.ndarray:
    """[out, n] weights of the n taps starting n/2-1 left of floor(x); ratio = x - floor(x) in (0, 1]
    (an integer x counts as ratio 1 of the pixel to its left)."""
    r = ratio[:, None]
    if p.mode == "nearest":
        mode = p.nearest
        if mode == SIMPLE:
            mode = "ceil" if scale < 1 else "floor"
        right = {
            "round_prefer_floor": r > 0.5,
            "round_prefer_ceil": r >= 0.5,
            "floor": np.zeros_like(r, dtype=bool),
            "ceil": np.ones_like(r, dtype=bool),
        }[mode] | (r == 1.0)
        return np.concatenate([~right, right], axis=1).astype(np.float64)
    if not p.antialias or scale >= 1:
        if p.mode == "linear":
            return np.concatenate([1 - r, r], axis=1)
        return _cubic(p.cubic_a, np.concatenate([r + 1, r, 1 - r, 2 - r], axis=1))
    # antialias when downsampling: the kernel is stretched by 1/scale and renormalised
    support = 1.0 if p.mode == "linear" else 2.0
    first = int(math.floor(-support / scale) + 1)
    taps = np.arange(first, 2 - first, dtype=np.float64)[None, :]
    dist = scale * (taps - r)
    k = np.clip(1 - np.abs(dist), 0, 1) if p.mode == "linear" else _cubic(p.cubic_a, dist)
    return k / k.sum(axis=1, keepdims=True)


def axis_taps(p: Params, in_len: int, out_len: int, scale: float, roi: tuple[float, float] | None, stride: int) -> AxisTaps:
    x = _source_coords(p, out_len, in_len, scale, roi)
    floor = np.floor(x)
    ratio = np.where(x == floor, 1.0, x - floor)
    w = _coeffs(p, ratio, scale)
    n = w.shape[1]
    # the window's first tap: n/2 - 1 left of floor(x), or n/2 left of an integer x; found on x
    # shifted right by the edge padding, as the ONNX reference does (it differs when x + pad rounds)
    pad = (n + 1) // 2
    xp = x + pad
    fp = np.floor(xp)
    first = (np.where(xp == fp, fp - n // 2, fp - n // 2 + 1) - pad).astype(np.int64)
    idx = first[:, None] + np.arange(n)[None, :]
    if p.exclude_outside:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    idx = np.clip(idx, 0, in_len - 1)  # edge padding
    extrap = None
    if p.coord == "tf_crop_and_resize":
        outside = (x < 0) | (x > in_len - 1)
        extrap = outside if outside.any() else None
    nonzero = w != 0
    if np.all(nonzero.sum(axis=1) == 1) and np.all(w[nonzero] == 1.0):  # a pure gather
        return AxisTaps(idx[nonzero] * stride, None, extrap)
    used = nonzero.any(axis=0)  # drop tap columns that are zero everywhere
    return AxisTaps(idx[:, used] * stride, w[:, used], extrap)


def is_identity(in_len: int, out_len: int, scale: float, roi: tuple[float, float] | None) -> bool:
    return (
        out_len == in_len
        and math.isclose(scale, 1.0)
        and (roi is None or (math.isclose(roi[0], 0.0, abs_tol=1e-9) and math.isclose(roi[1], 1.0)))
    )


# --- C ---


def _table(name: str, ctype: str, values, dtype) -> str:
    items = ", ".join(literal(v, dtype) for v in np.asarray(values).ravel())
    return f"static const {ctype} {name}[{max(len(np.asarray(values).ravel()), 1)}] = {{ {items} }};"


def _replication(in_shape: tuple[int, ...], out_shape: tuple[int, ...], axes: list[AxisTaps | None],
                 in_st: list[int]) -> tuple[int, int] | None:
    """(fh, fw) when the resize repeats every element of the last two axes fh x fw times (nearest upsampling by
    whole factors, where output i reads input i // f) and keeps the other axes; else None."""
    if len(in_shape) < 2 or any(t is not None for t in axes[:-2]):
        return None
    factors = []
    for a in (len(in_shape) - 2, len(in_shape) - 1):
        t = axes[a]
        if t is None:
            factors.append(1)
            continue
        f = out_shape[a] // in_shape[a]
        if t.weights is not None or t.extrap is not None or f * in_shape[a] != out_shape[a] or \
                not np.array_equal(np.asarray(t.offsets).reshape(-1), (np.arange(out_shape[a]) // f) * in_st[a]):
            return None
        factors.append(f)
    return factors[0], factors[1]


def _replicate(ctx: Lowering, in_shape: tuple[int, ...], factors: tuple[int, int]) -> str:
    """Nearest upsampling by whole factors: each input row's elements repeated fw times into one output row, which
    is then copied fh - 1 times (the gather through offset tables ran one scalar load per output element)."""
    x, y = ctx.input(0), ctx.output(0)
    ct = y.ctype
    fh, fw = factors
    ih_n, iw_n = in_shape[-2], in_shape[-1]
    ow_n = iw_n * fw
    planes = int(np.prod(in_shape[:-2], dtype=np.int64))
    stores = " ".join(f"row[iw * {fw} + {k}] = v;" for k in range(fw))
    lines = [f"for (size_t c = 0; c < {planes * ih_n}; ++c) {{",
             f"const {ct} *src = {ctx.ptr(x)} + c * {iw_n};",
             f"{ct} *row = {ctx.ptr(y)} + c * {fh * ow_n};",
             f"for (size_t iw = 0; iw < {iw_n}; ++iw) {{ const {ct} v = src[iw]; {stores} }}"]
    if fh > 1:
        lines.append(f"for (size_t r = 1; r < {fh}; ++r) memcpy(row + r * {ow_n}, row, {ow_n} * sizeof(*row));")
    lines.append("}")
    return "\n".join(lines)


def emit_resize(ctx: Lowering, scales: list[float], roi: list[float] | None, p: Params) -> None:
    x, y = ctx.input(0), ctx.output(0)
    dt = np.dtype(x.dtype)
    in_shape, out_shape = tuple(x.shape), tuple(y.shape)
    r = len(in_shape)
    if y.size == 0:
        return
    if x.size == 0:
        ctx.fail("resizing an empty tensor to a non-empty one")
    if len(out_shape) != r or len(scales) != r:
        ctx.fail(f"rank mismatch: input {in_shape}, output {out_shape}, {len(scales)} scales")
    if dt == np.bool_ and p.mode != "nearest":
        ctx.fail(f"mode '{p.mode}' on bool is not supported (nearest is)")
    in_st = strides(in_shape)
    axes: list[AxisTaps | None] = []
    for a in range(r):
        ar = (float(roi[a]), float(roi[a + r])) if roi is not None else None
        if p.coord != "tf_crop_and_resize":
            ar = None
        if is_identity(in_shape[a], out_shape[a], scales[a], ar):
            axes.append(None)
        else:
            axes.append(axis_taps(p, in_shape[a], out_shape[a], scales[a], ar, in_st[a]))

    factors = _replication(in_shape, out_shape, axes, in_st)
    if factors is not None:
        ctx.emit(_replicate(ctx, in_shape, factors))
        return
    acc_t = c_type(dt) if dt.kind == "f" else "double"
    acc_dt = dt if dt.kind == "f" else np.dtype(np.float64)
    off_max = max([x.size] + [int(t.offsets.max()) for t in axes if t is not None])
    off_t = "uint32_t" if off_max < 2**32 else "uint64_t"
    off_dt = np.uint32 if off_max < 2**32 else np.uint64
    lines: list[str] = []
    for a, t in enumerate(axes):
        if t is None:
            continue
        lines.append(_table(f"off{a}", off_t, t.offsets, off_dt))
        if t.weights is not None:
            lines.append(_table(f"wt{a}", acc_t, t.weights, acc_dt))
        if t.extrap is not None:
            lines.append(_table(f"ext{a}", "unsigned char", t.extrap.astype(np.uint8), np.uint8))
    xp, yp = ctx.ptr(x), ctx.ptr(y)
    lines.append("size_t o = 0;")
    # output loops; p{a} is the input offset from identity and gather axes so far
    prev = "0"
    for a in range(r):
        t = axes[a]
        lines.append(f"for (size_t i{a} = 0; i{a} < {out_shape[a]}; ++i{a}) {{")
        if t is None:
            term = f"i{a}*{in_st[a]}" if in_st[a] != 1 else f"i{a}"
            lines.append(f"size_t p{a} = {prev} + {term};" if prev != "0" else f"size_t p{a} = {term};")
            prev = f"p{a}"
        elif t.weights is None:
            lines.append(f"size_t p{a} = {prev + ' + ' if prev != '0' else ''}off{a}[i{a}];")
            prev = f"p{a}"
    ext = [f"ext{a}[i{a}]" for a, t in enumerate(axes) if t is not None and t.extrap is not None]
    if ext:
        lines.append(f"if ({' || '.join(ext)}) {{ {yp}[o++] = {literal(p.extrapolation, dt)}; continue; }}")
    tap_axes = [a for a, t in enumerate(axes) if t is not None and t.weights is not None]
    if not tap_axes:
        lines.append(f"{yp}[o++] = {xp}[{prev}];")
    else:
        lines.append(f"{acc_t} acc = 0;")
        q, w = prev, ""
        for a in tap_axes:
            t = axes[a]
            assert t is not None and t.weights is not None
            n = t.offsets.shape[1]
            lines.append(f"for (size_t k{a} = 0; k{a} < {n}; ++k{a}) {{")
            lines.append(f"size_t q{a} = {q + ' + ' if q != '0' else ''}off{a}[i{a}*{n} + k{a}];")
            wexpr = f"wt{a}[i{a}*{n} + k{a}]"
            lines.append(f"{acc_t} w{a} = {w + ' * ' if w else ''}{wexpr};")
            q, w = f"q{a}", f"w{a}"
        lines.append(f"acc += {w} * {xp}[{q}];")
        lines.append("}" * len(tap_axes))
        lines.append(f"{yp}[o++] = {_to_dtype('acc', dt)};")
    lines.append("}" * r)
    ctx.emit("\n".join(lines))


def _to_dtype(v: str, dt: np.dtype) -> str:
    """Store a double accumulator into an integer type: truncate toward zero as onnxruntime does
    (the ONNX reference rounds half to even), saturating at the type's limits."""
    if dt.kind == "f":
        return v
    info = np.iinfo(dt)
    # compare in double, but store the exact integer limits (2^63 as a double does not fit int64)
    lo, hi = f"{float(info.min)!r}", f"{float(info.max)!r}"
    return f"({v} <= {lo} ? {literal(info.min, dt)} : ({v} >= {hi} ? {literal(info.max, dt)} : ({c_type(dt)}){v}))"


# --- runtime scales / sizes / roi ---
#
# When scales, sizes or roi are runtime values (the output shape is still static: declared by the model
# or bound with --shape), the C computes the same per-axis taps at run time into arena scratch, in double
# as the reference does. Taps that edge padding sends to the same input element are merged into one
# weight, so an axis needs at most min(taps, input length) weights per output position; each position
# stores the input offset of its first weight, chosen so that every weight reads inside the input.

SHAPE_ERROR = "return 1; /* a runtime scales/sizes input disagrees with the compiled output shape */"


def _source(ctx: Lowering, i: int, what: str, kind: str) -> np.ndarray | Buffer | None:
    """Input i as a constant array or a runtime buffer; None when absent or empty."""
    if not ctx.has_input(i):
        return None
    v = ctx.const(i)
    if v is not None:
        return None if v.size == 0 else np.asarray(v)
    buf = ctx.input(i)
    if buf.size == 0:
        return None
    if np.dtype(buf.dtype).kind not in kind:
        ctx.fail(f"{what} of dtype {np.dtype(buf.dtype).name} is not supported")
    return buf


def _src_decl(ctx: Lowering, v: np.ndarray | Buffer, name: str, dtype) -> str:
    """A C declaration after which `name[k]` is element k of the values."""
    if isinstance(v, Buffer):
        return f"const {v.ctype} *{name} = {ctx.ptr(v)};"
    vals = np.asarray(v).ravel()
    return f"static const {c_type(dtype)} {name}[{vals.size}] = {{ {', '.join(literal(a, dtype) for a in vals)} }};"


def _runtime_slots(p: Params, in_len: int, out_len: int) -> int:
    """Static bound of the merged weights per output position of one axis."""
    n = 4 if p.mode == "cubic" else 2
    if p.antialias:
        # the output check gives scale >= (out - 0.5) / in (sizes with keep_aspect_ratio_policy; scales and
        # stretched sizes give more), so at most 2*ceil(support / scale) taps; +2 absorbs the rounding
        support = 2.0 if p.mode == "cubic" else 1.0
        n = max(n, 2 * math.ceil(support * in_len / (out_len - 0.5)) + 2)
    return max(1, min(n, in_len))


def _coord_expr(p: Params) -> str:
    """C: the input coordinate `xo` of output position `yv` (double) on axis k."""
    c = p.coord
    if c == "align_corners":
        return "ow == 1.0 ? 0.0 : yv * (in - 1.0) / (ow - 1.0)"
    if c == "asymmetric":
        return "yv / s"
    if c == "tf_crop_and_resize":
        return (
            "(ow == 1.0 ? (r1[k] - r0[k]) * (in - 1.0) / 2.0 : yv * (r1[k] - r0[k]) * (in - 1.0) / (ow - 1.0))"
            " + r0[k] * (in - 1.0)"
        )
    if c == "pytorch_half_pixel":
        return "rout[k] == 1 ? 0.0 : (yv + 0.5) / s - 0.5"
    if c == "half_pixel":
        return "(yv + 0.5) / s - 0.5"
    return "in / 2.0 * (1.0 - (double)rout[k] / ow) + (yv + 0.5) / s - 0.5"  # half_pixel_symmetric


def _coef_code(p: Params) -> str:
    """C: the kernel weight `c` of tap t (at first0 + t from floor(x)), before normalisation."""
    d = "const double d = sk * ((double)(first0 + t) - ratio);"
    if p.mode == "linear":
        return f"{d} double c = 1.0 - fabs(d); if (c < 0.0) c = 0.0; if (c > 1.0) c = 1.0;"
    a = repr(float(p.cubic_a))
    return (
        f"{d} const double ad = fabs(d); const double A = {a};\n"
        "const double c = ad <= 1.0 ? ((A + 2.0) * ad - (A + 3.0)) * ad * ad + 1.0"
        " : (ad < 2.0 ? ((A * ad - 5.0 * A) * ad + 8.0 * A) * ad - 4.0 * A : 0.0);"
    )


def emit_resize_runtime(
    ctx: Lowering,
    p: Params,
    axes: list[int],
    scales: np.ndarray | Buffer | None,
    sizes: np.ndarray | Buffer | None,
    roi: np.ndarray | Buffer | None,
    policy: str = "stretch",
) -> None:
    """Resize whose scales, sizes or roi (some of them) are runtime values; axes[k] is the axis of
    scales[k] / sizes[k] / roi[k], roi[k + len(axes)]."""
    x, y = ctx.input(0), ctx.output(0)
    dt = np.dtype(x.dtype)
    in_shape, out_shape = tuple(x.shape), tuple(y.shape)
    r, na = len(in_shape), len(axes)
    if len(out_shape) != r:
        ctx.fail(f"rank mismatch: input {in_shape}, output {out_shape}")
    if dt == np.bool_ and p.mode != "nearest":
        ctx.fail(f"mode '{p.mode}' on bool is not supported (nearest is)")
    for a in range(r):
        if a not in axes and in_shape[a] != out_shape[a]:
            ctx.fail(f"axis {a} is not resized, yet the output shape {out_shape} differs from the input {in_shape}")
    if y.size == 0:
        return
    if x.size == 0:
        ctx.fail("resizing an empty tensor to a non-empty one")
    in_st = strides(in_shape)
    rin = [in_shape[a] for a in axes]
    rout = [out_shape[a] for a in axes]
    gather = p.mode == "nearest"
    tf = p.coord == "tf_crop_and_resize"
    off_dt = np.dtype(np.uint32 if x.size < 2**32 else np.uint64)
    off_t = c_type(off_dt)
    toff = np.concatenate([[0], np.cumsum(rout)]).astype(int).tolist()
    slots = [] if gather else [_runtime_slots(p, i, o) for i, o in zip(rin, rout)]
    woff = np.concatenate([[0], np.cumsum([o * n for o, n in zip(rout, slots)])]).astype(int).tolist() if slots else []

    def ints(vals: list[int]) -> str:
        return ", ".join(literal(v, np.int64) for v in vals)

    L: list[str] = [
        f"static const int64_t rin[{na}] = {{ {ints(rin)} }}, rout[{na}] = {{ {ints(rout)} }};",
        f"static const size_t rst[{na}] = {{ {', '.join(str(in_st[a]) for a in axes)} }};",
        f"static const size_t toff[{na}] = {{ {', '.join(map(str, toff[:na]))} }};",
        f"double sc[{na}];",
    ]
    # the scale of every resized axis, and the check that it gives the static output shape
    if sizes is not None:
        L.append(_src_decl(ctx, sizes, "szv", np.int64))
        if policy == "stretch":
            L += [
                f"for (size_t k = 0; k < {na}; ++k) {{",
                f"if ((int64_t)szv[k] != rout[k]) {SHAPE_ERROR}",
                "sc[k] = (double)szv[k] / (double)rin[k];",
                "}",
            ]
        else:
            better = "<" if policy == "not_larger" else ">"
            L += [
                "double s1 = (double)szv[0] / (double)rin[0];",
                f"for (size_t k = 1; k < {na}; ++k) {{",
                "const double t = (double)szv[k] / (double)rin[k];",
                f"if (t {better} s1) s1 = t;",
                "}",
                f"for (size_t k = 0; k < {na}; ++k) {{",
                "sc[k] = s1;",
                # round half up as the reference does: int(scale * in + 0.5)
                f"if (!(s1 > 0.0) || floor(s1 * (double)rin[k] + 0.5) != (double)rout[k]) {SHAPE_ERROR}",
                "}",
            ]
    else:
        assert scales is not None
        L += [
            _src_decl(ctx, scales, "scv", np.float64),
            f"for (size_t k = 0; k < {na}; ++k) {{",
            "sc[k] = (double)scv[k];",
            f"if (!(sc[k] > 0.0) || floor(sc[k] * (double)rin[k]) != (double)rout[k]) {SHAPE_ERROR}",
            "}",
        ]
    if tf:
        assert roi is not None
        L += [
            _src_decl(ctx, roi, "rov", np.float64),
            f"double r0[{na}], r1[{na}];",
            f"for (size_t k = 0; k < {na}; ++k) {{ r0[k] = (double)rov[k]; r1[k] = (double)rov[k + {na}]; }}",
        ]
    off = ctx.scratch(toff[na] * off_dt.itemsize, off_dt)
    L.append(f"{off_t} *off = {off};")
    if tf:
        L.append(f"uint8_t *ext = {ctx.scratch(toff[na], np.uint8)};")
    if not gather:
        L += [
            f"double *wt = {ctx.scratch(woff[na] * 8, np.float64)};",
            f"static const size_t woff[{na}] = {{ {', '.join(map(str, woff[:na]))} }};",
            f"static const int64_t ns[{na}] = {{ {ints(slots)} }};",
            f"size_t nk[{na}];",
        ]
    # the per-axis tables
    ident = "rout[k] == rin[k] && fabs(s - 1.0) <= 1e-9 * (s > 1.0 ? s : 1.0)"
    if tf:
        ident += " && fabs(r0[k]) <= 1e-9 && fabs(r1[k] - 1.0) <= 1e-9 * (fabs(r1[k]) > 1.0 ? fabs(r1[k]) : 1.0)"
    L += [
        f"for (size_t k = 0; k < {na}; ++k) {{",
        "const double s = sc[k], in = (double)rin[k], ow = s * in;",
        "const int64_t n_in = rin[k];",
        f"const int ident = {ident};",
        f"{off_t} *o = off + toff[k];",
        "(void)in; (void)ow;",
    ]
    if tf:
        L.append("uint8_t *e = ext + toff[k];")
    if not gather:
        n = 4 if p.mode == "cubic" else 2
        L += [
            "double *w = wt + woff[k];",
            f"int64_t first0 = {1 - n // 2};  /* the first tap, relative to floor(x) */",
            "double sk = 1.0;  /* the kernel is stretched by 1/sk */",
        ]
        if p.antialias:
            support = "2.0" if p.mode == "cubic" else "1.0"
            L += [
                "if (s < 1.0) {",
                f"const double f = floor(-{support} / s) + 1.0;",
                f"if (!(f >= -8.0 * in - 8.0)) {SHAPE_ERROR}",
                "first0 = (int64_t)f;",
                "sk = s;",
                "}",
            ]
        L += [
            "const int64_t nt = 2 - 2 * first0;  /* taps */",
            "const int64_t m = ident ? 1 : (nt < n_in ? nt : n_in);  /* merged weights */",
            f"if (m > ns[k]) {SHAPE_ERROR}",
            "nk[k] = (size_t)m;",
        ]
    L += [
        "for (int64_t i = 0; i < rout[k]; ++i) {",
        "if (ident) {",
        f"o[i] = ({off_t})((size_t)i * rst[k]);",
    ]
    if tf:
        L.append("e[i] = 0;")
    if not gather:
        L.append("w[i * ns[k]] = 1.0;")
    L += [
        "continue;",
        "}",
        "{",
        "const double yv = (double)i;",
        f"const double xo = {_coord_expr(p)};",
        "const double fl = floor(xo), ratio = xo == fl ? 1.0 : xo - fl;",
    ]
    if tf:
        L.append("e[i] = (uint8_t)(xo < 0.0 || xo > in - 1.0);")
    if gather:
        rule = {
            "round_prefer_floor": "ratio > 0.5",
            "round_prefer_ceil": "ratio >= 0.5",
            "floor": "0",
            "ceil": "1",
            SIMPLE: "s < 1.0",
        }[p.nearest]
        L += [
            # two taps (edge padding 1): the window starts 1 left of floor(x), or 2 left of an integer x
            "const double xp = xo + 1.0, fp = floor(xp);",
            "double st = (xp == fp ? fp - 1.0 : fp) - 1.0;",
            "int64_t j;",
            "if (!(st >= -2.0)) st = -2.0;  /* far outside (or NaN): the edge */",
            "if (st > in) st = in;",
            f"j = (int64_t)st + (ratio == 1.0 || ({rule}) ? 1 : 0);",
            "j = j < 0 ? 0 : (j >= n_in ? n_in - 1 : j);",
            f"o[i] = ({off_t})((size_t)j * rst[k]);",
        ]
    else:
        coef = _coef_code(p)
        # normalisation: antialias divides by the kernel's sum; exclude_outside by the sum inside the input
        norm = "tot" if p.antialias else "1.0"
        if p.exclude_outside:
            norm = f"(tin != 0.0 ? tin : {norm})"
        L += [
            "const double pad = (double)(nt / 2), xp = xo + pad, fp = floor(xp);",
            "double st = (xp == fp ? fp - (double)(nt / 2) : fp - (double)(nt / 2) + 1.0) - pad;",
            "int64_t first, base;",
            "double tot = 0.0, tin = 0.0, norm;",
            "double *wr = w + i * ns[k];",
            "(void)tot; (void)tin;",
            "if (!(st >= -(double)nt - 1.0)) st = -(double)nt - 1.0;  /* far outside (or NaN): all taps on the edge */",
            "if (st > in + 1.0) st = in + 1.0;",
            "first = (int64_t)st;",
            "base = first < 0 ? 0 : (first >= n_in ? n_in - 1 : first);",
            "if (base > n_in - m) base = n_in - m;  /* every merged weight reads inside the input */",
            "for (int64_t q = 0; q < m; ++q) wr[q] = 0.0;",
        ]
        if p.antialias or p.exclude_outside:
            L += [
                "for (int64_t t = 0; t < nt; ++t) {",
                coef,
                "tot += c;",
                "if (first + t >= 0 && first + t < n_in) tin += c;",
                "}",
            ]
        L += [
            f"norm = {norm};",
            "for (int64_t t = 0; t < nt; ++t) {",
            "int64_t j = first + t;",
        ]
        if p.exclude_outside:
            L.append("if (j < 0 || j >= n_in) continue;")
        L += [
            coef,
            "j = j < 0 ? 0 : (j >= n_in ? n_in - 1 : j);",
            "wr[j - base] += c / norm;",
            "}",
            f"o[i] = ({off_t})((size_t)base * rst[k]);",
        ]
    L += ["}", "}", "}"]

    # the output walk: p{a} is the input offset of the first weight of every axis so far
    kidx = {a: k for k, a in enumerate(axes)}
    xp_, yp = ctx.ptr(x), ctx.ptr(y)
    for a in range(r):
        if a in kidx:
            k = kidx[a]
            L.append(f"const {off_t} *o{a} = off + {toff[k]};")
            if tf:
                L.append(f"const uint8_t *e{a} = ext + {toff[k]};")
            if not gather:
                L.append(f"const double *w{a} = wt + {woff[k]};")
                L.append(f"const size_t n{a} = nk[{k}];")
    L.append("size_t oi = 0;")
    prev = ""
    for a in range(r):
        L.append(f"for (size_t i{a} = 0; i{a} < {out_shape[a]}; ++i{a}) {{")
        term = f"(size_t)o{a}[i{a}]" if a in kidx else (f"i{a}*{in_st[a]}" if in_st[a] != 1 else f"i{a}")
        L.append(f"const size_t p{a} = {prev + ' + ' if prev else ''}{term};")
        prev = f"p{a}"
    if tf:
        ext = " || ".join(f"e{a}[i{a}]" for a in axes)
        L.append(f"if ({ext}) {{ {yp}[oi++] = {literal(p.extrapolation, dt)}; continue; }}")
    if gather:
        L.append(f"{yp}[oi++] = {xp_}[{prev}];")
    else:
        L.append("double acc = 0.0;")
        q, w = prev, ""
        for a in sorted(axes):
            L.append(f"for (size_t k{a} = 0; k{a} < n{a}; ++k{a}) {{")
            L.append(f"const size_t q{a} = {q} + k{a}*{in_st[a]};")
            L.append(f"const double v{a} = {w + ' * ' if w else ''}w{a}[i{a}*{slots[kidx[a]]} + k{a}];")
            q, w = f"q{a}", f"v{a}"
        L.append(f"acc += {w} * (double){xp_}[{q}];")
        L.append("}" * na)
        L.append(f"{yp}[oi++] = {_to_dtype('acc', dt) if dt.kind != 'f' else f'({c_type(dt)})acc'};")
    L.append("}" * r)
    ctx.emit("\n".join(L))


# --- the ops ---


def _params(ctx: Lowering) -> Params:
    p = Params(
        mode=str(ctx.attr("mode", "nearest")),
        coord=str(ctx.attr("coordinate_transformation_mode", "half_pixel")),
        nearest=str(ctx.attr("nearest_mode", "round_prefer_floor")),
        cubic_a=float(ctx.attr("cubic_coeff_a", -0.75)),
        exclude_outside=bool(ctx.attr("exclude_outside", 0)),
        extrapolation=float(ctx.attr("extrapolation_value", 0.0)),
        antialias=bool(ctx.attr("antialias", 0)),
    )
    if p.mode not in ("nearest", "linear", "cubic"):
        ctx.fail(f"mode '{p.mode}' is not supported (nearest, linear, cubic)")
    if p.coord not in COORD_MODES:
        ctx.fail(f"coordinate_transformation_mode '{p.coord}' is not supported")
    if p.nearest not in NEAREST_MODES:
        ctx.fail(f"nearest_mode '{p.nearest}' is not supported")
    if p.antialias and p.mode == "nearest":
        ctx.fail("antialias is only defined for linear and cubic modes")
    return p


def _legacy(ctx: Lowering, scales: list[float] | np.ndarray | Buffer) -> None:
    """Upsample and Resize-10 that the importer could not upgrade: asymmetric, legacy nearest rounding."""
    mode = str(ctx.attr("mode", "nearest")).lower()
    if mode == "bilinear":
        mode = "linear"  # Upsample-7 spelling
    if mode not in ("nearest", "linear"):
        ctx.fail(f"mode '{mode}' is not supported (nearest, linear)")
    rank = len(ctx.input(0).shape)
    count = scales.size if isinstance(scales, Buffer) else np.asarray(scales).size
    if count != rank:
        ctx.fail(f"{count} scales for a rank-{rank} input")
    p = Params(mode=mode, coord="asymmetric", nearest=SIMPLE)
    if isinstance(scales, Buffer):
        emit_resize_runtime(ctx, p, list(range(rank)), scales, None, None)
    else:
        emit_resize(ctx, [float(s) for s in np.asarray(scales).ravel()], None, p)


def _legacy_scales(ctx: Lowering, i: int) -> np.ndarray | Buffer:
    src = _source(ctx, i, "scales", "f")
    if src is None:
        ctx.fail("scales is empty")
    return src


@op("Upsample")
def lower_upsample(ctx: Lowering) -> None:
    scales = ctx.attr("scales", None)
    _legacy(ctx, _legacy_scales(ctx, 1) if scales is None else list(scales))


@op("Resize")
def lower_resize(ctx: Lowering) -> None:
    if ctx.opset < 11:  # Resize-10: (X, scales), Upsample semantics
        _legacy(ctx, _legacy_scales(ctx, 1))
        return
    p = _params(ctx)
    x = ctx.input(0)
    in_shape = tuple(x.shape)
    r = len(in_shape)
    axes = [a + r if a < 0 else a for a in ctx.attr("axes", None) or range(r)]
    if sorted(set(axes)) != sorted(axes) or any(not 0 <= a < r for a in axes):
        ctx.fail(f"invalid axes {axes} for rank {r}")
    policy = str(ctx.attr("keep_aspect_ratio_policy", "stretch"))
    if policy not in ("stretch", "not_larger", "not_smaller"):
        ctx.fail(f"keep_aspect_ratio_policy '{policy}' is not supported")
    roi_v = _source(ctx, 1, "roi", "f") if p.coord == "tf_crop_and_resize" else None
    if p.coord == "tf_crop_and_resize":
        if roi_v is None:
            ctx.fail("tf_crop_and_resize needs the roi input")
        if roi_v.size != 2 * len(axes):
            ctx.fail(f"roi has {roi_v.size} values; expected {2 * len(axes)}")
    scales_v = _source(ctx, 2, "scales", "f")
    sizes_v = _source(ctx, 3, "sizes", "iu")
    if sizes_v is not None:
        if sizes_v.size != len(axes):
            ctx.fail(f"sizes has {sizes_v.size} values for {len(axes)} axes")
        scales_v = None  # sizes win (the spec allows only one of them)
    elif scales_v is not None:
        if scales_v.size != len(axes):
            ctx.fail(f"scales has {scales_v.size} values for {len(axes)} axes")
    else:
        ctx.fail("Resize needs scales or sizes")
    if any(isinstance(v, Buffer) for v in (roi_v, scales_v, sizes_v)):
        emit_resize_runtime(ctx, p, axes, scales_v, sizes_v, roi_v, policy)
        return
    roi = None
    if roi_v is not None:
        flat = np.asarray(roi_v, dtype=np.float64).ravel()
        roi = [0.0] * r + [1.0] * r
        for k, a in enumerate(axes):
            roi[a], roi[a + r] = float(flat[k]), float(flat[k + len(axes)])
    scales = [1.0] * r
    if sizes_v is not None:
        sizes = np.asarray(sizes_v).astype(np.int64).ravel().tolist()
        for k, a in enumerate(axes):
            scales[a] = sizes[k] / in_shape[a]
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            s = pick(scales[a] for a in axes)
            for a in axes:
                scales[a] = s
    else:
        given = np.asarray(scales_v).astype(np.float64).ravel().tolist()
        for k, a in enumerate(axes):
            scales[a] = given[k]
    if any(s <= 0 for s in scales):
        ctx.fail(f"scales must be positive, got {scales}")
    emit_resize(ctx, scales, roi, p)
