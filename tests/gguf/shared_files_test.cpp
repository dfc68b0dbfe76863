// Every GGUF file in ../shared opens, and a few facts (checked independently with a
// separate Python parser) hold.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "shared_path.h"

namespace lokal::gguf {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> shared_ggufs(const std::string& sub) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(test::shared_path(sub)))
        if (e.path().extension() == ".gguf") out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
}

TEST(GgufShared, OpensEveryModelAndVocab) {
    auto models = shared_ggufs("models");
    auto vocabs = shared_ggufs("vocab");
    ASSERT_GE(models.size(), 20u);
    ASSERT_EQ(vocabs.size(), 5u);
    for (const std::string& p : models) {
        SCOPED_TRACE(p);
        auto f = File::open(p);
        EXPECT_EQ(f->version(), 3u);
        EXPECT_EQ(f->alignment(), 32u);
        EXPECT_FALSE(f->tensors().empty());
        EXPECT_TRUE(f->get_string("general.architecture").has_value());
        uint64_t prev_end = 0;
        std::vector<const TensorInfo*> by_off;
        for (const TensorInfo& t : f->tensors()) by_off.push_back(&t);
        std::sort(by_off.begin(), by_off.end(),
                  [](auto* a, auto* b) { return a->offset < b->offset; });
        for (const TensorInfo* t : by_off) {
            EXPECT_GE(t->offset, prev_end);
            EXPECT_EQ(t->n_bytes, row_size(t->type, t->ne[0]) * (uint64_t)t->n_rows());
            EXPECT_NE(t->data, nullptr);
            EXPECT_LE(f->data_offset() + t->offset + t->n_bytes, f->file_size());
            EXPECT_EQ(f->find_tensor(t->name), t);
            prev_end = t->offset + t->n_bytes;
        }
    }
    for (const std::string& p : vocabs) {
        SCOPED_TRACE(p);
        auto f = File::open(p);
        EXPECT_TRUE(f->tensors().empty());
        const Value* toks = f->get_array("tokenizer.ggml.tokens");
        ASSERT_NE(toks, nullptr);
        EXPECT_EQ(toks->elem_type, ValueType::STRING);
        EXPECT_EQ(toks->strings.size(), toks->count);
        EXPECT_GT(toks->count, 1000u);
    }
}

TEST(GgufShared, Stories260KFacts) {
    auto f = File::open(test::shared_path("models/stories260K.gguf"));
    EXPECT_EQ(f->metadata().size(), 19u);
    EXPECT_EQ(f->tensors().size(), 48u);
    EXPECT_EQ(f->data_offset(), 14176u);
    EXPECT_EQ(f->file_size(), 1185376u);
    EXPECT_EQ(f->metadata().front().key, "tokenizer.ggml.tokens");
    EXPECT_EQ(*f->get_string("general.architecture"), "llama");
    EXPECT_EQ(*f->get_uint("llama.embedding_length"), 64u);
    EXPECT_EQ(*f->get_int("llama.block_count"), 5);
    EXPECT_EQ(*f->get_uint("llama.attention.head_count"), 8u);
    EXPECT_EQ(*f->get_uint("llama.attention.head_count_kv"), 4u);
    EXPECT_EQ(*f->get_uint("llama.feed_forward_length"), 172u);
    EXPECT_EQ(*f->get_uint("tokenizer.ggml.seperator_token_id"), 4294967295u);
    EXPECT_NEAR(*f->get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-10);
    EXPECT_FALSE(f->get_uint("llama.no_such_key").has_value());

    const Value* toks = f->get_array("tokenizer.ggml.tokens");
    ASSERT_NE(toks, nullptr);
    ASSERT_EQ(toks->count, 512u);
    EXPECT_EQ(toks->strings[0], "<unk>");
    EXPECT_EQ(toks->strings[1], "<s>");
    EXPECT_EQ(toks->strings[2], "</s>");
    const Value* types = f->get_array("tokenizer.ggml.token_type");
    ASSERT_NE(types, nullptr);
    EXPECT_EQ(types->elem_type, ValueType::INT32);
    EXPECT_EQ(types->elem_int(0), 2);
    EXPECT_EQ(types->elem_int(1), 3);
    EXPECT_EQ(types->elem_float(1), 3.0);
    const Value* scores = f->get_array("tokenizer.ggml.scores");
    ASSERT_NE(scores, nullptr);
    EXPECT_EQ(scores->elem_type, ValueType::FLOAT32);
    EXPECT_EQ(scores->count, 512u);

    const TensorInfo* emb = f->find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->type, TensorType::F32);
    EXPECT_EQ(emb->n_dims, 2);
    EXPECT_EQ(emb->ne[0], 64);
    EXPECT_EQ(emb->ne[1], 512);
    EXPECT_EQ(emb->offset, 0u);
    EXPECT_EQ(emb->n_bytes, 64u * 512 * 4);
    EXPECT_EQ(emb->data, f->tensors()[0].data);
    const TensorInfo* norm = f->find_tensor("output_norm.weight");
    ASSERT_NE(norm, nullptr);
    EXPECT_EQ(norm->n_dims, 1);
    EXPECT_EQ(norm->offset, 131072u);
    EXPECT_EQ(f->find_tensor("blk.0.attn_q.weight")->offset, 262400u);
    EXPECT_EQ(f->find_tensor("nope"), nullptr);

    // Typed getters refuse types that cannot represent the request.
    EXPECT_THROW(f->get_uint("general.architecture"), Error);
    EXPECT_THROW(f->get_bool("llama.block_count"), Error);
    EXPECT_THROW(f->get_string("llama.block_count"), Error);
    EXPECT_THROW(f->get_array("llama.block_count"), Error);
    EXPECT_THROW(f->get_float("tokenizer.ggml.tokens"), Error);
}

TEST(GgufShared, QuantizedAndMoeFacts) {
    auto q8 = File::open(test::shared_path("models/TinyStories-656K.Q8_0.gguf"));
    const TensorInfo* emb = q8->find_tensor("token_embd.weight");
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(emb->type, TensorType::Q8_0);
    EXPECT_EQ(emb->ne[0], 128);
    EXPECT_EQ(emb->ne[1], 2048);
    EXPECT_EQ(emb->n_bytes, 128u / 32 * 34 * 2048);
    EXPECT_EQ(q8->data_offset(), 50336u);

    auto moe = File::open(test::shared_path("models/tiny-moe.Q8_0.gguf"));
    int three_d = 0;
    for (const TensorInfo& t : moe->tensors()) three_d += t.n_dims == 3;
    EXPECT_GT(three_d, 0);

    auto qwen = File::open(test::shared_path("models/tiny-qwen2.Q8_0.gguf"));
    EXPECT_EQ(*qwen->get_string("general.architecture"), "qwen2");
    EXPECT_EQ(qwen->find_tensor("output.weight")->ne[1], 50257);

    auto gpt2 = File::open(test::shared_path("vocab/ggml-vocab-gpt-2.gguf"));
    EXPECT_EQ(*gpt2->get_string("tokenizer.ggml.pre"), "gpt-2");
    EXPECT_EQ(gpt2->get_array("tokenizer.ggml.tokens")->count, 50257u);
    EXPECT_EQ(gpt2->get_array("tokenizer.ggml.merges")->strings[0], "\xC4\xA0 t");
    EXPECT_EQ(*gpt2->get_uint("tokenizer.ggml.bos_token_id"), 50256u);
    // The vocab file ends right after its metadata, without padding to the data section.
    EXPECT_EQ(gpt2->data_offset(), gpt2->file_size());
}

TEST(GgufShared, OpenErrors) {
    EXPECT_THROW(File::open("/nonexistent/dir/x.gguf"), Error);
    EXPECT_THROW(File::open(test::shared_dir()), Error);  // a directory
    try {
        File::open("/nonexistent/x.gguf");
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/x.gguf"), std::string::npos);
    }
}

}  // namespace
}  // namespace lokal::gguf
