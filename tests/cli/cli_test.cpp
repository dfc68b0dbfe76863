// The `lokal` command's contracts, run as a user would: stdout carries only results,
// diagnostics go to stderr, failures are one line and a non-zero exit.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fim_vocab.h"
#include "shared_path.h"
#include "tokenizer/vocab.h"

namespace {

using nlohmann::json;

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

// Runs build/bin/lokal with shell-quoted args; stdout and stderr captured separately.
Result lokal(const std::string& args, const std::string& stdin_text = "") {
    static int counter = 0;
    const std::string base =
        std::filesystem::temp_directory_path() /
        ("lokal_cli_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    std::ofstream(base + ".in") << stdin_text;
    const std::string cmd = std::string(LOKAL_BINARY_DIR) + "/bin/lokal " + args + " <" + base +
                            ".in >" + base + ".out 2>" + base + ".err";
    Result r;
    const int status = std::system(cmd.c_str());
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(base + ".out");
    r.err = slurp(base + ".err");
    for (const char* ext : {".in", ".out", ".err"}) std::filesystem::remove(base + ext);
    return r;
}

std::string q(const std::string& s) {
    return "'" + s + "'";
}
std::string model(const std::string& name) {
    return q(lokal::test::shared_path("models/" + name));
}
json reference(const std::string& name) {
    return json::parse(slurp(lokal::test::shared_path("reference/" + name + ".json")));
}

size_t count_lines(const std::string& s) {
    size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

TEST(Cli, RunStreamsOnlyTheGreedyContinuation) {
    const json ref = reference("stories260K");
    const json& p = ref["prompts"][0];
    const Result r = lokal("run -m " + model("stories260K.gguf") + " -p " + q(p["prompt"]) +
                           " --temp 0 -n 32 -t 2");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, p["greedy_text"].get<std::string>());
    EXPECT_NE(r.err.find("t/s"), std::string::npos) << "timings belong on stderr: " << r.err;
}

TEST(Cli, RunJsonReportsTokensAndTimings) {
    const json ref = reference("TinyStories-656K.f16");
    const json& p = ref["prompts"][1];
    const Result r = lokal("run -m " + model("TinyStories-656K.f16.gguf") + " -p " +
                           q(p["prompt"]) + " --temp 0 -n 32 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["tokens"], p["greedy_ids"]);
    EXPECT_EQ(j["text"], p["greedy_text"]);
    EXPECT_EQ(j["prompt_tokens"], p["prompt_ids"].size());
    EXPECT_EQ(j["eval_tokens"], p["greedy_ids"].size());
    EXPECT_GE(j["prompt_ms"].get<double>(), 0.0);
    EXPECT_GE(j["eval_ms"].get<double>(), 0.0);
}

// --suffix: code completion between the prompt and the suffix, on a synthesized code model
// (the tiny shape with a vocabulary that has FIM markers); a model without them refuses.
TEST(Cli, RunSuffixFillsInTheMiddle) {
    const std::string dir =
        std::filesystem::temp_directory_path() / ("lokal_cli_fim_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    lokal::test::write_fim_vocab(dir + "/vocab.gguf");
    const Result synth = lokal("synth --preset tiny --type Q8_0 --vocab " + q(dir + "/vocab.gguf") +
                               " -o " + q(dir + "/coder.gguf"));
    ASSERT_EQ(synth.code, 0) << synth.err;
    const std::string prefix = "def add(a, b):", suffix = "\n    return c\n";
    const Result r = lokal("run -m " + q(dir + "/coder.gguf") + " -p " + q(prefix) + " --suffix " +
                           q(suffix) + " --temp 0 -n 3 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    auto file = lokal::gguf::File::open(dir + "/vocab.gguf");
    auto vocab = lokal::Vocab::from_gguf(*file);
    EXPECT_EQ(json::parse(r.out)["prompt_tokens"],
              3 + vocab->tokenize(prefix, false, false).size() +
                  vocab->tokenize(suffix, false, false).size());
    std::filesystem::remove_all(dir);
    const Result no = lokal("run -m " + model("stories260K.gguf") + " -p x --suffix y");
    EXPECT_EQ(no.code, 1);
    EXPECT_NE(no.err.find("fill-in-the-middle"), std::string::npos) << no.err;
    EXPECT_EQ(count_lines(no.err), 1u) << no.err;
}

// Speculative decoding changes the speed, not the output: --lookup and --model-draft give
// the tokens a plain run gives (greedy and seeded), and report their drafts in --json.
TEST(Cli, RunDraftsKeepTheOutput) {
    for (const char* sampling : {"--temp 0", "--temp 0.9 --seed 11"}) {
        SCOPED_TRACE(sampling);
        const std::string base = "run -m " + model("tiny-k.Q8_0.gguf") +
                                 " -p 'Once upon a time' -n 48 --json " + sampling;
        const Result plain = lokal(base);
        ASSERT_EQ(plain.code, 0) << plain.err;
        for (const std::string& extra :
             {std::string("--lookup --draft-max 4"),
              "--model-draft " + model("tiny-k.Q4_0.gguf") + " --draft-p-min 0"}) {
            const Result r = lokal(base + " " + extra);
            ASSERT_EQ(r.code, 0) << r.err;
            const json j = json::parse(r.out);
            EXPECT_EQ(j["tokens"], json::parse(plain.out)["tokens"]) << extra;
            ASSERT_TRUE(j.contains("draft")) << r.out;
            EXPECT_LE(j["draft"]["accepted"].get<int>(), j["draft"]["proposed"].get<int>());
            EXPECT_NE(r.err.find("draft ("), std::string::npos) << r.err;
        }
    }
    const Result both = lokal("run -m " + model("tiny-k.Q8_0.gguf") +
                              " -p x --lookup --model-draft " + model("tiny-k.Q4_0.gguf"));
    EXPECT_EQ(both.code, 1);
    EXPECT_EQ(count_lines(both.err), 1u) << both.err;
    const Result other = lokal("run -m " + model("tiny-k.Q8_0.gguf") + " -p x --model-draft " +
                               model("tiny-qwen2.Q8_0.gguf"));
    EXPECT_EQ(other.code, 1);
    EXPECT_NE(other.err.find("--model-draft"), std::string::npos) << other.err;
    EXPECT_EQ(count_lines(other.err), 1u) << other.err;
}

TEST(Cli, SameSeedSameSample) {
    const std::string args = "run -m " + model("stories260K.gguf") +
                             " -p 'Once upon a time' -n 24 --temp 1.0 --seed 7 --json";
    const Result a = lokal(args), b = lokal(args);
    ASSERT_EQ(a.code, 0) << a.err;
    EXPECT_EQ(json::parse(a.out)["tokens"], json::parse(b.out)["tokens"]);
    const Result c = lokal("run -m " + model("stories260K.gguf") +
                           " -p 'Once upon a time' -n 24 --temp 1.0 --seed 8 --json");
    EXPECT_NE(json::parse(a.out)["tokens"], json::parse(c.out)["tokens"]);
}

// --format: the printed continuation is a JSON document of the schema's shape (a file or
// inline); a schema lokal cannot enforce is one error line naming the keyword.
TEST(Cli, RunFormatGivesJsonOfTheSchema) {
    const std::string schema_path =
        std::filesystem::temp_directory_path() / ("lokal_cli_schema_" + std::to_string(getpid()));
    std::ofstream(schema_path) << R"({"type": "object", "properties": {
        "hero": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["hero", "age"]})";
    Result r = lokal("run -m " + model("stories260K.gguf") +
                     " -p 'Once upon a time' -n 200 --seed 4 --format " + q(schema_path));
    ASSERT_EQ(r.code, 0) << r.err;
    json j;
    ASSERT_NO_THROW(j = json::parse(r.out)) << r.out;
    EXPECT_TRUE(j["hero"].is_string()) << r.out;
    EXPECT_TRUE(j["age"].is_number_integer()) << r.out;
    // Any object: this model may run out of tokens inside it; a finished one must parse.
    r = lokal("run -m " + model("stories260K.gguf") +
              " -p 'Once' -n 60 --seed 1 --format json --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json any = json::parse(r.out);
    EXPECT_EQ(any["text"].get<std::string>().substr(0, 1), "{");
    if (any["stop_reason"] == "eog") {
        EXPECT_TRUE(json::parse(any["text"].get<std::string>()).is_object());
    }
    std::filesystem::remove(schema_path);
    const Result bad = lokal("run -m " + model("stories260K.gguf") +
                             " -p x --format '{\"type\": \"string\", \"pattern\": \"a\"}'");
    EXPECT_EQ(bad.code, 1);
    EXPECT_TRUE(bad.out.empty());
    EXPECT_NE(bad.err.find("'pattern'"), std::string::npos) << bad.err;
    EXPECT_EQ(count_lines(bad.err), 1u) << bad.err;
}

// A Q8_0 KV cache runs, and the perplexity it gives is the f16 cache's within a small
// margin (8-bit K/V rounding; a wrong cache would give a vocabulary-sized perplexity).
TEST(Cli, Q8_0CacheRunsAndKeepsPerplexity) {
    const Result r = lokal("run -m " + model("tiny-k.Q8_0.gguf") +
                           " -p 'Once upon a time' --temp 0 -n 8 --cache-type q8_0 -t 2");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_FALSE(r.out.empty());
    const std::string text = q(lokal::test::shared_path("text/stories.txt"));
    double ppl[2];
    for (int i = 0; i < 2; ++i) {
        const Result p = lokal("perplexity -m " + model("tiny-k.Q8_0.gguf") + " -f " + text +
                               " -c 64 --json -t 2 --cache-type " + (i ? "q8_0" : "f16"));
        ASSERT_EQ(p.code, 0) << p.err;
        ppl[i] = json::parse(p.out)["ppl"].get<double>();
        EXPECT_EQ(json::parse(p.out)["cache_type"], i ? "q8_0" : "f16");
    }
    EXPECT_NE(ppl[0], ppl[1]);
    EXPECT_NEAR(ppl[1] / ppl[0], 1.0, 0.01) << ppl[0] << " vs " << ppl[1];
}

TEST(Cli, TokenizePrintsIdsAsJson) {
    for (const char* name : {"stories260K", "tiny-qwen2.Q8_0"}) {
        const json ref = reference(name);
        for (const json& p : ref["prompts"]) {
            const Result r = lokal("tokenize -m " + model(ref["model"]) + " -p " + q(p["prompt"]));
            ASSERT_EQ(r.code, 0) << r.err;
            EXPECT_EQ(count_lines(r.out), 1u);
            EXPECT_EQ(json::parse(r.out), p["prompt_ids"]) << name;
        }
    }
    // A vocabulary-only file, stdin, --no-bos.
    const Result r =
        lokal("tokenize -m " + q(lokal::test::shared_path("vocab/ggml-vocab-llama-spm.gguf")) +
                  " --stdin --no-bos",
              "Hello world");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out), json::parse("[15043, 3186]"));
}

TEST(Cli, NoParseSpecialTreatsMarkupAsText) {
    const std::string m = model("tiny-qwen2.Q8_0.gguf");
    const Result special = lokal("tokenize -m " + m + " -p '<|endoftext|>'");
    const Result text = lokal("tokenize -m " + m + " -p '<|endoftext|>' --no-parse-special");
    ASSERT_EQ(special.code, 0) << special.err;
    ASSERT_EQ(text.code, 0) << text.err;
    EXPECT_EQ(json::parse(special.out).size(), 1u);
    EXPECT_GT(json::parse(text.out).size(), 1u);
}

// Without -p: a chat over stdin, rendered with the model's template (or lokal's default
// when it has none, said on stderr); each reply is printed on stdout.
TEST(Cli, ChatReadsTurnsFromStdin) {
    const Result r = lokal("run -m " + model("stories260K.gguf") + " --temp 0 -n 8 -c 256",
                           "Hello there\nTell me a story\n");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("no chat template"), std::string::npos) << r.err;
    EXPECT_EQ(count_lines(r.out), 2u) << r.out;  // one reply per turn
    EXPECT_GT(r.out.size(), 4u);
}

// A Hugging Face checkpoint converted to GGUF behaves like the reference's own GGUF of the
// same weights: same prompt tokens, same greedy continuation, same perplexity.
TEST(Cli, ConvertedCheckpointMatchesReference) {
    const std::string out = std::filesystem::temp_directory_path() /
                            ("lokal_convert_" + std::to_string(getpid()) + ".gguf");
    const Result c = lokal("convert " + q(lokal::test::shared_path("models/TinyStories-656K-hf")) +
                           " -o " + q(out) + " --type f16");
    ASSERT_EQ(c.code, 0) << c.err;
    const json ref = reference("TinyStories-656K.f16");
    for (const json& p : ref["prompts"]) {
        const Result r =
            lokal("run -m " + q(out) + " -p " + q(p["prompt"]) + " --temp 0 -n 32 --json");
        ASSERT_EQ(r.code, 0) << r.err;
        const json j = json::parse(r.out);
        EXPECT_EQ(j["prompt_tokens"], p["prompt_ids"].size());
        EXPECT_EQ(j["tokens"], p["greedy_ids"]) << p["prompt"];
    }
    const Result ppl = lokal("perplexity -m " + q(out) + " -f " +
                             q(lokal::test::shared_path("text/stories.txt")) + " -c 128 --json");
    ASSERT_EQ(ppl.code, 0) << ppl.err;
    EXPECT_NEAR(json::parse(ppl.out)["ppl"].get<double>(), ref["perplexity"].get<double>(),
                ref["perplexity"].get<double>() * 0.002);
    std::filesystem::remove(out);
}

TEST(Cli, PerplexityJsonMatchesReference) {
    const json ref = reference("stories260K");
    const Result r = lokal("perplexity -m " + model("stories260K.gguf") + " -f " +
                           q(lokal::test::shared_path("text/stories.txt")) + " -c 128 --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_NEAR(j["ppl"].get<double>(), ref["perplexity"].get<double>(),
                ref["perplexity"].get<double>() * 0.002);
    EXPECT_GT(j["chunks"].get<int>(), 0);
    EXPECT_EQ(j["tokens"].get<int>(), j["chunks"].get<int>() * 128);
    EXPECT_NE(r.err.find("chunk"), std::string::npos) << "progress goes to stderr";
}

TEST(Cli, InfoDescribesTheModel) {
    const Result r = lokal("info -m " + model("tiny-moe.Q4_K_M.gguf") + " --json");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["architecture"], "llama");
    EXPECT_EQ(j["expert_count"], 4);
    EXPECT_EQ(j["expert_used_count"], 2);
    EXPECT_EQ(j["vocab_size"], 512);
    EXPECT_TRUE(j["tensor_types"].contains("q4_K"));
    // Will it fit: K and V, 2 bytes per value in f16 and 34 per 32 values in Q8_0, for every
    // layer's KV heads; totals for -c x --parallel positions.
    const Result big =
        lokal("info -m " + model("tiny-moe.Q4_K_M.gguf") + " --json -c 100 --parallel 3");
    ASSERT_EQ(big.code, 0) << big.err;
    const json m = json::parse(big.out)["memory"];
    const uint64_t values = 2ull * j["block_count"].get<uint64_t>() *
                            j["head_count_kv"].get<uint64_t>() * j["head_dim"].get<uint64_t>();
    EXPECT_EQ(m["kv_bytes_per_position"]["f16"], values * 2);
    EXPECT_EQ(m["kv_bytes_per_position"]["q8_0"], values / 32 * 34);
    EXPECT_EQ(m["kv_bytes_per_position"]["q4_0"], values / 32 * 18);
    EXPECT_EQ(
        m["total_bytes"]["f16"],
        m["weights_bytes"].get<uint64_t>() + 300 * values * 2 + 4 * values * 2);  // 19 blocks of 16
    EXPECT_GT(m["physical_bytes"].get<uint64_t>(), 0u);
    // stories260K's head size (8) allows no Q8_0 cache.
    const json small = json::parse(lokal("info -m " + model("stories260K.gguf") + " --json").out);
    EXPECT_TRUE(small["memory"]["kv_bytes_per_position"]["q8_0"].is_null());
    const Result text = lokal("info -m " + model("stories260K.gguf"));
    ASSERT_EQ(text.code, 0);
    EXPECT_NE(text.out.find("architecture:  llama"), std::string::npos) << text.out;
}

TEST(Cli, EveryCommandHasHelp) {
    for (const char* cmd :
         {"",      "run",      "tokenize", "perplexity",  "info",         "list",   "pull",
          "push",  "show",     "rm",       "cp",          "prune",        "create", "convert",
          "serve", "quantize", "imatrix",  "quant-error", "quant-report", "synth",  "bench"}) {
        const Result r = lokal(std::string(cmd) + " --help");
        EXPECT_EQ(r.code, 0) << cmd;
        EXPECT_NE(r.out.find("Usage"), std::string::npos) << cmd;
    }
}

// Failures: one clear line on stderr, a non-zero exit, nothing on stdout.
void expect_clean_failure(const Result& r, const std::string& must_mention) {
    EXPECT_NE(r.code, 0);
    EXPECT_LT(r.code, 128) << "killed by a signal";
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_NE(r.err.find(must_mention), std::string::npos) << r.err;
}

// serve's draft model: one kind of draft at a time, and it drafts for the -m model.
TEST(Cli, ServeDraftModelNeedsTheModelItDraftsFor) {
    const std::string draft = " --model-draft " + model("tiny-k.Q4_0.gguf");
    const Result alone = lokal("serve --port 0" + draft);
    expect_clean_failure(alone, "-m");
    const Result both =
        lokal("serve --port 0 -m " + model("tiny-k.Q8_0.gguf") + " --lookup 3" + draft);
    expect_clean_failure(both, "choose one");
    const Result other = lokal("serve --port 0 -m " + model("tiny-k.Q8_0.gguf") +
                               " --model-draft " + model("tiny-qwen2.Q8_0.gguf"));
    expect_clean_failure(other, "--model-draft: the draft model's tokenizer");
}

TEST(Cli, BadInputFailsCleanly) {
    expect_clean_failure(lokal("run -m /nonexistent/model.gguf -p hi"), "not found");
    expect_clean_failure(lokal("run -m " + model("stories260K.gguf") + " -p hi --bogus-flag"),
                         "bogus");
    expect_clean_failure(lokal("run -m " + model("stories260K.gguf") + " -p hi -n notanumber"),
                         "n-predict");
    expect_clean_failure(lokal("run -m " + model("stories260K.gguf") +
                               " -p 'Once upon a time there was a little girl' -c 4"),
                         "context");
    expect_clean_failure(
        lokal("perplexity -m " + model("stories260K.gguf") + " -f /nonexistent.txt"),
        "nonexistent");
    expect_clean_failure(lokal("tokenize -m " + model("stories260K.gguf")), "-p");
    expect_clean_failure(lokal("frobnicate"), "frobnicate");
    expect_clean_failure(lokal("run -m " + model("stories260K.gguf") + " -p hi --cache-type q4"),
                         "q4");
    // Head size 8: no whole Q8_0 block per row; the message says what to use instead.
    expect_clean_failure(lokal("run -m " + model("stories260K.gguf") + " -p hi --cache-type q8_0"),
                         "--cache-type f16");
    // A vocabulary-only file cannot run.
    expect_clean_failure(
        lokal("run -m " + q(lokal::test::shared_path("vocab/ggml-vocab-gpt-2.gguf")) + " -p hi"),
        "architecture");
}

TEST(Cli, MalformedGgufFilesFailCleanly) {
    const std::string dir = std::string(LOKAL_SOURCE_DIR) + "/tests/gguf/malformed";
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.path().extension() != ".gguf") continue;
        SCOPED_TRACE(e.path().filename().string());
        expect_clean_failure(lokal("info -m " + q(e.path().string())), "gguf");
        ++n;
    }
    EXPECT_GT(n, 20);
}

}  // namespace
