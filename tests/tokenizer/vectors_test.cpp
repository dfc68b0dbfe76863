// Tokenizer test vectors (llama.cpp's ggml-vocab-*.gguf.inp/.out) and the reference
// outputs of real models: prompt ids and the text of greedy continuations.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "shared_path.h"
#include "tokenizer/vocab.h"

namespace lokal {
namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in.good()) << path;
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Every test string is followed by "\n__ggml_vocab_test__\n"; the strings themselves may
// be empty or consist of newlines only.
std::vector<std::string> split_inputs(const std::string& text) {
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> out;
    size_t pos = 0;
    for (;;) {
        const size_t next = text.find(sep, pos);
        if (next == std::string::npos) break;
        out.push_back(text.substr(pos, next - pos));
        pos = next + sep.size();
    }
    return out;
}

std::vector<std::vector<TokenId>> parse_outputs(const std::string& text) {
    std::vector<std::vector<TokenId>> out;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream ids(line);
        std::vector<TokenId> v;
        for (long id; ids >> id;) v.push_back(static_cast<TokenId>(id));
        out.push_back(std::move(v));
    }
    return out;
}

std::string ids_str(const std::vector<TokenId>& v) {
    std::string s;
    for (TokenId id : v) s += " " + std::to_string(id);
    return s;
}

class VocabVectors : public ::testing::TestWithParam<const char*> {};

TEST_P(VocabVectors, ReproduceExactly) {
    const std::string base = test::shared_path(std::string("vocab/ggml-vocab-") + GetParam());
    auto file = gguf::File::open(base + ".gguf");
    auto vocab = Vocab::from_gguf(*file);
    const auto inputs = split_inputs(read_file(base + ".gguf.inp"));
    const auto expected = parse_outputs(read_file(base + ".gguf.out"));
    ASSERT_EQ(inputs.size(), expected.size());
    ASSERT_GT(inputs.size(), 40u);
    int failures = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const auto got = vocab->tokenize(inputs[i], /*add_special=*/false, /*parse_special=*/false);
        EXPECT_EQ(got, expected[i]) << "string #" << i << " '" << inputs[i] << "'\n  expected"
                                    << ids_str(expected[i]) << "\n  got     " << ids_str(got);
        failures += got != expected[i];
    }
    EXPECT_EQ(failures, 0);
}

INSTANTIATE_TEST_SUITE_P(Shared, VocabVectors,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-llm", "falcon"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n)
                                 if (c == '-') c = '_';
                             return n;
                         });

std::string from_hex(const std::string& hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

TEST(ReferenceOutputs, PromptIdsAndGreedyText) {
    const std::filesystem::path dir = test::shared_path("reference");
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.path().extension() == ".json") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    ASSERT_FALSE(files.empty());
    int checked = 0;
    for (const auto& path : files) {
        SCOPED_TRACE(path.filename().string());
        const auto ref = nlohmann::json::parse(read_file(path.string()));
        auto file =
            gguf::File::open(test::shared_path("models/" + ref.at("model").get<std::string>()));
        auto vocab = Vocab::from_gguf(*file);
        for (const auto& p : ref.at("prompts")) {
            const auto prompt = p.at("prompt").get<std::string>();
            EXPECT_EQ(vocab->tokenize(prompt, true, true),
                      p.at("prompt_ids").get<std::vector<TokenId>>())
                << prompt;
            std::string text;
            for (TokenId id : p.at("greedy_ids").get<std::vector<TokenId>>())
                text += vocab->token_to_piece(id);
            const std::string want = p.contains("greedy_text")
                                         ? p.at("greedy_text").get<std::string>()
                                         : from_hex(p.at("greedy_text_hex").get<std::string>());
            EXPECT_EQ(text, want) << prompt;
            ++checked;
        }
    }
    EXPECT_GE(checked, static_cast<int>(files.size()));
}

}  // namespace
}  // namespace lokal
