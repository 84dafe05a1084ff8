"""Conv and ConvTranspose (1-3 spatial axes) through runtime_c/conv.c, and BatchNormalization where
emit/passes/fold_bn.py could not fold it into the layer before."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import literal, math_fn
from .gemm import act_args, kernel_letter
from .registry import Lowering, op

# im2col/col2im scratch is cut into chunks of output pixels so the columns stay in L2 between im2col and the GEMM's
# packing (512 KiB of float32: 5-20% faster than one chunk per layer on resnet50's 56x56 3x3 and 7x7 convolutions),
# but not below MIN_TILE pixels: every chunk reads all of the layer's weights again, which costs more than the
# columns' misses once the weights outgrow L2 (resnet50's 512-channel 3x3 on 7x7 pixels: 9 MB per chunk).
# HARD_BUDGET bounds the scratch whatever MIN_TILE says (a VGG-sized layer would want >100 MB of arena).
IM2COL_BUDGET = 1 << 17
MIN_TILE = 256
HARD_BUDGET = 1 << 22
TILE_STEP = 32  # chunks are rounded up to whole GEMM panels (32 columns with AVX-512, fewer elsewhere)
# output positions per image below which gemm.c may run a conv's product as dot-product blocks (N <= 8): neither
# windows nor packed weights (emit/passes/pack_weights.py) serve those
MIN_POSITIONS = 16
# im2col's cost per row segment it copies (an output row of one tap of one input channel) in multiply-adds of the
# GEMM's time: ~5 ns a segment, ~0.02 ns a product with AVX-512 (lenet's 6->16 5x5 on 10x10: 1.6x faster by windows)
IM2COL_SEGMENT_PRODUCTS = 200
# stride-2 windows (column planes) from this kernel size: 3x3 1.0-1.5x faster than im2col, 7x7 1.2-1.4x; 1x1 ones
# (im2col a plain subsampling, a quarter of the planes' copy) 0.9x
PHASE_MIN_KERNEL = 3
# Winograd bands: tiles per band (the GEMMs' columns) and the scratch they may take (elements): wider bands ran
# 5-15% faster with AVX-512 (128 x 128 channels on 28x28: 196 tiles 1.28 ms, 98 1.38, 56 1.49), the same under V8
WINOGRAD_COLUMNS = 384
WINOGRAD_BUDGET = 1 << 20


@dataclass
class ConvGeometry:
    n: int
    c: int
    m: int
    group: int
    inp: list[int]  # spatial sizes, padded to 3 axes with leading 1s
    out: list[int]
    k: list[int]
    stride: list[int]
    dil: list[int]
    pad: list[int]  # padding at the start of each axis
    tile: int = 1
    windows: bool = False  # by shifted windows of a padded band of input rows (by_windows), not im2col
    packed: int = 0  # rows per group of w packed for the GEMM at export time (emit/passes/pack_weights.py), or 0
    one_channel_windows: bool = False  # one input channel per group may go by windows (passes/conv_paths.py)
    winograd: int = 0  # w in Winograd's F(T x T, 3x3) form, T = 2 or 4 (emit/passes/winograd.py); tile: rows of tiles

    def c_init(self) -> str:
        def arr(v: list[int]) -> str:
            return "{ " + ", ".join(str(int(x)) for x in v) + " }"

        return (
            f"{{ {self.n}, {self.c}, {self.m}, {self.group}, {arr(self.inp)}, {arr(self.out)}, {arr(self.k)}, "
            f"{arr(self.stride)}, {arr(self.dil)}, {arr(self.pad)}, {self.tile}, {int(self.windows)}, "
            f"{self.winograd}, {self.packed} }}"
        )

    @property
    def kk(self) -> int:
        return int(np.prod(self.k))

    def pointwise(self) -> bool:
        return all(k == 1 for k in self.k) and all(s == 1 for s in self.stride) and not any(self.pad) \
            and self.inp == self.out

    def phases(self) -> bool:
        """conv.c's ek_conv_phases: stride 2 both ways, undilated, where windows run over column planes."""
        return self.stride[1] == 2 and self.stride[2] == 2 and self.dil[1] == 1 and self.dil[2] == 1

    def by_windows(self) -> bool:
        """A 2-D (or 1-D) stride-1 convolution of more than one input channel per group (or of one, for several
        outputs and a kernel of more than one row, where the target says so: one_channel_windows), or a stride-2 2-D
        one (the shapes conv.c's ek_conv_by_windows accepts), runs on shifted windows of copies of a band of input rows,
        without im2col: over column planes where column_planes says so (a copy KH/stride times smaller than im2col's,
        the GEMM writing the same outputs: 1.02-1.4x faster than im2col with AVX-512, mtcnn's 8x8 and 3x3 outputs
        included; stride 2 from PHASE_MIN_KERNEL); others over one padded band when that costs less: each output row
        then carries (KW-1)*dil padded columns of wasted products, which matter only where they add GEMM panels,
        while im2col copies every output row of every tap and channel on its own."""
        stride1 = self.stride[1] == 1 and self.stride[2] == 1
        several = self.c // self.group > 1 or (self.one_channel_windows and self.m // self.group > 1 and self.k[1] > 1)
        if not (several and not self.pointwise() and self.inp[0] == 1 and self.out[0] == 1
                and self.k[0] == 1 and self.pad[0] == 0 and (stride1 or self.phases())
                and self.pad[1] >= 0 and self.pad[2] >= 0):
            return False
        if not stride1:
            return phase_windows(self.k[1], self.k[2])
        if self.column_planes():
            return True
        rows, cols, extra = self.out[1], self.out[2], (self.k[2] - 1) * self.dil[2]
        if cols >= 8 * extra:
            return True
        if rows * cols < MIN_POSITIONS:
            return False  # im2col's few columns go to the GEMM's dot-product blocks (silero's encoder: 1.4x faster)

        def panels(n: int) -> int:
            return -(-n // TILE_STEP) * TILE_STEP

        wasted = (panels((rows - 1) * (cols + extra) + cols) - panels(rows * cols)) * (self.m // self.group)
        return wasted <= IM2COL_SEGMENT_PRODUCTS * rows

    def winograd_scratch(self, rows: int) -> int:
        """conv.c's ek_conv_scratch for Winograd: bands of `rows` rows of T x T tiles (windows of N x N), with the
        input stage's work (ek_wino_work)."""
        t = self.winograd
        tw, n = -(-self.out[2] // t), t + 2
        work = 4 * (rows * (2 * tw + 2) + 2) + 16 * rows * (tw + 1) if t == 2 else (4 * rows + 8) * 4 * (tw + 1)
        return n * n * (self.c + self.m) * rows * tw + work + t * t * rows * tw

    def column_planes(self) -> bool:
        """conv.c's ek_conv_column_planes: windows over column planes (stride 2, or stride1_column_planes)."""
        return self.phases() or stride1_column_planes(self.k[1], self.k[2], self.c // self.group, self.m // self.group)

    def band_scratch(self, rows: int) -> int:
        """conv.c's ek_conv_scratch on the windows path: a band of `rows` output rows (column planes: KW per row
        phase and input channel, written to y by the GEMM itself; 1-D kernels: the padded band, then its outputs)."""
        if self.phases():
            return self.c // self.group * 2 * self.k[2] * (rows + (self.k[1] - 1) // 2) * self.out[2]
        if self.column_planes():
            return self.c // self.group * self.k[2] * (rows + (self.k[1] - 1) * self.dil[1]) * self.out[2]
        row, rows_in = self.out[2] + (self.k[2] - 1) * self.dil[2], rows + (self.k[1] - 1) * self.dil[1]
        return self.c // self.group * rows_in * row + self.m // self.group * ((rows - 1) * row + self.out[2])


def stride1_column_planes(kh: int, kw: int, cg: int, mg: int) -> bool:
    """Whether a stride-1 convolution's windows run over column planes (conv.c's ek_conv_column_planes): kernels of
    more than one row whose planes' extra copies, KW-1 per input channel and position, cost no more than twice the
    copy of the mg outputs they save (ppocrv4_det's 96 -> 24 3x3 on 80x80 1.09x slower by planes, 24 -> 24 on 40x40
    1.03x faster)."""
    return kh > 1 and (kw - 1) * cg <= 2 * mg


def phase_windows(kh: int, kw: int) -> bool:
    """Whether a stride-2 undilated convolution runs by windows of column planes rather than im2col: from
    PHASE_MIN_KERNEL, where their copy (2 * KW planes) is KH/2 times smaller than im2col's and the GEMMs write the same
    outputs (squeezenet's 3 -> 64 stem 1.04x faster, resnet50's 512-channel 3x3 on 7x7 outputs the same)."""
    return min(kh, kw) >= PHASE_MIN_KERNEL


def _pad3(v: list[int], fill: int) -> list[int]:
    return [fill] * (3 - len(v)) + [int(x) for x in v]


def _tile(rows: int, pixels: int) -> int:
    """Pixels per im2col chunk: all of them if the columns fit the budget, else equal chunks of whole panels."""
    if rows * pixels <= IM2COL_BUDGET:
        return max(pixels, 1)
    rows = max(rows, 1)
    cap = max(1, HARD_BUDGET // rows)
    tile = min(max(IM2COL_BUDGET // rows, MIN_TILE), cap)
    chunks = -(-pixels // tile)
    tile = -(-pixels // chunks)  # the same work in each chunk, no short tail
    rounded = -(-tile // TILE_STEP) * TILE_STEP
    return max(1, min(pixels, rounded if rounded <= cap else tile))


def _band_rows(g: ConvGeometry) -> int:
    """Output rows per band of the windows path: the padded input band and the band's outputs within IM2COL_BUDGET,
    but, as im2col's chunks, MIN_TILE output positions at least (every band reads all of the weights again: resnet50's
    512-channel 3x3 stride-2 conv on 7x7 outputs in bands of 6 and 1 rows read its 9 MB twice, 1.25x slower), within
    HARD_BUDGET; bands of equal height."""
    per_row = max(1, g.band_scratch(2) - g.band_scratch(1))
    rows = max(IM2COL_BUDGET // per_row, -(-MIN_TILE // max(1, g.out[2])))
    rows = max(1, min(g.out[1], rows, HARD_BUDGET // per_row))
    bands = -(-g.out[1] // rows)
    return -(-g.out[1] // bands)


def _winograd_rows(g: ConvGeometry) -> int:
    """Rows of Winograd tiles per band: WINOGRAD_COLUMNS tiles or more for the GEMMs' panels, within
    WINOGRAD_BUDGET of scratch, in bands of equal size."""
    tw, th = -(-g.out[2] // g.winograd), -(-g.out[1] // g.winograd)
    rows = max(1, min(th, -(-WINOGRAD_COLUMNS // tw)))
    while rows > 1 and g.winograd_scratch(rows) > WINOGRAD_BUDGET:
        rows -= 1
    bands = -(-th // rows)
    return -(-th // bands)


def geometry(ctx: Lowering, transpose: bool) -> ConvGeometry:
    x, y = ctx.input(0), ctx.output(0)
    wshape = tuple(ctx.attr("__packed_w__") or ctx.input(1).shape)  # a packed buffer has its own shape
    nsp = len(x.shape) - 2
    if not 1 <= nsp <= 3:
        ctx.fail(f"only 1-D, 2-D and 3-D convolutions are supported (input shape {x.shape})")
    if len(wshape) != nsp + 2:
        ctx.fail(f"weight shape {wshape} does not match input shape {x.shape}")
    group = int(ctx.attr("group", 1))
    kernel = [int(v) for v in (ctx.attr("kernel_shape") or wshape[2:])]
    if list(kernel) != list(wshape[2:]):
        ctx.fail(f"kernel_shape {kernel} differs from the weight's {list(wshape[2:])}")
    strides = [int(v) for v in (ctx.attr("strides") or [1] * nsp)]
    dil = [int(v) for v in (ctx.attr("dilations") or [1] * nsp)]
    ins, outs = list(x.shape[2:]), list(y.shape[2:])
    auto_pad = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    pads = [int(v) for v in (ctx.attr("pads") or [0] * (2 * nsp))]
    begin = pads[:nsp]
    ext = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    if not transpose:
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = [max(0, (o - 1) * s + e - i) for o, s, e, i in zip(outs, strides, ext, ins)]
            begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        elif auto_pad == "VALID":
            begin = [0] * nsp
        m, c = wshape[0], x.shape[1]
    else:
        opad = [int(v) for v in (ctx.attr("output_padding") or [0] * nsp)]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER") or ctx.attr("output_shape"):
            # the spec's rule; `outs` is what shape inference made of output_shape / SAME
            total = [s * (i - 1) + op_ + e - o for s, i, op_, e, o in zip(strides, ins, opad, ext, outs)]
            begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        elif auto_pad == "VALID":
            begin = [0] * nsp
        m, c = wshape[1] * group, x.shape[1]
    if group < 1 or c % group or m % group or (not transpose and wshape[1] * group != c) or (transpose and wshape[0] != c):
        ctx.fail(f"group={group} does not match input {x.shape} and weight {wshape}")
    return ConvGeometry(
        n=x.shape[0], c=c, m=m, group=group, inp=_pad3(ins, 1), out=_pad3(outs, 1), k=_pad3(kernel, 1),
        stride=_pad3(strides, 1), dil=_pad3(dil, 1), pad=_pad3(begin, 0), packed=int(ctx.attr("__pack_rows__") or 0),
        winograd=int(ctx.attr("__winograd__") or 0), one_channel_windows=bool(ctx.attr("__windows_one_channel__")),
    )


def _bias(ctx: Lowering, g: ConvGeometry) -> str:
    if not ctx.has_input(2):
        return "NULL"
    b = ctx.input(2)
    if b.size != g.m:
        ctx.fail(f"bias has {b.size} elements for {g.m} output channels")
    return ctx.ptr(b)


def _emit_conv(ctx: Lowering, transpose: bool) -> None:
    x, w, y = ctx.input(0), ctx.input(1), ctx.output(0)
    dtype = np.dtype(y.dtype)
    s = kernel_letter(ctx, dtype)
    if w.dtype != dtype or x.dtype != dtype:
        ctx.fail("X and W must have the output's dtype")
    g = geometry(ctx, transpose)
    if y.size == 0:
        return
    cg, mg = g.c // g.group, g.m // g.group
    if transpose:
        g.tile = _tile(mg * g.kk, int(np.prod(g.inp)))
        elements = mg * g.kk * g.tile
    elif g.winograd:
        g.tile = _winograd_rows(g)
        elements = g.winograd_scratch(g.tile)
        if g.winograd == 4:  # conv.c compiles F(4x4) only into the models that use it (~17 kB of wasm code)
            ctx.feature("EK_WINO_F4")
    elif g.by_windows():
        g.windows = True
        g.tile = _band_rows(g)
        elements = g.band_scratch(g.tile)
    else:
        g.tile = _tile(cg * g.kk, int(np.prod(g.out)))
        elements = 0 if g.pointwise() or cg == 1 else cg * g.kk * g.tile
    scratch = ctx.scratch(elements * dtype.itemsize, dtype) if elements else "NULL"
    ctx.kernel("gemm")
    ctx.kernel("conv")
    fn = f"ek_{s}conv_transpose" if transpose else f"ek_{s}conv"
    ctx.emit(
        f"static const ek_conv_desc d = {g.c_init()};\n"
        f"{fn}(&d, {ctx.ptr(x)}, {ctx.ptr(w)}, {_bias(ctx, g)}, {ctx.ptr(y)}, {scratch}, {act_args(ctx, dtype)});"
    )


@op("Conv")
def lower_conv(ctx: Lowering) -> None:
    _emit_conv(ctx, transpose=False)


@op("ConvTranspose")
def lower_conv_transpose(ctx: Lowering) -> None:
    _emit_conv(ctx, transpose=True)


@op("BatchNormalization")
def lower_batchnorm(ctx: Lowering) -> None:
    x, y = ctx.input(0), ctx.output(0)
    dtype = np.dtype(y.dtype)
    kernel_letter(ctx, dtype)
    if len(x.shape) < 2:
        ctx.fail(f"input must have a channel axis (shape {x.shape})")
    n, c = x.shape[0], x.shape[1]
    inner = int(np.prod(x.shape[2:], dtype=np.int64))
    params = [ctx.input(i) for i in range(1, 5)]
    if any(p.size != c for p in params):
        ctx.fail(f"scale, B, mean and var must have {c} elements (per-channel); got shapes {[p.shape for p in params]}")
    if any(p.dtype != dtype for p in params):
        ctx.fail("scale, B, mean and var must have the input's dtype")
    training = bool(ctx.attr("training_mode", 0)) and ctx.opset >= 14
    if not training and any(ctx.has_output(i) for i in range(1, len(ctx.node.outputs))):
        ctx.fail("the training outputs (mean, var, saved_mean, saved_var) are not supported")
    eps = literal(ctx.attr("epsilon", 1e-5), dtype)
    sq = math_fn("sqrt", dtype)
    ct = y.ctype
    px, py = ctx.ptr(x), ctx.ptr(y)
    scale, bias, mean, var = (ctx.ptr(p) for p in params)
    if y.size == 0:
        return
    lines = [f"for (size_t c = 0; c < {c}; ++c) {{"]
    if training:
        # batch statistics (population variance), then the running averages with momentum
        mom = float(ctx.attr("momentum", 0.9))
        cnt = literal(n * inner, dtype)
        lines += [
            f"    {ct} mu = 0, v = 0;",
            f"    for (size_t b = 0; b < {n}; ++b) for (size_t i = 0; i < {inner}; ++i) mu += {px}[(b * {c} + c) * {inner} + i];",
            f"    mu /= {cnt};",
            f"    for (size_t b = 0; b < {n}; ++b) for (size_t i = 0; i < {inner}; ++i) {{",
            f"        const {ct} t = {px}[(b * {c} + c) * {inner} + i] - mu;",
            "        v += t * t;",
            "    }",
            f"    v /= {cnt};",
        ]
        for out_i, src, batch in ((1, mean, "mu"), (2, var, "v")):
            if ctx.has_output(out_i):
                o = ctx.ptr(ctx.output(out_i))
                lines.append(f"    {o}[c] = {src}[c] * {literal(mom, dtype)} + {batch} * {literal(1 - mom, dtype)};")
        lines.append(f"    const {ct} s = {scale}[c] / {sq}(v + {eps});")
        lines.append(f"    const {ct} t = {bias}[c] - mu * s;")
    else:
        lines.append(f"    const {ct} s = {scale}[c] / {sq}({var}[c] + {eps});")
        lines.append(f"    const {ct} t = {bias}[c] - {mean}[c] * s;")
    lines += [
        f"    for (size_t b = 0; b < {n}; ++b) {{",
        f"        const {ct} *xr = {px} + (b * {c} + c) * {inner};",
        f"        {ct} *yr = {py} + (b * {c} + c) * {inner};",
        f"        for (size_t i = 0; i < {inner}; ++i) yr[i] = xr[i] * s + t;",
        "    }",
        "}",
    ]
    ctx.emit("\n".join(lines))


@op("ConvInteger")
def lower_conv_integer(ctx: Lowering) -> None:
    """int32 conv of (x - x_zero_point) and (w - w_zero_point) as a direct loop (padding contributes 0);
    w_zero_point per tensor or per output channel."""
    x, w, y = ctx.input(0), ctx.input(1), ctx.output(0)
    for buf in (x, w):
        if np.dtype(buf.dtype).name not in ("int8", "uint8"):
            ctx.fail(f"dtype {np.dtype(buf.dtype).name} is not supported (int8 and uint8 are)")
    g = geometry(ctx, transpose=False)
    if y.size == 0:
        return
    zx = "0"
    if ctx.has_input(2):
        if ctx.input(2).size != 1:
            ctx.fail("x_zero_point must be a scalar")
        zx = f"(int32_t){ctx.ptr(ctx.input(2))}[0]"
    zw = "0"
    if ctx.has_input(3):
        z = ctx.input(3)
        if z.size not in (1, g.m):
            ctx.fail(f"w_zero_point must be a scalar or one per output channel (shape {z.shape})")
        zw = f"(int32_t){ctx.ptr(z)}[{'0' if z.size == 1 else 'm'}]"
    cg, mg = g.c // g.group, g.m // g.group
    sin, sout = int(np.prod(g.inp)), int(np.prod(g.out))
    (ID, IH, IW), (OD, OH, OW), (KD, KH, KW) = g.inp, g.out, g.k

    def rng(ax: str, size_out: int, size_in: int, stride: int) -> str:
        """C for the output range [ax_lo, ax_hi) whose input index o*stride + off lies inside [0, size_in)."""
        return (
            f"const size_t {ax}lo = off{ax} >= 0 ? 0 : (size_t)((-off{ax} + {stride - 1}) / {stride});\n"
            f"size_t {ax}hi = {size_in - 1} - off{ax} < 0 ? 0 : (size_t)(({size_in - 1} - off{ax}) / {stride}) + 1;\n"
            f"if ({ax}hi > {size_out}) {ax}hi = {size_out};\n"
        )

    lines = [
        f"for (size_t n = 0; n < {g.n}; ++n) for (size_t m = 0; m < {g.m}; ++m) {{",
        f"    int32_t *yp = {ctx.ptr(y)} + (n * {g.m} + m) * {sout};",
        f"    const int32_t zw = {zw};",
        f"    for (size_t i = 0; i < {sout}; ++i) yp[i] = 0;",
        f"    for (size_t ci = 0; ci < {cg}; ++ci) {{",
        f"        const {x.ctype} *xc = {ctx.ptr(x)} + (n * {g.c} + m / {mg} * {cg} + ci) * {sin};",
        f"        const {w.ctype} *wc = {ctx.ptr(w)} + (m * {cg} + ci) * {g.kk};",
        f"        for (size_t kd = 0; kd < {KD}; ++kd) for (size_t kh = 0; kh < {KH}; ++kh) for (size_t kw = 0; kw < {KW}; ++kw) {{",
        f"            const int32_t wv = (int32_t)wc[(kd * {KH} + kh) * {KW} + kw] - zw;",
        f"            const ptrdiff_t offd = (ptrdiff_t)(kd * {g.dil[0]}) - {g.pad[0]};",
        f"            const ptrdiff_t offh = (ptrdiff_t)(kh * {g.dil[1]}) - {g.pad[1]};",
        f"            const ptrdiff_t offw = (ptrdiff_t)(kw * {g.dil[2]}) - {g.pad[2]};",
        rng("d", OD, ID, g.stride[0]) + rng("h", OH, IH, g.stride[1]) + rng("w", OW, IW, g.stride[2]),
        "            for (size_t od = dlo; od < dhi; ++od) for (size_t oh = hlo; oh < hhi; ++oh) {",
        f"                const {x.ctype} *xr = xc + ((size_t)((ptrdiff_t)(od * {g.stride[0]}) + offd) * {IH}"
        f" + (size_t)((ptrdiff_t)(oh * {g.stride[1]}) + offh)) * {IW};",
        f"                int32_t *yr = yp + (od * {OH} + oh) * {OW};",
        f"                for (size_t ow = wlo; ow < whi; ++ow) yr[ow] += wv * ((int32_t)xr[(ptrdiff_t)(ow * {g.stride[2]}) + offw] - {zx});",
        "            }",
        "        }",
        "    }",
        "}",
    ]
    ctx.emit("\n".join(lines))


# ---------------------------------------------------------------- DeformConv


@op("DeformConv")
def lower_deform_conv(ctx: Lowering) -> None:
    """2-D deformable convolution: every kernel tap samples X bilinearly (zero outside) at its grid
    position plus a learned offset, scaled by the optional mask -- onnx's reference (GridSample with
    align_corners=1 per tap) written as one loop nest."""
    x, w, off, y = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output(0)
    if len(x.shape) != 4:
        ctx.fail(f"only 2-D DeformConv is supported (X has shape {x.shape})")
    if x.dtype.kind != "f":
        ctx.fail(f"dtype {x.dtype.name} is not supported")
    n, ic, ih, iw = x.shape
    oc, icg, kh, kw = w.shape
    _, _, oh, ow = y.shape
    group, og = int(ctx.attr("group", 1)), int(ctx.attr("offset_group", 1))
    ks = [int(v) for v in ctx.attr("kernel_shape", [kh, kw])]
    st = [int(v) for v in ctx.attr("strides", [1, 1])]
    dl = [int(v) for v in ctx.attr("dilations", [1, 1])]
    pads = [int(v) for v in ctx.attr("pads", [0, 0, 0, 0])]
    if ks != [kh, kw] or ic != icg * group or oc % group or ic % og:
        ctx.fail(f"shapes X {x.shape}, W {w.shape} do not fit group {group}, offset_group {og}, kernel {ks}")
    if tuple(off.shape) != (n, og * kh * kw * 2, oh, ow):
        ctx.fail(f"offset shape {off.shape} is not {(n, og * kh * kw * 2, oh, ow)}")
    mask = ctx.input(4) if ctx.has_input(4) else None
    if mask is not None and tuple(mask.shape) != (n, og * kh * kw, oh, ow):
        ctx.fail(f"mask shape {mask.shape} is not {(n, og * kh * kw, oh, ow)}")
    bias = ctx.input(3) if ctx.has_input(3) else None
    if y.size == 0:
        return
    t = x.ctype
    ocg, icpo, pix = oc // group, ic // og, oh * ow
    fl = math_fn("floor", x.dtype)
    one = literal(1, x.dtype)
    m_term = f" * {ctx.ptr(mask)}[((b*{og} + g)*{kh * kw} + ki*{kw} + kj)*{pix} + p]" if mask is not None else ""
    b_init = f"{ctx.ptr(bias)}[o]" if bias is not None else literal(0, x.dtype)
    xp, wp, opp, yp = ctx.ptr(x), ctx.ptr(w), ctx.ptr(off), ctx.ptr(y)
    ctx.emit(
        f"for (size_t b = 0; b < {n}; ++b) for (size_t o = 0; o < {oc}; ++o) for (size_t i = 0; i < {oh}; ++i) for (size_t j = 0; j < {ow}; ++j) {{\n"
        f"    const size_t p = i*{ow} + j;\n"
        f"    {t} acc = {b_init};\n"
        f"    for (size_t cc = 0; cc < {icg}; ++cc) {{\n"
        f"        const size_t c = (o / {ocg})*{icg} + cc, g = c / {icpo};\n"
        f"        const {t} *xc = {xp} + (b*{ic} + c)*{ih * iw};\n"
        f"        for (size_t ki = 0; ki < {kh}; ++ki) for (size_t kj = 0; kj < {kw}; ++kj) {{\n"
        f"            const size_t oi = ((b*{og} + g)*{kh * kw} + ki*{kw} + kj)*2;\n"
        f"            const {t} ph = ({t})((long)(i*{st[0]} + ki*{dl[0]}) - {pads[0]}) + {opp}[oi*{pix} + p];\n"
        f"            const {t} pw = ({t})((long)(j*{st[1]} + kj*{dl[1]}) - {pads[1]}) + {opp}[(oi + 1)*{pix} + p];\n"
        f"            const {t} fh = {fl}(ph), fw = {fl}(pw), lh = ph - fh, lw = pw - fw;\n"
        f"            {t} v = 0;\n"
        "            if (fh > -2 && fh < " + str(ih) + " && fw > -2 && fw < " + str(iw) + ") {\n"
        "                const long h0 = (long)fh, w0 = (long)fw;\n"
        f"                if (h0 >= 0 && w0 >= 0) v += ({one} - lh) * ({one} - lw) * xc[h0*{iw} + w0];\n"
        f"                if (h0 >= 0 && w0 + 1 < {iw}) v += ({one} - lh) * lw * xc[h0*{iw} + w0 + 1];\n"
        f"                if (h0 + 1 < {ih} && w0 >= 0) v += lh * ({one} - lw) * xc[(h0 + 1)*{iw} + w0];\n"
        f"                if (h0 + 1 < {ih} && w0 + 1 < {iw}) v += lh * lw * xc[(h0 + 1)*{iw} + w0 + 1];\n"
        "            }\n"
        f"            acc += {wp}[((o*{icg} + cc)*{kh} + ki)*{kw} + kj] * v{m_term};\n"
        "        }\n"
        "    }\n"
        f"    {yp}[((b*{oc} + o)*{oh} + i)*{ow} + j] = acc;\n"
        "}"
    )
