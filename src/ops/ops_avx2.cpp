// AVX2 versions of the row kernels in ops.cpp, for the rows a forward pass spends time on.
#include <immintrin.h>

#include <cmath>

#include "ops/ops_isa.h"
#include "ops/simd_math_avx2.h"

namespace lokal {

void swiglu_avx2(const float* gate, const float* up, float* out, int64_t n) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp256(_mm256_xor_ps(g, sign));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)),
                                                _mm256_loadu_ps(up + i)));
    }
    for (; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void rmsnorm_avx2(const float* x, const float* weight, float* out, int64_t n, float eps) {
    // Float squares summed in double, as the scalar version (only the order differs).
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    alignas(32) double parts[4];
    _mm256_store_pd(parts, _mm256_add_pd(s0, s1));
    double sum = (parts[0] + parts[1]) + (parts[2] + parts[3]);
    for (; i < n; ++i) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / std::sqrt(mean + eps);
    const __m256 vs = _mm256_set1_ps(scale);
    i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs),
                                                _mm256_loadu_ps(weight + i)));
    for (; i < n; ++i) out[i] = (x[i] * scale) * weight[i];
}

// The residual adds (x += the attention output, the FFN output) over every token of a batch:
// the scalar loop (no vectorization at -O2 for an unknown count that may alias) took 2-3% of
// a 512-token prompt. Element-wise, so the same bits.
void add_inplace_avx2(float* y, const float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
#pragma GCC unroll 4
        for (int k = 0; k < 32; k += 8)
            _mm256_storeu_ps(y + i + k,
                             _mm256_add_ps(_mm256_loadu_ps(y + i + k), _mm256_loadu_ps(x + i + k)));
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; ++i) y[i] += x[i];
}

}  // namespace lokal
