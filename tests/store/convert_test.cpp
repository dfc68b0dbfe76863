// `lokal convert`: TinyStories-656K from its Hugging Face form must give the weights,
// vocabulary and metadata of the reference GGUF converted by llama.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "gguf/gguf.h"
#include "helpers.h"
#include "quant/quant.h"
#include "store/convert.h"
#include "store/create.h"
#include "store/resolve.h"

using namespace lokal;
using namespace lokal::store;
using namespace lokal::test;
using json = nlohmann::json;

namespace {

std::string hf_dir() {
    return shared_path("models/TinyStories-656K-hf");
}

std::vector<float> dequant(const gguf::TensorInfo& t) {
    std::vector<float> out((size_t)t.n_elements());
    dequantize_row(t.type, t.data, out.data(), t.n_elements());
    return out;
}

class Converted : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = new TempDir();
        for (const char* t : {"f32", "f16", "q8_0"}) {
            ConvertOptions o;
            o.type = parse_convert_type(t);
            convert_hf_to_gguf(hf_dir(), dir_->sub(std::string(t) + ".gguf"), o);
        }
    }
    static void TearDownTestSuite() { delete dir_; }
    static std::unique_ptr<gguf::File> open(const std::string& t) {
        return gguf::File::open(dir_->sub(t + ".gguf"));
    }
    static TempDir* dir_;
};
TempDir* Converted::dir_ = nullptr;

}  // namespace

TEST_F(Converted, F16MatchesReferenceBitForBit) {
    auto ref = gguf::File::open(model_path("TinyStories-656K.f16.gguf"));
    auto got = open("f16");
    ASSERT_EQ(got->tensors().size(), ref->tensors().size());
    for (const auto& rt : ref->tensors()) {
        const gguf::TensorInfo* t = got->find_tensor(rt.name);
        ASSERT_NE(t, nullptr) << rt.name;
        EXPECT_EQ(t->type, rt.type) << rt.name;
        EXPECT_EQ(t->n_dims, rt.n_dims) << rt.name;
        for (int d = 0; d < 4; ++d) EXPECT_EQ(t->ne[d], rt.ne[d]) << rt.name;
        ASSERT_EQ(t->n_bytes, rt.n_bytes) << rt.name;
        EXPECT_EQ(std::memcmp(t->data, rt.data, rt.n_bytes), 0) << rt.name << " differs";
    }
}

TEST_F(Converted, F32AndQ8MatchReferenceValues) {
    auto ref = gguf::File::open(model_path("TinyStories-656K.f16.gguf"));
    auto f32 = open("f32");
    auto q8 = open("q8_0");
    auto ref_q8 = gguf::File::open(model_path("TinyStories-656K.Q8_0.gguf"));
    for (const auto& rt : ref->tensors()) {
        auto r = dequant(rt);
        const auto* a = f32->find_tensor(rt.name);
        const auto* b = q8->find_tensor(rt.name);
        ASSERT_TRUE(a && b) << rt.name;
        EXPECT_EQ(a->type, TensorType::F32);
        EXPECT_EQ(b->type, rt.n_dims == 1 ? TensorType::F32 : TensorType::Q8_0) << rt.name;
        EXPECT_EQ(b->type, ref_q8->find_tensor(rt.name)->type) << rt.name;
        auto va = dequant(*a), vb = dequant(*b);
        float amax = 0;
        for (float x : r) amax = std::max(amax, std::fabs(x));
        for (size_t i = 0; i < r.size(); ++i) {
            ASSERT_NEAR(va[i], r[i], std::fabs(r[i]) * 1e-3f + 1e-7f) << rt.name << "[" << i << "]";
            ASSERT_NEAR(vb[i], r[i], amax / 127.0f + 1e-6f) << rt.name << "[" << i << "]";
        }
    }
}

TEST_F(Converted, MetadataAndVocabMatchReference) {
    auto ref = gguf::File::open(model_path("TinyStories-656K.f16.gguf"));
    auto got = open("f16");
    for (const char* k : {"general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre"})
        EXPECT_EQ(got->get_string(k), ref->get_string(k)) << k;
    for (const char* k :
         {"llama.block_count", "llama.context_length", "llama.embedding_length",
          "llama.feed_forward_length", "llama.attention.head_count",
          "llama.attention.head_count_kv", "llama.rope.dimension_count", "llama.vocab_size",
          "general.file_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
          "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"})
        EXPECT_EQ(got->get_uint(k), ref->get_uint(k)) << k;
    for (const char* k : {"llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon"})
        EXPECT_FLOAT_EQ((float)*got->get_float(k), (float)*ref->get_float(k)) << k;
    for (const char* k : {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"})
        EXPECT_EQ(got->get_bool(k), ref->get_bool(k)) << k;
    const auto* rt = ref->get_array("tokenizer.ggml.tokens");
    const auto* gt = got->get_array("tokenizer.ggml.tokens");
    ASSERT_TRUE(rt && gt);
    ASSERT_EQ(gt->strings.size(), rt->strings.size());
    for (size_t i = 0; i < rt->strings.size(); ++i) EXPECT_EQ(gt->strings[i], rt->strings[i]) << i;
    for (const char* k : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
        const auto* ra = ref->get_array(k);
        const auto* ga = got->get_array(k);
        ASSERT_TRUE(ra && ga) << k;
        ASSERT_EQ(ga->count, ra->count);
        for (uint64_t i = 0; i < ra->count; ++i)
            ASSERT_EQ(ga->elem_float(i), ra->elem_float(i)) << k << "[" << i << "]";
    }
    ModelInfo info = inspect_gguf(dir_->sub("f16.gguf"));
    EXPECT_EQ(info.quantization, "F16");
    EXPECT_EQ(info.context_length, 512u);
}

TEST_F(Converted, CreateFromHuggingFaceFolder) {
    TempDir d;
    Store s(d.sub("s"));
    CreateOptions o;
    create_model(s, parse_name("hf-tiny"),
                 parse_modelfile("FROM " + hf_dir() + "\nPARAMETER top_k 3"), o);
    auto path = resolve_model("hf-tiny", s.root());
    ASSERT_TRUE(path);
    EXPECT_EQ(read_text(*path), read_text(dir_->sub("f16.gguf")));
    EXPECT_EQ(s.prune().partials, 0u);  // the temporary conversion was cleaned up
}

namespace {

std::string safetensors(const json& header, size_t data_bytes) {
    std::string h = header.dump();
    uint64_t n = h.size();
    std::string out(8, '\0');
    std::memcpy(out.data(), &n, 8);
    return out + h + std::string(data_bytes, '\0');
}

void expect_bad_st(const std::string& bytes, const std::string& needle) {
    try {
        SafeTensors::from_memory(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                 "x.safetensors");
        ADD_FAILURE() << "accepted, expected " << needle;
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(StoreSafeTensors, RejectsHostileHeaders) {
    json ok = {{"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}}};
    auto st = SafeTensors::from_memory(reinterpret_cast<const uint8_t*>(safetensors(ok, 16).data()),
                                       safetensors(ok, 16).size(), "ok");
    EXPECT_EQ(st.tensors().size(), 1u);
    expect_bad_st("abc", "too small");
    std::string huge(16, '\0');
    uint64_t n = 1ull << 60;
    std::memcpy(huge.data(), &n, 8);
    expect_bad_st(huge, "exceeds the limit");
    n = 100;
    std::memcpy(huge.data(), &n, 8);
    expect_bad_st(huge, "past the end");
    expect_bad_st(safetensors(ok, 8), "outside the file");
    json j = ok;
    j["a"]["data_offsets"] = {0, 12};
    expect_bad_st(safetensors(j, 16), "does not match");
    j = ok;
    j["a"]["dtype"] = "I64";
    expect_bad_st(safetensors(j, 16), "unsupported dtype");
    j = ok;
    j["a"]["shape"] = {-1, 2};
    expect_bad_st(safetensors(j, 16), "invalid dimension");
    j = ok;
    j["a"]["shape"] = {1ull << 40, 1ull << 40};
    expect_bad_st(safetensors(j, 16), "too many elements");
    j = ok;
    j["b"] = {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {8, 16}}};
    expect_bad_st(safetensors(j, 16), "overlap");
    j = ok;
    j["a"]["data_offsets"] = {16, 0};
    expect_bad_st(safetensors(j, 16), "outside the file");
    expect_bad_st(safetensors(json::array(), 0), "not a JSON object");
}

TEST(StoreConvert, BadCheckpointsFailCleanly) {
    TempDir d;
    auto copy_hf = [&](const std::string& to) {
        fs::create_directories(to);
        for (auto& e : fs::directory_iterator(hf_dir()))
            fs::copy_file(e.path(), to + "/" + e.path().filename().string());
        for (auto& e : fs::directory_iterator(to))
            fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
    };
    EXPECT_THROW(convert_hf_to_gguf(d.sub("nope"), d.sub("o.gguf")), Error);
    copy_hf(d.sub("a"));
    json cfg = json::parse(read_text(d.sub("a/config.json")));
    cfg["architectures"] = {"GPTNeoXForCausalLM"};
    write_text(d.sub("a/config.json"), cfg.dump());
    EXPECT_THROW(convert_hf_to_gguf(d.sub("a"), d.sub("o.gguf")), Error);
    cfg["architectures"] = {"LlamaForCausalLM"};
    cfg["hidden_size"] = 64;  // shapes no longer match
    write_text(d.sub("a/config.json"), cfg.dump());
    EXPECT_THROW(convert_hf_to_gguf(d.sub("a"), d.sub("o.gguf")), Error);
    cfg["hidden_size"] = 128;
    cfg["vocab_size"] = 100;  // tokenizer ids beyond the vocabulary
    write_text(d.sub("a/config.json"), cfg.dump());
    EXPECT_THROW(convert_hf_to_gguf(d.sub("a"), d.sub("o.gguf")), Error);
    EXPECT_FALSE(fs::exists(d.sub("o.gguf")));
    EXPECT_THROW(parse_convert_type("q4_0"), Error);
}
