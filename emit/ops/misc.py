"""Ops of no larger family: CumProd, BitCast, Det, AffineGrid, GridSample, DFT, STFT, MelWeightMatrix, RoiAlign,
TensorScatter, NonMaxSuppression (only with a static output shape the model declares).

Run-time inputs that steer the work (an axis, a DFT length, frame sizes, indices) are read in C and
checked against the static shapes; a value that disagrees makes <prefix>_run return 1."""

from __future__ import annotations

import numpy as np

from ..ir import Buffer
from .common import literal, math_fn, normalize_axis, strides
from .index import lower_scan
from .registry import Lowering
from .shape import INDEX_ERROR, op, prod

ERR = "return 1; /* a run-time value disagrees with the compiled shapes */"


def _scalar(ctx: Lowering, i: int, what: str) -> str:
    """C expression of the first element of input i (a literal when it is a constant)."""
    b = ctx.input(i)
    if b.size < 1:
        ctx.fail(f"{what} is empty")
    v = ctx.const(i)
    if v is not None:
        return literal(np.asarray(v).reshape(-1)[0], b.dtype)
    return f"{ctx.ptr(b)}[0]"


def _floats(ctx: Lowering, *bufs: Buffer) -> None:
    for b in bufs:
        if b.dtype.kind != "f":
            ctx.fail(f"dtype {b.dtype.name} is not supported here (float32 and float64 are)")


# ---------------------------------------------------------------- CumProd, BitCast, Det


@op("CumProd")
def lower_cumprod(ctx: Lowering) -> None:
    x = ctx.input(0)

    def mul(ct: str, xe: str) -> str:
        if x.dtype.kind == "f":
            return f"acc * {xe}"
        # unsigned arithmetic (at least 32 bits wide, so no promotion to int) wraps instead of overflowing
        ut = "uint64_t" if x.dtype.itemsize == 8 else "uint32_t"
        return f"({ct})(({ut})acc * ({ut}){xe})"

    lower_scan(ctx, "CumProd", "1", mul, need_rank=True)


@op("BitCast")
def lower_bitcast(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    if x.dtype.itemsize != y.dtype.itemsize:
        ctx.fail(f"BitCast needs types of one size ({x.dtype.name} has {x.dtype.itemsize} bytes, {y.dtype.name} {y.dtype.itemsize})")
    if y.size == 0:
        return
    if y.dtype == np.bool_ and x.dtype != np.bool_:
        # a C bool may only hold 0 or 1: any other byte becomes 1 (numpy shows such a byte as True)
        ctx.emit(f"for (size_t i = 0; i < {y.size}; ++i) {ctx.ptr(y)}[i] = ((const unsigned char *){ctx.ptr(x)})[i] != 0;")
        return
    ctx.emit(f"memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, {y.nbytes});")


@op("Det")
def lower_det(ctx: Lowering) -> None:
    """LU decomposition with partial pivoting, in double, one matrix at a time in scratch."""
    x, y = ctx.input(0), ctx.output(0)
    _floats(ctx, x)
    if len(x.shape) < 2 or x.shape[-1] != x.shape[-2]:
        ctx.fail(f"input of shape {x.shape} is not a (batch of) square matrices")
    m = x.shape[-1]
    batch = prod(x.shape[:-2])
    if y.size == 0:
        return
    if m == 0:
        ctx.emit(f"for (size_t b = 0; b < {batch}; ++b) {ctx.ptr(y)}[b] = 1;")
        return
    a = ctx.scratch(m * m * 8, "float64")
    ctx.emit(
        f"for (size_t b = 0; b < {batch}; ++b) {{\n"
        f"    double det = 1;\n"
        f"    for (size_t i = 0; i < {m * m}; ++i) {a}[i] = (double){ctx.ptr(x)}[b * {m * m} + i];\n"
        f"    for (size_t k = 0; k < {m}; ++k) {{\n"
        f"        size_t piv = k;\n"
        f"        for (size_t i = k + 1; i < {m}; ++i) if (fabs({a}[i * {m} + k]) > fabs({a}[piv * {m} + k])) piv = i;\n"
        f"        if ({a}[piv * {m} + k] == 0) {{ det = 0; break; }}\n"
        f"        if (piv != k) {{\n"
        f"            for (size_t j = 0; j < {m}; ++j) {{ const double t = {a}[k * {m} + j]; {a}[k * {m} + j] = {a}[piv * {m} + j]; {a}[piv * {m} + j] = t; }}\n"
        f"            det = -det;\n"
        f"        }}\n"
        f"        det *= {a}[k * {m} + k];\n"
        f"        for (size_t i = k + 1; i < {m}; ++i) {{\n"
        f"            const double f = {a}[i * {m} + k] / {a}[k * {m} + k];\n"
        f"            for (size_t j = k + 1; j < {m}; ++j) {a}[i * {m} + j] -= f * {a}[k * {m} + j];\n"
        f"        }}\n"
        f"    }}\n"
        f"    {ctx.ptr(y)}[b] = ({y.ctype})det;\n"
        f"}}"
    )


# ---------------------------------------------------------------- AffineGrid


@op("AffineGrid")
def lower_affine_grid(ctx: Lowering) -> None:
    """grid[n, (d,) h, w] = theta[n] @ (x_w, y_h, (z_d,) 1), the base coordinates as onnx's reference spaces
    them (computed in double, as numpy does). `size` read at run time must name the compiled output shape."""
    theta, size, y = ctx.input(0), ctx.input(1), ctx.output(0)
    _floats(ctx, theta, y)
    r = len(y.shape) - 2
    if r not in (2, 3) or theta.shape != (y.shape[0], r, r + 1) or y.shape[-1] != r or size.shape != (r + 2,):
        ctx.fail(f"theta {list(theta.shape)}, size {list(size.shape)} and output {list(y.shape)} do not fit together")
    align = bool(ctx.attr("align_corners", 0))
    dims = list(y.shape[1:-1])  # (D,) H, W
    lines = []
    if ctx.const(1) is None:  # N and the spatial sizes must be the compiled ones (C is not used)
        want = [y.shape[0], None, *dims]
        cond = " || ".join(f"{ctx.ptr(size)}[{k}] != {w}" for k, w in enumerate(want) if w is not None)
        lines.append(f"if ({cond}) {ERR}")
    elif [int(v) for v in np.asarray(ctx.const(1)).reshape(-1)[2:]] != dims:
        ctx.fail(f"size {np.asarray(ctx.const(1)).tolist()} disagrees with the output shape {list(y.shape)}")
    coords = []
    for k, length in enumerate(dims):
        if align:
            start, step = -1.0, (2.0 / (length - 1) if length > 1 else 0.0)
        else:
            start, step = -1.0 + 1.0 / length, 2.0 / length
        coords.append(f"(({literal(start, np.float64)}) + (double)i{k} * ({literal(step, np.float64)}))")
    # homogeneous coordinates in the order x (last axis), y, (z), 1
    hom = list(reversed(coords)) + ["1.0"]
    t, out = ctx.ptr(theta), ctx.ptr(y)
    body = [f"const size_t at = ((n * {prod(dims)}) + {' + '.join(f'i{k} * {prod(dims[k + 1:])}' for k in range(r))}) * {r};"]
    for row in range(r):
        terms = " + ".join(f"(double){t}[n * {r * (r + 1)} + {row * (r + 1) + c}] * {h}" for c, h in enumerate(hom))
        body.append(f"{out}[at + {row}] = ({y.ctype})({terms});")
    loops = "".join(f"for (size_t i{k} = 0; i{k} < {d}; ++i{k}) " for k, d in enumerate(dims))
    lines.append(f"for (size_t n = 0; n < {y.shape[0]}; ++n) {loops}{{\n" + "\n".join("    " + b for b in body) + "\n}")
    ctx.emit("\n".join(lines))


# ---------------------------------------------------------------- GridSample


def _reflect(v: str, lo: str, hi: str, ft: str) -> str:
    """C statements reflecting the float `v` by the borders [lo, hi] until it lies inside."""
    fl, fm = math_fn("floor", np.float32 if ft == "float" else np.float64), math_fn("fmod", np.float32 if ft == "float" else np.float64)
    lo, hi = f"({lo})", f"({hi})"
    return (
        f"{{ const {ft} rng = {hi} - {lo};\n"
        f"  if (!(rng > 0)) {v} = {lo};\n"
        f"  else if ({v} < {lo}) {{ const {ft} dx = {lo} - {v}; const {ft} nf = {fl}(dx / rng); const {ft} r = dx - nf * rng;\n"
        f"    {v} = {fm}(nf, 2) == 0 ? {lo} + r : {hi} - r; }}\n"
        f"  else if ({v} > {hi}) {{ const {ft} dx = {v} - {hi}; const {ft} nf = {fl}(dx / rng); const {ft} r = dx - nf * rng;\n"
        f"    {v} = {fm}(nf, 2) == 0 ? {hi} - r : {lo} + r; }} }}"
    )


@op("GridSample")
def lower_grid_sample(ctx: Lowering) -> None:
    """Any number of spatial axes: per axis the taps (1 nearest, 2 linear, 4 cubic) with their indices
    (after padding) and weights, then the tensor product of the taps. Cubic with border/reflection
    padding pads each tap as onnxruntime and PyTorch do (onnx's reference first moves the coordinate
    inside, which differs near the border)."""
    x, grid, y = ctx.input(0), ctx.input(1), ctx.output(0)
    _floats(ctx, x, grid)
    r = len(x.shape) - 2
    if r < 1 or len(grid.shape) != r + 2 or grid.shape[-1] != r or grid.shape[0] != x.shape[0]:
        ctx.fail(f"grid of shape {grid.shape} does not fit input {x.shape}")
    mode = str(ctx.attr("mode", "linear"))
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    pad = str(ctx.attr("padding_mode", "zeros"))
    align = bool(ctx.attr("align_corners", 0))
    if mode not in ("linear", "nearest", "cubic"):
        ctx.fail(f"mode '{mode}' is not supported")
    if pad not in ("zeros", "border", "reflection"):
        ctx.fail(f"padding_mode '{pad}' is not supported")
    if y.size == 0:
        return
    taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
    n, c = x.shape[:2]
    dims = list(x.shape[2:])
    plane = prod(dims)
    nout = prod(grid.shape[1:-1])
    ft = grid.ctype
    fsel = np.float32 if ft == "float" else np.float64
    fl, rint = math_fn("floor", fsel), math_fn("rint", fsel)
    lit = lambda v: literal(v, grid.dtype)  # noqa: E731
    lo, hi = ("0", "len - 1") if align else (lit(-0.5), f"len - {lit(0.5)}")

    def fix(target: str, arg: str) -> str:
        """C setting `target` to the index of the integral float `arg` after padding (-1: reads zero)."""
        if pad == "zeros":
            return f"{{ const {ft} v = {arg}; {target} = (v >= 0 && v < len) ? (ptrdiff_t)v : -1; }}"
        if pad == "border":
            return f"{{ const {ft} v = {arg}; {target} = (ptrdiff_t)(v < 0 ? 0 : v > len - 1 ? len - 1 : v); }}"
        return (
            f"{{ {ft} v = {arg};\n{_reflect('v', lo, hi, ft)}\n"
            f"{target} = (ptrdiff_t)v; if ({target} < 0) {target} = 0; if ({target} > (ptrdiff_t)len - 1) {target} = (ptrdiff_t)len - 1; }}"
        )

    if mode == "nearest":
        taps_c = fix("ix[d][0]", "xv") + "\nwt[d][0] = 1;"
    elif mode == "linear":
        taps_c = (
            f"const {ft} x0 = {fl}(xv); const {ft} t = xv - x0;\n"
            + fix("ix[d][0]", "x0") + "\n" + fix("ix[d][1]", "x0 + 1") + "\nwt[d][0] = 1 - t; wt[d][1] = t;"
        )
    else:
        a = lit(-0.75)
        taps_c = (
            f"const {ft} x0 = {fl}(xv); const {ft} t = xv - x0;\n"
            "for (int k = 0; k < 4; ++k) " + fix("ix[d][k]", "x0 + (k - 1)") + "\n"
            f"{{ const {ft} A = {a}, s0 = t + 1, s2 = 1 - t, s3 = 2 - t;\n"
            "  wt[d][0] = ((A * s0 - 5 * A) * s0 + 8 * A) * s0 - 4 * A;\n"
            "  wt[d][1] = ((A + 2) * t - (A + 3)) * t * t + 1;\n"
            "  wt[d][2] = ((A + 2) * s2 - (A + 3)) * s2 * s2 + 1;\n"
            "  wt[d][3] = ((A * s3 - 5 * A) * s3 + 8 * A) * s3 - 4 * A; }"
        )
    bound = lit(8)
    dims_c = ", ".join(str(d) for d in dims)
    st_c = ", ".join(str(s) for s in strides(tuple(dims)))
    denorm = "(v + 1) / 2 * (len - 1)" if align else "((v + 1) * len - 1) / 2"
    # border/reflection move an outside coordinate inside (onnx's reference); for linear and nearest that
    # equals padding each tap, which is all onnxruntime and PyTorch do for cubic, so cubic only pads taps
    oob = ""
    if mode != "cubic" and pad == "border":
        oob = "if (xv < 0) xv = 0; else if (xv > len - 1) xv = len - 1;"
    elif mode != "cubic" and pad == "reflection":
        oob = _reflect("xv", lo, hi, ft)
    if pad == "zeros":
        # NaN and far outside: every tap reads zero either way, and the float stays convertible
        guard = [f"        if (!(xv >= -len - {bound})) xv = -len - {bound};", f"        if (xv > 2 * len + {bound}) xv = 2 * len + {bound};"]
    else:
        # NaN reads the first element; infinities become large finite values (the taps are clamped anyway)
        guard = [f"        if (xv != xv) xv = 0; else if (xv < -{lit(1e30)}) xv = -{lit(1e30)}; else if (xv > {lit(1e30)}) xv = {lit(1e30)};"]
    lines = [
        f"static const {ft} dims[{r}] = {{ {dims_c} }};",
        f"static const size_t xst[{r}] = {{ {st_c} }};",
        f"for (size_t b = 0; b < {n}; ++b) for (size_t o = 0; o < {nout}; ++o) {{",
        f"    const {ft} *g = {ctx.ptr(grid)} + (b * {nout} + o) * {r};",
        f"    ptrdiff_t ix[{r}][{taps}]; {ft} wt[{r}][{taps}];",
        f"    for (size_t d = 0; d < {r}; ++d) {{",
        f"        const {ft} len = dims[d], v = g[{r - 1} - d];",
        f"        {ft} xv = {denorm};",
        *guard,
        f"        {'xv = ' + rint + '(xv);' if mode == 'nearest' else ''}",
        f"        if (xv < {lo} || xv > {hi}) {{ {oob} }}" if oob else "",
        *("        " + ln for ln in taps_c.splitlines()),
        "    }",
        f"    for (size_t ch = 0; ch < {c}; ++ch) {{",
        f"        const {x.ctype} *xc = {ctx.ptr(x)} + (b * {c} + ch) * {plane};",
        f"        {x.ctype} acc = 0;",
        f"        for (size_t t = 0; t < {taps ** r}; ++t) {{",
        f"            size_t k = t, off = 0; {x.ctype} w = 1; int inside = 1;",
        f"            for (size_t d = {r}; d-- > 0;) {{",
        f"                const size_t j = k % {taps}; k /= {taps};",
        "                if (ix[d][j] < 0) { inside = 0; break; }",
        "                off += (size_t)ix[d][j] * xst[d]; w *= wt[d][j];",
        "            }",
        "            if (inside) acc += w * xc[off];",
        "        }",
        f"        {ctx.ptr(y)}[(b * {c} + ch) * {nout} + o] = acc;",
        "    }",
        "}",
    ]
    ctx.emit("\n".join(ln for ln in lines if ln.strip()))


# ---------------------------------------------------------------- DFT, STFT, MelWeightMatrix


def _twiddles(tw: str, n: str) -> str:
    """C filling tw[0..n) with cos and tw[n..2n) with sin of 2*pi*j/n, in double."""
    return (
        f"for (size_t j = 0; j < (size_t){n}; ++j) {{\n"
        f"    const double th = 6.283185307179586476925 * (double)j / (double){n};\n"
        f"    {tw}[j] = cos(th); {tw}[(size_t){n} + j] = sin(th);\n"
        "}"
    )


@op("DFT")
def lower_dft(ctx: Lowering) -> None:
    """Direct O(n^2) sum with double accumulation. The axis (an attribute up to opset 19, an input from
    opset 20) and dft_length may be run-time values: they are checked against the static shapes."""
    x, y = ctx.input(0), ctx.output(0)
    _floats(ctx, x)
    rank = len(x.shape)
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))
    cin, cout = x.shape[-1], y.shape[-1]
    if rank < 2 or cin not in (1, 2) or len(y.shape) != rank:
        ctx.fail(f"input of shape {x.shape} is not [..., signal, 1 or 2]")
    want_cout = 1 if inverse and onesided else 2
    if cout != want_cout:
        ctx.fail(f"output of shape {y.shape} should end in {want_cout}")
    if y.size == 0 or x.size == 0:
        ctx.fail("empty signals are not supported")
    # the axis: a literal or a run-time read
    if ctx.opset >= 20:
        if ctx.has_input(2):
            av = ctx.const(2)
            axis_c = _scalar(ctx, 2, "axis") if av is None else str(int(np.asarray(av).reshape(-1)[0]))
        else:
            axis_c = "-2"
    else:
        axis_c = str(int(ctx.attr("axis", 1)))
    if axis_c.lstrip("-").isdigit():
        # a compile-time axis: refuse what could only fail at run time
        ax = normalize_axis(int(axis_c), rank)
        if not 0 <= ax < rank - 1:
            ctx.fail(f"axis {axis_c} is out of range for input rank {rank} (the last axis holds real/imaginary parts)")
        if any(a != b for d, (a, b) in enumerate(zip(x.shape[:-1], y.shape[:-1])) if d != ax):
            ctx.fail(f"output shape {y.shape} differs from input shape {x.shape} off axis {ax}")
        lv = ctx.const(1) if ctx.has_input(1) else None
        if lv is not None:
            n_len = int(np.asarray(lv).reshape(-1)[0])
            want = n_len // 2 + 1 if onesided and not inverse else n_len
            if y.shape[ax] != want:
                ctx.fail(f"output has {y.shape[ax]} elements on axis {ax}, but dft_length {n_len} gives {want}")
    # largest length any axis could need: the twiddle table's size
    def lmax(nout: int) -> int:
        return 2 * nout - 1 if onesided and not inverse else nout

    big = max(lmax(d) for d in y.shape[:-1])
    tw = ctx.scratch(2 * big * 8, "float64")
    din = ", ".join(str(d) for d in x.shape[:-1])
    dout = ", ".join(str(d) for d in y.shape[:-1])
    r1 = rank - 1
    if ctx.has_input(1):
        length = f"(int64_t){_scalar(ctx, 1, 'dft_length')}"
    else:
        length = "2 * (nin - 1)" if inverse and onesided else "nin"
    if not inverse:
        expect = "L / 2 + 1" if onesided else "L"
    else:
        expect = "L"
    head = [
        f"static const size_t din[{r1}] = {{ {din} }};",
        f"static const size_t dout[{r1}] = {{ {dout} }};",
        f"int64_t ax = (int64_t)({axis_c});",
        f"if (ax < 0) ax += {rank};",
        f"if (ax < 0 || ax >= {r1}) {ERR}",
        "size_t outer = 1, inner = 1;",
        f"for (size_t d = 0; d < {r1}; ++d) {{",
        f"    if ((int64_t)d != ax && din[d] != dout[d]) {ERR}",
        "    if ((int64_t)d < ax) outer *= din[d]; else if ((int64_t)d > ax) inner *= din[d];",
        "}",
        "const int64_t nin = (int64_t)din[ax], nout = (int64_t)dout[ax];",
        f"const int64_t L = {length};",
        f"if (L < 1 || L > {big} || nout != {expect}) {ERR}",
        _twiddles(tw, "L"),
        f"const double *cs = {tw}, *sn = {tw} + L;",
    ]
    px, py = ctx.ptr(x), ctx.ptr(y)
    xim = f"{px}[q + 1]" if cin == 2 else "0"
    if not (inverse and onesided):
        # X[k] = sum_t x[t] e^{-2 pi i k t / L} over the first min(nin, L) samples (zero padding past nin);
        # the two-sided inverse takes e^{+2 pi i k t / L} and divides by L
        if not inverse:
            acc = "re += xr * cs[j] + xi * sn[j]; im += xi * cs[j] - xr * sn[j];"
            store = f"{py}[p] = ({y.ctype})re; {py}[p + 1] = ({y.ctype})im;"
        else:
            acc = "re += xr * cs[j] - xi * sn[j]; im += xr * sn[j] + xi * cs[j];"
            store = f"{py}[p] = ({y.ctype})(re / (double)L); {py}[p + 1] = ({y.ctype})(im / (double)L);"
        body = [
            "const int64_t nt = nin < L ? nin : L;",
            "for (size_t o = 0; o < outer; ++o) for (size_t i = 0; i < inner; ++i) for (int64_t k = 0; k < nout; ++k) {",
            "    double re = 0, im = 0;",
            "    for (int64_t t = 0; t < nt; ++t) {",
            f"        const size_t q = ((o * (size_t)nin + (size_t)t) * inner + i) * {cin};",
            f"        const double xr = (double){px}[q], xi = (double){xim};",
            "        const size_t j = (size_t)((k * t) % L);",
            f"        {acc}",
            "    }",
            f"    const size_t p = ((o * (size_t)nout + (size_t)k) * inner + i) * {cout};",
            f"    {store}",
            "}",
        ]
    else:
        # inverse of a one-sided spectrum (irfft): the missing half is the conjugate mirror; real output
        body = [
            "for (size_t o = 0; o < outer; ++o) for (size_t i = 0; i < inner; ++i) for (int64_t k = 0; k < nout; ++k) {",
            "    double re = 0;",
            "    for (int64_t t = 0; t < L; ++t) {",
            "        const int64_t src = t <= L / 2 ? t : L - t;",
            "        if (src >= nin) continue;",
            f"        const size_t q = ((o * (size_t)nin + (size_t)src) * inner + i) * {cin};",
            f"        const double xr = (double){px}[q], xi = t <= L / 2 ? (double){xim} : -(double){xim};",
            "        const size_t j = (size_t)((k * t) % L);",
            "        re += xr * cs[j] - xi * sn[j];",
            "    }",
            f"    {py}[((o * (size_t)nout + (size_t)k) * inner + i) * {cout}] = ({y.ctype})(re / (double)L);",
            "}",
        ]
    ctx.emit("\n".join(head + body))


@op("STFT")
def lower_stft(ctx: Lowering) -> None:
    """Frames of frame_length every frame_step samples, times the window, each a direct DFT in double."""
    x, y = ctx.input(0), ctx.output(0)
    _floats(ctx, x)
    if len(x.shape) != 3 or x.shape[2] not in (1, 2) or len(y.shape) != 4 or y.shape[3] != 2:
        ctx.fail(f"signal {x.shape} / output {y.shape} are not [batch, length, 1 or 2] / [batch, frames, bins, 2]")
    onesided = bool(ctx.attr("onesided", 1))
    nb, ls, cin = x.shape
    frames, bins = y.shape[1], y.shape[2]
    if y.size == 0:
        return
    win = ctx.input(2) if ctx.has_input(2) else None
    if win is not None:
        _floats(ctx, win)
        if len(win.shape) != 1:
            ctx.fail(f"window of shape {win.shape} is not 1-D")
    if ctx.has_input(3):
        fl = f"(int64_t){_scalar(ctx, 3, 'frame_length')}"
    elif win is not None:
        fl = str(win.shape[0])
    else:
        fl = str(ls)
    fl_known = ctx.const(3) if ctx.has_input(3) else (win.shape[0] if win is not None else ls)
    if fl_known is not None:
        flk = int(np.asarray(fl_known).reshape(-1)[0])
        want = flk // 2 + 1 if onesided else flk
        if bins != want:
            unset = " (onnx shape inference reads an absent onesided as 0; the spec's default is 1: set it explicitly)" if "onesided" not in ctx.node.attrs else ""
            ctx.fail(f"the output has {bins} bins, but a {'one' if onesided else 'two'}-sided STFT of frame_length {flk} has {want}{unset}")
    big = min(2 * bins - 1 if onesided else bins, ls)
    if big < 1:
        ctx.fail("no frame fits the signal")
    tw = ctx.scratch(2 * big * 8, "float64")
    px, py = ctx.ptr(x), ctx.ptr(y)
    wv = f"(double){ctx.ptr(win)}[t]" if win is not None else "1.0"
    xim = f"(double){px}[q + 1]" if cin == 2 else "0"
    expect = "fl / 2 + 1" if onesided else "fl"
    lines = [
        f"const int64_t step = (int64_t){_scalar(ctx, 1, 'frame_step')};",
        f"const int64_t fl = {fl};",
        f"if (step < 1 || fl < 1 || fl > {big}) {ERR}",
        f"if ({frames} != 1 + ({ls} - fl) / step || {bins} != {expect}) {ERR}",
        *([f"if (fl != {win.shape[0]}) {ERR}"] if win is not None else []),
        _twiddles(tw, "fl"),
        f"const double *cs = {tw}, *sn = {tw} + fl;",
        f"for (size_t b = 0; b < {nb}; ++b) for (size_t f = 0; f < {frames}; ++f) for (int64_t k = 0; k < {bins}; ++k) {{",
        "    double re = 0, im = 0;",
        "    for (int64_t t = 0; t < fl; ++t) {",
        f"        const size_t q = (b * {ls} + f * (size_t)step + (size_t)t) * {cin};",
        f"        const double w = {wv}, xr = w * (double){px}[q], xi = w * {xim};",
        "        const size_t j = (size_t)((k * t) % fl);",
        "        re += xr * cs[j] + xi * sn[j]; im += xi * cs[j] - xr * sn[j];",
        "    }",
        f"    const size_t p = ((b * {frames} + f) * {bins} + (size_t)k) * 2;",
        f"    {py}[p] = ({y.ctype})re; {py}[p + 1] = ({y.ctype})im;",
        "}",
    ]
    ctx.emit("\n".join(lines))


@op("MelWeightMatrix")
def lower_mel_weight_matrix(ctx: Lowering) -> None:
    """The triangular mel filter bank, computed at run time (its inputs were not constants)."""
    y = ctx.output(0)
    if len(y.shape) != 2 or y.dtype.kind not in "fiu":
        ctx.fail(f"output of shape {y.shape} / dtype {y.dtype.name} is not supported")
    bins, nmel = y.shape
    ef = ctx.input(3)
    _floats(ctx, ef, ctx.input(4))
    et = ef.ctype
    fsel = np.float32 if et == "float" else np.float64
    lg = math_fn("log1p", fsel)
    edges = ctx.scratch((nmel + 2) * 8, "int64")
    py = ctx.ptr(y)
    lines = [
        f"const int64_t nmel = (int64_t){_scalar(ctx, 0, 'num_mel_bins')}, L = (int64_t){_scalar(ctx, 1, 'dft_length')};",
        f"const int64_t sr = (int64_t){_scalar(ctx, 2, 'sample_rate')};",
        f"const {et} lo = {_scalar(ctx, 3, 'lower_edge_hertz')}, hi = {_scalar(ctx, 4, 'upper_edge_hertz')};",
        f"if (nmel != {nmel} || L < 0 || L / 2 + 1 != {bins} || sr <= 0) {ERR}",
        # the reference's precision: the mel edges in the input's float type, the rest in double
        f"const double lmel = (double)(({et})2595 * {lg}(lo / ({et})700)) / log(10.0);",
        f"const double hmel = (double)(({et})2595 * {lg}(hi / ({et})700)) / log(10.0);",
        f"const double mstep = (hmel - lmel) / {nmel + 2}.0;",
        f"for (size_t i = 0; i < {nmel + 2}; ++i) {{",
        "    const double hz = 700.0 * expm1(((double)i * mstep + lmel) / 2595.0 * log(10.0));",
        "    const double e = floor((double)(L + 1) * hz / (double)sr);",
        f"    if (!(e >= 0 && e < {bins})) {ERR}",
        f"    {edges}[i] = (int64_t)e;",
        "}",
        f"for (size_t i = 0; i < {y.size}; ++i) {py}[i] = 0;",
        f"for (size_t i = 0; i < {nmel}; ++i) {{",
        f"    const int64_t l = {edges}[i], c = {edges}[i + 1], h = {edges}[i + 2];",
        f"    if (c == l) {py}[(size_t)c * {nmel} + i] = 1;",
        f"    else for (int64_t j = l; j <= c; ++j) {py}[(size_t)j * {nmel} + i] = ({y.ctype})((double)(j - l) / (double)(c - l));",
        f"    for (int64_t j = c; j < h; ++j) {py}[(size_t)j * {nmel} + i] = ({y.ctype})((double)(h - j) / (double)(h - c));",
        "}",
    ]
    ctx.emit("\n".join(lines))


# ---------------------------------------------------------------- RoiAlign, TensorScatter, NonMaxSuppression


@op("RoiAlign")
def lower_roi_align(ctx: Lowering) -> None:
    x, rois, bidx, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
    _floats(ctx, x, rois)
    if len(x.shape) != 4 or len(rois.shape) != 2 or rois.shape[1] != 4 or len(y.shape) != 4:
        ctx.fail(f"X {x.shape} / rois {rois.shape} are not [N, C, H, W] / [num_rois, 4]")
    if bidx.dtype.kind not in "iu":
        ctx.fail("batch_indices must be integers")
    mode = str(ctx.attr("mode", "avg"))
    if mode not in ("avg", "max"):
        ctx.fail(f"mode '{mode}' is not supported")
    ctm = str(ctx.attr("coordinate_transformation_mode", "half_pixel" if ctx.opset >= 16 else "output_half_pixel"))
    if ctm not in ("half_pixel", "output_half_pixel"):
        ctx.fail(f"coordinate_transformation_mode '{ctm}' is not supported")
    half = ctm == "half_pixel"
    nroi, c, ph, pw = y.shape
    n, _, hh, ww = x.shape
    if y.size == 0:
        return
    sr = int(ctx.attr("sampling_ratio", 0))
    scale = float(ctx.attr("spatial_scale", 1.0))
    ct = x.ctype
    fsel = np.float32 if ct == "float" else np.float64
    ceil_ = math_fn("ceil", fsel)
    lit = lambda v: literal(v, x.dtype)  # noqa: E731
    px, pr = ctx.ptr(x), ctx.ptr(rois)

    def grid(var: str, size: str, pooled: int) -> str:
        if sr > 0:
            return f"const size_t {var} = {sr};"
        # ceil(size / pooled), bounded so a NaN or absurd box cannot make the loop unbounded
        return (
            f"const {ct} {var}f = {ceil_}({size} / {lit(pooled)});\n"
            f"const size_t {var} = !({var}f > 0) ? 0 : {var}f > {lit(4096)} ? 4096 : (size_t){var}f;"
        )

    if mode == "avg":
        acc_init, combine, finish = (
            "0",
            "out += w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4;",
            f"out /= ({ct})(gh * gw > 1 ? gh * gw : 1);",
        )
    else:
        acc_init, combine, finish = (
            "0",
            (
                f"{ct} v = w1 * v1; if (w2 * v2 > v) v = w2 * v2; if (w3 * v3 > v) v = w3 * v3; if (w4 * v4 > v) v = w4 * v4;\n"
                "if (first || v > out) out = v;\nfirst = 0;"
            ),
            "",
        )
    off = lit(0.5 if half else 0.0)
    lines = [
        f"for (size_t r = 0; r < {nroi}; ++r) {{",
        f"    const int64_t bi = (int64_t){ctx.ptr(bidx)}[r];",
        f"    if (bi < 0 || bi >= {n}) {INDEX_ERROR}",
        f"    const {ct} sw = {pr}[r * 4 + 0] * {lit(scale)} - {off}, sh = {pr}[r * 4 + 1] * {lit(scale)} - {off};",
        f"    const {ct} ew = {pr}[r * 4 + 2] * {lit(scale)} - {off}, eh = {pr}[r * 4 + 3] * {lit(scale)} - {off};",
        f"    {ct} rw = ew - sw, rh = eh - sh;",
        *(["    if (rw < 1) rw = 1;", "    if (rh < 1) rh = 1;"] if not half else []),
        f"    const {ct} bh = rh / {lit(ph)}, bw = rw / {lit(pw)};",
        "    " + grid("gh", "rh", ph).replace("\n", "\n    "),
        "    " + grid("gw", "rw", pw).replace("\n", "\n    "),
        f"    for (size_t ch = 0; ch < {c}; ++ch) {{",
        f"        const {ct} *xc = {px} + ((size_t)bi * {c} + ch) * {hh * ww};",
        f"        for (size_t oy = 0; oy < {ph}; ++oy) for (size_t ox = 0; ox < {pw}; ++ox) {{",
        f"            {ct} out = {acc_init}; int first = 1; (void)first;",
        "            for (size_t iy = 0; iy < gh; ++iy) for (size_t ixx = 0; ixx < gw; ++ixx) {",
        f"                {ct} yy = sh + ({ct})oy * bh + (({ct})iy + {lit(0.5)}) * bh / ({ct})gh;",
        f"                {ct} xx = sw + ({ct})ox * bw + (({ct})ixx + {lit(0.5)}) * bw / ({ct})gw;",
        f"                {ct} w1 = 0, w2 = 0, w3 = 0, w4 = 0, v1 = xc[0], v2 = xc[0], v3 = xc[0], v4 = xc[0];",
        f"                if (!(yy < -1 || yy > {hh} || xx < -1 || xx > {ww})) {{",
        "                    if (yy < 0) yy = 0;",
        "                    if (xx < 0) xx = 0;",
        "                    size_t yl = (size_t)yy, xl = (size_t)xx, yh, xh;",
        f"                    if (yl >= {hh - 1}) {{ yh = yl = {hh - 1}; yy = ({ct})yl; }} else yh = yl + 1;",
        f"                    if (xl >= {ww - 1}) {{ xh = xl = {ww - 1}; xx = ({ct})xl; }} else xh = xl + 1;",
        f"                    const {ct} ly = yy - ({ct})yl, lx = xx - ({ct})xl, hy = 1 - ly, hx = 1 - lx;",
        "                    w1 = hy * hx; w2 = hy * lx; w3 = ly * hx; w4 = ly * lx;",
        f"                    v1 = xc[yl * {ww} + xl]; v2 = xc[yl * {ww} + xh]; v3 = xc[yh * {ww} + xl]; v4 = xc[yh * {ww} + xh];",
        "                }",
        *("                " + ln for ln in combine.splitlines()),
        "            }",
        *(["            " + finish] if finish else []),
        f"            {ctx.ptr(y)}[((r * {c} + ch) * {ph} + oy) * {pw} + ox] = out;",
        "        }",
        "    }",
        "}",
    ]
    ctx.emit("\n".join(lines))


@op("TensorScatter")
def lower_tensor_scatter(ctx: Lowering) -> None:
    """present = past with `update` written along `axis` from write_indices[batch] on (linear: must fit;
    circular: wraps)."""
    past, upd, y = ctx.input(0), ctx.input(1), ctx.output(0)
    rank = len(past.shape)
    axis = normalize_axis(int(ctx.attr("axis", -2)), rank)
    if not 1 <= axis < rank:
        ctx.fail(f"axis {ctx.attr('axis', -2)} must not be the batch axis and must be inside rank {rank}")
    if len(upd.shape) != rank or any(a != b for k, (a, b) in enumerate(zip(past.shape, upd.shape)) if k != axis) or upd.shape[axis] > past.shape[axis]:
        ctx.fail(f"update of shape {upd.shape} does not fit past_cache {past.shape} on axis {axis}")
    mode = str(ctx.attr("mode", "linear"))
    if mode not in ("linear", "circular"):
        ctx.fail(f"mode '{mode}' is not supported")
    if y.size == 0:
        return
    smax, supd = past.shape[axis], upd.shape[axis]
    outer, inner = prod(past.shape[:axis]), prod(past.shape[axis + 1 :])
    per_batch = prod(past.shape[1:axis])
    if ctx.has_input(2):
        wi = ctx.input(2)
        if wi.dtype.kind not in "iu" or wi.size != past.shape[0]:
            ctx.fail(f"write_indices of shape {wi.shape} must hold one integer per batch ({past.shape[0]})")
        start = f"(int64_t){ctx.ptr(wi)}[o / {per_batch}]"
    else:
        start = "0"
    pos = "(w + (int64_t)s) % " + str(smax) if mode == "circular" else "w + (int64_t)s"
    lines = [
        f"memcpy({ctx.ptr(y)}, {ctx.ptr(past)}, {y.nbytes});" if ctx.ptr(y) != ctx.ptr(past) else "",
        f"for (size_t o = 0; o < {outer}; ++o) {{",
        f"    const int64_t w = {start};",
        f"    if (w < 0{' || w + ' + str(supd) + ' > ' + str(smax) if mode == 'linear' else ''}) {INDEX_ERROR}",
        f"    for (size_t s = 0; s < {supd}; ++s) {{",
        f"        const size_t at = (size_t)({pos});",
        f"        memcpy({ctx.ptr(y)} + (o * {smax} + at) * {inner}, {ctx.ptr(upd)} + (o * {supd} + s) * {inner}, {inner * y.dtype.itemsize});",
        "    }",
        "}",
    ]
    ctx.emit("\n".join(ln for ln in lines if ln))


@op("NonMaxSuppression")
def lower_nms(ctx: Lowering) -> None:
    """Greedy per (batch, class): the best remaining box (ties: the lowest index) is kept unless it overlaps a
    kept one by more than iou_threshold. The number of selected boxes is data dependent, so the output's
    static shape must come from the model; a run whose count differs returns 1."""
    boxes, scores, y = ctx.input(0), ctx.input(1), ctx.output(0)
    _floats(ctx, boxes, scores)
    if len(boxes.shape) != 3 or boxes.shape[2] != 4 or len(scores.shape) != 3 or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        ctx.fail(f"boxes {boxes.shape} / scores {scores.shape} are not [batch, boxes, 4] / [batch, classes, boxes]")
    if len(y.shape) != 2 or y.shape[1] != 3:
        ctx.fail(f"output shape {y.shape} is not [selected, 3]")
    nb, nbox, ncl, k = boxes.shape[0], boxes.shape[1], scores.shape[1], y.shape[0]
    center = int(ctx.attr("center_point_box", 0))
    ct = boxes.ctype
    maxout = f"(int64_t){_scalar(ctx, 2, 'max_output_boxes_per_class')}" if ctx.has_input(2) and ctx.input(2).size else "0"
    iou = f"({ct}){_scalar(ctx, 3, 'iou_threshold')}" if ctx.has_input(3) and ctx.input(3).size else "0"
    has_st = ctx.has_input(4) and ctx.input(4).size > 0
    st = f"({ct}){_scalar(ctx, 4, 'score_threshold')}" if has_st else "0"
    if nbox == 0 or nb == 0 or ncl == 0:
        ctx.emit(f"if ({k} != 0) {ERR}")
        return
    used = ctx.scratch(nbox, "uint8")
    sel = ctx.scratch(nbox * 8, "uint64")
    pb, ps, py = ctx.ptr(boxes), ctx.ptr(scores), ctx.ptr(y)
    if center == 0:
        geom = [
            f"{ct} x1lo, x1hi, x2lo, x2hi, y1lo, y1hi, y2lo, y2hi;",
            "if (p[1] >= p[3]) { x1lo = p[3]; x1hi = p[1]; } else { x1lo = p[1]; x1hi = p[3]; }",
            "if (q[1] >= q[3]) { x2lo = q[3]; x2hi = q[1]; } else { x2lo = q[1]; x2hi = q[3]; }",
            "if (p[0] >= p[2]) { y1lo = p[2]; y1hi = p[0]; } else { y1lo = p[0]; y1hi = p[2]; }",
            "if (q[0] >= q[2]) { y2lo = q[2]; y2hi = q[0]; } else { y2lo = q[0]; y2hi = q[2]; }",
        ]
    else:
        geom = [
            f"const {ct} x1lo = p[0] - p[2] / 2, x1hi = p[0] + p[2] / 2, x2lo = q[0] - q[2] / 2, x2hi = q[0] + q[2] / 2;",
            f"const {ct} y1lo = p[1] - p[3] / 2, y1hi = p[1] + p[3] / 2, y2lo = q[1] - q[3] / 2, y2hi = q[1] + q[3] / 2;",
        ]
    lines = [
        f"const int64_t maxout = {maxout};",
        f"const {ct} iou_t = {iou}, score_t = {st}; (void)score_t;",
        "size_t cnt = 0;",
        f"for (size_t b = 0; b < {nb}; ++b) for (size_t cl = 0; cl < {ncl}; ++cl) {{",
        f"    const {ct} *bx = {pb} + b * {nbox * 4};",
        f"    const {ct} *sc = {ps} + (b * {ncl} + cl) * {nbox};",
        "    size_t nsel = 0;",
        f"    for (size_t i = 0; i < {nbox}; ++i) {used}[i] = {'!(sc[i] > score_t)' if has_st else '0'};",
        "    while ((int64_t)nsel < maxout) {",
        f"        size_t best = {nbox};",
        f"        for (size_t i = 0; i < {nbox}; ++i) if (!{used}[i] && (best == {nbox} || sc[i] > sc[best])) best = i;",
        f"        if (best == {nbox}) break;",
        f"        {used}[best] = 1;",
        "        int keep = 1;",
        "        for (size_t s = 0; s < nsel && keep; ++s) {",
        f"            const {ct} *p = bx + best * 4, *q = bx + (size_t){sel}[s] * 4;",
        *("            " + ln for ln in geom),
        f"            const {ct} ixlo = x1lo > x2lo ? x1lo : x2lo, ixhi = x1hi < x2hi ? x1hi : x2hi;",
        f"            const {ct} iylo = y1lo > y2lo ? y1lo : y2lo, iyhi = y1hi < y2hi ? y1hi : y2hi;",
        "            if (ixhi <= ixlo || iyhi <= iylo) continue;",
        f"            const {ct} inter = (ixhi - ixlo) * (iyhi - iylo);",
        f"            const {ct} a1 = (x1hi - x1lo) * (y1hi - y1lo), a2 = (x2hi - x2lo) * (y2hi - y2lo);",
        f"            const {ct} uni = a1 + a2 - inter;",
        "            if (inter <= 0 || a1 <= 0 || a2 <= 0 || uni <= 0) continue;",
        "            if (inter / uni > iou_t) keep = 0;",
        "        }",
        "        if (!keep) continue;",
        f"        {sel}[nsel++] = best;",
        f"        if (cnt >= {k}) {ERR}",
        f"        {py}[cnt * 3] = (int64_t)b; {py}[cnt * 3 + 1] = (int64_t)cl; {py}[cnt * 3 + 2] = (int64_t)best;",
        "        ++cnt;",
        "    }",
        "}",
        f"if (cnt != {k}) {ERR}",
    ]
    ctx.emit("\n".join(lines))

