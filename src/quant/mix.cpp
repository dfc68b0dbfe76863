#include "quant/mix.h"

#include <cctype>
#include <cstdio>
#include <stdexcept>

namespace lokal {
namespace {

// llama.cpp's LLAMA_FTYPE numbers: the on-disk meaning of general.file_type.
enum FType : int {
    FT_F16 = 1,
    FT_Q4_0 = 2,
    FT_Q4_1 = 3,
    FT_Q8_0 = 7,
    FT_Q5_0 = 8,
    FT_Q5_1 = 9,
    FT_Q2_K = 10,
    FT_Q3_K_S = 11,
    FT_Q3_K_M = 12,
    FT_Q3_K_L = 13,
    FT_Q4_K_S = 14,
    FT_Q4_K_M = 15,
    FT_Q5_K_S = 16,
    FT_Q5_K_M = 17,
    FT_Q6_K = 18,
    FT_IQ4_NL = 25,
    FT_IQ4_XS = 30,
    FT_BF16 = 32,
};

bool contains(const std::string& s, const char* part) {
    return s.find(part) != std::string::npos;
}

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Layer index from "blk.N." (-1 outside layers).
int layer_of(const std::string& name) {
    int layer = -1;
    if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
    return layer;
}

// The reference's "layers that matter": the first and last eighth, and every third between.
bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 ||
           (i_layer - n_layers / 8) % 3 == 2;
}

bool is_super_block_type(TensorType t) {
    switch (t) {
        case TensorType::Q2_K:
        case TensorType::Q3_K:
        case TensorType::Q4_K:
        case TensorType::Q5_K:
        case TensorType::Q6_K:
        case TensorType::IQ4_XS:
            return true;
        default:
            return false;
    }
}

}  // namespace

const std::vector<QuantPreset>& quant_presets() {
    static const std::vector<QuantPreset> v = {
        {"Q8_0", FT_Q8_0, TensorType::Q8_0, "8.5 bpw, practically lossless"},
        {"Q4_0", FT_Q4_0, TensorType::Q4_0, "4.5 bpw, legacy symmetric 4-bit"},
        {"Q4_1", FT_Q4_1, TensorType::Q4_1, "5.0 bpw, legacy 4-bit with offset"},
        {"Q5_0", FT_Q5_0, TensorType::Q5_0, "5.5 bpw, legacy symmetric 5-bit"},
        {"Q5_1", FT_Q5_1, TensorType::Q5_1, "6.0 bpw, legacy 5-bit with offset"},
        {"Q2_K", FT_Q2_K, TensorType::Q2_K, "~2.6-3 bpw, K-quant mix, large quality loss"},
        {"Q3_K_S", FT_Q3_K_S, TensorType::Q3_K, "~3.4 bpw, 3-bit K-quant everywhere"},
        {"Q3_K_M", FT_Q3_K_M, TensorType::Q3_K,
         "~3.9 bpw, 3-bit with 4/5-bit attn_v, attn_output, ffn_down"},
        {"Q3_K_L", FT_Q3_K_L, TensorType::Q3_K,
         "~4.3 bpw, 3-bit with 5-bit attn_v, attn_output, ffn_down"},
        {"Q4_K_S", FT_Q4_K_S, TensorType::Q4_K, "~4.6 bpw, 4-bit K-quant"},
        {"Q4_K_M", FT_Q4_K_M, TensorType::Q4_K,
         "~4.9 bpw, 4-bit with 6-bit attn_v/ffn_down on key layers"},
        {"Q5_K_S", FT_Q5_K_S, TensorType::Q5_K, "~5.5 bpw, 5-bit K-quant"},
        {"Q5_K_M", FT_Q5_K_M, TensorType::Q5_K,
         "~5.7 bpw, 5-bit with 6-bit attn_v/ffn_down on key layers"},
        {"Q6_K", FT_Q6_K, TensorType::Q6_K, "6.6 bpw, 6-bit K-quant"},
        {"IQ4_NL", FT_IQ4_NL, TensorType::IQ4_NL, "4.5 bpw, non-linear 4-bit, blocks of 32"},
        {"IQ4_XS", FT_IQ4_XS, TensorType::IQ4_XS,
         "4.25 bpw, non-linear 4-bit, super-blocks of 256"},
        {"F16", FT_F16, TensorType::F16, "16 bpw, half precision"},
        {"BF16", FT_BF16, TensorType::BF16, "16 bpw, bfloat16"},
    };
    return v;
}

const QuantPreset* find_preset(std::string_view name) {
    for (const QuantPreset& p : quant_presets()) {
        std::string_view pn = p.name;
        if (pn.size() != name.size()) continue;
        bool eq = true;
        for (size_t i = 0; i < pn.size() && eq; ++i)
            eq = std::toupper((unsigned char)pn[i]) == std::toupper((unsigned char)name[i]);
        if (eq) return &p;
    }
    return nullptr;
}

std::string preset_names() {
    std::string s;
    for (const QuantPreset& p : quant_presets()) s += (s.empty() ? "" : ", ") + std::string(p.name);
    return s;
}

bool quantization_order_less(const std::string& a, const std::string& b) {
    const int la = layer_of(a), lb = layer_of(b);
    if (la != lb) return la < lb;
    return a < b;
}

bool tensor_is_quantizable(const MixTensor& t) {
    if (t.n_dims < 2) return false;
    const std::string& n = t.name;
    if (!ends_with(n, "weight")) return false;
    if (contains(n, "_norm.weight")) return false;
    if (contains(n, "ffn_gate_inp.weight")) return false;  // MoE router: tiny and sensitive
    if (n == "position_embd.weight" || n == "token_types.weight") return false;
    if (contains(n, "ssm_conv1d.weight") || contains(n, "attn_rel_b.weight")) return false;
    return true;
}

MixPlanner::MixPlanner(const QuantPreset& preset, const MixModel& model,
                       const std::vector<MixTensor>& all, bool has_imatrix)
    : preset_(preset), model_(model), has_imatrix_(has_imatrix) {
    for (const MixTensor& t : all) {
        if (contains(t.name, "attn_v.weight") || contains(t.name, "attn_qkv.weight") ||
            contains(t.name, "attn_kv_b.weight"))
            ++n_attention_wv_;
        else if (t.name == "output.weight")
            has_output_ = true;
    }
    n_ffn_down_ = model.n_layer;
}

// llama_tensor_get_type for the presets lokal offers (the IQ1/IQ2/IQ3 and ternary branches
// of the reference have no preset here and are left out).
TensorType MixPlanner::policy_type(const MixTensor& t, TensorType type) {
    const int ft = preset_.file_type;
    const std::string& name = t.name;
    const bool falcon = model_.arch == "falcon";
    const int n_gqa = model_.n_head_kv > 0 ? model_.n_head / model_.n_head_kv : 0;
    const int n_expert = model_.n_expert;

    if (name == "output.weight" || (!has_output_ && name == "token_embd.weight")) {
        // The output projection decides every logit: 6 bits unless the whole file is 8.
        if (falcon || t.ne[0] % QK_K != 0)
            type = TensorType::Q8_0;
        else if (type != TensorType::Q8_0)
            type = TensorType::Q6_K;
    } else if (name == "token_embd.weight") {
        // An embedding row is looked up, not multiplied: the base type is enough.
    } else if (contains(name, "attn_v.weight")) {
        if (ft == FT_Q2_K)
            type = n_gqa >= 4 ? TensorType::Q4_K : TensorType::Q3_K;
        else if (ft == FT_Q3_K_M)
            type = i_attention_wv_ < 2 ? TensorType::Q5_K : TensorType::Q4_K;
        else if (ft == FT_Q3_K_L)
            type = TensorType::Q5_K;
        else if ((ft == FT_IQ4_NL || ft == FT_IQ4_XS) && n_gqa >= 4)
            type = TensorType::Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) &&
                 use_more_bits(i_attention_wv_, n_attention_wv_))
            type = TensorType::Q6_K;
        else if (ft == FT_Q4_K_S && i_attention_wv_ < 4)
            type = TensorType::Q5_K;
        // A 70B-class model shares attn_v across 8 heads: the tensor is small, bits are cheap.
        const bool is_70b =
            model_.arch == "llama" && model_.n_layer == 80 && model_.n_head != model_.n_head_kv;
        if (is_70b && (type == TensorType::Q3_K || type == TensorType::Q4_K))
            type = TensorType::Q5_K;
        if (n_expert == 8) type = TensorType::Q8_0;
        ++i_attention_wv_;
    } else if (contains(name, "attn_k.weight")) {
        if (n_expert == 8) type = TensorType::Q8_0;
    } else if (contains(name, "ffn_down")) {
        int i_layer = i_ffn_down_;
        const int n_layer = n_ffn_down_;
        if (n_expert > 1) {
            // Expert tensors are not stored in layer order in every file: ask the name.
            i_layer = layer_of(name);
            if (i_layer < 0 || i_layer >= n_layer)
                throw std::runtime_error("cannot tell the layer of tensor '" + name + "'");
        }
        if (ft == FT_Q2_K)
            type = TensorType::Q3_K;
        else if (ft == FT_Q3_K_M)
            type = i_layer < n_layer / 16                       ? TensorType::Q5_K
                   : !falcon || use_more_bits(i_layer, n_layer) ? TensorType::Q4_K
                                                                : TensorType::Q3_K;
        else if (ft == FT_Q3_K_L)
            type = falcon ? TensorType::Q4_K : TensorType::Q5_K;
        else if (ft == FT_Q4_K_M) {
            if (falcon)
                type = i_layer < n_layer / 16            ? TensorType::Q6_K
                       : use_more_bits(i_layer, n_layer) ? TensorType::Q5_K
                                                         : TensorType::Q4_K;
            else if (use_more_bits(i_layer, n_layer))
                type = TensorType::Q6_K;
        } else if (i_layer < n_layer / 8 && (ft == FT_IQ4_NL || ft == FT_IQ4_XS) && !has_imatrix_)
            type = TensorType::Q5_K;
        else if (ft == FT_Q5_K_M && use_more_bits(i_layer, n_layer))
            type = TensorType::Q6_K;
        else if (ft == FT_Q4_K_S && !falcon && i_layer < n_layer / 8)
            type = TensorType::Q5_K;
        else if ((ft == FT_Q4_0 || ft == FT_Q5_0) && has_imatrix_ && i_layer < n_layer / 8)
            // The first ffn_down layers can go wrong even with an imatrix; an offset helps.
            type = ft == FT_Q4_0 ? TensorType::Q4_1 : TensorType::Q5_1;
        ++i_ffn_down_;
    } else if (contains(name, "attn_output.weight")) {
        if (!falcon) {
            if (n_expert == 8) {
                if (ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_IQ4_NL ||
                    ft == FT_Q4_K_S || ft == FT_Q4_K_M || ft == FT_IQ4_XS)
                    type = TensorType::Q5_K;
            } else {
                if (ft == FT_Q2_K)
                    type = TensorType::Q3_K;
                else if (ft == FT_Q3_K_M)
                    type = TensorType::Q4_K;
                else if (ft == FT_Q3_K_L)
                    type = TensorType::Q5_K;
            }
        } else if (ft == FT_Q3_K_L) {
            type = TensorType::Q4_K;
        }
    } else if (contains(name, "attn_qkv.weight")) {
        if (ft == FT_Q3_K_M || ft == FT_Q3_K_L)
            type = TensorType::Q4_K;
        else if (ft == FT_Q4_K_M)
            type = TensorType::Q5_K;
        else if (ft == FT_Q5_K_M)
            type = TensorType::Q6_K;
    }
    return type;
}

MixChoice MixPlanner::choose(const MixTensor& t) {
    MixChoice c;
    c.type = t.type;
    if (!tensor_is_quantizable(t)) return c;  // copied as is (1-D tensors stay F32)

    TensorType type = preset_.base;
    const bool quantized_base = type_traits(type).is_quantized;
    if (quantized_base) type = policy_type(t, type);

    // Rows that don't fit the block: the reference's fallbacks for super-block types, then
    // F16 when even a 32-element block doesn't fit (the reference would abort there).
    const int64_t ncols = t.ne[0];
    const TensorType first = type;
    if (is_super_block_type(type) && ncols % QK_K != 0) {
        switch (type) {
            case TensorType::Q2_K:
            case TensorType::Q3_K:
            case TensorType::IQ4_XS:
                type = TensorType::IQ4_NL;
                break;
            case TensorType::Q4_K:
                type = TensorType::Q5_0;
                break;
            case TensorType::Q5_K:
                type = TensorType::Q5_1;
                break;
            case TensorType::Q6_K:
                type = TensorType::Q8_0;
                break;
            default:
                break;
        }
    }
    if (ncols % type_traits(type).block_size != 0) type = TensorType::F16;
    if (type != first) {
        ++n_fallback_;
        c.fallback = "row length " + std::to_string(ncols) + " is not a multiple of " +
                     std::to_string(type_traits(first).block_size) + " (needed by " +
                     type_name(first) + "): using " + type_name(type);
    }
    c.type = type;
    c.convert = t.type != type;
    return c;
}

}  // namespace lokal
