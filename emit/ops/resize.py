"""Resize (opsets 10-19) and Upsample (7, 9): every mode, coordinate transformation, nearest rounding,
antialias, axes, keep_aspect_ratio_policy and tf_crop_and_resize extrapolation, at any rank.

Resizing is separable: each output element is a sum over a small grid of input taps whose weight is the
product of one weight per resized axis. Per axis, the compiler computes the taps (input offset and
weight of every output position) in numpy now and emits them as static const tables; the C walks the
output once. Nearest mode (one tap of weight 1 per position) becomes a pure gather."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ir import c_type
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


def _nonempty_const(ctx: Lowering, i: int, what: str) -> np.ndarray | None:
    if not ctx.has_input(i):
        return None
    v = ctx.const_required(i, what)
    return None if v.size == 0 else np.asarray(v)


def _legacy(ctx: Lowering, scales: list[float]) -> None:
    """Upsample and Resize-10 that the importer could not upgrade: asymmetric, legacy nearest rounding."""
    mode = str(ctx.attr("mode", "nearest")).lower()
    if mode == "bilinear":
        mode = "linear"  # Upsample-7 spelling
    if mode not in ("nearest", "linear"):
        ctx.fail(f"mode '{mode}' is not supported (nearest, linear)")
    if len(scales) != len(ctx.input(0).shape):
        ctx.fail(f"{len(scales)} scales for a rank-{len(ctx.input(0).shape)} input")
    emit_resize(ctx, [float(s) for s in scales], None, Params(mode=mode, coord="asymmetric", nearest=SIMPLE))


@op("Upsample")
def lower_upsample(ctx: Lowering) -> None:
    scales = ctx.attr("scales", None)
    if scales is None:
        scales = ctx.const_required(1, "scales").tolist()
    _legacy(ctx, list(scales))


@op("Resize")
def lower_resize(ctx: Lowering) -> None:
    if ctx.opset < 11:  # Resize-10: (X, scales), Upsample semantics
        _legacy(ctx, ctx.const_required(1, "scales").tolist())
        return
    p = _params(ctx)
    x = ctx.input(0)
    in_shape = tuple(x.shape)
    r = len(in_shape)
    axes = [a + r if a < 0 else a for a in ctx.attr("axes", None) or range(r)]
    if sorted(set(axes)) != sorted(axes) or any(not 0 <= a < r for a in axes):
        ctx.fail(f"invalid axes {axes} for rank {r}")
    roi = None
    if p.coord == "tf_crop_and_resize":
        roi_v = _nonempty_const(ctx, 1, "roi")
        if roi_v is None:
            ctx.fail("tf_crop_and_resize needs the roi input")
        roi_v = roi_v.astype(np.float64).ravel()
        if roi_v.size != 2 * len(axes):
            ctx.fail(f"roi has {roi_v.size} values; expected {2 * len(axes)}")
        roi = [0.0] * r + [1.0] * r
        for k, a in enumerate(axes):
            roi[a], roi[a + r] = float(roi_v[k]), float(roi_v[k + len(axes)])
    scales_v = _nonempty_const(ctx, 2, "scales")
    sizes_v = _nonempty_const(ctx, 3, "sizes")
    scales = [1.0] * r
    if sizes_v is not None:
        sizes = sizes_v.astype(np.int64).ravel().tolist()
        if len(sizes) != len(axes):
            ctx.fail(f"sizes has {len(sizes)} values for {len(axes)} axes")
        for k, a in enumerate(axes):
            scales[a] = sizes[k] / in_shape[a]
        policy = str(ctx.attr("keep_aspect_ratio_policy", "stretch"))
        if policy not in ("stretch", "not_larger", "not_smaller"):
            ctx.fail(f"keep_aspect_ratio_policy '{policy}' is not supported")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            s = pick(scales[a] for a in axes)
            for a in axes:
                scales[a] = s
    elif scales_v is not None:
        given = scales_v.astype(np.float64).ravel().tolist()
        if len(given) != len(axes):
            ctx.fail(f"scales has {len(given)} values for {len(axes)} axes")
        for k, a in enumerate(axes):
            scales[a] = given[k]
    else:
        ctx.fail("Resize needs scales or sizes")
    if any(s <= 0 for s in scales):
        ctx.fail(f"scales must be positive, got {scales}")
    emit_resize(ctx, scales, roi, p)
