// The architecture registry: everything that distinguishes one decoder-only transformer
// family from another lives in one table row here, so a new family is one new row
// (plus, if it brings a new kind of block, a branch in forward.cpp keyed by a flag).
#pragma once

#include <string_view>

namespace lokal {

enum class RopeStyle {
    Normal,  // rotate adjacent pairs (2i, 2i+1): Llama GGUFs (Q/K permuted by the converter)
    Neox,    // rotate halves (i, i + n/2): Qwen2, GPT-NeoX, Phi-3, Gemma
};

struct ArchSpec {
    const char* name;  // general.architecture
    RopeStyle rope;
    bool qkv_bias;            // attention projections carry biases (loaded when present)
    bool tied_output;         // output.weight may be absent: reuse token_embd
    float default_rope_base;  // when {arch}.rope.freq_base is absent
};

// nullptr when the architecture is not supported.
const ArchSpec* find_arch(std::string_view name);

// Comma-separated names of the supported architectures, for error messages.
const char* supported_arch_names();

}  // namespace lokal
