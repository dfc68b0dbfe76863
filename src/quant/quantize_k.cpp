// K-quant weight quantizers (Q2_K .. Q6_K), super-blocks of 256.
//
// Every type works in two stages: (1) fit a scale (and for Q2_K/Q4_K/Q5_K a min) per
// sub-block with one of the searches in quantize_search.cpp; (2) quantize those sub-block
// scales to 4/6/8 bits against one fp16 super-block scale, then re-round every element with
// the scale it will actually be decoded with. Without importance each type follows the
// reference engine's default ("ref") path; with importance its imatrix path, where element
// weights are imatrix * sqrt(sigma2 + x^2) and sigma2 = 2 * mean x^2 over the super-block
// (Q2_K: 1 * mean) and the sub-block scales are quantized by a weighted search too.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant_impl.h"

namespace lokal::quant_detail {
namespace {

inline int clampi(int v, int lo, int hi) {
    return std::max(lo, std::min(hi, v));
}

float sum_sq(const float* x, int n) {
    float s = 0;
    for (int j = 0; j < n; ++j) s += x[j] * x[j];
    return s;
}

// Q2_K/Q3_K: 2-bit planes. For each 128-half, byte l of the 32 holds levels l, l+32, l+64,
// l+96 in bit pairs 0, 2, 4, 6.
void pack_2bit_planes(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < QK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
        }
    }
}

// ---------------------------------------------------------------- Q2_K

// Final 2-bit levels from the stored scales/mins: q = round((x + dmin*m) / (d*sc)).
void q2_k_requantize(const float* x, const BlockQ2_K& b, uint8_t* L) {
    const float dm = fp16_to_fp32(b.d), mm = fp16_to_fp32(b.dmin);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dm * (float)(b.scales[j] & 0xF);
        if (d == 0) continue;  // keep the search's levels; they decode to -min anyway
        const float m = mm * (float)(b.scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            L[16 * j + ii] = (uint8_t)clampi(nearest_int((x[16 * j + ii] + m) / d), 0, 3);
        }
    }
}

void q2_k_ref(const float* x, BlockQ2_K* y, int64_t nb) {
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[QK_K / 16], scales[QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, true);
            max_scale = std::max(max_scale, scales[j]);
            max_min = std::max(max_min, mins[j]);
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; ++j)
                y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = fp32_to_fp16(max_scale / q4scale);
        } else {
            std::memset(y[i].scales, 0, sizeof(y[i].scales));
            y[i].d = fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; ++j) {
                y[i].scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            }
            y[i].dmin = fp32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = fp32_to_fp16(0.f);
        }
        q2_k_requantize(x, y[i], L);
        pack_2bit_planes(L, y[i].qs);
    }
}

void q2_k_imatrix(const float* x, BlockQ2_K* y, int64_t nb, const float* qw) {
    uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
    float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], weight[16];
    for (int64_t i = 0; i < nb; ++i, x += QK_K, qw += QK_K) {
        const float sigma2 = sum_sq(x, QK_K) / QK_K;
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) {
                weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
            }
            sw[j] = 0;
            for (int l = 0; l < 16; ++l) sw[j] += weight[l];
            scales[j] = make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux,
                                         -0.9f, 0.05f, 36, false);
        }
        const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
        const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
        y[i].d = fp32_to_fp16(dm);
        y[i].dmin = fp32_to_fp16(mm);
        for (int j = 0; j < QK_K / 16; ++j) y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        q2_k_requantize(x, y[i], L);
        pack_2bit_planes(L, y[i].qs);
    }
}

// ---------------------------------------------------------------- Q3_K

// Store 16 6-bit biased scales (0..63) in the 12-byte layout described in blocks.h.
void q3_k_pack_scales(const int* ls, uint8_t* s) {
    std::memset(s, 0, 12);
    for (int j = 0; j < 16; ++j) {
        const int l = ls[j];
        if (j < 8) {
            s[j] = (uint8_t)(l & 0xF);
        } else {
            s[j - 8] |= (uint8_t)((l & 0xF) << 4);
        }
        s[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}

// Re-round with the stored scales, then split the 3-bit levels into hmask + 2-bit planes.
void q3_k_finish(const float* x, BlockQ3_K& b, int8_t* L) {
    int8_t sc[16];
    unpack_q3_k_scales(b.scales, sc);
    const float dall = fp16_to_fp32(b.d);
    for (int j = 0; j < QK_K / 16; ++j) {
        const float d = dall * (float)sc[j];
        if (d == 0) continue;
        for (int ii = 0; ii < 16; ++ii) {
            L[16 * j + ii] = (int8_t)(clampi(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
        }
    }
    // High bit of level i goes to bit i/32 of hmask[i%32].
    std::memset(b.hmask, 0, sizeof(b.hmask));
    uint8_t low[QK_K];
    for (int j = 0; j < QK_K; ++j) {
        int l = L[j];
        if (l > 3) {
            b.hmask[j % 32] |= (uint8_t)(1 << (j / 32));
            l -= 4;
        }
        low[j] = (uint8_t)l;
    }
    pack_2bit_planes(low, b.qs);
}

void q3_k_ref(const float* x, BlockQ3_K* y, int64_t nb) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
            const float a = std::fabs(scales[j]);
            if (a > amax) {
                amax = a;
                max_scale = scales[j];
            }
        }
        if (max_scale != 0) {
            const float iscale = -32.f / max_scale;
            int ls[16];
            for (int j = 0; j < QK_K / 16; ++j) {
                // The reference narrows to int8 before clamping; |iscale*scale| <= 32 here.
                const int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                ls[j] = clampi(l, -32, 31) + 32;
            }
            q3_k_pack_scales(ls, y[i].scales);
            y[i].d = fp32_to_fp16(1 / iscale);
        } else {
            std::memset(y[i].scales, 0, 12);
            y[i].d = fp32_to_fp16(0.f);
        }
        q3_k_finish(x, y[i], L);
    }
}

void q3_k_imatrix(const float* x, BlockQ3_K* y, int64_t nb, const float* qw) {
    int8_t L[QK_K], Ls[QK_K / 16];
    float scales[QK_K / 16], weight[16], sw[QK_K / 16];
    for (int64_t i = 0; i < nb; ++i, x += QK_K, qw += QK_K) {
        const float sigma2 = 2 * sum_sq(x, QK_K) / QK_K;
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) {
                weight[l] = qw[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
            }
            float sumw = 0;
            for (int l = 0; l < 16; ++l) sumw += weight[l];
            sw[j] = sumw;
            scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, weight);
        }
        const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
        int ls[16];
        for (int j = 0; j < 16; ++j) ls[j] = Ls[j];
        q3_k_pack_scales(ls, y[i].scales);
        y[i].d = fp32_to_fp16(d_block);
        q3_k_finish(x, y[i], L);
    }
}

// ---------------------------------------------------------------- Q4_K / Q5_K

// Store 8 (scale, min) 6-bit pairs in the 12-byte layout read by get_scale_min_k4.
void k4_pack_scales(const uint8_t* ls, const uint8_t* lm, uint8_t* s) {
    for (int j = 0; j < QK_K / 32; ++j) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j - 0] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

// Re-round every element with its stored (d*sc, dmin*m): q = round((x + dmin*m) / (d*sc)).
void k4_requantize(const float* x, const uint8_t* packed, uint16_t dh, uint16_t dminh, int nmax,
                   uint8_t* L) {
    for (int j = 0; j < QK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, packed, &sc, &m);
        const float d = fp16_to_fp32(dh) * (float)sc;
        if (d == 0) continue;
        const float dm = fp16_to_fp32(dminh) * (float)m;
        for (int ii = 0; ii < 32; ++ii) {
            L[32 * j + ii] = (uint8_t)clampi(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax);
        }
    }
}

// Sub-block fits of the no-importance path: weights av_x + |x|, av_x the sub-block RMS.
void k4_ref_scales(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L,
                   float* scales, float* mins) {
    float weights[32];
    uint8_t Laux[32];
    for (int j = 0; j < QK_K / 32; ++j) {
        const float av_x = std::sqrt(sum_sq(x + 32 * j, 32) / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, rdelta, nstep, false);
    }
}

// Sub-block scales/mins to 6 bits against the largest of each (no-importance path).
void k4_ref_quantize_scales(const float* scales, const float* mins, uint8_t* ls, uint8_t* lm,
                            float* d, float* dmin) {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        max_scale = std::max(max_scale, scales[j]);
        max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
        ls[j] = (uint8_t)std::min(63, (int)(uint8_t)nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)std::min(63, (int)(uint8_t)nearest_int(inv_min * mins[j]));
    }
    *d = max_scale / 63.f;
    *dmin = max_min / 63.f;
}

// Sub-block fits and scale quantization of the importance path.
void k4_imatrix_scales(const float* x, const float* qw, int nmax, uint8_t* L, uint8_t* ls,
                       uint8_t* lm, float* d, float* dmin) {
    float weights[32], sw[QK_K / 32], scales[QK_K / 32], mins[QK_K / 32];
    uint8_t Laux[32];
    const float sigma2 = 2 * sum_sq(x, QK_K) / QK_K;
    const float av_x = std::sqrt(sigma2);
    for (int j = 0; j < QK_K / 32; ++j) {
        if (qw) {
            for (int l = 0; l < 32; ++l) {
                weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
            }
        } else {
            for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        }
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     -0.9f, 0.05f, 36, false);
    }
    *d = make_qp_quants(QK_K / 32, 63, scales, ls, sw);
    *dmin = make_qp_quants(QK_K / 32, 63, mins, lm, sw);
}

void q4_k(const float* x, BlockQ4_K* y, int64_t nb, const float* qw) {
    uint8_t L[QK_K], ls[8], lm[8];
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float d, dmin;
        if (qw) {
            k4_imatrix_scales(x, qw + QK_K * i, 15, L, ls, lm, &d, &dmin);
        } else {
            float scales[8], mins[8];
            k4_ref_scales(x, 15, -1.f, 0.1f, 20, L, scales, mins);
            k4_ref_quantize_scales(scales, mins, ls, lm, &d, &dmin);
        }
        std::memset(y[i].scales, 0, sizeof(y[i].scales));
        k4_pack_scales(ls, lm, y[i].scales);
        y[i].d = fp32_to_fp16(d);
        y[i].dmin = fp32_to_fp16(dmin);
        k4_requantize(x, y[i].scales, y[i].d, y[i].dmin, 15, L);
        // Chunk c of 64: byte l = level 64c+l (low nibble) | level 64c+32+l (high nibble).
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
            }
        }
    }
}

void q5_k(const float* x, BlockQ5_K* y, int64_t nb, const float* qw) {
    uint8_t L[QK_K], ls[8], lm[8];
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float d, dmin;
        if (qw) {
            k4_imatrix_scales(x, qw + QK_K * i, 31, L, ls, lm, &d, &dmin);
        } else {
            float scales[8], mins[8];
            k4_ref_scales(x, 31, -0.5f, 0.1f, 15, L, scales, mins);
            k4_ref_quantize_scales(scales, mins, ls, lm, &d, &dmin);
        }
        std::memset(y[i].scales, 0, sizeof(y[i].scales));
        k4_pack_scales(ls, lm, y[i].scales);
        y[i].d = fp32_to_fp16(d);
        y[i].dmin = fp32_to_fp16(dmin);
        k4_requantize(x, y[i].scales, y[i].d, y[i].dmin, 31, L);
        // As Q4_K for the low nibbles; bit 4 of level 64c+l -> qh[l] bit 2c, of 64c+32+l ->
        // bit 2c+1.
        std::memset(y[i].qh, 0, sizeof(y[i].qh));
        for (int c = 0; c < 4; ++c) {
            for (int l = 0; l < 32; ++l) {
                const int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
                y[i].qh[l] |= (uint8_t)(((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1)));
                y[i].qs[32 * c + l] = (uint8_t)((l1 & 0xF) | ((l2 & 0xF) << 4));
            }
        }
    }
}

// ---------------------------------------------------------------- Q6_K

void q6_k(const float* x, BlockQ6_K* y, int64_t nb, const float* qw) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const float* w = qw ? qw + QK_K * i + 16 * ib : nullptr;
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1, w);
            scales[ib] = scale;
            if (std::fabs(scale) > max_abs_scale) {
                max_abs_scale = std::fabs(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < kGroupMaxEps) {
            std::memset(&y[i], 0, sizeof(BlockQ6_K));
            continue;
        }
        // 8-bit signed sub-block scales; the largest maps to -128.
        const float iscale = -128.f / max_scale;
        y[i].d = fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            y[i].scales[ib] = (int8_t)std::min(127, nearest_int(iscale * scales[ib]));
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = fp16_to_fp32(y[i].d) * (float)y[i].scales[j];
            if (d == 0) continue;
            for (int ii = 0; ii < 16; ++ii) {
                L[16 * j + ii] = (int8_t)(clampi(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
            }
        }
        // Per 128-half: ql[l] = lo(l) | lo(l+64) << 4, ql[l+32] = lo(l+32) | lo(l+96) << 4,
        // qh[l] = hi2 of l, l+32, l+64, l+96 at bits 0, 2, 4, 6.
        uint8_t* ql = y[i].ql;
        uint8_t* qh = y[i].qh;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t* q = reinterpret_cast<const uint8_t*>(L) + j + l;
                ql[l] = (uint8_t)((q[0] & 0xF) | ((q[64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q[32] & 0xF) | ((q[96] & 0xF) << 4));
                qh[l] = (uint8_t)((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) |
                                  ((q[96] >> 4) << 6));
            }
        }
    }
}

}  // namespace

void quantize_q2_k(const float* x, void* y, int64_t n, const float* qw) {
    if (qw) {
        q2_k_imatrix(x, static_cast<BlockQ2_K*>(y), n / QK_K, qw);
    } else {
        q2_k_ref(x, static_cast<BlockQ2_K*>(y), n / QK_K);
    }
}

void quantize_q3_k(const float* x, void* y, int64_t n, const float* qw) {
    if (qw) {
        q3_k_imatrix(x, static_cast<BlockQ3_K*>(y), n / QK_K, qw);
    } else {
        q3_k_ref(x, static_cast<BlockQ3_K*>(y), n / QK_K);
    }
}

void quantize_q4_k(const float* x, void* y, int64_t n, const float* qw) {
    q4_k(x, static_cast<BlockQ4_K*>(y), n / QK_K, qw);
}

void quantize_q5_k(const float* x, void* y, int64_t n, const float* qw) {
    q5_k(x, static_cast<BlockQ5_K*>(y), n / QK_K, qw);
}

void quantize_q6_k(const float* x, void* y, int64_t n, const float* qw) {
    q6_k(x, static_cast<BlockQ6_K*>(y), n / QK_K, qw);
}

}  // namespace lokal::quant_detail
