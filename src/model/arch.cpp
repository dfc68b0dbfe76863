#include "model/arch.h"

namespace lokal {
namespace {

// name, rope, qkv_bias, tied_output, default_rope_base
constexpr ArchSpec kArchs[] = {
    {"llama", RopeStyle::Normal, false, true,
     10000.0f},  // Llama 1/2/3, Mistral, Mixtral, TinyLlama, SmolLM
    {"mistral", RopeStyle::Normal, false, true, 10000.0f},  // newer converters name Mistral so
    {"qwen2", RopeStyle::Neox, true, true, 1000000.0f},     // Qwen2 / Qwen2.5
};

}  // namespace

const ArchSpec* find_arch(std::string_view name) {
    for (const ArchSpec& a : kArchs)
        if (name == a.name) return &a;
    return nullptr;
}

const char* supported_arch_names() {
    return "llama, mistral, qwen2";
}

}  // namespace lokal
