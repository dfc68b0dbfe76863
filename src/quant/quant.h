// Block formats: dequantization, activation quantization, and the scalar reference dot
// products for every supported weight type. These are the ground truth every SIMD kernel
// in src/ops is tested against; they follow the established GGUF engines bit for bit
// (block layouts, scale decoding, rounding) so results track the reference.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace lokal {

// Dequantize n elements (a multiple of the block size) of `type` from src into dst.
// Supported: every type whose traits say is_supported (F32, F16, BF16 included).
void dequantize_row(TensorType type, const void* src, float* dst, int64_t n);

// Convert one activation row of n floats into `dot_type` (F32 copy, F16, BF16, Q8_0, Q8_1,
// Q8_K), the format the dot product of the matching weight type consumes. dst must hold
// row_size(dot_type, n) bytes.
void quantize_row_dot(TensorType dot_type, const float* src, void* dst, int64_t n);

// Scalar reference dot product of one weight row (type w, n elements) with one activation
// row already in type_traits(w).dot_type format.
float vec_dot_ref(TensorType w, int64_t n, const void* w_row, const void* act_row);

}  // namespace lokal
