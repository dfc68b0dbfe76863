// Non-linear 4-bit quantizers: IQ4_NL (blocks of 32, one fp16 scale) and IQ4_XS
// (super-blocks of 256: fp16 scale + 6-bit sub-block scales).
//
// Each 32-element block picks, for 15 candidate scales around max/127, the nearest codebook
// entry of every element and keeps the scale with the best weighted least-squares fit (the
// reference's search, ntry = 7 both with and without importance). Weights are x^2 without
// importance, imatrix * sqrt(sigma2 + x^2) with it (sigma2 = 2 * mean x^2 of the super-block).
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant_impl.h"

namespace lokal::quant_detail {
namespace {

constexpr int kNtry = 7;

// One super-block of `sbs` elements in blocks of 32. Writes the fp16 scale to *dh, the
// packed nibbles to q4 and, when sbs > 32, the 6-bit block scales to scales_h/scales_l.
void iq4_impl(int sbs, const float* x, uint16_t* dh, uint8_t* q4, uint16_t* scales_h,
              uint8_t* scales_l, const float* qw) {
    constexpr int bs = 32;
    const int8_t* values = kvalues_iq4nl;
    float scales[QK_K / bs], weight[bs];
    uint8_t L[QK_K];

    float sigma2 = 0;
    for (int j = 0; j < sbs; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / (float)sbs;

    std::memset(q4, 0, (size_t)sbs / 2);
    *dh = fp32_to_fp16(0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sbs / bs; ++ib) {
        const float* xb = x + ib * bs;
        uint8_t* Lb = L + ib * bs;
        if (qw) {
            for (int j = 0; j < bs; ++j)
                weight[j] = qw[ib * bs + j] * std::sqrt(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < bs; ++j) weight[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < bs; ++j) {
            const float ax = std::fabs(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < kGroupMaxEps) {
            scales[ib] = 0;
            std::memset(Lb, 0, bs);
            continue;
        }
        // Start with the extreme on the codebook's largest-magnitude entry (-127).
        float d = -max / (float)values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < bs; ++j) {
            const int l = best_index_int8(16, values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l];
            sumqx += weight[j] * q * xb[j];
            sumq2 += weight[j] * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -kNtry; itry <= kNtry; ++itry) {
            id = (float)(itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < bs; ++j) {
                const float q = values[best_index_int8(16, values, id * xb[j])];
                sumqx += weight[j] * q * xb[j];
                sumq2 += weight[j] * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (std::fabs(d) > amax_scale) {
            amax_scale = std::fabs(d);
            max_scale = d;
        }
    }

    if (sbs / bs > 1) {
        // 6-bit signed block scales l in [-32, 31] of d = -max_scale/32, stored biased by 32;
        // elements re-rounded with the block scale they will be decoded with.
        std::memset(scales_h, 0, sizeof(uint16_t));
        const float d = -max_scale / 32;
        *dh = fp32_to_fp16(d);
        const float id = d != 0 ? 1 / d : 0.f;
        for (int ib = 0; ib < sbs / bs; ++ib) {
            int l = nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * (float)l;
            const float idl = dl != 0 ? 1 / dl : 0.f;
            for (int j = 0; j < bs; ++j) {
                L[ib * bs + j] = (uint8_t)best_index_int8(16, values, idl * x[ib * bs + j]);
            }
            l += 32;
            const uint8_t l_l = (uint8_t)(l & 0xF), l_h = (uint8_t)(l >> 4);
            if (ib % 2 == 0) {
                scales_l[ib / 2] = l_l;
            } else {
                scales_l[ib / 2] |= (uint8_t)(l_l << 4);
            }
            *scales_h |= (uint16_t)(l_h << (2 * (ib % 8)));
        }
    } else {
        *dh = fp32_to_fp16(scales[0]);
        const float id = scales[0] != 0 ? 1 / scales[0] : 0;
        for (int j = 0; j < sbs; ++j) L[j] = (uint8_t)best_index_int8(16, values, id * x[j]);
    }

    // Per 32-block: byte j = level j (low nibble) | level j+16 (high nibble).
    for (int i = 0; i < sbs / 32; ++i) {
        for (int j = 0; j < 16; ++j)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
    }
}

}  // namespace

void quantize_iq4_nl(const float* x, void* vy, int64_t n, const float* qw) {
    BlockIQ4_NL* y = static_cast<BlockIQ4_NL*>(vy);
    for (int64_t ib = 0; ib < n / QK4_NL; ++ib) {
        uint16_t unused_h = 0;
        uint16_t dh;
        iq4_impl(QK4_NL, x + QK4_NL * ib, &dh, y[ib].qs, &unused_h, nullptr,
                 qw ? qw + QK4_NL * ib : nullptr);
        y[ib].d = dh;
    }
}

void quantize_iq4_xs(const float* x, void* vy, int64_t n, const float* qw) {
    BlockIQ4_XS* y = static_cast<BlockIQ4_XS*>(vy);
    for (int64_t ib = 0; ib < n / QK_K; ++ib) {
        uint16_t dh, sh;
        iq4_impl(QK_K, x + QK_K * ib, &dh, y[ib].qs, &sh, y[ib].scales_l,
                 qw ? qw + QK_K * ib : nullptr);
        y[ib].d = dh;
        y[ib].scales_h = sh;
    }
}

}  // namespace lokal::quant_detail
