// Special tokens, streaming detokenization, hostile metadata and performance.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "fim_vocab.h"
#include "gguf/gguf.h"
#include "shared_path.h"
#include "tokenizer/detokenize.h"
#include "tokenizer/vocab.h"

namespace lokal {
namespace {

using Ids = std::vector<TokenId>;

struct Loaded {
    std::unique_ptr<gguf::File> file;
    std::unique_ptr<Vocab> vocab;
};

Loaded load_shared(const std::string& rel) {
    Loaded l;
    l.file = gguf::File::open(test::shared_path(rel));
    l.vocab = Vocab::from_gguf(*l.file);
    return l;
}

// A small SentencePiece vocabulary with all 256 byte tokens, built in memory.
struct SmallVocab {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;

    SmallVocab() {
        add("<unk>", 0, 2);
        add("<s>", 0, 3);
        add("</s>", 0, 3);
        static const char* hex = "0123456789ABCDEF";
        for (int b = 0; b < 256; ++b)
            add(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">", 0, 6);
        add("\xE2\x96\x81", -1, 1);  // ▁  (id 259)
        add("a", -2, 1);             // 260
        add("b", -2, 1);             // 261
        add("\xE2\x96\x81"
            "a",
            -0.5f, 1);           // ▁a 262
        add("ab", -0.25f, 1);    // 263
        add("<|user|>", 0, 3);   // 264
        add("<tool>", 0, 4);     // 265 (user-defined)
        add("\xC3\xA9", -3, 1);  // é  266
    }
    void add(std::string t, float s, int32_t ty) {
        tokens.push_back(std::move(t));
        scores.push_back(s);
        types.push_back(ty);
    }
    gguf::Writer writer() const {
        gguf::Writer w;
        w.set_string("general.architecture", "llama");
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_array_string("tokenizer.ggml.tokens", tokens);
        w.set_array_f32("tokenizer.ggml.scores", scores);
        w.set_array_i32("tokenizer.ggml.token_type", types);
        w.set_u32("tokenizer.ggml.bos_token_id", 1);
        w.set_u32("tokenizer.ggml.eos_token_id", 2);
        return w;
    }
};

struct MemVocab {
    std::vector<uint8_t> bytes;
    std::unique_ptr<gguf::File> file;
    std::unique_ptr<Vocab> vocab;
};

MemVocab load_mem(const gguf::Writer& w) {
    MemVocab m;
    m.bytes = w.to_bytes();
    m.file = gguf::File::from_memory(m.bytes.data(), m.bytes.size());
    m.vocab = Vocab::from_gguf(*m.file);
    return m;
}

// Loading must fail with a one-line std::runtime_error, not crash.
void expect_load_error(const gguf::Writer& w, const std::string& needle) {
    const auto bytes = w.to_bytes();
    auto file = gguf::File::from_memory(bytes.data(), bytes.size());
    try {
        Vocab::from_gguf(*file);
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const std::runtime_error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(needle), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
}

TEST(SmallVocab, BasicsAndByteFallback) {
    auto m = load_mem(SmallVocab().writer());
    const Vocab& v = *m.vocab;
    EXPECT_EQ(v.model_type(), "llama");
    EXPECT_EQ(v.n_tokens(), 267);
    EXPECT_EQ(v.bos(), 1);
    EXPECT_EQ(v.eos(), 2);
    EXPECT_EQ(v.unk(), 0);
    EXPECT_TRUE(v.add_bos());
    EXPECT_FALSE(v.add_eos());
    EXPECT_TRUE(v.is_eog(2));
    EXPECT_TRUE(v.is_control(1));
    // "▁ab▁a": "ab" (-0.25) outscores "▁a" (-0.5), so a+b merge first and the
    // leading ▁ stays alone.
    EXPECT_EQ(v.tokenize("ab a", false, false), (Ids{259, 263, 262}));
    EXPECT_EQ(v.tokenize("ab a", true, false), (Ids{1, 259, 263, 262}));
    // é is a token; ü is not: bytes C3 BC.
    EXPECT_EQ(v.tokenize("\xC3\xA9\xC3\xBC", false, false), (Ids{259, 266, 3 + 0xC3, 3 + 0xBC}));
    EXPECT_EQ(v.tokenize("", true, false), (Ids{1}));
    EXPECT_EQ(v.tokenize("", false, false), Ids{});
    EXPECT_EQ(v.token_to_piece(262), " a");
    EXPECT_EQ(v.token_to_piece(3 + 'A'), "A");
    EXPECT_EQ(v.token_to_piece(1), "");
    EXPECT_EQ(v.token_to_piece(1, true), "<s>");
    EXPECT_EQ(v.token_to_piece(0), "");
    EXPECT_EQ(v.token_to_piece(265), "<tool>");
    EXPECT_EQ(v.token_to_piece(-5), "");
    EXPECT_EQ(v.token_to_piece(100000), "");
    EXPECT_EQ(v.token_text(263), "ab");
    EXPECT_FLOAT_EQ(v.token_score(263), -0.25f);
}

TEST(SmallVocab, SpecialParsing) {
    auto m = load_mem(SmallVocab().writer());
    const Vocab& v = *m.vocab;
    // Control tokens only with parse_special; a space prefix follows every special token.
    EXPECT_EQ(v.tokenize("a<|user|>a", false, true), (Ids{262, 264, 262}));
    const Ids plain = v.tokenize("<|user|>", false, false);
    EXPECT_GT(plain.size(), 1u);
    EXPECT_EQ(std::find(plain.begin(), plain.end(), 264), plain.end());
    // User-defined tokens are matched either way.
    EXPECT_EQ(v.tokenize("a<tool>", false, false), (Ids{262, 265}));
    EXPECT_EQ(v.tokenize("a<tool>", false, true), (Ids{262, 265}));
    EXPECT_EQ(v.tokenize("<s>", true, true), (Ids{1, 1}));
}

TEST(SmallVocab, NoSpacePrefixAndAddEos) {
    SmallVocab sv;
    auto w = sv.writer();
    w.set_bool("tokenizer.ggml.add_space_prefix", false);
    w.set_bool("tokenizer.ggml.add_bos_token", false);
    w.set_bool("tokenizer.ggml.add_eos_token", true);
    auto m = load_mem(w);
    EXPECT_EQ(m.vocab->tokenize("ab a", true, false), (Ids{263, 262, 2}));
}

TEST(SpecialTokens, MatchReference) {
    // Expected ids from the reference implementation (llama-tokenize).
    auto spm = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    EXPECT_EQ(spm.vocab->tokenize("Hello <s> world</s>", true, true),
              (Ids{1, 15043, 29871, 1, 29871, 3186, 2}));
    EXPECT_EQ(spm.vocab->tokenize("Hello <s> world</s>", false, false),
              (Ids{15043, 529, 29879, 29958, 3186, 829, 29879, 29958}));

    auto gpt2 = load_shared("vocab/ggml-vocab-gpt-2.gguf");
    EXPECT_EQ(gpt2.vocab->tokenize("x<|endoftext|>y", false, true), (Ids{87, 50256, 88}));
    EXPECT_EQ(gpt2.vocab->tokenize("x<|endoftext|>y", false, false),
              (Ids{87, 27, 91, 437, 1659, 5239, 91, 29, 88}));
    EXPECT_FALSE(gpt2.vocab->add_bos());
    EXPECT_TRUE(gpt2.vocab->is_eog(50256));
    EXPECT_EQ(gpt2.vocab->token_to_piece(50256), "");
    EXPECT_EQ(gpt2.vocab->token_to_piece(50256, true), "<|endoftext|>");
    EXPECT_EQ(gpt2.vocab->token_to_piece(18435), " Hello");

    // Phi-3: </s> is user-defined (matched without parse_special); whitespace after special
    // tokens is stripped.
    auto phi3 = load_shared("vocab/ggml-vocab-phi-3.gguf");
    const std::string text = "a</s>b <|user|>\nhi<|end|> x";
    EXPECT_EQ(phi3.vocab->tokenize(text, false, false),
              (Ids{263, 2, 289, 529, 29989, 1792, 29989, 29958, 13, 2918, 29966, 29989, 355, 29989,
                   29958, 921}));
    EXPECT_EQ(phi3.vocab->tokenize(text, true, true),
              (Ids{1, 263, 2, 289, 29871, 32010, 7251, 32007, 921}));
    EXPECT_TRUE(phi3.vocab->is_eog(32007));  // <|end|>
    EXPECT_TRUE(phi3.vocab->is_eog(32000));  // <|endoftext|>
    EXPECT_EQ(phi3.vocab->eot(), 32007);
}

// Fill-in-the-middle: markers found by their text (Qwen2.5-Coder's), the prompt in
// prefix-suffix-middle order with the code tokenized as plain text; vocabularies without
// markers have none.
TEST(SpecialTokens, FillInTheMiddle) {
    const std::string path = std::filesystem::temp_directory_path() /
                             ("lokal_fim_vocab_" + std::to_string(getpid()) + ".gguf");
    const int n = test::write_fim_vocab(path);
    auto file = gguf::File::open(path);
    auto v = Vocab::from_gguf(*file);
    std::filesystem::remove(path);
    ASSERT_EQ(v->n_tokens(), n);
    ASSERT_TRUE(v->has_fim());
    EXPECT_EQ(v->fim_pre(), n - 3);
    EXPECT_EQ(v->fim_suf(), n - 2);
    EXPECT_EQ(v->fim_mid(), n - 1);
    EXPECT_TRUE(v->is_control(v->fim_mid()));
    const std::string prefix = "def add(a, b):\n    return ", suffix = "\n\nprint(add(1, 2))\n";
    Ids want = {v->fim_pre()};
    for (TokenId t : v->tokenize(prefix, false, false)) want.push_back(t);
    want.push_back(v->fim_suf());
    for (TokenId t : v->tokenize(suffix, false, false)) want.push_back(t);
    want.push_back(v->fim_mid());
    EXPECT_EQ(v->fill_in_middle(prefix, suffix), want);  // GPT-2 adds no BOS
    // Marker text inside the code is code, not a marker.
    const Ids tricky = v->fill_in_middle("a<|fim_middle|>b", "");
    EXPECT_EQ(std::count(tricky.begin(), tricky.end(), v->fim_mid()), 1);
    EXPECT_EQ(tricky.back(), v->fim_mid());

    auto plain = load_shared("vocab/ggml-vocab-gpt-2.gguf");
    EXPECT_FALSE(plain.vocab->has_fim());
    EXPECT_TRUE(plain.vocab->fill_in_middle("a", "b").empty());
}

TEST(SpecialTokens, VocabWithoutByteTokensUsesUnk) {
    // TinyStories-656K: llama vocab, all scores equal, no byte tokens.
    auto ts = load_shared("models/TinyStories-656K.f16.gguf");
    const Vocab& v = *ts.vocab;
    EXPECT_EQ(v.tokenize("The little dog", true, true), (Ids{1, 80, 247, 158, 420, 177, 604}));
    const Ids ids = v.tokenize(
        "a\xE6\x97\xA5"
        "b",
        false, false);  // a日b
    EXPECT_NE(std::find(ids.begin(), ids.end(), v.unk()), ids.end());
}

TEST(StreamingDetokenizer, HoldsIncompleteUtf8) {
    auto m = load_mem(SmallVocab().writer());
    const Vocab& v = *m.vocab;
    const auto byte = [](int b) { return TokenId(3 + b); };
    StreamingDetokenizer d(v);
    EXPECT_EQ(d.push(262), " a");
    // é split over two byte tokens.
    EXPECT_EQ(d.push(byte(0xC3)), "");
    EXPECT_EQ(d.held(), 1u);
    EXPECT_EQ(d.push(byte(0xA9)), "\xC3\xA9");
    // A 4-byte emoji over four tokens.
    const int emoji[] = {0xF0, 0x9F, 0xA6, 0x99};
    std::string got;
    for (int i = 0; i < 4; ++i) {
        const std::string s = d.push(byte(emoji[i]));
        if (i < 3) {
            EXPECT_EQ(s, "");
        }
        got += s;
    }
    EXPECT_EQ(got, "\xF0\x9F\xA6\x99");
    // Control tokens render as nothing.
    EXPECT_EQ(d.push(2), "");
    // Invalid bytes become U+FFFD; an incomplete tail is replaced on flush.
    EXPECT_EQ(d.push(byte(0xFF)), "\xEF\xBF\xBD");
    EXPECT_EQ(d.push(byte(0xC3)), "");
    EXPECT_EQ(d.push(byte('x')), "\xEF\xBF\xBDx");
    EXPECT_EQ(d.push(byte(0xE6)), "");
    EXPECT_EQ(d.push(byte(0x97)), "");
    EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");
    EXPECT_EQ(d.held(), 0u);
    EXPECT_EQ(d.flush(), "");

    StreamingDetokenizer special(v, /*render_special=*/true);
    EXPECT_EQ(special.push(2), "</s>");
}

TEST(StreamingDetokenizer, ReproducesReferenceText) {
    auto ref = load_shared("models/stories260K.gguf");
    const Vocab& v = *ref.vocab;
    const Ids ids =
        v.tokenize("Once upon a time, there was a little girl named Lily.", false, false);
    StreamingDetokenizer d(v);
    std::string streamed;
    for (TokenId id : ids) streamed += d.push(id);
    streamed += d.flush();
    EXPECT_EQ(streamed, " Once upon a time, there was a little girl named Lily.");
}

TEST(HostileMetadata, Errors) {
    SmallVocab sv;
    {
        auto w = sv.writer();
        w.remove("tokenizer.ggml.tokens");
        expect_load_error(w, "tokenizer.ggml.tokens");
    }
    {
        auto w = sv.writer();
        w.remove("tokenizer.ggml.model");
        expect_load_error(w, "tokenizer.ggml.model");
    }
    {
        auto w = sv.writer();
        w.set_string("tokenizer.ggml.model", "bert-ish");
        expect_load_error(w, "unsupported");
    }
    {
        auto w = sv.writer();
        auto scores = sv.scores;
        scores.pop_back();
        w.set_array_f32("tokenizer.ggml.scores", scores);
        expect_load_error(w, "tokenizer.ggml.scores");
    }
    {
        auto w = sv.writer();
        auto types = sv.types;
        types.push_back(1);
        w.set_array_i32("tokenizer.ggml.token_type", types);
        expect_load_error(w, "tokenizer.ggml.token_type");
    }
    {
        auto w = sv.writer();
        w.set_array_i32("tokenizer.ggml.tokens", {1, 2, 3});
        expect_load_error(w, "tokenizer.ggml.tokens");
    }
    {
        auto w = sv.writer();
        w.set_array_string("tokenizer.ggml.scores", {"x"});
        expect_load_error(w, "tokenizer.ggml.scores");
    }
    {
        auto w = sv.writer();
        w.set_u32("tokenizer.ggml.bos_token_id", 5000);
        expect_load_error(w, "bos_token_id");
    }
    {
        auto w = sv.writer();
        w.set_u32("tokenizer.ggml.eos_token_id", 267);
        expect_load_error(w, "eos_token_id");
    }
    {
        auto w = sv.writer();
        w.set_string("tokenizer.ggml.bos_token_id", "1");
        expect_load_error(w, "bos_token_id");
    }
    {
        auto w = sv.writer();
        w.set_array_string("tokenizer.ggml.tokens", {});
        w.remove("tokenizer.ggml.scores");
        w.remove("tokenizer.ggml.token_type");
        expect_load_error(w, "empty");
    }
    {
        gguf::Writer w;
        w.set_string("tokenizer.ggml.model", "gpt2");
        w.set_array_string("tokenizer.ggml.tokens", {"a", "b"});
        expect_load_error(w, "merges");
    }
}

TEST(HostileMetadata, ToleratedOddities) {
    SmallVocab sv;
    sv.tokens[5] = "";               // empty token text
    sv.types[5] = 3;                 // ... as a control token (must not loop forever)
    sv.types[6] = 99;                // unknown token type
    sv.scores[260] = std::nanf("");  // NaN score
    auto w = sv.writer();
    w.set_u32("tokenizer.ggml.padding_token_id", 1u << 30);     // ignored with a warning
    w.set_u32("tokenizer.ggml.unknown_token_id", 0xFFFFFFFFu);  // "unset": default kept
    auto m = load_mem(w);
    EXPECT_EQ(m.vocab->pad(), -1);
    EXPECT_EQ(m.vocab->unk(), 0);
    const Ids ids = m.vocab->tokenize("aab ab <|user|>", true, true);
    EXPECT_FALSE(ids.empty());
    for (TokenId id : ids) EXPECT_TRUE(id >= 0 && id < m.vocab->n_tokens());
}

TEST(Robustness, ArbitraryBytes) {
    std::mt19937 rng(7);
    for (const char* rel : {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                            "vocab/ggml-vocab-deepseek-llm.gguf", "vocab/ggml-vocab-falcon.gguf",
                            "models/TinyStories-656K.f16.gguf"}) {
        SCOPED_TRACE(rel);
        auto l = load_shared(rel);
        for (int iter = 0; iter < 200; ++iter) {
            std::string s(rng() % 64, '\0');
            for (char& c : s) c = static_cast<char>(rng() % 256);
            if (iter % 3 == 0) s += "<|endoftext|><s></s>";
            for (bool ps : {false, true}) {
                const Ids ids = l.vocab->tokenize(s, true, ps);
                for (TokenId id : ids) ASSERT_TRUE(id >= 0 && id < l.vocab->n_tokens());
                StreamingDetokenizer d(*l.vocab);
                std::string out;
                for (TokenId id : ids) out += d.push(id);
                out += d.flush();
            }
        }
    }
}

double seconds_to_tokenize(const Vocab& v, const std::string& text) {
    const auto t0 = std::chrono::steady_clock::now();
    const Ids ids = v.tokenize(text, true, true);
    EXPECT_FALSE(ids.empty());
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(Performance, LongInputsAreNotQuadratic) {
    auto spm = load_shared("vocab/ggml-vocab-llama-spm.gguf");
    auto bpe = load_shared("vocab/ggml-vocab-gpt-2.gguf");
    auto dsk = load_shared("vocab/ggml-vocab-deepseek-llm.gguf");
    std::string prose;
    while (prose.size() < (1u << 18))
        prose +=
            "Once upon a time, there was a little girl named Lily. She liked to play "
            "outside in the park with her friends; 12345 \xE6\x97\xA5\xE6\x9C\xAC.\n";
    const std::vector<std::string> inputs = {
        prose,
        std::string(100000, ' '),
        std::string(100000, 'a'),
        std::string(100000, '7'),
        std::string(100000, '\n'),
        std::string(50000, '<') + std::string(50000, '|'),
    };
    for (const Vocab* v : {spm.vocab.get(), bpe.vocab.get(), dsk.vocab.get()}) {
        for (const auto& in : inputs) {
            const double t = seconds_to_tokenize(*v, in);
            EXPECT_LT(t, 20.0) << v->model_type() << " " << in.size() << " bytes";
        }
    }
}

}  // namespace
}  // namespace lokal
