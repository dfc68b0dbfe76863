// Quantization mixes: which type each tensor of a model gets for a named preset ("Q4_K_M").
//
// The policy is the established reference quantizer's (llama-quantize, February 2025), so
// a file lokal writes has the same per-tensor types as one the reference writes:
//   - only 2-D/3-D tensors whose name ends in "weight" are converted (not norms, not MoE
//     routers); everything else, 1-D tensors included, keeps its type (F32);
//   - output.weight (or token_embd.weight when the embedding is tied) gets Q6_K unless the
//     base is Q8_0 or its rows don't fit a 256-element super-block (then Q8_0);
//   - _M and _L mixes give attn_v and ffn_down more bits on the layers that matter most
//     (the first and last eighth, and every third layer between), _S mixes fewer;
//   - a tensor whose rows don't fit the chosen type's block falls back to a compatible
//     type (Q4_K -> Q5_0, Q6_K -> Q8_0, ..., F16 as the last resort), reported.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quant/types.h"

namespace lokal {

// A preset the user names on the command line.
struct QuantPreset {
    const char* name;   // "Q4_K_M"
    int file_type;      // llama.cpp's LLAMA_FTYPE number, written as general.file_type
    TensorType base;    // the type most 2-D weights get
    const char* blurb;  // one line for --help
};

const std::vector<QuantPreset>& quant_presets();
// Case-insensitive lookup; nullptr when unknown.
const QuantPreset* find_preset(std::string_view name);
// "Q8_0, Q4_0, ..." for error messages.
std::string preset_names();

// The model facts the policy looks at.
struct MixModel {
    std::string arch;
    int n_layer = 0;
    int n_head = 0;
    int n_head_kv = 0;
    int n_expert = 0;
};

// One tensor as the policy sees it.
struct MixTensor {
    std::string name;
    int n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};
    TensorType type = TensorType::F32;  // its type in the input file
};

struct MixChoice {
    TensorType type = TensorType::F32;  // type in the output file
    bool convert = false;               // false: the input bytes are copied unchanged
    std::string fallback;               // why the policy's first choice was replaced, if it was
};

// The reference quantizer's tensor order: tensors outside layers first, then layer by layer
// (blk.2 before blk.10), by name within each. The per-layer counters of the policy count in
// this order, and writing the output in it reproduces the reference file layout.
bool quantization_order_less(const std::string& a, const std::string& b);

class MixPlanner {
  public:
    // `all`: every tensor of the model (for the counts the policy needs up front).
    MixPlanner(const QuantPreset& preset, const MixModel& model, const std::vector<MixTensor>& all,
               bool has_imatrix);

    // Decide one tensor. Call once per tensor, in quantization order: the attn_v and ffn_down
    // counters advance as tensors are decided.
    MixChoice choose(const MixTensor& t);

    int n_fallback() const { return n_fallback_; }

  private:
    TensorType policy_type(const MixTensor& t, TensorType type);

    const QuantPreset& preset_;
    MixModel model_;
    bool has_imatrix_;
    bool has_output_ = false;
    int n_attention_wv_ = 0, i_attention_wv_ = 0;
    int n_ffn_down_ = 0, i_ffn_down_ = 0;
    int n_fallback_ = 0;
};

// Would the reference quantizer convert this tensor at all? (2-D or more, name ends in
// "weight", not a norm, not an expert router.)
bool tensor_is_quantizable(const MixTensor& t);

}  // namespace lokal
