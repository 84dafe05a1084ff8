/* onnx-emit runtime: GEMM with a fused bias + activation epilogue (ek_sgemm, ek_dgemm).
 *
 * Portable C99: C is computed in EK_MR x EK_NR register blocks (explicit vectors as wide as the target's
 * with the GCC/clang vector extensions, plain constant-trip loops otherwise). B's whole (KC x NR) panels are read
 * in place when B is row-major (or a convolution's windows); transposed, int8 or edge panels are packed into a
 * stack buffer (KC * NR elements) first. A is read in place through (row, column) strides, or, for a
 * convolution's weights, in the layout they were packed into at export time (EK_PACK_ROWS).
 * Loop order: K blocks, then MC-row blocks of A (which stay in L2), then NR-column panels of B
 * (L1). With fewer than EK_MR rows (matrix-vector products) C is computed row by row instead.
 *
 * This file is compiled once and includes itself twice, instantiating the body below for
 * float (ek_s...) and double (ek_d...). */
#ifndef EK_T

#include "emit_runtime.h"
#include <math.h>
#include <string.h>
#if defined(__wasm_simd128__) && (defined(__GNUC__) || defined(__clang__)) && !defined(EK_NO_VECTOR_EXT)
#include <wasm_simd128.h> /* where clang 14's code for the generic vectors is slow under V8: int8 widening, pmin/pmax */
#endif

/* GCC and clang vector extensions give the block loop explicit 16-byte vectors (SSE, NEON, wasm
 * simd128); other compilers get the plain loops, which they may vectorise themselves. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(EK_NO_VECTOR_EXT)
#define EK_VEC 1
/* float vectors as wide as the target's registers (a native build gets -march=native): 64 bytes with
 * AVX-512, 32 with AVX, else 16 (SSE, NEON, wasm simd128) */
#if defined(__AVX512F__)
#define EK_SVL 16
#elif defined(__AVX__)
#define EK_SVL 8
#else
#define EK_SVL 4
#endif
typedef float ek_sv __attribute__((vector_size(EK_SVL * 4)));
typedef int32_t ek_siv __attribute__((vector_size(EK_SVL * 4)));
/* AVX, AVX-512 (a native build): a copy of the register tile's loop for packed weights, every activation applied
 * in registers. Narrower targets (wasm, NEON, microcontrollers) keep one loop per B layout and only the cheap
 * epilogues in registers: each copy costs them ~10 kB of code. */
#define EK_WIDE_TILES (EK_SVL >= 8)
/* ReLU, Clip, sigmoid, SiLU, HardSigmoid and HardSwish over arrays by explicit vectors (ek_svact_row), where the
 * compiler's own vectorisation of the scalar functions is slow: wasm, whose constant clamps clang 14 turns into
 * f32x4.min/max, NaN-exact in V8 at ~8 instructions each (YOLOv8's SiLU epilogues were a sixth of nudenet's time
 * under Node) */
#if EK_WIDE_TILES || defined(__wasm_simd128__)
#define EK_VACT_ROWS 1
#else
#define EK_VACT_ROWS 0
#endif
typedef double ek_dv __attribute__((vector_size(16)));
#else
#define EK_VEC 0
#define EK_SVL 4
#define EK_WIDE_TILES 0
#define EK_VACT_ROWS 0
#endif
/* the 3x3 depthwise row kernels (dw_rows_s2, dw_rows_edges) in vector builds whose vectors are registers: 32-bit Arm
 * without NEON (Cortex-M) only emulates them */
#if EK_VEC && !(defined(__arm__) && !defined(__ARM_NEON))
#define EK_DW_ROWS 1
#else
#define EK_DW_ROWS 0
#endif

/* ---- float e^x, sigmoid and SiLU without libm: branch-free, so a plain loop over them vectorises
 * (gcc -O3, clang -msimd128); a scalar expf call per element was a fifth of a YOLO net's time. ---- */

/* the loops below vectorise only with these inlined; gcc stops inlining a function this large once it has
 * a few callers */
#if defined(__GNUC__) || defined(__clang__)
#define EK_INLINE static inline __attribute__((always_inline))
#define EK_NOINLINE static __attribute__((noinline))
#else
#define EK_INLINE static
#define EK_NOINLINE static
#endif
/* a loop over a register tile's rows or vectors unrolled whole, so that the tile's array becomes registers: gcc kept it
 * on the stack (16 vector stores and loads around every tile's k loop, a third of the time of a K = 16 product) */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define EK_UNROLL _Pragma("GCC unroll 16")
#else
#define EK_UNROLL
#endif

EK_INLINE uint32_t ek_fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* 2^k for -126 <= k <= 127, built in the exponent field */
EK_INLINE float ek_fpow2(int32_t k)
{
    const uint32_t u = (uint32_t)(k + 127) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Cephes expf's range reduction, x - n ln2 with ln2 in two parts (n * the first is exact), and its polynomial for
 * e^r; on floats or float vectors (zero: 0 of the type) */
#define EK_EXPF_REDUCED(x, t) ((x) - (t) * 0.693359375f - (t) * -2.12194440e-4f)
#define EK_EXPF_POLY(r, zero)                                                                                         \
    ((((((((zero) + 1.9875691500e-4f) * (r) + 1.3981999507e-3f) * (r) + 8.3334519073e-3f) * (r) + 4.1665795894e-2f) * \
           (r) + 1.6666665459e-1f) * (r) + 5.0000001201e-1f) * (r) * (r) + (r) + 1.0f)

/* e^x within ~2 ulp (Cephes expf's range reduction and polynomial); NaN -> NaN, +inf -> inf, -inf -> 0 */
EK_INLINE float ek_sexp1(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: t + magic rounds t to an integer held in the low bits */
    float t, r, p;
    int32_t n, h;
    /* e^88.8 overflows and e^-104 rounds to 0 anyway; the clamp keeps n in [-150, 128]. NaN passes both */
    x = x < -104.0f ? -104.0f : x;
    x = x > 88.8f ? 88.8f : x;
    t = x * 1.44269504088896341f + magic;
    n = (int32_t)(ek_fbits(t) - ek_fbits(magic)); /* round(x / ln2), read from the bits: no float->int cast */
    t -= magic;
    r = EK_EXPF_REDUCED(x, t);
    p = EK_EXPF_POLY(r, 0.0f);
    /* 2^n in two factors: each stays a normal float, and the product rounds once into the denormals. h = n / 2
     * rounded down, by an unsigned shift (n + 256 > 0): clang 14 scalarised the signed division in wasm's loops */
    h = (int32_t)((uint32_t)(n + 256) >> 1) - 128;
    return p * ek_fpow2(h) * ek_fpow2(n - h);
}

/* erf's Taylor series as x times a polynomial in z = x^2 (11 terms), and the exponent of Numerical Recipes' erfc
 * less -z, a polynomial in t = 1 / (1 + |x| / 2); on floats or float vectors */
#define EK_ERF_TAYLOR(z)                                                                                               \
    (((((((((((z) * 1.4807192816e-08f - 1.6365844691e-07f) * (z) + 1.6462114366e-06f) * (z) - 1.4925650358e-05f) *     \
    (z) + 1.2055332982e-04f) * (z) - 8.5483270235e-04f) * (z) + 5.2239776254e-03f) * (z) - 2.6866170645e-02f) *        \
    (z) + 1.1283791671e-01f) * (z) - 3.7612638903e-01f) * (z) + 1.1283791671e+00f)
#define EK_ERFC_EXPONENT(t)                                                                                            \
    ((((((((((t) * 0.17087277f - 0.82215223f) * (t) + 1.48851587f) * (t) - 1.13520398f) * (t) + 0.27886807f) * (t)     \
    - 0.18628806f) * (t) + 0.09678418f) * (t) + 0.37409196f) * (t) + 1.00002368f) * (t) - 1.26551223f)

/* erf(x) within a few ulp, branch-free so a loop over it vectorises: the Taylor series (odd, 11 terms) below
 * |x| = 1, where it has no cancellation; above, 1 - erfc with Numerical Recipes' erfc (fractional error
 * < 1.2e-7, on values <= 0.16) through ek_sexp1. NaN -> NaN, +-inf -> +-1. */
EK_INLINE float ek_serf1(float x)
{
    const float a = fabsf(x), z = x * x, t = 1.0f / (1.0f + 0.5f * a);
    const float far = 1.0f - t * ek_sexp1(EK_ERFC_EXPONENT(t) - z);
    return a < 1.0f ? x * EK_ERF_TAYLOR(z) : (x < 0 ? -far : far);
}

/* 1 / (1 + e^-v) from e = e^-|v| <= 1 (never overflows); one division, the sign picks the numerator */
EK_INLINE float ek_ssigmoid1(float v)
{
    const float e = ek_sexp1(-fabsf(v));
    return (v >= 0 ? 1.0f : e) / (1.0f + e);
}

EK_INLINE float ek_ssilu1(float v)
{
    return v * ek_ssigmoid1(v);
}

EK_INLINE double ek_dsigmoid1(double v)
{
    return 1.0 / (1.0 + exp(-v));
}

/* y[i] = f(x[i]) over arrays, x == y allowed (then an in-place loop of its own: the two-array loop's
 * vectorisation assumes no overlap) */
#define EK_SMAP(name, expr)                                                                                           \
    void name(const float *x, float *y, size_t n)                                                                     \
    {                                                                                                                 \
        size_t i;                                                                                                     \
        if (x == y)                                                                                                   \
            for (i = 0; i < n; ++i) { const float v = y[i]; y[i] = (expr); }                                         \
        else                                                                                                          \
            for (i = 0; i < n; ++i) { const float v = x[i]; y[i] = (expr); }                                         \
    }
#ifndef __wasm_simd128__
EK_SMAP(ek_sexp, ek_sexp1(v))
EK_SMAP(ek_ssigmoid, ek_ssigmoid1(v))
EK_SMAP(ek_ssilu, ek_ssilu1(v))
EK_SMAP(ek_serf, ek_serf1(v))
#endif
#undef EK_SMAP

#if EK_VACT_ROWS /* the vector e^x of the register epilogue and of ek_svact_row */

/* x < lo ? lo : x and x > hi ? hi : x per lane, NaN kept as the scalar comparisons keep it. wasm's pmax and pmin are
 * these selects, one instruction each under V8, where clang 14 turned the selects with constant bounds into
 * f32x4.max/min (NaN-exact in V8: ~8 instructions) */
EK_INLINE ek_sv ek_svfloor(ek_sv x, ek_sv lo)
{
#ifdef __wasm_simd128__
    return (ek_sv)wasm_f32x4_pmax((v128_t)x, (v128_t)lo);
#else
    const ek_siv m = x < lo;
    return (ek_sv)((m & (ek_siv)lo) | (~m & (ek_siv)x));
#endif
}

EK_INLINE ek_sv ek_svceil(ek_sv x, ek_sv hi)
{
#ifdef __wasm_simd128__
    return (ek_sv)wasm_f32x4_pmin((v128_t)x, (v128_t)hi);
#else
    const ek_siv m = x > hi;
    return (ek_sv)((m & (ek_siv)hi) | (~m & (ek_siv)x));
#endif
}

/* e^-v, vectors, for the register epilogue's sigmoid and SiLU: ek_sexp1's reduction and polynomial on -v clamped to
 * [-88, 89], 2^n built in one factor: 0 below e^-87.3, +inf past e^88.7 (n = 128 fills the exponent field); NaN kept */
EK_INLINE ek_sv ek_svexp_minus(ek_sv v)
{
    const ek_sv z = {0}, magic = z + 12582912.0f, lo = z - 88.0f, hi = z + 89.0f;
    ek_sv x = -v, t, r, p;
    ek_siv n;
    x = ek_svceil(ek_svfloor(x, lo), hi); /* n >= -127: 2^-127 is 0 in the exponent field */
    t = x * 1.44269504088896341f + magic;
    n = (ek_siv)t - (ek_siv)magic;
    t -= magic;
    r = EK_EXPF_REDUCED(x, t);
    p = EK_EXPF_POLY(r, z);
    return p * (ek_sv)((n + 127) << 23);
}

/* 1 / (1 + e^-v) and v / (1 + e^-v) on vectors: where e^-v overflows the quotient is 0 (and SiLU(-inf) NaN, as
 * -inf * 0 is); one division, no selects on the sign (a fifth fewer operations than through e^-|v|: the SiLU epilogue
 * was a third of a K = 32 product's time) */
EK_INLINE ek_sv ek_svsigmoid(ek_sv v)
{
    return 1.0f / (1.0f + ek_svexp_minus(v));
}

EK_INLINE ek_sv ek_svsilu(ek_sv v)
{
    return v / (1.0f + ek_svexp_minus(v));
}

/* y[i] = act(y[i]) by vectors for the activations whose scalar loops vectorise badly (see EK_VACT_ROWS), the last
 * few through a zero-padded vector; one loop per activation */
static void ek_svact_row(float *y, size_t n, int act, float act_a, float act_b)
{
    const ek_sv z = {0}, one = z + 1.0f;
    size_t i = 0;
    ek_sv v;
    float t[EK_SVL];
#define EK_VACT_LOOP(expr)                                                                                             \
    for (; i + EK_SVL <= n; i += EK_SVL) {                                                                             \
        memcpy(&v, y + i, sizeof v);                                                                                   \
        v = (expr);                                                                                                    \
        memcpy(y + i, &v, sizeof v);                                                                                   \
    }                                                                                                                  \
    if (i < n) {                                                                                                       \
        memset(t, 0, sizeof t);                                                                                        \
        memcpy(t, y + i, (n - i) * sizeof *t);                                                                         \
        memcpy(&v, t, sizeof v);                                                                                       \
        v = (expr);                                                                                                    \
        memcpy(t, &v, sizeof v);                                                                                       \
        memcpy(y + i, t, (n - i) * sizeof *t);                                                                         \
    }
    switch (act) {
    case EK_ACT_RELU:
        EK_VACT_LOOP(ek_svfloor(v, z))
        break;
    case EK_ACT_CLIP: /* min(max(v, a), b) */
        EK_VACT_LOOP(ek_svceil(ek_svfloor(v, z + act_a), z + act_b))
        break;
    case EK_ACT_SIGMOID:
        EK_VACT_LOOP(ek_svsigmoid(v))
        break;
    case EK_ACT_SILU:
        EK_VACT_LOOP(ek_svsilu(v))
        break;
    case EK_ACT_HARDSIGMOID: /* as act1: clamp01(a * v + b) */
        EK_VACT_LOOP(ek_svceil(ek_svfloor(v * act_a + act_b, z), one))
        break;
    case EK_ACT_HARDSWISH: /* v * clamp01(v / 6 + 0.5) */
        EK_VACT_LOOP(v * ek_svceil(ek_svfloor(v / 6.0f + 0.5f, z), one))
        break;
    default:
        break;
    }
#undef EK_VACT_LOOP
}

#ifdef __wasm_simd128__
/* ek_serf1 on 4 lanes, both of its branches, e^(q - z) by ek_svexp_minus (0 below e^-87.3, where erf is +-1 anyway);
 * clang 14's vectorisation of ek_serf1 spent half its time in f32x4.min/max */
EK_INLINE ek_sv ek_sverf(ek_sv x)
{
    const ek_sv a = (ek_sv)((ek_siv)x & 0x7fffffff), z = x * x, t = 1.0f / (1.0f + 0.5f * a);
    const ek_sv far = (ek_sv)((ek_siv)(1.0f - t * ek_svexp_minus(z - EK_ERFC_EXPONENT(t))) | ((ek_siv)x & ~0x7fffffff));
    return (ek_sv)wasm_v128_bitselect((v128_t)(x * EK_ERF_TAYLOR(z)), (v128_t)far, (v128_t)(a < 1.0f));
}

/* ek_sexp1 on 4 lanes, the same operations in the same order (its results exactly) */
EK_INLINE ek_sv ek_svexp(ek_sv x)
{
    const ek_sv z = {0}, magic = z + 12582912.0f;
    ek_sv t, r, p;
    ek_siv n, h;
    x = ek_svceil(ek_svfloor(x, z - 104.0f), z + 88.8f);
    t = x * 1.44269504088896341f + magic;
    n = (ek_siv)t - (ek_siv)magic;
    t -= magic;
    r = EK_EXPF_REDUCED(x, t);
    p = EK_EXPF_POLY(r, z);
    h = ((n + 256) >> 1) - 128; /* n / 2 rounded down, as ek_sexp1's */
    return p * (ek_sv)((h + 127) << 23) * (ek_sv)((n - h + 127) << 23);
}

/* ek_ssigmoid1 on 4 lanes (its results exactly: denormals kept, unlike ek_svsigmoid's) */
EK_INLINE ek_sv ek_svsigmoid_exact(ek_sv v)
{
    const ek_sv z = {0}, e = ek_svexp((ek_sv)((ek_siv)v | ~0x7fffffff)); /* e^-|v| */
    return (ek_sv)wasm_v128_bitselect((v128_t)(z + 1.0f), (v128_t)e, (v128_t)(v >= z)) / (1.0f + e);
}

EK_INLINE ek_sv ek_svsilu_exact(ek_sv v)
{
    return v * ek_svsigmoid_exact(v);
}

/* y[i] = f(x[i]) by vectors (vf), the last few by the scalar function (sf); x == y allowed */
#define EK_VMAP(name, vf, sf)                                                                                          \
    void name(const float *x, float *y, size_t n)                                                                      \
    {                                                                                                                  \
        size_t i;                                                                                                      \
        ek_sv v;                                                                                                       \
        for (i = 0; i + EK_SVL <= n; i += EK_SVL) {                                                                    \
            memcpy(&v, x + i, sizeof v);                                                                               \
            v = vf(v);                                                                                                 \
            memcpy(y + i, &v, sizeof v);                                                                               \
        }                                                                                                              \
        for (; i < n; ++i) y[i] = sf(x[i]);                                                                            \
    }
EK_VMAP(ek_serf, ek_sverf, ek_serf1)
EK_VMAP(ek_sexp, ek_svexp, ek_sexp1)
EK_VMAP(ek_ssigmoid, ek_svsigmoid_exact, ek_ssigmoid1)
EK_VMAP(ek_ssilu, ek_svsilu_exact, ek_ssilu1)
#undef EK_VMAP
#endif
#endif

#define EK_T float
#define EK_FN(name) ek_s##name
#define EK_V ek_sv
#define EK_VL EK_SVL /* elements per vector */
#ifndef EK_SMR /* rows per register block: 2 * EK_SMR accumulators + 2 B vectors + a broadcast fit the registers */
#if EK_SVL == 16
#define EK_SMR 8 /* AVX-512 (32 registers): 8 rows reach ~95% of OpenBLAS here, 4 rows ~70%, 12 spill */
#elif EK_SVL == 8
#define EK_SMR 6 /* AVX2 (16 registers): 12 accumulators */
#else
#define EK_SMR 4 /* 16-byte vectors (SSE, NEON, wasm simd128): under V8, 6 rows ran 10-20% slower than 4 */
#endif
#endif
#define EK_MR EK_SMR
#ifndef EK_SNV
#define EK_SNV 2 /* vectors per row of a register block */
#endif
#define EK_NV EK_SNV
#define EK_NR (EK_NV * EK_SVL)
#ifndef EK_SKC /* k steps per block at most (K is cut into equal blocks): C's tiles are loaded and stored once per block */
#if EK_SVL >= 8
#define EK_SKC 512 /* 2-7% faster than 128 on conv layers with AVX-512, though the packed B panel outgrows L1 */
#elif defined(__wasm__)
#define EK_SKC 512 /* wasm (a 16 KiB panel on a 1 MiB stack): C's tiles loaded and stored a quarter as often, 3% faster */
#else
#define EK_SKC 128 /* 16 KiB of packed panel on the stack (a microcontroller's, a wasm module's) */
#endif
#endif
#define EK_KC EK_SKC
#if defined(EK_THREADS) && EK_THREADS > 1
#define EK_PARALLEL ek_sgemm_parallel /* --threads N: threads.c splits big float GEMMs across its pool */
#define EK_PARALLEL_CONV ek_sgemm_conv_parallel
#endif
#define EK_Q8 1 /* float only: ek_sgemm_q8, B as int8 and scales */
#include "gemm.c"
#undef EK_Q8
#undef EK_PARALLEL
#undef EK_PARALLEL_CONV
#undef EK_V
#undef EK_VL
#undef EK_T
#undef EK_FN
#undef EK_MR
#undef EK_NR
#undef EK_NV
#undef EK_KC

#define EK_T double
#define EK_FN(name) ek_d##name
#define EK_V ek_dv
#define EK_VL 2
#define EK_MR 4
#define EK_NV 2
#define EK_NR 4
#define EK_KC 128
#include "gemm.c"

#else /* the body, once per element type */

#ifndef EK_MC
#define EK_MC 512 /* rows of A per block: 512 x EK_KC floats (256 KiB) stay in L2 while each packed B panel serves them
                   * all (64 rows packed every panel 2-8 times over on conv-sized products: 10-25% slower) */
#endif
#define EK_VZERO {0}
/* wasm's vector build: its tile loops read B through boff where panels asks (micro_c), and panels reads B in place
 * for products of few rows */
#if EK_VEC && !EK_WIDE_TILES && defined(__wasm_simd128__)
#define EK_WASM_VEC 1
#else
#define EK_WASM_VEC 0
#endif
#ifndef EK_WASM_IN_PLACE_M
#define EK_WASM_IN_PLACE_M 16
#endif
#ifndef EK_IN_PLACE_M
#define EK_IN_PLACE_M 128
#endif
#define EK_PREFETCH_PANELS 2 /* how far ahead (in panels of EK_NR columns) C's lines are prefetched: 2 beat 1 */
#define EK_DOTS_BT (EK_SVL * 256) /* elements of a transposed small B on the stack (4-16 KiB) */

/* min(max(t, 0), 1): HardSigmoid of t = a * v + b; HardSwish is v times that of v / 6 + 0.5 (inlined, so that act's
 * loops over them vectorise) */
EK_INLINE EK_T EK_FN(clamp01)(EK_T t)
{
    return t < 0 ? (EK_T)0 : (t > 1 ? (EK_T)1 : t);
}

/* the activation epilogue on one value; the switch is cheap next to the K multiply-adds before it */
static EK_T EK_FN(act1)(EK_T v, int act, EK_T a, EK_T b)
{
    EK_T t;
    switch (act) {
    case EK_ACT_RELU:
        return v < 0 ? (EK_T)0 : v;
    case EK_ACT_CLIP: /* min(max(v, a), b), as Clip does when a > b too */
        t = v < a ? a : v;
        return t > b ? b : t;
    case EK_ACT_SIGMOID:
        return EK_FN(sigmoid1)(v);
    case EK_ACT_SILU:
        return v * EK_FN(sigmoid1)(v);
    case EK_ACT_HARDSIGMOID:
        return EK_FN(clamp01)(a * v + b);
    case EK_ACT_HARDSWISH:
        return v * EK_FN(clamp01)(v / (EK_T)6 + (EK_T)0.5);
    case EK_ACT_LEAKYRELU:
        return v < 0 ? a * v : v;
    default:
        return v;
    }
}

#if EK_VEC
/* t after ReLU or Clip(lo, hi) (act 1 or 2, NaN kept as act1 keeps it; other acts: t): the epilogue in registers of
 * micro_tile, few_cols and the depthwise kernels' stores. Selects are bit operations on the comparisons' integer
 * vectors. */
EK_INLINE EK_V EK_FN(vact_clamp)(EK_V t, int act, EK_V lo, EK_V hi)
{
    const EK_V z = EK_VZERO;
#ifdef __wasm_simd128__ /* pmax and pmin (see ek_svfloor): clang 14 made the ReLU's select an f32x4.max */
#define EK_VFLOOR(x, m)                                                                                                \
    ((EK_V)(sizeof(EK_T) == 4 ? wasm_f32x4_pmax((v128_t)(x), (v128_t)(m)) : wasm_f64x2_pmax((v128_t)(x), (v128_t)(m))))
#define EK_VCEIL(x, m)                                                                                                 \
    ((EK_V)(sizeof(EK_T) == 4 ? wasm_f32x4_pmin((v128_t)(x), (v128_t)(m)) : wasm_f64x2_pmin((v128_t)(x), (v128_t)(m))))
    if (act == EK_ACT_RELU) /* x < 0 ? 0 : x */
        return EK_VFLOOR(t, z);
    if (act == EK_ACT_CLIP) /* min(max(x, a), b) */
        return EK_VCEIL(EK_VFLOOR(t, lo), hi);
#undef EK_VFLOOR
#undef EK_VCEIL
#else
    typedef __typeof__(z < z) mask;
    if (act == EK_ACT_RELU) /* x < 0 ? 0 : x */
        return (EK_V)((mask)t & ~(t < z));
    if (act == EK_ACT_CLIP) { /* min(max(x, a), b) */
        t = (EK_V)(((mask)lo & (t < lo)) | ((mask)t & ~(t < lo)));
        t = (EK_V)(((mask)hi & (t > hi)) | ((mask)t & ~(t > hi)));
    }
#endif
    return t;
}

/* the column of the vector after the one at c in a row of n >= vl outputs, n at the end: the last vector ends at n,
 * overlapping the one before it (whose outputs it writes again, alike) rather than a scalar tail */
EK_INLINE size_t EK_FN(next_vector)(size_t c, size_t n, size_t vl)
{
    return c + 2 * vl <= n ? c + vl : (c + vl < n ? n - vl : n);
}

/* the vectors of outputs at column c of RB (4 or 1) rows ly apart, after ReLU or Clip(lo, hi) (act 1 or 2; others:
 * as they are) */
EK_INLINE void EK_FN(dw_store)(EK_T *yr, size_t ly, size_t c, size_t RB, EK_V a0, EK_V a1, EK_V a2, EK_V a3, int act,
                               EK_V lo, EK_V hi)
{
    a0 = EK_FN(vact_clamp)(a0, act, lo, hi);
    memcpy(yr + c, &a0, sizeof a0);
    if (RB == 4) {
        a1 = EK_FN(vact_clamp)(a1, act, lo, hi);
        a2 = EK_FN(vact_clamp)(a2, act, lo, hi);
        a3 = EK_FN(vact_clamp)(a3, act, lo, hi);
        memcpy(yr + ly + c, &a1, sizeof a1);
        memcpy(yr + 2 * ly + c, &a2, sizeof a2);
        memcpy(yr + 3 * ly + c, &a3, sizeof a3);
    }
}
#endif

#if EK_WIDE_TILES

/* 4 output rows (sh input rows apart) x one vector of outputs from column c (RB 4), or 1 row: each input vector is
 * loaded once for every output row that reads it (a load per multiply-add was the limit: unaligned vector loads),
 * in four independent chains. KC and sh are constants at each call site. AVX builds: under V8 the plain loops below,
 * which the compiler vectorises, ran ppocrv4_rec 9% faster than this block. */
EK_INLINE void EK_FN(dw_block)(const EK_T *xr, size_t pw, size_t sh, const EK_T *w, size_t KC, size_t RB, EK_T b,
                               EK_T *yr, size_t ly, size_t c)
{
    const EK_V z = EK_VZERO;
    EK_V a0 = z + b, a1 = a0, a2 = a0, a3 = a0, x;
    size_t j, kw;
    for (j = 0; j < (RB - 1) * sh + KC; ++j) /* input row j feeds output row i through kernel row j - i*sh */
        for (kw = 0; kw < KC; ++kw) {
            memcpy(&x, xr + j * pw + kw + c, sizeof x);
            if (j < KC) a0 += w[j * KC + kw] * x;
            if (RB == 4) {
                if (j >= sh && j - sh < KC) a1 += w[(j - sh) * KC + kw] * x;
                if (j >= 2 * sh && j - 2 * sh < KC) a2 += w[(j - 2 * sh) * KC + kw] * x;
                if (j >= 3 * sh && j - 3 * sh < KC) a3 += w[(j - 3 * sh) * KC + kw] * x;
            }
        }
    EK_FN(dw_store)(yr, ly, c, RB, a0, a1, a2, a3, EK_ACT_NONE, z, z);
}
#endif

/* dw_rows with the kernel size, the row block and the row stride constants (each call site's) */
EK_INLINE void EK_FN(dw_rows_k)(const EK_T *xp, size_t pw, size_t sh, const EK_T *w, size_t KC, size_t RB, EK_T b,
                                EK_T *yp, size_t ly, size_t nr, size_t nc)
{
    size_t r0 = 0, r, c = 0, kh, kw;
#if EK_WIDE_TILES
    if (nc >= EK_VL) { /* whole vectors: blocks of RB rows, then the rows left one at a time */
        for (; r0 + RB <= nr; r0 += RB)
            for (c = 0; c < nc; c = EK_FN(next_vector)(c, nc, EK_VL))
                EK_FN(dw_block)(xp + r0 * sh * pw, pw, sh, w, KC, RB, b, yp + r0 * ly, ly, c);
        for (; r0 < nr; ++r0)
            for (c = 0; c < nc; c = EK_FN(next_vector)(c, nc, EK_VL))
                EK_FN(dw_block)(xp + r0 * sh * pw, pw, sh, w, KC, 1, b, yp + r0 * ly, ly, c);
        return;
    }
#else
    (void)RB;
#endif
    for (r = r0; r < nr; ++r) {
        const EK_T *xr = xp + r * sh * pw;
        for (c = 0; c < nc; ++c) {
            EK_T acc = b;
            for (kh = 0; kh < KC; ++kh)
                for (kw = 0; kw < KC; ++kw) acc += w[kh * KC + kw] * xr[kh * pw + kw + c];
            yp[r * ly + c] = acc;
        }
    }
}

int EK_FN(dw_rows)(const EK_T *xp, size_t pw, size_t sh, const EK_T *w, size_t k, EK_T b, EK_T *y, size_t ly,
                   EK_T *yp, size_t nr, size_t nc)
{
    int direct = 1;
    /* rows shorter than a vector, one input row apart: the band as one row of (nr-1)*pw + nc outputs into yp (the
     * columns between rows computed and dropped), so that the vectors are full */
    if (sh == 1 && nc < EK_VL) {
        nc += (nr - 1) * pw;
        nr = 1;
        y = yp;
        direct = 0;
    }
    /* constant sizes for the common kernels, row blocks of 4 */
    if (k == 3 && sh == 1)
        EK_FN(dw_rows_k)(xp, pw, 1, w, 3, 4, b, y, ly, nr, nc);
    else if (k == 3)
        EK_FN(dw_rows_k)(xp, pw, 2, w, 3, 4, b, y, ly, nr, nc);
    else if (k == 5 && sh == 1)
        EK_FN(dw_rows_k)(xp, pw, 1, w, 5, 4, b, y, ly, nr, nc);
    else if (k == 5)
        EK_FN(dw_rows_k)(xp, pw, 2, w, 5, 4, b, y, ly, nr, nc);
    else
        EK_FN(dw_rows_k)(xp, pw, sh, w, k, 4, b, y, ly, nr, nc);
    return direct;
}

#if EK_VEC && defined(EK_Q8) /* float: zips of two vectors' lanes, the steps of an in-register transpose */
#if defined(__clang__)
#define EK_SHUFFLE2(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define EK_SHUFFLE2(a, b, ...) __builtin_shuffle(a, b, (ek_siv){ __VA_ARGS__ })
#endif
#if EK_SVL == 16
#define EK_ZIP_LO(a, b) EK_SHUFFLE2(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define EK_ZIP_HI(a, b) EK_SHUFFLE2(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
#elif EK_SVL == 8
#define EK_ZIP_LO(a, b) EK_SHUFFLE2(a, b, 0, 8, 1, 9, 2, 10, 3, 11)
#define EK_ZIP_HI(a, b) EK_SHUFFLE2(a, b, 4, 12, 5, 13, 6, 14, 7, 15)
#else
#define EK_ZIP_LO(a, b) EK_SHUFFLE2(a, b, 0, 4, 1, 5)
#define EK_ZIP_HI(a, b) EK_SHUFFLE2(a, b, 2, 6, 3, 7)
#endif
#endif

#if EK_DW_ROWS && defined(EK_Q8) /* float vector builds: a 3x3 depthwise convolution's rows straight, stride 2 unzipped */
/* acc += kernel row kh's three taps over the tap vectors t0, t1, t2; the masks m0, m2 zero taps 0 and 2 in the lanes
 * where they are 0 (the padding columns of a row read in place) */
#define EK_DW3_TAPS(acc, kh) (acc += w[(kh) * 3] * t0 + w[(kh) * 3 + 1] * t1 + w[(kh) * 3 + 2] * t2)
#if EK_SVL == 16
#define EK_UNZIP_EVEN(a, b) EK_SHUFFLE2(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define EK_UNZIP_ODD(a, b) EK_SHUFFLE2(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#elif EK_SVL == 8
#define EK_UNZIP_EVEN(a, b) EK_SHUFFLE2(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define EK_UNZIP_ODD(a, b) EK_SHUFFLE2(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#else
#define EK_UNZIP_EVEN(a, b) EK_SHUFFLE2(a, b, 0, 2, 4, 6)
#define EK_UNZIP_ODD(a, b) EK_SHUFFLE2(a, b, 1, 3, 5, 7)
#endif

/* RB (4 or 1) output rows x one vector of outputs from column c of a 3x3 stride-2 depthwise convolution over padded
 * rows xr (pw apart): each input row's three tap vectors (columns 2c + 2i + kw) are unzipped from two pairs of loads
 * once and feed the one or two output rows that read it. In place of splitting the band into phase planes first,
 * whose short strided copies cost more than the taps. */
EK_INLINE void EK_FN(dw_block_s2)(const EK_T *xr, size_t pw, const EK_T *w, size_t RB, EK_T b, EK_T *yr, size_t ly,
                                  size_t c, ek_siv m0, ek_siv m2, int act, EK_V alo, EK_V ahi)
{
    const EK_V z = EK_VZERO;
    EK_V a0 = z + b, a1 = a0, a2 = a0, a3 = a0, lo, hi, t0, t1, t2;
    size_t j;
    EK_UNROLL
    for (j = 0; j < 2 * RB + 1; ++j) { /* input row j feeds output row i through kernel row j - 2i */
        const EK_T *p = xr + j * pw + 2 * c;
        memcpy(&lo, p, sizeof lo);
        memcpy(&hi, p + EK_VL, sizeof hi);
        t0 = EK_UNZIP_EVEN(lo, hi);
        t1 = EK_UNZIP_ODD(lo, hi);
        memcpy(&lo, p + 2, sizeof lo);
        memcpy(&hi, p + 2 + EK_VL, sizeof hi);
        t2 = EK_UNZIP_EVEN(lo, hi);
        t0 = (EK_V)((ek_siv)t0 & m0), t2 = (EK_V)((ek_siv)t2 & m2); /* the padding columns, if any, zero */
        if (j < 3) EK_DW3_TAPS(a0, j);
        if (RB == 4) {
            if (j >= 2 && j < 5) EK_DW3_TAPS(a1, j - 2);
            if (j >= 4 && j < 7) EK_DW3_TAPS(a2, j - 4);
            if (j >= 6) EK_DW3_TAPS(a3, j - 6);
        }
    }
    EK_FN(dw_store)(yr, ly, c, RB, a0, a1, a2, a3, act, alo, ahi);
}

/* The same for stride 1 (tap kw of output column c at xr[c + kw]): one function with the stride a parameter ran the
 * stride-2 rows 1.15x slower under gcc 12 */
EK_INLINE void EK_FN(dw_block_s1)(const EK_T *xr, size_t pw, const EK_T *w, size_t RB, EK_T b, EK_T *yr, size_t ly,
                                  size_t c, ek_siv m0, ek_siv m2, int act, EK_V alo, EK_V ahi)
{
    const EK_V z = EK_VZERO;
    EK_V a0 = z + b, a1 = a0, a2 = a0, a3 = a0, t0, t1, t2;
    size_t j;
    EK_UNROLL
    for (j = 0; j < RB + 2; ++j) { /* input row j feeds output row i through kernel row j - i */
        const EK_T *p = xr + j * pw + c;
        memcpy(&t0, p, sizeof t0);
        memcpy(&t1, p + 1, sizeof t1);
        memcpy(&t2, p + 2, sizeof t2);
        t0 = (EK_V)((ek_siv)t0 & m0), t2 = (EK_V)((ek_siv)t2 & m2);
        if (j < 3) EK_DW3_TAPS(a0, j);
        if (RB == 4) {
            if (j >= 1 && j < 4) EK_DW3_TAPS(a1, j - 1);
            if (j >= 2 && j < 5) EK_DW3_TAPS(a2, j - 2);
            if (j >= 3) EK_DW3_TAPS(a3, j - 3);
        }
    }
    EK_FN(dw_store)(yr, ly, c, RB, a0, a1, a2, a3, act, alo, ahi);
}
#undef EK_DW3_TAPS

/* lanes all set but lane off (none when off == EK_VL): a load from a table with one 0, not lane by lane */
static ek_siv EK_FN(lane_mask)(size_t off)
{
    static const int32_t t[32] = { -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                   0,  -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1 };
    ek_siv m;
    memcpy(&m, t + 16 - off, sizeof m);
    return m;
}
#endif

size_t EK_FN(dw_s2_width)(void)
{
#if EK_DW_ROWS && defined(EK_Q8)
    return EK_VL;
#else
    return 0;
#endif
}

void EK_FN(copy_evens)(EK_T *out, const EK_T *src, size_t n, const EK_T *lo, const EK_T *hi)
{
    size_t t = 0;
#if EK_DW_ROWS && defined(EK_Q8)
    const size_t after = (size_t)(hi - src); /* elements readable from src on */
    EK_V a, b, v;
    if (n >= EK_VL) {
        for (; t + EK_VL <= n && 2 * (t + EK_VL) <= after; t += EK_VL) {
            memcpy(&a, src + 2 * t, sizeof a);
            memcpy(&b, src + 2 * t + EK_VL, sizeof b);
            v = EK_UNZIP_EVEN(a, b);
            memcpy(out + t, &v, sizeof v);
        }
        if (t < n && (2 * n <= after || src > lo)) { /* the last vector of outputs, n - vl .. n - 1 */
            const EK_T *p = src + 2 * (n - EK_VL) - (2 * n > after);
            memcpy(&a, p, sizeof a);
            memcpy(&b, p + EK_VL, sizeof b);
            v = 2 * n <= after ? EK_UNZIP_EVEN(a, b) : EK_UNZIP_ODD(a, b);
            memcpy(out + n - EK_VL, &v, sizeof v);
            t = n;
        }
    }
#else
    (void)lo, (void)hi;
#endif
    for (; t < n; ++t) out[t] = src[2 * t];
}

#if EK_DW_ROWS && defined(EK_Q8)
/* RB (4 or 1) rows of outputs of stride S (a constant) by vectors, the first and the last vector of each row masked */
#define EK_DW3_ROWS(S, RB)                                                                                      \
    for (c = 0; c < nc; c = EK_FN(next_vector)(c, nc, EK_VL))                                                  \
        EK_FN(dw_block_s##S)(x + r0 * (S) * pw, pw, w, RB, b, y + r0 * ly, ly, c, c == 0 ? m0 : all,              \
                             c + EK_VL >= nc ? m2 : all, act, lo, hi);

/* y[r * ly + c] for r < nr, c < nc: the 3x3 taps of stride S (1 or 2) over rows x pw apart, tap kw of output column
 * c at x[r * S * pw + S * c + kw], taps 0 and 2 masked by m0 in each row's first vector and by m2 in its last, then
 * ReLU or Clip (act 1 or 2; others left to the caller): the loop of dw_rows_s2 (no masks) and dw_rows_edges */
EK_INLINE void EK_FN(dw3_rows)(const EK_T *x, size_t pw, size_t S, const EK_T *w, EK_T b, EK_T *y, size_t ly,
                               size_t nr, size_t nc, ek_siv m0, ek_siv m2, int act, EK_T act_a, EK_T act_b)
{
    const ek_siv all = EK_FN(lane_mask)(EK_VL);
    const EK_V z = EK_VZERO, lo = z + act_a, hi = z + act_b;
    size_t r0 = 0, c;
    if (S == 1) {
        for (; r0 + 4 <= nr; r0 += 4) EK_DW3_ROWS(1, 4)
        for (; r0 < nr; ++r0) EK_DW3_ROWS(1, 1)
    } else {
        for (; r0 + 4 <= nr; r0 += 4) EK_DW3_ROWS(2, 4)
        for (; r0 < nr; ++r0) EK_DW3_ROWS(2, 1)
    }
}
#undef EK_DW3_ROWS
#endif

void EK_FN(dw_rows_s2)(const EK_T *xp, size_t pw, const EK_T *w, EK_T b, EK_T *y, size_t ly, size_t nr, size_t nc,
                       int act, EK_T act_a, EK_T act_b)
{
#if EK_DW_ROWS && defined(EK_Q8)
    const ek_siv all = EK_FN(lane_mask)(EK_VL);
    EK_FN(dw3_rows)(xp, pw, 2, w, b, y, ly, nr, nc, all, all, act, act_a, act_b);
#else
    (void)xp, (void)pw, (void)w, (void)b, (void)y, (void)ly, (void)nr, (void)nc, (void)act, (void)act_a, (void)act_b;
#endif
}

void EK_FN(dw_rows_edges)(const EK_T *x, size_t iw, size_t sh, const EK_T *w, EK_T b, EK_T *y, size_t nc, size_t nr,
                          int right_pad, int act, EK_T act_a, EK_T act_b)
{
#if EK_DW_ROWS && defined(EK_Q8)
    /* column -1 masked in each row's first vector; column iw, if padding, in its last (the last output's lane) */
    const ek_siv m2 = EK_FN(lane_mask)(right_pad ? (nc < EK_VL ? nc : EK_VL) - 1 : EK_VL);
    EK_FN(dw3_rows)(x - 1, iw, sh, w, b, y, nc, nr, nc, EK_FN(lane_mask)(0), m2, act, act_a, act_b);
#else
    (void)x, (void)iw, (void)sh, (void)w, (void)b, (void)y, (void)nc, (void)nr, (void)right_pad, (void)act,
        (void)act_a, (void)act_b;
#endif
}

#if EK_VEC
#define EK_DW_LANES EK_VL /* channels per vector in the depthwise lanes path */
#else
#define EK_DW_LANES 1 /* no vectors: conv.c does not take that path */
#endif

size_t EK_FN(dw_lane_count)(void)
{
    return EK_DW_LANES;
}

#if EK_VEC && defined(EK_Q8)
/* the EK_VL x EK_VL block rows a[] transposed in registers by log2(EK_VL) rounds of zips (row i and row i + EK_VL/2
 * into rows 2i and 2i + 1); returns the array that holds the result (a or b) */
static EK_V *EK_FN(transpose_block)(EK_V *a, EK_V *b)
{
    size_t i, r, step;
    for (step = 1, r = 0; step < EK_VL; step *= 2, ++r) {
        EK_V *in = r % 2 ? b : a, *out = r % 2 ? a : b;
        for (i = 0; i < EK_VL / 2; ++i) {
            out[2 * i] = EK_ZIP_LO(in[i], in[i + EK_VL / 2]);
            out[2 * i + 1] = EK_ZIP_HI(in[i], in[i + EK_VL / 2]);
        }
    }
    return r % 2 ? b : a;
}
#endif

void EK_FN(dw_interleave)(EK_T *dst, const EK_T *src, size_t ld, size_t nl, size_t n, size_t past)
{
    size_t c = 0, l;
#if EK_VEC && defined(EK_Q8)
    /* blocks of EK_VL columns of all lanes, transposed in registers; a last partial block where the rows can be read
     * past their end (a depthwise kernel's 9 taps: one block, not a gather of 9 x EK_VL scalars) */
    size_t i;
    for (; nl == EK_VL && c < n && c + EK_VL <= n + past; c += EK_VL) {
        EK_V a[EK_VL], b[EK_VL], *t;
        for (i = 0; i < EK_VL; ++i) memcpy(&a[i], src + i * ld + c, sizeof a[i]);
        t = EK_FN(transpose_block)(a, b);
        for (i = 0; i < EK_VL && c + i < n; ++i) memcpy(dst + (c + i) * EK_VL, &t[i], sizeof t[i]);
    }
    if (c > n) c = n;
#else
    (void)past;
#endif
    for (l = 0; l < nl; ++l) {
        const EK_T *s = src + l * ld;
        size_t j;
        for (j = c; j < n; ++j) dst[j * EK_DW_LANES + l] = s[j];
    }
}

void EK_FN(dw_deinterleave)(EK_T *dst, size_t ld, const EK_T *src, size_t nl, size_t n)
{
    size_t c = 0, l;
#if EK_VEC && defined(EK_Q8)
    /* the inverse, the same block transposes (a strided gather per lane cost a third of a 7x7 layer) */
    size_t i;
    for (; nl == EK_VL && c + EK_VL <= n; c += EK_VL) {
        EK_V a[EK_VL], b[EK_VL], *t;
        for (i = 0; i < EK_VL; ++i) memcpy(&a[i], src + (c + i) * EK_VL, sizeof a[i]);
        t = EK_FN(transpose_block)(a, b);
        for (i = 0; i < EK_VL; ++i) memcpy(dst + i * ld + c, &t[i], sizeof t[i]);
    }
#endif
    for (l = 0; l < nl; ++l) {
        EK_T *d = dst + l * ld;
        size_t j;
        for (j = c; j < n; ++j) d[j] = src[j * EK_DW_LANES + l];
    }
}
#undef EK_DW_LANES

#if EK_VEC
/* dw_lanes' outputs with the kernel size and the strides constants (each call site's) */
EK_INLINE void EK_FN(dw_lanes_k)(const EK_T *xp, size_t pw, size_t SH, size_t SW, const EK_T *w, size_t KC,
                                 const EK_T *b, EK_T *yo, size_t nr, size_t nc, int act, EK_T act_a, EK_T act_b)
{
    const EK_V z = EK_VZERO, lo = z + act_a, hi = z + act_b;
    size_t r, c, kh, kw;
    EK_V bv, wv[49];
    memcpy(&bv, b, sizeof bv);
    for (kh = 0; kh < KC * KC; ++kh) memcpy(&wv[kh], w + kh * EK_VL, sizeof wv[kh]);
    for (r = 0; r < nr; ++r)
        for (c = 0; c < nc; ++c) {
            const EK_T *win = xp + (r * SH * pw + c * SW) * EK_VL;
            EK_V acc = bv, xv;
            for (kh = 0; kh < KC; ++kh)
                for (kw = 0; kw < KC; ++kw) {
                    memcpy(&xv, win + (kh * pw + kw) * EK_VL, sizeof xv);
                    acc += wv[kh * KC + kw] * xv;
                }
            acc = EK_FN(vact_clamp)(acc, act, lo, hi);
            memcpy(yo + (r * nc + c) * EK_VL, &acc, sizeof acc);
        }
}
#endif

void EK_FN(dw_lanes)(const EK_T *xp, size_t pw, size_t sh, size_t sw, const EK_T *w, size_t k, const EK_T *b,
                     EK_T *yo, size_t nr, size_t nc, int act, EK_T act_a, EK_T act_b)
{
#if EK_VEC
    if (k == 3 && sh == 1 && sw == 1)
        EK_FN(dw_lanes_k)(xp, pw, 1, 1, w, 3, b, yo, nr, nc, act, act_a, act_b);
    else if (k == 3 && sh == 2 && sw == 2)
        EK_FN(dw_lanes_k)(xp, pw, 2, 2, w, 3, b, yo, nr, nc, act, act_a, act_b);
    else if (k == 5 && sh == 1 && sw == 1)
        EK_FN(dw_lanes_k)(xp, pw, 1, 1, w, 5, b, yo, nr, nc, act, act_a, act_b);
    else if (k == 5 && sh == 2 && sw == 2)
        EK_FN(dw_lanes_k)(xp, pw, 2, 2, w, 5, b, yo, nr, nc, act, act_a, act_b);
    else
        EK_FN(dw_lanes_k)(xp, pw, sh, sw, w, k, b, yo, nr, nc, act, act_a, act_b);
#else /* one lane: ek_sdw_lane_count() says so, and conv.c does not call this */
    (void)xp, (void)pw, (void)sh, (void)sw, (void)w, (void)k, (void)b, (void)yo, (void)nr, (void)nc, (void)act,
        (void)act_a, (void)act_b;
#endif
}

void EK_FN(act)(EK_T *y, size_t n, int act, EK_T act_a, EK_T act_b)
{
    size_t i;
    if (act == EK_ACT_NONE) return;
#if EK_VACT_ROWS
    if (sizeof(EK_T) == 4 && (act == EK_ACT_RELU || act == EK_ACT_CLIP || act == EK_ACT_SIGMOID || act == EK_ACT_SILU ||
                              act == EK_ACT_HARDSIGMOID || act == EK_ACT_HARDSWISH)) {
        ek_svact_row((float *)y, n, act, (float)act_a, (float)act_b);
        return;
    }
#endif
    if (act == EK_ACT_RELU) {
        for (i = 0; i < n; ++i) y[i] = y[i] < 0 ? (EK_T)0 : y[i];
        return;
    }
    if (act == EK_ACT_CLIP) { /* as act1: min(max(v, a), b) */
        for (i = 0; i < n; ++i) {
            const EK_T t = y[i] < act_a ? act_a : y[i];
            y[i] = t > act_b ? act_b : t;
        }
        return;
    }
    if (act == EK_ACT_SIGMOID) { /* loops of their own: the switch in act1 would keep them scalar */
        for (i = 0; i < n; ++i) y[i] = EK_FN(sigmoid1)(y[i]);
        return;
    }
    if (act == EK_ACT_SILU) {
        for (i = 0; i < n; ++i) y[i] = y[i] * EK_FN(sigmoid1)(y[i]);
        return;
    }
    if (act == EK_ACT_HARDSWISH) { /* through act1's switch a depthwise conv's epilogue took 6x its taps */
        for (i = 0; i < n; ++i) y[i] = y[i] * EK_FN(clamp01)(y[i] / (EK_T)6 + (EK_T)0.5);
        return;
    }
    if (act == EK_ACT_HARDSIGMOID) {
        for (i = 0; i < n; ++i) y[i] = EK_FN(clamp01)(act_a * y[i] + act_b);
        return;
    }
    for (i = 0; i < n; ++i) y[i] = EK_FN(act1)(y[i], act, act_a, act_b);
}

/* one row of a packed panel: dst[j] = src[j] for j < nr, zeros up to EK_NR (a whole row is a constant-size copy:
 * clang 14 turned the loop into scalar copies for wasm, where a panel's packing then cost 2.5x the products of a
 * 4-row tile over it) */
EK_INLINE void EK_FN(pack_row)(EK_T *dst, const EK_T *src, size_t nr)
{
    size_t j;
    if (nr == EK_NR) {
        memcpy(dst, src, EK_NR * sizeof(EK_T));
    } else {
        for (j = 0; j < nr; ++j) dst[j] = src[j];
        for (; j < EK_NR; ++j) dst[j] = 0;
    }
}

/* bp[k*NR + j] = B^T[k0 + k, j0 + j] for k < kc, j < nr; columns nr..NR-1 are zero (a B without transB is packed
 * row by row from boff) */
static void EK_FN(pack_b_trans)(EK_T *bp, const EK_T *B, size_t ldb, size_t k0, size_t kc, size_t j0, size_t nr)
{
    size_t k, j;
    for (j = 0; j < nr; ++j) {
        const EK_T *src = B + (j0 + j) * ldb + k0;
        for (k = 0; k < kc; ++k) bp[k * EK_NR + j] = src[k];
    }
    for (; j < EK_NR; ++j)
        for (k = 0; k < kc; ++k) bp[k * EK_NR + j] = 0;
}

#if EK_VEC
/* the epilogue micro_c applies in registers: bias[i * bias_rs] per row (or none), then act */
typedef struct {
    const EK_T *bias;
    size_t bias_rs;
    int act;
    EK_T a, b;
} EK_FN(tile_end);

/* a whole EK_MR x EK_NR tile of C (row stride ldc) += the block's products (= them if first): the accumulators start
 * from C and go back to it, without micro's round trip through an array and a second loop over the tile. A's rows
 * are rows[i][k * acs], or, packed at export time, ap[k * EK_PACK_ROWS + i] (one line per k: 1-5% on conv layers);
 * B's row k is bp + k * EK_NR (a packed panel) or, read in place, bp + boff[k]. `packed` and `direct` are constants
 * in each of micro_c's calls, so each gets a loop of its own. */
EK_INLINE void EK_FN(micro_tile)(size_t kc, const EK_T *const *rows, size_t acs, int packed, const EK_T *ap,
                                 const EK_T *bp, int direct, const size_t *boff, EK_T *C, size_t ldc, int first,
                                 const EK_FN(tile_end) *end, size_t nv)
{
    EK_V c[EK_MR][EK_NV];
    const EK_T *r[EK_MR];
    size_t i, v, k;
    EK_UNROLL for (i = 0; i < EK_MR; ++i) {
        EK_UNROLL for (v = 0; v < nv; ++v) {
            const EK_V z = EK_VZERO;
            c[i][v] = z;
            if (!first) memcpy(&c[i][v], C + i * ldc + v * EK_VL, sizeof c[i][v]);
        }
        r[i] = packed ? ap + i : rows[i];
    }
    if (packed) acs = EK_PACK_ROWS;
#if EK_WIDE_TILES
    for (k = 0; k < kc; ++k) {
        EK_V b[EK_NV];
        const EK_T *bk = direct ? bp + boff[k] : bp + k * EK_NR;
        EK_UNROLL for (v = 0; v < nv; ++v) memcpy(&b[v], bk + v * EK_VL, sizeof b[v]);
        EK_UNROLL for (i = 0; i < EK_MR; ++i) {
            const EK_T a = r[i][k * acs];
            EK_UNROLL for (v = 0; v < nv; ++v) c[i][v] += b[v] * a;
        }
    }
#else /* A's rows in place, each row's pointer and B's stepped, no index arithmetic: under V8 the loop is bound by its
       * instruction count (resnet50 in wasm 6% faster than k * acs and k * EK_NR) */
    const EK_T *const bend = bp + kc * EK_NR;
    (void)k;
    if (direct) { /* wasm: B's row k at bp + boff[k] (B in place, or a packed panel when A's rows are strided) */
        const size_t *o = boff, *const oend = boff + kc;
        for (; o != oend; ++o) {
            EK_V b[EK_NV];
            const EK_T *bk = bp + *o;
            EK_UNROLL for (v = 0; v < nv; ++v) memcpy(&b[v], bk + v * EK_VL, sizeof b[v]);
            EK_UNROLL for (i = 0; i < EK_MR; ++i) {
                const EK_T a = *r[i];
                r[i] += acs;
                EK_UNROLL for (v = 0; v < nv; ++v) c[i][v] += b[v] * a;
            }
        }
    } else
    for (; bp != bend; bp += EK_NR) {
        EK_V b[EK_NV];
        EK_UNROLL for (v = 0; v < nv; ++v) memcpy(&b[v], bp + v * EK_VL, sizeof b[v]);
        EK_UNROLL for (i = 0; i < EK_MR; ++i) {
            const EK_T a = *r[i];
            r[i] += acs;
            EK_UNROLL for (v = 0; v < nv; ++v) c[i][v] += b[v] * a;
        }
    }
#endif
    if (end) { /* the last block: bias and activation in registers, before the only store */
        const EK_V z = EK_VZERO, lo = z + end->a, hi = z + end->b;
#if EK_WIDE_TILES
        typedef __typeof__(z < z) mask; /* the integer vector a comparison gives: selects are bit operations */
#endif
#define EK_SEL(m, yes, no) ((EK_V)(((mask)(yes) & (m)) | ((mask)(no) & ~(m))))
/* t = f(t) on every accumulator: one switch per tile, each case a loop over the whole tile, unrolled (a switch per
 * vector, unrolled 16 times over, took 5x the code) */
#define EK_TILE_MAP(f)                                                                                                 \
    EK_UNROLL for (i = 0; i < EK_MR; ++i)                                                                              \
        EK_UNROLL for (v = 0; v < nv; ++v) {                                                                           \
            EK_V t = c[i][v];                                                                                          \
            f;                                                                                                         \
            c[i][v] = t;                                                                                               \
        }
        if (end->bias)
            EK_UNROLL for (i = 0; i < EK_MR; ++i) {
                const EK_T bi = end->bias[i * end->bias_rs];
                EK_UNROLL for (v = 0; v < nv; ++v) c[i][v] += bi;
            }
        switch (end->act) { /* each as act1, NaN kept */
        case EK_ACT_RELU:
            EK_TILE_MAP(t = EK_FN(vact_clamp)(t, EK_ACT_RELU, lo, hi))
            break;
        case EK_ACT_CLIP:
            EK_TILE_MAP(t = EK_FN(vact_clamp)(t, EK_ACT_CLIP, lo, hi))
            break;
#if EK_WIDE_TILES
        case EK_ACT_HARDSIGMOID: {
            const EK_V one = z + 1;
            EK_TILE_MAP(const EK_V u = lo * t + hi; t = EK_SEL(u < z, z, EK_SEL(u > one, one, u)))
            break;
        }
        case EK_ACT_HARDSWISH: {
            const EK_V one = z + 1;
            EK_TILE_MAP(const EK_V u = t / (EK_T)6 + (EK_T)0.5; t = t * EK_SEL(u < z, z, EK_SEL(u > one, one, u)))
            break;
        }
        case EK_ACT_LEAKYRELU:
            EK_TILE_MAP(t = EK_SEL(t < z, lo * t, t))
            break;
#ifdef EK_Q8 /* float: the vector sigmoid */
        case EK_ACT_SIGMOID:
            EK_TILE_MAP(t = ek_svsigmoid(t))
            break;
        case EK_ACT_SILU:
            EK_TILE_MAP(t = ek_svsilu(t))
            break;
#endif
#endif
        default:
            break;
        }
#undef EK_TILE_MAP
#undef EK_SEL
    }
    EK_UNROLL for (i = 0; i < EK_MR; ++i)
        EK_UNROLL for (v = 0; v < nv; ++v) memcpy(C + i * ldc + v * EK_VL, &c[i][v], sizeof c[i][v]);
}

/* narrow: the tile's columns fit one vector (a panel's last few), so only its first vector is computed (AVX builds:
 * the 9 columns left of 169 cost a whole 32-column tile) */
static void EK_FN(micro_c)(size_t kc, const EK_T *const *rows, size_t acs, const EK_T *ap, const EK_T *bp,
                           const size_t *boff, EK_T *C, size_t ldc, int first, const EK_FN(tile_end) *end, int narrow)
{
#if EK_WIDE_TILES
    if (narrow && ap) /* never read in place: B is read in place by whole panels only */
        EK_FN(micro_tile)(kc, NULL, 0, 1, ap, bp, 0, NULL, C, ldc, first, end, 1);
    else if (narrow)
        EK_FN(micro_tile)(kc, rows, acs, 0, NULL, bp, 0, NULL, C, ldc, first, end, 1);
    else if (ap && boff)
        EK_FN(micro_tile)(kc, NULL, 0, 1, ap, bp, 1, boff, C, ldc, first, end, EK_NV);
    else if (ap)
        EK_FN(micro_tile)(kc, NULL, 0, 1, ap, bp, 0, NULL, C, ldc, first, end, EK_NV);
    else if (boff)
        EK_FN(micro_tile)(kc, rows, acs, 0, NULL, bp, 1, boff, C, ldc, first, end, EK_NV);
    else
        EK_FN(micro_tile)(kc, rows, acs, 0, NULL, bp, 0, NULL, C, ldc, first, end, EK_NV);
#else /* rows point into packed groups here, if at all; B is packed (but in wasm, see below) */
    (void)ap, (void)narrow;
#if EK_WASM_VEC
    /* two loops, no more: with a third (narrow tiles, say) clang 14 kept the tiles' accumulators in memory, 3x slower.
     * A packed panel and A's rows contiguous in k (weights in ONNX's layout), each pointer stepped, no multiply per
     * step: under V8 the loop is bound by its instruction count, not its arithmetic (resnet50 and ppocrv4_rec 4-6%
     * faster, mobilenet 3-7%); and B's rows through boff: B read in place by few rows of A, or a packed panel's rows
     * (panels' packed_rows) for A's rows strided */
    if (acs == 1 && !boff)
        EK_FN(micro_tile)(kc, rows, 1, 0, NULL, bp, 0, NULL, C, ldc, first, end, EK_NV);
    else
        EK_FN(micro_tile)(kc, rows, acs, 0, NULL, bp, 1, boff, C, ldc, first, end, EK_NV);
#else
    (void)boff;
    EK_FN(micro_tile)(kc, rows, acs, 0, NULL, bp, 0, NULL, C, ldc, first, end, EK_NV);
#endif
#endif
}
#else
/* acc = the EK_MR x EK_NR block of products over kc steps of k; rows are A row pointers at k0
 * (acs: their k stride), bp the packed B panel */
static void EK_FN(micro)(size_t kc, const EK_T *const *rows, size_t acs, const EK_T *bp, EK_T acc[EK_MR][EK_NR])
{
    size_t i, j, k;
    for (i = 0; i < EK_MR; ++i)
        for (j = 0; j < EK_NR; ++j) acc[i][j] = 0;
    for (k = 0; k < kc; ++k) {
        const EK_T *b = bp + k * EK_NR;
        for (i = 0; i < EK_MR; ++i) {
            const EK_T a = rows[i][k * acs];
            for (j = 0; j < EK_NR; ++j) acc[i][j] += a * b[j];
        }
    }
}
#endif

/* the epilogue on one finished row of C: alpha, bias, activation, each as its own loop so the compiler
 * vectorises them (a per-element switch here cost as much as the products when K is small) */
static void EK_FN(finish_row)(EK_T *c, size_t n, EK_T alpha, EK_T beta, const EK_T *bias, size_t bias_cs, int act,
                              EK_T act_a, EK_T act_b)
{
    size_t j;
    if (alpha != 1)
        for (j = 0; j < n; ++j) c[j] *= alpha;
    if (bias && bias_cs == 0) {
        const EK_T bv = beta * bias[0];
        for (j = 0; j < n; ++j) c[j] += bv;
    } else if (bias) {
        for (j = 0; j < n; ++j) c[j] += beta * bias[j * bias_cs];
    }
    EK_FN(act)(c, n, act, act_a, act_b);
}

#if EK_VEC && !EK_WIDE_TILES && EK_VACT_ROWS && defined(EK_Q8)
#define EK_ACT_TILE 1
/* sigmoid or SiLU (act) on a whole register tile just stored at c (rows ldc apart), the bias already added: wasm's
 * epilogue for them, one call per tile. Through ek_svact_row, a call per row, it cost YOLOv8's 3 -> 16 stem more than
 * its products under V8; in the register tile itself, the larger function ran the k loop 3-6% slower. */
EK_NOINLINE void EK_FN(act_tile)(EK_T *c, size_t ldc, int act)
{
    size_t i, j;
    EK_V t;
    for (i = 0; i < EK_MR; ++i)
        for (j = 0; j < EK_NR; j += EK_VL) {
            memcpy(&t, c + i * ldc + j, sizeof t);
            t = act == EK_ACT_SIGMOID ? ek_svsigmoid(t) : ek_svsilu(t);
            memcpy(c + i * ldc + j, &t, sizeof t);
        }
}
#else
#define EK_ACT_TILE 0
#endif

/* one block of C: the products, plus what earlier K blocks left in C; the epilogue after the last */
static void EK_FN(block)(size_t kc, const EK_T *const *rows, size_t acs, const EK_T *ap, const EK_T *bp,
                         const size_t *boff, EK_T *C, size_t ldc, size_t mr, size_t nr, int first, int last,
                         EK_T alpha, EK_T beta, const EK_T *bias, size_t bias_rs, size_t bias_cs, int act, EK_T act_a,
                         EK_T act_b)
{
    EK_T acc[EK_MR][EK_NR];
    size_t i, j;
#if EK_VEC
    /* a conv's epilogue, one bias per row then the activation, goes in registers (sigmoid and SiLU in float only;
     * in wasm, act_tile's, on the tile just stored) */
    const int sigmoid_like = act == EK_ACT_SIGMOID || act == EK_ACT_SILU;
    const int in_regs = last && alpha == 1 && (!bias || (bias_cs == 0 && beta == 1)) &&
                        (EK_WIDE_TILES ? sizeof(EK_T) == 4 || !sigmoid_like
                                       : act == EK_ACT_NONE || act == EK_ACT_RELU || act == EK_ACT_CLIP ||
                                             (EK_ACT_TILE && sigmoid_like));
    EK_FN(tile_end) end;
    end.bias = bias, end.bias_rs = bias_rs, end.act = act, end.a = act_a, end.b = act_b;
    if (EK_ACT_TILE && sigmoid_like) end.act = EK_ACT_NONE; /* act_tile's, after the tile's store */
    if (mr == EK_MR && nr == EK_NR) {
        EK_FN(micro_c)(kc, rows, acs, ap, bp, boff, C, ldc, first, in_regs ? &end : NULL, 0);
#if EK_ACT_TILE
        if (in_regs && sigmoid_like) EK_FN(act_tile)(C, ldc, act);
#endif
    } else { /* an edge tile through a whole one on the stack: the same operations in the same order, so an element's
              * value does not depend on where the tiles fall (--threads splits them differently) */
        for (i = 0; i < EK_MR; ++i)
            for (j = 0; j < EK_NR; ++j) acc[i][j] = !first && i < mr && j < nr ? C[i * ldc + j] : (EK_T)0;
        EK_FN(micro_c)(kc, rows, acs, ap, bp, boff, acc[0], EK_NR, first, in_regs ? &end : NULL, nr <= EK_VL);
#if EK_ACT_TILE
        if (in_regs && sigmoid_like) EK_FN(act_tile)(acc[0], EK_NR, act);
#endif
        for (i = 0; i < mr; ++i)
            for (j = 0; j < nr; ++j) C[i * ldc + j] = acc[i][j];
    }
    if (last && !in_regs)
        for (i = 0; i < mr; ++i)
            EK_FN(finish_row)(C + i * ldc, nr, alpha, beta, bias ? bias + i * bias_rs : bias, bias_cs, act, act_a,
                              act_b);
#else
    (void)ap, (void)boff; /* the rows point into the packed groups too; B is always packed here */
    EK_FN(micro)(kc, rows, acs, bp, acc);
    for (i = 0; i < mr; ++i) {
        EK_T *c = C + i * ldc;
        if (first)
            for (j = 0; j < nr; ++j) c[j] = acc[i][j];
        else
            for (j = 0; j < nr; ++j) c[j] += acc[i][j];
        if (last) EK_FN(finish_row)(c, nr, alpha, beta, bias ? bias + i * bias_rs : bias, bias_cs, act, act_a, act_b);
    }
#endif
}
#undef EK_ACT_TILE

/* C rows one at a time, for M < EK_MR (matrix-vector products): packing B would cost as much as
 * the products. Without transB: c += A[i,k] * B row k (contiguous); with it: dot products. */
static void EK_FN(gemm_rows)(size_t M, size_t N, size_t K, EK_T alpha, const EK_T *A, size_t ars, size_t acs,
                             const EK_T *B, size_t ldb, int transB, EK_T beta, const EK_T *bias, size_t bias_rs,
                             size_t bias_cs, EK_T *C, size_t ldc, int act, EK_T act_a, EK_T act_b)
{
    size_t i, j, k;
    for (i = 0; i < M; ++i) {
        const EK_T *a = A + i * ars;
        EK_T *c = C + i * ldc;
        if (!transB) {
            size_t j0 = 0;
#if EK_VEC
            /* 4 vectors of the row held in registers over all of K: B streams through once, C is stored once */
            for (; j0 + 4 * EK_VL <= N; j0 += 4 * EK_VL) {
                EK_V c0 = EK_VZERO, c1 = EK_VZERO, c2 = EK_VZERO, c3 = EK_VZERO, bv;
                for (k = 0; k < K; ++k) {
                    const EK_T ak = a[k * acs];
                    const EK_T *b = B + k * ldb + j0;
                    memcpy(&bv, b, sizeof bv);
                    c0 += bv * ak;
                    memcpy(&bv, b + EK_VL, sizeof bv);
                    c1 += bv * ak;
                    memcpy(&bv, b + 2 * EK_VL, sizeof bv);
                    c2 += bv * ak;
                    memcpy(&bv, b + 3 * EK_VL, sizeof bv);
                    c3 += bv * ak;
                }
                memcpy(c + j0, &c0, sizeof c0);
                memcpy(c + j0 + EK_VL, &c1, sizeof c1);
                memcpy(c + j0 + 2 * EK_VL, &c2, sizeof c2);
                memcpy(c + j0 + 3 * EK_VL, &c3, sizeof c3);
            }
#endif
            for (j = j0; j < N; ++j) c[j] = 0;
            for (k = 0; k < K && j0 < N; ++k) { /* the columns left: row updates */
                const EK_T ak = a[k * acs];
                const EK_T *b = B + k * ldb;
                j = j0;
#if EK_VEC
                for (; j + EK_VL <= N; j += EK_VL) {
                    EK_V cv, bv;
                    memcpy(&cv, c + j, sizeof cv);
                    memcpy(&bv, b + j, sizeof bv);
                    cv += bv * ak;
                    memcpy(c + j, &cv, sizeof cv);
                }
#endif
                for (; j < N; ++j) c[j] += ak * b[j];
            }
        } else {
            j = 0;
#if EK_VEC
            /* 4 dot products at once: each vector of the A row is loaded once for 4 rows of B^T */
            for (; acs == 1 && j + 4 <= N; j += 4) {
                const EK_T *b0 = B + j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
                /* the next 4 rows' lines fetched alongside: a classifier's weights come from L3 or memory, where the
                 * hardware's prefetcher ramps up again on every row (MobileNet's 512 x 1000 Gemm: 1.05x) */
                const EK_T *ahead = j + 8 <= N ? b3 + ldb : b0;
                EK_V s0 = EK_VZERO, s1 = EK_VZERO, s2 = EK_VZERO, s3 = EK_VZERO, av, bv;
                EK_T part[4][EK_VL], t0 = 0, t1 = 0, t2 = 0, t3 = 0;
                size_t l;
                for (k = 0; k + EK_VL <= K; k += EK_VL) {
                    EK_PREFETCH_READ(ahead + k);
                    EK_PREFETCH_READ(ahead + ldb + k);
                    EK_PREFETCH_READ(ahead + 2 * ldb + k);
                    EK_PREFETCH_READ(ahead + 3 * ldb + k);
                    memcpy(&av, a + k, sizeof av);
                    memcpy(&bv, b0 + k, sizeof bv);
                    s0 += av * bv;
                    memcpy(&bv, b1 + k, sizeof bv);
                    s1 += av * bv;
                    memcpy(&bv, b2 + k, sizeof bv);
                    s2 += av * bv;
                    memcpy(&bv, b3 + k, sizeof bv);
                    s3 += av * bv;
                }
#if defined(EK_Q8) && EK_SVL >= 8
                { /* float, AVX: the 4 sums' lanes folded by zips into one vector of (s0, s2, s1, s3) partial sums,
                   * EK_VL / 4 of each, then added up; lane by lane, 4 chains of EK_VL dependent adds were a tenth of
                   * a 512 x 512 product */
                    const EK_V u0 = EK_ZIP_LO(s0, s1) + EK_ZIP_HI(s0, s1), u1 = EK_ZIP_LO(s2, s3) + EK_ZIP_HI(s2, s3);
                    const EK_V v = EK_ZIP_LO(u0, u1) + EK_ZIP_HI(u0, u1);
                    memcpy(part[0], &v, sizeof v);
                    for (l = 0; l < EK_VL; l += 4) t0 += part[0][l], t2 += part[0][l + 1], t1 += part[0][l + 2],
                                                   t3 += part[0][l + 3];
                }
#else
                memcpy(part[0], &s0, sizeof s0);
                memcpy(part[1], &s1, sizeof s1);
                memcpy(part[2], &s2, sizeof s2);
                memcpy(part[3], &s3, sizeof s3);
                for (l = 0; l < EK_VL; ++l) t0 += part[0][l], t1 += part[1][l], t2 += part[2][l], t3 += part[3][l];
#endif
                for (; k < K; ++k) t0 += a[k] * b0[k], t1 += a[k] * b1[k], t2 += a[k] * b2[k], t3 += a[k] * b3[k];
                c[j] = t0, c[j + 1] = t1, c[j + 2] = t2, c[j + 3] = t3;
            }
#endif
            for (; j < N; ++j) {
                const EK_T *b = B + j * ldb;
                EK_T s = 0;
                k = 0;
#if EK_VEC
                if (acs == 1) {
                    EK_V s0 = EK_VZERO, s1 = EK_VZERO, av, bv;
                    EK_T part[2 * EK_VL];
                    size_t t;
                    for (; k + 2 * EK_VL <= K; k += 2 * EK_VL) {
                        memcpy(&av, a + k, sizeof av);
                        memcpy(&bv, b + k, sizeof bv);
                        s0 += av * bv;
                        memcpy(&av, a + k + EK_VL, sizeof av);
                        memcpy(&bv, b + k + EK_VL, sizeof bv);
                        s1 += av * bv;
                    }
                    memcpy(part, &s0, sizeof s0);
                    memcpy(part + EK_VL, &s1, sizeof s1);
                    for (t = 0; t < 2 * EK_VL; ++t) s += part[t];
                }
#endif
                for (; k < K; ++k) s += a[k * acs] * b[k];
                c[j] = s;
            }
        }
        EK_FN(finish_row)(c, N, alpha, beta, bias ? bias + i * bias_rs : bias, bias_cs, act, act_a, act_b);
    }
}

/* where B comes from: float (B), or, in the float build, int8 (Bq) scaled by scale[k * sks + j * sns], or the
 * windows of a convolution's padded input at B (win) */
typedef struct {
    const EK_T *B;
    const int8_t *Bq;
    const EK_T *scale;
    size_t ldb, sks, sns;
    int transB;
    const ek_windows *win;
} EK_FN(bsrc);

/* boff[k] = where row k0 + k of B (not transposed) starts: k * ldb, or for the windows, row (ci, kh, kw) at
 * ci*ch_stride + kh*row_step + kw*col_step, or in column planes, plane (kh % row_phases, kw) plus kh / row_phases
 * rows */
static void EK_FN(b_rows)(size_t *boff, const EK_FN(bsrc) *s, size_t k0, size_t kc)
{
    const ek_windows *w = s->win;
    size_t k;
    if (w) {
        const size_t taps = w->kh * w->kw;
        size_t ci = k0 / taps, kh = k0 % taps / w->kw, kw = k0 % w->kw;
        for (k = 0; k < kc; ++k) {
            boff[k] = w->phase_stride ? ci * w->ch_stride + (kh % w->row_phases * w->kw + kw) * w->phase_stride +
                                            kh / w->row_phases * w->row_step
                                      : ci * w->ch_stride + kh * w->row_step + kw * w->col_step;
            if (++kw == w->kw) {
                kw = 0;
                if (++kh == w->kh) kh = 0, ++ci;
            }
        }
    } else {
        for (k = 0; k < kc; ++k) boff[k] = (k0 + k) * s->ldb;
    }
}

#ifdef EK_Q8
/* bp = the panel of op(B) dequantised: (float)Bq * scale (per output column, per k, or one) */
EK_NOINLINE void ek_spack_b_q8(float *bp, const ek_sbsrc *s, size_t k0, size_t kc, size_t j0, size_t nr)
{
    size_t k, j;
    if (!s->transB && s->sns == 1 && s->sks == 0 && nr == EK_NR) {
        /* a whole panel, one scale per column (a MatMul's per-channel weights): the scales held, loops of constant
         * length that vectorise (the general loop below cost a third of the products in a wasm build) */
        float sc[EK_NR];
        memcpy(sc, s->scale + j0, sizeof sc);
#if EK_VEC && defined(__wasm_simd128__) && EK_NR == 8
        { /* wasm: clang 14 turned the loop below into lane-by-lane scalar conversions. Here the 8 int8 become int16
           * lanes; each int32 lane's two int16 are split by shifts into columns 0, 2, 4, 6 and 1, 3, 5, 7, converted,
           * and interleaved back: minilm's 16 x 1536 x 384 products 1.3x faster under V8 */
            const v128_t s0 = wasm_v128_load(sc), s1 = wasm_v128_load(sc + 4);
            for (k = 0; k < kc; ++k) {
                const v128_t h = wasm_i16x8_extend_low_i8x16(wasm_v128_load64_zero(s->Bq + (k0 + k) * s->ldb + j0));
                const v128_t even = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(wasm_i32x4_shl(h, 16), 16));
                const v128_t odd = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(h, 16));
                wasm_v128_store(bp + k * EK_NR, wasm_f32x4_mul(wasm_i32x4_shuffle(even, odd, 0, 4, 1, 5), s0));
                wasm_v128_store(bp + k * EK_NR + 4, wasm_f32x4_mul(wasm_i32x4_shuffle(even, odd, 2, 6, 3, 7), s1));
            }
            return;
        }
#endif
        for (k = 0; k < kc; ++k) {
            const int8_t *src = s->Bq + (k0 + k) * s->ldb + j0;
            float *dst = bp + k * EK_NR;
            for (j = 0; j < EK_NR; ++j) dst[j] = (float)src[j] * sc[j];
        }
        return;
    }
    for (k = 0; k < kc; ++k) {
        float *dst = bp + k * EK_NR;
        const float *sk = s->scale + (k0 + k) * s->sks + j0 * s->sns;
        if (!s->transB) {
            const int8_t *src = s->Bq + (k0 + k) * s->ldb + j0;
            if (s->sns == 1)
                for (j = 0; j < nr; ++j) dst[j] = (float)src[j] * sk[j];
            else
                for (j = 0; j < nr; ++j) dst[j] = (float)src[j] * sk[0];
        } else {
            for (j = 0; j < nr; ++j) dst[j] = (float)s->Bq[(j0 + j) * s->ldb + k0 + k] * sk[j * s->sns];
        }
        for (j = nr; j < EK_NR; ++j) dst[j] = 0;
    }
}
#endif

#undef EK_TAIL_LANES
#if EK_WIDE_TILES && EK_SVL == 16 && defined(EK_Q8) && EK_PACK_ROWS == 8
/* float, AVX-512, A packed: a panel's last few columns (tail_cols) with the rows along 8-lane vectors, one packed
 * row group each, all the columns in one tile, instead of a 16-lane vector per row: the 4 columns left of a 14x14
 * conv's 196 computed 16 (256 x 196 x 256: 246 -> 233 us), the 9 of 13x13's 169 too (1000 x 169 x 512: 1594 -> 1540) */
#define EK_TAIL_COLS 12
#define EK_TAIL_MAX_G 4 /* row groups (of 8) per tile: 4 up to 7 columns, fewer past that (<= 28 accumulators) */
typedef float ek_s8v __attribute__((vector_size(32)));

EK_INLINE int ek_stail_cols_fit(size_t nr, int apk, float alpha, float beta, const float *bias, size_t bias_cs, int act)
{
    return apk && nr <= EK_TAIL_COLS && alpha == 1 && (!bias || (bias_cs == 0 && beta == 1)) &&
           (act == EK_ACT_NONE || act == EK_ACT_RELU || act == EK_ACT_CLIP); /* as the tiles' epilogue, bit for bit */
}

/* C's rows [i0, i1) at columns [0, P) (+= if not first) the products of the K block k0.. (kc long) with the packed
 * panel bp, G row groups at a time; after the last block, + bias[row * bias_rs] and act. P and G are constants in
 * each call. Each element takes the tiles' operations in their order (one FMA per k, then the bias, then act), so
 * its value does not depend on whether it fell in a tail. */
EK_INLINE void ek_stail_tile(size_t kc, size_t K, size_t k0, const float *A, size_t i0, size_t i1, const float *bp,
                             float *C, size_t ldc, int first, int last, const float *bias, size_t bias_rs, int act,
                             float act_a, float act_b, size_t P, size_t G)
{
    float u[EK_TAIL_COLS * EK_TAIL_MAX_G * 8]; /* u[p * G * 8 + r]: the tile's row r at column p */
    ek_s8v acc[EK_TAIL_COLS][EK_TAIL_MAX_G];
    const size_t groups = (i1 + 7) / 8, R = G * 8;
    size_t i, p, g, k, r;
    for (i = i0; i < i1; i += R) {
        const size_t rows = i1 - i < R ? i1 - i : R;
        const float *a[EK_TAIL_MAX_G], *bk = bp;
        for (g = 0; g < G; ++g) /* groups past the last repeat it, not stored */
            a[g] = A + ((i / 8 + g < groups ? i / 8 + g : groups - 1) * K + k0) * 8;
        for (p = 0; p < P; ++p)
            for (r = 0; r < R; ++r) u[p * R + r] = !first && r < rows ? C[(i + r) * ldc + p] : 0;
        for (p = 0; p < P; ++p)
            for (g = 0; g < G; ++g) memcpy(&acc[p][g], u + p * R + g * 8, sizeof acc[p][g]);
        for (k = 0; k < kc; ++k, bk += EK_NR) {
            ek_s8v av[EK_TAIL_MAX_G];
            for (g = 0; g < G; ++g) memcpy(&av[g], a[g] + k * 8, sizeof av[g]);
            for (p = 0; p < P; ++p) {
                const float x = bk[p];
                for (g = 0; g < G; ++g) acc[p][g] += av[g] * x;
            }
        }
        for (p = 0; p < P; ++p)
            for (g = 0; g < G; ++g) memcpy(u + p * R + g * 8, &acc[p][g], sizeof acc[p][g]);
        if (last) {
            if (bias)
                for (p = 0; p < P; ++p)
                    for (r = 0; r < rows; ++r) u[p * R + r] += bias[(i + r) * bias_rs];
            ek_sact(u, P * R, act, act_a, act_b);
        }
        for (r = 0; r < rows; ++r)
            for (p = 0; p < P; ++p) C[(i + r) * ldc + p] = u[p * R + r];
    }
}

/* ek_stail_tile for the panel's nr columns, nr <= EK_TAIL_COLS */
static void ek_stail_cols(size_t kc, size_t K, size_t k0, const float *A, size_t i0, size_t i1, const float *bp,
                          size_t nr, float *C, size_t ldc, int first, int last, const float *bias, size_t bias_rs,
                          int act, float act_a, float act_b)
{
#define EK_TAIL_CASE(P, G)                                                                                             \
    case P:                                                                                                            \
        ek_stail_tile(kc, K, k0, A, i0, i1, bp, C, ldc, first, last, bias, bias_rs, act, act_a, act_b, P, G);          \
        break;
    switch (nr) {
        EK_TAIL_CASE(1, 4)
        EK_TAIL_CASE(2, 4)
        EK_TAIL_CASE(3, 4)
        EK_TAIL_CASE(4, 4)
        EK_TAIL_CASE(5, 4)
        EK_TAIL_CASE(6, 4)
        EK_TAIL_CASE(7, 4)
        EK_TAIL_CASE(8, 3)
        EK_TAIL_CASE(9, 3)
        EK_TAIL_CASE(10, 2)
        EK_TAIL_CASE(11, 2)
        EK_TAIL_CASE(12, 2)
    default:
        break;
    }
#undef EK_TAIL_CASE
}
#define EK_TAIL_LANES 1
#else
#define EK_TAIL_LANES 0
#endif

/* C = act(alpha A op(B) + beta bias) in blocks: K blocks, then up to EK_MC rows of A, then NR-column panels of B,
 * each packed once and used by all those rows (rows past the end repeat the last one and are not stored).
 * A is read through (ars, acs), or, if apk (AVX builds), packed in groups of EK_PACK_ROWS rows (emit_runtime.h) */
static void EK_FN(panels)(size_t M, size_t N, size_t K, EK_T alpha, const EK_T *A, size_t ars, size_t acs, int apk,
                          const EK_FN(bsrc) *src, EK_T beta, const EK_T *bias, size_t bias_rs, size_t bias_cs, EK_T *C,
                          size_t ldc, int act, EK_T act_a, EK_T act_b)
{
    EK_T bp[EK_KC * EK_NR];
    const EK_T *rows[EK_MR];
    size_t k0, i0, i1, j0, i;
    size_t boff[EK_KC]; /* row k of the K block's B starts at B + boff[k] (plain or windows) */
    /* whole panels of a plain or windows B are read in place, not packed, when few row tiles share each panel (M <=
     * EK_IN_PLACE_M: the copy cost 10-20% there; with more, the packed panel's smaller L1 footprint wins), unless B's
     * rows are a multiple of 512 bytes apart: then they share a few L1 sets and evict each other. Under V8 only for
     * M <= EK_WASM_IN_PLACE_M: a panel's copy costs up to twice a 4-row tile's products over it (4 x 784 x 200 1.8x
     * faster in place, 16 rows 1.1x), from 48 rows in place is 3-8% slower */
    const int in_place = (EK_WIDE_TILES || (EK_WASM_VEC && M <= EK_WASM_IN_PLACE_M)) && !src->transB && !src->Bq &&
                         M <= EK_IN_PLACE_M && (src->win || src->ldb * sizeof(EK_T) % 512);
    const size_t *packed_rows = NULL; /* a packed panel's row offsets for micro_c (wasm, A's rows strided), or none */
#if EK_WASM_VEC
    size_t poff[EK_KC];
    if (acs != 1) {
        for (k0 = 0; k0 < EK_KC; ++k0) poff[k0] = k0 * EK_NR;
        packed_rows = poff;
    }
#endif
    const size_t kblocks = K ? (K + EK_KC - 1) / EK_KC : 1, kstep = (K + kblocks - 1) / kblocks; /* equal blocks */
#if EK_WIDE_TILES
    if (apk) acs = EK_PACK_ROWS; /* a row group's k stride */
#else
    (void)apk; /* ek_sgemm_conv hands this build packed weights a row group at a time, as plain strided rows */
#endif
    for (k0 = 0; k0 < K; k0 += kstep) {
        const size_t kc = K - k0 < kstep ? K - k0 : kstep;
        const int first = k0 == 0, last = k0 + kc == K;
        if (!src->transB && !src->Bq) EK_FN(b_rows)(boff, src, k0, kc);
        for (i0 = 0; i0 < M; i0 += EK_MC) {
            const size_t i0end = M - i0 < EK_MC ? M : i0 + EK_MC;
            for (j0 = 0; j0 < N; j0 += EK_NR) {
                const size_t nr = N - j0 < EK_NR ? N - j0 : EK_NR;
                const int direct = in_place && nr == EK_NR; /* else packed into bp */
#ifdef EK_Q8
                if (src->Bq)
                    ek_spack_b_q8(bp, src, k0, kc, j0, nr);
                else
#endif
                if (!src->transB) {
                    size_t k;
                    for (k = 0; k < kc && !direct; ++k) EK_FN(pack_row)(bp + k * EK_NR, src->B + boff[k] + j0, nr);
                } else
                    EK_FN(pack_b_trans)(bp, src->B, src->ldb, k0, kc, j0, nr);
#if EK_TAIL_LANES
                if (sizeof(EK_T) == 4 && ek_stail_cols_fit(nr, apk, alpha, beta, bias, bias_cs, act)) {
                    ek_stail_cols(kc, K, k0, (const float *)A, i0, i0end, (const float *)bp, nr, (float *)C + j0, ldc,
                                  first, last, (const float *)bias, bias_rs, act, act_a, act_b);
                    continue;
                }
#endif
                for (i1 = i0; i1 < i0end; i1 += EK_MR) {
                    const size_t mr = i0end - i1 < EK_MR ? i0end - i1 : EK_MR;
                    const EK_T *ap = NULL;
#if EK_WIDE_TILES
                    if (apk) { /* a tile within one row group reads it (zero padding past M included) by one pointer */
                        if (i1 % EK_PACK_ROWS + EK_MR <= EK_PACK_ROWS)
                            ap = A + i1 / EK_PACK_ROWS * EK_PACK_ROWS * K + k0 * EK_PACK_ROWS + i1 % EK_PACK_ROWS;
                        for (i = 0; i < EK_MR; ++i) {
                            const size_t r = i < mr ? i1 + i : i1 + mr - 1;
                            rows[i] = A + r / EK_PACK_ROWS * EK_PACK_ROWS * K + k0 * EK_PACK_ROWS + r % EK_PACK_ROWS;
                        }
                    } else
#endif
                        for (i = 0; i < EK_MR; ++i)
                            rows[i] = A + (i < mr ? i1 + i : i1 + mr - 1) * ars + k0 * acs;
#if EK_WIDE_TILES
                    /* the tile's rows of C two panels on, fetched for writing now: a conv's output (megabytes, cold
                     * in cache) was stalling every tile's stores; 1.1-1.6x on such layers, nothing when C is hot */
                    if (first && j0 + (EK_PREFETCH_PANELS + 1) * EK_NR <= N)
                        for (i = 0; i < mr; ++i)
                            EK_PREFETCH_WRITE_BYTES(C + (i1 + i) * ldc + j0 + EK_PREFETCH_PANELS * EK_NR,
                                              EK_NR * sizeof(EK_T));
#endif
                    EK_FN(block)(kc, rows, acs, ap, direct ? src->B + j0 : bp, direct ? boff : packed_rows,
                                 C + i1 * ldc + j0, ldc, mr, nr, first, last, alpha, beta,
                                 bias ? bias + i1 * bias_rs + j0 * bias_cs : bias, bias_rs, bias_cs, act, act_a, act_b);
                }
            }
        }
    }
}

#if EK_VEC
/* out[i][j] = dot(a[i], b[j]) over k < kc, for 4 rows of A and 4 rows of B^T, all contiguous in k: 16 vector
 * accumulators, so a product with a few columns (a 1-D conv over a few positions) runs at vector speed */
static void EK_FN(dots)(size_t kc, const EK_T *const *a, const EK_T *const *b, EK_T out[4][4])
{
    EK_V s[4][4];
    size_t i, j, k = 0, l;
    for (i = 0; i < 4; ++i)
        for (j = 0; j < 4; ++j) {
            const EK_V z = EK_VZERO;
            s[i][j] = z;
        }
    for (; k + EK_VL <= kc; k += EK_VL) {
        EK_V av[4], bv[4];
        for (i = 0; i < 4; ++i) memcpy(&av[i], a[i] + k, sizeof av[i]);
        for (j = 0; j < 4; ++j) memcpy(&bv[j], b[j] + k, sizeof bv[j]);
        for (i = 0; i < 4; ++i)
            for (j = 0; j < 4; ++j) s[i][j] += av[i] * bv[j];
    }
    for (i = 0; i < 4; ++i)
        for (j = 0; j < 4; ++j) {
            EK_T part[EK_VL], t = 0;
            size_t kk;
            memcpy(part, &s[i][j], sizeof part);
            for (l = 0; l < EK_VL; ++l) t += part[l];
            for (kk = k; kk < kc; ++kk) t += a[i][kk] * b[j][kk];
            out[i][j] = t;
        }
}

/* C = A B^T for few columns (N <= EK_VL / 2), A and B^T row-major: blocks of 4 x 4 dot products */
static void EK_FN(gemm_dots)(size_t M, size_t N, size_t K, EK_T alpha, const EK_T *A, size_t lda, const EK_T *B,
                             size_t ldb, EK_T beta, const EK_T *bias, size_t bias_rs, size_t bias_cs, EK_T *C,
                             size_t ldc, int act, EK_T act_a, EK_T act_b)
{
    size_t i0, j0, i, j;
    for (i0 = 0; i0 < M; i0 += 4) {
        const size_t mr = M - i0 < 4 ? M - i0 : 4;
        const EK_T *a[4];
        for (i = 0; i < 4; ++i) a[i] = A + (i0 + (i < mr ? i : mr - 1)) * lda; /* past the end: repeat, not stored */
        for (j0 = 0; j0 < N; j0 += 4) {
            const size_t nr = N - j0 < 4 ? N - j0 : 4;
            const EK_T *b[4];
            EK_T out[4][4];
            for (j = 0; j < 4; ++j) b[j] = B + (j0 + (j < nr ? j : nr - 1)) * ldb;
            EK_FN(dots)(K, a, b, out);
            for (i = 0; i < mr; ++i)
                for (j = 0; j < nr; ++j) C[(i0 + i) * ldc + j0 + j] = out[i][j];
        }
        for (i = 0; i < mr; ++i)
            EK_FN(finish_row)(C + (i0 + i) * ldc, N, alpha, beta, bias ? bias + (i0 + i) * bias_rs : bias, bias_cs, act,
                              act_a, act_b);
    }
}

/* gemm_dots for a row-major B of a few columns (N * K <= EK_DOTS_BT: a 1-D conv over a few positions): B^T on the
 * stack first. A function of its own so that ek_sgemm's frame, live under every other path, does not carry the
 * buffer (4-16 KiB; a Cortex-M GEMM's stack peak had doubled) */
EK_NOINLINE void EK_FN(gemm_dots_rowmajor)(size_t M, size_t N, size_t K, EK_T alpha, const EK_T *A, size_t lda,
                                           const EK_T *B, size_t ldb, EK_T beta, const EK_T *bias, size_t bias_rs,
                                           size_t bias_cs, EK_T *C, size_t ldc, int act, EK_T act_a, EK_T act_b)
{
    EK_T bt[EK_DOTS_BT];
    size_t j, k;
    for (j = 0; j < N; ++j)
        for (k = 0; k < K; ++k) bt[j * K + k] = B[k * ldb + j];
    EK_FN(gemm_dots)(M, N, K, alpha, A, lda, bt, K, beta, bias, bias_rs, bias_cs, C, ldc, act, act_a, act_b);
}
#endif

void EK_FN(gemm)(size_t M, size_t N, size_t K, EK_T alpha, const EK_T *A, size_t lda, int transA, const EK_T *B,
                 size_t ldb, int transB, EK_T beta, const EK_T *bias, size_t bias_rs, size_t bias_cs, EK_T *C,
                 size_t ldc, int act, EK_T act_a, EK_T act_b)
{
    EK_FN(bsrc) src = { 0, 0, 0, 0, 0, 0, 0, 0 };
    const size_t ars = transA ? 1 : lda, acs = transA ? lda : 1;
    size_t i;

    if (M == 0 || N == 0) return;
#ifdef EK_PARALLEL
    if (EK_PARALLEL(M, N, K, alpha, A, lda, transA, B, ldb, transB, beta, bias, bias_rs, bias_cs, C, ldc, act, act_a,
                    act_b))
        return;
#endif
    if (K == 0) { /* no products: the epilogue alone */
        for (i = 0; i < M; ++i) {
            size_t j;
            for (j = 0; j < N; ++j) {
                EK_T v = bias ? beta * bias[i * bias_rs + j * bias_cs] : (EK_T)0;
                C[i * ldc + j] = EK_FN(act1)(v, act, act_a, act_b);
            }
        }
        return;
    }
#if EK_VEC
    if (N * 2 <= EK_VL && transB && acs == 1 && M >= 4) { /* a few columns: dot products, no packing */
        EK_FN(gemm_dots)(M, N, K, alpha, A, lda, B, ldb, beta, bias, bias_rs, bias_cs, C, ldc, act, act_a, act_b);
        return;
    }
    if (N * 2 <= EK_VL && !transB && acs == 1 && M >= 4 && N * K <= EK_DOTS_BT) {
        /* a few columns of a small row-major B: the same dot products, where the panels would compute EK_NR columns
         * for these few (silero's encoder: 2-3x faster) */
        EK_FN(gemm_dots_rowmajor)(M, N, K, alpha, A, lda, B, ldb, beta, bias, bias_rs, bias_cs, C, ldc, act, act_a,
                                  act_b);
        return;
    }
#endif
    if (M < EK_MR) { /* fewer rows than a register block: row by row, without packing */
        EK_FN(gemm_rows)(M, N, K, alpha, A, ars, acs, B, ldb, transB, beta, bias, bias_rs, bias_cs, C, ldc, act,
                         act_a, act_b);
        return;
    }
    src.B = B, src.ldb = ldb, src.transB = transB;
    EK_FN(panels)(M, N, K, alpha, A, ars, acs, 0, &src, beta, bias, bias_rs, bias_cs, C, ldc, act, act_a, act_b);
}

#if defined(EK_Q8) && EK_SVL == EK_PACK_FEW /* float, AVX-512: a packed group of EK_PACK_FEW rows is one vector */
#define EK_FEW_P 7 /* output positions per tile, by 3 or 4 vectors of channels: 21 or 28 accumulators */
#define EK_FEW_MAX_G 4
#define EK_FEW_MAX_N 64

/* C = act(A B + bias) for a product of few columns (a conv's 17-63 output positions: 49 used 77% of the 32-column
 * panels' lanes) with A packed in groups of EK_PACK_FEW rows: the output channels along the vectors instead, G * 16
 * of them (G groups, a constant 3 or 4 in each call) by EK_FEW_P positions per tile, each element of B broadcast
 * (as an operand of the FMA: 28 accumulators and 4 weight vectors fill the 32 registers). Each panel's sums gather
 * on the stack over the K blocks, then go to C's rows, where finish_row adds the bias and applies act. M 512, N 49,
 * K 512: 82 GF/s by the panels, 104 by 3 groups, 110 by 4. */
EK_INLINE void ek_sfew_cols(size_t M, size_t N, size_t K, const float *A, const ek_sbsrc *src, const float *bias,
                            float *C, size_t ldc, int act, float act_a, float act_b, size_t G)
{
    float sums[EK_FEW_MAX_N * EK_FEW_MAX_G * EK_PACK_FEW]; /* sums[(g * N + p) * 16 + c]: group g's channel c at p */
    size_t boff[EK_KC];
    const size_t groups = (M + EK_PACK_FEW - 1) / EK_PACK_FEW;
    const size_t kblocks = (K + EK_KC - 1) / EK_KC, kstep = (K + kblocks - 1) / kblocks;
    /* the bias and act in registers after the last K block, as the tiles' epilogue; other acts on C's rows after */
    const int in_regs = act == EK_ACT_NONE || act == EK_ACT_RELU || act == EK_ACT_CLIP;
    const ek_sv z = EK_VZERO, lo = z + act_a, hi = z + act_b;
    size_t g0, k0, p0, p, g, k, i;
    for (g0 = 0; g0 < groups; g0 += G) {
        const float *w[EK_FEW_MAX_G];
        ek_sv bv[EK_FEW_MAX_G];
        for (g = 0; g < G; ++g) { /* groups past the last repeat it, not stored */
            float b16[EK_PACK_FEW];
            w[g] = A + (g0 + g < groups ? g0 + g : groups - 1) * EK_PACK_FEW * K;
            for (i = 0; i < EK_PACK_FEW; ++i) {
                const size_t row = (g0 + g) * EK_PACK_FEW + i;
                b16[i] = bias && row < M ? bias[row] : 0;
            }
            memcpy(&bv[g], b16, sizeof bv[g]);
        }
        for (k0 = 0; k0 < K; k0 += kstep) {
            const size_t kc = K - k0 < kstep ? K - k0 : kstep;
            ek_sb_rows(boff, src, k0, kc);
            for (p0 = 0; p0 < N; p0 += EK_FEW_P) {
                const size_t np = N - p0 < EK_FEW_P ? N - p0 : EK_FEW_P;
                const float *b = src->B + p0;
                size_t off[EK_FEW_P];
                ek_sv acc[EK_FEW_P][EK_FEW_MAX_G];
                for (p = 0; p < EK_FEW_P; ++p) {
                    off[p] = p < np ? p : np - 1; /* positions past the end repeat the last, not stored */
                    EK_UNROLL for (g = 0; g < G; ++g) {
                        acc[p][g] = z;
                        if (k0) memcpy(&acc[p][g], sums + (g * N + p0 + off[p]) * EK_PACK_FEW, sizeof acc[p][g]);
                    }
                }
                for (k = 0; k < kc; ++k) {
                    const float *bk = b + boff[k];
                    ek_sv wv[EK_FEW_MAX_G];
                    EK_UNROLL for (g = 0; g < G; ++g) memcpy(&wv[g], w[g] + (k0 + k) * EK_PACK_FEW, sizeof wv[g]);
                    for (p = 0; p < EK_FEW_P; ++p) {
                        const float x = bk[off[p]];
                        EK_UNROLL for (g = 0; g < G; ++g) acc[p][g] += wv[g] * x;
                    }
                }
                for (p = 0; p < np; ++p)
                    EK_UNROLL for (g = 0; g < G; ++g)
                        memcpy(sums + (g * N + p0 + p) * EK_PACK_FEW, &acc[p][g], sizeof acc[p][g]);
            }
        }
        for (g = 0; g < G && g0 + g < groups; ++g) { /* each group's positions x 16 channels to its rows of C */
            const size_t r0 = (g0 + g) * EK_PACK_FEW, nl = M - r0 < EK_PACK_FEW ? M - r0 : EK_PACK_FEW;
            if (in_regs) /* a pass of its own: inside the tiles' loop it slowed the small products by a fifth */
                for (p = 0; p < N; ++p) {
                    ek_sv t;
                    memcpy(&t, sums + (g * N + p) * EK_PACK_FEW, sizeof t);
                    t = ek_svact_clamp(t + bv[g], act, lo, hi);
                    memcpy(sums + (g * N + p) * EK_PACK_FEW, &t, sizeof t);
                }
            ek_sdw_deinterleave(C + r0 * ldc, ldc, sums + g * N * EK_PACK_FEW, nl, N);
            if (!in_regs)
                for (i = r0; i < r0 + nl; ++i)
                    ek_sfinish_row(C + i * ldc, N, 1, 1, bias ? bias + i : bias, 0, act, act_a, act_b);
        }
    }
}

/* ek_sfew_cols by 4 groups of channels, or by 3 where 4 would leave more groups empty (6 groups: 2 x 3, not 2 x 4) */
static void ek_sgemm_few_cols(size_t M, size_t N, size_t K, const float *A, const ek_sbsrc *src, const float *bias,
                              float *C, size_t ldc, int act, float act_a, float act_b)
{
    const size_t groups = (M + EK_PACK_FEW - 1) / EK_PACK_FEW;
    if ((groups + 3) / 4 * 4 <= (groups + 2) / 3 * 3)
        ek_sfew_cols(M, N, K, A, src, bias, C, ldc, act, act_a, act_b, 4);
    else
        ek_sfew_cols(M, N, K, A, src, bias, C, ldc, act, act_a, act_b, 3);
}
#endif

void EK_FN(gemm_conv)(size_t M, size_t N, size_t K, const EK_T *A, int a_packed, const EK_T *B, size_t ldb,
                      const ek_windows *win, const EK_T *bias, EK_T *C, size_t ldc, int act, EK_T act_a, EK_T act_b)
{
    EK_FN(bsrc) src = { 0, 0, 0, 0, 0, 0, 0, 0 };
    if (M == 0 || N == 0) return;
    if (!a_packed && !win) { /* a plain product: ek_sgemm's own choice of loops */
        EK_FN(gemm)(M, N, K, 1, A, K, 0, B, ldb, 0, 1, bias, 1, 0, C, ldc, act, act_a, act_b);
        return;
    }
#ifdef EK_PARALLEL_CONV
    if (EK_PARALLEL_CONV(M, N, K, A, a_packed, B, ldb, win, bias, C, ldc, act, act_a, act_b)) return;
#endif
    if (K == 0) { /* the epilogue alone: ek_sgemm's (it reads neither A nor B) */
        EK_FN(gemm)(M, N, 0, 1, A, K, 0, B, ldb, 0, 1, bias, 1, 0, C, ldc, act, act_a, act_b);
        return;
    }
    if (!win && M < EK_MR) { /* fewer rows than a register block: one packed group, which is A^T with lda a_packed */
        EK_FN(gemm_rows)(M, N, K, 1, A, 1, (size_t)a_packed, B, ldb, 0, 1, bias, 1, 0, C, ldc, act, act_a, act_b);
        return;
    }
    src.B = B, src.ldb = ldb, src.win = win;
#if defined(EK_Q8) && EK_SVL == EK_PACK_FEW
    if (a_packed == EK_PACK_FEW && N < EK_FEW_MAX_N) {
        ek_sgemm_few_cols(M, N, K, A, &src, bias, C, ldc, act, act_a, act_b);
        return;
    }
#endif
    if (a_packed && (!EK_WIDE_TILES || a_packed != EK_PACK_ROWS)) {
        /* a layout the register tiles do not read (packed for another build): each row group is A^T of its rows */
        const size_t pr = (size_t)a_packed;
        size_t g;
        for (g = 0; g < M; g += pr)
            EK_FN(panels)(M - g < pr ? M - g : pr, N, K, 1, A + g * K, 1, pr, 0, &src, 1, bias ? bias + g : bias, 1, 0,
                          C + g * ldc, ldc, act, act_a, act_b);
        return;
    }
    EK_FN(panels)(M, N, K, 1, A, K, 1, a_packed, &src, 1, bias, 1, 0, C, ldc, act, act_a, act_b);
}

#ifdef EK_Q8
#if EK_WIDE_TILES /* clang 14 for wasm kept q8_rows' accumulators and conversions in memory: 1.4-2x slower there */
#if EK_SVL == 16
#define EK_Q8_ROWS 16 /* rows of C per pass of q8_rows, EK_Q8_NV vectors of columns each: AVX-512, 16 x 1 */
#define EK_Q8_NV 1
#define EK_Q8_MAX_M ((size_t)-1) /* 1.1-1.5x the panels' speed at every M measured (16-256) */
#else
#define EK_Q8_ROWS 6 /* AVX2 (16 registers): 6 x 2, as its register tile */
#define EK_Q8_NV 2
#define EK_Q8_MAX_M 24 /* 1.5x the panels' speed at M = 16, even at 32, slower above: they convert B once */
#endif
typedef int8_t ek_sbv __attribute__((vector_size(EK_SVL * EK_Q8_NV)));
typedef int16_t ek_shv __attribute__((vector_size(EK_SVL * EK_Q8_NV * 2)));
typedef int32_t ek_sqv __attribute__((vector_size(EK_SVL * EK_Q8_NV * 4)));
typedef float ek_sfv __attribute__((vector_size(EK_SVL * EK_Q8_NV * 4)));
/* int8 lanes to float lanes through 16 and 32 bits: gcc 12 did int8 -> int32 lane by lane, in scalar code */
#define EK_Q8_FLOATS(q) __builtin_convertvector(__builtin_convertvector(__builtin_convertvector(q, ek_shv), ek_sqv), ek_sfv)

/* C = alpha A op(Bq) for B not transposed, scaled per k, per column or once: a vector of C's columns for
 * EK_Q8_ROWS rows at a time, each int8 vector of B converted once and used by all those rows, the scales applied
 * to A's block (per k) or to the sums (per column, once); the panels instead convert and store every B panel
 * before its row tiles read it back, which took a third of minilm's time. Columns past the last whole vector are
 * left to the caller. */
EK_NOINLINE void ek_sgemm_q8_rows(size_t M, size_t N, size_t K, float alpha, const float *A, size_t ars, size_t acs,
                                  const int8_t *B, size_t ldb, const float *scale, size_t sks, size_t sns, float *C,
                                  size_t ldc)
{
    float at[EK_KC * EK_Q8_ROWS]; /* A's block transposed: k's EK_Q8_ROWS values together, broadcast by offset */
    size_t i0, i, j, k, k0;
    for (i0 = 0; i0 < M; i0 += EK_Q8_ROWS) {
        const size_t mr = M - i0 < EK_Q8_ROWS ? M - i0 : EK_Q8_ROWS;
        for (k0 = 0; k0 < K; k0 += EK_KC) {
            const size_t kc = K - k0 < EK_KC ? K - k0 : EK_KC;
            const int first = k0 == 0, last = k0 + kc == K;
            for (i = 0; i < EK_Q8_ROWS; ++i) { /* rows past the end repeat the last, not stored */
                const float *a = A + (i0 + (i < mr ? i : mr - 1)) * ars + k0 * acs;
                for (k = 0; k < kc; ++k) at[k * EK_Q8_ROWS + i] = a[k * acs] * (sks ? scale[(k0 + k) * sks] : 1.0f);
            }
            for (j = 0; j + EK_SVL * EK_Q8_NV <= N; j += EK_SVL * EK_Q8_NV) {
                float *c = C + i0 * ldc + j;
                ek_sv acc[EK_Q8_ROWS][EK_Q8_NV], s[EK_Q8_NV];
                size_t v;
                for (i = 0; i < EK_Q8_ROWS; ++i)
                    for (v = 0; v < EK_Q8_NV; ++v) {
                        const ek_sv z = EK_VZERO;
                        acc[i][v] = z;
                        if (!first && i < mr) memcpy(&acc[i][v], c + i * ldc + v * EK_SVL, sizeof acc[i][v]);
                    }
                for (k = 0; k < kc; ++k) {
                    const float *ak = at + k * EK_Q8_ROWS;
                    ek_sbv q;
                    ek_sfv bw;
                    ek_sv b[EK_Q8_NV];
                    memcpy(&q, B + (k0 + k) * ldb + j, sizeof q);
                    bw = EK_Q8_FLOATS(q);
                    memcpy(b, &bw, sizeof b);
                    for (i = 0; i < EK_Q8_ROWS; ++i)
                        for (v = 0; v < EK_Q8_NV; ++v) acc[i][v] += b[v] * ak[i];
                }
                for (v = 0; v < EK_Q8_NV; ++v)
                    if (last && sns) {
                        memcpy(&s[v], scale + j + v * EK_SVL, sizeof s[v]);
                        s[v] *= alpha;
                    } else {
                        const ek_sv z = EK_VZERO;
                        s[v] = z + (!last ? 1.0f : sks ? alpha : alpha * scale[0]);
                    }
                for (i = 0; i < mr; ++i)
                    for (v = 0; v < EK_Q8_NV; ++v) {
                        const ek_sv r = acc[i][v] * s[v];
                        memcpy(c + i * ldc + v * EK_SVL, &r, sizeof r);
                    }
            }
        }
    }
}
#endif

void ek_sgemm_q8(size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda, int transA, const int8_t *B,
                 size_t ldb, int transB, const float *bscale, size_t bscale_ks, size_t bscale_ns, float beta,
                 const float *bias, size_t bias_rs, size_t bias_cs, float *C, size_t ldc, int act, float act_a,
                 float act_b)
{
    ek_sbsrc src;
    const size_t ars = transA ? 1 : lda, acs = transA ? lda : 1;
    if (M == 0 || N == 0) return;
    if (K == 0) { /* no products: ek_sgemm's epilogue alone (it reads neither A nor B) */
        ek_sgemm(M, N, 0, alpha, A, lda, transA, NULL, 0, 0, beta, bias, bias_rs, bias_cs, C, ldc, act, act_a, act_b);
        return;
    }
    /* each int8 element is read and scaled once per call (per block of rows), where a dequantised copy would be
     * written and read back at 4 bytes each */
#if EK_WIDE_TILES
    if (!transB && M <= EK_Q8_MAX_M && N >= EK_SVL * EK_Q8_NV) {
        const size_t nv = N / (EK_SVL * EK_Q8_NV) * (EK_SVL * EK_Q8_NV);
        size_t i;
        ek_sgemm_q8_rows(M, nv, K, alpha, A, ars, acs, B, ldb, bscale, bscale_ks, bscale_ns, C, ldc);
        if (bias || act != EK_ACT_NONE)
            for (i = 0; i < M; ++i)
                ek_sfinish_row(C + i * ldc, nv, 1, beta, bias ? bias + i * bias_rs : bias, bias_cs, act, act_a, act_b);
        if (nv == N) return;
        N -= nv, B += nv, C += nv, bscale += nv * bscale_ns, bias = bias ? bias + nv * bias_cs : bias;
    }
#endif
    /* B^T, the columns left, narrower builds: the packed loop (fewer rows than a block leave some unstored) */
    src.B = NULL, src.Bq = B, src.scale = bscale, src.ldb = ldb, src.sks = bscale_ks, src.sns = bscale_ns;
    src.transB = transB, src.win = NULL;
    ek_spanels(M, N, K, alpha, A, ars, acs, 0, &src, beta, bias, bias_rs, bias_cs, C, ldc, act, act_a, act_b);
}
#endif

#undef EK_MC
#undef EK_VZERO
#undef EK_IN_PLACE_M
#undef EK_DOTS_BT

#endif
