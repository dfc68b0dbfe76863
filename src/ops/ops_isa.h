// Internal to src/ops: SIMD versions of the row kernels of ops.h (ops_avx2.cpp).
#pragma once

#include <cstdint>

namespace lokal {

void swiglu_avx2(const float* gate, const float* up, float* out, int64_t n);
void rmsnorm_avx2(const float* x, const float* weight, float* out, int64_t n, float eps);
void add_inplace_avx2(float* y, const float* x, int64_t n);

}  // namespace lokal
