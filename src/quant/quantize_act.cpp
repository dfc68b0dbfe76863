// Activation quantization: one float row into the format the weight type's dot product
// consumes (quant.h). Each format follows the reference engine's reference quantizer, so
// the integer activations (and hence dot products) match it:
//   Q8_0: d = amax/127 (stored fp16), q = round_half_even(x * (127/amax)). This is what the
//         reference engine's SIMD activation quantizer (the one its matmuls actually use)
//         computes; its scalar reference function (1/d, roundf) differs in the last bit of
//         the scale and on ties, enough to move attention-sensitive logits by ~1e-2.
//   Q8_1: as Q8_0, plus s = fp16(d * sum(q))
//   Q8_K: signed max m (largest |x|, keeping its sign), iscale = -127/m, d = 1/iscale (float),
//         q = min(127, nearest_int(iscale * x)); bsums = sums of q in groups of 16.
//         (-127 rather than -128 keeps q in [-127, 127], which the IQ kernels rely on.)
//   F16 / BF16: round to nearest even; F32: copy.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "quant/quant_impl.h"

namespace lokal {
namespace {

using quant_detail::nearest_int;

void q_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = (int8_t)std::nearbyint(x[j] * id);
    }
}

void q_q8_1(const float* x, BlockQ8_1* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_1; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; ++j) {
            y[i].qs[j] = (int8_t)std::nearbyint(x[j] * id);
            sum += y[i].qs[j];
        }
        // s uses the float d (not the fp16-rounded one), as the reference does.
        y[i].s = fp32_to_fp16((float)sum * d);
    }
}

void q_q8_k(const float* x, BlockQ8_K* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < QK_K; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            y[i].d = 0.0f;
            std::memset(y[i].qs, 0, sizeof(y[i].qs));
            std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; ++j) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)std::min(127, v);
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

}  // namespace

void quantize_row_dot(TensorType dot_type, const float* src, void* dst, int64_t n) {
    const TypeTraits& tr = type_traits(dot_type);
    if (tr.block_size <= 0 || n % tr.block_size != 0) {
        throw std::invalid_argument(std::string("quantize_row_dot: bad length for ") + tr.name);
    }
    const int64_t nb = n / tr.block_size;
    switch (dot_type) {
        case TensorType::F32:
            std::memcpy(dst, src, (size_t)n * sizeof(float));
            return;
        case TensorType::F16: {
            uint8_t* d = static_cast<uint8_t*>(dst);
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t h = fp32_to_fp16(src[i]);
                std::memcpy(d + 2 * i, &h, 2);
            }
            return;
        }
        case TensorType::BF16: {
            uint8_t* d = static_cast<uint8_t*>(dst);
            for (int64_t i = 0; i < n; ++i) {
                const uint16_t h = fp32_to_bf16(src[i]);
                std::memcpy(d + 2 * i, &h, 2);
            }
            return;
        }
        case TensorType::Q8_0:
            return q_q8_0(src, static_cast<BlockQ8_0*>(dst), nb);
        case TensorType::Q8_1:
            return q_q8_1(src, static_cast<BlockQ8_1*>(dst), nb);
        case TensorType::Q8_K:
            return q_q8_k(src, static_cast<BlockQ8_K*>(dst), nb);
        default:
            throw std::invalid_argument(std::string("quantize_row_dot: not an activation type: ") +
                                        tr.name);
    }
}

}  // namespace lokal
