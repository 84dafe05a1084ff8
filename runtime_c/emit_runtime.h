/* onnx-emit runtime kernels: the hand-written C99 the generated model.c calls.
 * Every kernel is prefixed `ek_`; `s` marks float32, `d` float64. No malloc: scratch memory
 * comes from the caller (the model's arena). Each kernel family is one .c file of runtime_c/,
 * copied next to model.c only when the model uses it. */
#ifndef EMIT_RUNTIME_H
#define EMIT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

/* ---- activation epilogues (emit/passes/fuse_act.py), applied as a kernel stores its result ---- */
/* a hint to fetch the cache line at p for writing (kernels writing megabytes of output that is cold in cache ask for
 * it a little ahead of their stores); nothing where the compiler has no such builtin */
#if defined(__GNUC__) || defined(__clang__)
#define EK_PREFETCH_WRITE(p) __builtin_prefetch((p), 1, 3)
#define EK_PREFETCH_READ(p) __builtin_prefetch((p), 0, 3)
#else
#define EK_PREFETCH_WRITE(p) ((void)(p))
#define EK_PREFETCH_READ(p) ((void)(p))
#endif
/* the cache lines of the n bytes from p, fetched for writing (a macro: this header also goes to cffi's cdef) */
#define EK_PREFETCH_WRITE_BYTES(p, n) for (size_t ek_b = 0; ek_b < (n); ek_b += 64) EK_PREFETCH_WRITE((const char *)(p) + ek_b)

#define EK_ACT_NONE 0
#define EK_ACT_RELU 1        /* x < 0 ? 0 : x */
#define EK_ACT_CLIP 2        /* min(max(x, a), b) */
#define EK_ACT_SIGMOID 3     /* 1 / (1 + exp(-x)) */
#define EK_ACT_HARDSIGMOID 4 /* max(0, min(1, a*x + b)) */
#define EK_ACT_HARDSWISH 5   /* x * max(0, min(1, x/6 + 1/2)) */
#define EK_ACT_LEAKYRELU 6   /* x < 0 ? a*x : x */
#define EK_ACT_SILU 7        /* x / (1 + exp(-x)): Sigmoid then Mul by its input, fused */

/* ---- gemm.c ---- */

/* C[i*ldc + j] = act(alpha * sum_k op(A)[i,k] * op(B)[k,j] + beta * bias[i*bias_rs + j*bias_cs])
 * for i < M, j < N; row-major. op(A) is A (M x K, row stride lda) or, with transA, A^T where A is
 * K x M; the same for B (K x N, or N x K with transB). bias may be NULL (then beta is unused);
 * bias_rs/bias_cs broadcast it (0, 0: a scalar; 1, 0: one per row; 0, 1: one per column).
 * bias must not alias C. Uses a 4 KiB stack panel. */
void ek_sgemm(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, int transA,
              const float *B, size_t ldb, int transB, float beta, const float *bias, size_t bias_rs,
              size_t bias_cs, float *C, size_t ldc, int act, float act_a, float act_b);
/* ek_sgemm with B stored as int8 and dequantised as it is packed: op(B)[k][j] = B * bscale[k * bscale_ks +
 * j * bscale_ns] (0, 1: one scale per column; 1, 0: per k; 0, 0: one), so a weight-only int8 model reads its
 * weights at one byte each instead of widening them to float32 every run. */
void ek_sgemm_q8(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, int transA, const int8_t *B,
                 size_t ldb, int transB, const float *bscale, size_t bscale_ks, size_t bscale_ns, float beta,
                 const float *bias, size_t bias_rs, size_t bias_cs, float *C, size_t ldc, int act, float act_a,
                 float act_b);
/* B of a stride-1 (or, split in column planes, stride-2) convolution without im2col: row k = (ci, kh, kw) of the
 * implicit column matrix is the contiguous window x + ci*ch_stride + kh*row_step + kw*col_step of a zero-padded input
 * whose rows all have the same length, so column p of every row belongs to the same output position. */
typedef struct {
    size_t ch_stride, kh, kw, row_step, col_step;
    size_t phase_stride; /* column planes: each channel is row_phases * kw planes this far apart (row phase, tap
                          * column), tap (kh, kw) at plane (kh % row_phases, kw) + kh / row_phases * row_step (stride
                          * 2: row_phases 2, the row parities; stride 1: 1); 0: one padded band per channel */
    size_t row_phases;
} ek_windows;
/* Weights packed at export time for the GEMM's micro-kernel: an M x K matrix as ceil(M / R) groups of R rows, the
 * last padded with zero rows, each group stored k-major: element (i, k) at (i / R) * R * K + k * R + i % R
 * (emit/passes/pack_weights.py). R = EK_PACK_ROWS, or EK_PACK_FEW for a product of few columns (a conv's 17-63
 * output positions), which AVX-512 builds run with the channels along the vectors; any build reads either. */
#define EK_PACK_ROWS 8
#define EK_PACK_FEW 16
/* A convolution's product: C = act(A B + bias[i] per row) (bias may be NULL), A = M x K weights, row-major (a_packed
 * 0) or packed as above in groups of a_packed rows; B = K x N with row stride ldb, or the windows win of x = B if
 * win is not NULL. */
void ek_sgemm_conv(size_t M, size_t N, size_t K, const float *A, int a_packed, const float *B, size_t ldb,
                   const ek_windows *win, const float *bias, float *C, size_t ldc, int act, float act_a, float act_b);
/* ek_sgemm_conv for double. */
void ek_dgemm_conv(size_t M, size_t N, size_t K, const double *A, int a_packed, const double *B, size_t ldb,
                   const ek_windows *win, const double *bias, double *C, size_t ldc, int act, double act_a,
                   double act_b);
/* ek_sgemm for double. */
void ek_dgemm(size_t M, size_t N, size_t K, double alpha, const double *A, size_t lda, int transA,
              const double *B, size_t ldb, int transB, double beta, const double *bias, size_t bias_rs,
              size_t bias_cs, double *C, size_t ldc, int act, double act_a, double act_b);

/* y[i] = act(y[i]) for i < n (the epilogue on its own, for kernels that accumulate first). */
void ek_sact(float *y, size_t n, int act, float act_a, float act_b);
/* ek_sact for double. */
void ek_dact(double *y, size_t n, int act, double act_a, double act_b);

/* y[i] = f(x[i]) for i < n, float32, x == y allowed: e^x, 1 / (1 + e^-x) and x / (1 + e^-x) (SiLU), by a
 * branch-free polynomial e^x (within 2 ulp, vectorised; NaN stays NaN, the infinities go to their limits).
 * The float epilogues EK_ACT_SIGMOID and EK_ACT_SILU use the same code (in AVX builds' register tiles, a vector
 * e^x that flushes results below e^-87.3 to 0). */
void ek_sexp(const float *x, float *y, size_t n);
void ek_ssigmoid(const float *x, float *y, size_t n);
void ek_ssilu(const float *x, float *y, size_t n);
/* y = erf(x) within a few ulp (x == y allowed) */
void ek_serf(const float *x, float *y, size_t n);

/* A depthwise convolution's taps over a band of zero-padded input rows pw long (conv.c's banded path), stride 1
 * along rows and sh (1 or 2) down them: y[r * ly + c] = b + the sum over kh, kw < k of
 * w[kh * k + kw] * xp[(r * sh + kh) * pw + kw + c], for r < nr, c < nc (nc + k - 1 <= pw). Vectors of outputs where
 * the target has them. Returns 1, or 0 when it wrote yp[r * pw + c] instead (rows shorter than a vector: the band
 * computed as one row, yp holding (nr - 1) * pw + nc elements). */
int ek_sdw_rows(const float *xp, size_t pw, size_t sh, const float *w, size_t k, float b, float *y, size_t ly,
                float *yp, size_t nr, size_t nc);
/* ek_sdw_rows for double. */
int ek_ddw_rows(const double *xp, size_t pw, size_t sh, const double *w, size_t k, double b, double *y, size_t ly,
                double *yp, size_t nr, size_t nc);

/* A 3x3 depthwise convolution of stride 2 both ways: y[r * ly + c] = b + the sum over kh, kw < 3 of w[kh * 3 + kw] *
 * xp[(2r + kh) * pw + 2c + kw], for r < nr and c < nc, where nc >= ek_sdw_s2_width() (0: builds without it, which
 * must not call it), then ReLU or Clip(act_a, act_b) if act says so (any other act: the caller applies it). Reads
 * columns up to 2nc + 1 of each row: one element past the last row when pw = 2nc + 1. */
size_t ek_sdw_s2_width(void);
void ek_sdw_rows_s2(const float *xp, size_t pw, const float *w, float b, float *y, size_t ly, size_t nr, size_t nc,
                    int act, float act_a, float act_b);
size_t ek_ddw_s2_width(void);
void ek_ddw_rows_s2(const double *xp, size_t pw, const double *w, double b, double *y, size_t ly, size_t nr,
                    size_t nc, int act, double act_a, double act_b);
/* The same, stride sh (1 or 2) both ways, over rows of x read in place (iw apart) with one column of zero padding on
 * the left: y[r * nc + c] = b + the sum over kh, kw < 3 of w[kh * 3 + kw] * x[(r * sh + kh) * iw + c * sh + kw - 1],
 * column -1 zero and so is column iw when right_pad, for r < nr, c < nc (nc >= ek_sdw_s2_width()). Reads x[-1] and
 * up to two elements past the end of the last row it reads. */
void ek_sdw_rows_edges(const float *x, size_t iw, size_t sh, const float *w, float b, float *y, size_t nc, size_t nr,
                       int right_pad, int act, float act_a, float act_b);
void ek_ddw_rows_edges(const double *x, size_t iw, size_t sh, const double *w, double b, double *y, size_t nc,
                       size_t nr, int right_pad, int act, double act_a, double act_b);
/* out[t] = src[2t] for t < n, reading [lo, hi) only (which holds src[0 .. 2n - 2]): in float vector builds by
 * unzipped pairs of vectors, the last pair overlapping the one before (the odd lanes from src - 1 if src[2n - 1] is
 * past hi). A strided loop was a gather in wasm (a lane extract, a load and an insert per element under V8) */
void ek_scopy_evens(float *out, const float *src, size_t n, const float *lo, const float *hi);
void ek_dcopy_evens(double *out, const double *src, size_t n, const double *lo, const double *hi);
/* A depthwise convolution's taps for ek_sdw_lane_count() channels at once (conv.c's path for small planes), each
 * element of xp, w, b and yo a vector of lanes, lane l the block's channel l: with L lanes, yo[(r * nc + c) * L + l]
 * = b[l] + the sum over kh, kw < k of w[(kh * k + kw) * L + l] * xp[((r * sh + kh) * pw + c * sw + kw) * L + l], for
 * r < nr, c < nc; k <= 7; then ReLU or Clip(act_a, act_b) if act says so (any other act: the caller applies it).
 * The lane count is 1 in builds without vectors, where conv.c does not call it. */
size_t ek_sdw_lane_count(void);
void ek_sdw_lanes(const float *xp, size_t pw, size_t sh, size_t sw, const float *w, size_t k, const float *b, float *yo,
                  size_t nr, size_t nc, int act, float act_a, float act_b);
/* the same for double */
size_t ek_ddw_lane_count(void);
void ek_ddw_lanes(const double *xp, size_t pw, size_t sh, size_t sw, const double *w, size_t k, const double *b,
                  double *yo, size_t nr, size_t nc, int act, double act_a, double act_b);
/* dst[c * L + l] = src[l * ld + c] for l < nl <= L, c < n, L = ek_sdw_lane_count(): nl rows interleaved into lanes,
 * for ek_sdw_lanes (whole blocks of a vector's worth of rows and columns transposed in registers); each row may be
 * read up to `past` elements beyond its n */
void ek_sdw_interleave(float *dst, const float *src, size_t ld, size_t nl, size_t n, size_t past);
void ek_ddw_interleave(double *dst, const double *src, size_t ld, size_t nl, size_t n, size_t past);
/* the inverse: dst[l * ld + c] = src[c * L + l] for l < nl <= L, c < n (ek_sdw_lanes' outputs back to planes) */
void ek_sdw_deinterleave(float *dst, size_t ld, const float *src, size_t nl, size_t n);
void ek_ddw_deinterleave(double *dst, size_t ld, const double *src, size_t nl, size_t n);

/* ---- conv.c (needs gemm.c) ---- */

/* Shape of one convolution; 1-D and 2-D convolutions are 3-D ones with leading spatial sizes 1. */
typedef struct {
    size_t n, c, m, group; /* batch, input channels, output channels, groups */
    size_t in[3];          /* input spatial size (Conv: x; ConvTranspose: x, the small side) */
    size_t out[3];         /* output spatial size */
    size_t k[3];           /* kernel size */
    size_t stride[3];
    size_t dil[3];
    ptrdiff_t pad[3];      /* padding at the start of each spatial axis (ConvTranspose: may be negative) */
    size_t tile;           /* pixels per im2col / col2im chunk (scratch holds cols * tile elements); for a
                            * stride-1 2-D convolution by windows, output rows per band */
    int windows;           /* Conv: by shifted windows of a padded band of input rows instead of im2col (stride-1
                            * 2-D or 1-D convolutions of several input channels per group, or stride-2 2-D ones;
                            * conv.c checks the shape) */
    int winograd;          /* Conv: Winograd F(T x T, 3x3) for T = winograd (2 or 4; 0: none), chosen at export for
                            * a stride-1 undilated 3x3 2-D convolution of one group, which stored w as U = G g G^T:
                            * (T + 2)^2 matrices of m x c (each packed when `packed` is set); d->tile is then rows of
                            * T x T output tiles per band */
    int packed;            /* Conv: w packed for the GEMM in groups of this many rows (EK_PACK_ROWS or EK_PACK_FEW;
                            * 0: ONNX's layout), each group's m/group rows on their own; never for a convolution of
                            * one input channel per group that is not 1x1 */
} ek_conv_desc;

/* Elements of scratch ek_sconv needs for d (0 for 1x1 and depthwise convolutions). */
size_t ek_conv_scratch(const ek_conv_desc *d);
/* Elements of scratch ek_sconv_transpose needs for d. */
size_t ek_conv_transpose_scratch(const ek_conv_desc *d);

/* Conv: y (n, m, out) = act(conv(x (n, c, in), w (m, c/group, k)) + bias (m) or 0 if bias is NULL).
 * 1x1 stride-1 unpadded convolutions are one GEMM, depthwise ones (c/group == 1) a direct loop,
 * the rest im2col into scratch in chunks of d->tile output pixels, then GEMM. */
void ek_sconv(const ek_conv_desc *d, const float *x, const float *w, const float *bias, float *y,
              float *scratch, int act, float act_a, float act_b);
/* ek_sconv for double. */
void ek_dconv(const ek_conv_desc *d, const double *x, const double *w, const double *bias, double *y,
              double *scratch, int act, double act_a, double act_b);

/* ConvTranspose: x (n, c, in), w (c, m/group, k), y (n, m, out): GEMM W^T X into scratch in chunks
 * of d->tile input pixels, then col2im (scatter-add), then bias and act. */
void ek_sconv_transpose(const ek_conv_desc *d, const float *x, const float *w, const float *bias, float *y,
                        float *scratch, int act, float act_a, float act_b);
/* ek_sconv_transpose for double. */
void ek_dconv_transpose(const ek_conv_desc *d, const double *x, const double *w, const double *bias,
                        double *y, double *scratch, int act, double act_a, double act_b);

/* ---- narrow.c: float32 <-> the narrow float types, stored as bit patterns ---- */
/* Round to nearest even (ONNX's reference: numpy, ml_dtypes); float16/bfloat16 in uint16_t, the rest in uint8_t. */
#define EK_F8_E4M3FN 0
#define EK_F8_E4M3FNUZ 1
#define EK_F8_E5M2 2
#define EK_F8_E5M2FNUZ 3
#define EK_F4_E2M1 4
#define EK_ROUND_UP 0
#define EK_ROUND_DOWN 1
#define EK_ROUND_NEAREST 2

/* d rounded to float32 "to odd": rounding that float32 to a narrower type gives d's correct rounding. */
float ek_f64_to_f32_odd(double d);
float ek_f16_to_f32(uint16_t h);
uint16_t ek_f32_to_f16(float f);
float ek_bf16_to_f32(uint16_t h);
uint16_t ek_f32_to_bf16(float f);
/* the same over n elements */
void ek_f16_to_f32_n(const uint16_t *x, float *y, size_t n);
void ek_f32_to_f16_n(const float *x, uint16_t *y, size_t n);
void ek_bf16_to_f32_n(const uint16_t *x, float *y, size_t n);
void ek_f32_to_bf16_n(const float *x, uint16_t *y, size_t n);
/* float8 / float4 of kind EK_F8_* / EK_F4_E2M1; saturate: overflow and infinity give the largest finite value. */
float ek_f8_to_f32(uint8_t v, int kind);
uint8_t ek_f32_to_f8(float f, int kind, int saturate);
/* float8 e8m0fnu (a power of two, 2^(v-127)); round_mode EK_ROUND_*, as ONNX Cast's round_mode attribute. */
float ek_e8m0_to_f32(uint8_t v);
uint8_t ek_f32_to_e8m0(float f, int saturate, int round_mode);

/* ---- weights.c: --weights file and --weight-dtype f16|int8 (emit/codegen/storage.py) ---- */
#define EK_WEIGHTS_HEADER_BYTES 64
#define EK_WEIGHTS_BAD_MAGIC 10   /* not an onnx-emit weights file */
#define EK_WEIGHTS_BAD_VERSION 11 /* a format version this code does not read */
#define EK_WEIGHTS_OTHER_MODEL 12 /* the layout hash differs: a blob for another model */
#define EK_WEIGHTS_BAD_DTYPE 13   /* stored as another --weight-dtype */
#define EK_WEIGHTS_BAD_SIZE 14    /* truncated, or longer than the header says */
#define EK_WEIGHTS_CORRUPT 15     /* payload checksum mismatch */
#define EK_WEIGHTS_MISALIGNED 16  /* the blob is not 16-byte aligned */
#define EK_WEIGHTS_NOT_LOADED 17  /* run before a successful load */
/* 0 when blob (n bytes) is a weights file of this layout (hash), storage dtype and payload size, else an
 * EK_WEIGHTS_* code; reads nothing past blob + n. */
int ek_check_weights(const unsigned char *blob, size_t n, const unsigned char hash[32], uint32_t dtype,
                     uint64_t payload_bytes);
/* y = scale[o / block * channels + c] * q for q laid out [outer, channels, inner] (per-channel symmetric int8): one row
 * of scales for every `block` outer indices (block = outer: one row; a packed Conv weight [rows, K, EK_PACK_ROWS]
 * has a row per EK_PACK_ROWS output channels, block = K) */
void ek_expand_i8(const int8_t *q, const float *scale, float *y, size_t outer, size_t channels, size_t inner,
                  size_t block);
/* y[i] = blocks[index[i / block] * block + i % block] for i < n: a weight stored as its distinct blocks of `block`
 * elements and each block's index among them (the last block may be cut short) */
void ek_expand_blocks(const float *blocks, const uint32_t *index, float *y, size_t n, size_t block);

/* ---- threads.c: only in builds exported with --threads N (compiled with -DEK_THREADS=N -pthread) ---- */
typedef void (*ek_range_fn)(void *ctx, size_t begin, size_t end);
/* Runs fn over [0, n) split across the pool (the caller takes a part); returns 1, or 0 having run nothing when
 * n < 2 or a parallel region is already running (then the caller does the work itself). */
int ek_parallel_for(size_t n, ek_range_fn fn, void *ctx);
/* ek_sgemm's arguments: 1 when it computed C split across the pool, 0 when the caller should (small, or nested). */
int ek_sgemm_parallel(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, int transA,
                      const float *B, size_t ldb, int transB, float beta, const float *bias, size_t bias_rs,
                      size_t bias_cs, float *C, size_t ldc, int act, float act_a, float act_b);

/* ek_sgemm_conv's arguments (A packed or B windows; plain ones go to ek_sgemm_parallel): 1 when it computed C split
 * across the pool, 0 when the caller should. */
int ek_sgemm_conv_parallel(size_t M, size_t N, size_t K, const float *A, int a_packed, const float *B, size_t ldb,
                           const ek_windows *win, const float *bias, float *C, size_t ldc, int act, float act_a,
                           float act_b);

#endif /* EMIT_RUNTIME_H */
