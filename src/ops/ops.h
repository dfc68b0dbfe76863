// Element-wise and row-wise kernels of the transformer forward pass; each works on one row
// so callers parallelize over rows. rmsnorm and swiglu run AVX2 versions (ops_avx2.cpp)
// unless the dispatch is scalar.
#pragma once

#include <cstdint>

namespace lokal {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]   (x, out, weight: [n])
void rmsnorm(const float* x, const float* weight, float* out, int64_t n, float eps);

// out[i] = silu(gate[i]) * up[i], the SwiGLU activation  ([n])
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// In-place softmax over [n].
void softmax(float* x, int64_t n);

// y[i] += x[i]   ([n])
void add_inplace(float* y, const float* x, int64_t n);

struct RopeParams {
    int n_rot = 0;            // rotated dimensions per head (<= head_dim)
    float freq_base = 10000;  // theta base
    float freq_scale = 1;     // linear position interpolation (1 / scaling factor)
    bool neox = false;  // NEOX style rotates (i, i + n_rot/2); normal style rotates (2i, 2i+1)
    const float* freq_factors = nullptr;  // optional [n_rot/2] divisors (Llama 3 rope scaling)
};

// The rotation of the token at `pos`: cos[i] and sin[i] of pair i's angle ([n_rot / 2] each).
// The same for every layer and for q and k, so a forward pass takes them once per token (taken
// twice a layer before, RoPE took 66 us of a TinyLlama token, 41 since: docs/PERFORMANCE.md,
// "Where a decode step's time goes").
void rope_angles(int32_t pos, const RopeParams& p, float* cos, float* sin);
// Rotate every head of x in place ([n_heads][head_dim]) by rope_angles' cos and sin.
void rope_rotate(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
                 const RopeParams& p);

}  // namespace lokal
