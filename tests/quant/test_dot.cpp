// Activation quantization and the scalar reference dot products.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "quant/fp16.h"
#include "quant/quant.h"
#include "test_util.h"

namespace lokal {
namespace {

std::vector<uint8_t> quantize_act(TensorType dot_type, const std::vector<float>& x) {
    std::vector<uint8_t> a(row_size(dot_type, (int64_t)x.size()));
    quantize_row_dot(dot_type, x.data(), a.data(), (int64_t)x.size());
    return a;
}

// Q8_0 bytes: d @0 (fp16), qs[32] @2.
TEST(ActQuant, Q8_0WithinHalfStep) {
    std::mt19937 rng(1);
    for (int64_t n : {32, 64, 1024}) {
        auto x = test::student_t_row(rng, n);
        auto a = quantize_act(TensorType::Q8_0, x);
        std::vector<float> y((size_t)n);
        dequantize_row(TensorType::Q8_0, a.data(), y.data(), n);
        for (int64_t b = 0; b < n / 32; ++b) {
            uint16_t dh;
            std::memcpy(&dh, &a[34 * b], 2);
            const float d = fp16_to_fp32(dh);
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
            EXPECT_NEAR(d, amax / 127, amax / 127 * 1e-3f);
            int qmax = 0;
            for (int j = 0; j < 32; ++j) {
                const int q = (int8_t)a[34 * b + 2 + j];
                qmax = std::max(qmax, std::abs(q));
                // d/2 from rounding, plus the fp16 rounding of d times |q| <= 127.
                EXPECT_LE(std::fabs(y[32 * b + j] - x[32 * b + j]), d * (0.5f + 127.f / 2048))
                    << "n=" << n << " i=" << 32 * b + j;
            }
            EXPECT_EQ(qmax, 127);
        }
    }
}

TEST(ActQuant, Q8_0RoundsTiesToEven) {
    // amax 127 -> scale 127/amax = 1 exactly, so x = 2.5 is an exact tie. Activations follow
    // the reference engine's SIMD quantizer, which rounds ties to even.
    std::vector<float> x(32, 0.0f);
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 0.49f;
    auto a = quantize_act(TensorType::Q8_0, x);
    EXPECT_EQ((int8_t)a[2 + 0], 127);
    EXPECT_EQ((int8_t)a[2 + 1], 2);
    EXPECT_EQ((int8_t)a[2 + 2], -2);
    EXPECT_EQ((int8_t)a[2 + 3], 0);
}

// Q8_1 bytes: d @0, s @2 (fp16), qs[32] @4.
TEST(ActQuant, Q8_1SumField) {
    std::mt19937 rng(2);
    auto x = test::gaussian_row(rng, 256);
    auto a = quantize_act(TensorType::Q8_1, x);
    auto a0 = quantize_act(TensorType::Q8_0, x);
    for (int b = 0; b < 8; ++b) {
        uint16_t dh, sh;
        std::memcpy(&dh, &a[36 * b], 2);
        std::memcpy(&sh, &a[36 * b + 2], 2);
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            sum += (int8_t)a[36 * b + 4 + j];
            // Same quants as Q8_0.
            EXPECT_EQ(a[36 * b + 4 + j], a0[34 * b + 2 + j]);
        }
        const float d = fp16_to_fp32(dh);
        EXPECT_NEAR(fp16_to_fp32(sh), d * sum, std::fabs(d * sum) * 2e-3f + 1e-6f);
    }
}

// Q8_K bytes: d @0 (float), qs[256] @4, bsums[16] @260 (int16).
TEST(ActQuant, Q8_KWithinHalfStepAndBsums) {
    std::mt19937 rng(3);
    for (int64_t n : {256, 512, 4096}) {
        auto x = test::student_t_row(rng, n);
        auto a = quantize_act(TensorType::Q8_K, x);
        std::vector<float> y((size_t)n);
        dequantize_row(TensorType::Q8_K, a.data(), y.data(), n);
        for (int64_t b = 0; b < n / 256; ++b) {
            const uint8_t* blk = &a[292 * b];
            float d;
            std::memcpy(&d, blk, 4);
            float amax = 0;
            for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[256 * b + j]));
            EXPECT_NEAR(std::fabs(d), amax / 127, amax * 1e-6f);
            bool hit127 = false;
            for (int j = 0; j < 256; ++j) {
                const int q = (int8_t)blk[4 + j];
                EXPECT_GE(q, -127);
                hit127 |= std::abs(q) == 127;
                EXPECT_LE(std::fabs(y[256 * b + j] - x[256 * b + j]), std::fabs(d) * 0.5001f);
            }
            EXPECT_TRUE(hit127);
            for (int g = 0; g < 16; ++g) {
                int sum = 0;
                for (int j = 0; j < 16; ++j) sum += (int8_t)blk[4 + 16 * g + j];
                int16_t bs;
                std::memcpy(&bs, blk + 260 + 2 * g, 2);
                EXPECT_EQ(bs, sum);
            }
        }
    }
}

TEST(ActQuant, ZeroRowsStayZero) {
    std::vector<float> x(256, 0.0f);
    for (TensorType t : {TensorType::Q8_0, TensorType::Q8_1, TensorType::Q8_K}) {
        auto a = quantize_act(t, x);
        std::vector<float> y(256, 1.0f);
        dequantize_row(t, a.data(), y.data(), 256);
        for (float v : y) EXPECT_EQ(v, 0.0f);
    }
}

TEST(ActQuant, HalfFormats) {
    std::vector<float> x = {1.0f, -2.5f, 0.1f, 65504.0f, 1e-8f, 3.14159f, -0.0f, 1e5f};
    auto h = quantize_act(TensorType::F16, x);
    auto b = quantize_act(TensorType::BF16, x);
    for (size_t i = 0; i < x.size(); ++i) {
        uint16_t hv, bv;
        std::memcpy(&hv, &h[2 * i], 2);
        std::memcpy(&bv, &b[2 * i], 2);
        EXPECT_EQ(hv, fp32_to_fp16(x[i]));
        EXPECT_EQ(bv, fp32_to_bf16(x[i]));
    }
}

double norm2(const std::vector<float>& v) {
    double s = 0;
    for (float f : v) s += (double)f * f;
    return std::sqrt(s);
}

// vec_dot_ref against float arithmetic on the dequantized operands:
//  (a) exactly-dequantized weights and activations: agreement to float rounding (this is what
//      ties the integer kernels to the layouts);
//  (b) dequantized weights and the original x: within the activation quantization error.
TEST(VecDotRef, MatchesDequantizedDot) {
    std::mt19937 rng(7);
    for (TensorType t : test::weight_types()) {
        const int bs = type_traits(t).block_size;
        const TensorType at = type_traits(t).dot_type;
        for (int64_t n : {256, 512, 4096}) {
            if (n % bs) continue;
            for (int rep = 0; rep < 4; ++rep) {
                auto w = test::random_weight_row(rng, t, n);
                auto x = rep % 2 ? test::student_t_row(rng, n) : test::gaussian_row(rng, n);
                auto a = quantize_act(at, x);
                const float got = vec_dot_ref(t, n, w.data(), a.data());

                std::vector<float> wf((size_t)n), af((size_t)n);
                dequantize_row(t, w.data(), wf.data(), n);
                dequantize_row(at, a.data(), af.data(), n);
                double exact = 0, abs_sum = 0, vs_x = 0;
                for (int64_t i = 0; i < n; ++i) {
                    exact += (double)wf[i] * af[i];
                    abs_sum += std::fabs((double)wf[i] * af[i]);
                    vs_x += (double)wf[i] * x[i];
                }
                // Q8_1's s is fp16(d_float * sum q): ~2^-11 relative on the min term.
                const bool q81 = at == TensorType::Q8_1;
                const double tol_a = abs_sum * (q81 ? 2e-3 : 2e-5) + 1e-6;
                EXPECT_NEAR(got, exact, tol_a) << type_name(t) << " n=" << n;

                const double scale = norm2(wf) * norm2(x);
                const double rel = std::fabs(got - vs_x) / scale;
                const double tol_b = at == TensorType::F32    ? 1e-6
                                     : at == TensorType::F16  ? 1e-3
                                     : at == TensorType::BF16 ? 5e-3
                                                              : 5e-3;
                EXPECT_LT(rel, tol_b) << type_name(t) << " n=" << n;
            }
        }
    }
}

TEST(VecDotRef, HandComputedQ4_0) {
    // One Q4_0 block with d = 0.5 and all nibbles 9 (value +1 -> 0.5); activation all 1.0
    // -> Q8_0 d = 1/127, q = 127. Integer sum 32 * 1 * 127; result 32*127*0.5*fp16(1/127).
    std::vector<uint8_t> w(18, 0x99);
    const uint16_t d = fp32_to_fp16(0.5f);
    std::memcpy(w.data(), &d, 2);
    std::vector<float> x(32, 1.0f);
    auto a = quantize_act(TensorType::Q8_0, x);
    const float want = 32 * 127 * 0.5f * fp16_to_fp32(fp32_to_fp16(1.0f / 127));
    EXPECT_FLOAT_EQ(vec_dot_ref(TensorType::Q4_0, 32, w.data(), a.data()), want);
}

}  // namespace
}  // namespace lokal
