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
#include <memory>
#include <random>

#include <nlohmann/json.hpp>

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
    bool json = false, memory = false, matmul_profile = false;
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

// Weight bytes one decoded token reads: every matrix once, one row of an untied embedding,
// and only the routed experts' share of the expert tensors.
uint64_t weight_bytes_per_token(const Model& m) {
    uint64_t b = bytes_of(m.output);
    if (m.output.data != m.token_embd.data) b += m.token_embd.row_bytes();
    const double expert_share = m.hp.n_expert ? (double)m.hp.n_expert_used / m.hp.n_expert : 0.0;
    for (const LayerWeights& L : m.layers) {
        for (const Tensor* t :
             {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.router})
            b += bytes_of(*t);
        for (const Tensor* t : {&L.gate_exps, &L.up_exps, &L.down_exps})
            b += (uint64_t)(bytes_of(*t) * expert_share);
    }
    return b;
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int n_vocab, int n) {
    std::uniform_int_distribution<int32_t> d(0, n_vocab - 1);
    std::vector<int32_t> v((size_t)n);
    for (auto& t : v) t = d(rng);
    return v;
}

class Bench {
  public:
    Bench(const Opts& o, const Model& m) : o_(o), m_(m), rng_(1234) {}

    ContextParams params(int n_ctx, int n_seq) const {
        ContextParams cp;
        cp.n_ctx = n_ctx;
        cp.n_seq_max = n_seq;
        cp.n_threads = o_.threads;
        cp.n_batch = 512;
        cp.kv_type = o_.cache_type;
        return cp;
    }

    // Prompt processing: n_prompt tokens into an empty cache, logits of the last only.
    Stat prompt() {
        Context ctx(m_, params(o_.n_prompt + 8, 1));
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

    // n_gen tokens one at a time after `depth` cached positions (filled once, untimed).
    Stat generate(int depth, size_t* kv_bytes = nullptr) {
        Context ctx(m_, params(depth + o_.n_gen + 8, 1));
        if (kv_bytes) *kv_bytes = ctx.cache().storage.bytes();
        std::vector<float> logits;
        const int32_t seq = ctx.cache().create_sequence();
        if (depth > 0) {
            const auto t0 = Clock::now();
            ctx.eval(seq, random_tokens(rng_, m_.hp.n_vocab, depth), false, logits);
            if (!o_.json)
                std::fprintf(stderr, "bench: filled %d positions in %.1f s\n", depth,
                             seconds_since(t0));
        }
        std::vector<double> tps;
        for (int r = -1; r < o_.reps; ++r) {  // r = -1: warm-up, a few tokens
            const int n = r < 0 ? std::min(o_.n_gen, 4) : o_.n_gen;
            const auto toks = random_tokens(rng_, m_.hp.n_vocab, n);
            const auto t0 = Clock::now();
            for (int i = 0; i < n; ++i)
                ctx.eval(seq, std::span<const int32_t>(&toks[(size_t)i], 1), false, logits);
            const double s = seconds_since(t0);
            ctx.cache().truncate(seq, depth);
            if (r >= 0) tps.push_back(n / s);
        }
        return stat_of(std::move(tps));
    }

    struct Batched {
        int batch = 0;
        double prompt_tps = 0;
        Stat gen;
        double gen_seconds = 0;  // the generation steps of every rep
    };

    // B sequences: their npp-token prompts in one batch, then ntg steps that decode one
    // token of every sequence together (llama-batched-bench's S_TG is B * ntg / time).
    Batched batched(int B) {
        // A block of slack per sequence: each one rounds its positions up to whole KV blocks.
        Context ctx(m_, params(o_.npp + o_.ntg + 16, B));
        KvCache& kv = ctx.cache();
        Batch batch;
        ForwardOutput out;
        Batched res;
        res.batch = B;
        std::vector<double> tps, pp;
        std::vector<int32_t> seqs((size_t)B);
        for (int r = 0; r < o_.reps; ++r) {
            batch.clear();
            for (int b = 0; b < B; ++b) {
                seqs[(size_t)b] = kv.create_sequence();
                if (!kv.prepare(seqs[(size_t)b], 0, o_.npp))
                    throw UsageError("bench: KV cache too small");
                batch.block_tables.push_back(&kv.table(seqs[(size_t)b]));
                const auto toks = random_tokens(rng_, m_.hp.n_vocab, o_.npp);
                for (int i = 0; i < o_.npp; ++i) batch.add(toks[(size_t)i], i, b, i + 1 == o_.npp);
            }
            auto t0 = Clock::now();
            ctx.decode(batch, out);
            pp.push_back((double)B * o_.npp / seconds_since(t0));
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
                ctx.decode(batch, out);
                for (int32_t s : seqs) kv.set_length(s, kv.length(s) + 1);
            }
            const double gen_s = seconds_since(t0);
            matmul_profile_enable(false);
            res.gen_seconds += gen_s;
            tps.push_back((double)B * o_.ntg / gen_s);
            for (int32_t s : seqs) kv.free_sequence(s);
        }
        res.prompt_tps = stat_of(pp).mean;
        res.gen = stat_of(std::move(tps));
        return res;
    }

  private:
    const Opts& o_;
    const Model& m_;
    std::mt19937 rng_;
};

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
    const size_t bytes =
        o.buffer_mib > 0 ? (size_t)o.buffer_mib << 20 : default_bandwidth_buffer_bytes();
    const int n = o.threads > 0 ? o.threads : ThreadPool::default_threads();
    json j = {{"cpu", cpu_model_name()},
              {"buffer_bytes", bytes},
              {"passes", 5},
              {"results", json::array()}};
    for (int t : n > 1 ? std::vector<int>{1, n} : std::vector<int>{1}) {
        const double bw = measure_read_bandwidth(t, bytes);
        j["results"].push_back({{"threads", t}, {"gbps", bw / 1e9}});
        if (!o.json)
            std::printf("read bandwidth, %2d thread%s: %s\n", t, t == 1 ? " " : "s",
                        gbps(bw).c_str());
    }
    if (o.json)
        std::printf("%s\n", j.dump().c_str());
    else
        std::printf("(%s; %.0f MiB buffer, best of 5 streaming passes)\n", cpu_model_name().c_str(),
                    bytes / 1048576.0);
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
    const bool rss_ok = reset_peak_rss();

    LoadedModel lm = load_model(o.model, o.store);
    const Model& m = *lm.model;
    require_kv_type_fits(o.cache_type, m.hp.head_dim);  // before any output, not midway
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
        {"packed_tensors", m.packed_tensors()},
        {"huge_page_bytes", huge_page_bytes()},
        {"transparent_huge_pages", transparent_huge_pages_mode()},
        {"threads", threads},
        {"cache_type", kv_type_name(o.cache_type)},
        {"reps", o.reps},
        {"roofline_gbps", roof / 1e9},
        {"roofline_measured", measured},
    };
    if (!o.json) {
        std::printf("model:    %s (%s, %.2f B parameters, %.1f MiB of weights)\n", lm.path.c_str(),
                    m.hp.arch.c_str(), m.n_params() / 1e9, m.weight_bytes() / 1048576.0);
        std::printf(
            "machine:  %s; kernels %s (%d weight tensors repacked), %d threads, %s KV "
            "cache\n",
            cpu_model_name().c_str(), kernels().isa, m.packed_tensors(), threads,
            kv_type_name(o.cache_type));
        std::printf("memory:   %.0f MiB on huge pages (transparent huge pages: %s)\n",
                    huge_page_bytes() / 1048576.0, transparent_huge_pages_mode().c_str());
        std::printf("roofline: %s read with %d threads%s\n\n", gbps(roof).c_str(), threads,
                    measured ? " (measured)" : " (given)");
        std::printf("| test | t/s | notes |\n|---|---:|---|\n");
        std::fflush(stdout);
    }

    Bench bench(o, m);
    Stat tg;
    if (o.n_gen > 0) {
        size_t kv_bytes = 0;
        matmul_profile_enable(o.matmul_profile);
        tg = bench.generate(0, &kv_bytes);
        matmul_profile_enable(false);
        // Per shape, over every token of the tg test (its warm-up tokens included).
        if (o.matmul_profile) j["matmul_profile"] = profile_json(matmul_profile_take());
        const double bw = tg.mean * (double)per_token;
        j["tg"] = stat_json(tg);
        j["tg"]["n_gen"] = o.n_gen;
        j["tg"]["gbps"] = bw / 1e9;
        j["tg"]["roofline_fraction"] = bw / roof;
        // Peak RSS right after generating, against what generation has to hold.
        const size_t peak = rss_ok ? peak_rss_bytes() : 0;
        j["memory"] = {{"peak_rss_bytes", rss_ok ? json(peak) : json(nullptr)},
                       {"weights_bytes", m.weight_bytes()},
                       {"kv_bytes", kv_bytes},
                       {"overhead_fraction",
                        rss_ok ? json((double)peak / double(m.weight_bytes() + kv_bytes) - 1.0)
                               : json(nullptr)}};
        if (!o.json) {
            std::printf("| tg%d | %s | %s weights, %.0f%% of roofline |\n", o.n_gen,
                        tps_cell(tg).c_str(), gbps(bw).c_str(), 100 * bw / roof);
            std::fflush(stdout);
        }
    }
    if (o.n_prompt > 0) {
        const Stat pp = bench.prompt();
        j["pp"] = stat_json(pp);
        j["pp"]["n_prompt"] = o.n_prompt;
        if (!o.json) {
            std::printf("| pp%d | %s | |\n", o.n_prompt, tps_cell(pp).c_str());
            std::fflush(stdout);
        }
    }
    if (o.depth > 0 && o.n_gen > 0) {
        const Stat d = bench.generate(o.depth);
        // Attention reads the cached K/V too: the KV bytes at mid-run depth.
        const double kv_read = (double)kv_per_pos * (o.depth + o.n_gen / 2.0);
        const double bw = d.mean * (double)per_token;
        j["tg_depth"] = stat_json(d);
        j["tg_depth"]["depth"] = o.depth;
        j["tg_depth"]["n_gen"] = o.n_gen;
        j["tg_depth"]["gbps"] = bw / 1e9;
        j["tg_depth"]["kv_bytes_per_token"] = kv_read;
        j["tg_depth"]["roofline_fraction"] = d.mean * ((double)per_token + kv_read) / roof;
        j["tg_depth"]["ratio_to_tg"] = tg.mean > 0 ? d.mean / tg.mean : 0.0;
        if (!o.json) {
            std::printf("| tg%d @ d%d | %s | %.0f%% of tg%d; %.0f%% of roofline with KV reads |\n",
                        o.n_gen, o.depth, tps_cell(d).c_str(), 100 * d.mean / tg.mean, o.n_gen,
                        100 * d.mean * ((double)per_token + kv_read) / roof);
            std::fflush(stdout);
        }
    }
    if (!batches.empty()) {
        j["batched"] = json::array();
        double base = 0;
        for (int B : batches) {
            const Bench::Batched r = bench.batched(B);
            if (B == 1) base = r.gen.mean;
            // Speed-up over one sequence: the batched run's own B = 1, else the tg test.
            const double ref = base > 0 ? base : tg.mean;
            json e = stat_json(r.gen);
            e["batch"] = B;
            e["npp"] = o.npp;
            e["ntg"] = o.ntg;
            e["prompt_tps"] = r.prompt_tps;
            // Without a one-sequence figure (no -b 1 and -n 0) there is nothing to compare.
            e["speedup"] = ref > 0 ? json(r.gen.mean / ref) : json(nullptr);
            if (o.matmul_profile) {
                e["matmul_profile"] = profile_json(matmul_profile_take());
                e["gen_seconds"] = r.gen_seconds;
            }
            j["batched"].push_back(e);
            if (!o.json) {
                char speedup[48] = "";
                if (ref > 0)
                    std::snprintf(speedup, sizeof speedup, "%.2f× one sequence; ",
                                  r.gen.mean / ref);
                std::printf("| batched %d × tg%d | %s | %sprompts %.1f t/s |\n", B, o.ntg,
                            tps_cell(r.gen).c_str(), speedup, r.prompt_tps);
                std::fflush(stdout);
            }
        }
    }
    if (o.json) {
        std::printf("%s\n", j.dump().c_str());
        return;
    }
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
    cmd->add_flag("--json", o->json, "Print one JSON object");
    cmd->add_flag("--matmul-profile", o->matmul_profile,
                  "Time every matmul of the generation and batched tests' steps and print, per "
                  "weight shape, calls, time per call, the rate it read weights at and the "
                  "matmuls' share of the batched steps");
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->callback([o] {
        if (o->memory) {
            if (!o->model.empty()) throw UsageError("bench: --memory takes no model");
            run_memory(*o);
            return;
        }
        if (o->model.empty()) throw UsageError("bench: needs -m MODEL (or --memory)");
        run_model(*o);
    });
}

}  // namespace lokal::cli
