#include "ops/ops.h"

#include <cmath>
#include <cstring>

#include "ops/kernels.h"
#include "ops/ops_isa.h"

namespace lokal {
namespace {

// The SIMD row kernels follow the matmul dispatch (LOKAL_ISA=scalar keeps these).
bool use_simd() {
    static const bool simd = std::strcmp(kernels().isa, "scalar") != 0;
    return simd;
}

}  // namespace

void rmsnorm(const float* x, const float* weight, float* out, int64_t n, float eps) {
    if (use_simd()) return rmsnorm_avx2(x, weight, out, n, eps);
    // The sum of squares is accumulated in double, as the reference engine does.
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * weight[i];
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
    if (use_simd()) return swiglu_avx2(gate, up, out, n);
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void softmax(float* x, int64_t n) {
    float max = x[0];
    for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void add_inplace(float* y, const float* x, int64_t n) {
    if (use_simd()) return add_inplace_avx2(y, x, n);
    for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void rope_angles(int32_t pos, const RopeParams& p, float* cos, float* sin) {
    // theta_i = pos * base^(-2i/n_rot), computed by repeated multiplication in float the
    // way the reference engine does so rotations agree to the last bit where possible.
    const float theta_scale = std::pow(p.freq_base, -2.0f / (float)p.n_rot);
    float theta = (float)pos;
    for (int i = 0; i < p.n_rot / 2; ++i) {
        const float ff = p.freq_factors ? p.freq_factors[i] : 1.0f;
        const float t = p.freq_scale * (theta / ff);
        cos[i] = std::cos(t);
        sin[i] = std::sin(t);
        theta *= theta_scale;
    }
}

void rope_rotate(float* x, int n_heads, int head_dim, const float* cos, const float* sin,
                 const RopeParams& p) {
    const int half = p.n_rot / 2;
    for (int h = 0; h < n_heads; ++h) {
        float* v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; ++i) {
            const int a = p.neox ? i : 2 * i;
            const int b = p.neox ? i + half : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * cos[i] - x1 * sin[i];
            v[b] = x0 * sin[i] + x1 * cos[i];
        }
    }
}

}  // namespace lokal
