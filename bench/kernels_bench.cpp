// Kernel benchmarks: matmul at TinyLlama-1.1B shapes (decode, batched decode, prefill), the
// single-row dot per type, activation conversion, and the machine's read bandwidth as the
// roofline for decode (bytes/s of weights read vs bytes/s the memory delivers).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "ops/attention.h"
#include "ops/gemm_common.h"
#include "ops/huge_pages.h"
#include "ops/kernels.h"
#include "ops/matmul.h"
#include "ops/thread_pool.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "quant/quantize.h"

namespace lokal {
namespace {

ThreadPool& pool_for(int threads) {
    static std::unique_ptr<ThreadPool> pools[9];
    if (!pools[threads]) pools[threads] = std::make_unique<ThreadPool>(threads);
    return *pools[threads];
}

// Random weights quantized once per (type, shape); quantizing K-quants is slow, so only one
// distinct row block is quantized and repeated (the kernels do not care).
const std::vector<uint8_t>& weights(TensorType t, int64_t rows, int64_t cols) {
    static std::vector<std::pair<std::tuple<int, int64_t, int64_t>, std::vector<uint8_t>>> cache;
    const auto key = std::make_tuple((int)t, rows, cols);
    for (auto& [k, v] : cache)
        if (k == key) return v;
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0, 1);
    const size_t rb = row_size(t, cols);
    std::vector<uint8_t> w(rb * (size_t)rows);
    const int64_t distinct = std::min<int64_t>(rows, 64);
    std::vector<float> x((size_t)cols);
    for (int64_t r = 0; r < distinct; ++r) {
        for (float& v : x) v = d(rng);
        quantize_row(t, x.data(), w.data() + rb * (size_t)r, cols, nullptr);
    }
    for (int64_t r = distinct; r < rows; ++r)
        std::memcpy(w.data() + rb * (size_t)r, w.data() + rb * (size_t)(r % distinct), rb);
    cache.emplace_back(key, std::move(w));
    return cache.back().second;
}

// args: type, rows, cols, tokens, threads
void BM_Matmul(benchmark::State& st) {
    const TensorType t = (TensorType)st.range(0);
    const int64_t rows = st.range(1), cols = st.range(2), tokens = st.range(3);
    ThreadPool& pool = pool_for((int)st.range(4));
    const auto& w = weights(t, rows, cols);
    MatView m{t, cols, rows, row_size(t, cols), w.data()};
    // pack:1 runs on row-interleaved weights (what the model loader makes) when the kernels
    // read them.
    std::vector<uint8_t> packed;
    const bool pack = st.range(5) && matmul_can_pack(t);
    if (pack) {
        packed = w;
        matmul_pack(t, cols, rows, packed.data());
        m.data = packed.data();
        m.packed = true;
    }
    std::mt19937 rng(2);
    std::normal_distribution<float> d(0, 1);
    std::vector<float> x((size_t)(cols * tokens)), y((size_t)(rows * tokens));
    for (float& v : x) v = d(rng);
    MatmulScratch s;
    for (auto _ : st) {
        matmul(pool, m, x.data(), cols, tokens, y.data(), rows, s);
        benchmark::DoNotOptimize(y.data());
    }
    st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)w.size());
    st.counters["tok/s"] =
        benchmark::Counter((double)tokens * (double)st.iterations(), benchmark::Counter::kIsRate);
    st.counters["GMAC/s"] = benchmark::Counter((double)rows * cols * tokens * st.iterations() / 1e9,
                                               benchmark::Counter::kIsRate);
    st.SetLabel(std::string(type_name(t)) + " " + kernels().isa + (pack ? " packed" : ""));
}

void matmul_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"type", "rows", "cols", "tok", "thr", "pack"});
    const TensorType types[] = {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q6_K,
                                TensorType::Q8_0, TensorType::F16,  TensorType::BF16};
    const int64_t shapes[][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
    for (TensorType t : types)
        for (auto& sh : shapes)
            for (int64_t tok : {1, 2, 4, 5, 6, 8, 12, 16, 512}) {
                if (tok == 512 && sh[0] == 32000) continue;  // the output layer runs for 1 token
                for (int thr : {1, 2})
                    for (int pack : {0, 1}) b->Args({(int64_t)t, sh[0], sh[1], tok, thr, pack});
            }
}
BENCHMARK(BM_Matmul)->Apply(matmul_args)->Unit(benchmark::kMillisecond)->UseRealTime();

// Decode as a model runs it: every matrix comes from memory. Copies of one matrix, 256 MiB
// in all, are used in turn (one copy repeated would sit in L3 if it fits there, and the
// 32000 x 2048 output layer partly does). args: type, rows, cols, threads, tokens (8: the
// batched decode of 8 sequences).
void BM_MatmulFromMemory(benchmark::State& st) {
    const TensorType t = (TensorType)st.range(0);
    const int64_t rows = st.range(1), cols = st.range(2);
    ThreadPool& pool = pool_for((int)st.range(3));
    const auto& w = weights(t, rows, cols);
    const size_t copies = std::max<size_t>(2, ((size_t)256 << 20) / w.size());
    // On huge pages where the system grants them, as the model loader puts the weights.
    ZeroBuffer<uint8_t> all(w.size() * copies);
    for (size_t c = 0; c < copies; ++c) std::memcpy(all.data() + c * w.size(), w.data(), w.size());
    const bool pack = matmul_can_pack(t);
    for (size_t c = 0; c < copies && pack; ++c)
        matmul_pack(t, cols, rows, all.data() + c * w.size());
    std::mt19937 rng(2);
    std::normal_distribution<float> d(0, 1);
    const int64_t tokens = st.range(4);
    std::vector<float> x((size_t)(cols * tokens)), y((size_t)(rows * tokens));
    for (float& v : x) v = d(rng);
    MatmulScratch s;
    size_t c = 0;
    for (auto _ : st) {
        MatView m{t, cols, rows, row_size(t, cols), all.data() + c * w.size()};
        m.packed = pack;
        matmul(pool, m, x.data(), cols, tokens, y.data(), rows, s);
        benchmark::DoNotOptimize(y.data());
        c = (c + 1) % copies;
    }
    st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)w.size());
    st.counters["GMAC/s"] = benchmark::Counter((double)rows * cols * tokens * st.iterations() / 1e9,
                                               benchmark::Counter::kIsRate);
    st.SetLabel(std::string(type_name(t)) + " " + kernels().isa + (pack ? " packed" : "") + ", " +
                std::to_string(copies) + " copies");
}
BENCHMARK(BM_MatmulFromMemory)
    ->ArgNames({"type", "rows", "cols", "thr", "tok"})
    ->ArgsProduct({{(int64_t)TensorType::Q4_0, (int64_t)TensorType::Q4_K, (int64_t)TensorType::Q6_K,
                    (int64_t)TensorType::Q8_0},
                   {2048, 5632},
                   {2048},
                   {1, 2},
                   {1, 8}})
    ->Args({(int64_t)TensorType::Q4_0, 2048, 5632, 1, 1})
    ->Args({(int64_t)TensorType::Q4_0, 2048, 5632, 2, 1})
    ->Args({(int64_t)TensorType::Q8_0, 2048, 5632, 1, 1})
    ->Args({(int64_t)TensorType::Q8_0, 2048, 5632, 2, 1})
    ->Apply([](benchmark::internal::Benchmark* b) {
        // Float weights (F16, BF16 models and their output layers): row-major, not packed.
        for (TensorType t : {TensorType::F16, TensorType::BF16})
            for (int64_t rows : {2048, 5632})
                for (int thr : {1, 2})
                    for (int tok : {1, 8}) b->Args({(int64_t)t, rows, 2048, thr, tok});
    })
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// A decode matmul's fixed cost per call: as BM_MatmulFromMemory, but the copies lie 1 MiB
// apart and are taken in a shuffled order, as a model's consecutive matmuls read tensors
// at unrelated addresses (consecutive copies let the hardware prefetcher run on from one call
// into the next). Time per call against the matrix's bytes over several row counts: the
// intercept is what every call pays besides reading its weights (start, wake, the threads'
// finish). args: type, rows, cols, threads.
void BM_MatmulScattered(benchmark::State& st) {
    const TensorType t = (TensorType)st.range(0);
    const int64_t rows = st.range(1), cols = st.range(2);
    ThreadPool& pool = pool_for((int)st.range(3));
    const auto& w = weights(t, rows, cols);
    const size_t gap = (size_t)1 << 20, stride = (w.size() + gap + 4095) / 4096 * 4096;
    const size_t copies = std::max<size_t>(8, ((size_t)256 << 20) / stride);
    ZeroBuffer<uint8_t> all(stride * copies);
    const bool pack = matmul_can_pack(t);
    for (size_t c = 0; c < copies; ++c) {
        std::memcpy(all.data() + c * stride, w.data(), w.size());
        if (pack) matmul_pack(t, cols, rows, all.data() + c * stride);
    }
    std::vector<size_t> order(copies);
    for (size_t c = 0; c < copies; ++c) order[c] = c;
    std::shuffle(order.begin(), order.end(), std::mt19937(3));
    std::mt19937 rng(2);
    std::normal_distribution<float> d(0, 1);
    std::vector<float> x((size_t)cols), y((size_t)rows);
    for (float& v : x) v = d(rng);
    MatmulScratch s;
    size_t i = 0;
    for (auto _ : st) {
        MatView m{t, cols, rows, row_size(t, cols), all.data() + order[i] * stride};
        m.packed = pack;
        matmul(pool, m, x.data(), cols, 1, y.data(), rows, s);
        benchmark::DoNotOptimize(y.data());
        i = (i + 1) % copies;
    }
    st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)w.size());
    st.SetLabel(std::string(type_name(t)) + " " + kernels().isa + (pack ? " packed" : "") + ", " +
                std::to_string(copies) + " copies");
}
BENCHMARK(BM_MatmulScattered)
    ->ArgNames({"type", "rows", "cols", "thr"})
    ->ArgsProduct({{(int64_t)TensorType::Q4_0, (int64_t)TensorType::Q4_K},
                   {256, 1024, 2048, 8192},
                   {2048},
                   {1, 2}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Compute-bound view: a matrix that stays in L2 (256 x 2048), one thread.
void matmul_l2_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"type", "rows", "cols", "tok", "thr", "pack"});
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K,
                         TensorType::Q5_K, TensorType::IQ4_XS, TensorType::F16})
        for (int64_t tok : {1, 2, 4, 8, 64})
            for (int pack : {0, 1}) b->Args({(int64_t)t, 256, 2048, tok, 1, pack});
}
BENCHMARK(BM_Matmul)->Name("BM_MatmulL2")->Apply(matmul_l2_args)->Unit(benchmark::kMicrosecond);

// The GEMM alone on one row group (the table's row_group rows x 2048, packed) with everything
// in L1, called directly: no activation conversion, no thread pool, no memory stalls. What is
// left is the kernel's own instruction stream (unpack, integer sums, float epilogue), so
// "MAC/cycle"-style comparisons between types and token counts are not blurred by the rest.
// args: type, tokens.
void BM_GemmL1(benchmark::State& st) {
    const TensorType t = (TensorType)st.range(0);
    const int64_t tokens = st.range(1), cols = 2048;
    const KernelTable& kt = kernels();
    const int64_t rows = kt.row_group;
    std::vector<uint8_t> w = weights(t, rows, cols);
    const bool pack = matmul_can_pack(t) && rows % 8 == 0;
    if (pack) matmul_pack(t, cols, rows, w.data());
    const TensorType dot = type_traits(t).dot_type;
    if (!kt.gemm[(int)t] || dot == TensorType::F32 || !gemm::is_gemm_quant(t)) {
        st.SkipWithError("no quantized GEMM for this type on this table");
        return;
    }
    std::mt19937 rng(2);
    std::normal_distribution<float> d(0, 1);
    std::vector<float> x((size_t)cols);
    const size_t act_row = row_size(dot, cols), side_row = gemm::side_words(t, cols);
    std::vector<uint8_t> act(act_row * (size_t)tokens);
    std::vector<uint32_t> side(side_row * (size_t)tokens);
    for (int64_t i = 0; i < tokens; ++i) {
        for (float& v : x) v = d(rng);
        kt.quantize[(int)dot](x.data(), act.data() + act_row * (size_t)i, cols);
        gemm::prepare_side(t, act.data() + act_row * (size_t)i, cols,
                           side.data() + side_row * (size_t)i);
    }
    std::vector<float> y((size_t)(rows * tokens));
    const size_t scratch_bytes = (gemm::scratch_bytes(tokens) + 63) / 64 * 64;
    std::unique_ptr<uint8_t, decltype(&std::free)> scratch(
        static_cast<uint8_t*>(std::aligned_alloc(64, scratch_bytes)), &std::free);
    gemm::GemmArgs a;
    a.type = t;
    a.n = cols;
    a.w = w.data();
    a.w_stride = row_size(t, cols);
    a.packed = pack;
    a.n_rows = rows;
    a.act = act.data();
    a.act_stride = act_row;
    a.side = side.data();
    a.side_stride = side_row;
    a.n_tokens = tokens;
    a.y = y.data();
    a.ldy = rows;
    for (auto _ : st) {
        kt.gemm[(int)t](a, 0, rows, scratch.get());
        benchmark::DoNotOptimize(y.data());
    }
    st.counters["GMAC/s"] = benchmark::Counter((double)rows * cols * tokens * st.iterations() / 1e9,
                                               benchmark::Counter::kIsRate);
    st.SetLabel(std::string(type_name(t)) + " " + kt.isa + (pack ? " packed" : ""));
}
BENCHMARK(BM_GemmL1)
    ->ArgNames({"type", "tok"})
    ->ArgsProduct({{2, 3, 6, 7, 8, 20, 10, 11, 12, 13, 14, 23},  // every quantized GEMM type
                   {1, 4, 8, 64}})
    ->Unit(benchmark::kNanosecond);

// Single-row dot, n = 4096 (vec_dot runs the GEMM kernel on one row).
void BM_VecDot(benchmark::State& st) {
    const TensorType t = (TensorType)st.range(0);
    const int64_t n = 4096;
    const auto& w = weights(t, 1, n);
    std::vector<float> x((size_t)n, 0.5f);
    std::vector<uint8_t> a(row_size(type_traits(t).dot_type, n));
    quantize_row_dot(type_traits(t).dot_type, x.data(), a.data(), n);
    const VecDotFn f = (st.range(1) ? reference_kernels() : kernels()).vec_dot[(int)t];
    if (!f) {
        st.SkipWithError("unsupported type");
        return;
    }
    for (auto _ : st) benchmark::DoNotOptimize(f(n, w.data(), a.data()));
    st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)w.size());
    st.SetLabel(std::string(type_name(t)) + (st.range(1) ? " vec_dot_ref" : " ") +
                (st.range(1) ? "" : kernels().isa));
}
// ref:1 is the quant layer's scalar reference (the matmul's inner loop before this work).
BENCHMARK(BM_VecDot)
    ->ArgsProduct({{0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20, 23, 30}, {0, 1}})
    ->ArgNames({"type", "ref"});

void BM_QuantizeAct(benchmark::State& st) {
    const TensorType d = (TensorType)st.range(0);
    const int64_t n = 4096;
    std::vector<float> x((size_t)n);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0, 1);
    for (float& v : x) v = nd(rng);
    std::vector<uint8_t> out(row_size(d, n));
    const QuantizeRowFn f = kernels().quantize[(int)d];
    for (auto _ : st) {
        f(x.data(), out.data(), n);
        benchmark::DoNotOptimize(out.data());
    }
    st.SetBytesProcessed((int64_t)st.iterations() * n * 4);
    st.SetLabel(type_name(d));
}
BENCHMARK(BM_QuantizeAct)
    ->Arg((int)TensorType::Q8_0)
    ->Arg((int)TensorType::Q8_K)
    ->Arg((int)TensorType::BF16);

// The matmuls of a TinyLlama layer in a forward pass's order (Q/K/V 2560 x 2048, wo 2048 x
// 2048, gate/up 11264 x 2048, down 2048 x 5632), `layers` copies of them used in turn, Q4_0
// packed on huge pages (Q4_0, Q4_K or Q8_0): what the weights' streams cost when every call starts
// a new matrix (BM_MatmulFromMemory reads copies of one matrix back to back). Per layer.
void BM_MatmulLayer(benchmark::State& st) {
    const TensorType t = (TensorType)st.range(0);
    ThreadPool& pool = pool_for((int)st.range(1));
    const int64_t tokens = st.range(2), layers = 22;
    const int64_t shapes[4][2] = {{2560, 2048}, {2048, 2048}, {11264, 2048}, {2048, 5632}};
    size_t total = 0, offsets[4];
    for (int i = 0; i < 4; ++i) {
        offsets[i] = total;
        total += (size_t)shapes[i][0] * row_size(t, shapes[i][1]);
    }
    ZeroBuffer<uint8_t> all(total * layers);
    for (int i = 0; i < 4; ++i) {
        const auto& w = weights(t, shapes[i][0], shapes[i][1]);
        for (int64_t l = 0; l < layers; ++l) {
            uint8_t* dst = all.data() + total * l + offsets[i];
            std::memcpy(dst, w.data(), w.size());
            matmul_pack(t, shapes[i][1], shapes[i][0], dst);
        }
    }
    std::mt19937 rng(3);
    std::normal_distribution<float> d(0, 1);
    std::vector<float> x((size_t)(5632 * tokens)), y((size_t)(11264 * tokens));
    for (float& v : x) v = d(rng);
    MatmulScratch s;
    int64_t l = 0;
    for (auto _ : st) {
        for (int i = 0; i < 4; ++i) {
            MatView m{t, shapes[i][1], shapes[i][0], row_size(t, shapes[i][1]),
                      all.data() + total * l + offsets[i]};
            m.packed = true;
            matmul(pool, m, x.data(), shapes[i][1], tokens, y.data(), shapes[i][0], s);
        }
        benchmark::DoNotOptimize(y.data());
        l = (l + 1) % layers;
    }
    st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)total);
    double macs = 0;
    for (auto& sh : shapes) macs += (double)sh[0] * sh[1] * tokens;
    st.counters["GMAC/s"] =
        benchmark::Counter(macs * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MatmulLayer)
    ->ArgNames({"type", "thr", "tok"})
    ->ArgsProduct({{(int)TensorType::Q4_0, (int)TensorType::Q4_K, (int)TensorType::Q8_0},
                   {1, 2},
                   {1, 8}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// One step of attention over `ctx` cached positions, at a model's head shape: the last
// `tokens` positions' queries of each sequence (1: a decode step; more: a prompt's block of
// queries after ctx - tokens cached positions); ref:1 selects the scalar reference, kv:1 a
// Q8_0 cache, kv:2 Q4_0, kv:3 BF16; seqs > 1: that many sequences' queries in one call, each with
// its own blocks (a batched decode step).
// sharp > 0: K and V rows drawn at random (N(0, 1)) and queries N(0, sharp^2) instead of the
// same row everywhere: sharp attention, most probabilities rounding to 0 (a trained model's
// heads over a long context), which the values pass skips by whole runs of keys.
void attention_step(benchmark::State& st, int n_head, int n_kv, int hd, int tokens,
                    float sharp = 0) {
    const int ctx = (int)st.range(0), bs = 16;
    ThreadPool& pool = pool_for((int)st.range(2));
    const KvType kv_type = kKvTypes[st.range(4)];
    const int seqs = (int)st.range(5);
    const int64_t row = kv_row_elems(kv_type, hd);
    const int n_blocks = (ctx + bs - 1) / bs;
    std::vector<int32_t> table((size_t)n_blocks * seqs);
    for (int i = 0; i < n_blocks * seqs; ++i) table[i] = i;
    // layers > 1: that many separate caches, used in turn as a model's layers would be, so
    // K/V come from memory rather than from the last level cache (the decode case).
    const int layers = (int)st.range(3);
    AttentionShape shape{n_head, n_kv, hd, bs, 1.0f / std::sqrt((float)hd), 0};
    shape.kv_type = kv_type;
    shape.n_blocks = (int64_t)n_blocks * seqs;
    const size_t cache_elems = (size_t)kv_cache_elems(shape);
    // The engine's KV buffer type (model/forward.h): on huge pages. Unless sharp, every row
    // holds the same values (1 for keys, 0.5 for values) in the cache's type.
    ZeroBuffer<uint16_t> kc(cache_elems * layers), vc(cache_elems * layers);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int which = 0; which < 2; ++which) {
        std::vector<float> x(hd, which ? 0.5f : 1.0f);
        std::vector<uint16_t> r((size_t)row);
        quantize_row(kv_tensor_type(kv_type), x.data(), r.data(), hd, nullptr);
        uint16_t* dst = (which ? vc : kc).data();
        if (sharp > 0)  // every position its own row, through the cache's layout
            for (int l = 0; l < layers; ++l)
                for (int b = 0; b < (int)shape.n_blocks; ++b)
                    for (int slot = 0; slot < bs; ++slot)
                        for (int h = 0; h < n_kv; ++h) {
                            for (float& v : x) v = nd(rng);
                            uint16_t* base = dst + cache_elems * l;
                            if (which)
                                kv_store_v(shape, base, b, slot, h, x.data());
                            else
                                kv_store_k(shape, base, b, slot, h, x.data());
                        }
        else
            for (size_t i = 0; i < cache_elems * layers; i += (size_t)row)
                std::copy(r.begin(), r.end(), dst + i);
    }
    const size_t per_query = (size_t)n_head * hd;
    std::vector<float> q((size_t)seqs * tokens * per_query, 0.1f), out(q.size());
    if (sharp > 0)
        for (float& v : q) v = sharp * nd(rng);
    std::vector<AttentionQuery> aq;
    for (int i = 0; i < seqs; ++i)
        for (int t = 0; t < tokens; ++t) {
            const size_t at = ((size_t)i * tokens + t) * per_query;
            aq.push_back({q.data() + at, out.data() + at, ctx - tokens + t,
                          table.data() + (size_t)i * n_blocks});
        }
    int layer = 0;
    for (auto _ : st) {
        const uint16_t* k = kc.data() + cache_elems * layer;
        const uint16_t* v = vc.data() + cache_elems * layer;
        layer = (layer + 1) % layers;
        if (st.range(1))
            attention_paged_ref(pool, shape, k, v, aq.data(), (int64_t)aq.size());
        else
            attention_paged(pool, shape, k, v, aq.data(), (int64_t)aq.size());
        benchmark::DoNotOptimize(out.data());
    }
    // K and V bytes of the positions attended, once per call (what a query-blocked kernel
    // would read; a prompt's queries each read their prefix again).
    st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)ctx * seqs * n_kv * row * 2 * 2);
}

// TinyLlama's heads: 32 query heads on 4 K/V heads, head_dim 64.
void BM_AttentionDecode(benchmark::State& st) {
    attention_step(st, 32, 4, 64, 1);
}
BENCHMARK(BM_AttentionDecode)
    ->ArgNames({"ctx", "ref", "thr", "layers", "kv", "seqs"})
    ->Args({4096, 0, 1, 1, 0, 1})
    ->Args({4096, 1, 1, 1, 0, 1})
    ->Args({4096, 0, 2, 1, 0, 1})
    ->Args({4096, 0, 2, 22, 0, 1})
    ->Args({4096, 0, 1, 22, 0, 1})
    ->Args({512, 0, 1, 1, 0, 1})
    ->Args({4096, 0, 1, 1, 1, 1})
    ->Args({4096, 0, 2, 1, 1, 1})
    ->Args({4096, 0, 2, 22, 1, 1})
    ->Args({4096, 0, 1, 1, 2, 1})
    ->Args({4096, 0, 2, 1, 2, 1})
    ->Args({4096, 0, 2, 22, 2, 1})
    ->Args({4096, 0, 1, 1, 3, 1})
    ->Args({4096, 0, 2, 1, 3, 1})
    ->Args({4096, 0, 2, 22, 3, 1})
    // A batched decode step's attention, 8 sequences at short context: in cache, and from
    // memory (100 layers' caches, 79 MB, more than a last-level cache).
    ->Args({96, 0, 2, 1, 0, 8})
    ->Args({96, 0, 2, 100, 0, 8})
    ->Args({96, 0, 1, 100, 0, 8})
    ->Unit(benchmark::kMicrosecond);

// TinyLlama's heads with sharp attention (attention_step's sharp: queries N(0, 16^2) against
// random keys put ~all of each head's weight on a few keys).
void BM_AttentionDecodeSharp(benchmark::State& st) {
    attention_step(st, 32, 4, 64, 1, 16.0f);
}
BENCHMARK(BM_AttentionDecodeSharp)
    ->ArgNames({"ctx", "ref", "thr", "layers", "kv", "seqs"})
    ->Args({4096, 0, 1, 1, 0, 1})
    ->Args({4096, 0, 2, 1, 0, 1})
    ->Args({4096, 0, 2, 22, 0, 1})
    ->Unit(benchmark::kMicrosecond);

// Llama 2 7B's heads: 32 query heads, each its own K/V head (no grouping), head_dim 128: every
// head reads its own keys and values, 16x TinyLlama's bytes per layer at the same depth.
void BM_AttentionDecodeMha(benchmark::State& st) {
    attention_step(st, 32, 32, 128, 1);
}
BENCHMARK(BM_AttentionDecodeMha)
    ->ArgNames({"ctx", "ref", "thr", "layers", "kv", "seqs"})
    ->Args({4096, 0, 2, 1, 0, 1})
    ->Args({4096, 0, 2, 4, 0, 1})
    ->Args({4096, 0, 2, 4, 1, 1})
    ->Args({4096, 0, 1, 4, 0, 1})
    ->Args({4096, 0, 1, 4, 1, 1})
    ->Unit(benchmark::kMicrosecond);

// One K/V head for all 8 query heads (MQA), head_dim 256: Gemma 2B's attention (18 layers).
// With fewer K/V heads than threads a decode step splits the query heads over the threads
// (attention_paged); LOKAL_ATTENTION_SPLIT=0 keeps one task per K/V head (for A/B).
void BM_AttentionDecodeMqa(benchmark::State& st) {
    attention_step(st, 8, 1, 256, 1);
}
BENCHMARK(BM_AttentionDecodeMqa)
    ->ArgNames({"ctx", "ref", "thr", "layers", "kv", "seqs"})
    ->Args({4096, 0, 1, 1, 0, 1})
    ->Args({4096, 0, 2, 1, 0, 1})
    ->Args({4096, 0, 2, 18, 0, 1})
    ->Args({4096, 0, 2, 18, 3, 1})
    ->Unit(benchmark::kMicrosecond);

// A prompt's attention after a long context: 64 queries (positions ctx - 64 .. ctx - 1) of one
// sequence in one call, as a prompt's layer runs them; heads: 0 TinyLlama's (32 on 4 K/V
// heads, head_dim 64), 1 Llama 2 7B's (32 on 32, 128), 2 Llama 3.2 1B's (32 on 8, 64). Each
// query reads its prefix's K and V: 64 x 4,096 keys a head.
void BM_AttentionPrefill(benchmark::State& st) {
    switch (st.range(6)) {
        case 1:
            return attention_step(st, 32, 32, 128, 64);
        case 2:
            return attention_step(st, 32, 8, 64, 64);
        default:
            return attention_step(st, 32, 4, 64, 64);
    }
}
BENCHMARK(BM_AttentionPrefill)
    ->ArgNames({"ctx", "ref", "thr", "layers", "kv", "seqs", "heads"})
    ->Args({4096, 0, 2, 1, 0, 1, 0})
    ->Args({4096, 0, 2, 22, 0, 1, 0})
    ->Args({4096, 0, 2, 4, 0, 1, 1})
    ->Args({4096, 0, 2, 4, 1, 1, 1})
    ->Args({4096, 0, 1, 4, 0, 1, 1})
    ->Args({4096, 0, 2, 8, 0, 1, 2})
    ->Unit(benchmark::kMillisecond);

// Read bandwidth: sum a 1 GiB buffer split across the pool's threads.
void BM_MemRead(benchmark::State& st) {
    ThreadPool& pool = pool_for((int)st.range(0));
    static std::vector<uint64_t> buf = [] {
        std::vector<uint64_t> v((size_t)1 << 27);
        for (size_t i = 0; i < v.size(); ++i) v[i] = i;
        return v;
    }();
    std::vector<uint64_t> sums(8);
    for (auto _ : st) {
        pool.parallel_for((int64_t)buf.size() / 8, [&](int64_t b, int64_t e, int th) {
            uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int64_t i = b * 8; i < e * 8; i += 8) {
                s0 += buf[i] + buf[i + 4];
                s1 += buf[i + 1] + buf[i + 5];
                s2 += buf[i + 2] + buf[i + 6];
                s3 += buf[i + 3] + buf[i + 7];
            }
            sums[th] = s0 + s1 + s2 + s3;
        });
        benchmark::DoNotOptimize(sums.data());
    }
    st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)(buf.size() * 8));
}
BENCHMARK(BM_MemRead)->Arg(1)->Arg(2)->ArgName("thr")->Unit(benchmark::kMillisecond)->UseRealTime();

// Plain reads split as the decode matmuls split their rows: ThreadPool::parallel_spans over
// 16-row units of 18,432 bytes (a Q4_0 group of 2,048 columns), copies of the buffer read in
// turn (256 MiB in all), 2 threads. streams:1 — each thread's span front to back, one forward
// stream; streams:2 — units k and k + P side by side, two far-apart streams per thread (the
// decode pairs' pattern); prefetch:1 — one stream plus a software prefetch per line 8 KiB
// ahead; prefetch:2 — one request per 4 KiB page as far ahead (what `lokal bench --memory`
// and the 32-element decode do); halves:1 — each thread reads a fixed half in one piece
// (parallel_tasks) instead of parallel_spans' pieces and steals. The yardstick for the decode
// kernels' read rate (docs/PERFORMANCE.md, "Decode streams re-examined"). args: units per
// copy, streams, prefetch, halves.
#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t xor_lines(const uint8_t* p, const uint8_t* q, size_t n,
                                                   int prefetch) {
    __m256i a = _mm256_setzero_si256(), b = a;
    for (size_t o = 0; o < n; o += 64) {
        if (prefetch == 1 || (prefetch == 2 && ((uintptr_t)(p + o) & 4095) == 0))
            _mm_prefetch((const char*)p + o + 8192, _MM_HINT_T0);
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i*)(p + o)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i*)(p + o + 32)));
        if (q) {
            a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i*)(q + o)));
            b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i*)(q + o + 32)));
        }
    }
    a = _mm256_xor_si256(a, b);
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}
#else
uint64_t xor_lines(const uint8_t* p, const uint8_t* q, size_t n, int) {
    uint64_t a = 0, v;
    for (size_t o = 0; o < n; o += 8) {
        std::memcpy(&v, p + o, 8), a ^= v;
        if (q) std::memcpy(&v, q + o, 8), a ^= v;
    }
    return a;
}
#endif

void BM_ReadAsDecode(benchmark::State& st) {
    constexpr size_t kUnit = 18432;
    const int64_t units = st.range(0);
    const bool two = st.range(1) == 2, static_halves = st.range(3) != 0;
    const int prefetch = (int)st.range(2);
    if (two && prefetch != 0) return st.SkipWithError("prefetch is measured with one stream");
    ThreadPool& pool = pool_for(2);
    const size_t bytes = kUnit * (size_t)units;
    const size_t copies = std::max<size_t>(2, ((size_t)256 << 20) / bytes);
    ZeroBuffer<uint8_t> all(bytes * copies);
    std::memset(all.data(), 0x5A, bytes * copies);  // real pages, not the shared zero page
    std::vector<uint64_t> sink(2);
    size_t c = 0;
    for (auto _ : st) {
        const uint8_t* base = all.data() + c * bytes;
        const int64_t span_units = two ? units / 2 : units;
        auto read = [&](int64_t u0, int64_t u1, int t) {
            const uint8_t* p = base + (size_t)u0 * kUnit;
            const uint8_t* q = two ? p + (size_t)span_units * kUnit : nullptr;
            sink[(size_t)t] ^= xor_lines(p, q, (size_t)(u1 - u0) * kUnit, prefetch);
        };
        if (static_halves)
            pool.parallel_tasks(2, [&](int64_t k, int t) {
                read(span_units * k / 2, span_units * (k + 1) / 2, t);
            });
        else
            pool.parallel_spans(span_units, 1, read);
        benchmark::DoNotOptimize(sink.data());
        c = (c + 1) % copies;
    }
    st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)bytes);
}
BENCHMARK(BM_ReadAsDecode)
    ->ArgNames({"units", "streams", "prefetch", "halves"})
    ->Args({128, 1, 0, 0})
    ->Args({128, 1, 1, 0})
    ->Args({128, 2, 0, 0})
    ->Args({512, 1, 0, 0})
    ->Args({512, 1, 1, 0})
    ->Args({512, 2, 0, 0})
    ->Args({2048, 1, 0, 0})
    ->Args({2048, 2, 0, 0})
    ->Args({128, 1, 2, 0})
    ->Args({512, 1, 2, 0})
    ->Args({2048, 1, 2, 0})
    ->Args({128, 1, 2, 1})
    ->Args({512, 1, 2, 1})
    ->Args({2048, 1, 2, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// One parallel_for round trip on 2 threads: arg 0 empty, 1 quantizing 8 activation rows of
// 2048 (the batched decode's per-matmul conversion), 2 the same on the caller alone.
void BM_ThreadPoolDispatch(benchmark::State& st) {
    ThreadPool& pool = pool_for(2);
    const int64_t n = 2048, tokens = 8;
    const size_t row = row_size(TensorType::Q8_0, n);
    std::vector<float> x((size_t)(n * tokens), 1.0f);
    std::vector<uint8_t> q(row * (size_t)tokens);
    const QuantizeRowFn quant = kernels().quantize[(int)TensorType::Q8_0];
    auto rows = [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) quant(x.data() + t * n, q.data() + (size_t)t * row, n);
    };
    const int mode = (int)st.range(0);
    for (auto _ : st) {
        if (mode == 0) pool.parallel_for(tokens, [](int64_t, int64_t, int) {});
        if (mode == 1) pool.parallel_for(tokens, rows);
        if (mode == 2) rows(0, tokens, 0);
        benchmark::DoNotOptimize(q.data());
    }
}
BENCHMARK(BM_ThreadPoolDispatch)->Arg(0)->Arg(1)->Arg(2)->ArgName("mode");

}  // namespace
}  // namespace lokal

BENCHMARK_MAIN();
