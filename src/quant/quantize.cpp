// quantize_row dispatch, the float types, and the 32-element legacy formats
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
//
// Legacy formats without importance use the simple reference rounding (absmax or min/max);
// with importance they use the reference's weighted searches: make_qx_quants for the
// symmetric types, make_qkx3_quants (scale + min) for the asymmetric ones. Importance per
// element is imatrix * sqrt(sigma2 + x^2), sigma2 = mean x^2 over the whole row.
#include "quant/quantize.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <stdexcept>
#include <string>

#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "quant/quant_impl.h"

namespace lokal {
namespace quant_detail {

namespace {

// Signed absmax: the value with the largest magnitude, sign kept.
float signed_absmax(const float* x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    return max;
}

void min_max(const float* x, int n, float* mn, float* mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; ++j) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

// imatrix weights of one block: qw * sqrt(sigma2 + x^2).
void block_weights(const float* xb, const float* qw, float sigma2, int n, float* w) {
    for (int j = 0; j < n; ++j) w[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

float row_sigma2(const float* x, int64_t n) {
    float sum_x2 = 0;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

// Pack 32 5-bit levels: low nibbles as Q4_0, bit 4 of level j into bit j of qh.
void pack_q5(const uint8_t* L, uint8_t* qs, uint8_t* qh_out) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
        qh |= (uint32_t)((L[j] >> 4) & 1) << j;
        qh |= (uint32_t)((L[j + 16] >> 4) & 1) << (j + 16);
    }
    std::memcpy(qh_out, &qh, 4);
}

}  // namespace

void quantize_q4_0(const float* x, void* vy, int64_t n, const float* qw) {
    BlockQ4_0* y = static_cast<BlockQ4_0*>(vy);
    const int64_t nb = n / QK4_0;
    if (!qw) {
        for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
            // The extreme maps to -8 (the side with the extra level).
            const float d = signed_absmax(x, QK4_0) / -8;
            const float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].d = fp32_to_fp16(d);
            for (int j = 0; j < 16; ++j) {
                // +8.5 then truncation = round half up into [0, 16], clamped to 15.
                const int q0 = std::min(15, (int)(x[j] * id + 8.5f));
                const int q1 = std::min(15, (int)(x[j + 16] * id + 8.5f));
                y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        return;
    }
    const float sigma2 = row_sigma2(x, n);
    float w[QK4_0];
    int8_t L[QK4_0];
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + QK4_0 * i;
        block_weights(xb, qw + QK4_0 * i, sigma2, QK4_0, w);
        const float d = make_qx_quants(QK4_0, 8, xb, L, 1, w);
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < 16; ++j) y[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void quantize_q4_1(const float* x, void* vy, int64_t n, const float* qw) {
    BlockQ4_1* y = static_cast<BlockQ4_1*>(vy);
    const int64_t nb = n / QK4_1;
    if (!qw) {
        for (int64_t i = 0; i < nb; ++i, x += QK4_1) {
            float mn, mx;
            min_max(x, QK4_1, &mn, &mx);
            const float d = (mx - mn) / 15;
            const float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].d = fp32_to_fp16(d);
            y[i].m = fp32_to_fp16(mn);
            for (int j = 0; j < 16; ++j) {
                const int q0 = std::min(15, (int)((x[j] - mn) * id + 0.5f));
                const int q1 = std::min(15, (int)((x[j + 16] - mn) * id + 0.5f));
                y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        return;
    }
    const float sigma2 = row_sigma2(x, n);
    float w[QK4_1];
    uint8_t L[QK4_1], Laux[QK4_1];
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + QK4_1 * i;
        block_weights(xb, qw + QK4_1 * i, sigma2, QK4_1, w);
        float min;
        const float d = make_qkx3_quants(QK4_1, 15, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(-min);
        for (int j = 0; j < 16; ++j) y[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void quantize_q5_0(const float* x, void* vy, int64_t n, const float* qw) {
    BlockQ5_0* y = static_cast<BlockQ5_0*>(vy);
    const int64_t nb = n / QK5_0;
    uint8_t L[QK5_0];
    if (!qw) {
        for (int64_t i = 0; i < nb; ++i, x += QK5_0) {
            const float d = signed_absmax(x, QK5_0) / -16;
            const float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].d = fp32_to_fp16(d);
            for (int j = 0; j < QK5_0; ++j) L[j] = (uint8_t)std::min(31, (int)(x[j] * id + 16.5f));
            pack_q5(L, y[i].qs, y[i].qh);
        }
        return;
    }
    const float sigma2 = row_sigma2(x, n);
    float w[QK5_0];
    int8_t Ls[QK5_0];
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + QK5_0 * i;
        block_weights(xb, qw + QK5_0 * i, sigma2, QK5_0, w);
        const float d = make_qx_quants(QK5_0, 16, xb, Ls, 1, w);
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK5_0; ++j) L[j] = (uint8_t)Ls[j];
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void quantize_q5_1(const float* x, void* vy, int64_t n, const float* qw) {
    BlockQ5_1* y = static_cast<BlockQ5_1*>(vy);
    const int64_t nb = n / QK5_1;
    uint8_t L[QK5_1];
    if (!qw) {
        for (int64_t i = 0; i < nb; ++i, x += QK5_1) {
            float mn, mx;
            min_max(x, QK5_1, &mn, &mx);
            const float d = (mx - mn) / 31;
            const float id = d != 0 ? 1.0f / d : 0.0f;
            y[i].d = fp32_to_fp16(d);
            y[i].m = fp32_to_fp16(mn);
            for (int j = 0; j < QK5_1; ++j) {
                L[j] = (uint8_t)std::min(31, (int)((x[j] - mn) * id + 0.5f));
            }
            pack_q5(L, y[i].qs, y[i].qh);
        }
        return;
    }
    const float sigma2 = row_sigma2(x, n);
    float w[QK5_1];
    uint8_t Laux[QK5_1];
    for (int64_t i = 0; i < nb; ++i) {
        const float* xb = x + QK5_1 * i;
        block_weights(xb, qw + QK5_1 * i, sigma2, QK5_1, w);
        float min;
        const float d = make_qkx3_quants(QK5_1, 31, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(-min);
        pack_q5(L, y[i].qs, y[i].qh);
    }
}

void quantize_q8_0(const float* x, void* y, int64_t n) {
    // The reference quantizer's weight rounding: d = amax/127, q = roundf(x * (1/d)).
    // (Activations use the SIMD variant, 127/amax with ties to even: quantize_act.cpp.)
    BlockQ8_0* out = static_cast<BlockQ8_0*>(y);
    for (int64_t i = 0; i < n / QK8_0; ++i, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        out[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; ++j) out[i].qs[j] = (int8_t)std::roundf(x[j] * id);
    }
}

}  // namespace quant_detail

bool can_quantize(TensorType type) {
    switch (type) {
        case TensorType::F32:
        case TensorType::F16:
        case TensorType::BF16:
        case TensorType::Q4_0:
        case TensorType::Q4_1:
        case TensorType::Q5_0:
        case TensorType::Q5_1:
        case TensorType::Q8_0:
        case TensorType::Q2_K:
        case TensorType::Q3_K:
        case TensorType::Q4_K:
        case TensorType::Q5_K:
        case TensorType::Q6_K:
        case TensorType::IQ4_NL:
        case TensorType::IQ4_XS:
            return true;
        default:
            return false;
    }
}

size_t quantize_row(TensorType type, const float* src, void* dst, int64_t n,
                    const float* importance) {
    using namespace quant_detail;
    const TypeTraits& tr = type_traits(type);
    if (!can_quantize(type)) {
        throw std::invalid_argument(std::string("quantize_row: unsupported type ") + tr.name);
    }
    if (n <= 0 || n % tr.block_size != 0) {
        throw std::invalid_argument(std::string("quantize_row: bad length for ") + tr.name);
    }
    const float* qw = importance;
    switch (type) {
        case TensorType::F32:
            std::memcpy(dst, src, (size_t)n * 4);
            break;
        case TensorType::F16:
        case TensorType::BF16:
            quantize_row_dot(type, src, dst, n);
            break;
        case TensorType::Q4_0:
            quantize_q4_0(src, dst, n, qw);
            break;
        case TensorType::Q4_1:
            quantize_q4_1(src, dst, n, qw);
            break;
        case TensorType::Q5_0:
            quantize_q5_0(src, dst, n, qw);
            break;
        case TensorType::Q5_1:
            quantize_q5_1(src, dst, n, qw);
            break;
        case TensorType::Q8_0:
            quantize_q8_0(src, dst, n);
            break;
        case TensorType::Q2_K:
            quantize_q2_k(src, dst, n, qw);
            break;
        case TensorType::Q3_K:
            quantize_q3_k(src, dst, n, qw);
            break;
        case TensorType::Q4_K:
            quantize_q4_k(src, dst, n, qw);
            break;
        case TensorType::Q5_K:
            quantize_q5_k(src, dst, n, qw);
            break;
        case TensorType::Q6_K:
            quantize_q6_k(src, dst, n, qw);
            break;
        case TensorType::IQ4_NL:
            quantize_iq4_nl(src, dst, n, qw);
            break;
        case TensorType::IQ4_XS:
            quantize_iq4_xs(src, dst, n, qw);
            break;
        default:
            break;
    }
    return row_size(type, n);
}

}  // namespace lokal
