// Weight quantization: float rows into GGUF block formats, as the established reference
// quantizer (llama-quantize) does it.
//
// Without importance weights every type uses the reference engine's default quantizer for
// that type, and the output is bit-identical to it. With importance weights (an "imatrix":
// per column, the mean squared activation seen by that weight) the error each element
// contributes is weighted by importance * sqrt(sigma^2 + x^2), the reference's importance
// formula, and scales/levels are searched to minimise that weighted error.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace lokal {

// Can quantize_row produce `type`? (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K,
// IQ4_NL, IQ4_XS; F32 is a plain copy.)
bool can_quantize(TensorType type);

// Quantize one row of n floats (n a multiple of the type's block size) into dst, which must
// hold row_size(type, n) bytes. `importance` is null or points to n non-negative weights, one
// per element of the row (for a weight matrix: the imatrix entry of each column). Q8_0, F16,
// BF16 and F32 ignore it. Deterministic: the same input gives the same bytes. Returns the
// number of bytes written. Throws std::invalid_argument for an unsupported type or bad n.
size_t quantize_row(TensorType type, const float* src, void* dst, int64_t n,
                    const float* importance);

}  // namespace lokal
