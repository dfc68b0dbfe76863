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
#include <utility>

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
    // Lists, as llama-bench takes them (parse_list): prompt and generated tokens, depths,
    // threads, batch sizes.
    std::string prompts = "512", gens = "128", depths = "0", threads = "0", batches = "1,4,8";
    std::vector<std::string> pgs;     // --pg PP,TG, each (llama-bench's -pg)
    std::string cache_types = "f16";  // KV cache types, a list (f16, q8_0, q4_0)
    std::string model, store;
    int reps = 5, npp = 32, ntg = 32;
    double roofline_gbps = 0;  // 0: measure
    int buffer_mib = 0;        // 0: default_bandwidth_buffer_bytes()
    bool json = false, memory = false, compute = false, matmul_profile = false;
};

struct Stat {
    std::vector<double> samples;  // tokens per second, one per repetition
    std::vector<double> starts;   // seconds from the bench's start at which each one began
    double mean = 0, sd = 0;
};

// One repetition: its rate and when it started (seconds from the bench's start).
struct Sample {
    double tps = 0, start_s = 0;
};

// Mean and sample standard deviation (n - 1), as llama-bench reports them.
Stat stat_of(std::vector<double> v, std::vector<double> starts = {}) {
    Stat s;
    s.samples = std::move(v);
    s.starts = std::move(starts);
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
    return {{"tps_mean", s.mean},
            {"tps_sd", s.sd},
            {"samples", s.samples},
            {"sample_start_s", s.starts}};
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// The values of a list flag: comma-separated items, each a number or one of llama-bench's
// ranges "first-last" (every value), "first-last+step", "first-last*factor"; each in
// [lo, hi] and at most kMaxListValues in all (a range like 1-1048576 is refused, not run).
constexpr size_t kMaxListValues = 64, kMaxTests = 256;

// The comma-separated items of a list flag, empty ones kept (the parsers refuse them).
std::vector<std::string> list_items(const std::string& text) {
    std::vector<std::string> items;
    for (size_t pos = 0; pos <= text.size();) {
        const size_t comma = std::min(text.find(',', pos), text.size());
        items.push_back(text.substr(pos, comma - pos));
        pos = comma + 1;
    }
    return items;
}

std::vector<int> parse_list(const std::string& text, const char* flag, int lo, int hi,
                            const char* example) {
    auto bad = [&](const std::string& item, const char* why) {
        return UsageError(std::string(flag) + ": '" + item + "' " + why + " (example: " + example +
                          ")");
    };
    std::vector<int> out;
    for (const std::string& item : list_items(text)) {
        // number [- number [+ step | * factor]], every number without a sign
        size_t i = 0;
        auto number = [&](long long& v) {
            const size_t start = i;
            v = 0;
            for (; i < item.size() && item[i] >= '0' && item[i] <= '9'; ++i)
                v = std::min<long long>(v * 10 + (item[i] - '0'), (long long)hi + 1);
            return i > start;
        };
        long long first = 0, last = 0, step = 1;
        char op = '+';
        bool ok = number(first);
        last = first;
        if (ok && i < item.size() && item[i] == '-') {
            ++i;
            ok = number(last);
            if (ok && i < item.size() && (item[i] == '+' || item[i] == '*')) {
                op = item[i++];
                ok = number(step);
            }
        }
        if (!ok || i != item.size()) throw bad(item, "is not a number or a range");
        if (first < lo || last > hi || first > last)
            throw bad(item, ("is outside " + std::to_string(lo) + ".." + std::to_string(hi) +
                             " or an empty range")
                                .c_str());
        if ((op == '+' && step < 1) || (op == '*' && (step < 2 || first == 0)))
            throw bad(item, "has a step that never reaches the end");
        for (long long v = first; v <= last; v = op == '+' ? v + step : v * step) {
            if (out.size() == kMaxListValues)
                throw bad(
                    text,
                    ("makes more than " + std::to_string(kMaxListValues) + " values").c_str());
            out.push_back((int)v);
        }
    }
    return out;
}

// v in its order without repeats (and without 0s when drop_zero).
std::vector<int> distinct(const std::vector<int>& v, bool drop_zero) {
    std::vector<int> out;
    for (int x : v)
        if (!(drop_zero && x == 0) && std::find(out.begin(), out.end(), x) == out.end())
            out.push_back(x);
    return out;
}

// -t's values in the order given, repeats dropped, 0 the default (physical cores).
std::vector<int> thread_counts(const Opts& o) {
    std::vector<int> t = parse_list(o.threads, "-t", 0, 1024, "-t 2 or -t 1,2");
    for (int& x : t)
        if (x == 0) x = ThreadPool::default_threads();
    return distinct(t, false);
}

// The tests to run: values in the order given, repeats dropped; 0 (skip) dropped from -p,
// -n and -d (-d 0,4096: the plain generation test, which always runs, and one at 4096);
// -b 0 alone skips the batched tests; -t as thread_counts gives it.
struct Plan {
    std::vector<int> prompts, gens, depths, threads, batches;
    std::vector<std::pair<int, int>> pgs;  // (prompt, generated) tokens of each --pg test
    std::vector<KvType> kv_types;          // every test runs with each
};
Plan make_plan(const Opts& o) {
    Plan p;
    p.prompts = distinct(parse_list(o.prompts, "-p", 0, 1 << 20, "-p 512 or -p 128,512"), true);
    p.gens = distinct(parse_list(o.gens, "-n", 0, 1 << 20, "-n 128"), true);
    p.depths =
        distinct(parse_list(o.depths, "-d", 0, 1 << 20, "-d 0,4096 or -d 0-8192+2048"), true);
    if (o.batches != "0")
        p.batches = distinct(parse_list(o.batches, "-b", 1, 512, "-b 1,4,8"), false);
    for (const std::string& pg : o.pgs) {
        const std::vector<int> v = parse_list(pg, "--pg", 1, 1 << 20, "--pg 512,128");
        if (v.size() != 2)
            throw UsageError("--pg: '" + pg + "' is not PROMPT,GENERATED (example: --pg 512,128)");
        if (std::find(p.pgs.begin(), p.pgs.end(), std::pair(v[0], v[1])) == p.pgs.end())
            p.pgs.emplace_back(v[0], v[1]);
    }
    if (p.pgs.size() > kMaxListValues)
        throw UsageError("--pg: more than " + std::to_string(kMaxListValues) + " tests");
    for (const std::string& name : list_items(o.cache_types)) {
        const std::optional<KvType> t = parse_kv_type(name);
        if (!t)
            throw UsageError(
                "--cache-type: '" + name +
                "' is not a KV cache type (use f16, bf16, q8_0 or q4_0, or a list such "
                "as f16,q8_0)");
        if (std::find(p.kv_types.begin(), p.kv_types.end(), *t) == p.kv_types.end())
            p.kv_types.push_back(*t);
    }
    p.threads = thread_counts(o);
    // Lists multiply: refuse a plan that would run for days rather than start it.
    const size_t tests =
        p.kv_types.size() * p.threads.size() *
        ((p.prompts.size() + p.gens.size() + p.pgs.size()) * (1 + p.depths.size()) +
         p.batches.size());
    if (tests > kMaxTests)
        throw UsageError("bench: the lists make " + std::to_string(tests) + " tests, more than " +
                         std::to_string(kMaxTests) +
                         "; give fewer -p, -n, --pg, -d, -b or -t values");
    return p;
}

// --memory and --compute: one thread, then each -t value.
std::vector<int> one_then_threads(const Opts& o) {
    std::vector<int> v{1};
    for (int t : thread_counts(o)) v.push_back(t);
    return distinct(v, false);
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
ContextParams bench_params(KvType kv, int threads, int n_ctx, int n_seq) {
    ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    cp.n_threads = threads;
    cp.n_batch = kBenchBatch;
    cp.kv_type = kv;
    return cp;
}
int prompt_ctx(int n_prompt, int depth) {
    return depth + n_prompt + 8;
}
int generation_ctx(int n_gen, int depth) {
    return depth + n_gen + 8;
}
// A block of slack per sequence: each one rounds its positions up to whole KV blocks.
int batched_ctx(const Opts& o) {
    return o.npp + o.ntg + 16;
}

// Before any test runs: every test's context against the machine's memory (UsageError), and a
// note on stderr when a test goes past the model's training context (speed is still measured,
// as llama-bench does, but the user may not have meant it).
void check_contexts(const Opts& o, const Plan& plan, const Model& m) {
    // Every test of every thread count and KV cache type runs in rounds, so their contexts
    // exist together: each is checked alone (naming the flag to lower), then their sum.
    struct Test {
        int n_ctx, n_seq;
        const char* lower;
    };
    std::vector<Test> tests;
    for (int p : plan.prompts) {
        tests.push_back({prompt_ctx(p, 0), 1, "lower -p"});
        for (int d : plan.depths) tests.push_back({prompt_ctx(p, d), 1, "lower -d"});
    }
    for (const auto& [p, n] : plan.pgs) {
        tests.push_back({prompt_ctx(p + n, 0), 1, "lower --pg"});
        for (int d : plan.depths) tests.push_back({prompt_ctx(p + n, d), 1, "lower -d"});
    }
    for (int n : plan.gens) {
        tests.push_back({generation_ctx(n, 0), 1, "lower -n"});
        for (int d : plan.depths) tests.push_back({generation_ctx(n, d), 1, "lower -d"});
    }
    for (int B : plan.batches) tests.push_back({batched_ctx(o), B, "lower -b, --npp or --ntg"});
    const int threads = plan.threads.front();  // memory does not depend on it
    int longest = 0;
    uint64_t together = 0;
    std::string kv_names;
    for (KvType kv : plan.kv_types) {
        kv_names += (kv_names.empty() ? "" : ", ") + std::string(kv_type_name(kv));
        for (const Test& t : tests) {
            const ContextParams cp = bench_params(kv, threads, t.n_ctx, t.n_seq);
            require_context_fits(m, cp, t.lower);
            together += Context::kv_bytes(m, cp) * plan.threads.size();
            longest = std::max(longest, t.n_ctx);
        }
    }
    require_memory_fits(m, together,
                        kv_names + (plan.kv_types.size() > 1 ? " KV caches" : " KV cache"),
                        "bench: running the tests side by side",
                        plan.kv_types.size() * plan.threads.size() > 1
                            ? "give fewer -p, -n, --pg, -d, -b, -t or --cache-type values"
                            : "give fewer -p, -n, --pg, -d or -b values");
    if (m.hp.n_ctx_train > 0 && longest > m.hp.n_ctx_train)
        std::fprintf(stderr,
                     "bench: a test reaches %d positions, past the model's training context of "
                     "%d (measured all the same)\n",
                     longest, m.hp.n_ctx_train);
}

class Bench {
  public:
    // t0: the bench's start, from which each repetition's start is counted.
    Bench(const Opts& o, const Model& m, KvType kv, int threads, Clock::time_point t0)
        : o_(o), m_(m), kv_(kv), threads_(threads), t0_(t0), rng_(1234) {}

    // Prompt processing: n_prompt tokens after `depth` cached positions (0: into an empty
    // cache; filled once, untimed), logits of the last only. At depth this is a new turn of
    // a long chat: the prompt's attention reads the whole history. n_gen > 0: then n_gen
    // tokens generated one at a time, all in one timed request (llama-bench's pg test: its
    // rate is (n_prompt + n_gen) / seconds). Made ready (context, fill, a warm-up request):
    // each call of the result is one timed repetition.
    std::function<Sample()> prompt(int n_prompt, int depth, int n_gen = 0) {
        auto ctx = std::make_shared<Context>(
            m_, bench_params(kv_, threads_, prompt_ctx(n_prompt + n_gen, depth), 1));
        const int32_t seq = ctx->cache().create_sequence();
        fill(*ctx, seq, depth);
        auto rep = [this, ctx, seq, depth, n_prompt, n_gen] {
            std::vector<float> logits;
            const auto toks = random_tokens(rng_, m_.hp.n_vocab, n_prompt + n_gen);
            const auto t0 = Clock::now();
            ctx->eval(seq, std::span<const int32_t>(toks.data(), (size_t)n_prompt), false, logits);
            for (int i = 0; i < n_gen; ++i)
                ctx->eval(seq, std::span<const int32_t>(&toks[(size_t)(n_prompt + i)], 1), false,
                          logits);
            const double s = seconds_since(t0);
            ctx->cache().truncate(seq, depth);
            ctx->pool().park();  // the next test is another context's (ThreadPool::park)
            return Sample{(n_prompt + n_gen) / s, since_start(t0)};
        };
        rep();  // warm-up: page faults, scratch growth
        return rep;
    }

    // n_gen tokens one at a time after `depth` cached positions (filled once, untimed), made
    // ready (context, fill, a warm-up of a few tokens): each call of the result is one timed
    // repetition.
    std::function<Sample()> generation(int n_gen, int depth, size_t* kv_bytes = nullptr) {
        auto ctx = std::make_shared<Context>(
            m_, bench_params(kv_, threads_, generation_ctx(n_gen, depth), 1));
        if (kv_bytes) *kv_bytes = ctx->cache().storage.bytes();
        const int32_t seq = ctx->cache().create_sequence();
        fill(*ctx, seq, depth);
        auto rep = [this, ctx, seq, depth](int n) {
            std::vector<float> logits;
            const auto toks = random_tokens(rng_, m_.hp.n_vocab, n);
            const auto t0 = Clock::now();
            for (int i = 0; i < n; ++i)
                ctx->eval(seq, std::span<const int32_t>(&toks[(size_t)i], 1), false, logits);
            const double s = seconds_since(t0);
            ctx->cache().truncate(seq, depth);
            ctx->pool().park();
            return Sample{n / s, since_start(t0)};
        };
        rep(std::min(n_gen, 4));  // warm-up: page faults, scratch growth
        return [rep, n_gen] { return rep(n_gen); };
    }

    struct BatchedRep {
        double gen_tps = 0, prompt_tps = 0, gen_seconds = 0, start_s = 0;
    };

    // B sequences: their npp-token prompts in one batch, then ntg steps that decode one
    // token of every sequence together (llama-batched-bench's S_TG is B * ntg / time). Each
    // call of the result is one repetition with fresh sequences.
    std::function<BatchedRep()> batched(int B) {
        auto ctx = std::make_shared<Context>(m_, bench_params(kv_, threads_, batched_ctx(o_), B));
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
            res.start_s = since_start(t0);
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
            ctx->pool().park();
            return res;
        };
        rep();  // warm-up (the cache's pages, scratch growth); its matmuls not counted
        matmul_profile_take();
        return rep;
    }

  private:
    double since_start(Clock::time_point t) const {
        return std::chrono::duration<double>(t - t0_).count();
    }

    // `depth` random tokens into seq (untimed), in prompt-sized pieces (the passes one call
    // would make) with a progress line on a terminal: a long fill takes minutes.
    void fill(Context& ctx, int32_t seq, int depth) {
        if (depth <= 0) return;
        std::vector<float> logits;
        const auto t0 = Clock::now();
        const std::vector<int32_t> toks = random_tokens(rng_, m_.hp.n_vocab, depth);
        const bool show = !o_.json && isatty(fileno(stderr));
        for (int i = 0; i < depth; i += kBenchBatch) {
            const int len = std::min(kBenchBatch, depth - i);
            ctx.eval(seq, std::span<const int32_t>(&toks[(size_t)i], (size_t)len), false, logits);
            if (show)
                std::fprintf(stderr, "\rbench: filling the KV cache: %d/%d positions (%.0f s)",
                             i + len, depth, seconds_since(t0));
        }
        if (show) std::fprintf(stderr, "\r\033[K");
        if (!o_.json)
            std::fprintf(stderr, "bench: filled %d positions in %.1f s\n", depth,
                         seconds_since(t0));
    }

    const Opts& o_;
    const Model& m_;
    KvType kv_;
    int threads_;
    Clock::time_point t0_;
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
    json j = {{"cpu", cpu_model_name()},
              {"buffer_bytes", bytes},
              {"passes", kPasses},
              {"results", json::array()}};
    for (int t : one_then_threads(o)) {
        const ReadBandwidth bw = measure_read_bandwidth(t, bytes, kPasses);
        j["results"].push_back({{"threads", t},
                                {"gbps", bw.bytes_per_s / 1e9},
                                {"streams_per_thread", bw.streams_per_thread},
                                {"page_requests", bw.page_requests}});
        if (!o.json)
            std::printf("read bandwidth, %2d thread%s: %s (%d stream%s per thread%s)\n", t,
                        t == 1 ? " " : "s", gbps(bw.bytes_per_s).c_str(), bw.streams_per_thread,
                        bw.streams_per_thread == 1 ? "" : "s",
                        bw.page_requests ? ", a request per page ahead" : "");
    }
    if (o.json)
        std::printf("%s\n", j.dump().c_str());
    else
        std::printf(
            "(%s; %.0f MiB buffer, best of %d passes each of 1, 2 and 4 streams per thread, "
            "with and without a request per page ahead)\n",
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
    json j = {
        {"cpu", cpu_model_name()}, {"kernel_path", kernels().isa}, {"results", json::array()}};
    for (int t : one_then_threads(o)) {
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

// The machine's ceilings at one thread count.
struct Ceilings {
    int threads = 0;
    double roof = 0;  // read bandwidth, bytes/s
    bool measured = false;
    ComputePeaks peaks;
};

// The tests at one thread count and KV cache type. prepare() makes their contexts ready
// (cache fills, warm-ups); every test of every thread count and type then runs in rounds
// (round(): one repetition of each test), so the two sides of any ratio between them, within
// a run or across thread counts and types, ran seconds apart; report() turns the samples
// into records and table rows.
class TestRun {
  public:
    TestRun(const Opts& o, const Plan& plan, const Model& m, const Ceilings& c, KvType kv,
            Clock::time_point t0)
        : o_(o), plan_(plan), m_(m), c_(c), kv_(kv), bench_(o, m, kv, c.threads, t0) {}
    TestRun(const TestRun&) = delete;  // the tests' closures point into bench_

    const Ceilings& ceilings() const { return c_; }
    KvType kv() const { return kv_; }

    // `memory` gets the peak-RSS figure when `first` (the first run prepared).
    void prepare(bool first, bool rss_ok, json& memory) {
        // Generation first, alone: the peak RSS right after its warm-up, against what
        // generating has to hold (weights + its KV cache), before any other test's context
        // exists.
        for (int n : plan_.gens) {
            size_t kv_bytes = 0;
            matmul_profile_enable(o_.matmul_profile);
            tg_reps_.push_back(bench_.generation(n, 0, &kv_bytes));
            matmul_profile_enable(false);
            tg_prof_.push_back(matmul_profile_take());
            if (first && n == plan_.gens.front()) {
                const size_t peak = rss_ok ? peak_rss_bytes() : 0;
                memory = {{"peak_rss_bytes", rss_ok ? json(peak) : json(nullptr)},
                          {"weights_bytes", m_.weight_bytes()},
                          {"kv_bytes", kv_bytes},
                          {"overhead_fraction",
                           rss_ok ? json((double)peak / double(m_.weight_bytes() + kv_bytes) - 1.0)
                                  : json(nullptr)}};
            }
        }
        for (const auto& [p, n] : prompt_specs()) {
            prompt_reps_.push_back(bench_.prompt(p, 0, n));
            for (int d : plan_.depths) prompt_reps_.push_back(bench_.prompt(p, d, n));
        }
        for (int n : plan_.gens)
            for (int d : plan_.depths) depth_reps_.push_back(bench_.generation(n, d));
        for (int B : plan_.batches) batched_reps_.push_back(bench_.batched(B));
        prompt_.resize(prompt_reps_.size());
        tg_.resize(tg_reps_.size());
        depth_.resize(depth_reps_.size());
        batched_.resize(batched_reps_.size());
        b_prof_.resize(batched_reps_.size());
    }

    // One repetition of each test.
    void round() {
        for (size_t i = 0; i < prompt_reps_.size(); ++i) prompt_[i].add(prompt_reps_[i]());
        for (size_t g = 0; g < tg_reps_.size(); ++g) {
            matmul_profile_enable(o_.matmul_profile);
            tg_[g].add(tg_reps_[g]());
            matmul_profile_enable(false);
            merge_profile(tg_prof_[g], matmul_profile_take());
        }
        for (size_t k = 0; k < depth_reps_.size(); ++k) depth_[k].add(depth_reps_[k]());
        for (size_t i = 0; i < batched_reps_.size(); ++i) {
            const Bench::BatchedRep br = batched_reps_[i]();
            batched_[i].add({br.gen_tps, br.start_s});
            batched_[i].prompt_tps.push_back(br.prompt_tps);
            batched_[i].gen_seconds += br.gen_seconds;
            merge_profile(b_prof_[i], matmul_profile_take());
        }
    }

    // Appends this run's records to `tests` and prints their rows. by_threads, by_kv: the
    // runs at the first thread count with this KV cache type and at this thread count with
    // the first type (nullptr where this run is that one); each test is also given as a ratio
    // to the same test there, paired by round.
    void report(const TestRun* by_threads, const TestRun* by_kv, json& tests) const {
        const size_t nd = plan_.depths.size();
        // Prompts (n == 0) and --pg's prompt-then-generation requests, each also after every
        // depth: prompt_[t * (nd + 1)] plain, then one per depth.
        const std::vector<std::pair<int, int>> specs = prompt_specs();
        for (size_t t = 0; t < specs.size(); ++t) {
            const auto [p, n] = specs[t];
            const std::string kind = n > 0 ? "pg" : "pp";
            const std::string name =
                "pp" + std::to_string(p) + (n > 0 ? "+tg" + std::to_string(n) : "");
            const size_t i0 = t * (nd + 1);
            const Series& ps = prompt_[i0];
            const Stat s = ps.stat();
            json e = record(kind.c_str(), s);
            e["n_prompt"] = p;
            if (n > 0) e["n_gen"] = n;
            std::string note;
            if (n == 0) {  // a pg test's rate mixes two ceilings: no fraction of either
                e["compute_fraction"] = prompt_s_ > 0 ? json(s.mean * prompt_s_) : json(nullptr);
                if (prompt_s_ > 0)
                    note = std::to_string((int)std::lround(100 * s.mean * prompt_s_)) +
                           "% of compute peak";
            }
            const auto plain_of = [i0](const TestRun& r) -> const Series& { return r.prompt_[i0]; };
            note += paired_across(by_threads, by_kv, plain_of, e);
            tests.push_back(e);
            row(name, s, note);
            for (size_t k = 0; k < nd; ++k) {
                const size_t i = i0 + 1 + k;
                const Stat sd = prompt_[i].stat();
                const double paired = median_ratio(prompt_[i].tps, ps.tps);
                json de = record((kind + "_depth").c_str(), sd);
                de["n_prompt"] = p;
                if (n > 0) de["n_gen"] = n;
                de["depth"] = plan_.depths[k];
                de["ratio_to_" + kind] = s.mean > 0 ? sd.mean / s.mean : 0.0;
                de["ratio_to_" + kind + "_paired"] = paired;
                const auto depth_of = [i](const TestRun& r) -> const Series& {
                    return r.prompt_[i];
                };
                const std::string across = paired_across(by_threads, by_kv, depth_of, de);
                tests.push_back(de);
                char dnote[96];
                std::snprintf(dnote, sizeof dnote, "%.0f%% of %s (paired by round: %.0f%%)",
                              s.mean > 0 ? 100 * sd.mean / s.mean : 0.0, name.c_str(),
                              100 * paired);
                row(name + " @ d" + std::to_string(plan_.depths[k]), sd, dnote + across);
            }
        }
        for (size_t g = 0; g < plan_.gens.size(); ++g) {
            const int n = plan_.gens[g];
            const Stat tg = tg_[g].stat();
            const double bw = tg.mean * (double)per_token_;
            json e = record("tg", tg);
            e["n_gen"] = n;
            e["gbps"] = bw / 1e9;
            e["roofline_fraction"] = bw / c_.roof;
            // Per shape, over every token of the test (its warm-up tokens included).
            if (o_.matmul_profile) e["matmul_profile"] = profile_json(tg_prof_[g]);
            const auto tg_of = [g](const TestRun& r) -> const Series& { return r.tg_[g]; };
            const std::string across = paired_across(by_threads, by_kv, tg_of, e);
            tests.push_back(e);
            row("tg" + std::to_string(n), tg,
                gbps(bw) + " weights, " + std::to_string((int)std::lround(100 * bw / c_.roof)) +
                    "% of roofline" + across);
            for (size_t k = 0; k < nd; ++k) {
                const int depth = plan_.depths[k];
                const Series& ds = depth_[g * nd + k];
                const Stat d = ds.stat();
                // Attention reads the cached K/V too: the KV bytes at mid-run depth.
                const double kv_read = (double)kv_per_pos_ * (depth + n / 2.0);
                const double dbw = d.mean * (double)per_token_;
                const double paired = median_ratio(ds.tps, tg_[g].tps);
                const double roof_frac = d.mean * ((double)per_token_ + kv_read) / c_.roof;
                json de = record("tg_depth", d);
                de["depth"] = depth;
                de["n_gen"] = n;
                de["gbps"] = dbw / 1e9;
                de["kv_bytes_per_token"] = kv_read;
                de["roofline_fraction"] = roof_frac;
                de["ratio_to_tg"] = tg.mean > 0 ? d.mean / tg.mean : 0.0;
                de["ratio_to_tg_paired"] = paired;
                const size_t idx = g * nd + k;
                const auto depth_of = [idx](const TestRun& r) -> const Series& {
                    return r.depth_[idx];
                };
                const std::string across_d = paired_across(by_threads, by_kv, depth_of, de);
                tests.push_back(de);
                char note[160];
                std::snprintf(note, sizeof note,
                              "%.0f%% of tg%d (paired by round: %.0f%%); %.0f%% of roofline "
                              "with KV reads",
                              tg.mean > 0 ? 100 * d.mean / tg.mean : 0.0, n, 100 * paired,
                              100 * roof_frac);
                row("tg" + std::to_string(n) + " @ d" + std::to_string(depth), d, note + across_d);
            }
        }

        // Speed-up over one sequence: the batched run's own B = 1, else the first tg test.
        const Series* base = nullptr;
        for (size_t i = 0; i < plan_.batches.size(); ++i)
            if (plan_.batches[i] == 1) base = &batched_[i];
        if (!base && !tg_.empty()) base = &tg_[0];
        const double ref = base ? base->stat().mean : 0.0;
        for (size_t i = 0; i < plan_.batches.size(); ++i) {
            const int B = plan_.batches[i];
            const Stat g = batched_[i].stat();
            json e = record("batched", g);
            e["batch"] = B;
            e["npp"] = o_.npp;
            e["ntg"] = o_.ntg;
            e["prompt_tps"] = stat_of(batched_[i].prompt_tps).mean;
            e["compute_fraction"] = gen_s_ > 0 ? json(g.mean * gen_s_) : json(nullptr);
            // Without a one-sequence figure (no -b 1 and -n 0) there is nothing to compare.
            e["speedup"] = ref > 0 ? json(g.mean / ref) : json(nullptr);
            e["speedup_paired"] =
                base ? json(median_ratio(batched_[i].tps, base->tps)) : json(nullptr);
            if (o_.matmul_profile) {
                e["matmul_profile"] = profile_json(b_prof_[i]);
                e["gen_seconds"] = batched_[i].gen_seconds;
            }
            const auto batched_of = [i](const TestRun& r) -> const Series& {
                return r.batched_[i];
            };
            const std::string across = paired_across(by_threads, by_kv, batched_of, e);
            tests.push_back(e);
            char speedup[96] = "", frac[48] = "", note[224];
            if (base)
                std::snprintf(speedup, sizeof speedup,
                              "%.2f× one sequence (paired by round: %.2f×); ", g.mean / ref,
                              median_ratio(batched_[i].tps, base->tps));
            if (gen_s_ > 0)
                std::snprintf(frac, sizeof frac, "%.0f%% of compute peak; ", 100 * g.mean * gen_s_);
            std::snprintf(note, sizeof note, "%s%sprompts %.1f t/s", speedup, frac,
                          e["prompt_tps"].get<double>());
            row("batched " + std::to_string(B) + " × tg" + std::to_string(o_.ntg), g,
                note + across);
        }
    }

    // What the two ceilings allow: one sequence at most roof / bytes per token, B sequences
    // together at most 1 / gen_s tokens per second, so B sequences can be at most their
    // ratio times one (whatever the kernels do).
    json bounds() const {
        const double tg_bound = per_token_ > 0 ? c_.roof / (double)per_token_ : 0.0;
        const double batched_bound = gen_s_ > 0 ? 1.0 / gen_s_ : 0.0;
        return {
            {"tg_tps", tg_bound},
            {"batched_tps", batched_bound > 0 ? json(batched_bound) : json(nullptr)},
            {"batched_speedup",
             batched_bound > 0 && tg_bound > 0 ? json(batched_bound / tg_bound) : json(nullptr)}};
    }

  private:
    // One round test's repetitions, in round order.
    struct Series {
        std::vector<double> tps, starts, prompt_tps;  // prompt_tps: the batched tests'
        double gen_seconds = 0;                       // the batched tests' steps, all rounds
        void add(const Sample& s) {
            tps.push_back(s.tps);
            starts.push_back(s.start_s);
        }
        Stat stat() const { return stat_of(tps, starts); }
    };

    // The prompt tests in order, (prompt tokens, generated tokens): -p's (0 generated), then
    // --pg's.
    std::vector<std::pair<int, int>> prompt_specs() const {
        std::vector<std::pair<int, int>> v;
        for (int p : plan_.prompts) v.emplace_back(p, 0);
        for (const auto& pg : plan_.pgs) v.push_back(pg);
        return v;
    }

    // The same test's ratio to it in the runs by_threads and by_kv, the median of the per-round
    // ratios: added to `e` as `paired_with` entries and returned as the row's note.
    template <class Of>
    std::string paired_across(const TestRun* by_threads, const TestRun* by_kv, Of of,
                              json& e) const {
        std::string note;
        for (const TestRun* other : {by_threads, by_kv}) {
            if (!other) continue;
            const double ratio = median_ratio(of(*this).tps, of(*other).tps);
            e["paired_with"].push_back({{"threads", other->c_.threads},
                                        {"cache_type", kv_type_name(other->kv_)},
                                        {"ratio", ratio}});
            char b[64];
            if (other == by_threads)
                std::snprintf(b, sizeof b, "%.2f× %d thread%s", ratio, other->c_.threads,
                              other->c_.threads == 1 ? "" : "s");
            else
                std::snprintf(b, sizeof b, "%.2f× %s", ratio, kv_type_name(other->kv_));
            note += (note.empty() ? "; paired: " : ", ") + std::string(b);
        }
        return note;
    }

    void row(const std::string& test, const Stat& s, const std::string& notes) const {
        if (o_.json) return;
        if (plan_.threads.size() > 1) std::printf("| %d ", c_.threads);
        if (plan_.kv_types.size() > 1) std::printf("| %s ", kv_type_name(kv_));
        std::printf("| %s | %s | %s |\n", test.c_str(), tps_cell(s).c_str(), notes.c_str());
        std::fflush(stdout);
    }

    json record(const char* test, const Stat& s) const {
        json e = stat_json(s);
        e["test"] = test;
        e["threads"] = c_.threads;
        e["cache_type"] = kv_type_name(kv_);
        return e;
    }

    const Opts& o_;
    const Plan& plan_;
    const Model& m_;
    const Ceilings& c_;
    KvType kv_;
    // Weight bytes a generated token reads; K and V bytes for every layer per cached position;
    // arithmetic time of one token at the peaks, a prompt token (logits only for the last) and
    // a generated one (logits for every sequence).
    uint64_t per_token_ = weight_bytes_per_token(m_);
    uint64_t kv_per_pos_ = KvStorage::bytes_per_position(m_.hp, kv_);
    double prompt_s_ = matmul_seconds_per_token(m_, c_.peaks, false);
    double gen_s_ = matmul_seconds_per_token(m_, c_.peaks, true);
    Bench bench_;

    // prompt: [prompt test][plain, then each depth]; depth: [gen][depth]
    std::vector<std::function<Sample()>> prompt_reps_, tg_reps_, depth_reps_;
    std::vector<std::function<Bench::BatchedRep()>> batched_reps_;
    std::vector<Series> prompt_, tg_, depth_, batched_;
    // Per shape: each tg test's (its warm-up included), each batched test's steps.
    std::vector<std::vector<MatmulShapeStat>> tg_prof_, b_prof_;
};

// Each test's matmul profile; with several thread counts or KV cache types each title names
// its count and type.
void print_profiles(const json& tests, bool several_threads, bool several_kv) {
    for (const json& e : tests) {
        if (!e.contains("matmul_profile")) continue;
        const std::string t =
            (several_threads ? std::to_string(e["threads"].get<int>()) + " threads, " : "") +
            (several_kv ? e["cache_type"].get<std::string>() + " KV cache, " : "");
        if (e["test"] == "tg") {
            std::printf("\nmatmuls during %stg%d (warm-up included), by shape:\n\n", t.c_str(),
                        e["n_gen"].get<int>());
        } else {
            double mm = 0;
            for (const json& p : e["matmul_profile"]) mm += p["seconds"].get<double>();
            const double total = e["gen_seconds"].get<double>();
            std::printf(
                "\nmatmuls during %sbatched %d × tg%d (steps only), by shape: %.0f%% of the "
                "steps' %.3f s\n\n",
                t.c_str(), e["batch"].get<int>(), e["ntg"].get<int>(),
                total > 0 ? 100 * mm / total : 0.0, total);
        }
        print_profile(e["matmul_profile"]);
    }
}

void run_model(const Opts& o) {
    const Plan plan = make_plan(o);

    // The rooflines first, before the model is mapped, then the peak-RSS counter restarts so
    // the memory figure below is the model's alone; the compute peaks are the ceiling of
    // prompt processing and batched generation.
    std::vector<Ceilings> ceilings;
    for (int t : plan.threads) {
        Ceilings c;
        c.threads = t;
        c.roof = o.roofline_gbps * 1e9;
        c.measured = c.roof <= 0;
        if (c.measured) {
            const size_t bytes =
                o.buffer_mib > 0 ? (size_t)o.buffer_mib << 20 : default_bandwidth_buffer_bytes();
            c.roof = measure_read_bandwidth(t, bytes).bytes_per_s;
        }
        c.peaks = measure_compute_peaks(kernels().isa, t, kernels().bf16_dot);
        ceilings.push_back(c);
    }
    const bool rss_ok = reset_peak_rss();

    LoadedModel lm = load_model(o.model, o.store);
    const Model& m = *lm.model;
    for (KvType kv : plan.kv_types) require_kv_type_fits(kv, m.hp.head_dim);
    check_contexts(o, plan, m);  // before any output, not midway
    const uint64_t per_token = weight_bytes_per_token(m);
    std::string kv_names;
    for (KvType kv : plan.kv_types)
        kv_names += (kv_names.empty() ? "" : ", ") + std::string(kv_type_name(kv));

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
        {"cache_type", kv_type_name(plan.kv_types.front())},
        {"reps", o.reps},
        {"runs", json::array()},
        {"tests", json::array()},
    };
    const bool several_threads = plan.threads.size() > 1, several_kv = plan.kv_types.size() > 1;
    const bool several = several_threads || several_kv;
    if (!o.json) {
        std::string threads;
        for (int t : plan.threads) threads += (threads.empty() ? "" : ", ") + std::to_string(t);
        std::printf("model:    %s (%s, %.2f B parameters, %.1f MiB of weights)\n", lm.path.c_str(),
                    m.hp.arch.c_str(), m.n_params() / 1e9, m.weight_bytes() / 1048576.0);
        std::printf(
            "machine:  %s; kernels %s%s (%d weight tensors repacked), %s thread%s, %s KV "
            "cache%s\n",
            cpu_model_name().c_str(), kernels().isa, kernels().bf16_dot ? " + bf16 dot" : "",
            m.packed_tensors(), threads.c_str(),
            several_threads        ? "s"
            : plan.threads[0] == 1 ? ""
                                   : "s",
            kv_names.c_str(), several_kv ? "s" : "");
        std::printf("memory:   %.0f MiB on huge pages (transparent huge pages: %s)\n",
                    huge_page_bytes() / 1048576.0, transparent_huge_pages_mode().c_str());
        for (const Ceilings& c : ceilings) {
            std::printf("roofline: %s read with %d threads%s\n", gbps(c.roof).c_str(), c.threads,
                        c.measured ? " (measured)" : " (given)");
            std::printf("compute:  %s with %d threads (multiply-adds)\n",
                        peaks_line(c.peaks).c_str(), c.threads);
        }
        std::printf("\n%s%s| test | t/s | notes |\n%s%s|---|---:|---|\n",
                    several_threads ? "| threads " : "", several_kv ? "| KV " : "",
                    several_threads ? "|---:" : "", several_kv ? "|---" : "");
        std::fflush(stdout);
    }

    // Each KV cache type's tests at every thread count (the ceilings do not depend on it):
    // every run's contexts made ready first, then the tests of all runs in rounds.
    const auto t0 = Clock::now();
    json memory;
    std::vector<std::unique_ptr<TestRun>> runs;
    for (KvType kv : plan.kv_types)
        for (const Ceilings& c : ceilings) {
            runs.push_back(std::make_unique<TestRun>(o, plan, m, c, kv, t0));
            runs.back()->prepare(runs.size() == 1, rss_ok, memory);
        }
    const bool show = !o.json && isatty(fileno(stderr));
    for (int r = 0; r < o.reps; ++r) {
        if (show) std::fprintf(stderr, "\rbench: round %d/%d", r + 1, o.reps);
        for (auto& run : runs) run->round();
    }
    if (show) std::fprintf(stderr, "\r\033[K");
    for (size_t i = 0; i < runs.size(); ++i) {
        // runs[i] is KV type i / T at thread count i % T.
        const size_t T = ceilings.size();
        const TestRun& run = *runs[i];
        run.report(i % T ? runs[i - i % T].get() : nullptr, i >= T ? runs[i % T].get() : nullptr,
                   j["tests"]);
        const Ceilings& c = run.ceilings();
        j["runs"].push_back({{"threads", c.threads},
                             {"cache_type", kv_type_name(run.kv())},
                             {"roofline_gbps", c.roof / 1e9},
                             {"roofline_measured", c.measured},
                             {"compute_peaks", peaks_json(c.peaks)},
                             {"bounds", run.bounds()}});
    }
    if (!memory.is_null()) j["memory"] = memory;
    // One value of each list (the usual run): the results also under the keys they had
    // before lists (scripts read `tg`, `batched`, ...).
    const json run0 = j["runs"][0];  // a copy: j gains keys below
    j["threads"] = run0["threads"];
    j["roofline_gbps"] = run0["roofline_gbps"];
    j["roofline_measured"] = run0["roofline_measured"];
    j["compute_peaks"] = run0["compute_peaks"];
    j["bounds"] = run0["bounds"];
    if (!several && plan.prompts.size() <= 1 && plan.gens.size() <= 1 && plan.depths.size() <= 1 &&
        plan.pgs.size() <= 1) {
        for (const json& e : j["tests"]) {
            const std::string t = e["test"];
            if (t == "batched") {
                j["batched"].push_back(e);
            } else {
                j[t] = e;
                if (t == "tg" && e.contains("matmul_profile"))
                    j["matmul_profile"] = e["matmul_profile"];
            }
        }
    }
    if (o.json) {
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    for (const json& r : j["runs"]) {
        if (r["cache_type"] != j["cache_type"]) continue;  // the same ceilings for each type
        const json& b = r["bounds"];
        if (b["batched_tps"].is_null() || b["tg_tps"].get<double>() <= 0) continue;
        std::printf(
            "\nceilings%s: one sequence %.1f t/s (roofline ÷ %.0f MiB per token), many sequences "
            "%.1f t/s in total (compute peaks): batched generation at most %.2f× one sequence\n",
            several_threads ? (" with " + std::to_string(r["threads"].get<int>()) +
                               (r["threads"].get<int>() == 1 ? " thread" : " threads"))
                                  .c_str()
                            : "",
            b["tg_tps"].get<double>(), per_token / 1048576.0, b["batched_tps"].get<double>(),
            b["batched_speedup"].get<double>());
    }
    if (j.contains("memory") && !j["memory"]["peak_rss_bytes"].is_null())
        std::printf(
            "\npeak RSS while generating: %.1f MiB (weights + KV cache: %.1f MiB)\n",
            j["memory"]["peak_rss_bytes"].get<double>() / 1048576.0,
            (double)(m.weight_bytes() + j["memory"]["kv_bytes"].get<uint64_t>()) / 1048576.0);
    print_profiles(j["tests"], several_threads, several_kv);
}

}  // namespace

void register_bench_commands(CLI::App& app) {
    register_synth_command(app);

    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "bench", "Measure prompt, generation and batched speed (like llama-bench)");
    cmd->add_option("-m,--model", o->model, "GGUF file or stored model name");
    // The lists take llama-bench's forms: 128,512 and ranges 1-4 (every value), 0-8192+2048
    // (a step), 1-16*2 (a factor).
    cmd->add_option("-p,--n-prompt", o->prompts,
                    "Prompt tokens, a list (0: skip; e.g. 128,512 or 128-512*2)");
    cmd->add_option("-n,--n-gen", o->gens, "Generated tokens, a list (0: skip)");
    cmd->add_option("--pg", o->pgs,
                    "Prompt then generation as one timed request, PP,TG (e.g. 512,128; "
                    "llama-bench's -pg): (PP + TG) tokens / seconds; may be given several times");
    cmd->add_option("-b,--batches", o->batches,
                    "Batch sizes for batched generation, a list (0: skip)");
    cmd->add_option("-t,--threads", o->threads,
                    "Threads, a list: every test runs with each (default: physical cores)");
    cmd->add_option("-r,--reps", o->reps, "Repetitions of each test")->check(CLI::Range(1, 1000));
    cmd->add_option("-d,--depth", o->depths,
                    "Also run each prompt, generation and --pg test with this many positions "
                    "already cached, a list (e.g. 0,4096 or 0-8192+2048; 0: only the plain tests)");
    cmd->add_option("--npp", o->npp, "Batched: prompt tokens per sequence")
        ->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--ntg", o->ntg, "Batched: generated tokens per sequence")
        ->check(CLI::Range(1, 1 << 16));
    cmd->add_option("--cache-type", o->cache_types,
                    "KV cache type, a list: every test runs with each (f16, the default; bf16: "
                    "f16's memory with f32's range, its keys scored twice as fast where the "
                    "CPU has AVX512_BF16; q8_0: half the memory and the bytes a long context "
                    "reads, at a small accuracy cost; q4_0: 0.28x, at a larger one; both need "
                    "a head size that is a multiple of 32)");
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
