// Scalar reference dot products: weight row (type w) x activation row (dot_type of w).
//
// Accumulation mirrors the reference engine's scalar paths: exact integer sums per block
// (or per sub-block where the weight has sub-block scales), converted to float and scaled
// by d_weight * d_activation, then summed in float across blocks. Float rows (F32/F16/BF16)
// accumulate in double like its scalar ggml_vec_dot_f32/f16/bf16.
#include <stdexcept>
#include <string>

#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"

namespace lokal {
namespace {

float dot_q4_0(int64_t nb, const BlockQ4_0* x, const BlockQ8_0* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK4_0 / 2; ++j) {
            sumi0 += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j];
            sumi1 += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + QK4_0 / 2];
        }
        sumf += (float)(sumi0 + sumi1) * fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d);
    }
    return sumf;
}

// Q4_1/Q5_1 with Q8_1: sum_j (d_x q_j + m) d_y a_j = d_x d_y sum(q a) + m * (d_y sum a),
// the second term being the activation block's precomputed s.
float dot_q4_1(int64_t nb, const BlockQ4_1* x, const BlockQ8_1* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; ++j) {
            sumi += (x[i].qs[j] & 0x0F) * y[i].qs[j];
            sumi += (x[i].qs[j] >> 4) * y[i].qs[j + QK4_1 / 2];
        }
        sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * (float)sumi +
                fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
    }
    return sumf;
}

float dot_q5_0(int64_t nb, const BlockQ5_0* x, const BlockQ8_0* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const uint32_t qh = load_u32_le(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0 / 2; ++j) {
            const int h0 = (int)((qh >> j) & 1) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            sumi += (((x[i].qs[j] & 0x0F) | h0) - 16) * y[i].qs[j];
            sumi += (((x[i].qs[j] >> 4) | h1) - 16) * y[i].qs[j + QK5_0 / 2];
        }
        sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * (float)sumi;
    }
    return sumf;
}

float dot_q5_1(int64_t nb, const BlockQ5_1* x, const BlockQ8_1* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const uint32_t qh = load_u32_le(x[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1 / 2; ++j) {
            const int h0 = (int)((qh >> j) & 1) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            sumi += ((x[i].qs[j] & 0x0F) | h0) * y[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) | h1) * y[i].qs[j + QK5_1 / 2];
        }
        sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * (float)sumi +
                fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
    }
    return sumf;
}

float dot_q8_0(int64_t nb, const BlockQ8_0* x, const BlockQ8_0* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; ++j) sumi += x[i].qs[j] * y[i].qs[j];
        sumf += (float)sumi * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
    }
    return sumf;
}

float dot_iq4_nl(int64_t nb, const BlockIQ4_NL* x, const BlockQ8_0* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int sumi = 0;
        for (int j = 0; j < QK4_NL / 2; ++j) {
            sumi += y[i].qs[j] * kvalues_iq4nl[x[i].qs[j] & 0xF];
            sumi += y[i].qs[j + QK4_NL / 2] * kvalues_iq4nl[x[i].qs[j] >> 4];
        }
        sumf += fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d) * (float)sumi;
    }
    return sumf;
}

// Q2_K: x = d*sc*q - dmin*m per 16; the min term uses the activation's bsums.
float dot_q2_k(int64_t nb, const BlockQ2_K* x, const BlockQ8_K* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* sc = x[i].scales;
        int summs = 0;
        for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (sc[j] >> 4);
        const float dall = y[i].d * fp16_to_fp32(x[i].d);
        const float dmin = y[i].d * fp16_to_fp32(x[i].dmin);
        const uint8_t* q2 = x[i].qs;
        const int8_t* q8 = y[i].qs;
        int isum = 0, is = 0;
        for (int half = 0; half < 2; ++half, q2 += 32) {
            for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
                for (int part = 0; part < 2; ++part) {
                    const int d = sc[is++] & 0xF;
                    int isuml = 0;
                    for (int l = 16 * part; l < 16 * part + 16; ++l) {
                        isuml += q8[l] * ((q2[l] >> shift) & 3);
                    }
                    isum += d * isuml;
                }
            }
        }
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

float dot_q3_k(int64_t nb, const BlockQ3_K* x, const BlockQ8_K* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int8_t scales[16];
        unpack_q3_k_scales(x[i].scales, scales);
        const uint8_t* q3 = x[i].qs;
        const uint8_t* hm = x[i].hmask;
        const int8_t* q8 = y[i].qs;
        uint8_t m = 1;
        int isum = 0, is = 0;
        for (int half = 0; half < 2; ++half, q3 += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1, q8 += 32) {
                for (int part = 0; part < 2; ++part) {
                    int isuml = 0;
                    for (int l = 16 * part; l < 16 * part + 16; ++l) {
                        const int v = ((q3[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                        isuml += q8[l] * v;
                    }
                    isum += scales[is++] * isuml;
                }
            }
        }
        sumf += fp16_to_fp32(x[i].d) * y[i].d * (float)isum;
    }
    return sumf;
}

float dot_q4_k(int64_t nb, const BlockQ4_K* x, const BlockQ8_K* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; ++j) get_scale_min_k4(j, x[i].scales, &sc[j], &mn[j]);
        int summs = 0;
        for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * mn[j / 2];
        const uint8_t* q4 = x[i].qs;
        const int8_t* q8 = y[i].qs;
        int isum = 0;
        for (int c = 0; c < 4; ++c, q4 += 32, q8 += 64) {
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) {
                lo += (q4[l] & 0xF) * q8[l];
                hi += (q4[l] >> 4) * q8[l + 32];
            }
            isum += sc[2 * c] * lo + sc[2 * c + 1] * hi;
        }
        const float d = fp16_to_fp32(x[i].d) * y[i].d;
        const float dmin = fp16_to_fp32(x[i].dmin) * y[i].d;
        sumf += d * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

float dot_q5_k(int64_t nb, const BlockQ5_K* x, const BlockQ8_K* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; ++j) get_scale_min_k4(j, x[i].scales, &sc[j], &mn[j]);
        int summs = 0;
        for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * mn[j / 2];
        const uint8_t* ql = x[i].qs;
        const uint8_t* qh = x[i].qh;
        const int8_t* q8 = y[i].qs;
        uint8_t u1 = 1, u2 = 2;
        int isum = 0;
        for (int c = 0; c < 4; ++c, ql += 32, q8 += 64, u1 <<= 2, u2 <<= 2) {
            int lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) {
                lo += ((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) * q8[l];
                hi += ((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) * q8[l + 32];
            }
            isum += sc[2 * c] * lo + sc[2 * c + 1] * hi;
        }
        const float d = fp16_to_fp32(x[i].d) * y[i].d;
        const float dmin = fp16_to_fp32(x[i].dmin) * y[i].d;
        sumf += d * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

float dot_q6_k(int64_t nb, const BlockQ6_K* x, const BlockQ8_K* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        const int8_t* q8 = y[i].qs;
        int isum = 0;
        for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, q8 += 128) {
            for (int part = 0; part < 2; ++part) {  // l in [0,16) and [16,32): one scale each
                int s1 = 0, s2 = 0, s3 = 0, s4 = 0;
                for (int l = 16 * part; l < 16 * part + 16; ++l) {
                    s1 += (((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32) * q8[l];
                    s2 += (((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32) * q8[l + 32];
                    s3 += (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * q8[l + 64];
                    s4 += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * q8[l + 96];
                }
                isum += sc[part] * s1 + sc[part + 2] * s2 + sc[part + 4] * s3 + sc[part + 6] * s4;
            }
        }
        sumf += fp16_to_fp32(x[i].d) * y[i].d * (float)isum;
    }
    return sumf;
}

float dot_iq4_xs(int64_t nb, const BlockIQ4_XS* x, const BlockQ8_K* y) {
    float sumf = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const float d4d8 = fp16_to_fp32(x[i].d) * y[i].d;
        const uint8_t* qs = x[i].qs;
        const int8_t* q8 = y[i].qs;
        for (int ib = 0; ib < QK_K / 32; ++ib, qs += 16, q8 += 32) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                           (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            int sumi = 0;
            for (int j = 0; j < 16; ++j) {
                sumi += q8[j] * kvalues_iq4nl[qs[j] & 0xF];
                sumi += q8[j + 16] * kvalues_iq4nl[qs[j] >> 4];
            }
            sumf += d4d8 * (float)(ls - 32) * (float)sumi;
        }
    }
    return sumf;
}

template <float (*Conv)(uint16_t)>
float dot_half(int64_t n, const void* w, const void* a) {
    const uint8_t* pw = static_cast<const uint8_t*>(w);
    const uint8_t* pa = static_cast<const uint8_t*>(a);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint16_t hw, ha;
        std::memcpy(&hw, pw + 2 * i, 2);
        std::memcpy(&ha, pa + 2 * i, 2);
        sum += (double)(Conv(hw) * Conv(ha));
    }
    return (float)sum;
}

}  // namespace

float vec_dot_ref(TensorType w, int64_t n, const void* w_row, const void* act_row) {
    const TypeTraits& tr = type_traits(w);
    if (tr.block_size <= 0 || n % tr.block_size != 0) {
        throw std::invalid_argument(std::string("vec_dot_ref: bad length for ") + tr.name);
    }
    const int64_t nb = n / tr.block_size;
    switch (w) {
        case TensorType::F32: {
            const float* x = static_cast<const float*>(w_row);
            const float* y = static_cast<const float*>(act_row);
            double sum = 0;
            for (int64_t i = 0; i < n; ++i) sum += (double)(x[i] * y[i]);
            return (float)sum;
        }
        case TensorType::F16: {
            // F16 weights meet f32 activations: the reference engine's batched F16 path keeps
            // activations in f32 (logits match it to 1e-4 this way, 1e-3 with f16 activations).
            const uint16_t* x = static_cast<const uint16_t*>(w_row);
            const float* y = static_cast<const float*>(act_row);
            double sum = 0;
            for (int64_t i = 0; i < n; ++i) sum += (double)(fp16_to_fp32(x[i]) * y[i]);
            return (float)sum;
        }
        case TensorType::BF16:
            return dot_half<bf16_to_fp32>(n, w_row, act_row);
#define LOKAL_DOT(T, fn, BW, BA) \
    case TensorType::T:          \
        return fn(nb, static_cast<const BW*>(w_row), static_cast<const BA*>(act_row));
            LOKAL_DOT(Q4_0, dot_q4_0, BlockQ4_0, BlockQ8_0)
            LOKAL_DOT(Q4_1, dot_q4_1, BlockQ4_1, BlockQ8_1)
            LOKAL_DOT(Q5_0, dot_q5_0, BlockQ5_0, BlockQ8_0)
            LOKAL_DOT(Q5_1, dot_q5_1, BlockQ5_1, BlockQ8_1)
            LOKAL_DOT(Q8_0, dot_q8_0, BlockQ8_0, BlockQ8_0)
            LOKAL_DOT(IQ4_NL, dot_iq4_nl, BlockIQ4_NL, BlockQ8_0)
            LOKAL_DOT(Q2_K, dot_q2_k, BlockQ2_K, BlockQ8_K)
            LOKAL_DOT(Q3_K, dot_q3_k, BlockQ3_K, BlockQ8_K)
            LOKAL_DOT(Q4_K, dot_q4_k, BlockQ4_K, BlockQ8_K)
            LOKAL_DOT(Q5_K, dot_q5_k, BlockQ5_K, BlockQ8_K)
            LOKAL_DOT(Q6_K, dot_q6_k, BlockQ6_K, BlockQ8_K)
            LOKAL_DOT(IQ4_XS, dot_iq4_xs, BlockIQ4_XS, BlockQ8_K)
#undef LOKAL_DOT
        default:
            throw std::invalid_argument(std::string("vec_dot_ref: unsupported type ") + tr.name);
    }
}

}  // namespace lokal
