/* onnx-emit runtime: conversions between float32 and the narrow floating-point types the generated
 * code stores as bit patterns (float16 and bfloat16 in uint16_t; float8 e4m3fn, e4m3fnuz, e5m2,
 * e5m2fnuz, e8m0fnu and float4 e2m1fn in one uint8_t each). Arithmetic on these types runs in float32
 * (emit/passes/widen.py); only casts, QuantizeLinear and DequantizeLinear call these functions.
 *
 * Encoding rounds to nearest, ties to even, from the exact float32 value, as ONNX's reference (numpy
 * and ml_dtypes) does; NaN, infinity and overflow map as ml_dtypes maps them (see ek_f32_to_f8). A
 * double is first rounded to float32 "to odd" (ek_f64_to_f32_odd): the float32 then rounds to any
 * of these types exactly as the double would have, so no double rounding error creeps in.
 * Pure integer bit manipulation besides: no dependence on the FPU's rounding of subnormals. */

#include "emit_runtime.h"
#include <math.h>
#include <string.h>

static uint32_t ek_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float ek_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* |f| (a finite float32 given by its bits without the sign) rounded to a float format with M mantissa
 * bits and exponent bias `bias`: the magnitude code (exponent field << M | mantissa), which exceeds
 * the format's largest code on overflow. float32 subnormals are below half the smallest subnormal of
 * every format rounded here (2^-24 at most), so they round to 0. */
static uint32_t ek_round_to_code(uint32_t abs_bits, int M, int bias)
{
    int e = (int)(abs_bits >> 23);
    uint32_t m, q, rem, half;
    int te, shift;
    if (e == 0)
        return 0;
    m = (abs_bits & 0x7fffffu) | 0x800000u;
    te = e - 127 + bias;                    /* the target's biased exponent */
    shift = 23 - M + (te < 1 ? 1 - te : 0); /* subnormal targets lose one more bit per step below 1 */
    if (shift > 24)
        return 0; /* below half the smallest subnormal */
    q = m >> shift;
    rem = m & ((1u << shift) - 1u);
    half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        ++q; /* a carry into the exponent field is the right next code */
    return te < 1 ? q : ((uint32_t)(te - 1) << M) + q;
}

float ek_f64_to_f32_odd(double d)
{
    float f = (float)d;
    if ((double)f != d && d == d) { /* inexact (NaN excluded): truncate toward zero, then set the last bit */
        uint32_t u = ek_bits(f);
        if (fabs((double)f) > fabs(d))
            --u; /* rounded away from zero (to infinity too): step back */
        f = ek_float(u | 1u);
    }
    return f;
}

float ek_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (uint32_t)(h >> 10) & 0x1fu, man = (uint32_t)h & 0x3ffu;
    if (exp == 0x1fu)
        return ek_float(sign | 0x7f800000u | (man << 13)); /* infinity, NaN (payload kept) */
    if (exp == 0) {
        const float v = (float)man * 5.9604644775390625e-8f; /* man * 2^-24, exact */
        return sign ? -v : v;
    }
    return ek_float(sign | ((exp + 112u) << 23) | (man << 13));
}

uint16_t ek_f32_to_f16(float f)
{
    const uint32_t u = ek_bits(f), a = u & 0x7fffffffu;
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t c;
    if (a > 0x7f800000u) { /* NaN: the payload's top bits, as numpy keeps them */
        c = 0x7c00u | ((a >> 13) & 0x3ffu);
        return (uint16_t)(sign | (c == 0x7c00u ? 0x7c01u : c));
    }
    c = a == 0x7f800000u ? 0x7c00u : ek_round_to_code(a, 10, 15);
    return (uint16_t)(sign | (c > 0x7c00u ? 0x7c00u : c));
}

float ek_bf16_to_f32(uint16_t h)
{
    return ek_float((uint32_t)h << 16);
}

uint16_t ek_f32_to_bf16(float f)
{
    const uint32_t u = ek_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)(((u >> 16) & 0x8000u) | 0x7fc0u); /* NaN: the quiet NaN of its sign (ml_dtypes) */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void ek_f16_to_f32_n(const uint16_t *x, float *y, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i)
        y[i] = ek_f16_to_f32(x[i]);
}

void ek_f32_to_f16_n(const float *x, uint16_t *y, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i)
        y[i] = ek_f32_to_f16(x[i]);
}

void ek_bf16_to_f32_n(const uint16_t *x, float *y, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i)
        y[i] = ek_bf16_to_f32(x[i]);
}

void ek_f32_to_bf16_n(const float *x, uint16_t *y, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i)
        y[i] = ek_f32_to_bf16(x[i]);
}

/* Layout of each EK_F8_* kind: exponent bits, mantissa bits, bias, largest finite magnitude code. */
static const struct {
    int e, m, bias;
    uint32_t max;
} ek_f8_formats[5] = {
    {4, 3, 7, 0x7eu},  /* EK_F8_E4M3FN: 448; S.1111.111 is NaN, no infinity */
    {4, 3, 8, 0x7fu},  /* EK_F8_E4M3FNUZ: 240; 0x80 is NaN, no -0, no infinity */
    {5, 2, 15, 0x7bu}, /* EK_F8_E5M2: 57344; IEEE-like infinities and NaNs */
    {5, 2, 16, 0x7fu}, /* EK_F8_E5M2FNUZ: 57344; 0x80 is NaN, no -0, no infinity */
    {2, 1, 1, 0x7u},   /* EK_F4_E2M1: 6; 4 bits, no NaN, no infinity */
};

float ek_f8_to_f32(uint8_t v, int kind)
{
    const int M = ek_f8_formats[kind].m, E = ek_f8_formats[kind].e, bias = ek_f8_formats[kind].bias;
    const uint32_t sign = (uint32_t)(v >> (E + M)) & 1u; /* a float4's upper bits are ignored */
    const uint32_t exp = (uint32_t)(v >> M) & ((1u << E) - 1u), man = (uint32_t)v & ((1u << M) - 1u);
    float r;
    if ((kind == EK_F8_E4M3FNUZ || kind == EK_F8_E5M2FNUZ) && v == 0x80u)
        return NAN;
    if (kind == EK_F8_E4M3FN && (v & 0x7fu) == 0x7fu)
        return sign ? -NAN : NAN;
    if (kind == EK_F8_E5M2 && exp == 0x1fu)
        return man ? (sign ? -NAN : NAN) : (sign ? -HUGE_VALF : HUGE_VALF);
    if (exp == 0) /* subnormal: man * 2^(1 - bias - M), the scale built from its exponent */
        r = (float)man * ek_float((uint32_t)(127 + 1 - bias - M) << 23);
    else
        r = ek_float(((exp + 127u - (uint32_t)bias) << 23) | (man << (23 - M)));
    return sign ? -r : r;
}

uint8_t ek_f32_to_f8(float f, int kind, int saturate)
{
    const int M = ek_f8_formats[kind].m, E = ek_f8_formats[kind].e, bias = ek_f8_formats[kind].bias;
    const uint32_t max = ek_f8_formats[kind].max;
    const uint32_t u = ek_bits(f), a = u & 0x7fffffffu;
    const uint32_t sign = (u >> 31) << (E + M);
    const int fnuz = kind == EK_F8_E4M3FNUZ || kind == EK_F8_E5M2FNUZ;
    uint32_t c;
    if (a > 0x7f800000u) { /* NaN */
        if (fnuz)
            return 0x80u;
        if (kind == EK_F4_E2M1)
            return sign ? 0x0u : 0x8u; /* no NaN: ml_dtypes gives the zero of the opposite sign */
        return (uint8_t)(sign | (kind == EK_F8_E5M2 ? 0x7eu : 0x7fu));
    }
    c = a == 0x7f800000u ? max + 1u : ek_round_to_code(a, M, bias);
    if (c > max) { /* overflow (infinity included) */
        if (saturate || kind == EK_F4_E2M1)
            c = max;
        else if (fnuz)
            return 0x80u;
        else
            c = kind == EK_F8_E5M2 ? 0x7cu : 0x7fu; /* infinity; e4m3fn has none: NaN */
    }
    if (fnuz && c == 0)
        return 0; /* no negative zero */
    return (uint8_t)(sign | c);
}

float ek_e8m0_to_f32(uint8_t v)
{
    if (v == 0xffu)
        return NAN;
    return ek_float(v ? (uint32_t)v << 23 : 0x400000u); /* 2^(v - 127); 2^-127 is a float32 subnormal */
}

uint8_t ek_f32_to_e8m0(float f, int saturate, int round_mode)
{
    /* ONNX's reference (onnx.numpy_helper.to_float8e8m0): the float32 exponent field, rounded up by
     * one per round_mode; the sign is dropped, infinity and NaN give NaN. */
    const uint32_t u = ek_bits(f);
    uint32_t e = (u >> 23) & 0xffu;
    int up = 0;
    if (e == 0xffu)
        return 0xffu;
    if (round_mode == EK_ROUND_UP)
        up = (u & 0x7fffffu) != 0;
    else if (round_mode == EK_ROUND_NEAREST)
        up = (u & 0x400000u) && ((u & 0x200000u) || (u & 0x1fffffu) || e > 0);
    if (up && !(saturate && e == 0xfeu))
        ++e; /* 0xfe + 1 is NaN when not saturating */
    return (uint8_t)e;
}
