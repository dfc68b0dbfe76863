// The SIMD attention kernel against the scalar reference: same numerics up to float rounding
// (and the occasional one-ulp f16 rounding of a probability), for several head sizes, GQA
// groups, windows and context lengths over a scattered paged cache.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/attention.h"
#include "ops/thread_pool.h"
#include "quant/fp16.h"

namespace lokal {
namespace {

TEST(Attention, SimdMatchesReference) {
    std::mt19937 rng(21);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    struct Case {
        int n_head, n_kv, hd, bs, len, window;
    };
    // GQA groups 1, 2, 4 and 8 with head sizes 32, 64 and 128 take the decode kernel that
    // converts rows in registers; other groups and sizes the tiled one.
    const Case cases[] = {
        {4, 2, 16, 4, 19, 0},    {8, 1, 64, 16, 300, 0}, {32, 4, 64, 16, 77, 0},
        {6, 3, 128, 8, 40, 9},   {4, 4, 80, 32, 65, 0},  {2, 1, 36, 4, 10, 0},
        {16, 4, 64, 16, 203, 0}, {4, 4, 128, 16, 45, 0}, {16, 2, 32, 8, 61, 13},
        {8, 4, 64, 4, 33, 5},    {14, 2, 64, 16, 50, 0}, {8, 1, 128, 16, 1031, 0}};
    ThreadPool pool(2);
    for (const Case& c : cases) {
        const int kv_dim = c.n_kv * c.hd;
        const int n_blocks = (c.len + c.bs - 1) / c.bs;
        std::vector<int32_t> table(n_blocks);
        for (int i = 0; i < n_blocks; ++i) table[i] = (i * 7 + 3) % n_blocks;  // scattered
        std::vector<uint16_t> kc((size_t)n_blocks * c.bs * kv_dim), vc(kc.size());
        for (auto& h : kc) h = fp32_to_fp16(nd(rng));
        for (auto& h : vc) h = fp32_to_fp16(nd(rng));
        std::vector<float> qf((size_t)c.len * c.n_head * c.hd);
        for (float& x : qf) x = 2.0f * nd(rng);
        std::vector<float> out(qf.size()), ref(qf.size());
        std::vector<AttentionQuery> qs(c.len), rs(c.len);
        for (int p = 0; p < c.len; ++p) {
            qs[p] = {qf.data() + (size_t)p * c.n_head * c.hd,
                     out.data() + (size_t)p * c.n_head * c.hd, p, table.data()};
            rs[p] = {qs[p].q, ref.data() + (size_t)p * c.n_head * c.hd, p, table.data()};
        }
        AttentionShape shape{c.n_head, c.n_kv, c.hd, c.bs, 1.0f / std::sqrt((float)c.hd), c.window};
        attention_paged(pool, shape, kc.data(), vc.data(), qs.data(), c.len);
        attention_paged_ref(pool, shape, kc.data(), vc.data(), rs.data(), c.len);
        double max_err = 0;
        for (size_t i = 0; i < out.size(); ++i)
            max_err = std::max(max_err, (double)std::fabs(out[i] - ref[i]));
        EXPECT_LT(max_err, 2e-3) << "hd " << c.hd << " len " << c.len;
        // Typical agreement is far tighter than the bound above (which allows a flipped f16
        // rounding of one probability).
        double mean_err = 0;
        for (size_t i = 0; i < out.size(); ++i) mean_err += std::fabs(out[i] - ref[i]);
        EXPECT_LT(mean_err / out.size(), 2e-5) << "hd " << c.hd << " len " << c.len;
    }
}

}  // namespace
}  // namespace lokal
