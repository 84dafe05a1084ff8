/* onnx-emit runtime: Conv and ConvTranspose over 1-3 spatial axes (ek_sconv, ek_sconv_transpose and
 * their double twins), on top of gemm.c.
 *
 * Conv: one whose weights the exporter stored in Winograd's form (d->winograd) runs F(2x2, 3x3) or F(4x4, 3x3):
 * input tile transforms, 16 or 36 GEMMs, output tile transforms. A 1x1 stride-1 unpadded convolution is one GEMM per
 * (image, group); a depthwise one (one input channel per group) runs on bands of padded rows copied to the stack (flat sums over the
 * band; 3x3 stride 2 in vector builds straight from the rows, tap vectors unzipped in registers, read in place from x
 * when padded by 1; other stride 2 split into phase planes) or, for rows wider than 160, row by row; a stride-1 2-D
 * or 1-D one, or a stride-2 2-D one, where the exporter chose windows (d->windows) runs the GEMM on shifted windows
 * of copies of a band of input rows in the caller's scratch (d->tile output rows per band: column planes, or one
 * padded band); any other is im2col of d->tile output pixels at a time into the caller's scratch, then
 * GEMM with the bias + activation epilogue. ConvTranspose: GEMM W^T X for d->tile input
 * pixels at a time, then col2im scatter-adds the columns into y.
 *
 * Like gemm.c, this file includes itself to instantiate the body for float and double. */
#ifndef EK_T

#include "emit_runtime.h"
#include <string.h>

/* Winograd F(4x4, 3x3)'s B^T (Lavin & Gray) over six values into six lvalues, and A^T's four rows over six values */
#define EK_WINO4_BT(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5)                                                    \
    ((o0) = 4 * (d0) - 5 * (d2) + (d4), (o1) = ((d3) + (d4)) - 4 * ((d1) + (d2)),                                       \
     (o2) = ((d4) - (d3)) + 4 * ((d1) - (d2)), (o3) = ((d4) - (d2)) - 2 * ((d1) - (d3)),                                \
     (o4) = ((d4) - (d2)) + 2 * ((d1) - (d3)), (o5) = 4 * (d1) - 5 * (d3) + (d5))
#define EK_WINO4_A0(p0, p1, p2, p3, p4, p5) ((p0) + ((p1) + (p2)) + ((p3) + (p4)))
#define EK_WINO4_A1(p0, p1, p2, p3, p4, p5) (((p1) - (p2)) + 2 * ((p3) - (p4)))
#define EK_WINO4_A2(p0, p1, p2, p3, p4, p5) (((p1) + (p2)) + 4 * ((p3) + (p4)))
#define EK_WINO4_A3(p0, p1, p2, p3, p4, p5) (((p1) - (p2)) + 8 * ((p3) - (p4)) + (p5))

static int ek_conv_pointwise(const ek_conv_desc *d)
{
    int a;
    for (a = 0; a < 3; ++a)
        if (d->k[a] != 1 || d->stride[a] != 1 || d->pad[a] != 0 || d->in[a] != d->out[a]) return 0;
    return 1;
}

/* A 1-D convolution of one input channel, unpadded and undilated, whose windows all lie inside x (an STFT as a
 * Conv): the window of output t is x + t*stride, so the windows are the rows of B^T in place, no im2col. */
static int ek_conv_windows_in_place(const ek_conv_desc *d)
{
    return d->c == 1 && d->group == 1 && d->in[0] == 1 && d->in[1] == 1 && d->k[0] == 1 && d->k[1] == 1 &&
           d->pad[0] == 0 && d->pad[1] == 0 && d->pad[2] == 0 && d->dil[2] == 1 && d->out[2] > 0 &&
           (d->out[2] - 1) * d->stride[2] + d->k[2] <= d->in[2];
}

static int ek_conv_phases(const ek_conv_desc *d) /* stride 2 both ways, undilated: windows over column planes */
{
    return d->stride[1] == 2 && d->stride[2] == 2 && d->dil[1] == 1 && d->dil[2] == 1;
}

/* A 2-D (or 1-D) stride-1 convolution, or a 2-D stride-2 one, of more than one input channel per group, by windows
 * when the exporter chose so (d->windows, from ConvGeometry.by_windows, which weighs the padded columns' wasted
 * products against im2col's copies): the kernel's taps are shifted windows of a zero-padded band of input rows, read
 * in place by the GEMM's packing, not im2col. The shape conditions are checked here too: a desc that asks for windows
 * where they do not fit gets im2col. */
static int ek_conv_by_windows(const ek_conv_desc *d)
{
    return d->windows && (d->c / d->group > 1 || (d->m / d->group > 1 && d->k[1] > 1)) && !ek_conv_pointwise(d) && d->in[0] == 1 && d->out[0] == 1 &&
           d->k[0] == 1 && d->pad[0] == 0 && ((d->stride[1] == 1 && d->stride[2] == 1) || ek_conv_phases(d)) &&
           d->pad[1] >= 0 && d->pad[2] >= 0 && d->tile > 0;
}

/* the windows path over column planes (see conv_windows): stride 2, and stride-1 kernels of more than one row whose
 * planes' extra copies, KW-1 per input channel and position, cost no more than twice the copy of the mg outputs they
 * save (the exporter's rule: ops/conv.py's stride1_column_planes) */
static int ek_conv_column_planes(const ek_conv_desc *d)
{
    return ek_conv_phases(d) || (d->k[1] > 1 && (d->k[2] - 1) * (d->c / d->group) <= 2 * (d->m / d->group));
}

/* the windows path's row length and its band's input rows (stride 2: of each row parity), for d->tile output rows;
 * and its planes per input channel */
static size_t ek_conv_band_row(const ek_conv_desc *d)
{
    return ek_conv_column_planes(d) ? d->out[2] : d->out[2] + (d->k[2] - 1) * d->dil[2];
}

static size_t ek_conv_band_planes(const ek_conv_desc *d)
{
    return ek_conv_phases(d) ? 2 * d->k[2] : ek_conv_column_planes(d) ? d->k[2] : 1;
}

static size_t ek_conv_band_rows_in(const ek_conv_desc *d)
{
    return ek_conv_phases(d) ? d->tile + (d->k[1] - 1) / 2 : d->tile + (d->k[1] - 1) * d->dil[1];
}

/* [*c0, *c1): the columns of a row padded by pad at the start to len that hold the in input pixels */
static void ek_conv_padded_cols(size_t pad, size_t in, size_t len, size_t *c0, size_t *c1)
{
    *c0 = pad < len ? pad : len;
    *c1 = pad + in < len ? pad + in : len;
}

/* Winograd's T x T output tiles along a row, T = d->winograd (tile t reads padded input columns Tt .. Tt + T + 1) */
static size_t ek_wino_tiles_w(const ek_conv_desc *d)
{
    return (d->out[2] + (size_t)d->winograd - 1) / (size_t)d->winograd;
}

/* Winograd's input stage's scratch: conv_winograd2's strips and their transforms, wino4_input's phase rows and the
 * transformed ones */
static size_t ek_wino_work(const ek_conv_desc *d)
{
    const size_t tw = ek_wino_tiles_w(d);
    if (d->winograd == 2) return 4 * (d->tile * (2 * tw + 2) + 2) + 16 * d->tile * (tw + 1);
    return (4 * d->tile + 2 + 6) * 4 * (tw + 1);
}

size_t ek_conv_scratch(const ek_conv_desc *d)
{
    const size_t cg = d->c / d->group;
    if (d->winograd) { /* V and the N^2 products for d->tile rows of T x T tiles (N = T + 2), the input stage's
                        * work, and the band's T^2 output values per tile */
        const size_t T = (size_t)d->winograd, N = T + 2, tw = ek_wino_tiles_w(d);
        return N * N * (d->c + d->m) * d->tile * tw + ek_wino_work(d) + T * T * d->tile * tw;
    }
    if (ek_conv_pointwise(d)) return 0;
    if (ek_conv_by_windows(d)) { /* the band of cg channels (column planes: KW per row phase each), then, for one
                                  * padded band, the band's mg output rows of its length */
        const size_t pw = ek_conv_band_row(d);
        return cg * ek_conv_band_planes(d) * ek_conv_band_rows_in(d) * pw +
               (ek_conv_column_planes(d) ? 0 : d->m / d->group * ((d->tile - 1) * pw + d->out[2]));
    }
    if (cg == 1) return 0;
    return cg * d->k[0] * d->k[1] * d->k[2] * d->tile;
}

size_t ek_conv_transpose_scratch(const ek_conv_desc *d)
{
    return d->m / d->group * d->k[0] * d->k[1] * d->k[2] * d->tile;
}

/* [*lo, *hi): the positions o < count with 0 <= o*stride + off < bound */
static void ek_conv_range(size_t count, size_t bound, size_t stride, ptrdiff_t off, size_t *lo, size_t *hi)
{
    const ptrdiff_t s = (ptrdiff_t)stride, last = (ptrdiff_t)bound - 1 - off;
    size_t l = off >= 0 ? 0 : (size_t)((-off + s - 1) / s);
    size_t h = last < 0 ? 0 : (size_t)(last / s) + 1;
    if (h > count) h = count;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

#define EK_T float
#define EK_FN(name) ek_s##name
/* Winograd F(4x4, 3x3): float only (the exporter stores Winograd's weights for float32 convolutions only), and only
 * with EK_WINO_F4, which an export defines in its emit_runtime.h when the model has such a convolution (wasm builds'
 * outputs of 13x13 and more) and the kernel tests on the command line: its code is ~17 kB of wasm and added
 * 1.5-1.9 s to each gcc -O3 build of this file */
#ifdef EK_WINO_F4
#define EK_WINO4 1
#endif
#include "conv.c"
#undef EK_WINO4
#undef EK_T
#undef EK_FN

#define EK_T double
#define EK_FN(name) ek_d##name
#include "conv.c"

#else /* the body, once per element type */

/* col[r*pt + q] for the pt output pixels from p0 on (flat over out[0..2]), rows r = (ci, kd, kh, kw)
 * of the cg input channels at x */
static void EK_FN(im2col)(const ek_conv_desc *d, size_t cg, const EK_T *x, EK_T *col, size_t p0, size_t pt)
{
    const size_t ID = d->in[0], IH = d->in[1], IW = d->in[2];
    const size_t OH = d->out[1], OW = d->out[2], sw = d->stride[2];
    size_t ci, kd, kh, kw;
    EK_T *dst = col;
    for (ci = 0; ci < cg; ++ci) {
        const EK_T *xc = x + ci * ID * IH * IW;
        for (kd = 0; kd < d->k[0]; ++kd) {
            const ptrdiff_t offd = (ptrdiff_t)(kd * d->dil[0]) - d->pad[0];
            for (kh = 0; kh < d->k[1]; ++kh) {
                const ptrdiff_t offh = (ptrdiff_t)(kh * d->dil[1]) - d->pad[1];
                for (kw = 0; kw < d->k[2]; ++kw) {
                    const ptrdiff_t offw = (ptrdiff_t)(kw * d->dil[2]) - d->pad[2];
                    size_t od = p0 / (OH * OW), oh = p0 / OW % OH, ow = p0 % OW, q = 0, lo, hi, t;
                    ek_conv_range(OW, IW, d->stride[2], offw, &lo, &hi);
                    while (q < pt) {
                        const size_t seg = OW - ow < pt - q ? OW - ow : pt - q;
                        const ptrdiff_t id = (ptrdiff_t)(od * d->stride[0]) + offd;
                        const ptrdiff_t ih = (ptrdiff_t)(oh * d->stride[1]) + offh;
                        if (id < 0 || id >= (ptrdiff_t)ID || ih < 0 || ih >= (ptrdiff_t)IH) {
                            for (t = 0; t < seg; ++t) dst[t] = 0;
                        } else {
                            /* output columns ow .. ow+seg-1; lo..hi-1 of them read the input row */
                            const EK_T *xr = xc + ((size_t)id * IH + (size_t)ih) * IW;
                            const size_t a = lo > ow ? lo - ow : 0;
                            const size_t b = hi > ow ? (hi - ow < seg ? hi - ow : seg) : 0;
                            for (t = 0; t < a && t < seg; ++t) dst[t] = 0;
                            /* the source row from t = a on; copied by memcpy or a loop over locals with a constant
                             * stride: the loops over xr and d-> fields stayed scalar (a third of a YOLO net's time) */
                            if (b > a) {
                                const EK_T *src = xr + ((ptrdiff_t)((ow + a) * sw) + offw);
                                EK_T *out = dst + a;
                                const size_t len = b - a;
                                if (sw == 1)
                                    memcpy(out, src, len * sizeof(EK_T));
                                else if (sw == 2)
                                    EK_FN(copy_evens)(out, src, len, xr, xr + IW);
                                else
                                    for (t = 0; t < len; ++t) out[t] = src[t * sw];
                            }
                            for (t = b > a ? b : a; t < seg; ++t) dst[t] = 0;
                        }
                        dst += seg;
                        q += seg;
                        ow = 0;
                        if (++oh == OH) {
                            oh = 0;
                            ++od;
                        }
                    }
                }
            }
        }
    }
}

/* y[ow] += wv * x[ow*S + off] for ow in [lo, hi): the inner loop of a depthwise convolution, with the
 * stride a compile-time constant in the common cases so the compiler vectorises it */
static void EK_FN(dw_tap)(EK_T *y, const EK_T *x, EK_T wv, size_t lo, size_t hi, size_t stride, ptrdiff_t off)
{
    size_t ow;
    if (stride == 1) {
        const EK_T *xs = x + off;
        for (ow = lo; ow < hi; ++ow) y[ow] += wv * xs[ow];
    } else if (stride == 2) {
        for (ow = lo; ow < hi; ++ow) y[ow] += wv * x[(ptrdiff_t)(2 * ow) + off];
    } else {
        for (ow = lo; ow < hi; ++ow) y[ow] += wv * x[(ptrdiff_t)(ow * stride) + off];
    }
}

/* y[ow] += the KW (3 or 5) taps of one kernel row for ow in [lo, hi), where all of them are inside the input row:
 * one load and store of y per kernel row instead of per tap. xs = the input row at the first tap of output 0. */
static void EK_FN(dw_row)(EK_T *y, const EK_T *xs, const EK_T *w, size_t kw_count, size_t dil, size_t lo, size_t hi,
                          size_t stride)
{
    size_t ow;
    const EK_T w0 = w[0], w1 = w[1], w2 = w[2];
    const EK_T *x0 = xs, *x1 = xs + dil, *x2 = xs + 2 * dil;
    if (kw_count == 3 && stride == 1) {
        for (ow = lo; ow < hi; ++ow) y[ow] += w0 * x0[ow] + w1 * x1[ow] + w2 * x2[ow];
    } else if (kw_count == 3) { /* stride 2 */
        for (ow = lo; ow < hi; ++ow) y[ow] += w0 * x0[2 * ow] + w1 * x1[2 * ow] + w2 * x2[2 * ow];
    } else {
        const EK_T w3 = w[3], w4 = w[4];
        const EK_T *x3 = xs + 3 * dil, *x4 = xs + 4 * dil;
        if (stride == 1)
            for (ow = lo; ow < hi; ++ow) y[ow] += w0 * x0[ow] + w1 * x1[ow] + w2 * x2[ow] + w3 * x3[ow] + w4 * x4[ow];
        else
            for (ow = lo; ow < hi; ++ow)
                y[ow] += w0 * x0[2 * ow] + w1 * x1[2 * ow] + w2 * x2[2 * ow] + w3 * x3[2 * ow] + w4 * x4[2 * ow];
    }
}

/* row[0, len) = zeros, with input row xr (NULL: a row of the padding) at its columns [c0, c1) (column c is
 * xr[c - pad]): a padded row of the banded depthwise and windows paths */
static void EK_FN(padded_row)(EK_T *row, size_t len, const EK_T *xr, size_t pad, size_t c0, size_t c1)
{
    size_t c;
    for (c = 0; c < len; ++c) row[c] = 0;
    if (xr && c0 < c1) memcpy(row + c0, xr + (c0 - pad), (c1 - c0) * sizeof(EK_T));
}

/* even[j], odd[j] = columns 2j, 2j + 1 of a padded row of len (<= 2 * ws) columns, input row xr (NULL: a row of the
 * padding) at its columns [c0, c1) (column c is xr[c - pad]): a stride-2 depthwise band's row split in its column
 * phases. Only the padding is zeroed (a memset of both whole rows before the copies cost 17% of a 56 -> 28 layer). */
static void EK_FN(phase_split)(EK_T *even, EK_T *odd, size_t ws, const EK_T *xr, size_t pad, size_t c0, size_t c1)
{
    const size_t e0 = xr ? (c0 + 1) / 2 : ws, e1 = xr ? (c1 + 1) / 2 : ws; /* the pixels' [e0, e1) of even */
    const size_t o0 = xr ? c0 / 2 : ws, o1 = xr ? c1 / 2 : ws;             /* and [o0, o1) of odd */
    size_t j;
    for (j = 0; j < e0; ++j) even[j] = 0;
    for (j = 0; j < o0; ++j) odd[j] = 0;
    for (j = e0; j < e1; ++j) even[j] = xr[2 * j - pad]; /* loops over the output index, so they vectorise */
    for (j = o0; j < o1; ++j) odd[j] = xr[2 * j + 1 - pad];
    for (j = e1; j < ws; ++j) even[j] = 0;
    for (j = o1; j < ws; ++j) odd[j] = 0;
}

/* the activation left to apply after gemm.c's depthwise kernels dw_rows_s2, dw_rows_edges and dw_lanes, which apply
 * ReLU and Clip as they store */
#define EK_DW_ACT_REST(act) ((act) == EK_ACT_RELU || (act) == EK_ACT_CLIP ? EK_ACT_NONE : (act))

#ifndef EK_DW_BAND /* elements of each of the two stack buffers of the banded path: padded input rows, outputs */
#if defined(__arm__) && !defined(__aarch64__)
#define EK_DW_BAND 512 /* 32-bit Arm (Cortex-M): keep the stack frame at 4 KiB */
#else
#define EK_DW_BAND 4096
#endif
#endif

/* yp[q] = b + the KC x KC taps of w at xp + SC*q, for the nq outputs of a band laid out with the padded row length
 * PW (q = oh*PW + ow, the columns ow >= OW are discarded): one long loop of independent sums, so the vector lanes stay
 * full and the FMA latency chains of neighbouring outputs overlap, unlike OW-long rows. Constant KC unrolls each sum
 * completely (SC = 2: every other output of the grid is discarded too). */
#define EK_DW_PLANE(KC, SC)                                                                                 \
    for (q = 0; q < nq; ++q) {                                                                              \
        const EK_T *win = xp + (SC) * q;                                                                    \
        EK_T acc = b;                                                                                       \
        for (kh = 0; kh < (KC); ++kh)                                                                       \
            for (kw = 0; kw < (KC); ++kw) acc += w[kh * (KC) + kw] * win[kh * PW + kw];                     \
        yp[q] = acc;                                                                                        \
    }

/* The same for stride 2 over the band split into 4 phase planes of hs rows of WS (row parity, column parity):
 * tap (kh, kw) of output q = oh*WS + ow is in plane (kh&1, kw&1) at q + (kh/2)*WS + kw/2, so every load is unit
 * stride and no output is computed to be discarded but a column or two per row (computing the stride-1 grid and
 * keeping every other output did twice the work through strided loads). */
#define EK_DW_PHASES(KC)                                                                                    \
    for (q = 0; q < nq; ++q) {                                                                              \
        EK_T acc = b;                                                                                       \
        for (kh = 0; kh < (KC); ++kh)                                                                       \
            for (kw = 0; kw < (KC); ++kw)                                                                   \
                acc += w[kh * (KC) + kw] *                                                                  \
                       xp[((kh & 1) * 2 + (kw & 1)) * hs * WS + q + (kh / 2) * WS + kw / 2];                \
        yp[q] = acc;                                                                                        \
    }

/* A 2-D plane, square kernel up to 7x7, stride 1 or 2 (or 2 down the rows and 1 along them), no dilation, by bands
 * of output rows: the input rows a band reads are copied once with their zero padding, then every output is KxK
 * multiply-adds with no bounds checks (stride 1 along rows: gemm.c's dw_rows, in vectors; 3x3 stride 2 with rows of
 * a vector or more: gemm.c's dw_rows_s2). Returns 0 when the case does not apply (or a padded row is too long for the
 * buffers). */
static int EK_FN(dw_banded)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, EK_T b, EK_T *y, int act,
                            EK_T act_a, EK_T act_b)
{
    const size_t IH = d->in[1], IW = d->in[2], OH = d->out[1], OW = d->out[2], S = d->stride[2], K = d->k[2];
    const size_t SH = d->stride[1];
    const size_t PW = (OW - 1) * S + K; /* the padded row the outputs read */
    const size_t WS = (PW + 1) / 2;     /* stride 2: a row of one column phase */
    const size_t pw = (size_t)d->pad[2];
    EK_T xp[EK_DW_BAND], yp[EK_DW_BAND];
    size_t band, oh0, r, c0, c1, oh, q, nq, kh, kw, hs = 0;
    int phases, s2, direct = 0, rest = act; /* rest: the activation still to apply */
    if (d->k[0] != 1 || d->k[1] != K || K > 7 || d->dil[1] != 1 || d->dil[2] != 1 || (SH != S && S != 1) ||
        (SH != 1 && SH != 2) || K * PW > EK_DW_BAND || d->pad[0] != 0 || d->pad[1] < 0 || d->pad[2] < 0)
        return 0;
    /* 3x3 stride 2 in builds with vector unzips: the padded rows straight (one element of xp to spare): 56 -> 28
     * 1.4x faster than the phase planes, whose short strided copies cost more than the taps. Other stride 2 with rows
     * of 24 outputs or more: split into phase planes (EK_DW_PHASES); on shorter rows the extra copy loops cost more
     * than the stride-2 grid's wasted outputs (measured on 14x14 and 7x7 outputs) */
    s2 = K == 3 && S == 2 && SH == 2 && EK_FN(dw_s2_width)() && OW >= EK_FN(dw_s2_width)() &&
         (EK_DW_BAND - 1) / PW >= K;
    phases = !s2 && S == 2 && OW >= 24 && EK_DW_BAND / (4 * WS) >= K / 2 + 1;
    if (phases)
        band = EK_DW_BAND / (4 * WS) - K / 2; /* the 4 phase planes of band + K/2 rows fit xp */
    else
        band = ((EK_DW_BAND - s2) / PW - K) / SH + 1; /* output rows whose (band-1)*SH+K input rows fit xp */
    ek_conv_padded_cols(pw, IW, PW, &c0, &c1);
    if (!phases) { /* the padding columns zeroed once: the rows' copies below leave them be (a memset of each short
                    * row before its copy cost up to 15% of a layer) */
        const size_t bh = OH < band ? OH : band;
        memset(xp, 0, (((bh - 1) * SH + K) * PW + (size_t)s2) * sizeof(EK_T)); /* s2: the element it reads past */
    }
    for (oh0 = 0; oh0 < OH; oh0 += band) {
        const size_t bh = OH - oh0 < band ? OH - oh0 : band, rows = (bh - 1) * SH + K;
        const size_t lp = phases ? WS : PW; /* the row length of the band's outputs in yp */
        if (phases) hs = (rows + 1) / 2;
        for (r = 0; r < rows; ++r) {
            const ptrdiff_t ih = (ptrdiff_t)(oh0 * SH + r) - d->pad[1];
            const EK_T *xr = ih >= 0 && ih < (ptrdiff_t)IH ? x + (size_t)ih * IW : NULL; /* column c: xr[c - pw] */
            if (!phases) {
                if (xr && c0 < c1)
                    memcpy(xp + r * PW + c0, xr + (c0 - pw), (c1 - c0) * sizeof(EK_T));
                else /* a row of the padding, where an earlier band may have copied pixels */
                    memset(xp + r * PW, 0, PW * sizeof(EK_T));
            } else { /* stride 2: the row split into its even and odd columns, in the planes of its row parity */
                EK_T *even = xp + ((r & 1) * 2 * hs + r / 2) * WS;
                EK_FN(phase_split)(even, even + hs * WS, WS, xr, pw, c0, c1);
            }
        }
        nq = (bh - 1) * lp + OW;
        if (S == 1) { /* straight into y, or into yp for the copy below */
            direct = EK_FN(dw_rows)(xp, PW, SH, w, K, b, y + oh0 * OW, OW, yp, bh, OW);
        } else if (s2) {
            EK_FN(dw_rows_s2)(xp, PW, w, b, y + oh0 * OW, OW, bh, OW, act, act_a, act_b);
            rest = EK_DW_ACT_REST(act);
            direct = 1;
        } else {
            switch (phases ? K : K * 4 + S) { /* constant K and S in the common cases */
            case 3: EK_DW_PHASES(3); break;
            case 5: EK_DW_PHASES(5); break;
            case 14: EK_DW_PLANE(3, 2); break;
            case 22: EK_DW_PLANE(5, 2); break;
            default:
                if (phases) {
                    EK_DW_PHASES(K);
                } else {
                    EK_DW_PLANE(K, S);
                }
                break;
            }
        }
        for (oh = 0; oh < bh && !direct; ++oh) memcpy(y + (oh0 + oh) * OW, yp + oh * lp, OW * sizeof(EK_T));
        EK_FN(act)(y + oh0 * OW, bh * OW, rest, act_a, act_b); /* while the band is in L1 */
    }
    return 1;
}

#ifndef EK_DW_LANES_OW /* output rows at most this long go by lanes: 7x7 2.5x, 14x14 1.2-1.8x; 28x28 0.6x */
#if defined(__arm__) && !defined(__aarch64__)
#define EK_DW_LANES_OW 0 /* 32-bit Arm (Cortex-M): no float vectors to fill, and a 7.5 KiB stack frame */
#else
#define EK_DW_LANES_OW 16
#endif
#endif

/* A depthwise convolution (one channel per group, one output channel each) of a 2-D plane with short rows, all
 * channels of an image, ek_dw_lane_count() of them at a time: a band of their input rows, zero padded, interleaved
 * on the stack so that each element is a vector of the channels; dw_lanes' taps over those vectors; the outputs
 * back to their planes. The per-channel path spent more on each channel's setup and short rows than on the taps.
 * Returns 0 when the case does not apply (the caller checks the rows' length). */
static int EK_FN(dw_by_lanes)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, const EK_T *bias, EK_T *y, int act,
                              EK_T act_a, EK_T act_b)
{
    const size_t L = EK_FN(dw_lane_count)(), C = d->c, IH = d->in[1], IW = d->in[2], OH = d->out[1], OW = d->out[2];
    const size_t K = d->k[2], SH = d->stride[1], SW = d->stride[2], kk = K * K, pw = (size_t)d->pad[2];
    const size_t PW = (OW - 1) * SW + K; /* the padded row the outputs read */
    EK_T xp[EK_DW_BAND], st[EK_DW_BAND], wl[49 * 16], bl[16]; /* st: the band's interleaved outputs */
    size_t c0, l, t, band, oh0, r, cb, ce;
    if (L < 2 || L > 16 || d->group != C || d->m != C || d->packed || d->k[0] != 1 || d->k[1] != K || K > 7 ||
        d->in[0] != 1 || d->out[0] != 1 || d->dil[1] != 1 || d->dil[2] != 1 || d->pad[0] != 0 || d->pad[1] < 0 ||
        d->pad[2] < 0 || K * PW * L > EK_DW_BAND || K * IW * L > EK_DW_BAND)
        return 0;
    band = (EK_DW_BAND / ((PW > IW ? PW : IW) * L) - K) / SH + 1; /* output rows whose input rows fit xp and st
                                                                    * (their outputs fit st then: OW <= PW) */
    ek_conv_padded_cols(pw, IW, PW, &cb, &ce);
    for (c0 = 0; c0 < C; c0 += L) {
        const size_t nl = C - c0 < L ? C - c0 : L; /* lanes past the last channel: zeros, not stored */
        for (t = 0; nl < L && t < kk * L; ++t) wl[t] = 0; /* the lanes past the last channel */
        /* channel c0 + l's taps into lane l; rows read past their kk taps while they stay inside w */
        EK_FN(dw_interleave)(wl, w + c0 * kk, kk, nl, kk, C - c0 >= L ? (C - c0 - L) * kk : 0);
        for (l = 0; l < L; ++l) bl[l] = l < nl && bias ? bias[c0 + l] : (EK_T)0;
        for (oh0 = 0; oh0 < OH; oh0 += band) {
            const size_t bh = OH - oh0 < band ? OH - oh0 : band, rows = (bh - 1) * SH + K;
            /* the band's input rows inside the image, [r0, r1) of the band: contiguous in each channel's plane, so
             * interleaved as one run (st), then each row copied to its padded place (column c is pixel c - pw) */
            const ptrdiff_t ih0 = (ptrdiff_t)(oh0 * SH) - d->pad[1];
            const size_t r0 = ih0 < 0 ? (size_t)-ih0 : 0;
            const size_t r1 = ih0 + (ptrdiff_t)rows > (ptrdiff_t)IH ? (size_t)((ptrdiff_t)IH - ih0) : rows;
            if (r1 > r0 && ce > cb) {
                /* only the padding zeroed around the rows: the rows above and below, each row's edges (all of the
                 * band where the lanes past the last channel need zeros too) */
                for (t = 0; t < (nl < L ? rows * PW : r0 * PW + cb) * L; ++t) xp[t] = 0;
                for (r = r0; r < r1; ++r) {
                    const size_t z0 = (r * PW + ce) * L, z1 = r + 1 < r1 ? ((r + 1) * PW + cb) * L : rows * PW * L;
                    const size_t ih = (size_t)(ih0 + (ptrdiff_t)r), end = ih * IW + (cb - pw) + (ce - cb);
                    /* each row interleaved straight to its padded place, its last block read on past the row's end
                     * where the last lane's plane (or the planes after it) go on (a copy through st cost a tenth) */
                    EK_FN(dw_interleave)(xp + (r * PW + cb) * L, x + c0 * IH * IW + ih * IW + (cb - pw), IH * IW, nl,
                                         ce - cb, IH * IW - end + (C - c0 - nl) * IH * IW);
                    for (t = z0; nl == L && t < z1; ++t) xp[t] = 0; /* this row's end, the next one's start or the
                                                                     * rows below */
                }
            } else {
                for (t = 0; t < rows * PW * L; ++t) xp[t] = 0;
            }
            EK_FN(dw_lanes)(xp, PW, SH, SW, wl, K, bl, st, bh, OW, act, act_a, act_b);
            /* one call for the lanes, not one per channel */
            EK_FN(act)(st, bh * OW * L, EK_DW_ACT_REST(act), act_a, act_b);
            EK_FN(dw_deinterleave)(y + (c0 * OH + oh0) * OW, OH * OW, st, nl, bh * OW);
        }
    }
    return 1;
}

#define EK_DW_LANES_MAX 16                   /* the widest float vector of any build, in elements */
#define EK_DW_TAIL (2 * EK_DW_LANES_MAX + 2) /* elements dw_rows_edges may read past the last row it reads */
#ifndef EK_DW_COPY_PLANE /* dw_in_place copies planes of up to this many elements (and 2 rows of zeros) to the stack:
                          * 28x28 1.15x faster than reading it in place, 56x56 0.9x */
#define EK_DW_COPY_PLANE (EK_DW_BAND / 4)
#endif

#ifndef EK_DW_IN_PLACE_MAX_OW /* the widest output row read in place, stride 2 or 1 (its padded border rows on the stack) */
#if defined(__arm__) && !defined(__aarch64__)
#define EK_DW_IN_PLACE_MAX_OW 8 /* 32-bit Arm (Cortex-M): no vector path to take, keep the frame small */
#else
#define EK_DW_IN_PLACE_MAX_OW 160
#endif
#endif

/* A 3x3 depthwise plane of stride 2 padded by 1 at the top and left (and the right, if at all, by 1), or of stride 1
 * padded by 1 all round, in vector builds (AVX, SSE, NEON, wasm simd128), by gemm.c's dw_rows_edges over whole rows,
 * the padding columns masked off in registers (no padding zeroed, no edge columns one at a time: a fifth of a 28x28
 * layer; in MobileNet under Node 56 -> 28 2.6x and 28x28 1.3x faster than the banded path). A plane that fits the
 * stack is copied there between rows of zeros (one copy: the rows are contiguous); a larger one is read in place, all
 * but its first and last output row (stride 1: two each), which read a copy of their input rows (copying the whole
 * band was 40% of a 56 -> 28 layer). Rows shorter than a vector (at least half of one): a vector per row, its lanes
 * past the row's end written over by the next row. Returns 0 when the case does not apply. */
static int EK_FN(dw_in_place_fits)(const ek_conv_desc *d)
{
    const size_t IH = d->in[1], IW = d->in[2], OH = d->out[1], OW = d->out[2], S = d->stride[2];
    const size_t vl = EK_FN(dw_s2_width)(), edge = S == 1 ? 2 : 1;
    if (!vl || d->k[0] != 1 || d->k[1] != 3 || d->k[2] != 3 || d->stride[1] != S || (S != 1 && S != 2) ||
        d->dil[1] != 1 || d->dil[2] != 1 || d->pad[0] != 0 || d->pad[1] != 1 || d->pad[2] != 1 || 2 * OW <= vl ||
        OW > EK_DW_IN_PLACE_MAX_OW || (OW - 1) * S + 3 > IW + 2 || IW > 2 * EK_DW_IN_PLACE_MAX_OW + 1 ||
        (OH - 1) * S + 1 > IH)
        return 0;
    /* a plane too large to copy: the rows between the first and last read in place (see below) */
    return (IH + 2) * IW <= EK_DW_COPY_PLANE || (OH >= 2 * edge && (OH - 1 - edge) * S + 3 <= IH);
}

static int EK_FN(dw_in_place)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, EK_T b, EK_T *y, int act,
                              EK_T act_a, EK_T act_b)
{
    const size_t IH = d->in[1], IW = d->in[2], OH = d->out[1], OW = d->out[2], S = d->stride[2];
    const size_t vl = EK_FN(dw_s2_width)(), PW = (OW - 1) * S + 3; /* the padded rows the outputs read */
    const int right_pad = PW > IW + 1;
    const size_t edge = S == 1 ? 2 : 1, rows = (edge - 1) * S + 3; /* output rows at each end, their input rows */
    EK_T xs[EK_DW_BAND], ys[2 * EK_DW_IN_PLACE_MAX_OW + EK_DW_LANES_MAX]; /* xs: >= 4 * (2 * MAX_OW + 1) + tail */
    const int rest = EK_DW_ACT_REST(act); /* dw_rows_edges applies ReLU and Clip as it stores */
    size_t e, r, t, n;
    if (!EK_FN(dw_in_place_fits)(d)) return 0;
    if ((IH + 2) * IW <= EK_DW_COPY_PLANE) { /* the plane between rows of zeros on the stack */
        for (t = 0; t < 1 + IW; ++t) xs[t] = 0;
        memcpy(xs + 1 + IW, x, IH * IW * sizeof(EK_T));
        for (t = 1 + (IH + 1) * IW; t < 1 + (IH + 2) * IW + EK_DW_TAIL; ++t) xs[t] = 0;
        n = OW < vl ? OH - 1 : OH; /* the last row's vector would write past the plane: through ys */
        EK_FN(dw_rows_edges)(xs + 1, IW, S, w, b, y, OW, n, right_pad, act, act_a, act_b);
        if (n < OH) {
            EK_FN(dw_rows_edges)(xs + 1 + n * S * IW, IW, S, w, b, ys, OW, 1, right_pad, act, act_a, act_b);
            memcpy(y + n * OW, ys, OW * sizeof(EK_T));
        }
        EK_FN(act)(y, OH * OW, rest, act_a, act_b);
        return 1;
    }
    /* output rows edge .. OH-1-edge read input rows S*edge - 1 = 1 .. S*(OH-1-edge) + 1 <= IH - 2, so the element
     * before them and those after them that a vector reads (at most 2 * (vl - OW) + 2 <= IW) are in the plane; the
     * last row's vector writes past it into row OH - edge, written after */
    if (OH > 2 * edge)
        EK_FN(dw_rows_edges)(x + (S * edge - 1) * IW, IW, S, w, b, y + edge * OW, OW, OH - 2 * edge, right_pad, act,
                             act_a, act_b);
    for (e = 0; e < 2; ++e) { /* the first output rows (a row of padding above), the last (stride 1: one below) */
        const ptrdiff_t ih0 = e ? (ptrdiff_t)((OH - edge) * S) - 1 : -1;
        xs[0] = 0;
        for (r = 0; r < rows; ++r) {
            const ptrdiff_t ih = ih0 + (ptrdiff_t)r;
            if (ih >= 0 && ih < (ptrdiff_t)IH)
                memcpy(xs + 1 + r * IW, x + (size_t)ih * IW, IW * sizeof(EK_T));
            else
                for (t = 0; t < IW; ++t) xs[1 + r * IW + t] = 0;
        }
        for (t = 0; t < EK_DW_TAIL; ++t) xs[1 + rows * IW + t] = 0;
        EK_FN(dw_rows_edges)(xs + 1, IW, S, w, b, ys, OW, edge, right_pad, act, act_a, act_b);
        memcpy(y + (e ? OH - edge : 0) * OW, ys, edge * OW * sizeof(EK_T));
    }
    EK_FN(act)(y, OH * OW, rest, act_a, act_b);
    return 1;
}

/* one output channel of a depthwise convolution: y (out plane) from x (one input plane), w (k).
 * Row by row: an output row stays in L1 while every tap of the kernel adds into it. */
static void EK_FN(conv_depthwise)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, EK_T b, EK_T *y, int act,
                                  EK_T act_a, EK_T act_b)
{
    const size_t ID = d->in[0], IH = d->in[1], IW = d->in[2];
    const size_t OD = d->out[0], OH = d->out[1], OW = d->out[2];
    const size_t KD = d->k[0], KH = d->k[1], KW = d->k[2];
    const size_t SD = d->stride[0], SH = d->stride[1], SW = d->stride[2];
    size_t od, oh, ow, kd, kh, kw;
    size_t lo[16], hi[16]; /* each tap column's output range, the same for every row: found once, not per row
                            * (its divisions cost more than a 7-wide row's multiply-adds) */
    size_t in_lo = 0, in_hi = 0; /* outputs whose KW taps are all inside the row, for dw_row (KW 3 or 5, stride 1 or 2) */
    const int by_rows = (KW == 3 || KW == 5) && (SW == 1 || SW == 2);
    if (EK_FN(dw_in_place)(d, x, w, b, y, act, act_a, act_b)) return;
    /* wider rows (224, 320) measured no faster banded: the plane streams from memory either way */
    if (OW <= 160 && EK_FN(dw_banded)(d, x, w, b, y, act, act_a, act_b)) return;
    for (kw = 0; kw < KW && kw < 16; ++kw)
        ek_conv_range(OW, IW, SW, (ptrdiff_t)(kw * d->dil[2]) - d->pad[2], &lo[kw], &hi[kw]);
    if (by_rows) {
        in_lo = lo[0] > lo[KW - 1] ? lo[0] : lo[KW - 1];
        in_hi = hi[0] < hi[KW - 1] ? hi[0] : hi[KW - 1];
        if (in_hi < in_lo + 32) in_hi = in_lo; /* short rows: the extra calls cost more than the stores they save */
    }
    for (od = 0; od < OD; ++od) {
        for (oh = 0; oh < OH; ++oh) {
            EK_T *yr = y + (od * OH + oh) * OW;
            for (ow = 0; ow < OW; ++ow) yr[ow] = b;
            for (kd = 0; kd < KD; ++kd) {
                const ptrdiff_t id = (ptrdiff_t)(od * SD + kd * d->dil[0]) - d->pad[0];
                if (id < 0 || id >= (ptrdiff_t)ID) continue;
                for (kh = 0; kh < KH; ++kh) {
                    const ptrdiff_t ih = (ptrdiff_t)(oh * SH + kh * d->dil[1]) - d->pad[1];
                    const EK_T *xr;
                    if (ih < 0 || ih >= (ptrdiff_t)IH) continue;
                    xr = x + ((size_t)id * IH + (size_t)ih) * IW;
                    if (by_rows && in_hi > in_lo)
                        EK_FN(dw_row)(yr, xr - d->pad[2], w + (kd * KH + kh) * KW, KW, d->dil[2], in_lo, in_hi, SW);
                    for (kw = 0; kw < KW; ++kw) {
                        const ptrdiff_t offw = (ptrdiff_t)(kw * d->dil[2]) - d->pad[2];
                        const EK_T wv = w[(kd * KH + kh) * KW + kw];
                        size_t wlo, whi;
                        if (kw < 16)
                            wlo = lo[kw], whi = hi[kw];
                        else
                            ek_conv_range(OW, IW, SW, offw, &wlo, &whi);
                        if (by_rows && in_hi > in_lo) { /* dw_row did [in_lo, in_hi): the edges tap by tap */
                            EK_FN(dw_tap)(yr, xr, wv, wlo, whi < in_lo ? whi : in_lo, SW, offw);
                            EK_FN(dw_tap)(yr, xr, wv, wlo > in_hi ? wlo : in_hi, whi, SW, offw);
                        } else {
                            EK_FN(dw_tap)(yr, xr, wv, wlo, whi, SW, offw);
                        }
                    }
                }
            }
            EK_FN(act)(yr, OW, act, act_a, act_b); /* while the row is in L1 */
        }
    }
}

/* row[j] = xr[s*j + off] (s 1 or 2), zero outside the in input pixels (xr NULL: all zero): tap column kw's plane row of
 * a band (off = kw * dil - pad) */
static void EK_FN(plane_row)(EK_T *row, size_t len, const EK_T *xr, size_t s, ptrdiff_t off, size_t in)
{
    /* [j0, j1): the j whose column s*j + off is an input pixel; a plain copy between zeros */
    const size_t j0 = off >= 0 ? 0 : ((size_t)-off + s - 1) / s;
    const size_t end = (ptrdiff_t)in > off ? (size_t)((ptrdiff_t)in - off + (ptrdiff_t)s - 1) / s : 0;
    const size_t j1 = xr == NULL || end < j0 ? j0 : end < len ? end : len;
    size_t j;
    for (j = 0; j < j0 && j < len; ++j) row[j] = 0;
    if (j1 > j0 && s == 1)
        memcpy(row + j0, xr + (ptrdiff_t)j0 + off, (j1 - j0) * sizeof(EK_T));
    else if (j1 > j0)
        EK_FN(copy_evens)(row + j0, xr + (ptrdiff_t)(2 * j0) + off, j1 - j0, xr, xr + in);
    for (j = j1 > j0 ? j1 : (j0 < len ? j0 : len); j < len; ++j) row[j] = 0;
}

/* One group of a stride-1 2-D (or 1-D) convolution, or a stride-2 2-D one, by bands of d->tile output rows, with no
 * im2col: the GEMM packs (or reads in place) shifted windows of a copy of the band's input rows.
 * Column planes (stride 2; stride 1 where ek_conv_column_planes says so): each channel's band is copied into KW
 * planes per row phase (stride 1: one phase; stride 2: the row parities), plane (a, kw) holding the input columns
 * S*ow + kw*dil - pad of the rows of phase a, OW long, so that tap (ci, kh, kw) of output (r, ow) is plane
 * (kh % S, kw) at (r + kh*dil/S)*OW + ow: contiguous windows whose columns are y's, and the GEMM writes y itself. A
 * copy KH/S times smaller than im2col's. The single padded band they replaced (rows of OW + (KW-1)*dil, 4 phase
 * planes at stride 2) was a smaller copy, but carried (KW-1)*dil wasted outputs per row and went to y through scratch
 * and a copy: 1.02-1.3x slower with AVX-512 on stems, YOLO's layers, mtcnn's and squeezenet's, than im2col too; under
 * V8 1.05-1.15x slower at stride 2, within 2% at stride 1.
 * Other stride-1 kernels keep the padded band: rows of PW = OW + (KW-1)*dil, tap (ci, kh, kw) of output (r, ow)
 * element r*PW + ow of the window at ci*rows_in*PW + kh*dil*PW + kw*dil, the first OW columns of each output row
 * copied to y. */
static void EK_FN(conv_windows)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, const EK_T *bias, EK_T *y,
                                EK_T *scratch, int act, EK_T act_a, EK_T act_b)
{
    const size_t cg = d->c / d->group, mg = d->m / d->group, IH = d->in[1], IW = d->in[2];
    const size_t OH = d->out[1], OW = d->out[2], PW = ek_conv_band_row(d), rows_in = ek_conv_band_rows_in(d);
    const size_t pw0 = (size_t)d->pad[2], KW = d->k[2], K = cg * d->k[1] * KW, planes = ek_conv_band_planes(d);
    const int phases = ek_conv_phases(d), cols = ek_conv_column_planes(d);
    EK_T *band = scratch, *out = scratch + cg * planes * rows_in * PW;
    ek_windows win;
    size_t oh0, ci, r, m, c0, c1, a, kw;
    ek_conv_padded_cols(pw0, IW, PW, &c0, &c1);
    win.ch_stride = planes * rows_in * PW, win.kh = d->k[1], win.kw = KW, win.row_step = d->dil[1] * PW;
    win.col_step = d->dil[2], win.phase_stride = cols ? rows_in * PW : 0, win.row_phases = phases ? 2 : 1;
    for (oh0 = 0; oh0 < OH; oh0 += d->tile) {
        const size_t bh = OH - oh0 < d->tile ? OH - oh0 : d->tile, np = (bh - 1) * PW + OW;
        const size_t rin = phases ? bh + (d->k[1] - 1) / 2 : bh + (d->k[1] - 1) * d->dil[1];
        for (ci = 0; ci < cg; ++ci)
            for (r = 0; r < rin; ++r) {
                if (phases) { /* plane row r of row parity a: input row 2 * (oh0 + r) + a */
                    for (a = 0; a < 2; ++a) {
                        const ptrdiff_t ih = (ptrdiff_t)(2 * (oh0 + r) + a) - d->pad[1];
                        const EK_T *xr = ih >= 0 && ih < (ptrdiff_t)IH ? x + (ci * IH + (size_t)ih) * IW : NULL;
                        EK_T *plane = band + (ci * planes + a * KW) * rows_in * PW + r * PW;
                        for (kw = 0; kw < KW; ++kw)
                            EK_FN(plane_row)(plane + kw * rows_in * PW, PW, xr, 2, (ptrdiff_t)kw - d->pad[2], IW);
                    }
                    continue;
                }
                {
                    const ptrdiff_t ih = (ptrdiff_t)(oh0 + r) - d->pad[1];
                    const EK_T *xr = ih >= 0 && ih < (ptrdiff_t)IH ? x + (ci * IH + (size_t)ih) * IW : NULL;
                    if (cols) { /* plane row r of tap column kw */
                        for (kw = 0; kw < KW; ++kw)
                            EK_FN(plane_row)(band + ((ci * KW + kw) * rows_in + r) * PW, PW, xr, 1,
                                             (ptrdiff_t)(kw * d->dil[2]) - d->pad[2], IW);
                    } else {
                        EK_FN(padded_row)(band + (ci * rows_in + r) * PW, PW, xr, pw0, c0, c1);
                    }
                }
            }
        if (cols) { /* the band's columns are y's */
            EK_FN(gemm_conv)(mg, np, K, w, d->packed, band, 0, &win, bias, y + oh0 * OW, OH * OW, act, act_a, act_b);
            continue;
        }
        EK_FN(gemm_conv)(mg, np, K, w, d->packed, band, 0, &win, bias, out, np, act, act_a, act_b);
        for (m = 0; m < mg; ++m) {
            if (m + 2 < mg) /* the band's rows of y two channels on, cold in cache: 10-15% of a stem conv's time */
                EK_PREFETCH_WRITE_BYTES(y + (m + 2) * OH * OW + oh0 * OW, bh * OW * sizeof(EK_T));
            for (r = 0; r < bh; ++r) memcpy(y + m * OH * OW + (oh0 + r) * OW, out + m * np + r * PW, OW * sizeof(EK_T));
        }
    }
}

#undef EK_DW_BAND
#undef EK_DW_PLANE
#undef EK_DW_PHASES
#undef EK_DW_ACT_REST

/* Winograd's transforms: F(2x2, 3x3) (Lavin & Gray) B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 * A^T = [1 1 1 0; 0 1 -1 -1]; F(4x4, 3x3)'s in EK_WINO4_BT and EK_WINO4_A0..3. Each stream a loop writes is its own
 * restrict parameter: clang 14 vectorised none of F(4x4)'s loops whose six streams were offsets of one pointer (it
 * cannot tell that they do not overlap). */
#ifdef EK_WINO4
/* q0..q3[j] = u[4j .. 4j + 3] for j < n: a row split in its 4 column phases */
static void EK_FN(wino_unzip4)(const EK_T *restrict u, size_t n, EK_T *restrict q0, EK_T *restrict q1, EK_T *restrict q2,
                               EK_T *restrict q3)
{
    size_t j;
    for (j = 0; j < n; ++j) q0[j] = u[4 * j], q1[j] = u[4 * j + 1], q2[j] = u[4 * j + 2], q3[j] = u[4 * j + 3];
}

/* y[4j .. 4j + 3] = o0..o3[j] for j < n: F(4x4)'s output columns back in a row */
static void EK_FN(wino_zip4)(EK_T *restrict y, size_t n, const EK_T *restrict o0, const EK_T *restrict o1,
                             const EK_T *restrict o2, const EK_T *restrict o3)
{
    size_t j;
    for (j = 0; j < n; ++j) y[4 * j] = o0[j], y[4 * j + 1] = o1[j], y[4 * j + 2] = o2[j], y[4 * j + 3] = o3[j];
}

static void EK_FN(wino_phases)(EK_T *q, size_t n1, const EK_T *xr, size_t pad, const size_t *j0, const size_t *j1)
{
    size_t k, j, lo = 0, hi = n1;
    if (!xr) {
        memset(q, 0, 4 * n1 * sizeof(EK_T));
        return;
    }
    for (k = 0; k < 4; ++k) { /* the columns where every phase holds a pixel: lo <= j < hi */
        lo = j0[k] > lo ? j0[k] : lo;
        hi = j1[k] < hi ? j1[k] : hi;
    }
    hi = hi > lo ? hi : lo;
    for (k = 0; k < 4; ++k) { /* the edges, phase by phase: padding outside j0[k] <= j < j1[k] */
        EK_T *qk = q + k * n1;
        for (j = 0; j < j0[k]; ++j) qk[j] = 0;
        for (; j < lo; ++j) qk[j] = xr[4 * j + k - pad];
        for (j = hi; j < j1[k]; ++j) qk[j] = xr[4 * j + k - pad];
        for (j = j1[k] > hi ? j1[k] : hi; j < n1; ++j) qk[j] = 0;
    }
    if (hi > lo) EK_FN(wino_unzip4)(xr + (4 * lo - pad), hi - lo, q + lo, q + n1 + lo, q + 2 * n1 + lo, q + 3 * n1 + lo);
}

/* F(4x4): B^T down the 6 rows q + i * qs (n elements each) into e0..e5 */
static void EK_FN(wino4_down)(const EK_T *restrict q, size_t qs, size_t n, EK_T *restrict e0, EK_T *restrict e1,
                              EK_T *restrict e2, EK_T *restrict e3, EK_T *restrict e4, EK_T *restrict e5)
{
    size_t t;
    for (t = 0; t < n; ++t)
        EK_WINO4_BT(q[t], q[qs + t], q[2 * qs + t], q[3 * qs + t], q[4 * qs + t], q[5 * qs + t], e0[t], e1[t], e2[t],
                    e3[t], e4[t], e5[t]);
}

#endif

/* F(2x2): B along a strip of B^T-transformed rows (tile j at column 2j) into v0..v3 */
static void EK_FN(wino2_along)(const EK_T *restrict ur, size_t n, EK_T *restrict v0, EK_T *restrict v1,
                               EK_T *restrict v2, EK_T *restrict v3)
{
    size_t t;
    for (t = 0; t < n; ++t) {
        const EK_T e0 = ur[2 * t], o0 = ur[2 * t + 1], e1 = ur[2 * t + 2], o1 = ur[2 * t + 3];
        v0[t] = e0 - e1, v1[t] = o0 + e1, v2[t] = e1 - o0, v3[t] = o0 - o1;
    }
}

#ifdef EK_WINO4
/* F(4x4): B along one row of tw tiles in phases (e: 4 planes of tw + 1) into its 6 streams v0..v5 */
static void EK_FN(wino4_along)(const EK_T *restrict e, size_t tw, EK_T *restrict v0, EK_T *restrict v1,
                               EK_T *restrict v2, EK_T *restrict v3, EK_T *restrict v4, EK_T *restrict v5)
{
    const size_t n1 = tw + 1;
    size_t t;
    for (t = 0; t < tw; ++t)
        EK_WINO4_BT(e[t], e[n1 + t], e[2 * n1 + t], e[3 * n1 + t], e[t + 1], e[n1 + t + 1], v0[t], v1[t], v2[t], v3[t],
                    v4[t], v5[t]);
}

#endif

/* F(2x2): A^T P A + b of n tiles' 16 products at p + xi * ps into the 2x2 outputs' four streams */
static void EK_FN(wino2_out)(const EK_T *restrict p, size_t ps, size_t n, EK_T b, EK_T *restrict t00,
                             EK_T *restrict t01, EK_T *restrict t10, EK_T *restrict t11)
{
    size_t t;
    for (t = 0; t < n; ++t) { /* A^T down the 4 rows of products, then A along */
        const EK_T s0 = p[t] + p[4 * ps + t] + p[8 * ps + t], s1 = p[ps + t] + p[5 * ps + t] + p[9 * ps + t];
        const EK_T s2 = p[2 * ps + t] + p[6 * ps + t] + p[10 * ps + t];
        const EK_T s3 = p[3 * ps + t] + p[7 * ps + t] + p[11 * ps + t];
        const EK_T q0 = p[4 * ps + t] - p[8 * ps + t] - p[12 * ps + t];
        const EK_T q1 = p[5 * ps + t] - p[9 * ps + t] - p[13 * ps + t];
        const EK_T q2 = p[6 * ps + t] - p[10 * ps + t] - p[14 * ps + t];
        const EK_T q3 = p[7 * ps + t] - p[11 * ps + t] - p[15 * ps + t];
        t00[t] = s0 + s1 + s2 + b, t01[t] = s1 - s2 - s3 + b;
        t10[t] = q0 + q1 + q2 + b, t11[t] = q1 - q2 - q3 + b;
    }
}

#ifdef EK_WINO4
/* F(4x4): output row I (0-3) of n tiles, into o0..o3: A^T's row I down the 6 rows of products (p + r * 6 * ps), then
 * A along, + b */
#define EK_WINO4_OUT_ROW(I)                                                                                            \
    for (t = 0; t < n; ++t) {                                                                                          \
        const EK_T *q = p + t;                                                                                         \
        const EK_T s0 = EK_WINO4_A##I(q[0], q[6 * ps], q[12 * ps], q[18 * ps], q[24 * ps], q[30 * ps]);               \
        const EK_T s1 = EK_WINO4_A##I(q[ps], q[7 * ps], q[13 * ps], q[19 * ps], q[25 * ps], q[31 * ps]);              \
        const EK_T s2 = EK_WINO4_A##I(q[2 * ps], q[8 * ps], q[14 * ps], q[20 * ps], q[26 * ps], q[32 * ps]);          \
        const EK_T s3 = EK_WINO4_A##I(q[3 * ps], q[9 * ps], q[15 * ps], q[21 * ps], q[27 * ps], q[33 * ps]);          \
        const EK_T s4 = EK_WINO4_A##I(q[4 * ps], q[10 * ps], q[16 * ps], q[22 * ps], q[28 * ps], q[34 * ps]);         \
        const EK_T s5 = EK_WINO4_A##I(q[5 * ps], q[11 * ps], q[17 * ps], q[23 * ps], q[29 * ps], q[35 * ps]);         \
        o0[t] = EK_WINO4_A0(s0, s1, s2, s3, s4, s5) + b, o1[t] = EK_WINO4_A1(s0, s1, s2, s3, s4, s5) + b;            \
        o2[t] = EK_WINO4_A2(s0, s1, s2, s3, s4, s5) + b, o3[t] = EK_WINO4_A3(s0, s1, s2, s3, s4, s5) + b;            \
    }

static void EK_FN(wino4_out_row)(const EK_T *restrict p, size_t ps, size_t n, size_t i, EK_T b, EK_T *restrict o0,
                                 EK_T *restrict o1, EK_T *restrict o2, EK_T *restrict o3)
{
    size_t t;
    switch (i) { /* a loop per row: the rows' sums differ */
    case 0: EK_WINO4_OUT_ROW(0) break;
    case 1: EK_WINO4_OUT_ROW(1) break;
    case 2: EK_WINO4_OUT_ROW(2) break;
    default: EK_WINO4_OUT_ROW(3)
    }
}
#undef EK_WINO4_OUT_ROW
#endif

#ifdef EK_WINO4
/* F(4x4)'s: the band's padded input rows in 4 column phases (q[k * (TW + 1) + j] = padded column 4j + k), so that
 * tile j's 6 columns are phases 0-3 at j and phases 0, 1 at j + 1 and every transform reads whole vectors (the stride-4
 * reads of strips did not vectorise under clang 14); then per row of tiles, B^T down its 6 input rows and B along
 * each, straight into V */
static void EK_FN(wino4_input)(const ek_conv_desc *d, const EK_T *xc, size_t th0, size_t nr, EK_T *v, size_t vs,
                               EK_T *work)
{
    const size_t IH = d->in[1], IW = d->in[2], TW = ek_wino_tiles_w(d), PW = 4 * (TW + 1), pw0 = (size_t)d->pad[2];
    EK_T *q = work, *e = q + (4 * d->tile + 2) * PW;
    size_t r, tr, k, c0, c1, j0[4], j1[4];
    ek_conv_padded_cols(pw0, IW, PW, &c0, &c1);
    for (k = 0; k < 4; ++k) { /* phase k's pixels: j0[k] <= j < j1[k], the padded columns c0 <= 4j + k < c1 */
        j0[k] = c0 > k ? (c0 - k + 3) / 4 : 0;
        j1[k] = c1 > k ? (c1 - k + 3) / 4 : 0;
    }
    for (r = 0; r < 4 * nr + 2; ++r) {
        const ptrdiff_t ih = (ptrdiff_t)(4 * th0 + r) - d->pad[1];
        EK_FN(wino_phases)(q + r * PW, TW + 1, ih >= 0 && ih < (ptrdiff_t)IH ? xc + (size_t)ih * IW : NULL, pw0, j0, j1);
    }
    for (tr = 0; tr < nr; ++tr) {
        EK_T *vr = v + tr * TW;
        EK_FN(wino4_down)(q + 4 * tr * PW, PW, PW, e, e + PW, e + 2 * PW, e + 3 * PW, e + 4 * PW, e + 5 * PW);
        for (r = 0; r < 6; ++r, vr += 6 * vs)
            EK_FN(wino4_along)(e + r * PW, TW, vr, vr + vs, vr + 2 * vs, vr + 3 * vs, vr + 4 * vs, vr + 5 * vs);
    }
}
#endif

/* Winograd's nn products P[xi] = U[xi] V[xi] of a band of nt tiles: U[xi] m x c (rows padded to whole groups of
 * d->packed when packed), V[xi] c x nt, P[xi] m x nt */
static void EK_FN(wino_products)(const ek_conv_desc *d, size_t nn, size_t nt, const EK_T *w, const EK_T *V, EK_T *P)
{
    const size_t C = d->c, M = d->m, pr = d->packed > 0 ? (size_t)d->packed : 1, wrows = (M + pr - 1) / pr * pr;
    size_t xi;
    for (xi = 0; xi < nn; ++xi)
        EK_FN(gemm_conv)(M, nt, C, w + xi * wrows * C, d->packed, V + xi * C * nt, nt, NULL, NULL, P + xi * M * nt, nt,
                         EK_ACT_NONE, 0, 0);
}

/* Winograd F(2x2, 3x3): w holds U[xi] = (G g G^T)[xi / 4][xi % 4] for each (output, input) channel pair, 16
 * matrices of m x c (m rounded up to whole groups of d->packed rows when packed). Per band of d->tile rows of 2x2
 * output tiles: each input tile's 4x4 window d goes to V[xi][c][tile] = (B^T d B)[xi / 4][xi % 4]; then
 * P[xi] = U[xi] V[xi], 16 GEMMs with K = c; then each tile's outputs A^T P A + bias. 16 products per 2x2 outputs and channel pair where the
 * direct convolution has 36. The transforms run over a whole band at once, so their loops are long enough for the
 * vectors: the band's padded input rows are laid end to end (4 strips, one per row of the tiles' windows), where tile
 * (tr, tw) starts at column 2 * (tr * (TW + 1) + tw); the one extra tile per row this counts is dropped as V is
 * written. */
static void EK_FN(conv_winograd2)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, const EK_T *bias, EK_T *y,
                                  EK_T *scratch, int act, EK_T act_a, EK_T act_b)
{
    const size_t C = d->c, M = d->m, IH = d->in[1], IW = d->in[2], OH = d->out[1], OW = d->out[2];
    const size_t TH = (OH + 1) / 2, TW = ek_wino_tiles_w(d), PW = 2 * TW + 2, pw0 = (size_t)d->pad[2];
    const size_t SL = d->tile * PW + 2, LT = d->tile * (TW + 1); /* a strip's length, the strips' tiles */
    EK_T *V = scratch, *P = V + 16 * C * d->tile * TW, *strip = P + 16 * M * d->tile * TW, *vt = strip + 4 * SL;
    EK_T *t00 = vt + 16 * LT, *t01 = t00 + d->tile * TW, *t10 = t01 + d->tile * TW, *t11 = t10 + d->tile * TW;
    size_t th0, tr, c, r, t, m, xi, c0, c1;
    ek_conv_padded_cols(pw0, IW, PW, &c0, &c1);
    for (th0 = 0; th0 < TH; th0 += d->tile) {
        const size_t nr = TH - th0 < d->tile ? TH - th0 : d->tile, nt = nr * TW, vs = C * nt, ps = M * nt;
        const size_t len = nr * PW + 2, lt = nr * (TW + 1), rows_out = OH - 2 * th0 < 2 * nr ? OH - 2 * th0 : 2 * nr;
        for (c = 0; c < C; ++c) {
            for (r = 0; r < 4; ++r) {
                EK_T *sr = strip + r * SL;
                for (tr = 0; tr < nr; ++tr) {
                    const ptrdiff_t ih = (ptrdiff_t)(2 * (th0 + tr) + r) - d->pad[1];
                    const EK_T *xr = ih >= 0 && ih < (ptrdiff_t)IH ? x + (c * IH + (size_t)ih) * IW : NULL;
                    EK_FN(padded_row)(sr + tr * PW, PW, xr, pw0, c0, c1);
                }
                sr[nr * PW] = sr[nr * PW + 1] = 0;
            }
            for (t = 0; t < len; ++t) { /* B^T down the 4 strips, in place */
                const EK_T a0 = strip[t], a1 = strip[SL + t], a2 = strip[2 * SL + t], a3 = strip[3 * SL + t];
                strip[t] = a0 - a2, strip[SL + t] = a1 + a2, strip[2 * SL + t] = a2 - a1, strip[3 * SL + t] = a1 - a3;
            }
            for (r = 0; r < 4; ++r) /* then B along each */
                EK_FN(wino2_along)(strip + r * SL, lt, vt + 4 * r * LT, vt + (4 * r + 1) * LT, vt + (4 * r + 2) * LT,
                                   vt + (4 * r + 3) * LT);
            for (xi = 0; xi < 16; ++xi)
                for (tr = 0; tr < nr; ++tr) { /* short rows: in 4-element moves, not a call to memcpy each */
                    EK_T *dst = V + xi * vs + c * nt + tr * TW;
                    const EK_T *src = vt + xi * LT + tr * (TW + 1);
                    for (t = 0; t + 4 <= TW; t += 4) memcpy(dst + t, src + t, 4 * sizeof(EK_T));
                    for (; t < TW; ++t) dst[t] = src[t];
                }
        }
        EK_FN(wino_products)(d, 16, nt, w, V, P);
        for (m = 0; m < M; ++m) {
            const EK_T b = bias ? bias[m] : (EK_T)0, *p = P + m * nt;
            EK_T *yb = y + (m * OH + 2 * th0) * OW;
            EK_FN(wino2_out)(p, ps, nt, b, t00, t01, t10, t11);
            for (r = 0; r < rows_out; ++r) { /* output row r of the band: tile row r / 2, its top or bottom pair */
                const EK_T *ta = (r % 2 ? t10 : t00) + r / 2 * TW, *tb = (r % 2 ? t11 : t01) + r / 2 * TW;
                EK_T *yr = yb + r * OW;
                for (t = 0; t < OW / 2; ++t) yr[2 * t] = ta[t], yr[2 * t + 1] = tb[t];
                if (OW % 2) yr[OW - 1] = ta[TW - 1];
            }
            EK_FN(act)(yb, rows_out * OW, act, act_a, act_b);
        }
    }
}

#ifdef EK_WINO4
/* Winograd F(4x4, 3x3), as conv_winograd2 with 4x4 output tiles: 36 matrices U[xi] = (G g G^T)[xi / 6][xi % 6] of
 * m x c, each input tile's 6x6 window to V[xi][c][tile] = (B^T d B)[xi / 6][xi % 6] (wino4_input), 36 GEMMs, then
 * A^T P A + bias by output row of the tiles (wino4_out_row) and the rows' 4 streams zipped into y's rows. 36 products
 * per 4x4 outputs and channel pair where the direct convolution has 144 (F(2x2): 64). */
static void EK_FN(conv_winograd4)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, const EK_T *bias, EK_T *y,
                                  EK_T *scratch, int act, EK_T act_a, EK_T act_b)
{
    const size_t C = d->c, M = d->m, IH = d->in[1], IW = d->in[2], OH = d->out[1], OW = d->out[2];
    const size_t TH = (OH + 3) / 4, TW = ek_wino_tiles_w(d), OS = d->tile * TW; /* OS: a band's tiles at most */
    EK_T *V = scratch, *P = V + 36 * C * OS, *work = P + 36 * M * OS, *o = work + ek_wino_work(d);
    size_t th0, c, r, m, j;
    for (th0 = 0; th0 < TH; th0 += d->tile) {
        const size_t nr = TH - th0 < d->tile ? TH - th0 : d->tile, nt = nr * TW, vs = C * nt, ps = M * nt;
        const size_t rows_out = OH - 4 * th0 < 4 * nr ? OH - 4 * th0 : 4 * nr;
        for (c = 0; c < C; ++c) EK_FN(wino4_input)(d, x + c * IH * IW, th0, nr, V + c * nt, vs, work);
        EK_FN(wino_products)(d, 36, nt, w, V, P);
        for (m = 0; m < M; ++m) {
            const EK_T b = bias ? bias[m] : (EK_T)0, *p = P + m * nt;
            EK_T *yb = y + (m * OH + 4 * th0) * OW;
            for (j = 0; j < 4; ++j)
                EK_FN(wino4_out_row)(p, ps, nt, j, b, o + 4 * j * OS, o + (4 * j + 1) * OS, o + (4 * j + 2) * OS,
                                     o + (4 * j + 3) * OS);
            for (r = 0; r < rows_out; ++r) { /* output row r of the band: row r % 4 of tile row r / 4 */
                const EK_T *orow = o + r % 4 * 4 * OS + r / 4 * TW;
                EK_T *yr = yb + r * OW;
                EK_FN(wino_zip4)(yr, OW / 4, orow, orow + OS, orow + 2 * OS, orow + 3 * OS);
                for (j = OW / 4 * 4; j < OW; ++j) yr[j] = orow[j % 4 * OS + TW - 1];
            }
            EK_FN(act)(yb, rows_out * OW, act, act_a, act_b);
        }
    }
}
#endif

void EK_FN(conv)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, const EK_T *bias, EK_T *y, EK_T *scratch,
                 int act, EK_T act_a, EK_T act_b)
{
    const size_t cg = d->c / d->group, mg = d->m / d->group;
    const size_t kk = d->k[0] * d->k[1] * d->k[2];
    const size_t sin = d->in[0] * d->in[1] * d->in[2], sout = d->out[0] * d->out[1] * d->out[2];
    const int pointwise = ek_conv_pointwise(d);
    /* packed weights: each group's rows padded to whole groups of d->packed rows */
    const size_t pr = d->packed > 0 ? (size_t)d->packed : 0, wrows = pr ? (mg + pr - 1) / pr * pr : mg;
    size_t n, g, j, p0;
    if (sout == 0 || mg == 0) return;
    for (n = 0; n < d->n; ++n) {
        /* the rows' length checked here: the callee's frame holds its stack buffers. With vectors of 8 or 16,
         * dw_in_place rather than lanes at stride 2 (28 -> 14 1.1x faster with AVX-512, 2.1x with AVX2; 14 -> 7 1.3x
         * with AVX2) and on rows longer than a vector (AVX2: 14x14 1.7x); lanes for stride 1 on rows of a vector or
         * less (AVX-512: 14x14 1.1x, AVX2: 7x7 1.1x). Vectors of 4 (wasm): lanes (in MobileNet under Node, in place
         * was 1.5x slower on 28 -> 14, 14 -> 7 and 7x7, 1.1x on 14x14) */
        if (cg == 1 && mg == 1 && d->out[2] <= EK_DW_LANES_OW &&
            !(EK_FN(dw_lane_count)() >= 8 && EK_FN(dw_in_place_fits)(d) &&
              (d->stride[2] == 2 || d->out[2] > EK_FN(dw_lane_count)())) &&
            EK_FN(dw_by_lanes)(d, x + n * d->c * sin, w, bias, y + n * d->m * sout, act, act_a, act_b))
            continue;
        for (g = 0; g < d->group; ++g) {
            const EK_T *xg = x + (n * d->c + g * cg) * sin;
            const EK_T *wg = w + g * wrows * cg * kk;
            const EK_T *bg = bias ? bias + g * mg : bias;
            EK_T *yg = y + (n * d->m + g * mg) * sout;
            if (d->winograd == 2) {
                EK_FN(conv_winograd2)(d, xg, w, bias, yg, scratch, act, act_a, act_b);
            } else if (d->winograd) { /* F(4x4) where EK_WINO_F4 compiled it (see above); elsewhere (a model's
                                        * descriptors with another export's runtime files) all NaN, never stale */
#ifdef EK_WINO4
                EK_FN(conv_winograd4)(d, xg, w, bias, yg, scratch, act, act_a, act_b);
#else
                memset(yg, 0xff, mg * sout * sizeof(EK_T));
#endif
            } else if (pointwise) {
                EK_FN(gemm_conv)(mg, sout, cg, wg, d->packed, xg, sin, NULL, bg, yg, sout, act, act_a, act_b);
            } else if (ek_conv_by_windows(d)) {
                EK_FN(conv_windows)(d, xg, wg, bg, yg, scratch, act, act_a, act_b);
            } else if (ek_conv_windows_in_place(d)) {
                EK_FN(gemm)(mg, sout, kk, 1, wg, kk, 0, xg, d->stride[2], 1, 1, bg, 1, 0, yg, sout, act, act_a, act_b);
            } else if (cg == 1) {
                for (j = 0; j < mg; ++j) {
                    EK_FN(conv_depthwise)(d, xg, wg + j * kk, bg ? bg[j] : (EK_T)0, yg + j * sout, act, act_a,
                                          act_b);
                }
            } else {
                for (p0 = 0; p0 < sout; p0 += d->tile) {
                    const size_t pt = sout - p0 < d->tile ? sout - p0 : d->tile;
                    EK_FN(im2col)(d, cg, xg, scratch, p0, pt);
                    EK_FN(gemm_conv)(mg, pt, cg * kk, wg, d->packed, scratch, pt, NULL, bg, yg + p0, sout, act, act_a,
                                     act_b);
                }
            }
        }
    }
}

/* y (mg planes of out) += the columns col (rows (mi, kd, kh, kw), pt input pixels from p0 on) */
static void EK_FN(col2im)(const ek_conv_desc *d, size_t mg, const EK_T *col, EK_T *y, size_t p0, size_t pt)
{
    const size_t IH = d->in[1], IW = d->in[2];
    const size_t OD = d->out[0], OH = d->out[1], OW = d->out[2], sw = d->stride[2];
    size_t mi, kd, kh, kw;
    const EK_T *src = col;
    for (mi = 0; mi < mg; ++mi) {
        EK_T *ym = y + mi * OD * OH * OW;
        for (kd = 0; kd < d->k[0]; ++kd) {
            const ptrdiff_t offd = (ptrdiff_t)(kd * d->dil[0]) - d->pad[0];
            for (kh = 0; kh < d->k[1]; ++kh) {
                const ptrdiff_t offh = (ptrdiff_t)(kh * d->dil[1]) - d->pad[1];
                for (kw = 0; kw < d->k[2]; ++kw) {
                    const ptrdiff_t offw = (ptrdiff_t)(kw * d->dil[2]) - d->pad[2];
                    size_t id = p0 / (IH * IW), ih = p0 / IW % IH, iw = p0 % IW, q = 0, lo, hi, t;
                    ek_conv_range(IW, OW, d->stride[2], offw, &lo, &hi);
                    while (q < pt) {
                        const size_t seg = IW - iw < pt - q ? IW - iw : pt - q;
                        const ptrdiff_t od = (ptrdiff_t)(id * d->stride[0]) + offd;
                        const ptrdiff_t oh = (ptrdiff_t)(ih * d->stride[1]) + offh;
                        if (od >= 0 && od < (ptrdiff_t)OD && oh >= 0 && oh < (ptrdiff_t)OH) {
                            EK_T *yr = ym + ((size_t)od * OH + (size_t)oh) * OW;
                            const size_t a = lo > iw ? lo - iw : 0;
                            const size_t b = hi > iw ? (hi - iw < seg ? hi - iw : seg) : 0;
                            if (b > a) { /* over locals with a constant stride, as im2col (stores to yr
                                          * would otherwise reload d->stride every element) */
                                EK_T *out = yr + ((ptrdiff_t)((iw + a) * sw) + offw);
                                const EK_T *in = src + a;
                                const size_t len = b - a;
                                if (sw == 1)
                                    for (t = 0; t < len; ++t) out[t] += in[t];
                                else if (sw == 2)
                                    for (t = 0; t < len; ++t) out[2 * t] += in[t];
                                else
                                    for (t = 0; t < len; ++t) out[t * sw] += in[t];
                            }
                        }
                        src += seg;
                        q += seg;
                        iw = 0;
                        if (++ih == IH) {
                            ih = 0;
                            ++id;
                        }
                    }
                }
            }
        }
    }
}

void EK_FN(conv_transpose)(const ek_conv_desc *d, const EK_T *x, const EK_T *w, const EK_T *bias, EK_T *y,
                           EK_T *scratch, int act, EK_T act_a, EK_T act_b)
{
    const size_t cg = d->c / d->group, mg = d->m / d->group;
    const size_t kk = d->k[0] * d->k[1] * d->k[2];
    const size_t sin = d->in[0] * d->in[1] * d->in[2], sout = d->out[0] * d->out[1] * d->out[2];
    size_t n, g, j, i, p0;
    if (sout == 0 || mg == 0) return;
    for (n = 0; n < d->n; ++n) {
        for (g = 0; g < d->group; ++g) {
            const EK_T *xg = x + (n * d->c + g * cg) * sin;
            const EK_T *wg = w + g * cg * mg * kk;
            EK_T *yg = y + (n * d->m + g * mg) * sout;
            for (j = 0; j < mg; ++j) {
                const EK_T b = bias ? bias[g * mg + j] : (EK_T)0;
                for (i = 0; i < sout; ++i) yg[j * sout + i] = b;
            }
            for (p0 = 0; p0 < sin; p0 += d->tile) {
                const size_t pt = sin - p0 < d->tile ? sin - p0 : d->tile;
                EK_FN(gemm)(mg * kk, pt, cg, 1, wg, mg * kk, 1, xg + p0, sin, 0, 0, NULL, 0, 0, scratch, pt,
                            EK_ACT_NONE, 0, 0);
                EK_FN(col2im)(d, mg, scratch, yg, p0, pt);
            }
            EK_FN(act)(yg, mg * sout, act, act_a, act_b);
        }
    }
}

#endif
