// The engine's own guarantees: cached decoding equals recomputation, batching does not
// change results, the paged cache shares and copies blocks correctly, sampling is
// reproducible, stop strings are honoured.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>
#include <algorithm>
#include <cstring>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <random>

#include "engine/context.h"
#include "engine/generate.h"
#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "ops/kernels.h"
#include "ops/matmul.h"
#include "shared_path.h"

namespace lokal {
namespace {

std::unique_ptr<Model> load(const char* name) {
    return Model::load(test::shared_path(std::string("models/") + name));
}

const std::vector<int32_t> kTokens = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315,
                                      421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419};

// Decoding token by token with the cache gives the logits a fresh full pass gives.
TEST(Engine, CachedDecodeEqualsRecompute) {
    for (const char* m : {"stories260K.gguf", "tiny-moe.Q8_0.gguf", "tiny-k.Q4_K_M.gguf"}) {
        SCOPED_TRACE(m);
        auto model = load(m);
        const int nv = model->hp.n_vocab;
        ContextParams cp;
        cp.n_ctx = 64;
        cp.n_seq_max = 2;
        cp.block_size = 4;  // many blocks, so block boundaries are crossed
        Context ctx(*model, cp);
        const int32_t inc = ctx.cache().create_sequence();
        std::vector<float> step;
        for (size_t i = 0; i < kTokens.size(); ++i) {
            const int32_t one[1] = {kTokens[i]};
            ctx.eval(inc, one, false, step);
            const int32_t fresh = ctx.cache().create_sequence();
            std::vector<float> full;
            ctx.eval(fresh, std::span<const int32_t>(kTokens.data(), i + 1), false, full);
            ctx.cache().free_sequence(fresh);
            ASSERT_EQ(step.size(), (size_t)nv);
            for (int v = 0; v < nv; ++v)
                ASSERT_EQ(step[v], full[v]) << "token " << i << " logit " << v;
        }
    }
}

// A Q8_0 KV cache keeps the cache's guarantees (decoding with the cache equals a fresh
// pass, bit for bit; batching does not change results: BatchedSequencesEqualSeparateRuns),
// halves the cache, and stays close to the f16 cache's logits.
TEST(Engine, BlockTypeKvCachesMatchRecomputeAndStayCloseToF16) {
    for (KvType kv : {KvType::Q8_0, KvType::Q4_0, KvType::BF16})
        for (const char* m : {"tiny-k.Q8_0.gguf", "tiny-qwen2.Q8_0.gguf", "tiny-moe.Q8_0.gguf"}) {
            SCOPED_TRACE(testing::Message() << m << " " << kv_type_name(kv));
            auto model = load(m);
            const int nv = model->hp.n_vocab;
            ContextParams cp;
            cp.n_ctx = 64;
            cp.n_seq_max = 2;
            cp.block_size = 4;
            cp.kv_type = kv;
            Context q8(*model, cp);
            cp.kv_type = KvType::F16;
            Context f16(*model, cp);
            // Q8_0 rows: 34 bytes per 32 values where f16 takes 64; Q4_0 rows 18; BF16 as f16.
            EXPECT_EQ(q8.cache().storage.bytes() * 64,
                      f16.cache().storage.bytes() * (kv == KvType::Q8_0   ? 34
                                                     : kv == KvType::Q4_0 ? 18
                                                                          : 64));
            const int32_t inc = q8.cache().create_sequence();
            std::vector<float> step, full, ref;
            double diff = 0, norm = 0;
            for (size_t i = 0; i < kTokens.size(); ++i) {
                const int32_t one[1] = {kTokens[i]};
                q8.eval(inc, one, false, step);
                const int32_t fresh = q8.cache().create_sequence();
                q8.eval(fresh, std::span<const int32_t>(kTokens.data(), i + 1), false, full);
                q8.cache().free_sequence(fresh);
                ASSERT_EQ(step.size(), (size_t)nv);
                for (int v = 0; v < nv; ++v)
                    ASSERT_EQ(step[v], full[v]) << "token " << i << " logit " << v;
                const int32_t s16 = f16.cache().create_sequence();
                f16.eval(s16, std::span<const int32_t>(kTokens.data(), i + 1), false, ref);
                f16.cache().free_sequence(s16);
                for (int v = 0; v < nv; ++v) {
                    diff += (double)(step[v] - ref[v]) * (step[v] - ref[v]);
                    norm += (double)ref[v] * ref[v];
                }
            }
            // 8-bit K/V rounding (and bf16's 8 significant bits) moves the logits by a small
            // fraction of their size (a wrong row, dim pair or scale would move them by about
            // their whole size).
            const double rel = std::sqrt(diff / norm);
            std::printf("%s %s: logits %.3g from f16\n", m, kv_type_name(kv), rel);
            // The mixture's router picks experts by rank, so a small change can flip a pick
            // for a token (bf16 here: 0.094, the same with the scalar reference attention; over
            // a whole text its KL from f16 is q8_0's, docs/PERFORMANCE.md "KV cache types").
            const bool moe = std::string(m).find("moe") != std::string::npos;
            EXPECT_GT(rel, 0.0);
            EXPECT_LT(rel, kv == KvType::Q4_0 ? 0.25 : moe ? 0.12 : 0.05);
        }
    // Head size 8: no whole Q8_0 block per row; the error says what to use instead. (A bf16
    // cache takes it: any even head size.)
    auto small = load("stories260K.gguf");
    {
        ContextParams bf;
        bf.n_ctx = 16;
        bf.kv_type = KvType::BF16;
        EXPECT_NO_THROW(Context(*small, bf));
    }
    ContextParams cp;
    cp.n_ctx = 16;
    cp.kv_type = KvType::Q8_0;
    try {
        Context ctx(*small, cp);
        ADD_FAILURE() << "a Q8_0 cache was created for head size 8";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("--cache-type f16"), std::string::npos) << e.what();
    }
}

// Weights repacked at load (when the kernels read packed weights) give the same logits,
// bit for bit, as the file's row-major layout (LOKAL_REPACK=0), for decode and a batch.
TEST(Engine, RepackedWeightsGiveTheSameLogits) {
    for (const char* m : {"tiny-moe.Q8_0.gguf", "tiny-k.Q4_K_M.gguf", "tiny-k.Q4_0.gguf"}) {
        SCOPED_TRACE(m);
        std::vector<float> logits[2];
        int packed[2] = {0, 0};
        for (int plain = 0; plain < 2; ++plain) {
            if (plain) setenv("LOKAL_REPACK", "0", 1);
            auto model = load(m);
            unsetenv("LOKAL_REPACK");
            packed[plain] = model->packed_tensors();
            // Repacked weights live in their own arena; the file's mapping keeps the bytes
            // the file has (a second load of it must see row-major data).
            const Tensor& wq = model->layers[0].wq;
            const gguf::TensorInfo* ti = model->file->find_tensor(wq.name);
            ASSERT_NE(ti, nullptr);
            EXPECT_EQ(wq.packed, wq.data != ti->data);
            if (wq.packed) {
                EXPECT_EQ((uintptr_t)wq.data % 64, 0u);
                EXPECT_NE(std::memcmp(wq.data, ti->data, ti->n_bytes), 0);
            }
            ContextParams cp;
            cp.n_ctx = 64;
            Context ctx(*model, cp);
            const int32_t seq = ctx.cache().create_sequence();
            std::vector<float> out;
            ctx.eval(seq, std::span<const int32_t>(kTokens.data(), 9), true, out);  // batch
            logits[plain] = out;
            const int32_t one[1] = {kTokens[9]};
            ctx.eval(seq, one, false, out);  // decode
            logits[plain].insert(logits[plain].end(), out.begin(), out.end());
        }
        EXPECT_EQ(packed[1], 0);
        if (kernels().reads_packed) {
            EXPECT_GT(packed[0], 0);
        }
        // A load for a command that never computes (lokal info) leaves the weights alone
        // but knows what a computing load would repack.
        auto untouched = Model::load(test::shared_path(std::string("models/") + m), false);
        EXPECT_EQ(untouched->packed_tensors(), 0);
        EXPECT_EQ(untouched->packable_tensors(), packed[0]);
        ASSERT_EQ(logits[0].size(), logits[1].size());
        for (size_t i = 0; i < logits[0].size(); ++i)
            ASSERT_EQ(logits[0][i], logits[1][i]) << "logit " << i;
    }
}

// Every matmul weight is copied into the arena (huge pages): float weights (F16, BF16, F32)
// byte for byte, not repacked; a tied token_embd too, repacked when its type is packable (the
// output matmul shares it), and the embedding lookup reads its rows back unchanged. The
// logits are those of the file's mapping (LOKAL_REPACK=0), bit for bit.
TEST(Engine, FloatWeightsAndTiedEmbeddingsGoToTheArena) {
    int n_tied = 0, n_tied_packed = 0;
    for (const char* m : {"tiny-k.F16.gguf", "tiny-k.BF16.gguf", "tiny-k.f32.gguf",
                          "TinyStories-656K.Q8_0.gguf", "TinyStories-656K.f16.gguf"}) {
        SCOPED_TRACE(m);
        std::vector<float> logits[2];
        for (int plain = 0; plain < 2; ++plain) {
            if (plain) setenv("LOKAL_REPACK", "0", 1);
            auto model = load(m);
            unsetenv("LOKAL_REPACK");
            const uint8_t* lo = model->packed_weights.data();
            const uint8_t* hi = lo + model->packed_weights.size();
            auto in_arena = [&](const Tensor& t) { return t.data >= lo && t.data < hi; };
            const gguf::TensorInfo* embd = model->file->find_tensor(model->token_embd.name);
            ASSERT_NE(embd, nullptr);
            const bool tied = model->file->find_tensor("output.weight") == nullptr;
            EXPECT_EQ(tied, model->output.data == model->token_embd.data);
            std::vector<const Tensor*> check = {&model->layers[0].wq, &model->layers[0].w_down,
                                                &model->output};
            for (const Tensor* t : check) {
                SCOPED_TRACE(t->name);
                const gguf::TensorInfo* ti = model->file->find_tensor(t->name);
                ASSERT_NE(ti, nullptr);
                EXPECT_EQ(in_arena(*t), !plain);
                EXPECT_EQ(t->packed, !plain && kernels().reads_packed && matmul_can_pack(t->type));
                // Every row reads back as the file has it, packed or not.
                const MatView w = t->mat();
                std::vector<uint8_t> row(w.row_bytes);
                for (int64_t r = 0; r < w.n_rows; ++r) {
                    matmul_read_row(w, r, row.data());
                    ASSERT_EQ(std::memcmp(row.data(), ti->data + r * w.row_bytes, w.row_bytes), 0)
                        << "row " << r;
                }
            }
            // A tied embedding is in the arena (the output's data); an untied one stays in the
            // mapping, row-major.
            EXPECT_EQ(in_arena(model->token_embd), tied && !plain);
            if (!tied) {
                EXPECT_FALSE(model->token_embd.packed);
            }
            n_tied += tied && !plain;
            n_tied_packed += tied && model->token_embd.packed;
            ContextParams cp;
            cp.n_ctx = 64;
            Context ctx(*model, cp);
            const int32_t seq = ctx.cache().create_sequence();
            std::vector<float> out;
            const int nv = model->hp.n_vocab;
            std::vector<int32_t> toks;
            for (int32_t t : kTokens) toks.push_back(t % nv);
            ctx.eval(seq, std::span<const int32_t>(toks.data(), 9), true, out);
            logits[plain] = out;
            const int32_t one[1] = {toks[9]};
            ctx.eval(seq, one, false, out);
            logits[plain].insert(logits[plain].end(), out.begin(), out.end());
        }
        ASSERT_EQ(logits[0].size(), logits[1].size());
        for (size_t i = 0; i < logits[0].size(); ++i)
            ASSERT_EQ(logits[0][i], logits[1][i]) << "logit " << i;
    }
    EXPECT_EQ(n_tied, 2);  // the list has tied outputs, one of a packable type
    if (kernels().reads_packed) {
        EXPECT_EQ(n_tied_packed, 1);
    }
}

// Two sequences in one batch give bit-identical logits to each run alone, with either KV
// cache type.
TEST(Engine, BatchedSequencesEqualSeparateRuns) {
    for (KvType kv_type : kKvTypes) {
        SCOPED_TRACE(kv_type_name(kv_type));
        auto model = load("tiny-k.Q8_0.gguf");
        const int nv = model->hp.n_vocab;
        const std::vector<int32_t> a(kTokens.begin(), kTokens.begin() + 11),
            b(kTokens.begin() + 5, kTokens.end());
        ContextParams cp;
        cp.n_ctx = 64;
        cp.n_seq_max = 4;
        cp.kv_type = kv_type;
        Context ctx(*model, cp);
        std::vector<float> la, lb;
        const int32_t sa = ctx.cache().create_sequence(), sb = ctx.cache().create_sequence();
        ctx.eval(sa, a, true, la);
        ctx.eval(sb, b, true, lb);

        const int32_t ta = ctx.cache().create_sequence(), tb = ctx.cache().create_sequence();
        ASSERT_TRUE(ctx.cache().prepare(ta, 0, (int32_t)a.size()));
        ASSERT_TRUE(ctx.cache().prepare(tb, 0, (int32_t)b.size()));
        Batch batch;
        batch.block_tables = {&ctx.cache().table(ta), &ctx.cache().table(tb)};
        // Interleave the two sequences' tokens.
        for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
            if (i < a.size()) batch.add(a[i], (int32_t)i, 0, true);
            if (i < b.size()) batch.add(b[i], (int32_t)i, 1, true);
        }
        ForwardOutput out;
        ctx.decode(batch, out);
        size_t row = 0, ia = 0, ib = 0;
        for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
            if (i < a.size()) {
                for (int v = 0; v < nv; ++v) ASSERT_EQ(out.logits[row * nv + v], la[ia * nv + v]);
                ++row, ++ia;
            }
            if (i < b.size()) {
                for (int v = 0; v < nv; ++v) ASSERT_EQ(out.logits[row * nv + v], lb[ib * nv + v]);
                ++row, ++ib;
            }
        }
    }
}

TEST(KvCache, ForkSharesBlocksAndCopiesOnWrite) {
    HParams hp;
    hp.n_layer = 1;
    hp.n_kv_head = 2;
    hp.head_dim = 2;
    KvCache cache(hp, 32, 4);  // 8 blocks
    const int32_t a = cache.create_sequence();
    ASSERT_TRUE(cache.prepare(a, 0, 6));  // 2 blocks
    cache.set_length(a, 6);
    EXPECT_EQ(cache.free_blocks(), 6);
    // Where a block's data for one head lies (a block's heads are not adjacent).
    AttentionShape shape{2, 2, 2, 4, 1.0f, 0};
    shape.n_blocks = cache.storage.n_blocks;
    auto at = [&](int32_t block, int head, int i) {
        return (size_t)(kv_block_offset(shape, block, head) + i);
    };
    // Mark block 1: distinct values in both heads' K and V, first and last element.
    for (int h = 0; h < 2; ++h)
        for (int i : {0, 7}) {
            cache.storage.k(0)[at(cache.table(a)[1], h, i)] = (uint16_t)(0x3c00 + 16 * h + i);
            cache.storage.v(0)[at(cache.table(a)[1], h, i)] = (uint16_t)(0x4000 + 16 * h + i);
        }
    const int32_t b = cache.fork_sequence(a);
    EXPECT_EQ(cache.free_blocks(), 6);  // nothing copied yet
    EXPECT_EQ(cache.table(b), cache.table(a));
    // b writes position 6 (block 1, shared): that block is copied first, block 0 stays shared.
    ASSERT_TRUE(cache.prepare(b, 6, 7));
    EXPECT_EQ(cache.table(b)[0], cache.table(a)[0]);
    EXPECT_NE(cache.table(b)[1], cache.table(a)[1]);
    for (int h = 0; h < 2; ++h)
        for (int i : {0, 7}) {
            EXPECT_EQ(cache.storage.k(0)[at(cache.table(b)[1], h, i)], 0x3c00 + 16 * h + i);
            EXPECT_EQ(cache.storage.v(0)[at(cache.table(b)[1], h, i)], 0x4000 + 16 * h + i);
        }
    EXPECT_EQ(cache.free_blocks(), 5);
    cache.free_sequence(a);
    EXPECT_EQ(cache.free_blocks(), 6);  // a's block 1 freed, block 0 still held by b
    cache.free_sequence(b);
    EXPECT_EQ(cache.free_blocks(), 8);
}

TEST(KvCache, PrepareFailsCleanlyWhenFull) {
    HParams hp;
    hp.n_layer = 1;
    hp.n_kv_head = 1;
    hp.head_dim = 2;
    KvCache cache(hp, 16, 4);  // 4 blocks
    const int32_t a = cache.create_sequence();
    ASSERT_TRUE(cache.prepare(a, 0, 12));
    const int32_t b = cache.create_sequence();
    EXPECT_FALSE(cache.prepare(b, 0, 8));
    EXPECT_TRUE(cache.table(b).empty());
    EXPECT_EQ(cache.free_blocks(), 1);
    cache.truncate(a, 4);
    EXPECT_EQ(cache.free_blocks(), 3);
    EXPECT_TRUE(cache.prepare(b, 0, 8));
}

// Every layer's K and V lie side by side in one arena, 64-byte aligned, none overlapping
// another; and a cache of 1 MiB a layer commits about its size once every layer is written
// (a buffer per layer took whole 2 MiB huge pages: twice the cache). Resident pages are
// counted with mincore; with huge pages off every layer commits a few 4 KiB pages.
TEST(KvCache, LayersShareOneArenaAndCommitOnlyTheirSize) {
    HParams hp;
    hp.n_layer = 6;
    hp.n_kv_head = 4;
    hp.head_dim = 64;
    KvCache cache(hp, 2048, 16);  // 512 bytes a position: 1 MiB a layer's K, as much its V
    KvStorage& s = cache.storage;
    const size_t layer_bytes = s.layer_elems * sizeof(uint16_t);
    // Padded to whole lines, no more.
    ASSERT_GE(layer_bytes, s.bytes() / (2 * (size_t)hp.n_layer));
    ASSERT_LT(layer_bytes, s.bytes() / (2 * (size_t)hp.n_layer) + 64);
    const char* base = reinterpret_cast<const char*>(s.k(0));
    for (int l = 0; l < hp.n_layer; ++l) {
        const char* k = reinterpret_cast<const char*>(s.k(l));
        const char* v = reinterpret_cast<const char*>(s.v(l));
        EXPECT_EQ((uintptr_t)k % 64, 0u);
        EXPECT_EQ((uintptr_t)v % 64, 0u);
        EXPECT_EQ(k, base + 2 * l * layer_bytes);
        EXPECT_EQ(v, k + layer_bytes);
    }
    // Each layer's first and last element, K then V, all distinct: none overwrites another.
    for (int l = 0; l < hp.n_layer; ++l)
        for (size_t i : {size_t{0}, s.layer_elems - 1}) {
            s.k(l)[i] = (uint16_t)(1 + 4 * l + (i ? 1 : 0));
            s.v(l)[i] = (uint16_t)(1 + 4 * l + 2 + (i ? 1 : 0));
        }
    for (int l = 0; l < hp.n_layer; ++l)
        for (size_t i : {size_t{0}, s.layer_elems - 1}) {
            EXPECT_EQ(s.k(l)[i], 1 + 4 * l + (i ? 1 : 0));
            EXPECT_EQ(s.v(l)[i], 1 + 4 * l + 2 + (i ? 1 : 0));
        }
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t total = 2 * (size_t)hp.n_layer * layer_bytes;
    const uintptr_t first = (uintptr_t)base / page * page;
    const size_t span = ((uintptr_t)base + total - first + page - 1) / page * page;
    std::vector<unsigned char> resident(span / page);
    ASSERT_EQ(mincore((void*)first, span, resident.data()), 0);
    size_t committed = 0;
    for (unsigned char r : resident) committed += (r & 1) ? page : 0;
    EXPECT_LE(committed, total + (size_t{2} << 20))
        << "resident bytes of a " << total << "-byte cache";
}

// A q4_0 cache keeps two slots of a block in each K byte: an odd block size is refused when
// the cache is made (one clear error on the caller's thread, not a throw inside a worker).
TEST(KvCache, Q4_0NeedsAnEvenBlockSize) {
    HParams hp;
    hp.n_layer = 1;
    hp.n_kv_head = 1;
    hp.head_dim = 32;
    EXPECT_THROW(KvCache(hp, 15, 5, KvType::Q4_0), std::invalid_argument);
    EXPECT_NO_THROW(KvCache(hp, 15, 5, KvType::Q8_0));
    EXPECT_NO_THROW(KvCache(hp, 16, 4, KvType::Q4_0));
}

TEST(Sampler, GreedyPicksArgmaxAndSeedsReproduce) {
    std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f};
    SamplerParams p;
    p.temperature = 0;
    EXPECT_EQ(Sampler(p, 5).sample(logits.data()), 1);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    p.seed = 42;
    Sampler s1(p, 5), s2(p, 5);
    std::map<int, int> counts;
    for (int i = 0; i < 2000; ++i) {
        const int a = s1.sample(logits.data()), b = s2.sample(logits.data());
        ASSERT_EQ(a, b);
        counts[a]++;
    }
    // Frequencies follow softmax(logits): token 1 (p≈0.39) more often than token 3 (p≈0.03).
    EXPECT_GT(counts[1], counts[4]);
    EXPECT_GT(counts[4], counts[3]);
    EXPECT_NEAR(counts[1] / 2000.0, 0.39, 0.05);
}

// Greedy picks what the serial rule picks (best = 0; x[i] > x[best] replaces it): the first
// of tied maxima, never a NaN (except one at 0, which nothing replaces), any length (the
// vectorized search has 16-wide steps and a tail).
TEST(Sampler, GreedyIsTheSerialFirstMaximum) {
    auto serial = [](const std::vector<float>& x) {
        int32_t best = 0;
        for (int32_t i = 1; i < (int32_t)x.size(); ++i)
            if (x[i] > x[best]) best = i;
        return best;
    };
    std::mt19937 rng(7);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    SamplerParams p;
    p.temperature = 0;
    int checked = 0;
    for (int n : {1, 2, 15, 16, 17, 31, 33, 100, 32000}) {
        for (int trial = 0; trial < 40; ++trial) {
            std::vector<float> x((size_t)n);
            // Few distinct values, so ties are common; some -inf and NaN.
            for (float& v : x) {
                const int r = (int)(rng() % 20);
                v = r == 0 ? nan : r == 1 ? -inf : (float)(int)(rng() % 7) - 3.0f;
            }
            if (trial % 5 == 0) x[rng() % x.size()] = nan;
            if (trial % 7 == 0) x[0] = nan;
            if (trial % 11 == 0) std::fill(x.begin(), x.end(), -inf);
            if (trial % 13 == 0) x[x.size() - 1] = 100.0f;  // the maximum in the tail
            ASSERT_EQ(Sampler(p, n).sample(x.data()), serial(x)) << "n " << n << " trial " << trial;
            ++checked;
        }
    }
    EXPECT_EQ(checked, 9 * 40);
}

// The sampler ranks only the k best (top-k) or nothing at all (buckets of logits below the
// best, Sampler::draw_buckets); the tokens it draws must be those of the plain definition:
// every candidate sorted (logit descending, ties by id), top-k, then top-p and min-p on the
// temperature-1 probabilities, then the draw on the temperature's probabilities. Top-p and
// the draw walk the sorted candidates with integer weights (each probability in units of
// 2^-53, truncated); every softmax sum runs over the kept candidates in id order. The flat
// distributions below (sd 0.5) cut and draw deep; the rounded ones (sd "0") tie at the cuts.
TEST(Sampler, DrawsWhatTheFullSortDefinitionDraws) {
    auto reference = [](const std::vector<float>& l, const SamplerParams& p, std::mt19937_64& rng) {
        const int32_t n = (int32_t)l.size();
        std::vector<std::pair<float, int32_t>> c;
        for (int32_t i = 0; i < n; ++i) c.push_back({l[(size_t)i], i});
        std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        });
        size_t keep = p.top_k > 0 && p.top_k < n ? (size_t)p.top_k : c.size();
        const float max = c[0].first;
        auto sum_of = [&](float t, size_t k) {
            std::vector<int32_t> ids;
            for (size_t r = 0; r < k; ++r) ids.push_back(c[r].second);
            std::sort(ids.begin(), ids.end());
            double sum = 0;
            for (int32_t i : ids) sum += sampler_exp((l[(size_t)i] - max) / t);
            return sum;
        };
        auto prob = [&](size_t r, float t, double sum) {
            return (float)(sampler_exp((c[r].first - max) / t) / sum);
        };
        auto weight = [](float q) { return q > 0 ? (uint64_t)std::ldexp((double)q, 53) : 0; };
        if (p.top_p < 1.0f || p.min_p > 0) {
            const double s1 = sum_of(1.0f, keep);
            if (p.top_p < 1.0f) {
                const auto target = (uint64_t)std::ldexp((double)p.top_p, 53);
                uint64_t cum = 0;
                for (size_t r = 0; r < keep; ++r)
                    if ((cum += weight(prob(r, 1.0f, s1))) >= target) {
                        keep = r + 1;
                        break;
                    }
            }
            if (p.min_p > 0) {
                size_t k = 1;
                while (k < keep && prob(k, 1.0f, s1) >= prob(0, 1.0f, s1) * p.min_p) ++k;
                keep = k;
            }
        }
        const double sum = sum_of(p.temperature, keep);
        // Each candidate's weight: its probability in units of 2^-53, truncated; the draw is
        // the first rank whose running total passes the generator's top 53 bits.
        const uint64_t u = rng() >> 11;
        uint64_t cum = 0;
        size_t chosen = 0;
        for (size_t r = 0; r < keep; ++r) {
            const uint64_t w = weight(prob(r, p.temperature, sum));
            if (w > 0) chosen = r;
            if (u < (cum += w)) {
                chosen = r;
                break;
            }
        }
        return c[chosen].second;
    };
    struct Filters {
        float temp;
        int top_k;
        float top_p, min_p;
    };
    const Filters filters[] = {
        {1.0f, 0, 1.0f, 0},       {0.7f, 0, 0.9f, 0},       {1.0f, 0, 1.0f, 0.1f},
        {0.8f, 40, 0.95f, 0.05f}, {1.5f, 0, 1.0f, 0},       {1.0f, 3, 1.0f, 0},
        {1e-6f, 0, 0.0f, 0},      {1.0f, 0, 1.0f, 1.0f},    {1.0f, 0, 0.9f, 0},
        {0.8f, 0, 0.95f, 0.05f},  {1.2f, 1000, 0.9f, 0.02f}};
    std::mt19937 gen(11);
    int draws = 0;
    for (int n : {5, 100, 32000})
        for (float sd : {0.5f, 3.0f, 12.0f, 0.0f})
            for (const Filters& f : filters) {
                std::normal_distribution<float> d(0, sd > 0 ? sd : 1.0f);
                std::vector<float> l((size_t)n);
                for (float& v : l) v = sd > 0 ? d(gen) : std::round(4 * d(gen)) / 4;
                l[gen() % l.size()] = -std::numeric_limits<float>::infinity();
                if (n > 5) l[gen() % l.size()] = l[gen() % l.size()];  // a tie
                SamplerParams p;
                p.temperature = f.temp;
                p.top_k = f.top_k;
                p.top_p = f.top_p;
                p.min_p = f.min_p;
                p.seed = gen();
                Sampler s(p, n);
                std::mt19937_64 rng(p.seed);
                for (int k = 0; k < 20; ++k, ++draws)
                    ASSERT_EQ(s.sample(l.data()), reference(l, p, rng))
                        << "n " << n << " sd " << sd << " temp " << f.temp << " draw " << k;
            }
    EXPECT_EQ(draws, 3 * 4 * 11 * 20);
    // NaN logits rank last and never crash the sorts; the draw stays a valid token.
    std::vector<float> l(1000, 1.0f);
    for (size_t i = 0; i < l.size(); i += 7) l[i] = std::numeric_limits<float>::quiet_NaN();
    SamplerParams p;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 0.5f;
    for (int k = 0; k < 20; ++k) {
        const int32_t t = Sampler(p, 1000).sample(l.data());
        EXPECT_TRUE(t >= 0 && t < 1000 && t % 7 != 0) << t;
    }
}

// The sampler's own exponential: within a few ulp of std::exp over the range its
// probabilities use, 0 below it, NaN for NaN, and its four-lane form the same bits as the
// scalar one (tails included), whatever the shift and temperature.
TEST(Sampler, ExpIsCloseToStdExpAndTheSameInFourLanes) {
    std::mt19937 gen(5);
    std::uniform_real_distribution<float> d(-90.0f, 0.0f);
    std::vector<float> x(10003);
    for (float& v : x) v = d(gen);
    const float inf = std::numeric_limits<float>::infinity();
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float edges[] = {0.0f,    -0.0f,  -1e-30f, -1e-7f,  -0.3465736f, -0.3465737f, -1.0f,
                           -86.99f, -87.0f, -87.01f, -100.0f, -inf,        nan};
    std::copy(std::begin(edges), std::end(edges), x.begin());
    double worst = 0;
    for (float v : x) {
        const float e = sampler_exp(v);
        if (std::isnan(v)) {
            EXPECT_TRUE(std::isnan(e));
        } else if (v < -87.0f) {
            EXPECT_EQ(e, 0.0f) << v;
        } else {
            const double ref = std::exp((double)v);
            worst = std::max(worst, std::abs((double)e - ref) / ref);
        }
    }
    EXPECT_LT(worst, 5e-7);  // ~4 ulp of a float
    EXPECT_EQ(sampler_exp(0.0f), 1.0f);
    for (auto [shift, t] : {std::pair{0.0f, 1.0f}, {3.5f, 0.7f}, {-2.0f, 1.3f}, {1.0f, 1e-6f}})
        for (int32_t n : {0, 1, 3, 4, 5, 10003}) {
            std::vector<float> lanes((size_t)n), one((size_t)n);
            sampler_exp_shifted(x.data(), shift, t, lanes.data(), n);
            for (int32_t i = 0; i < n; ++i)
                one[(size_t)i] = sampler_exp((x[(size_t)i] - shift) / t);
            ASSERT_EQ(std::memcmp(lanes.data(), one.data(), (size_t)n * sizeof(float)), 0)
                << "n " << n << " shift " << shift << " t " << t;
        }
}

TEST(Sampler, FiltersAndPenalties) {
    std::vector<float> logits = {3.0f, 2.9f, 0.0f, -5.0f};
    SamplerParams p;
    p.temperature = 1.0f;
    p.top_k = 2;
    p.top_p = 1.0f;
    p.min_p = 0;
    Sampler s(p, 4);
    for (int i = 0; i < 200; ++i) {
        const int t = s.sample(logits.data());
        ASSERT_TRUE(t == 0 || t == 1);
    }
    // min-p drops everything below min_p * p(top).
    p.top_k = 0;
    p.min_p = 0.5f;
    Sampler m(p, 4);
    for (int i = 0; i < 200; ++i) ASSERT_LE(m.sample(logits.data()), 1);
    // Repetition penalty flips a greedy choice away from a repeated token.
    SamplerParams g;
    g.temperature = 0;
    g.repeat_penalty = 2.0f;
    Sampler r(g, 4);
    r.accept(0);
    EXPECT_EQ(r.sample(logits.data()), 1);
    // Logit bias.
    g.repeat_penalty = 1.0f;
    g.logit_bias = {{3, 100.0f}};
    EXPECT_EQ(Sampler(g, 4).sample(logits.data()), 3);
}

TEST(StopMatcher, HoldsBackPrefixesAndCutsAtStop) {
    StopMatcher m({"</s>", "User:"});
    EXPECT_EQ(m.push("Hello "), "Hello ");
    EXPECT_EQ(m.push("wor"), "wor");
    EXPECT_EQ(m.push("ld<"), "ld");  // '<' may start "</s>"
    EXPECT_EQ(m.push("/"), "");
    EXPECT_EQ(m.push("x"), "</x");  // not a stop after all
    EXPECT_EQ(m.push(" Us"), " ");
    EXPECT_EQ(m.push("er: more"), "");
    EXPECT_TRUE(m.stopped());
    EXPECT_EQ(m.flush(), "");
}

}  // namespace
}  // namespace lokal
