// Row kernels (SIMD where the dispatch picks it) against their formulas, over odd lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/ops.h"

namespace lokal {
namespace {

TEST(Ops, SwigluMatchesFormula) {
    std::mt19937 rng(31);
    std::normal_distribution<float> nd(0.0f, 4.0f);
    for (int64_t n : {1, 7, 8, 33, 5632}) {
        std::vector<float> g(n), u(n), out(n);
        for (auto& v : g) v = nd(rng);
        for (auto& v : u) v = nd(rng);
        g[0] = -100.0f;  // exp overflow side
        swiglu(g.data(), u.data(), out.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            const double want = (double)g[i] / (1.0 + std::exp(-(double)g[i])) * u[i];
            ASSERT_NEAR(out[i], want, 1e-6 * std::fabs(want) + 1e-30) << "n " << n << " i " << i;
        }
    }
}

TEST(Ops, RmsNormOddLengths) {
    std::mt19937 rng(32);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t n : {1, 9, 100, 2048}) {
        std::vector<float> x(n), w(n), out(n);
        for (auto& v : x) v = nd(rng);
        for (auto& v : w) v = nd(rng);
        rmsnorm(x.data(), w.data(), out.data(), n, 1e-6f);
        double ss = 0;
        for (float v : x) ss += (double)v * v;
        const double scale = 1.0 / std::sqrt(ss / n + 1e-6);
        for (int64_t i = 0; i < n; ++i)
            ASSERT_NEAR(out[i], x[i] * scale * w[i], 1e-5 * std::fabs(x[i] * scale * w[i]) + 1e-7);
    }
}

// Element-wise, so exactly the scalar sums, at every length and offset (the matmul adds
// residual rows from any row, so unaligned starts too).
TEST(Ops, AddInplaceIsExactAtOddLengthsAndOffsets) {
    std::mt19937 rng(33);
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (int64_t n : {0, 1, 7, 8, 31, 32, 33, 100, 2048 * 3 + 5})
        for (int64_t off : {0, 1, 3}) {
            std::vector<float> y(n + off), x(n + off);
            for (auto& v : y) v = nd(rng);
            for (auto& v : x) v = nd(rng);
            std::vector<float> want = y;
            for (int64_t i = 0; i < n; ++i) want[off + i] = y[off + i] + x[off + i];
            add_inplace(y.data() + off, x.data() + off, n);
            for (int64_t i = 0; i < n + off; ++i)
                ASSERT_EQ(y[i], want[i]) << "n " << n << " off " << off << " i " << i;
        }
}

}  // namespace
}  // namespace lokal
