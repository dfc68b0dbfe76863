#include "quant/types.h"

#include <cctype>
#include <string>

namespace lokal {
namespace {

using T = TensorType;

// name, block_size, type_size, quantized, known, supported, dot_type
constexpr TypeTraits kTraits[(int)T::COUNT] = {
    /* F32     */ {"f32", 1, 4, false, true, true, T::F32},
    /* F16     */ {"f16", 1, 2, false, true, true, T::F32},  // f32 activations: see dot_ref.cpp
    /* Q4_0    */ {"q4_0", 32, 18, true, true, true, T::Q8_0},
    /* Q4_1    */ {"q4_1", 32, 20, true, true, true, T::Q8_1},
    /* 4       */ {"(removed q4_2)", 0, 0, false, false, false, T::F32},
    /* 5       */ {"(removed q4_3)", 0, 0, false, false, false, T::F32},
    /* Q5_0    */ {"q5_0", 32, 22, true, true, true, T::Q8_0},
    /* Q5_1    */ {"q5_1", 32, 24, true, true, true, T::Q8_1},
    /* Q8_0    */ {"q8_0", 32, 34, true, true, true, T::Q8_0},
    /* Q8_1    */ {"q8_1", 32, 36, true, true, false, T::Q8_1},
    /* Q2_K    */ {"q2_K", 256, 84, true, true, true, T::Q8_K},
    /* Q3_K    */ {"q3_K", 256, 110, true, true, true, T::Q8_K},
    /* Q4_K    */ {"q4_K", 256, 144, true, true, true, T::Q8_K},
    /* Q5_K    */ {"q5_K", 256, 176, true, true, true, T::Q8_K},
    /* Q6_K    */ {"q6_K", 256, 210, true, true, true, T::Q8_K},
    /* Q8_K    */ {"q8_K", 256, 292, true, true, false, T::Q8_K},
    /* IQ2_XXS */ {"iq2_xxs", 256, 66, true, true, false, T::Q8_K},
    /* IQ2_XS  */ {"iq2_xs", 256, 74, true, true, false, T::Q8_K},
    /* IQ3_XXS */ {"iq3_xxs", 256, 98, true, true, false, T::Q8_K},
    /* IQ1_S   */ {"iq1_s", 256, 50, true, true, false, T::Q8_K},
    /* IQ4_NL  */ {"iq4_nl", 32, 18, true, true, true, T::Q8_0},
    /* IQ3_S   */ {"iq3_s", 256, 110, true, true, false, T::Q8_K},
    /* IQ2_S   */ {"iq2_s", 256, 82, true, true, false, T::Q8_K},
    /* IQ4_XS  */ {"iq4_xs", 256, 136, true, true, true, T::Q8_K},
    /* I8      */ {"i8", 1, 1, false, true, false, T::I8},
    /* I16     */ {"i16", 1, 2, false, true, false, T::I16},
    /* I32     */ {"i32", 1, 4, false, true, false, T::I32},
    /* I64     */ {"i64", 1, 8, false, true, false, T::I64},
    /* F64     */ {"f64", 1, 8, false, true, false, T::F64},
    /* IQ1_M   */ {"iq1_m", 256, 56, true, true, false, T::Q8_K},
    /* BF16    */ {"bf16", 1, 2, false, true, true, T::BF16},
};

}  // namespace

const TypeTraits& type_traits(TensorType type) {
    uint32_t i = (uint32_t)type;
    if (i >= (uint32_t)T::COUNT) i = 4;  // an unknown entry: block_size 0, not known
    return kTraits[i];
}

bool is_valid_type_id(uint32_t raw) {
    return raw < (uint32_t)T::COUNT && kTraits[raw].is_known;
}

std::optional<TensorType> parse_type_name(std::string_view name) {
    std::string lower;
    for (char c : name) lower += (char)std::tolower((unsigned char)c);
    for (uint32_t i = 0; i < (uint32_t)T::COUNT; ++i) {
        if (!kTraits[i].is_known) continue;
        std::string n = kTraits[i].name;
        for (char& c : n) c = (char)std::tolower((unsigned char)c);
        if (n == lower) return (TensorType)i;
    }
    return std::nullopt;
}

}  // namespace lokal
