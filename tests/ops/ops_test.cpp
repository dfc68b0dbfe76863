// Kernels of the forward pass against straightforward reference formulas.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "ops/attention.h"
#include "ops/matmul.h"
#include "ops/ops.h"
#include "ops/thread_pool.h"
#include "quant/fp16.h"

namespace lokal {
namespace {

std::vector<float> random_vec(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
    for (int threads : {1, 2, 3, 4}) {
        ThreadPool pool(threads);
        for (int64_t n : {1, 2, 5, 17, 1000}) {
            std::vector<std::atomic<int>> hits(n);
            pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
                for (int64_t i = b; i < e; ++i) hits[i]++;
            });
            for (int64_t i = 0; i < n; ++i)
                ASSERT_EQ(hits[i].load(), 1) << "threads " << threads << " n " << n;
        }
    }
}

// park() sends the workers to sleep between loops; every loop after it still runs on every
// thread (each index once, and each thread index seen when there are as many tasks), whether
// the workers were asleep, spinning or parked at once again, and two pools take turns as
// `lokal bench`'s contexts do.
TEST(ThreadPool, ParkedPoolsRunEveryLoopOnEveryThread) {
    ThreadPool a(3), b(2);
    for (int round = 0; round < 200; ++round) {
        for (ThreadPool* pool : {&a, &b}) {
            const int nt = pool->n_threads();
            std::vector<std::atomic<int>> hits(64), by_thread(nt);
            pool->parallel_for(64, [&](int64_t i0, int64_t i1, int t) {
                for (int64_t i = i0; i < i1; ++i) hits[i]++;
                by_thread[t]++;
            });
            for (auto& h : hits) ASSERT_EQ(h.load(), 1) << "round " << round;
            for (auto& t : by_thread) ASSERT_EQ(t.load(), 1) << "round " << round;
            if (round % 3 != 2) pool->park();  // and now and then left spinning
            if (round % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }
}

TEST(ThreadPool, ParallelTasksRunsEachTaskOnce) {
    ThreadPool pool(3);
    for (int round = 0; round < 50; ++round) {
        std::vector<std::atomic<int>> hits(37);
        pool.parallel_tasks(37, [&](int64_t t, int) { hits[t]++; });
        for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
}

TEST(ThreadPool, ParallelRangesCoverEachIndexOnceInRangesOfAtLeastTheMinimum) {
    for (int threads : {1, 2, 3, 4}) {
        ThreadPool pool(threads);
        for (int64_t n : {1, 2, 7, 64, 1001})
            for (int64_t min_range : {1, 3, 16}) {
                std::vector<std::atomic<int>> hits(n);
                std::atomic<int64_t> short_ranges{0};
                pool.parallel_ranges(n, min_range, [&](int64_t b, int64_t e, int) {
                    // Only the range that ends at n may be shorter than min_range.
                    if (e - b < min_range && e != n) short_ranges++;
                    for (int64_t i = b; i < e; ++i) hits[i]++;
                });
                EXPECT_EQ(short_ranges.load(), 0);
                for (int64_t i = 0; i < n; ++i)
                    ASSERT_EQ(hits[i].load(), 1)
                        << "threads " << threads << " n " << n << " min " << min_range;
            }
    }
}

TEST(ThreadPool, ParallelSpansCoverEachIndexOnceWithoutCrossingASpan) {
    for (int threads : {1, 2, 3, 4}) {
        ThreadPool pool(threads);
        for (int64_t n : {1, 2, 7, 64, 1001})
            for (int64_t min_range : {1, 3, 16})
                for (int round = 0; round < 6; ++round) {
                    // Pieces of an eighth, a half and all of what is left of a span (rounds
                    // alternate; a divisor below 1 counts as 1).
                    const int64_t divisor = round % 3 == 0 ? 8 : round % 3 == 1 ? 2 : 0;
                    std::vector<std::atomic<int>> hits(n);
                    std::atomic<int64_t> crossing{0}, empty{0};
                    pool.parallel_spans(
                        n, min_range,
                        [&](int64_t b, int64_t e, int) {
                            if (b >= e) empty++;
                            // Thread t owns [n * t / T, n * (t + 1) / T): a range lies in one span
                            // (when more than one thread shares the work).
                            for (int t = 1; t < threads; ++t)
                                if (threads > 1 && n > min_range && b < n * t / threads &&
                                    n * t / threads < e)
                                    crossing++;
                            for (int64_t i = b; i < e; ++i) hits[i]++;
                        },
                        divisor);
                    EXPECT_EQ(crossing.load(), 0) << "threads " << threads << " n " << n;
                    EXPECT_EQ(empty.load(), 0);
                    for (int64_t i = 0; i < n; ++i)
                        ASSERT_EQ(hits[i].load(), 1)
                            << "threads " << threads << " n " << n << " min " << min_range;
                }
    }
}

TEST(Ops, RmsNormMatchesFormula) {
    auto x = random_vec(64, 1), w = random_vec(64, 2);
    std::vector<float> out(64);
    rmsnorm(x.data(), w.data(), out.data(), 64, 1e-5f);
    double ss = 0;
    for (float v : x) ss += v * v;
    const double scale = 1.0 / std::sqrt(ss / 64 + 1e-5);
    for (int i = 0; i < 64; ++i) EXPECT_NEAR(out[i], x[i] * scale * w[i], 1e-5);
}

TEST(Ops, SoftmaxSumsToOne) {
    auto x = random_vec(100, 3, 5.0f);
    softmax(x.data(), 100);
    EXPECT_NEAR(std::accumulate(x.begin(), x.end(), 0.0), 1.0, 1e-5);
}

TEST(Ops, RopeRotatesPairsByPositionAngle) {
    const int hd = 8;
    for (bool neox : {false, true}) {
        auto x = random_vec(2 * hd, 4);
        auto orig = x;
        RopeParams p;
        p.n_rot = hd;
        p.freq_base = 10000;
        p.neox = neox;
        std::vector<float> cos(hd / 2), sin(hd / 2);
        rope_angles(7, p, cos.data(), sin.data());
        rope_rotate(x.data(), 2, hd, cos.data(), sin.data(), p);
        for (int h = 0; h < 2; ++h)
            for (int i = 0; i < hd / 2; ++i) {
                const double theta = 7.0 * std::pow(10000.0, -2.0 * i / hd);
                const int a = h * hd + (neox ? i : 2 * i),
                          b = h * hd + (neox ? i + hd / 2 : 2 * i + 1);
                EXPECT_NEAR(x[a], orig[a] * std::cos(theta) - orig[b] * std::sin(theta), 1e-4);
                EXPECT_NEAR(x[b], orig[a] * std::sin(theta) + orig[b] * std::cos(theta), 1e-4);
            }
        // Position 0 is the identity.
        auto y = orig;
        rope_angles(0, p, cos.data(), sin.data());
        rope_rotate(y.data(), 2, hd, cos.data(), sin.data(), p);
        EXPECT_EQ(y, orig);
    }
}

TEST(Matmul, F32MatchesNaiveAndIsThreadCountInvariant) {
    const int64_t n_in = 96, n_out = 37, n_tok = 5;
    auto w = random_vec(n_in * n_out, 5), x = random_vec(n_in * n_tok, 6);
    MatView m{TensorType::F32, n_in, n_out, (size_t)n_in * 4,
              reinterpret_cast<const uint8_t*>(w.data())};
    std::vector<float> first;
    for (int threads : {1, 2, 3, 4}) {
        ThreadPool pool(threads);
        MatmulScratch s;
        std::vector<float> y(n_out * n_tok);
        matmul(pool, m, x.data(), n_in, n_tok, y.data(), n_out, s);
        for (int64_t t = 0; t < n_tok; ++t)
            for (int64_t o = 0; o < n_out; ++o) {
                double ref = 0;
                for (int64_t i = 0; i < n_in; ++i) ref += (double)w[o * n_in + i] * x[t * n_in + i];
                ASSERT_NEAR(y[t * n_out + o], ref, 1e-4);
            }
        if (first.empty()) first = y;
        EXPECT_EQ(y, first) << "threads " << threads;
        // Batch invariance: each token alone gives the same bits.
        for (int64_t t = 0; t < n_tok; ++t) {
            std::vector<float> one(n_out);
            matmul(pool, m, x.data() + t * n_in, n_in, 1, one.data(), n_out, s);
            for (int64_t o = 0; o < n_out; ++o) ASSERT_EQ(one[o], y[t * n_out + o]);
        }
    }
}

// The matmul profile counts each call under its shape (all outputs' rows together), only
// while enabled, and a take clears it.
TEST(Matmul, ProfileCountsCallsByShapeWhileEnabled) {
    const int64_t n_in = 64;
    auto w = random_vec(n_in * 40, 7), x = random_vec(n_in * 3, 8);
    const auto* wb = reinterpret_cast<const uint8_t*>(w.data());
    MatView a{TensorType::F32, n_in, 24, (size_t)n_in * 4, wb};
    MatView b{TensorType::F32, n_in, 16, (size_t)n_in * 4, wb + 24 * n_in * 4};
    ThreadPool pool(2);
    MatmulScratch s;
    std::vector<float> ya(24 * 3), yb(16 * 3);
    const MatmulOut two[2] = {{a, ya.data(), 24}, {b, yb.data(), 16}};
    matmul_profile_take();
    matmul_multi(pool, two, 2, x.data(), n_in, 1, s);  // not enabled: not counted
    matmul_profile_enable(true);
    for (int i = 0; i < 3; ++i) matmul_multi(pool, two, 2, x.data(), n_in, 1, s);
    matmul(pool, a, x.data(), n_in, 3, ya.data(), 24, s);
    matmul_profile_enable(false);
    matmul(pool, a, x.data(), n_in, 3, ya.data(), 24, s);  // off again
    const std::vector<MatmulShapeStat> p = matmul_profile_take();
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].rows, 24);
    EXPECT_EQ(p[0].tokens, 3);
    EXPECT_EQ(p[0].calls, 1);
    EXPECT_EQ(p[0].weight_bytes, 24.0 * n_in * 4);
    EXPECT_EQ(p[1].rows, 40);
    EXPECT_EQ(p[1].cols, n_in);
    EXPECT_EQ(p[1].tokens, 1);
    EXPECT_EQ(p[1].calls, 3);
    EXPECT_EQ(p[1].weight_bytes, 3 * 40.0 * n_in * 4);
    EXPECT_GT(p[1].seconds, 0.0);
    EXPECT_TRUE(matmul_profile_take().empty());
}

// Attention over a paged cache with scattered blocks equals a plain softmax attention
// over the same (f16-rounded) keys and values, with probabilities rounded to f16 as the
// reference engine does.
TEST(Attention, PagedMatchesNaiveSoftmax) {
    const int n_head = 4, n_kv = 2, hd = 16, bs = 4, n_blocks = 12, len = 19;
    const int kv_dim = n_kv * hd;
    std::vector<uint16_t> kc(n_blocks * bs * kv_dim), vc(kc.size());
    std::vector<int32_t> table = {7, 2, 11, 0, 5};  // scattered, enough for 20 positions
    auto kf = random_vec(len * kv_dim, 7), vf = random_vec(len * kv_dim, 8),
         qf = random_vec(len * n_head * hd, 9);
    for (int p = 0; p < len; ++p)
        for (int i = 0; i < kv_dim; ++i) {
            // V [kv head][block][slot][dim], f16 K [kv head][block][dim][slot] (a cache under
            // 2 MiB is one group of blocks): written out here rather than by the library.
            const int kvh = i / hd, d = i % hd;
            const size_t head_base = ((size_t)kvh * n_blocks + table[p / bs]) * bs * hd;
            kc[head_base + (size_t)d * bs + p % bs] = fp32_to_fp16(kf[p * kv_dim + i]);
            vc[head_base + (size_t)(p % bs) * hd + d] = fp32_to_fp16(vf[p * kv_dim + i]);
        }
    for (int window : {0, 5}) {
        std::vector<float> out(len * n_head * hd);
        std::vector<AttentionQuery> qs(len);
        for (int p = 0; p < len; ++p)
            qs[p] = {qf.data() + p * n_head * hd, out.data() + p * n_head * hd, p, table.data()};
        AttentionShape shape{n_head, n_kv, hd, bs, 1.0f / std::sqrt((float)hd), window};
        shape.n_blocks = n_blocks;
        ThreadPool pool(2);
        attention_paged(pool, shape, kc.data(), vc.data(), qs.data(), len);
        auto r16 = [](float x) { return fp16_to_fp32(fp32_to_fp16(x)); };
        for (int p = 0; p < len; ++p)
            for (int h = 0; h < n_head; ++h) {
                const int kvh = h / (n_head / n_kv);
                const int first = window ? std::max(0, p - window + 1) : 0;
                std::vector<double> s;
                for (int j = first; j <= p; ++j) {
                    double d = 0;
                    for (int i = 0; i < hd; ++i)
                        d += (double)r16(qf[(p * n_head + h) * hd + i]) *
                             r16(kf[j * kv_dim + kvh * hd + i]);
                    s.push_back(d / std::sqrt((double)hd));
                }
                const double mx = *std::max_element(s.begin(), s.end());
                double sum = 0;
                for (double& v : s) sum += v = std::exp(v - mx);
                for (int i = 0; i < hd; ++i) {
                    double ref = 0;
                    for (int j = first; j <= p; ++j)
                        ref +=
                            r16((float)(s[j - first] / sum)) * r16(vf[j * kv_dim + kvh * hd + i]);
                    ASSERT_NEAR(out[(p * n_head + h) * hd + i], ref, 1e-4)
                        << "pos " << p << " head " << h;
                }
            }
    }
}

}  // namespace
}  // namespace lokal
