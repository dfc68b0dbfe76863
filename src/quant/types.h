// Tensor element types: the GGUF/ggml type ids and their block geometry.
//
// Every quantized type stores rows as a sequence of fixed-size blocks; a block of
// `block_size` elements occupies `type_size` bytes. A row of n elements is valid only
// when n is a multiple of block_size. The numeric ids are the on-disk GGUF ids.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lokal {

enum class TensorType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    // 4 and 5 were Q4_2 / Q4_3, removed from the format.
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    COUNT = 31,
};

// Super-block size of the K-quants and IQ formats.
inline constexpr int QK_K = 256;

struct TypeTraits {
    const char* name;  // "q4_K" style, as ggml names them
    int block_size;    // elements per block (1 for plain types)
    int type_size;     // bytes per block
    bool is_quantized;
    bool is_known;        // a type lokal can store and read (block geometry known)
    bool is_supported;    // lokal can dequantize it and compute with it
    TensorType dot_type;  // the activation format its dot product consumes
};

const TypeTraits& type_traits(TensorType type);

// Is `raw` a type id lokal knows the geometry of? (Untrusted ids from files go through this.)
bool is_valid_type_id(uint32_t raw);

inline const char* type_name(TensorType t) {
    return type_traits(t).name;
}

// Bytes of one row of n elements; n must be a multiple of the block size.
inline size_t row_size(TensorType t, int64_t n) {
    const TypeTraits& tr = type_traits(t);
    return (size_t)(n / tr.block_size) * (size_t)tr.type_size;
}

// Parse a type name, case-insensitive ("q4_k", "Q8_0", "f16").
std::optional<TensorType> parse_type_name(std::string_view name);

}  // namespace lokal
