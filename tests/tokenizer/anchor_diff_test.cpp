// Differential test against the reference implementation's llama-tokenize (shared/anchor):
// pseudo-random strings (mixed scripts, white space, digits, contractions, emoji, special
// token texts, stray invalid bytes) must tokenize identically, for the shared vocabularies
// and for the GPT-2 vocabulary relabelled with other pre-tokenizer names. Skipped when the
// anchor cannot run here. LOKAL_TOKENIZER_DIFF_N sets the strings per case (default 4).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gguf/gguf.h"
#include "shared_path.h"
#include "tokenizer/vocab.h"

namespace lokal {
namespace {

namespace fs = std::filesystem;

std::string run(const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, n);
    pclose(p);
    return out;
}

// Last non-empty line of llama-tokenize --ids output, e.g. "[1, 2, 3]".
std::string reference_ids(const std::string& model, const std::string& file, bool add_special,
                          bool parse_special) {
    std::string cmd = "'" + test::shared_path("anchor/llama-tokenize") + "' -m '" + model +
                      "' -f '" + file + "' --ids --log-disable --no-escape";
    if (!add_special) cmd += " --no-bos";
    if (!parse_special) cmd += " --no-parse-special";
    const std::string out = run(cmd + " 2>/dev/null");
    size_t end = out.find_last_not_of("\r\n");
    if (end == std::string::npos) return "";
    size_t begin = out.rfind('\n', end);
    return out.substr(begin == std::string::npos ? 0 : begin + 1, end + 1 - (begin + 1));
}

std::string format_ids(const std::vector<TokenId>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return s + "]";
}

std::string random_text(std::mt19937& rng) {
    static const std::vector<std::string> words = {
        "Hello",
        "world",
        "the",
        "The",
        "don't",
        "I'm",
        "we'll",
        "you've",
        "they're",
        "He'd",
        "'S",
        "'LL",
        "llama.cpp",
        "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82",  // привет
        "\xCE\x95\xCE\xBB\xCE\xBB\xCE\xB7\xCE\xBD",          // Ελλην
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",              // 日本語
        "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",              // 한국어
        "\xD8\xB9\xD8\xB1\xD8\xA8\xD9\x89",                  // عربى
        "caf\xC3\xA9",
        "e\xCC\x81",
        "\xEF\xAC\x81",  // é, e+◌́, ﬁ
        "\xF0\x9F\xA6\x99",
        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",  // 🦙, 👨‍👩
        "123",
        "4567",
        "3.14",
        "1,000,000",
        "\xD9\xA3\xD9\xA4",  // ٣٤
        "\xE2\x85\xAB",
        "$",
        "~",
        "`",
        "^",
        "|",
        "+",
        "<",
        "=",
        "\xE2\x80\xA6",
        "\xE2\x80\x94",
        "\xE3\x80\x82",
        "\xEF\xBC\x8C",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ":",
        ";",
        "@",
        "#",
        "%",
        "&",
        "*",
        "_",
        "-",
        "/",
        "\\",
        ".",
        ",",
        "!",
        "?",
        "'",
        "\"",
        "<s>",
        "</s>",
        "<unk>",
        "<|endoftext|>",
        "<|im_end|>",
        "<0x41>",
        "\xE2\x96\x81",
        "\xC4\xA0",
        "xxxxxxxxxxxxxxxxxxxxxxxxx",
        "abababababababab"};
    static const std::vector<std::string> spaces = {
        " ",  "  ",   "   ",      "\t",           "\n",           "\n\n",         "\r\n",
        "\r", " \n ", "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\xA8", "\xC2\x85",     "\xE2\x80\x83",
        "\v", "\f",   " \t ",     "~~",           " ~",           "\xEF\xBB\xBF", "\xE2\x80\x8D"};
    static const std::vector<std::string> junk = {"\xFF",         "\xC3",     "\xE6\x97",
                                                  "\xED\xA0\x80", "\xC0\x80", "\x80\x80"};
    std::string s;
    const int n = static_cast<int>(rng() % 15);
    for (int i = 0; i < n; ++i) {
        const unsigned r = rng() % 100;
        if (r < 55) {
            s += words[rng() % words.size()];
        } else if (r < 85) {
            s += spaces[rng() % spaces.size()];
        } else if (r < 95) {
            for (unsigned k = rng() % 9 + 1; k > 0; --k) s += static_cast<char>('0' + rng() % 10);
        } else {
            s += junk[rng() % junk.size()];
        }
    }
    return s;
}

class AnchorDiff : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!fs::exists(test::shared_path("anchor/llama-tokenize")))
            GTEST_SKIP() << "no anchor/llama-tokenize";
        dir_ = fs::temp_directory_path() / ("lokal_tok_diff_" + std::to_string(::getpid()));
        fs::create_directories(dir_);
        // The anchor must run on this machine.
        const std::string probe = (dir_ / "probe.txt").string();
        std::ofstream(probe) << "Hello";
        if (reference_ids(test::shared_path("vocab/ggml-vocab-gpt-2.gguf"), probe, false, false) !=
            "[15496]")
            GTEST_SKIP() << "anchor/llama-tokenize does not run here";
        if (const char* env = std::getenv("LOKAL_TOKENIZER_DIFF_N")) n_ = std::atoi(env);
    }
    void TearDown() override {
        std::error_code ec;
        if (!dir_.empty()) fs::remove_all(dir_, ec);
    }

    void check(const std::string& model, unsigned seed) {
        SCOPED_TRACE(model);
        auto file = gguf::File::open(model);
        auto vocab = Vocab::from_gguf(*file);
        std::mt19937 rng(seed);
        std::vector<std::string> texts, paths;
        for (int i = 0; i < n_; ++i) {
            texts.push_back(random_text(rng));
            paths.push_back((dir_ / ("input" + std::to_string(i) + ".txt")).string());
            std::ofstream(paths.back(), std::ios::binary) << texts.back();
        }
        // The reference takes ~0.1 s per call (it loads the vocabulary): run them in parallel.
        std::vector<std::string> want(texts.size());
        std::atomic<size_t> next{0};
        std::vector<std::thread> pool;
        const unsigned n_threads = std::max(2u, std::thread::hardware_concurrency());
        for (unsigned t = 0; t < n_threads; ++t)
            pool.emplace_back([&] {
                for (size_t i; (i = next++) < texts.size();)
                    want[i] = reference_ids(model, paths[i], i % 2 == 0, i % 2 == 0);
            });
        for (auto& t : pool) t.join();
        for (size_t i = 0; i < texts.size(); ++i) {
            if (want[i].empty() || want[i][0] != '[') continue;  // the reference failed on it
            const bool special = i % 2 == 0;
            EXPECT_EQ(format_ids(vocab->tokenize(texts[i], special, special)), want[i])
                << "text: '" << texts[i] << "' special: " << special;
        }
    }

    fs::path dir_;
    int n_ = 4;
};

TEST_F(AnchorDiff, SharedVocabularies) {
    unsigned seed = 1;
    for (const char* name : {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "falcon"})
        check(test::shared_path(std::string("vocab/ggml-vocab-") + name + ".gguf"), seed++);
    check(test::shared_path("models/tiny-qwen2.Q8_0.gguf"), seed++);
}

TEST_F(AnchorDiff, PreTokenizers) {
    auto src = gguf::File::open(test::shared_path("vocab/ggml-vocab-gpt-2.gguf"));
    unsigned seed = 100;
    for (const char* pre : {"llama-bpe", "qwen2", "deepseek-coder", "deepseek-v3", "starcoder",
                            "default", "chameleon", "tekken", "poro-chat", "viking"}) {
        gguf::Writer w;
        for (const auto& kv : src->metadata()) w.copy_value(kv.key, kv.value);
        w.set_string("tokenizer.ggml.pre", pre);
        const std::string path = (dir_ / (std::string(pre) + ".gguf")).string();
        w.write(path);
        check(path, seed++);
    }
}

}  // namespace
}  // namespace lokal
