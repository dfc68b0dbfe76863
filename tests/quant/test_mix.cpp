// The per-tensor type policy against the reference quantizer: for every preset the
// reference wrote a tiny-k file for, the planner picks the same type for every tensor;
// plus the rules the tiny-k shapes don't reach (fallbacks, layer patterns, 1-D tensors).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "quant/mix.h"
#include "shared_path.h"

namespace lokal {
namespace {

std::vector<MixTensor> tensors_of(const gguf::File& f) {
    std::vector<MixTensor> v;
    for (const auto& t : f.tensors()) {
        MixTensor m;
        m.name = t.name;
        m.n_dims = t.n_dims;
        std::copy(t.ne, t.ne + 4, m.ne);
        m.type = t.type;
        v.push_back(m);
    }
    std::stable_sort(v.begin(), v.end(), [](const MixTensor& a, const MixTensor& b) {
        return quantization_order_less(a.name, b.name);
    });
    return v;
}

MixModel tiny_k_model() {
    MixModel m;
    m.arch = "llama";
    m.n_layer = 2;
    m.n_head = 8;
    m.n_head_kv = 2;
    return m;
}

TEST(Mix, ReproducesReferenceTypesOnTinyK) {
    auto f32 = gguf::File::open(test::shared_path("models/tiny-k.f32.gguf"));
    const auto tensors = tensors_of(*f32);
    int checked = 0;
    for (const char* name : {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K",
                             "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"}) {
        const QuantPreset* p = find_preset(name);
        ASSERT_NE(p, nullptr) << name;
        auto ref =
            gguf::File::open(test::shared_path(std::string("models/tiny-k.") + name + ".gguf"));
        EXPECT_EQ(ref->get_uint("general.file_type").value_or(999), (uint64_t)p->file_type) << name;
        MixPlanner planner(*p, tiny_k_model(), tensors, false);
        for (const MixTensor& t : tensors) {
            const MixChoice c = planner.choose(t);
            const gguf::TensorInfo* r = ref->find_tensor(t.name);
            ASSERT_NE(r, nullptr);
            EXPECT_EQ(type_name(c.type), std::string(type_name(r->type))) << name << " " << t.name;
            EXPECT_TRUE(c.fallback.empty());
            ++checked;
        }
    }
    EXPECT_EQ(checked, 15 * 21);
}

TEST(Mix, PresetLookup) {
    EXPECT_EQ(quant_presets().size(), 18u);
    ASSERT_NE(find_preset("q4_k_m"), nullptr);
    EXPECT_EQ(find_preset("q4_k_m")->file_type, 15);
    EXPECT_EQ(find_preset("Q5_K_S")->file_type, 16);
    EXPECT_EQ(find_preset("BF16")->file_type, 32);
    EXPECT_EQ(find_preset("Q4_K"), nullptr);
    EXPECT_NE(preset_names().find("IQ4_XS"), std::string::npos);
}

TEST(Mix, ReferenceOrderPutsLayersNumerically) {
    std::vector<std::string> v = {"blk.10.attn_q.weight", "token_embd.weight",
                                  "blk.2.ffn_up.weight", "blk.2.attn_q.weight", "output.weight"};
    std::sort(v.begin(), v.end(), quantization_order_less);
    EXPECT_EQ(v,
              (std::vector<std::string>{"output.weight", "token_embd.weight", "blk.2.attn_q.weight",
                                        "blk.2.ffn_up.weight", "blk.10.attn_q.weight"}));
}

MixTensor tensor(const std::string& name, int64_t cols, int64_t rows, int dims = 2) {
    MixTensor t;
    t.name = name;
    t.n_dims = dims;
    t.ne[0] = cols;
    t.ne[1] = dims > 1 ? rows : 1;
    return t;
}

// The layers "that matter" of a 32-layer model, as the reference's Q4_K_M gives them 6 bits.
TEST(Mix, MediumMixGivesKeyLayersMoreBits) {
    MixModel m{"llama", 32, 32, 8, 0};
    std::vector<MixTensor> all;
    for (int l = 0; l < 32; ++l) {
        all.push_back(tensor("blk." + std::to_string(l) + ".attn_v.weight", 4096, 1024));
        all.push_back(tensor("blk." + std::to_string(l) + ".ffn_down.weight", 11008 + 256, 4096));
    }
    std::sort(all.begin(), all.end(), [](const MixTensor& a, const MixTensor& b) {
        return quantization_order_less(a.name, b.name);
    });
    MixPlanner planner(*find_preset("Q4_K_M"), m, all, false);
    std::vector<int> six_bit_v, six_bit_down;
    for (const MixTensor& t : all) {
        const MixChoice c = planner.choose(t);
        int layer = -1;
        std::sscanf(t.name.c_str(), "blk.%d.", &layer);
        if (c.type == TensorType::Q6_K)
            (t.name.find("attn_v") != std::string::npos ? six_bit_v : six_bit_down)
                .push_back(layer);
        else
            EXPECT_EQ(c.type, TensorType::Q4_K) << t.name;
    }
    const std::vector<int> expected = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    EXPECT_EQ(six_bit_v, expected);
    EXPECT_EQ(six_bit_down, expected);
}

TEST(Mix, OneDimensionalAndNormTensorsStayAsTheyAre) {
    MixModel m{"llama", 1, 4, 4, 0};
    const std::vector<MixTensor> all = {tensor("blk.0.attn_norm.weight", 256, 1, 1),
                                        tensor("blk.0.attn_q.bias", 256, 1, 1),
                                        tensor("blk.0.ffn_gate_inp.weight", 256, 8)};
    MixPlanner planner(*find_preset("Q4_0"), m, all, false);
    for (const MixTensor& t : all) {
        const MixChoice c = planner.choose(t);
        EXPECT_EQ(c.type, TensorType::F32) << t.name;
        EXPECT_FALSE(c.convert);
    }
}

TEST(Mix, RowsThatDontFitFallBackAndAreReported) {
    MixModel m{"llama", 1, 4, 4, 0};
    const std::vector<MixTensor> all = {
        tensor("blk.0.attn_q.weight", 64, 64), tensor("blk.0.ffn_down.weight", 172, 64),
        tensor("output.weight", 64, 512), tensor("blk.0.ffn_up.weight", 96, 64)};
    struct Case {
        const char* preset;
        const char* name;
        TensorType want;
    } cases[] = {
        {"Q4_K_S", "blk.0.attn_q.weight", TensorType::Q5_0},
        {"Q5_K_S", "blk.0.attn_q.weight", TensorType::Q5_1},
        {"Q6_K", "blk.0.attn_q.weight", TensorType::Q8_0},
        {"Q3_K_S", "blk.0.attn_q.weight", TensorType::IQ4_NL},
        {"IQ4_XS", "blk.0.attn_q.weight", TensorType::IQ4_NL},
        {"Q4_K_S", "blk.0.ffn_down.weight", TensorType::F16},
        {"Q4_0", "blk.0.ffn_down.weight", TensorType::F16},
        {"Q4_K_M", "output.weight", TensorType::Q8_0},
        {"Q4_0", "blk.0.ffn_up.weight", TensorType::Q4_0},
    };
    for (const Case& k : cases) {
        MixPlanner planner(*find_preset(k.preset), m, all, false);
        for (const MixTensor& t : all) {
            const MixChoice c = planner.choose(t);
            if (t.name != k.name) continue;
            EXPECT_EQ(c.type, k.want) << k.preset << " " << t.name;
            const bool fits_first =
                t.ne[0] % 256 == 0 || k.want == TensorType::Q4_0 || t.name == "output.weight";
            EXPECT_EQ(c.fallback.empty(), fits_first)
                << k.preset << " " << t.name << ": " << c.fallback;
        }
    }
}

TEST(Mix, ImatrixGuardsFirstFfnDownOfLegacyTypes) {
    MixModel m{"llama", 16, 8, 8, 0};
    std::vector<MixTensor> all;
    for (int l = 0; l < 16; ++l)
        all.push_back(tensor("blk." + std::to_string(l) + ".ffn_down.weight", 256, 256));
    std::sort(all.begin(), all.end(), [](const MixTensor& a, const MixTensor& b) {
        return quantization_order_less(a.name, b.name);
    });
    MixPlanner with(*find_preset("Q4_0"), m, all, true),
        without(*find_preset("Q4_0"), m, all, false);
    for (const MixTensor& t : all) {
        const bool early = t.name == "blk.0.ffn_down.weight" || t.name == "blk.1.ffn_down.weight";
        EXPECT_EQ(with.choose(t).type, early ? TensorType::Q4_1 : TensorType::Q4_0) << t.name;
        EXPECT_EQ(without.choose(t).type, TensorType::Q4_0) << t.name;
    }
}

}  // namespace
}  // namespace lokal
