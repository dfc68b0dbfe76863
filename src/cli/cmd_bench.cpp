// lokal bench: prompt processing and generation speed, llama-bench style, plus batched
// decoding, long-context generation and the memory-bandwidth roofline.
//
// Each test gets its own Context sized for it, as llama-bench does, so one test's KV
// cache never inflates another's memory. Token ids are random: speed does not depend on
// them, and random weights make text meaningless anyway.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <tuple>

#include <unistd.h>
#include <nlohmann/json.hpp>

#include "cli/bench_compute.h"
#include "cli/bench_memory.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "engine/context.h"
#include "ops/kernels.h"
#include "ops/matmul.h"
#include "ops/thread_pool.h"

namespace lokal::cli {

void register_synth_command(CLI::App& app);  // cmd_synth.cpp

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Opts {
    std::string model, store, batches = "1,4,8";
    int n_prompt = 512, n_gen = 128, threads = 0, reps = 5, depth = 0, npp = 32, ntg = 32;
    double roofline_gbps = 0;  // 0: measure
    int buffer_mib = 0;        // 0: default_bandwidth_buffer_bytes()
    bool json = false, memory = false, compute = false, matmul_profile = false;
    KvType cache_type = KvType::F16;
};

struct Stat {
    std::vector<double> samples;  // tokens per second, one per repetition
    double mean = 0, sd = 0;
};

// Mean and sample standard deviation (n - 1), as llama-bench reports them.
Stat stat_of(std::vector<double> v) {
    Stat s;
    s.samples = std::move(v);
    if (s.samples.empty()) return s;
    for (double x : s.samples) s.mean += x;
    s.mean /= (double)s.samples.size();
    if (s.samples.size() > 1) {
        double ss = 0;
        for (double x : s.samples) ss += (x - s.mean) * (x - s.mean);
        s.sd = std::sqrt(ss / (double)(s.samples.size() - 1));
    }
    return s;
}

json stat_json(const Stat& s) {
    return {{"tps_mean", s.mean}, {"tps_sd", s.sd}, {"samples", s.samples}};
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<int> parse_batches(const std::string& s) {
    std::vector<int> out;
    if (s.empty() || s == "0") return out;
    size_t pos = 0;
    while (pos <= s.size()) {
        const size_t comma = std::min(s.find(',', pos), s.size());
        const std::string item = s.substr(pos, comma - pos);
        int v = 0;
        size_t used = 0;
        try {
            v = std::stoi(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used != item.size() || item.empty() || v < 1 || v > 512)
            throw UsageError("-b: '" + item +
                             "' is not a batch size in 1..512 (example: -b 1,4,8)");
        out.push_back(v);
        pos = comma + 1;
    }
    return out;
}

uint64_t bytes_of(const Tensor& t) {
    if (!t.present()) return 0;
    return (uint64_t)t.row_bytes() * (uint64_t)(t.ne[1] * t.ne[2] * t.ne[3]);
}

// The matrices one decoded token multiplies by: fn(tensor, share) for the output and every
// layer's, share 1 except the expert tensors (the routed experts' share of them).
template <class F>
void for_each_token_matrix(const Model& m, F&& fn) {
    fn(m.output, 1.0);
    const double expert_share = m.hp.n_expert ? (double)m.hp.n_expert_used / m.hp.n_expert : 0.0;
    for (const LayerWeights& L : m.layers) {
        for (const Tensor* t :
             {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.router})
            fn(*t, 1.0);
        for (const Tensor* t : {&L.gate_exps, &L.up_exps, &L.down_exps}) fn(*t, expert_share);
    }
}

// Weight bytes one decoded token reads: every matrix once (the routed share of the experts)
// and one row of an untied embedding.
uint64_t weight_bytes_per_token(const Model& m) {
    uint64_t b = m.output.data != m.token_embd.data ? m.token_embd.row_bytes() : 0;
    for_each_token_matrix(
        m, [&](const Tensor& t, double share) { b += (uint64_t)(bytes_of(t) * share); });
    return b;
}

// Seconds one token's matmuls take at the machine's peaks: each matrix's rows x cols
// multiply-adds at the rate of the instruction its type runs on (integer dot products for the
// quantized types, fma for f32 and f16, the BF16 pair dot where the kernels use it), the
// routed experts' share of the expert tensors. with_output: a prompt only computes logits
// for its last token. Attention is not counted (~2% of pp512's arithmetic at TinyLlama
// shape). 0 when a peak is unknown.
double matmul_seconds_per_token(const Model& m, const ComputePeaks& pk, bool with_output) {
    bool unknown = false;
    double s = 0;
    for_each_token_matrix(m, [&](const Tensor& t, double share) {
        if (!t.present() || (&t == &m.output && !with_output)) return;
        const double rate = t.type == TensorType::F32 || t.type == TensorType::F16 ? pk.f32_macs
                            : t.type == TensorType::BF16
                                ? (pk.bf16_macs > 0 ? pk.bf16_macs : pk.f32_macs)
                                : pk.int8_macs;
        if (rate <= 0) unknown = true;
        if (rate > 0) s += (double)t.ne[0] * (double)(t.ne[1] * t.ne[2] * t.ne[3]) * share / rate;
    });
    return unknown ? 0.0 : s;
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int n_vocab, int n) {
    std::uniform_int_distribution<int32_t> d(0, n_vocab - 1);
    std::vector<int32_t> v((size_t)n);
    for (auto& t : v) t = d(rng);
    return v;
}

// The contexts of the tests: positions (every one of a sequence's tokens plus slack), and
// sequences.
constexpr int kBenchBatch = 512;  // prompt tokens per forward pass, as llama-bench's default
ContextParams bench_params(const Opts& o, int n_ctx, int n_seq) {
    ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    cp.n_threads = o.threads;
    cp.n_batch = kBenchBatch;
    cp.kv_type = o.cache_type;
    return cp;
}
int prompt_ctx(const Opts& o) {
    return o.n_prompt + 8;
}
int generation_ctx(const Opts& o, int depth) {
    return depth + o.n_gen + 8;
}
// A block of slack per sequence: each one rounds its positions up to whole KV blocks.
int batched_ctx(const Opts& o) {
    return o.npp + o.ntg + 16;
}

// Before any test runs: every test's context against the machine's memory (UsageError), and a
// note on stderr when a test goes past the model's training context (speed is still measured,
// as llama-bench does, but the user may not have meant it).
void check_contexts(const Opts& o, const Model& m, const std::vector<int>& batches) {
    struct Test {
        int n_ctx, n_seq;
        const char* lower;
    };
    std::vector<Test> tests;
    if (o.n_prompt > 0) tests.push_back({prompt_ctx(o), 1, "lower -p"});
    if (o.n_gen > 0) tests.push_back({generation_ctx(o, 0), 1, "lower -n"});
    if (o.n_gen > 0 && o.depth > 0) tests.push_back({generation_ctx(o, o.depth), 1, "lower -d"});
    for (int B : batches) tests.push_back({batched_ctx(o), B, "lower -b, --npp or --ntg"});
    int longest = 0;
    for (const Test& t : tests) {
        require_context_fits(m, bench_params(o, t.n_ctx, t.n_seq), t.lower);
        longest = std::max(longest, t.n_ctx);
    }
    if (m.hp.n_ctx_train > 0 && longest > m.hp.n_ctx_train)
        std::fprintf(stderr,
                     "bench: a test reaches %d positions, past the model's training context of "
                     "%d (measured all the same)\n",
                     longest, m.hp.n_ctx_train);
}

class Bench {
  public:
    Bench(const Opts& o, const Model& m) : o_(o), m_(m), rng_(1234) {}

    // Prompt processing: n_prompt tokens into an empty cache, logits of the last only.
    Stat prompt() {
        Context ctx(m_, bench_params(o_, prompt_ctx(o_), 1));
        std::vector<float> logits;
        std::vector<double> tps;
        for (int r = -1; r < o_.reps; ++r) {  // r = -1: warm-up (page faults, scratch growth)
            const int32_t seq = ctx.cache().create_sequence();
            const auto toks = random_tokens(rng_, m_.hp.n_vocab, o_.n_prompt);
            const auto t0 = Clock::now();
            ctx.eval(seq, toks, false, logits);
            const double s = seconds_since(t0);
            ctx.cache().free_sequence(seq);
            if (r >= 0) tps.push_back(o_.n_prompt / s);
        }
        return stat_of(std::move(tps));
    }

    // n_gen tokens one at a time after `depth` cached positions (filled once, untimed), made
    // ready (context, fill, a warm-up of a few tokens): each call of the result is one timed
    // repetition and returns its tokens/s.
    std::function<double()> generation(int depth, size_t* kv_bytes = nullptr) {
        auto ctx = std::make_shared<Context>(m_, bench_params(o_, generation_ctx(o_, depth), 1));
        if (kv_bytes) *kv_bytes = ctx->cache().storage.bytes();
        const int32_t seq = ctx->cache().create_sequence();
        if (depth > 0) {
            std::vector<float> logits;
            const auto t0 = Clock::now();
            const std::vector<int32_t> toks = random_tokens(rng_, m_.hp.n_vocab, depth);
            // In prompt-sized pieces (the passes one call would make) with a progress line
            // on a terminal: a long fill takes minutes.
            const bool show = !o_.json && isatty(fileno(stderr));
            for (int i = 0; i < depth; i += kBenchBatch) {
                const int len = std::min(kBenchBatch, depth - i);
                ctx->eval(seq, std::span<const int32_t>(&toks[(size_t)i], (size_t)len), false,
                          logits);
                if (show)
                    std::fprintf(stderr, "\rbench: filling the KV cache: %d/%d positions (%.0f s)",
                                 i + len, depth, seconds_since(t0));
            }
            if (show) std::fprintf(stderr, "\r\033[K");
            if (!o_.json)
                std::fprintf(stderr, "bench: filled %d positions in %.1f s\n", depth,
                             seconds_since(t0));
        }
        auto rep = [this, ctx, seq, depth](int n) {
            std::vector<float> logits;
            const auto toks = random_tokens(rng_, m_.hp.n_vocab, n);
            const auto t0 = Clock::now();
            for (int i = 0; i < n; ++i)
                ctx->eval(seq, std::span<const int32_t>(&toks[(size_t)i], 1), false, logits);
            const double s = seconds_since(t0);
            ctx->cache().truncate(seq, depth);
            return n / s;
        };
        rep(std::min(o_.n_gen, 4));  // warm-up: page faults, scratch growth
        return [rep, n = o_.n_gen] { return rep(n); };
    }

    struct BatchedRep {
        double gen_tps = 0, prompt_tps = 0, gen_seconds = 0;
    };

    // B sequences: their npp-token prompts in one batch, then ntg steps that decode one
    // token of every sequence together (llama-batched-bench's S_TG is B * ntg / time). Each
    // call of the result is one repetition with fresh sequences.
    std::function<BatchedRep()> batched(int B) {
        auto ctx = std::make_shared<Context>(m_, bench_params(o_, batched_ctx(o_), B));
        auto rep = [this, ctx, B] {
            KvCache& kv = ctx->cache();
            Batch batch;
            ForwardOutput out;
            BatchedRep res;
            std::vector<int32_t> seqs((size_t)B);
            for (int b = 0; b < B; ++b) {
                seqs[(size_t)b] = kv.create_sequence();
                if (!kv.prepare(seqs[(size_t)b], 0, o_.npp))
                    throw UsageError("bench: KV cache too small");
                batch.block_tables.push_back(&kv.table(seqs[(size_t)b]));
                const auto toks = random_tokens(rng_, m_.hp.n_vocab, o_.npp);
                for (int i = 0; i < o_.npp; ++i) batch.add(toks[(size_t)i], i, b, i + 1 == o_.npp);
            }
            auto t0 = Clock::now();
            ctx->decode(batch, out);
            res.prompt_tps = (double)B * o_.npp / seconds_since(t0);
            for (int32_t s : seqs) kv.set_length(s, o_.npp);
            matmul_profile_enable(o_.matmul_profile);  // the steps only, not the prompts
            t0 = Clock::now();
            for (int step = 0; step < o_.ntg; ++step) {
                batch.clear();
                const auto toks = random_tokens(rng_, m_.hp.n_vocab, B);
                for (int b = 0; b < B; ++b) {
                    const int32_t s = seqs[(size_t)b], pos = kv.length(s);
                    if (!kv.prepare(s, pos, pos + 1)) throw UsageError("bench: KV cache too small");
                    batch.block_tables.push_back(&kv.table(s));
                    batch.add(toks[(size_t)b], pos, b, true);
                }
                ctx->decode(batch, out);
                for (int32_t s : seqs) kv.set_length(s, kv.length(s) + 1);
            }
            res.gen_seconds = seconds_since(t0);
            matmul_profile_enable(false);
            res.gen_tps = (double)B * o_.ntg / res.gen_seconds;
            for (int32_t s : seqs) kv.free_sequence(s);
            return res;
        };
        rep();  // warm-up (the cache's pages, scratch growth); its matmuls not counted
        matmul_profile_take();
        return rep;
    }

  private:
    const Opts& o_;
    const Model& m_;
    std::mt19937 rng_;
};

// acc += more, shape by shape (both ascending by shape, as matmul_profile_take gives them).
void merge_profile(std::vector<MatmulShapeStat>& acc, const std::vector<MatmulShapeStat>& more) {
    for (const MatmulShapeStat& st : more) {
        auto same = [&](const MatmulShapeStat& a) {
            return a.rows == st.rows && a.cols == st.cols && a.tokens == st.tokens;
        };
        auto it = std::find_if(acc.begin(), acc.end(), same);
        if (it == acc.end()) {
            acc.push_back(st);
            continue;
        }
        it->calls += st.calls;
        it->seconds += st.seconds;
        it->weight_bytes += st.weight_bytes;
    }
    std::sort(acc.begin(), acc.end(), [](const MatmulShapeStat& a, const MatmulShapeStat& b) {
        return std::tie(a.rows, a.cols, a.tokens) < std::tie(b.rows, b.cols, b.tokens);
    });
}

// The median over rounds of a[r] / b[r] (both one sample per round).
double median_ratio(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> r;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i)
        if (b[i] > 0) r.push_back(a[i] / b[i]);
    if (r.empty()) return 0.0;
    std::sort(r.begin(), r.end());
    const size_t n = r.size();
    return n % 2 ? r[n / 2] : (r[n / 2 - 1] + r[n / 2]) / 2;
}

json profile_json(const std::vector<MatmulShapeStat>& prof) {
    json a = json::array();
    for (const MatmulShapeStat& st : prof)
        a.push_back({{"rows", st.rows},
                     {"cols", st.cols},
                     {"tokens", st.tokens},
                     {"calls", st.calls},
                     {"seconds", st.seconds},
                     {"gbps", st.weight_bytes / st.seconds / 1e9}});
    return a;
}

void print_profile(const json& prof) {
    std::printf("| rows × cols | tokens | calls | µs per call | weights GB/s |\n");
    std::printf("|---|---:|---:|---:|---:|\n");
    for (const json& e : prof)
        std::printf("| %lld × %lld | %lld | %lld | %.1f | %.1f |\n",
                    (long long)e["rows"].get<int64_t>(), (long long)e["cols"].get<int64_t>(),
                    (long long)e["tokens"].get<int64_t>(), (long long)e["calls"].get<int64_t>(),
                    1e6 * e["seconds"].get<double>() / (double)e["calls"].get<int64_t>(),
                    e["gbps"].get<double>());
}

std::string gbps(double bytes_per_s) {
    char b[32];
    std::snprintf(b, sizeof b, "%.1f GB/s", bytes_per_s / 1e9);
    return b;
}

std::string tps_cell(const Stat& s) {
    char b[64];
    std::snprintf(b, sizeof b, "%.2f ± %.2f", s.mean, s.sd);
    return b;
}

void run_memory(const Opts& o) {
    constexpr int kPasses = 5;  // of each stream count
    const size_t bytes =
        o.buffer_mib > 0 ? (size_t)o.buffer_mib << 20 : default_bandwidth_buffer_bytes();
    const int n = o.threads > 0 ? o.threads : ThreadPool::default_threads();
    json j = {{"cpu", cpu_model_name()},
              {"buffer_bytes", bytes},
              {"passes", kPasses},
              {"results", json::array()}};
    for (int t : n > 1 ? std::vector<int>{1, n} : std::vector<int>{1}) {
        int streams = 1;
        const double bw = measure_read_bandwidth(t, bytes, kPasses, &streams);
        j["results"].push_back(
            {{"threads", t}, {"gbps", bw / 1e9}, {"streams_per_thread", streams}});
        if (!o.json)
            std::printf("read bandwidth, %2d thread%s: %s (%d stream%s per thread)\n", t,
                        t == 1 ? " " : "s", gbps(bw).c_str(), streams, streams == 1 ? "" : "s");
    }
    if (o.json)
        std::printf("%s\n", j.dump().c_str());
    else
        std::printf(
            "(%s; %.0f MiB buffer, best of %d passes each of 1, 2 and 4 streams per thread)\n",
            cpu_model_name().c_str(), bytes / 1048576.0, kPasses);
}

json peaks_json(const ComputePeaks& p) {
    return {{"isa", p.isa},
            {"threads", p.threads},
            {"int8_gmacs", p.int8_macs / 1e9},
            {"int8_instruction", p.int8_instr},
            {"f32_gmacs", p.f32_macs / 1e9},
            {"f32_instruction", p.f32_instr},
            {"bf16_gmacs", p.bf16_macs > 0 ? json(p.bf16_macs / 1e9) : json(nullptr)}};
}

// "int8 dot 394 G/s (vpdpbusd zmm), f32 fma 98 G/s (vfmadd231ps zmm)": multiply-adds.
std::string peaks_line(const ComputePeaks& p) {
    if (p.isa.empty()) return "not measured (no SIMD kernel path)";
    char b[256];
    int n = std::snprintf(b, sizeof b, "int8 dot %.0f G/s (%s), f32 fma %.0f G/s (%s)",
                          p.int8_macs / 1e9, p.int8_instr.c_str(), p.f32_macs / 1e9,
                          p.f32_instr.c_str());
    if (p.bf16_macs > 0 && n > 0 && n < (int)sizeof b)
        std::snprintf(b + n, sizeof b - n, ", bf16 dot %.0f G/s (vdpbf16ps zmm)",
                      p.bf16_macs / 1e9);
    return b;
}

void run_compute(const Opts& o) {
    const int n = o.threads > 0 ? o.threads : ThreadPool::default_threads();
    json j = {
        {"cpu", cpu_model_name()}, {"kernel_path", kernels().isa}, {"results", json::array()}};
    for (int t : n > 1 ? std::vector<int>{1, n} : std::vector<int>{1}) {
        const ComputePeaks p =
            measure_compute_peaks(kernels().isa, t, kernels().bf16_dot, kComputePasses);
        j["results"].push_back(peaks_json(p));
        if (!o.json)
            std::printf("multiply-adds, %2d thread%s: %s\n", t, t == 1 ? " " : "s",
                        peaks_line(p).c_str());
    }
    if (o.json)
        std::printf("%s\n", j.dump().c_str());
    else
        std::printf("(%s; kernels %s; each the instruction issued back to back, best of %d)\n",
                    cpu_model_name().c_str(), kernels().isa, kComputePasses);
}

void run_model(const Opts& o) {
    const std::vector<int> batches = parse_batches(o.batches);
    const int threads = o.threads > 0 ? o.threads : ThreadPool::default_threads();

    // The roofline first, before the model is mapped, then the peak-RSS counter restarts so
    // the memory figure below is the model's alone.
    double roof = o.roofline_gbps * 1e9;
    const bool measured = roof <= 0;
    if (measured) {
        const size_t bytes =
            o.buffer_mib > 0 ? (size_t)o.buffer_mib << 20 : default_bandwidth_buffer_bytes();
        roof = measure_read_bandwidth(threads, bytes);
    }
    // The compute peaks, the ceiling of prompt processing and batched generation.
    const ComputePeaks peaks = measure_compute_peaks(kernels().isa, threads, kernels().bf16_dot);
    const bool rss_ok = reset_peak_rss();

    LoadedModel lm = load_model(o.model, o.store);
    const Model& m = *lm.model;
    require_kv_type_fits(o.cache_type, m.hp.head_dim);  // before any output, not midway
    check_contexts(o, m, batches);
    const uint64_t per_token = weight_bytes_per_token(m);
    // K and V in f16 for every layer, per cached position.
    const uint64_t kv_per_pos = KvStorage::bytes_per_position(m.hp, o.cache_type);

    json j = {
        {"model", lm.path},
        {"model_name", std::string(m.file->get_string("general.name").value_or(""))},
        {"architecture", m.hp.arch},
        {"parameters", m.n_params()},
        {"weight_bytes", m.weight_bytes()},
        {"weight_bytes_per_token", per_token},
        {"cpu", cpu_model_name()},
        {"kernel_path", kernels().isa},
        {"kernel_bf16_dot", kernels().bf16_dot},
        {"packed_tensors", m.packed_tensors()},
        {"huge_page_bytes", huge_page_bytes()},
        {"transparent_huge_pages", transparent_huge_pages_mode()},
        {"threads", threads},
        {"cache_type", kv_type_name(o.cache_type)},
        {"reps", o.reps},
        {"roofline_gbps", roof / 1e9},
        {"roofline_measured", measured},
        {"compute_peaks", peaks_json(peaks)},
    };
    // Arithmetic time of one token at the peaks: a prompt token (logits only for the last)
    // and a generated one (logits for every sequence).
    const double prompt_s = matmul_seconds_per_token(m, peaks, false);
    const double gen_s = matmul_seconds_per_token(m, peaks, true);
    if (!o.json) {
        std::printf("model:    %s (%s, %.2f B parameters, %.1f MiB of weights)\n", lm.path.c_str(),
                    m.hp.arch.c_str(), m.n_params() / 1e9, m.weight_bytes() / 1048576.0);
        std::printf(
            "machine:  %s; kernels %s%s (%d weight tensors repacked), %d threads, %s KV "
            "cache\n",
            cpu_model_name().c_str(), kernels().isa, kernels().bf16_dot ? " + bf16 dot" : "",
            m.packed_tensors(), threads, kv_type_name(o.cache_type));
        std::printf("memory:   %.0f MiB on huge pages (transparent huge pages: %s)\n",
                    huge_page_bytes() / 1048576.0, transparent_huge_pages_mode().c_str());
        std::printf("roofline: %s read with %d threads%s\n", gbps(roof).c_str(), threads,
                    measured ? " (measured)" : " (given)");
        std::printf("compute:  %s with %d threads (multiply-adds)\n\n", peaks_line(peaks).c_str(),
                    threads);
        std::printf("| test | t/s | notes |\n|---|---:|---|\n");
        std::fflush(stdout);
    }

    Bench bench(o, m);
    // Generation first, alone: the peak RSS right after its warm-up, against what generating
    // has to hold (weights + its KV cache), before any other test's context exists.
    std::function<double()> tg_rep;
    std::vector<MatmulShapeStat> tg_prof;  // the tg test's matmuls, its warm-up included
    if (o.n_gen > 0) {
        size_t kv_bytes = 0;
        matmul_profile_enable(o.matmul_profile);
        tg_rep = bench.generation(0, &kv_bytes);
        matmul_profile_enable(false);
        tg_prof = matmul_profile_take();
        const size_t peak = rss_ok ? peak_rss_bytes() : 0;
        j["memory"] = {{"peak_rss_bytes", rss_ok ? json(peak) : json(nullptr)},
                       {"weights_bytes", m.weight_bytes()},
                       {"kv_bytes", kv_bytes},
                       {"overhead_fraction",
                        rss_ok ? json((double)peak / double(m.weight_bytes() + kv_bytes) - 1.0)
                               : json(nullptr)}};
    }
    if (o.n_prompt > 0) {
        const Stat pp = bench.prompt();
        j["pp"] = stat_json(pp);
        j["pp"]["n_prompt"] = o.n_prompt;
        j["pp"]["compute_fraction"] = prompt_s > 0 ? json(pp.mean * prompt_s) : json(nullptr);
        if (!o.json) {
            char note[64] = "";
            if (prompt_s > 0)
                std::snprintf(note, sizeof note, "%.0f%% of compute peak",
                              100 * pp.mean * prompt_s);
            std::printf("| pp%d | %s | %s |\n", o.n_prompt, tps_cell(pp).c_str(), note);
            std::fflush(stdout);
        }
    }

    // The tests whose ratios are the point (generation at depth 0 and at depth; one and B
    // sequences) repeat in rounds, one repetition of each per round, so both sides of a ratio
    // run within seconds of each other: this VM's speed swings up to 2x within minutes, and
    // one test's reps after the other's had put a swing between them. Each ratio is also
    // reported as the median of its per-round ratios (`paired`).
    std::function<double()> depth_rep;
    if (o.depth > 0 && o.n_gen > 0) depth_rep = bench.generation(o.depth);
    std::vector<std::function<Bench::BatchedRep()>> batched_reps;
    for (int B : batches) batched_reps.push_back(bench.batched(B));
    std::vector<double> tg_s, depth_s;
    std::vector<std::vector<double>> b_gen(batches.size()), b_prompt(batches.size());
    std::vector<double> b_seconds(batches.size(), 0.0);
    std::vector<std::vector<MatmulShapeStat>> b_prof(batches.size());
    for (int r = 0; r < o.reps; ++r) {
        if (tg_rep) {
            matmul_profile_enable(o.matmul_profile);
            tg_s.push_back(tg_rep());
            matmul_profile_enable(false);
            merge_profile(tg_prof, matmul_profile_take());
        }
        if (depth_rep) depth_s.push_back(depth_rep());
        for (size_t i = 0; i < batches.size(); ++i) {
            const Bench::BatchedRep br = batched_reps[i]();
            b_gen[i].push_back(br.gen_tps);
            b_prompt[i].push_back(br.prompt_tps);
            b_seconds[i] += br.gen_seconds;
            merge_profile(b_prof[i], matmul_profile_take());
        }
    }

    Stat tg;
    if (tg_rep) {
        tg = stat_of(tg_s);
        // Per shape, over every token of the tg test (its warm-up tokens included).
        if (o.matmul_profile) j["matmul_profile"] = profile_json(tg_prof);
        const double bw = tg.mean * (double)per_token;
        j["tg"] = stat_json(tg);
        j["tg"]["n_gen"] = o.n_gen;
        j["tg"]["gbps"] = bw / 1e9;
        j["tg"]["roofline_fraction"] = bw / roof;
        if (!o.json) {
            std::printf("| tg%d | %s | %s weights, %.0f%% of roofline |\n", o.n_gen,
                        tps_cell(tg).c_str(), gbps(bw).c_str(), 100 * bw / roof);
            std::fflush(stdout);
        }
    }
    if (depth_rep) {
        const Stat d = stat_of(depth_s);
        // Attention reads the cached K/V too: the KV bytes at mid-run depth.
        const double kv_read = (double)kv_per_pos * (o.depth + o.n_gen / 2.0);
        const double bw = d.mean * (double)per_token;
        const double paired = median_ratio(depth_s, tg_s);
        j["tg_depth"] = stat_json(d);
        j["tg_depth"]["depth"] = o.depth;
        j["tg_depth"]["n_gen"] = o.n_gen;
        j["tg_depth"]["gbps"] = bw / 1e9;
        j["tg_depth"]["kv_bytes_per_token"] = kv_read;
        j["tg_depth"]["roofline_fraction"] = d.mean * ((double)per_token + kv_read) / roof;
        j["tg_depth"]["ratio_to_tg"] = tg.mean > 0 ? d.mean / tg.mean : 0.0;
        j["tg_depth"]["ratio_to_tg_paired"] = paired;
        if (!o.json) {
            std::printf(
                "| tg%d @ d%d | %s | %.0f%% of tg%d (paired by round: %.0f%%); %.0f%% of roofline "
                "with KV reads |\n",
                o.n_gen, o.depth, tps_cell(d).c_str(), 100 * d.mean / tg.mean, o.n_gen,
                100 * paired, 100 * d.mean * ((double)per_token + kv_read) / roof);
            std::fflush(stdout);
        }
    }
    if (!batches.empty()) {
        j["batched"] = json::array();
        // Speed-up over one sequence: the batched run's own B = 1, else the tg test.
        const std::vector<double>* base = nullptr;
        for (size_t i = 0; i < batches.size(); ++i)
            if (batches[i] == 1) base = &b_gen[i];
        if (!base && tg_rep) base = &tg_s;
        const double ref = base ? stat_of(*base).mean : 0.0;
        for (size_t i = 0; i < batches.size(); ++i) {
            const int B = batches[i];
            const Stat g = stat_of(b_gen[i]);
            json e = stat_json(g);
            e["batch"] = B;
            e["npp"] = o.npp;
            e["ntg"] = o.ntg;
            e["prompt_tps"] = stat_of(b_prompt[i]).mean;
            e["compute_fraction"] = gen_s > 0 ? json(g.mean * gen_s) : json(nullptr);
            // Without a one-sequence figure (no -b 1 and -n 0) there is nothing to compare.
            e["speedup"] = ref > 0 ? json(g.mean / ref) : json(nullptr);
            e["speedup_paired"] = base ? json(median_ratio(b_gen[i], *base)) : json(nullptr);
            if (o.matmul_profile) {
                e["matmul_profile"] = profile_json(b_prof[i]);
                e["gen_seconds"] = b_seconds[i];
            }
            j["batched"].push_back(e);
            if (!o.json) {
                char speedup[96] = "";
                if (base)
                    std::snprintf(speedup, sizeof speedup,
                                  "%.2f× one sequence (paired by round: %.2f×); ", g.mean / ref,
                                  median_ratio(b_gen[i], *base));
                char frac[48] = "";
                if (gen_s > 0)
                    std::snprintf(frac, sizeof frac, "%.0f%% of compute peak; ",
                                  100 * g.mean * gen_s);
                std::printf("| batched %d × tg%d | %s | %s%sprompts %.1f t/s |\n", B, o.ntg,
                            tps_cell(g).c_str(), speedup, frac, e["prompt_tps"].get<double>());
                std::fflush(stdout);
            }
        }
    }
    // What the two ceilings allow: one sequence at most roof / bytes per token, B sequences
    // together at most 1 / gen_s tokens per second, so B sequences can be at most their ratio
    // times one (whatever the kernels do).
    const double tg_bound = per_token > 0 ? roof / (double)per_token : 0.0;
    const double batched_bound = gen_s > 0 ? 1.0 / gen_s : 0.0;
    j["bounds"] = {
        {"tg_tps", tg_bound},
        {"batched_tps", batched_bound > 0 ? json(batched_bound) : json(nullptr)},
        {"batched_speedup",
         batched_bound > 0 && tg_bound > 0 ? json(batched_bound / tg_bound) : json(nullptr)}};
    if (o.json) {
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    if (batched_bound > 0 && tg_bound > 0)
        std::printf(
            "\nceilings: one sequence %.1f t/s (roofline ÷ %.0f MiB per token), many sequences "
            "%.1f t/s in total (compute peaks): batched generation at most %.2f× one sequence\n",
            tg_bound, per_token / 1048576.0, batched_bound, batched_bound / tg_bound);
    if (j.contains("memory") && !j["memory"]["peak_rss_bytes"].is_null())
        std::printf(
            "\npeak RSS while generating: %.1f MiB (weights + KV cache: %.1f MiB)\n",
            j["memory"]["peak_rss_bytes"].get<double>() / 1048576.0,
            (double)(m.weight_bytes() + j["memory"]["kv_bytes"].get<uint64_t>()) / 1048576.0);
    if (j.contains("matmul_profile")) {
        std::printf("\nmatmuls during tg%d (warm-up included), by shape:\n\n", o.n_gen);
        print_profile(j["matmul_profile"]);
    }
    if (j.contains("batched"))
        for (const json& e : j["batched"]) {
            if (!e.contains("matmul_profile")) continue;
            double mm = 0;
            for (const json& p : e["matmul_profile"]) mm += p["seconds"].get<double>();
            const double total = e["gen_seconds"].get<double>();
            std::printf(
                "\nmatmuls during batched %d × tg%d (steps only), by shape: %.0f%% of the "
                "steps' %.3f s\n\n",
                e["batch"].get<int>(), o.ntg, total > 0 ? 100 * mm / total : 0.0, total);
            print_profile(e["matmul_profile"]);
        }
}

}  // namespace

void register_bench_commands(CLI::App& app) {
    register_synth_command(app);

    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "bench", "Measure prompt, generation and batched speed (like llama-bench)");
    cmd->add_option("-m,--model", o->model, "GGUF file or stored model name");
    cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens (0: skip)")
        ->check(CLI::Range(0, 1 << 20));
    cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens (0: skip)")
        ->check(CLI::Range(0, 1 << 20));
    cmd->add_option("-b,--batches", o->batches,
                    "Batch sizes for batched generation, comma-separated (0: skip)");
    cmd->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")
        ->check(CLI::Range(0, 1024));
    cmd->add_option("-r,--reps", o->reps, "Repetitions of each test")->check(CLI::Range(1, 1000));
    cmd->add_option("-d,--depth", o->depth, "Also generate with this many positions already cached")
        ->check(CLI::Range(0, 1 << 20));
    cmd->add_option("--npp", o->npp, "Batched: prompt tokens per sequence")
        ->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--ntg", o->ntg, "Batched: generated tokens per sequence")
        ->check(CLI::Range(1, 1 << 16));
    add_cache_type_option(cmd, &o->cache_type);
    cmd->add_option("--roofline", o->roofline_gbps,
                    "Use this read bandwidth (GB/s) instead of measuring it")
        ->check(CLI::Range(0.001, 1e6));
    cmd->add_option("--buffer-mib", o->buffer_mib,
                    "Bandwidth test buffer size (default: 4x the L3, >= 1 GiB)")
        ->check(CLI::Range(1, 1 << 20));
    cmd->add_flag("--memory", o->memory,
                  "Only measure this machine's read bandwidth (1 and N threads)");
    cmd->add_flag("--compute", o->compute,
                  "Only measure this machine's multiply-add peaks (int8 dot, f32 fma, bf16 dot) "
                  "on the kernel path in use, 1 and N threads");
    cmd->add_flag("--json", o->json, "Print one JSON object");
    cmd->add_flag("--matmul-profile", o->matmul_profile,
                  "Time every matmul of the generation and batched tests' steps and print, per "
                  "weight shape, calls, time per call, the rate it read weights at and the "
                  "matmuls' share of the batched steps");
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->callback([o] {
        if (o->memory || o->compute) {
            if (!o->model.empty())
                throw UsageError(o->memory ? "bench: --memory takes no model"
                                           : "bench: --compute takes no model");
            if (o->memory) run_memory(*o);
            if (o->compute) run_compute(*o);
            return;
        }
        if (o->model.empty()) throw UsageError("bench: needs -m MODEL (or --memory, --compute)");
        run_model(*o);
    });
}

}  // namespace lokal::cli
