// `lokal synth` and `lokal bench`, run as a user would. Everything here uses the test-sized
// presets so the whole file runs in seconds; speed itself is never asserted (benchmarks
// are measured with bench/compare, not with timed tests).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "ops/cpu_features.h"

#include "gguf/gguf.h"
#include "model/synth.h"
#include "shared_path.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
namespace gguf = lokal::gguf;

struct Result {
    int code = -1;
    std::string out, err;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// prefix: words before the binary (e.g. "timeout 60").
Result lokal(const std::string& args, const std::string& prefix = "") {
    static int counter = 0;
    const std::string base =
        fs::temp_directory_path() /
        ("lokal_bench_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    const std::string cmd = prefix + " " + std::string(LOKAL_BINARY_DIR) + "/bin/lokal " + args +
                            " </dev/null >" + base + ".out 2>" + base + ".err";
    Result r;
    const int status = std::system(cmd.c_str());
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(base + ".out");
    r.err = slurp(base + ".err");
    fs::remove(base + ".out");
    fs::remove(base + ".err");
    return r;
}

std::string q(const std::string& s) {
    return "'" + s + "'";
}

size_t count_lines(const std::string& s) {
    size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

// A scratch directory removed with the fixture.
class Synth : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("lokal_synth_" + std::to_string(getpid()));
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }

    // Synthesizes once per name; fails the test on a non-zero exit.
    std::string make(const std::string& preset, const std::string& type,
                     const std::string& extra = "") {
        const std::string p = path(preset + "." + type + ".gguf");
        const Result r = lokal("synth --preset " + preset + " --type " + type + " -q -t 2 " +
                               extra + " -o " + q(p));
        EXPECT_EQ(r.code, 0) << r.err;
        return p;
    }

    fs::path dir_;
};

std::map<std::string, std::string> tensor_types(const gguf::File& f) {
    std::map<std::string, std::string> m;
    for (const auto& t : f.tensors()) m[t.name] = lokal::type_name(t.type);
    return m;
}

// The tiny preset is ../shared's tiny-k shape, whose files llama-quantize made: every
// tensor must get the same type and shape as the reference quantizer chose.
TEST_F(Synth, TypeMixMatchesLlamaQuantize) {
    for (const char* type : {"Q4_0", "Q4_1", "Q5_0", "Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M",
                             "Q6_K", "IQ4_XS"}) {
        const std::string mine = make("tiny", type);
        auto a = gguf::File::open(mine);
        auto b = gguf::File::open(
            lokal::test::shared_path(std::string("models/tiny-k.") + type + ".gguf"));
        EXPECT_EQ(tensor_types(*a), tensor_types(*b)) << type;
        for (const auto& t : b->tensors()) {
            const gguf::TensorInfo* m = a->find_tensor(t.name);
            ASSERT_NE(m, nullptr) << t.name;
            for (int d = 0; d < 4; ++d) EXPECT_EQ(m->ne[d], t.ne[d]) << t.name;
        }
        EXPECT_EQ(a->get_uint("general.file_type"), b->get_uint("general.file_type")) << type;
    }
}

// The published files of these models have these per-type tensor counts.
TEST(SynthPlan, RealPresetsHaveTheDownloadedFilesMix) {
    const auto counts = [](const char* preset, const char* type) {
        std::map<std::string, int> c;
        for (const auto& t : lokal::synth::plan_tensors(*lokal::synth::find_preset(preset),
                                                        *lokal::synth::find_mix(type)))
            c[lokal::type_name(t.type)]++;
        return c;
    };
    using M = std::map<std::string, int>;
    EXPECT_EQ(counts("tinyllama-1.1b", "Q4_K_M"), (M{{"f32", 45}, {"q4_K", 135}, {"q6_K", 21}}));
    EXPECT_EQ(counts("tinyllama-1.1b", "Q4_0"), (M{{"f32", 45}, {"q4_0", 155}, {"q6_K", 1}}));
    EXPECT_EQ(counts("llama-3.2-1b", "Q4_K_M"), (M{{"f32", 34}, {"q4_K", 96}, {"q6_K", 17}}));
    // 896-wide rows are not a multiple of 256: K types fall back to Q5_0 / Q8_0.
    EXPECT_EQ(counts("qwen2.5-0.5b", "Q4_K_M"),
              (M{{"f32", 121}, {"q4_K", 12}, {"q5_0", 132}, {"q6_K", 12}, {"q8_0", 13}}));
    const auto mix = counts("mixtral-8x-tiny", "Q4_K_M");
    EXPECT_EQ(mix.at("q8_0"), 16);  // attn_k and attn_v of an 8-expert model
    uint64_t bytes = 0;
    for (const auto& t : lokal::synth::plan_tensors(*lokal::synth::find_preset("llama-2-7b"),
                                                    *lokal::synth::find_mix("Q4_0")))
        bytes += t.bytes;
    EXPECT_NEAR(bytes / 1048576.0, 3647.87, 1.0);  // llama-2-7b.Q4_0.gguf: 3.56 GiB of tensors
    // Llama 3.1 8B: Meta's published parameter count (the RoPE factors are not parameters).
    int64_t params = 0;
    for (const auto& t : lokal::synth::plan_tensors(*lokal::synth::find_preset("llama-3.1-8b"),
                                                    *lokal::synth::find_mix("Q4_K_M")))
        if (t.name != "rope_freqs.weight") {
            int64_t n = 1;
            for (int64_t d : t.ne) n *= d;
            params += n;
        }
    EXPECT_EQ(params, 8030261248);
}

TEST_F(Synth, ModelsLoadAndRun) {
    for (auto [preset, type] : {std::pair{"tiny", "Q4_0"},
                                {"tiny-moe", "Q8_0"},
                                {"tiny-qwen2", "Q4_K_M"},
                                {"tiny", "F16"}}) {
        const std::string m = make(preset, type);
        const Result run =
            lokal("run -m " + q(m) + " -p 'Once upon a time' -n 8 --temp 0 -t 2 --json");
        ASSERT_EQ(run.code, 0) << preset << " " << type << ": " << run.err;
        const json j = json::parse(run.out);
        EXPECT_EQ(j["eval_tokens"], 8) << preset;
        const Result info = lokal("info -m " + q(m) + " --json");
        ASSERT_EQ(info.code, 0) << info.err;
        const json ji = json::parse(info.out);
        EXPECT_EQ(ji["name"], std::string("synth-") + preset);
        EXPECT_EQ(ji["vocab_size"], 512);
        if (std::string(preset) == "tiny-moe") {
            EXPECT_EQ(ji["expert_count"], 4);
        }
        if (std::string(preset) == "tiny-qwen2") {
            EXPECT_EQ(ji["architecture"], "qwen2");
        }
    }
}

TEST_F(Synth, SameSeedSameBytesAndVocabFromFile) {
    const std::string a = make("tiny", "Q4_K_M", "--seed 7");
    const std::string a_bytes = slurp(a);
    fs::rename(a, path("first.gguf"));
    EXPECT_EQ(slurp(make("tiny", "Q4_K_M", "--seed 7")), a_bytes);
    EXPECT_NE(slurp(make("tiny", "Q4_K_M", "--seed 8")), a_bytes);

    const std::string v =
        make("tiny", "Q4_0",
             "--vocab " + q(lokal::test::shared_path("vocab/ggml-vocab-llama-spm.gguf")));
    auto f = gguf::File::open(v);
    EXPECT_EQ(f->find_tensor("token_embd.weight")->ne[1], 32000);
    const Result tok = lokal("tokenize -m " + q(v) + " -p 'Hello world'");
    ASSERT_EQ(tok.code, 0) << tok.err;
    EXPECT_EQ(json::parse(tok.out), json({1, 15043, 3186}));
}

TEST_F(Synth, BenchJsonHasTheDocumentedFields) {
    const std::string m = make("tiny", "Q4_0");
    const Result r =
        lokal("bench -m " + q(m) +
              " -p 16 -n 4 -b 1,2 -r 2 -d 8 --npp 4 --ntg 2 -t 2 --roofline 10 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(count_lines(r.out), 1u);
    const json j = json::parse(r.out);
    for (const char* k : {"model", "architecture", "parameters", "weight_bytes",
                          "weight_bytes_per_token", "cpu", "kernel_path", "kernel_bf16_dot",
                          "threads", "reps", "roofline_gbps", "roofline_measured"})
        EXPECT_TRUE(j.contains(k)) << k;
    // The BF16 instruction is used exactly where the CPU has it (and LOKAL_BF16_DOT is not 0).
    const char* bf16_env = std::getenv("LOKAL_BF16_DOT");
    const bool avx512 = j["kernel_path"] == "avx512" || j["kernel_path"] == "amx";
    if (avx512 && !(bf16_env && bf16_env[0] == '0'))
        EXPECT_EQ(j["kernel_bf16_dot"].get<bool>(), lokal::cpu_features().avx512bf16);
    else
        EXPECT_FALSE(j["kernel_bf16_dot"].get<bool>());
    EXPECT_EQ(j["threads"], 2);
    EXPECT_EQ(j["roofline_gbps"], 10.0);
    // Where the weights and KV cache live: the system's THP mode and how much of them.
    EXPECT_TRUE(j["huge_page_bytes"].is_number_unsigned());
    const std::string thp = j["transparent_huge_pages"].get<std::string>();
    EXPECT_TRUE(thp == "always" || thp == "madvise" || thp == "never" || thp == "unknown") << thp;
    if (thp == "never") {
        EXPECT_EQ(j["huge_page_bytes"], 0);
    }
    EXPECT_FALSE(j["roofline_measured"].get<bool>());
    for (const char* test : {"pp", "tg", "tg_depth"}) {
        ASSERT_TRUE(j.contains(test)) << test;
        EXPECT_GT(j[test]["tps_mean"].get<double>(), 0) << test;
        EXPECT_GE(j[test]["tps_sd"].get<double>(), 0) << test;
        EXPECT_EQ(j[test]["samples"].size(), 2u) << test;
    }
    EXPECT_EQ(j["pp"]["n_prompt"], 16);
    EXPECT_EQ(j["tg"]["n_gen"], 4);
    EXPECT_GT(j["tg"]["roofline_fraction"].get<double>(), 0);
    EXPECT_GT(j["tg"]["gbps"].get<double>(), 0);
    EXPECT_EQ(j["tg_depth"]["depth"], 8);
    // -d applies to the prompt too (llama-bench's pp512 @ d4096): a new turn after a history.
    ASSERT_TRUE(j.contains("pp_depth"));
    EXPECT_EQ(j["pp_depth"]["n_prompt"], 16);
    EXPECT_EQ(j["pp_depth"]["depth"], 8);
    EXPECT_EQ(j["pp_depth"]["samples"].size(), 2u);
    EXPECT_DOUBLE_EQ(j["pp_depth"]["ratio_to_pp"].get<double>(),
                     j["pp_depth"]["tps_mean"].get<double>() / j["pp"]["tps_mean"].get<double>());
    EXPECT_GT(j["tg_depth"]["ratio_to_tg"].get<double>(), 0);
    // The tests run in rounds (one rep of each per round), and the paired ratios are the
    // median over rounds of the two tests' samples of that round (2 rounds: their mean).
    auto paired = [](const json& a, const json& b) {
        return (a[0].get<double>() / b[0].get<double>() + a[1].get<double>() / b[1].get<double>()) /
               2;
    };
    EXPECT_DOUBLE_EQ(j["tg_depth"]["ratio_to_tg_paired"].get<double>(),
                     paired(j["tg_depth"]["samples"], j["tg"]["samples"]));
    EXPECT_DOUBLE_EQ(j["batched"][0]["speedup_paired"].get<double>(), 1.0);  // B = 1 itself
    EXPECT_DOUBLE_EQ(j["batched"][1]["speedup_paired"].get<double>(),
                     paired(j["batched"][1]["samples"], j["batched"][0]["samples"]));
    ASSERT_EQ(j["batched"].size(), 2u);
    EXPECT_EQ(j["batched"][1]["batch"], 2);
    EXPECT_EQ(j["batched"][1]["ntg"], 2);
    EXPECT_GT(j["batched"][1]["tps_mean"].get<double>(), 0);
    EXPECT_GT(j["batched"][1]["speedup"].get<double>(), 0);
    EXPECT_TRUE(j["memory"].contains("peak_rss_bytes"));
    EXPECT_GT(j["memory"]["kv_bytes"].get<double>(), 0);
    // The weights one token reads: everything but all rows of the untied embedding.
    EXPECT_LT(j["weight_bytes_per_token"].get<double>(), j["weight_bytes"].get<double>());

    // The compute peaks of the kernel path in use, and the ceilings they and the roofline set.
    const json& pk = j["compute_peaks"];
    const bool simd = j["kernel_path"] != "scalar" && j["kernel_path"] != "reference";
    ASSERT_EQ(pk["isa"] != "", simd) << pk.dump();
    EXPECT_EQ(pk["threads"], 2);
    EXPECT_EQ(pk["bf16_gmacs"].is_null(), !j["kernel_bf16_dot"].get<bool>()) << pk.dump();
    const json& bounds = j["bounds"];
    // One sequence can read its weights no faster than the roofline.
    EXPECT_NEAR(bounds["tg_tps"].get<double>(), 10e9 / j["weight_bytes_per_token"].get<double>(),
                1e-9 * bounds["tg_tps"].get<double>());
    if (!simd) return;
    EXPECT_GT(pk["int8_gmacs"].get<double>(), 0);
    EXPECT_GT(pk["f32_gmacs"].get<double>(), 0);
    // Many sequences: each generated token's matmuls at the peaks, counted here from the
    // file: every matrix (all but the token embedding, which is looked up, unless it is also
    // the output) rows x cols multiply-adds at the int8 peak for quantized types and the f32
    // peak for f32/f16 (the tiny preset has no experts and no BF16).
    auto f = gguf::File::open(m);
    ASSERT_TRUE(f);
    const bool tied = f->find_tensor("output.weight") == nullptr;
    double gen_s = 0;
    for (const auto& t : f->tensors()) {
        if (t.n_dims < 2 || (t.name == "token_embd.weight" && !tied)) continue;
        const bool fl = t.type == lokal::TensorType::F32 || t.type == lokal::TensorType::F16;
        gen_s += (double)t.n_elements() / (1e9 * pk[fl ? "f32_gmacs" : "int8_gmacs"].get<double>());
    }
    ASSERT_GT(gen_s, 0);
    EXPECT_NEAR(bounds["batched_tps"].get<double>(), 1 / gen_s, 1e-6 / gen_s);
    EXPECT_NEAR(bounds["batched_speedup"].get<double>(),
                bounds["batched_tps"].get<double>() / bounds["tg_tps"].get<double>(), 1e-9);
    for (const json& e : j["batched"])
        EXPECT_NEAR(e["compute_fraction"].get<double>(), e["tps_mean"].get<double>() * gen_s,
                    1e-6 * e["compute_fraction"].get<double>());
    // A prompt computes logits for its last token only: less arithmetic per token.
    EXPECT_GT(j["pp"]["compute_fraction"].get<double>(), 0);
    EXPECT_LT(j["pp"]["compute_fraction"].get<double>(), j["pp"]["tps_mean"].get<double>() * gen_s);
}

// --matmul-profile: the generation test's matmuls by shape. The tiny preset's per-token calls
// are known from its architecture: per layer one fused Q/K/V, one attention output, one fused
// gate/up and one down projection, plus the output layer once per token.
TEST_F(Synth, BenchMatmulProfileCountsTheGenerationMatmuls) {
    const std::string m = make("tiny", "Q4_0");
    const Result info = lokal("info -m " + q(m) + " --json");
    ASSERT_EQ(info.code, 0) << info.err;
    const json inf = json::parse(info.out);
    const Result r = lokal("bench -m " + q(m) +
                           " -p 0 -n 4 -b 0 -r 2 -t 2 --roofline 10 --matmul-profile --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    ASSERT_TRUE(j.contains("matmul_profile")) << r.out;
    // Tokens evaluated: the warm-up (min(n, 4)) and r reps of n.
    const int64_t tokens = 4 + 2 * 4;
    int64_t calls = 0;
    for (const json& e : j["matmul_profile"]) {
        EXPECT_EQ(e["tokens"], 1);
        EXPECT_GT(e["gbps"].get<double>(), 0);
        EXPECT_EQ(e["calls"].get<int64_t>() % tokens, 0) << e.dump();
        calls += e["calls"].get<int64_t>();
    }
    const int64_t layers = inf["block_count"].get<int64_t>();
    EXPECT_EQ(calls, tokens * (4 * layers + 1)) << j["matmul_profile"].dump();
    const Result table =
        lokal("bench -m " + q(m) + " -p 0 -n 4 -b 0 -r 1 -t 2 --roofline 10 --matmul-profile");
    ASSERT_EQ(table.code, 0) << table.err;
    EXPECT_NE(table.out.find("| rows × cols | tokens | calls |"), std::string::npos) << table.out;
}

// --matmul-profile with batches: each batched test's generation steps alone (its prompts,
// 3 x 4 tokens per pass, are not counted), every call with all 3 sequences' tokens, and the
// steps' own time, which the matmuls' time cannot exceed.
TEST_F(Synth, BenchMatmulProfileCountsTheBatchedSteps) {
    const std::string m = make("tiny", "Q4_0");
    const Result info = lokal("info -m " + q(m) + " --json");
    ASSERT_EQ(info.code, 0) << info.err;
    const int64_t layers = json::parse(info.out)["block_count"].get<int64_t>();
    const std::string args =
        "bench -m " + q(m) +
        " -p 0 -n 0 -b 3 -r 2 --npp 4 --ntg 2 -t 2 --roofline 10 --matmul-profile";
    const Result r = lokal(args + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_FALSE(j.contains("matmul_profile")) << r.out;  // no tg test
    ASSERT_EQ(j["batched"].size(), 1u);
    const json& b = j["batched"][0];
    ASSERT_TRUE(b.contains("matmul_profile")) << r.out;
    int64_t calls = 0;
    double seconds = 0;
    for (const json& e : b["matmul_profile"]) {
        EXPECT_EQ(e["tokens"], 3) << e.dump();
        calls += e["calls"].get<int64_t>();
        seconds += e["seconds"].get<double>();
    }
    EXPECT_EQ(calls, 2 * 2 * (4 * layers + 1)) << b["matmul_profile"].dump();
    EXPECT_GT(seconds, 0.0);
    EXPECT_LE(seconds, b["gen_seconds"].get<double>());
    const Result table = lokal(args);
    ASSERT_EQ(table.code, 0) << table.err;
    EXPECT_NE(table.out.find("matmuls during batched 3 × tg2 (steps only)"), std::string::npos)
        << table.out;
}

// Batched runs without a one-sequence figure (no -b 1, -n 0) claim no speed-up.
TEST_F(Synth, BenchBatchedWithoutOneSequenceHasNoSpeedup) {
    const std::string m = make("tiny", "Q4_0");
    const std::string args =
        "bench -m " + q(m) + " -p 0 -n 0 -b 2 -r 1 --npp 4 --ntg 2 -t 2 --roofline 10";
    const Result r = lokal(args + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    ASSERT_EQ(j["batched"].size(), 1u);
    EXPECT_TRUE(j["batched"][0]["speedup"].is_null()) << r.out;
    const Result table = lokal(args);
    ASSERT_EQ(table.code, 0) << table.err;
    const size_t row = table.out.find("| batched 2 × tg2 |");
    ASSERT_NE(row, std::string::npos) << table.out;
    // The row claims no speed-up (the ceilings line below the table may name one sequence).
    const std::string line = table.out.substr(row, table.out.find('\n', row) - row);
    EXPECT_EQ(line.find("one sequence"), std::string::npos) << line;
}

TEST(Bench, MemoryReportsOneAndNThreads) {
    const Result r = lokal("bench --memory --buffer-mib 64 -t 2 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    ASSERT_EQ(j["results"].size(), 2u);
    EXPECT_EQ(j["results"][0]["threads"], 1);
    EXPECT_EQ(j["results"][1]["threads"], 2);
    EXPECT_GT(j["results"][1]["gbps"].get<double>(), 0);
    // The best pass's streams per thread: one of the counts tried (1, 2, 4), each with and
    // without a request per page ahead.
    for (const json& res : j["results"]) {
        const int s = res["streams_per_thread"].get<int>();
        EXPECT_TRUE(s == 1 || s == 2 || s == 4) << s;
        EXPECT_TRUE(res["page_requests"].is_boolean()) << res.dump();
    }
    EXPECT_EQ(j["buffer_bytes"], 64 << 20);
}

// --compute: the multiply-add peaks with 1 and N threads, on the kernel path in use.
TEST(Bench, ComputeReportsOneAndNThreads) {
    const Result r = lokal("bench --compute -t 2 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    ASSERT_EQ(j["results"].size(), 2u);
    const bool simd = j["kernel_path"] != "scalar" && j["kernel_path"] != "reference";
    for (int i = 0; i < 2; ++i) {
        const json& res = j["results"][i];
        EXPECT_EQ(res["threads"], i + 1);
        if (!simd) continue;
        EXPECT_GT(res["int8_gmacs"].get<double>(), 0);
        EXPECT_GT(res["f32_gmacs"].get<double>(), 0);
        const std::string instr = res["int8_instruction"].get<std::string>();
        EXPECT_EQ(instr, j["kernel_path"] == "avx2" ? "vpmaddubsw ymm" : "vpdpbusd zmm");
    }
    const Result text = lokal("bench --compute -t 1");
    ASSERT_EQ(text.code, 0) << text.err;
    EXPECT_NE(text.out.find("multiply-adds,  1 thread"), std::string::npos) << text.out;
}

TEST(Bench, BadFlagsFailWithOneLine) {
    const std::string m = q(lokal::test::shared_path("models/tiny-k.Q4_0.gguf"));
    for (const std::string& args : std::vector<std::string>{
             "bench",
             "bench -m " + m + " -b 1,x",
             "bench -m " + m + " -b 0,4",
             "bench -m " + m + " -p -1",
             "bench -m " + m + " -p 1-1048576",
             "bench -m " + m + " -d 8-4",
             "bench -m " + m + " -p 4-16*1",
             "bench -m " + m + " -t 1,x",
             "bench -m " + m + " -n 4,",
             "bench -m " + m + " -p 1-64 -n 1-64 -d 1-4",
             "bench -m " + m + " --pg 16",
             "bench -m " + m + " --pg 16,0",
             "bench -m " + m + " --pg 16,4,2",
             "bench -m " + m + " --pg x,4",
             "bench -m " + m + " --cache-type f16,q4_1",
             "bench -m " + m + " --cache-type f16,",
             "bench -m " + m + " --memory",
             "bench -m " + m + " --compute",
             "bench -m /nonexistent.gguf --roofline 1",
             "bench --bogus",
             "bench -m " + m + " --cache-type q4_1",
             "bench -m " + q(lokal::test::shared_path("models/stories260K.gguf")) +
                 " --cache-type q8_0 --roofline 1",
             "synth --preset nope --type q4_0 -o /tmp/x.gguf",
             "synth --preset tiny --type q9_9 -o /tmp/x.gguf",
             "synth --preset tiny --type q4_0",
             "synth --preset tiny --type q4_0 --vocab /nonexistent.gguf -o /tmp/x.gguf"}) {
        const Result r = lokal(args);
        EXPECT_NE(r.code, 0) << args;
        EXPECT_EQ(count_lines(r.err), 1u) << args << ": " << r.err;
        EXPECT_EQ(r.err.rfind("lokal: ", 0), 0u) << args << ": " << r.err;
        EXPECT_TRUE(r.out.empty()) << args;
    }
}

// MemTotal from /proc/meminfo in bytes (0 when unreadable).
uint64_t mem_total_bytes() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    while (in >> key >> kib) {
        if (key == "MemTotal:") return kib * 1024;
        in.ignore(1 << 10, '\n');
    }
    return 0;
}

// A test whose KV cache cannot fit is refused before anything runs: one line that names the
// sizes and what to lower, not an allocation the system kills hours into the fill.
TEST(Bench, ContextLargerThanMemoryIsRefusedUpFront) {
    const std::string m = q(lokal::test::shared_path("models/tiny-k.Q4_0.gguf"));
    // 512 sequences of 131,088 positions at 512 bytes each (tiny-k's f16 K and V per
    // position, `lokal info`): 34.4 GB.
    const double need = 512.0 * (65536 + 65536 + 16) * 512;
    const uint64_t total = mem_total_bytes();
    if (total == 0 || need <= 0.9 * (double)total) GTEST_SKIP() << "this machine could hold it";
    const Result r =
        lokal("bench -m " + m + " -p 0 -n 0 -b 512 --npp 65536 --ntg 65536 --roofline 1");
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find("x 512 sequences"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("KV cache"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("lower -b, --npp or --ntg"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
}

// -p, -n, -d and -t take lists and llama-bench's ranges: every test runs for every value
// (each depth with each generation length), at each thread count; `tests` holds one
// record per result, `runs` the ceilings per thread count. The single-run keys (`pp`, `tg`,
// ...) are left out when a list has several values.
TEST(Bench, ListsRunEveryCombination) {
    const std::string m = q(lokal::test::shared_path("models/stories260K.gguf"));
    Result r = lokal("bench -m " + m +
                     " -p 4-16*2 -n 2 -d 0,3-6+3 -t 1,2 -b 1,2 --npp 2 --ntg 2 -r 1 --roofline 1 "
                     "--json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    ASSERT_EQ(j["runs"].size(), 2u);
    EXPECT_EQ(j["runs"][0]["threads"], 1);
    EXPECT_EQ(j["runs"][1]["threads"], 2);
    std::vector<std::string> got;
    for (const json& e : j["tests"]) {
        EXPECT_EQ(e["samples"].size(), 1u);
        EXPECT_GT(e["tps_mean"].get<double>(), 0);
        std::string name =
            std::to_string(e["threads"].get<int>()) + " " + e["test"].get<std::string>();
        if (e.contains("n_prompt")) name += " p" + std::to_string(e["n_prompt"].get<int>());
        if (e.contains("n_gen")) name += " n" + std::to_string(e["n_gen"].get<int>());
        if (e.contains("depth")) name += " d" + std::to_string(e["depth"].get<int>());
        if (e.contains("batch")) name += " b" + std::to_string(e["batch"].get<int>());
        got.push_back(name);
    }
    std::vector<std::string> want;
    for (const char* t : {"1", "2"}) {
        for (const char* p : {" p4", " p8", " p16"})
            for (const char* x : {" pp%", " pp_depth% d3", " pp_depth% d6"}) {
                std::string w = std::string(t) + x;
                w.replace(w.find('%'), 1, p);
                want.push_back(w);
            }
        for (const char* x :
             {" tg n2", " tg_depth n2 d3", " tg_depth n2 d6", " batched b1", " batched b2"})
            want.push_back(std::string(t) + x);
    }
    EXPECT_EQ(got, want);
    for (const char* k : {"pp", "pp_depth", "tg", "tg_depth", "batched"})
        EXPECT_FALSE(j.contains(k)) << k;
    EXPECT_EQ(j["threads"], 1);  // the first run's, as before lists
    // The table gets a threads column when there are several.
    r = lokal("bench -m " + m + " -p 4 -n 2 -b 0 -t 1,2 -r 1 --roofline 1");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("| threads | test | t/s | notes |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("| 2 | tg2 |"), std::string::npos) << r.out;
}

// --pg PP,TG (llama-bench's -pg): a prompt then TG tokens one at a time, timed as one request,
// at depth 0 and each -d; its rate counts both. One --pg keeps the single-run key `pg`.
TEST(Bench, PromptThenGenerationIsOneTimedRequest) {
    const std::string m = q(lokal::test::shared_path("models/stories260K.gguf"));
    Result r = lokal("bench -m " + m + " -p 0 -n 0 -b 0 --pg 16,4 -d 0,8 -r 2 --roofline 1 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    json j = json::parse(r.out);
    ASSERT_EQ(j["tests"].size(), 2u) << j["tests"].dump();
    const json& pg = j["tests"][0];
    const json& pd = j["tests"][1];
    EXPECT_EQ(pg["test"], "pg");
    EXPECT_EQ(pg["n_prompt"], 16);
    EXPECT_EQ(pg["n_gen"], 4);
    EXPECT_EQ(pg["samples"].size(), 2u);
    EXPECT_GT(pg["tps_mean"].get<double>(), 0);
    EXPECT_FALSE(pg.contains("compute_fraction"));  // two ceilings: neither alone applies
    EXPECT_EQ(pd["test"], "pg_depth");
    EXPECT_EQ(pd["depth"], 8);
    EXPECT_EQ(pd["n_gen"], 4);
    EXPECT_NEAR(pd["ratio_to_pg"].get<double>(),
                pd["tps_mean"].get<double>() / pg["tps_mean"].get<double>(), 1e-9);
    EXPECT_EQ(j["pg"]["n_prompt"], 16);
    EXPECT_FALSE(j.contains("tg"));
    // Two of them: both run, in the order given, and the single-run key is left out.
    r = lokal("bench -m " + m + " -p 0 -n 0 -b 0 --pg 8,2 --pg 4,4 -r 1 --roofline 1");
    ASSERT_EQ(r.code, 0) << r.err;
    const size_t a = r.out.find("| pp8+tg2 |"), b = r.out.find("| pp4+tg4 |");
    EXPECT_NE(a, std::string::npos) << r.out;
    EXPECT_NE(b, std::string::npos) << r.out;
    EXPECT_LT(a, b);
    r = lokal("bench -m " + m + " -p 0 -n 0 -b 0 --pg 8,2 --pg 4,4 -r 1 --roofline 1 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_EQ(j["tests"].size(), 2u);
    EXPECT_FALSE(j.contains("pg"));
}

// --cache-type takes a list: every test runs with each KV cache type (after the other
// lists), each record and run names its type, the table gets a KV column, and a depth's
// KV bytes are the type's own (a Q8_0 row is 34 bytes per 32 values against f16's 64).
TEST(Bench, CacheTypesRunEveryTest) {
    const std::string m = q(lokal::test::shared_path("models/tiny-k.Q4_0.gguf"));
    Result r = lokal("bench -m " + m +
                     " -p 8 -n 2 -d 16 -b 0 --cache-type f16,q8_0,f16 -r 1 --roofline 1 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    std::vector<std::string> got;
    for (const json& e : j["tests"])
        got.push_back(e["cache_type"].get<std::string>() + " " + e["test"].get<std::string>());
    EXPECT_EQ(got,
              (std::vector<std::string>{"f16 pp", "f16 pp_depth", "f16 tg", "f16 tg_depth",
                                        "q8_0 pp", "q8_0 pp_depth", "q8_0 tg", "q8_0 tg_depth"}));
    ASSERT_EQ(j["runs"].size(), 2u);
    EXPECT_EQ(j["runs"][0]["cache_type"], "f16");
    EXPECT_EQ(j["runs"][1]["cache_type"], "q8_0");
    EXPECT_EQ(j["cache_type"], "f16");  // the first, as before lists
    const double f16_kv = j["tests"][3]["kv_bytes_per_token"].get<double>();
    const double q8_kv = j["tests"][7]["kv_bytes_per_token"].get<double>();
    EXPECT_NEAR(q8_kv / f16_kv, 34.0 / 64.0, 1e-9);
    EXPECT_FALSE(j.contains("tg"));
    r = lokal("bench -m " + m + " -p 0 -n 2 -b 0 --cache-type q8_0,f16 -r 1 --roofline 1");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("| KV | test | t/s | notes |"), std::string::npos) << r.out;
    EXPECT_LT(r.out.find("| q8_0 | tg2 |"), r.out.find("| f16 | tg2 |")) << r.out;
    EXPECT_NE(r.out.find("q8_0, f16 KV caches"), std::string::npos) << r.out;
}

// Every test of every thread count and KV cache type runs in rounds: every one of round r's
// repetitions starts before any of round r + 1's; each also gives its ratio to the same test
// at the first thread count and with the first KV cache type, and a prompt at depth its ratio
// to the plain prompt, the median of the per-round ratios of the samples it reports.
TEST(Bench, RoundsInterleaveThreadCountsAndCacheTypes) {
    const std::string m = q(lokal::test::shared_path("models/tiny-k.Q4_0.gguf"));
    const int reps = 3;
    const Result r = lokal("bench -m " + m +
                           " -p 4 -n 2 -d 8 -b 1,2 --npp 2 --ntg 2 -t 1,2 --cache-type f16,q8_0 "
                           "-r 3 --roofline 1 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    std::vector<double> round_min(reps, 1e300), round_max(reps, 0);
    std::map<std::string, const json*> by_name;  // round tests by threads, type and test
    size_t round_tests = 0;
    for (const json& e : j["tests"]) {
        const std::string test = e["test"];
        const std::vector<double> starts = e["sample_start_s"];
        ASSERT_EQ(starts.size(), (size_t)reps) << e.dump();
        ++round_tests;
        for (int i = 0; i < reps; ++i) {
            round_min[i] = std::min(round_min[i], starts[i]);
            round_max[i] = std::max(round_max[i], starts[i]);
        }
        const std::string name = std::to_string(e["threads"].get<int>()) + " " +
                                 e["cache_type"].get<std::string>() + " " + test +
                                 (e.contains("batch") ? std::to_string(e["batch"].get<int>()) : "");
        by_name[name] = &e;
    }
    // pp, pp_depth, tg, tg_depth, batched 1 and 2 for each of 4 runs
    EXPECT_EQ(round_tests, 4u * 6u);
    for (int i = 0; i + 1 < reps; ++i) EXPECT_LT(round_max[i], round_min[i + 1]) << "round " << i;

    auto median_ratio = [](const json& a, const json& b) {
        std::vector<double> v;
        for (size_t i = 0; i < a["samples"].size(); ++i)
            v.push_back(a["samples"][i].get<double>() / b["samples"][i].get<double>());
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];  // 3 rounds: the middle one
    };
    for (const std::string test : {"pp", "pp_depth", "tg", "tg_depth", "batched1", "batched2"}) {
        const json& d = *by_name.at("2 q8_0 " + test);
        if (test == "pp_depth") {
            EXPECT_NEAR(d["ratio_to_pp_paired"].get<double>(),
                        median_ratio(d, *by_name.at("2 q8_0 pp")), 1e-9);
        }
        const json& first = *by_name.at("1 f16 " + test);
        EXPECT_FALSE(first.contains("paired_with")) << first.dump();
        const json& both = *by_name.at("2 q8_0 " + test);
        ASSERT_EQ(both["paired_with"].size(), 2u) << both.dump();
        const json& t = both["paired_with"][0];  // the first thread count, the same type
        EXPECT_EQ(t["threads"], 1);
        EXPECT_EQ(t["cache_type"], "q8_0");
        EXPECT_NEAR(t["ratio"].get<double>(), median_ratio(both, *by_name.at("1 q8_0 " + test)),
                    1e-9);
        const json& k = both["paired_with"][1];  // the same thread count, the first type
        EXPECT_EQ(k["threads"], 2);
        EXPECT_EQ(k["cache_type"], "f16");
        EXPECT_NEAR(k["ratio"].get<double>(), median_ratio(both, *by_name.at("2 f16 " + test)),
                    1e-9);
        EXPECT_EQ(by_name.at("1 q8_0 " + test)->at("paired_with").size(), 1u);
        EXPECT_EQ(by_name.at("2 f16 " + test)->at("paired_with").size(), 1u);
    }
}

// With several thread counts or KV cache types every run's generation and batched contexts
// exist together: refused up front when all of them would not fit, though one run's would.
TEST(Bench, ContextsOfEveryRunAreCheckedTogether) {
    const std::string m = q(lokal::test::shared_path("models/tiny-k.Q4_0.gguf"));
    // tiny-k: 512 bytes of f16 K and V per position. Depths of 1,048,576 positions (0.5 GiB
    // each) making 60% of the memory: one thread count's fit (90% is the limit), two's not.
    const uint64_t mem = mem_total_bytes();
    ASSERT_GT(mem, 0u);
    const uint64_t per_depth = (uint64_t)512 << 20;
    const uint64_t n = mem / 10 * 6 / per_depth;
    if (n < 2 || n > 63) GTEST_SKIP() << "the depths would not make 60% of this machine's memory";
    const std::string depths =
        std::to_string(1048576 - (n - 1)) + "-1048576";  // n depths of about 2^20 positions
    // A timeout: a binary that did not refuse would start filling them.
    const Result r =
        lokal("bench -m " + m + " -p 0 -n 2 -b 0 -d " + depths + " -t 1,2 -r 1 --roofline 1",
              "timeout 60");
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find("side by side"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("-t or --cache-type"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty());
}

// Each depth fits alone but the generation tests' contexts exist together (they run in
// rounds): their sum is checked too, before anything runs.
TEST(Bench, ContextsThatCoexistAreCheckedTogether) {
    const std::string m = q(lokal::test::shared_path("models/tiny-k.Q4_0.gguf"));
    // tiny-k: 512 bytes of f16 K and V per position (see above). 64 depths of 984,064 to
    // 1,048,576 positions: each about 0.5 GB, 32.5 GB together; skipped where 90% of the
    // memory would hold them.
    const uint64_t mem = mem_total_bytes();
    ASSERT_GT(mem, 0u);
    if (mem / 10 * 9 > (uint64_t)34 << 30) GTEST_SKIP() << "this machine holds them all";
    if (mem / 10 * 9 < (uint64_t)1 << 30) GTEST_SKIP() << "one depth alone would not fit";
    const Result r =
        lokal("bench -m " + m + " -p 0 -n 4 -b 0 -d 984064-1048576+1024 -r 1 --roofline 1");
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find("side by side"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty());
}

// Past the model's training context (tiny-k: 512) the speed is measured all the same, with
// a note on stderr; within it, no note.
TEST(Bench, PastTheTrainingContextIsNotedNotRefused) {
    const std::string m = q(lokal::test::shared_path("models/tiny-k.Q4_0.gguf"));
    const std::string note = "past the model's training context of 512";
    Result r = lokal("bench -m " + m + " -p 0 -n 4 -d 600 -b 0 -r 1 --roofline 1 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find(note), std::string::npos) << r.err;
    EXPECT_TRUE(json::parse(r.out).contains("tg_depth"));
    r = lokal("bench -m " + m + " -p 0 -n 4 -d 100 -b 0 -r 1 --roofline 1 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.err.find(note), std::string::npos) << r.err;
}

}  // namespace
