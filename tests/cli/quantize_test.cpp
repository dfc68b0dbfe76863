// `lokal quantize`, `imatrix`, `perplexity --kl-divergence`, `quant-error` and
// `quant-report`, run as a user would, against the reference-quantized tiny-k files.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "shared_path.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

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

// A scratch folder for the whole test binary run, removed at exit.
const std::string& scratch() {
    static const std::string dir = [] {
        const std::string d =
            (fs::temp_directory_path() / ("lokal_quant_cli_" + std::to_string(getpid()))).string();
        fs::create_directories(d);
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(
                fs::temp_directory_path() / ("lokal_quant_cli_" + std::to_string(getpid())), ec);
        });
        return d;
    }();
    return dir;
}

Result lokal(const std::string& args) {
    static int counter = 0;
    const std::string base = scratch() + "/run" + std::to_string(counter++);
    const std::string cmd = std::string(LOKAL_BINARY_DIR) + "/bin/lokal " + args + " </dev/null >" +
                            base + ".out 2>" + base + ".err";
    Result r;
    const int status = std::system(cmd.c_str());
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(base + ".out");
    r.err = slurp(base + ".err");
    return r;
}

std::string q(const std::string& s) {
    return "'" + s + "'";
}
std::string model(const std::string& name) {
    return lokal::test::shared_path("models/" + name);
}
std::string text() {
    return lokal::test::shared_path("text/stories.txt");
}
std::string tmp(const std::string& name) {
    return scratch() + "/" + name;
}

size_t count_lines(const std::string& s) {
    size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

// Base logits of tiny-k f32 on stories.txt, computed once.
const std::string& tiny_k_base() {
    static const std::string path = [] {
        const std::string p = tmp("tiny-k.f32.kld");
        const Result r = lokal("perplexity -m " + q(model("tiny-k.f32.gguf")) + " -f " + q(text()) +
                               " -c 128 -t 2 --kl-divergence-base " + q(p) + " --json");
        EXPECT_EQ(r.code, 0) << r.err;
        return p;
    }();
    return path;
}

json kld_of(const std::string& gguf) {
    const Result r = lokal("perplexity -m " + q(gguf) + " -f " + q(text()) +
                           " -t 2 --kl-divergence " + q(tiny_k_base()) + " --json");
    EXPECT_EQ(r.code, 0) << r.err;
    return r.code == 0 ? json::parse(r.out) : json();
}

// The bar: for every type, lokal's quantization of tiny-k.f32 is at most 1.05x
// the reference file's mean KL-divergence against f32, and within 2% of its size.
TEST(QuantizeCli, MatchesReferenceQualityAndSizeForEveryType) {
    for (const char* type : {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K",
                             "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"}) {
        const std::string out = tmp(std::string("tk.") + type + ".gguf"),
                          ref = model(std::string("tiny-k.") + type + ".gguf");
        const Result r =
            lokal("quantize -q -t 2 " + q(model("tiny-k.f32.gguf")) + " " + q(out) + " " + type);
        ASSERT_EQ(r.code, 0) << type << ": " << r.err;
        const double ours_size = (double)fs::file_size(out), ref_size = (double)fs::file_size(ref);
        EXPECT_LE(std::abs(ours_size - ref_size), 0.02 * ref_size) << type;
        const json ours = kld_of(out), theirs = kld_of(ref);
        const double k_ours = ours["kld"]["mean"], k_ref = theirs["kld"]["mean"];
        EXPECT_LE(k_ours, 1.05 * k_ref + 1e-9)
            << type << ": ours " << k_ours << ", reference " << k_ref;
        std::printf("  %-7s size %8.0f (ref %8.0f)  mean KLD %.6f (ref %.6f)  top-1 %.3f\n", type,
                    ours_size, ref_size, k_ours, k_ref, ours["top1_agreement"].get<double>());
        fs::remove(out);
    }
}

TEST(QuantizeCli, OutputIsThreadCountIndependent) {
    const std::string a = tmp("t1.gguf"), b = tmp("t3.gguf");
    for (const char* type : {"Q4_K_M", "IQ4_XS", "Q5_1"}) {
        ASSERT_EQ(
            lokal("quantize -q -t 1 " + q(model("tiny-k.f32.gguf")) + " " + q(a) + " " + type).code,
            0);
        ASSERT_EQ(
            lokal("quantize -q -t 3 " + q(model("tiny-k.f32.gguf")) + " " + q(b) + " " + type).code,
            0);
        EXPECT_TRUE(slurp(a) == slurp(b)) << type;
    }
}

TEST(QuantizeCli, SummaryJsonAndMetadata) {
    const std::string out = tmp("sum.gguf");
    const Result r =
        lokal("quantize --json " + q(model("tiny-k.f32.gguf")) + " " + q(out) + " q4_k_m");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["type"], "Q4_K_M");
    EXPECT_EQ(j["file_type"], 15);
    EXPECT_EQ(j["output_bytes"].get<uint64_t>(), fs::file_size(out));
    EXPECT_NEAR(j["bits_per_weight"].get<double>(), 4.9, 0.2);
    EXPECT_EQ(j["tensor_types"]["f32"], 5);
    const Result info = lokal("info --json -m " + q(out));
    ASSERT_EQ(info.code, 0) << info.err;
    EXPECT_EQ(json::parse(info.out)["name"], "synthetic-tiny-k");  // metadata carried over
}

TEST(QuantizeCli, ProgressOnStderrSummaryOnStdout) {
    const Result r =
        lokal("quantize -t 2 " + q(model("tiny-k.f32.gguf")) + " " + q(tmp("p.gguf")) + " Q8_0");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("quantizing ["), std::string::npos);
    EXPECT_NE(r.out.find("bits per weight"), std::string::npos);
    EXPECT_EQ(r.out.find("quantizing"), std::string::npos);
}

TEST(QuantizeCli, UnknownTypeListsTheValidOnes) {
    const Result r =
        lokal("quantize " + q(model("tiny-k.f32.gguf")) + " " + q(tmp("x.gguf")) + " Q3_0");
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find("Q4_K_M"), std::string::npos);
    EXPECT_FALSE(fs::exists(tmp("x.gguf")));
}

TEST(QuantizeCli, MissingInputIsOneLine) {
    const Result r = lokal("quantize /nonexistent.gguf " + q(tmp("x.gguf")) + " Q8_0");
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
}

TEST(QuantizeCli, QuantizedInputIsRequantizedWithAWarning) {
    const std::string out = tmp("requant.gguf");
    const Result r = lokal("quantize -q " + q(model("tiny-k.Q8_0.gguf")) + " " + q(out) + " Q4_0");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("already quantized"), std::string::npos) << r.err;
    const json k = kld_of(out);
    EXPECT_LT(k["kld"]["mean"].get<double>(), 0.2);
}

TEST(QuantizeCli, FallbacksAreReportedOnSmallRealModel) {
    // stories260K: rows of 64 and 172 fit no 256-element super-block (and 172 not even 32).
    const std::string out = tmp("s260.gguf");
    const Result r =
        lokal("quantize -q " + q(model("stories260K.gguf")) + " " + q(out) + " Q4_K_M");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("using q5_0"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("using f16"), std::string::npos) << r.err;
    const Result run = lokal("run -m " + q(out) + " -p 'Once upon a time' -n 8 --temp 0");
    EXPECT_EQ(run.code, 0) << run.err;
}

TEST(KlDivergenceCli, IdenticalModelScoresZero) {
    const json k = kld_of(model("tiny-k.f32.gguf"));
    EXPECT_LT(k["kld"]["mean"].get<double>(), 1e-6);
    EXPECT_DOUBLE_EQ(k["top1_agreement"].get<double>(), 1.0);
    EXPECT_NEAR(k["delta_ppl"].get<double>(), 0.0, 1e-6);
    EXPECT_TRUE(k["kld"].contains("p99"));
}

TEST(KlDivergenceCli, CorruptBaseIsRejectedInOneLine) {
    const std::string data = slurp(tiny_k_base());
    const std::string bad = tmp("bad.kld");
    std::ofstream(bad, std::ios::binary) << data.substr(0, data.size() - 7);
    Result r = lokal("perplexity -m " + q(model("tiny-k.Q8_0.gguf")) + " -f " + q(text()) +
                     " --kl-divergence " + q(bad));
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    std::ofstream(bad, std::ios::binary) << std::string(4096, 'x');
    r = lokal("perplexity -m " + q(model("tiny-k.Q8_0.gguf")) + " -f " + q(text()) +
              " --kl-divergence " + q(bad));
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.err.find("magic"), std::string::npos) << r.err;
    // Another model's vocabulary.
    r = lokal("perplexity -m " + q(model("TinyStories-656K.f16.gguf")) + " -f " + q(text()) +
              " --kl-divergence " + q(tiny_k_base()));
    EXPECT_NE(r.code, 0);
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
}

// The importance matrix must not make low-bit quantization worse (here it is measured on
// the calibration text itself; docs/QUANTIZATION.md has held-out numbers).
TEST(ImatrixCli, ImportanceDoesNotHurtLowBitTypes) {
    const std::string im = tmp("tk.imatrix");
    Result r = lokal("imatrix -m " + q(model("tiny-k.f32.gguf")) + " -f " + q(text()) +
                     " -c 128 -t 2 -o " + q(im) + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["entries"], 14);
    for (const char* type : {"Q2_K", "Q3_K_S", "Q4_0", "Q4_K_S", "IQ4_XS"}) {
        const std::string plain = tmp("plain.gguf"), weighted = tmp("weighted.gguf");
        ASSERT_EQ(
            lokal("quantize -q " + q(model("tiny-k.f32.gguf")) + " " + q(plain) + " " + type).code,
            0);
        r = lokal("quantize --json --imatrix " + q(im) + " " + q(model("tiny-k.f32.gguf")) + " " +
                  q(weighted) + " " + type);
        ASSERT_EQ(r.code, 0) << r.err;
        EXPECT_EQ(json::parse(r.out)["with_importance"], 14) << type;
        const double k_plain = kld_of(plain)["kld"]["mean"],
                     k_weighted = kld_of(weighted)["kld"]["mean"];
        EXPECT_LE(k_weighted, k_plain * 1.01) << type;
        std::printf("  %-7s mean KLD without imatrix %.6f, with %.6f\n", type, k_plain, k_weighted);
    }
}

TEST(ImatrixCli, DatFormatRoundTripsAndIsThreadIndependent) {
    const std::string g = tmp("a.imatrix"), d = tmp("a.dat"), qa = tmp("qa.gguf"),
                      qb = tmp("qb.gguf");
    ASSERT_EQ(lokal("imatrix -m " + q(model("stories260K.gguf")) + " -f " + q(text()) +
                    " -c 64 -o " + q(g))
                  .code,
              0);
    ASSERT_EQ(lokal("imatrix -m " + q(model("stories260K.gguf")) + " -f " + q(text()) +
                    " -c 64 -o " + q(d))
                  .code,
              0);
    EXPECT_NE(slurp(g).substr(0, 4), slurp(d).substr(0, 4));  // GGUF vs legacy
    for (const std::string& im : {g, d}) {
        ASSERT_EQ(lokal("quantize -q -t 1 --imatrix " + q(im) + " " + q(model("stories260K.gguf")) +
                        " " + q(qa) + " Q4_0")
                      .code,
                  0);
        ASSERT_EQ(lokal("quantize -q -t 2 --imatrix " + q(im) + " " + q(model("stories260K.gguf")) +
                        " " + q(qb) + " Q4_0")
                      .code,
                  0);
        EXPECT_TRUE(slurp(qa) == slurp(qb)) << im;
    }
    const Result bad = lokal("quantize --imatrix " + q(tiny_k_base()) + " " +
                             q(model("stories260K.gguf")) + " " + q(qb) + " Q4_0");
    EXPECT_NE(bad.code, 0);
    EXPECT_EQ(count_lines(bad.err), 1u) << bad.err;
}

TEST(QuantErrorCli, GroupsBeatChannelsBeatTensors) {
    const Result r = lokal("quant-error -m " + q(model("stories260K.gguf")) + " --bits 4,2 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["mode"], "asymmetric");
    const json& all = j["classes"].back();
    EXPECT_EQ(all["class"], "all");
    std::map<std::string, double> snr4;
    for (const json& res : all["results"])
        if (res["bits"] == 4) snr4[res["granularity"]] = res["snr_db"];
    EXPECT_GT(snr4["group32"], snr4["group128"]);
    EXPECT_GT(snr4["group128"] + 0.5, snr4["channel"]);
    EXPECT_GT(snr4["channel"], snr4["tensor"]);
    EXPECT_GT(snr4["group32"], 15.0);
    EXPECT_NE(lokal("quant-error -m " + q(model("stories260K.gguf")) + " --granularity rows").code,
              0);
    EXPECT_NE(
        lokal("quant-error -m " + q(model("stories260K.gguf")) + " --symmetric --asymmetric").code,
        0);
}

TEST(QuantReportCli, WritesTableCsvAndPlot) {
    const std::string dir = tmp("report");
    const Result r = lokal("quant-report -m " + q(model("stories260K.gguf")) + " -f " + q(text()) +
                           " --types Q8_0,Q4_0,Q2_K -c 64 -n 8 -t 2 -o " + q(dir) + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    ASSERT_EQ(j.size(), 4u);
    EXPECT_EQ(j[0]["type"], "base");
    // (Q2_K is not worse than Q4_0 here: rows of 64 fit no super-block and fall back.)
    EXPECT_LT(j[1]["kld_mean"].get<double>(), j[2]["kld_mean"].get<double>());
    EXPECT_LT(j[1]["kld_mean"].get<double>(), j[3]["kld_mean"].get<double>());
    EXPECT_GT(j[1]["gen_tok_s"].get<double>(), 0);
    const std::string csv = slurp(dir + "/report.csv");
    EXPECT_EQ(count_lines(csv), 5u);
    EXPECT_EQ(csv.rfind("type,file_bytes,bits_per_weight,ppl,delta_ppl_pct,kld_mean", 0), 0u);
    EXPECT_NE(slurp(dir + "/report.md").find("| Q4_0 |"), std::string::npos);
    const std::string png = slurp(dir + "/report.png");
    ASSERT_GT(png.size(), 100u);
    EXPECT_EQ(png.substr(1, 3), "PNG");
    EXPECT_FALSE(fs::exists(dir + "/stories260K.Q8_0.gguf"));  // removed without --keep
}

TEST(QuantCommands, EveryCommandHasHelp) {
    for (const char* c : {"quantize", "imatrix", "quant-error", "quant-report"}) {
        const Result r = lokal(std::string(c) + " --help");
        EXPECT_EQ(r.code, 0) << c;
        EXPECT_NE(r.out.find("--json"), std::string::npos) << c;
    }
}

}  // namespace
