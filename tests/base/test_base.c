/* test_base.c — fp16/bf16 conversions (subnormals, ties, overflow, inf/nan), RNG, errors. */
#include <stdint.h>
#include <string.h>

#include "../../base/base.h"
#include "../test.h"

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* fp16 value from its fields, in double (independent of base.c) */
static double fp16_value(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static void test_fp16_to_f32(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sl_fp16_to_f32((uint16_t)h);
        double want = fp16_value((uint16_t)h);
        if (isnan(want)) {
            ASSERT(isnan(f));
            ASSERT_EQ(bits(f) >> 31, h >> 15);
        } else {
            ASSERT((double)f == want);
            ASSERT_EQ(signbit(f) != 0, (h >> 15) != 0); /* −0 stays −0 */
        }
        /* every fp16 value survives f32 and back (nan stays nan) */
        uint16_t back = sl_f32_to_fp16(f);
        if (isnan(want)) ASSERT((back & 0x7c00) == 0x7c00 && (back & 0x3ff) != 0);
        else ASSERT_EQ(back, h);
    }
    ASSERT(sl_fp16_to_f32(0x0001) == 0x1p-24f);         /* smallest subnormal */
    ASSERT(sl_fp16_to_f32(0x03ff) == 1023 * 0x1p-24f);  /* largest subnormal */
    ASSERT(sl_fp16_to_f32(0x0400) == 0x1p-14f);         /* smallest normal */
    ASSERT(sl_fp16_to_f32(0x7bff) == 65504.0f);
    ASSERT(sl_fp16_to_f32(0x3c00) == 1.0f);
    ASSERT(sl_fp16_to_f32(0xc000) == -2.0f);
    ASSERT(isinf(sl_fp16_to_f32(0x7c00)) && sl_fp16_to_f32(0xfc00) < 0);
}

/* Round to nearest even, checked against the neighbours: |f − v(h)| is minimal and, on a
 * tie, the mantissa is even. */
static void check_nearest(float f) {
    uint16_t h = sl_f32_to_fp16(f);
    double x = f, v = fp16_value(h);
    if (fabs(x) >= 65520.0) { /* rounds past 65504 + half an ulp: overflow */
        ASSERT_EQ(h, (x < 0 ? 0xfc00 : 0x7c00));
        return;
    }
    ASSERT((h & 0x7c00) != 0x7c00);
    ASSERT_EQ((h >> 15) != 0, signbit(f) != 0);
    double err = fabs(x - v);
    for (int dlt = -1; dlt <= 1; dlt += 2) {
        int n = (h & 0x7fff) + dlt;
        if (n < 0 || n > 0x7bff) continue;
        double nv = fp16_value((uint16_t)((h & 0x8000) | n));
        double nerr = fabs(x - nv);
        ASSERT(err <= nerr);
        if (err == nerr) ASSERT((h & 1) == 0);
    }
}

static void test_f32_to_fp16(void) {
    /* ties to even in the normal range: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 */
    ASSERT_EQ(sl_f32_to_fp16(1.0f + 0x1p-11f), 0x3c00);
    ASSERT_EQ(sl_f32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);
    ASSERT_EQ(sl_f32_to_fp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    ASSERT_EQ(sl_f32_to_fp16(-(1.0f + 0x1p-11f)), 0xbc00);
    /* carry into the exponent: just under 2 rounds to 2 */
    ASSERT_EQ(sl_f32_to_fp16(2.0f - 0x1p-12f), 0x4000);
    /* subnormal ties: 2^-25 is halfway between 0 and 2^-24 → 0; 3·2^-25 → 2·2^-24 */
    ASSERT_EQ(sl_f32_to_fp16(0x1p-25f), 0x0000);
    ASSERT_EQ(sl_f32_to_fp16(3 * 0x1p-25f), 0x0002);
    ASSERT_EQ(sl_f32_to_fp16(0x1p-25f + 0x1p-40f), 0x0001);
    ASSERT_EQ(sl_f32_to_fp16(-0x1p-25f), 0x8000);
    ASSERT_EQ(sl_f32_to_fp16(1e-10f), 0x0000);
    ASSERT_EQ(sl_f32_to_fp16(-1e-10f), 0x8000);
    /* largest subnormal + half an ulp ties to even: 1023.5·2^-24 → 1024·2^-24 = smallest normal */
    ASSERT_EQ(sl_f32_to_fp16(1023.5f * 0x1p-24f), 0x0400);
    ASSERT_EQ(sl_f32_to_fp16(1022.5f * 0x1p-24f), 0x03fe);
    ASSERT_EQ(sl_f32_to_fp16(0x1p-14f), 0x0400);
    /* overflow: 65504 is the max, 65519.99 rounds to it, 65520 (a tie, to even) overflows */
    ASSERT_EQ(sl_f32_to_fp16(65504.0f), 0x7bff);
    ASSERT_EQ(sl_f32_to_fp16(65519.0f), 0x7bff);
    ASSERT_EQ(sl_f32_to_fp16(65520.0f), 0x7c00);
    ASSERT_EQ(sl_f32_to_fp16(-1e6f), 0xfc00);
    ASSERT_EQ(sl_f32_to_fp16(INFINITY), 0x7c00);
    ASSERT_EQ(sl_f32_to_fp16(-INFINITY), 0xfc00);
    ASSERT_EQ(sl_f32_to_fp16(0.0f), 0x0000);
    ASSERT_EQ(sl_f32_to_fp16(-0.0f), 0x8000);
    uint16_t hn = sl_f32_to_fp16(NAN);
    ASSERT((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    hn = sl_f32_to_fp16(from_bits(0x7f800001u)); /* nan whose payload is in the low bits */
    ASSERT((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);

    /* every f32 near each fp16 boundary, and random ones across the range */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        float v = sl_fp16_to_f32((uint16_t)h), next = sl_fp16_to_f32((uint16_t)(h + 1));
        float mid = (float)(((double)v + (double)next) / 2); /* exact: needs ≤ 12 bits */
        for (int s = 0; s < 2; s++) {
            float sg = s ? -1.0f : 1.0f;
            check_nearest(sg * mid);
            check_nearest(sg * nextafterf(mid, 0));
            check_nearest(sg * nextafterf(mid, INFINITY));
            check_nearest(sg * v);
        }
    }
    sl_rng rng;
    sl_rng_seed(&rng, 1);
    for (int i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)sl_rng_u64(&rng);
        u = (u & 0x807fffffu) | (uint32_t)(100 + (u >> 23) % 45) << 23; /* |f| in 2^-27..2^17 */
        check_nearest(from_bits(u));
    }
#ifdef __FLT16_MAX__
    /* the compiler's own conversion is an independent oracle where it exists */
    for (int i = 0; i < 1000000; i++) {
        float f = from_bits((uint32_t)sl_rng_u64(&rng));
        if (isnan(f)) continue;
        _Float16 c = (_Float16)f;
        uint16_t cb;
        memcpy(&cb, &c, 2);
        ASSERT_EQ(sl_f32_to_fp16(f), cb);
    }
#endif
}

static void test_bf16(void) {
    ASSERT_EQ(sl_f32_to_bf16(1.0f), 0x3f80);
    ASSERT(sl_bf16_to_f32(0x3f80) == 1.0f);
    ASSERT(sl_bf16_to_f32(0xc049) == -3.140625f);
    /* ties to even */
    ASSERT_EQ(sl_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);
    ASSERT_EQ(sl_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
    ASSERT_EQ(sl_f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
    ASSERT_EQ(sl_f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);
    /* the largest finite f32 rounds to inf; inf stays inf */
    ASSERT_EQ(sl_f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);
    ASSERT_EQ(sl_f32_to_bf16(INFINITY), 0x7f80);
    ASSERT_EQ(sl_f32_to_bf16(-INFINITY), 0xff80);
    /* nan stays nan, even when the payload is only in the low 16 bits */
    uint16_t n = sl_f32_to_bf16(from_bits(0x7f800001u));
    ASSERT((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
    n = sl_f32_to_bf16(from_bits(0xffc00000u));
    ASSERT((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0 && (n & 0x8000));
    /* subnormals are kept: bf16 has f32's exponent range */
    ASSERT_EQ(sl_f32_to_bf16(from_bits(0x00010000u)), 0x0001);
    ASSERT(sl_bf16_to_f32(0x0001) == from_bits(0x00010000u));
    ASSERT_EQ(sl_f32_to_bf16(-0.0f), 0x8000);
    /* every bf16 survives the round trip */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sl_bf16_to_f32((uint16_t)h);
        ASSERT_EQ(bits(f), h << 16);
        if (!isnan(f)) ASSERT_EQ(sl_f32_to_bf16(f), h);
    }
}

static void test_rng(void) {
    sl_rng a, b;
    sl_rng_seed(&a, 123);
    sl_rng_seed(&b, 123);
    for (int i = 0; i < 100; i++) ASSERT(sl_rng_u64(&a) == sl_rng_u64(&b));
    sl_rng_seed(&b, 124);
    ASSERT(sl_rng_u64(&a) != sl_rng_u64(&b));
    double s = 0, s2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        float u = sl_rng_f32(&a);
        ASSERT(u >= 0.0f && u < 1.0f);
        float z = sl_rng_normal(&a);
        ASSERT(isfinite(z));
        s += z;
        s2 += (double)z * z;
    }
    ASSERT_NEAR(s / n, 0.0, 0.01, 0);
    ASSERT_NEAR(s2 / n, 1.0, 0.02, 0);
}

static void test_errors(void) {
    for (int e = SL_ERANGE; e <= SL_OK; e++)
        ASSERT(sl_strerror(e) && strcmp(sl_strerror(e), "unknown error"));
    ASSERT_STR_CONTAINS(sl_strerror(-1000), "unknown");
    char msg[SL_ERRMSG];
    ASSERT_EQ(sl_fail(msg, SL_EFORMAT, "tensor %s: bad", "x"), SL_EFORMAT);
    ASSERT_STR_CONTAINS(msg, "tensor x: bad");
    ASSERT_EQ(sl_fail(NULL, SL_EIO, "ignored"), SL_EIO);
}

int main(void) {
    test_fp16_to_f32();
    test_f32_to_fp16();
    test_bf16();
    test_rng();
    test_errors();
    printf("test_base: ok\n");
    return 0;
}
