// The SIMD attention kernel against the scalar reference: same numerics up to float rounding
// (and the occasional one-ulp f16 rounding of a probability), for several head sizes, GQA
// groups, windows and context lengths over a scattered paged cache.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "ops/attention.h"
#include "ops/thread_pool.h"
#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "quant/quantize.h"

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
    const Case cases[] = {{4, 2, 16, 4, 19, 0},
                          {8, 1, 64, 16, 300, 0},
                          {32, 4, 64, 16, 77, 0},
                          {6, 3, 128, 8, 40, 9},
                          {4, 4, 80, 32, 65, 0},
                          {2, 1, 36, 4, 10, 0},
                          {16, 4, 64, 16, 203, 0},
                          {4, 4, 128, 16, 45, 0},
                          {16, 2, 32, 8, 61, 13},
                          {8, 4, 64, 4, 33, 5},
                          {14, 2, 64, 16, 50, 0},
                          {8, 1, 128, 16, 1031, 0},
                          // groups of 3 and 16, head sizes 256, 48 and 24 (no unrolled kernel), a
                          // window starting mid-block over 32-position blocks
                          {6, 2, 64, 16, 50, 0},
                          {32, 2, 64, 16, 40, 0},
                          {8, 2, 256, 16, 33, 0},
                          {4, 1, 48, 16, 29, 0},
                          {4, 2, 24, 8, 21, 0},
                          {16, 2, 64, 32, 150, 37}};
    ThreadPool pool(2);
    for (const Case& c : cases) {
        const int n_blocks = (c.len + c.bs - 1) / c.bs;
        std::vector<int32_t> table(n_blocks);
        for (int i = 0; i < n_blocks; ++i) table[i] = (i * 7 + 3) % n_blocks;  // scattered
        AttentionShape shape{c.n_head, c.n_kv, c.hd, c.bs, 1.0f / std::sqrt((float)c.hd), c.window};
        shape.n_blocks = n_blocks;
        std::vector<uint16_t> kc((size_t)kv_cache_elems(shape)), vc(kc.size());
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

// A prompt's queries of one sequence are attended in blocks that share each loaded K/V tile
// (attention_paged: up to 8 heads a block, so 8 queries of a model without grouped heads);
// each query's output must be the bits it gets alone, as a decode step computes it (batch
// invariance: the same token gives the same logits however it was scheduled). Every cache
// type, groups 1-8 (blocks of 8, 4, 2 and 2 queries; 3 heads a query: blocks of 2 on the
// 8-head kernel; a last block of 1-7), windows that do and do not split blocks, several
// sequences' queries interleaved in one call, 1 and 3 threads; and sharp attention (queries
// 8x larger: most probabilities round to 0, whole runs of keys at once, which a query alone
// skips in the values pass and a block does not).
TEST(Attention, QueryBlocksGiveEachQueryTheBitsItGetsAlone) {
    std::mt19937 rng(8);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    struct Case {
        int n_head, n_kv, hd, bs, len, window;
    };
    const Case cases[] = {{4, 4, 128, 16, 83, 0}, {4, 4, 64, 16, 37, 0},   {8, 4, 64, 8, 45, 0},
                          {6, 2, 64, 16, 29, 0},  {8, 2, 32, 16, 51, 0},   {16, 2, 64, 16, 20, 0},
                          {4, 4, 64, 16, 60, 21}, {4, 2, 128, 32, 70, 90}, {2, 2, 96, 16, 19, 0}};
    for (float q_scale : {2.0f, 16.0f})
        for (KvType kv : kKvTypes) {
            for (const Case& c : cases) {
                SCOPED_TRACE(testing::Message() << kv_type_name(kv) << " heads " << c.n_head << "/"
                                                << c.n_kv << " hd " << c.hd << " len " << c.len
                                                << " window " << c.window << " q x" << q_scale);
                // Two sequences, each with its own scattered blocks.
                const int per_seq = (c.len + c.bs - 1) / c.bs;
                std::vector<int32_t> table(2 * per_seq);
                for (int i = 0; i < 2 * per_seq; ++i) table[i] = (i * 7 + 3) % (2 * per_seq);
                AttentionShape shape{
                    c.n_head, c.n_kv, c.hd,       c.bs, 1.0f / std::sqrt((float)c.hd),
                    c.window, kv,     2 * per_seq};
                std::vector<uint16_t> kc((size_t)kv_cache_elems(shape)), vc(kc.size());
                std::vector<float> x(c.hd);
                for (int b = 0; b < 2 * per_seq; ++b)
                    for (int slot = 0; slot < c.bs; ++slot)
                        for (int h = 0; h < c.n_kv; ++h) {
                            for (float& v : x) v = nd(rng);
                            kv_store_k(shape, kc.data(), b, slot, h, x.data());
                            for (float& v : x) v = nd(rng);
                            kv_store_v(shape, vc.data(), b, slot, h, x.data());
                        }
                // Sequence 0's queries at positions 0..len-1, then sequence 1's at len/2..len-1,
                // then sequence 0's last 5 again (a second run of the same sequence in one call).
                const size_t per_query = (size_t)c.n_head * c.hd;
                std::vector<std::pair<int, int>> plan;  // (sequence, position)
                for (int p = 0; p < c.len; ++p) plan.push_back({0, p});
                for (int p = c.len / 2; p < c.len; ++p) plan.push_back({1, p});
                for (int p = c.len - 5; p < c.len; ++p) plan.push_back({0, p});
                std::vector<float> qf(plan.size() * per_query);
                for (float& v : qf) v = q_scale * nd(rng);
                std::vector<float> together(qf.size()), alone(qf.size());
                std::vector<AttentionQuery> all(plan.size());
                for (size_t i = 0; i < plan.size(); ++i)
                    all[i] = {qf.data() + i * per_query, together.data() + i * per_query,
                              plan[i].second, table.data() + plan[i].first * per_seq};
                for (int threads : {1, 3}) {
                    ThreadPool pool(threads);
                    std::fill(together.begin(), together.end(), -1.0f);
                    attention_paged(pool, shape, kc.data(), vc.data(), all.data(),
                                    (int64_t)all.size());
                    for (size_t i = 0; i < plan.size(); ++i) {
                        AttentionQuery one = all[i];
                        one.out = alone.data() + i * per_query;
                        attention_paged(pool, shape, kc.data(), vc.data(), &one, 1);
                    }
                    EXPECT_EQ(std::memcmp(together.data(), alone.data(), together.size() * 4), 0)
                        << threads << " threads";
                }
                // And the block kernel meets the reference (the reference takes queries one by
                // one).
                ThreadPool pool(2);
                std::vector<float> ref(qf.size());
                std::vector<AttentionQuery> refs = all;
                for (size_t i = 0; i < plan.size(); ++i) refs[i].out = ref.data() + i * per_query;
                attention_paged_ref(pool, shape, kc.data(), vc.data(), refs.data(),
                                    (int64_t)refs.size());
                double max_err = 0;
                for (size_t i = 0; i < ref.size(); ++i)
                    max_err = std::max(max_err, (double)std::fabs(together[i] - ref[i]));
                EXPECT_LT(max_err, 1e-2);
            }
        }
}

// A decode step with fewer K/V-head tasks than threads splits each group's query heads over
// the idle threads (attention_paged); a head's output must not depend on that: one query of
// MQA (one K/V head for 8 heads), of GQA groups of 6 and 8, at 1-8 threads (parts of 1-8
// heads, uneven ones too), for every cache type, gives the bits of one thread, and those meet
// the reference.
TEST(Attention, DecodeSplitsHeadsOverIdleThreadsWithTheSameBits) {
    std::mt19937 rng(12);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    struct Case {
        int n_head, n_kv, hd, len;
    };
    const Case cases[] = {{8, 1, 64, 300}, {12, 2, 64, 77}, {32, 4, 64, 150}, {8, 1, 128, 45}};
    for (KvType kv : kKvTypes)
        for (const Case& c : cases) {
            SCOPED_TRACE(testing::Message() << kv_type_name(kv) << " heads " << c.n_head << "/"
                                            << c.n_kv << " hd " << c.hd << " len " << c.len);
            const int bs = 16, n_blocks = (c.len + bs - 1) / bs;
            std::vector<int32_t> table(n_blocks);
            for (int i = 0; i < n_blocks; ++i) table[i] = (i * 3 + 1) % n_blocks;
            AttentionShape shape{c.n_head, c.n_kv, c.hd,    bs, 1.0f / std::sqrt((float)c.hd),
                                 0,        kv,     n_blocks};
            std::vector<uint16_t> kc((size_t)kv_cache_elems(shape)), vc(kc.size());
            std::vector<float> x(c.hd);
            for (int p = 0; p < c.len; ++p)
                for (int h = 0; h < c.n_kv; ++h) {
                    for (float& v : x) v = nd(rng);
                    kv_store_k(shape, kc.data(), table[p / bs], p % bs, h, x.data());
                    for (float& v : x) v = nd(rng);
                    kv_store_v(shape, vc.data(), table[p / bs], p % bs, h, x.data());
                }
            std::vector<float> q((size_t)c.n_head * c.hd), one(q.size()), out(q.size());
            for (float& v : q) v = 2.0f * nd(rng);
            AttentionQuery query{q.data(), one.data(), c.len - 1, table.data()};
            {
                ThreadPool pool(1);
                attention_paged(pool, shape, kc.data(), vc.data(), &query, 1);
            }
            for (int threads : {2, 3, 4, 8}) {
                ThreadPool pool(threads);
                std::fill(out.begin(), out.end(), -1.0f);
                query.out = out.data();
                attention_paged(pool, shape, kc.data(), vc.data(), &query, 1);
                EXPECT_EQ(std::memcmp(out.data(), one.data(), out.size() * 4), 0)
                    << threads << " threads";
            }
            std::vector<float> ref(q.size());
            query.out = ref.data();
            ThreadPool pool(3);
            attention_paged_ref(pool, shape, kc.data(), vc.data(), &query, 1);
            double max_err = 0;
            for (size_t i = 0; i < ref.size(); ++i)
                max_err = std::max(max_err, (double)std::fabs(one[i] - ref[i]));
            EXPECT_LT(max_err, 1e-2);
        }
}

// Q8_0, Q4_0 and BF16 caches: every SIMD path (decode kernels for GQA groups 1, 2, 4, 8 at head
// sizes 32, 64, 128; the tiled kernel for other groups and sizes) against the scalar reference
// on the same rounded rows, and the reference itself against an f16 cache of the same values:
// the only difference there is the rounding of K and V (and of the query, for BF16).
TEST(Attention, BlockTypeCachesMatchReferenceAndF16) {
    for (KvType kv : {KvType::Q8_0, KvType::Q4_0, KvType::BF16}) {
        SCOPED_TRACE(kv_type_name(kv));
        std::mt19937 rng(5);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        struct Case {
            int n_head, n_kv, hd, bs, len, window;
        };
        const Case cases[] = {{8, 1, 64, 16, 300, 0},
                              {32, 4, 64, 16, 77, 0},
                              {4, 4, 128, 8, 45, 0},
                              {16, 2, 32, 8, 61, 13},
                              {8, 4, 64, 4, 33, 5},
                              {6, 2, 96, 16, 40, 0},
                              {12, 4, 160, 16, 29, 0},
                              {4, 2, 128, 16, 1031, 0},
                              // 32-position blocks: Q4_0 keys of one nibble plane per run on
                              // both ISAs, with and without a window starting mid-block
                              {8, 2, 64, 32, 150, 0},
                              {8, 2, 64, 32, 150, 37}};
        ThreadPool pool(2);
        for (const Case& c : cases) {
            SCOPED_TRACE(testing::Message() << "heads " << c.n_head << "/" << c.n_kv << " hd "
                                            << c.hd << " len " << c.len);
            const int n_blocks = (c.len + c.bs - 1) / c.bs;
            std::vector<int32_t> table(n_blocks);
            for (int i = 0; i < n_blocks; ++i) table[i] = (i * 5 + 2) % n_blocks;  // scattered
            AttentionShape f16{c.n_head, c.n_kv, c.hd, c.bs, 1.0f / std::sqrt((float)c.hd),
                               c.window};
            f16.n_blocks = n_blocks;
            AttentionShape q8 = f16;
            q8.kv_type = kv;
            if (kv != KvType::BF16) {
                ASSERT_EQ(kv_row_elems(kv, c.hd) * 2, c.hd / 32 * (kv == KvType::Q8_0 ? 34 : 18));
            }
            std::vector<uint16_t> kq((size_t)kv_cache_elems(q8)), vq(kq.size());
            std::vector<uint16_t> kh((size_t)kv_cache_elems(f16)), vh(kh.size());
            // Each row: random values with a few large ones (as real keys have), stored as Q8_0,
            // and as f16 copies of the values the Q8_0 row does not hold exactly.
            std::vector<float> x(c.hd);
            for (int b = 0; b < n_blocks; ++b)
                for (int slot = 0; slot < c.bs; ++slot)
                    for (int h = 0; h < c.n_kv; ++h)
                        for (int which = 0; which < 2; ++which) {
                            for (int i = 0; i < c.hd; ++i)
                                x[i] = nd(rng) * (i % 13 == 0 ? 6.0f : 1.0f);
                            if (which) {
                                kv_store_v(q8, vq.data(), b, slot, h, x.data());
                                kv_store_v(f16, vh.data(), b, slot, h, x.data());
                            } else {
                                kv_store_k(q8, kq.data(), b, slot, h, x.data());
                                kv_store_k(f16, kh.data(), b, slot, h, x.data());
                            }
                        }
            std::vector<float> qf((size_t)c.len * c.n_head * c.hd);
            for (float& v : qf) v = nd(rng);
            std::vector<float> out(qf.size()), ref(qf.size()), ref16(qf.size());
            std::vector<AttentionQuery> qs(c.len), rs(c.len), hs(c.len);
            for (int p = 0; p < c.len; ++p) {
                const size_t at = (size_t)p * c.n_head * c.hd;
                qs[p] = {qf.data() + at, out.data() + at, p, table.data()};
                rs[p] = {qf.data() + at, ref.data() + at, p, table.data()};
                hs[p] = {qf.data() + at, ref16.data() + at, p, table.data()};
            }
            attention_paged(pool, q8, kq.data(), vq.data(), qs.data(), c.len);
            attention_paged_ref(pool, q8, kq.data(), vq.data(), rs.data(), c.len);
            attention_paged_ref(pool, f16, kh.data(), vh.data(), hs.data(), c.len);
            // Squared norms: of the f16 output, and of the differences SIMD - reference and
            // Q8_0 reference - f16 reference.
            double norm = 0, d_simd = 0, d_q8 = 0, max_err = 0;
            for (size_t i = 0; i < out.size(); ++i) {
                norm += (double)ref16[i] * ref16[i];
                d_simd += (double)(out[i] - ref[i]) * (out[i] - ref[i]);
                d_q8 += (double)(ref[i] - ref16[i]) * (ref[i] - ref16[i]);
                max_err = std::max(max_err, (double)std::fabs(out[i] - ref[i]));
            }
            const double rel_simd = std::sqrt(d_simd / norm), rel_q8 = std::sqrt(d_q8 / norm);
            std::printf("%s hd %3d group %d len %4d: SIMD vs reference %.1e, vs f16 %.2e\n",
                        kv_type_name(kv), c.hd, c.n_head / c.n_kv, c.len, rel_simd, rel_q8);
            // SIMD against reference: float rounding, and now and then a flipped f16 rounding of
            // a probability (values here reach ~20, so one such flip moves an output by ~1e-2).
            EXPECT_LT(max_err, 1e-2);
            EXPECT_LT(rel_simd, 1e-4);
            // Q8_0 against f16: each K/V value is off by at most 1/254 of its block's largest, a
            // few percent of the output at most; BF16: each value and query element off by at
            // most 2^-9 of itself, ~0.3% of the output; a wrong scale, block, dim pair or row
            // would be off by the output's own size (relative error ~1).
            EXPECT_LT(rel_q8, kv == KvType::Q8_0 ? 0.05 : kv == KvType::BF16 ? 0.01 : 0.5);
            EXPECT_GT(rel_q8, 0.0);  // the Q8_0 rows really were read
        }
    }
}

// Against Q8_0 keys the query is quantized too (llama.cpp's CPU path does the same): each
// head's f16-rounded query as Q8_0 blocks, per key the exact integer dot product of each
// 32-dim block, acc = fma(isum, key scale x query scale, acc), times the scale. Expected
// outputs computed here from that definition with the reference quantizer, and shown to
// differ from what float queries against the dequantized keys would give (so the test tells
// the two apart).
TEST(Attention, Q8KeysMeetQueriesQuantizedAsQ8_0) {
    const int hd = 64, bs = 16, n_keys = 5, group = 2;
    std::mt19937 rng(17);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    AttentionShape s{group, 1, hd, bs, 1.0f / std::sqrt((float)hd), 0};
    s.kv_type = KvType::Q8_0;
    s.n_blocks = 1;
    std::vector<uint16_t> kc((size_t)kv_cache_elems(s)), vc(kc.size());
    std::vector<std::vector<float>> keys(n_keys, std::vector<float>(hd)), vals = keys;
    for (int j = 0; j < n_keys; ++j) {
        for (float& x : keys[j]) x = nd(rng);
        for (float& x : vals[j]) x = nd(rng);
        kv_store_k(s, kc.data(), 0, j, 0, keys[j].data());
        kv_store_v(s, vc.data(), 0, j, 0, vals[j].data());
    }
    std::vector<float> q((size_t)group * hd);
    for (float& x : q) x = nd(rng);
    const int32_t table[1] = {0};

    // Expected outputs, with quantized queries (as specified) and with float ones.
    auto expected = [&](bool quantized_query) {
        std::vector<float> out((size_t)group * hd, 0.0f);
        for (int g = 0; g < group; ++g) {
            std::vector<float> qh(hd);
            for (int i = 0; i < hd; ++i) qh[i] = fp16_to_fp32(fp32_to_fp16(q[g * hd + i]));
            std::vector<BlockQ8_0> qb(hd / 32), kb(hd / 32), vb(hd / 32);
            quantize_row(TensorType::Q8_0, qh.data(), qb.data(), hd, nullptr);
            std::vector<double> score(n_keys);
            for (int j = 0; j < n_keys; ++j) {
                quantize_row(TensorType::Q8_0, keys[j].data(), kb.data(), hd, nullptr);
                float acc = 0;
                double dot = 0;
                for (int b = 0; b < hd / 32; ++b) {
                    int32_t isum = 0;
                    for (int i = 0; i < 32; ++i) {
                        isum += qb[b].qs[i] * kb[b].qs[i];
                        dot += (double)(qh[32 * b + i] * (fp16_to_fp32(kb[b].d) * kb[b].qs[i]));
                    }
                    acc = std::fma((float)isum, fp16_to_fp32(kb[b].d) * fp16_to_fp32(qb[b].d), acc);
                }
                score[j] = quantized_query ? acc * s.scale : (float)dot * s.scale;
            }
            const double mx = *std::max_element(score.begin(), score.end());
            double sum = 0;
            for (double& x : score) sum += x = std::exp(x - mx);
            for (int j = 0; j < n_keys; ++j) {
                const float p = fp16_to_fp32(fp32_to_fp16((float)(score[j] / sum)));
                quantize_row(TensorType::Q8_0, vals[j].data(), vb.data(), hd, nullptr);
                for (int i = 0; i < hd; ++i)
                    out[g * hd + i] += p * fp16_to_fp32(vb[i / 32].d) * vb[i / 32].qs[i % 32];
            }
        }
        return out;
    };
    const std::vector<float> want = expected(true), other = expected(false);
    auto max_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
        double m = 0;
        for (size_t i = 0; i < a.size(); ++i) m = std::max(m, (double)std::fabs(a[i] - b[i]));
        return m;
    };
    EXPECT_GT(max_diff(want, other), 1e-3);  // the two definitions are told apart here
    ThreadPool pool(1);
    for (bool simd : {false, true}) {
        SCOPED_TRACE(simd ? "SIMD" : "reference");
        std::vector<float> out((size_t)group * hd);
        const AttentionQuery query{q.data(), out.data(), n_keys - 1, table};
        if (simd)
            attention_paged(pool, s, kc.data(), vc.data(), &query, 1);
        else
            attention_paged_ref(pool, s, kc.data(), vc.data(), &query, 1);
        EXPECT_LT(max_diff(out, want), 1e-4);
    }
}

// kv_store_k / kv_load_k and the V pair round-trip every cache type, f16 K blocks are
// dims-major (dim d of slot i at d * block_size + i, the layout the kernels read), Q8_0 ones
// [head_dim / 4][block_size][4] bytes plus 128 (its scales after its values), and a store
// touches only its own position.
TEST(Attention, CacheStoreLoadLayout) {
    const int n_kv = 2, hd = 64, bs = 16, n_blocks = 3;
    std::mt19937 rng(9);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (KvType kv : kKvTypes) {
        SCOPED_TRACE(kv_type_name(kv));
        AttentionShape s{8, n_kv, hd, bs, 0.125f, 0};
        s.kv_type = kv;
        s.n_blocks = n_blocks;
        const size_t elems = (size_t)kv_cache_elems(s);
        std::vector<uint16_t> kc(elems, 0), vc(elems, 0);
        std::vector<float> x(hd), back(hd), expect(hd);
        for (float& v : x) v = nd(rng);
        kv_store_k(s, kc.data(), 2, 5, 1, x.data());
        kv_store_v(s, vc.data(), 2, 5, 1, x.data());
        // The values as the type holds them: a row quantized and dequantized.
        std::vector<uint16_t> row((size_t)kv_row_elems(kv, hd));
        quantize_row(kv_tensor_type(kv), x.data(), row.data(), hd, nullptr);
        dequantize_row(kv_tensor_type(kv), row.data(), expect.data(), hd);
        kv_load_k(s, kc.data(), 2, 5, 1, back.data());
        EXPECT_EQ(back, expect);
        kv_load_v(s, vc.data(), 2, 5, 1, back.data());
        EXPECT_EQ(back, expect);
        // Block 2 of head 1: a cache this small (under 2 MiB) is one group, [kv head][block]
        // [block data], so head 1's blocks follow all 3 of head 0's.
        ASSERT_EQ(elems, (size_t)n_blocks * n_kv * bs * kv_row_elems(kv, hd));
        const int64_t base = ((int64_t)1 * n_blocks + 2) * bs * kv_row_elems(kv, hd);
        if (kv == KvType::F16) {
            for (int d = 0; d < hd; ++d) {
                EXPECT_EQ(kc[(size_t)(base + d * bs + 5)], row[(size_t)d]) << "dim " << d;
                EXPECT_EQ(vc[(size_t)(base + 5 * hd + d)], row[(size_t)d]) << "dim " << d;
            }
        }
        if (kv == KvType::Q8_0) {
            // Values 4 dims to a key's dword (dim d of slot 5 at byte (d / 4 * block_size + 5)
            // * 4 + d % 4), each plus 128; then the scales as [head_dim / 32][block_size] f16;
            // V rows stay GGUF Q8_0 blocks (34 bytes each).
            const uint8_t* kb = (const uint8_t*)(kc.data() + base);
            const uint8_t* vb = (const uint8_t*)(vc.data() + base);
            const uint8_t* q = (const uint8_t*)row.data();
            for (int b = 0; b < hd / 32; ++b) {
                EXPECT_EQ(std::memcmp(kb + hd * bs + 2 * (b * bs + 5), q + 34 * b, 2), 0);
                for (int i = 0; i < 32; ++i) {
                    const int d = 32 * b + i;
                    EXPECT_EQ(kb[(d / 4 * bs + 5) * 4 + d % 4], (uint8_t)(q[34 * b + 2 + i] + 128))
                        << "dim " << d;
                }
            }
            EXPECT_EQ(std::memcmp(vb + 5 * 2 * kv_row_elems(kv, hd), q, 2 * row.size()), 0);
        }
        if (kv == KvType::BF16) {
            // Dim pairs: dims 2i and 2i + 1 of slot 5 at elements (i * block_size + 5) * 2
            // and + 1; V rows as they are.
            for (int d = 0; d < hd; ++d) {
                EXPECT_EQ(kc[(size_t)(base + (d / 2 * bs + 5) * 2 + d % 2)], row[(size_t)d])
                    << "dim " << d;
                EXPECT_EQ(vc[(size_t)(base + 5 * hd + d)], row[(size_t)d]) << "dim " << d;
            }
        }
        if (kv == KvType::Q4_0) {
            // Values dims-major two to a byte: slot 5 lies in the first half of the 16 slots,
            // so dim d is the low nibble of byte d * 8 + 5 (GGUF value i of a block: the low
            // nibble of its byte i, or the high one of byte i - 16); then the scales as for
            // Q8_0. V rows stay GGUF Q4_0 blocks (18 bytes each).
            const uint8_t* kb = (const uint8_t*)(kc.data() + base);
            const uint8_t* vb = (const uint8_t*)(vc.data() + base);
            const uint8_t* q = (const uint8_t*)row.data();
            for (int b = 0; b < hd / 32; ++b) {
                EXPECT_EQ(std::memcmp(kb + hd * bs / 2 + 2 * (b * bs + 5), q + 18 * b, 2), 0);
                for (int i = 0; i < 32; ++i) {
                    const int level =
                        i < 16 ? q[18 * b + 2 + i] & 0x0F : q[18 * b + 2 + i - 16] >> 4;
                    EXPECT_EQ(kb[(32 * b + i) * bs / 2 + 5], level) << "dim " << 32 * b + i;
                }
            }
            EXPECT_EQ(std::memcmp(vb + 5 * 2 * kv_row_elems(kv, hd), q, 2 * row.size()), 0);
        }
        size_t nonzero_k = 0, nonzero_v = 0;
        for (size_t i = 0; i < elems; ++i) {
            nonzero_k += kc[i] != 0;
            nonzero_v += vc[i] != 0;
            if (kc[i] != 0) {
                EXPECT_GE((int64_t)i, base);
                EXPECT_LT((int64_t)i, base + bs * kv_row_elems(kv, hd));
            }
        }
        EXPECT_GT(nonzero_k, (size_t)kv_row_elems(kv, hd) / 2);
        // f16 and bf16 K hold a row in as many elements as V; dims-major Q8_0 and Q4_0 spread their
        // bytes over one element per dim plus the scales.
        if (kv == KvType::F16 || kv == KvType::BF16)
            EXPECT_EQ(nonzero_k, nonzero_v);
        else
            EXPECT_LE(nonzero_k, (size_t)(hd + hd / 32));
        // Q4_0: slot 13 shares slot 5's bytes (their high nibbles); writing it leaves slot 5
        // as it was, and both read back as their rows dequantized.
        if (kv == KvType::Q4_0) {
            std::vector<float> y(hd), expect_y(hd);
            for (float& v : y) v = nd(rng);
            kv_store_k(s, kc.data(), 2, 13, 1, y.data());
            quantize_row(kv_tensor_type(kv), y.data(), row.data(), hd, nullptr);
            dequantize_row(kv_tensor_type(kv), row.data(), expect_y.data(), hd);
            kv_load_k(s, kc.data(), 2, 13, 1, back.data());
            EXPECT_EQ(back, expect_y);
            kv_load_k(s, kc.data(), 2, 5, 1, back.data());
            EXPECT_EQ(back, expect);
        }
    }
}

// A cache over 2 MiB is split in groups of 2^k blocks (the most that fit in 2 MiB with every
// head), each [kv head][block in group][block data]: a row lands where that rule says, a cache
// is sized in whole groups, and the SIMD kernels agree with the reference when a sequence's
// blocks are scattered over several groups.
TEST(Attention, CachesOverTwoMiBAreGroupedByHead) {
    const int n_head = 16, n_kv = 4, hd = 64, bs = 16, len = 5000;
    const int64_t n_blocks = 600;  // 600 blocks x 4 heads x 2 KiB: 4.7 MiB, groups of 256
    AttentionShape s{n_head, n_kv, hd, bs, 0.125f, 0};
    s.n_blocks = n_blocks;
    const int64_t head_block = (int64_t)bs * hd;  // f16 elements of one block of one head
    EXPECT_EQ(kv_cache_elems(s), (int64_t)768 * n_kv * head_block);  // 3 whole groups
    // Block 300 = group 1, block 44 in it; head 2: after group 0 (4 heads x 256 blocks) and
    // heads 0-1 of group 1.
    EXPECT_EQ(kv_block_offset(s, 300, 2), ((int64_t)(1 * n_kv + 2) * 256 + 44) * head_block);
    EXPECT_EQ(kv_block_offset(s, 255, 3), ((int64_t)3 * 256 + 255) * head_block);
    // A small cache is one group of exactly its blocks.
    AttentionShape small = s;
    small.n_blocks = 10;
    EXPECT_EQ(kv_cache_elems(small), (int64_t)10 * n_kv * head_block);
    EXPECT_EQ(kv_block_offset(small, 7, 3), ((int64_t)3 * 10 + 7) * head_block);

    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int used = (len + bs - 1) / bs;
    std::vector<int32_t> table(used);
    for (int i = 0; i < used; ++i) table[i] = (int32_t)((i * 37 + 11) % n_blocks);  // all groups
    for (KvType kv : kKvTypes) {
        SCOPED_TRACE(kv_type_name(kv));
        AttentionShape t = s;
        t.kv_type = kv;
        std::vector<uint16_t> kc((size_t)kv_cache_elems(t)), vc(kc.size());
        std::vector<float> x(hd);
        for (int p = 0; p < len; ++p)
            for (int h = 0; h < n_kv; ++h) {
                for (float& v : x) v = nd(rng);
                kv_store_k(t, kc.data(), table[p / bs], p % bs, h, x.data());
                for (float& v : x) v = nd(rng);
                kv_store_v(t, vc.data(), table[p / bs], p % bs, h, x.data());
            }
        // A few queries late in the sequence (the reference is O(keys) per query).
        const int32_t positions[] = {len - 1, 4200, 4097, 3000};
        std::vector<float> q((size_t)4 * n_head * hd), out(q.size()), ref(q.size());
        for (float& v : q) v = nd(rng);
        std::vector<AttentionQuery> qs, rs;
        for (int i = 0; i < 4; ++i) {
            qs.push_back({q.data() + (size_t)i * n_head * hd, out.data() + (size_t)i * n_head * hd,
                          positions[i], table.data()});
            rs.push_back(
                {qs.back().q, ref.data() + (size_t)i * n_head * hd, positions[i], table.data()});
        }
        ThreadPool pool(2);
        attention_paged(pool, t, kc.data(), vc.data(), qs.data(), 4);
        attention_paged_ref(pool, t, kc.data(), vc.data(), rs.data(), 4);
        double max_err = 0;
        for (size_t i = 0; i < out.size(); ++i)
            max_err = std::max(max_err, (double)std::fabs(out[i] - ref[i]));
        EXPECT_LT(max_err, 2e-3);
        // And the reference itself reads what was stored: position 4200's keys through
        // kv_load_k equal its row read straight from the group rule above.
        std::vector<float> back(hd);
        kv_load_k(t, kc.data(), table[4200 / bs], 4200 % bs, 1, back.data());
        if (kv == KvType::F16) {
            const int64_t b = table[4200 / bs];
            const int64_t at = ((b / 256 * n_kv + 1) * 256 + b % 256) * head_block;
            for (int d = 0; d < hd; ++d)
                EXPECT_EQ(back[d], fp16_to_fp32(kc[(size_t)(at + d * bs + 4200 % bs)]));
        }
    }
}

// A block-type cache needs whole 32-value blocks per row.
TEST(Attention, BlockTypeCachesRefuseOtherHeadSizes) {
    EXPECT_TRUE(kv_type_fits(KvType::Q8_0, 64));
    EXPECT_FALSE(kv_type_fits(KvType::Q8_0, 80));
    EXPECT_FALSE(kv_type_fits(KvType::Q4_0, 16));
    EXPECT_TRUE(kv_type_fits(KvType::F16, 80));
    ThreadPool pool(1);
    AttentionShape s{2, 1, 16, 4, 0.25f, 0};
    s.kv_type = KvType::Q8_0;
    s.n_blocks = 1;
    std::vector<uint16_t> cache(64);
    std::vector<float> q(32), out(32);
    const int32_t table[1] = {0};
    AttentionQuery query{q.data(), out.data(), 0, table};
    EXPECT_THROW(attention_paged(pool, s, cache.data(), cache.data(), &query, 1),
                 std::invalid_argument);
    // A shape without its cache's block count cannot address the cache (its layout depends
    // on the count).
    AttentionShape no_blocks{2, 1, 32, 4, 0.25f, 0};
    std::vector<uint16_t> big(4 * 32);
    std::vector<float> row(32, 1.0f);
    EXPECT_THROW(attention_paged(pool, no_blocks, big.data(), big.data(), &query, 1),
                 std::invalid_argument);
    EXPECT_THROW(kv_store_k(no_blocks, big.data(), 0, 0, 0, row.data()), std::invalid_argument);
    EXPECT_THROW(kv_store_v(no_blocks, big.data(), 0, 0, 0, row.data()), std::invalid_argument);
    EXPECT_EQ(parse_kv_type("Q8_0"), KvType::Q8_0);
    EXPECT_EQ(parse_kv_type("f16"), KvType::F16);
    EXPECT_EQ(parse_kv_type("q4_0"), KvType::Q4_0);
    EXPECT_EQ(parse_kv_type("BF16"), KvType::BF16);
    EXPECT_STREQ(kv_type_name(KvType::BF16), "bf16");
    // BF16 keys are stored in pairs of dims: an even head size.
    EXPECT_TRUE(kv_type_fits(KvType::BF16, 80));
    EXPECT_FALSE(kv_type_fits(KvType::BF16, 81));
    EXPECT_THROW(require_kv_type_fits(KvType::BF16, 81), std::invalid_argument);
    EXPECT_FALSE(parse_kv_type("q4_1").has_value());
    EXPECT_FALSE(parse_kv_type("").has_value());
}

}  // namespace
}  // namespace lokal
