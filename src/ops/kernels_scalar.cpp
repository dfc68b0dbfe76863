// The scalar path: the executable definition of the canonical arithmetic (gemm_common.h).
// Integer block sums are computed as the reference dots do; the float part is the canonical
// fma chain (std::fma, correctly rounded on every machine).
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/kernels.h"
#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"

namespace lokal {
namespace {

float h2f(uint16_t h) {
    return fp16_to_fp32(h);
}

float dot_q4_0(int64_t nb, const BlockQ4_0* x, const BlockQ8_0* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int s = 0;
        for (int j = 0; j < 16; ++j) {
            s += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j];
            s += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        acc = std::fma((float)s, h2f(x[i].d) * h2f(y[i].d), acc);
    }
    return acc;
}

float dot_q4_1(int64_t nb, const BlockQ4_1* x, const BlockQ8_1* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int s = 0;
        for (int j = 0; j < 16; ++j) {
            s += (x[i].qs[j] & 0xF) * y[i].qs[j];
            s += (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        }
        acc = std::fma((float)s, h2f(x[i].d) * h2f(y[i].d), acc);
        acc = std::fma(h2f(x[i].m), h2f(y[i].s), acc);
    }
    return acc;
}

template <int Offset, typename B, typename A>
float dot_q5(int64_t nb, const B* x, const A* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        const uint32_t qh = load_u32_le(x[i].qh);
        int s = 0;
        for (int j = 0; j < 16; ++j) {
            const int h0 = (int)((qh >> j) & 1) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            s += (((x[i].qs[j] & 0xF) | h0) - Offset) * y[i].qs[j];
            s += (((x[i].qs[j] >> 4) | h1) - Offset) * y[i].qs[j + 16];
        }
        acc = std::fma((float)s, h2f(x[i].d) * h2f(y[i].d), acc);
        if constexpr (Offset == 0) acc = std::fma(h2f(x[i].m), h2f(y[i].s), acc);
    }
    return acc;
}

float dot_q8_0(int64_t nb, const BlockQ8_0* x, const BlockQ8_0* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int s = 0;
        for (int j = 0; j < 32; ++j) s += x[i].qs[j] * y[i].qs[j];
        acc = std::fma((float)s, h2f(x[i].d) * h2f(y[i].d), acc);
    }
    return acc;
}

float dot_iq4_nl(int64_t nb, const BlockIQ4_NL* x, const BlockQ8_0* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int s = 0;
        for (int j = 0; j < 16; ++j) {
            s += kvalues_iq4nl[x[i].qs[j] & 0xF] * y[i].qs[j];
            s += kvalues_iq4nl[x[i].qs[j] >> 4] * y[i].qs[j + 16];
        }
        acc = std::fma((float)s, h2f(x[i].d) * h2f(y[i].d), acc);
    }
    return acc;
}

float dot_q2_k(int64_t nb, const BlockQ2_K* x, const BlockQ8_K* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0, msum = 0;
        for (int j = 0; j < 16; ++j) msum += y[i].bsums[j] * (x[i].scales[j] >> 4);
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, s = (e % 128) / 32, l = e % 32;
            const int q = (x[i].qs[32 * h + l] >> (2 * s)) & 3;
            isum += (x[i].scales[e / 16] & 0xF) * q * y[i].qs[e];
        }
        acc = std::fma((float)isum, h2f(x[i].d) * y[i].d, acc);
        acc = std::fma(-(float)msum, h2f(x[i].dmin) * y[i].d, acc);
    }
    return acc;
}

float dot_q3_k(int64_t nb, const BlockQ3_K* x, const BlockQ8_K* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int8_t sc[16];
        unpack_q3_k_scales(x[i].scales, sc);
        int isum = 0;
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, s = (e % 128) / 32, l = e % 32;
            const int lo = (x[i].qs[32 * h + l] >> (2 * s)) & 3;
            const int hi = (x[i].hmask[l] >> (4 * h + s)) & 1;
            isum += sc[e / 16] * (lo + 4 * hi - 4) * y[i].qs[e];
        }
        acc = std::fma((float)isum, h2f(x[i].d) * y[i].d, acc);
    }
    return acc;
}

template <bool Five, typename B>
float dot_q45_k(int64_t nb, const B* x, const BlockQ8_K* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; ++j) get_scale_min_k4(j, x[i].scales, &sc[j], &mn[j]);
        int isum = 0, msum = 0;
        for (int j = 0; j < 16; ++j) msum += y[i].bsums[j] * mn[j / 2];
        for (int e = 0; e < QK_K; ++e) {
            const int c = e / 64, half = (e % 64) / 32, l = e % 32;
            int q = (x[i].qs[32 * c + l] >> (4 * half)) & 0xF;
            if constexpr (Five) q |= ((x[i].qh[l] >> (2 * c + half)) & 1) << 4;
            isum += sc[e / 32] * q * y[i].qs[e];
        }
        acc = std::fma((float)isum, h2f(x[i].d) * y[i].d, acc);
        acc = std::fma(-(float)msum, h2f(x[i].dmin) * y[i].d, acc);
    }
    return acc;
}

float dot_q6_k(int64_t nb, const BlockQ6_K* x, const BlockQ8_K* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0;
        for (int e = 0; e < QK_K; ++e) {
            const int h = e / 128, s = (e % 128) / 32, l = e % 32;
            const uint8_t qlb = x[i].ql[64 * h + l + 32 * (s & 1)];
            const int lo = (s < 2) ? (qlb & 0xF) : (qlb >> 4);
            const int hi = (x[i].qh[32 * h + l] >> (2 * s)) & 3;
            isum += x[i].scales[e / 16] * ((lo | (hi << 4)) - 32) * y[i].qs[e];
        }
        acc = std::fma((float)isum, h2f(x[i].d) * y[i].d, acc);
    }
    return acc;
}

float dot_iq4_xs(int64_t nb, const BlockIQ4_XS* x, const BlockQ8_K* y) {
    float acc = 0;
    for (int64_t i = 0; i < nb; ++i) {
        int isum = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                           (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            int s = 0;
            for (int j = 0; j < 16; ++j) {
                s += kvalues_iq4nl[x[i].qs[16 * ib + j] & 0xF] * y[i].qs[32 * ib + j];
                s += kvalues_iq4nl[x[i].qs[16 * ib + j] >> 4] * y[i].qs[32 * ib + j + 16];
            }
            isum += (ls - 32) * s;
        }
        acc = std::fma((float)isum, h2f(x[i].d) * y[i].d, acc);
    }
    return acc;
}

// Float rows: 16 lanes of fma chains, then the fixed reduction tree.
template <typename Load>
float dot_lanes(int64_t n, Load load) {
    float l[16] = {};
    for (int64_t k = 0; k < n; ++k) l[k % 16] = std::fma(load.w(k), load.a(k), l[k % 16]);
    for (int i = 0; i < 8; ++i) l[i] += l[i + 8];
    for (int i = 0; i < 4; ++i) l[i] += l[i + 4];
    for (int i = 0; i < 2; ++i) l[i] += l[i + 2];
    return l[0] + l[1];
}

// BF16 rows (BF16 activations): the canonical BF16 order, the arithmetic of the AVX-512
// BF16 pair dot product (vdpbf16ps, gemm_common.h). Lane l takes elements 32c + 2l + 1 (odd)
// then 32c + 2l (even) of each chunk c of 32, each an fma rounded to nearest even with
// denormal inputs read as zero and denormal results flushed to zero; elements past n are zero,
// and a lane whose even element of the last chunk is past n is left as it is. Then the fixed
// reduction tree, each sum flushed to zero when denormal too.
float bf16_daz(uint16_t h) {
    return (h & 0x7F80) == 0 ? std::copysign(0.0f, bf16_to_fp32(h)) : bf16_to_fp32(h);
}
float flush_denormal(float x) {
    return std::fabs(x) < std::numeric_limits<float>::min() ? std::copysign(0.0f, x) : x;
}

float dot_bf16_pairs(int64_t n, const uint8_t* w, const uint8_t* a) {
    auto elem = [n](const uint8_t* p, int64_t k) {
        if (k >= n) return 0.0f;
        uint16_t h;
        std::memcpy(&h, p + 2 * k, 2);
        return bf16_daz(h);
    };
    float l[16] = {};
    for (int64_t c = 0; c < n; c += 32)
        for (int i = 0; i < 16; ++i) {
            const int64_t even = c + 2 * i, odd = even + 1;
            if (even >= n) break;
            l[i] = flush_denormal(std::fma(elem(w, odd), elem(a, odd), l[i]));
            l[i] = flush_denormal(std::fma(elem(w, even), elem(a, even), l[i]));
        }
    for (int i = 0; i < 8; ++i) l[i] = flush_denormal(l[i] + l[i + 8]);
    for (int i = 0; i < 4; ++i) l[i] = flush_denormal(l[i] + l[i + 4]);
    for (int i = 0; i < 2; ++i) l[i] = flush_denormal(l[i] + l[i + 2]);
    return flush_denormal(l[0] + l[1]);
}

// F16 weights meet f32 activations (see type_traits(F16).dot_type).
struct LoadF16F32 {
    const uint8_t* pw;
    const float* pa;
    float w(int64_t k) const {
        uint16_t h;
        std::memcpy(&h, pw + 2 * k, 2);
        return fp16_to_fp32(h);
    }
    float a(int64_t k) const { return pa[k]; }
};

struct LoadFloat {
    const float* pw;
    const float* pa;
    float w(int64_t k) const { return pw[k]; }
    float a(int64_t k) const { return pa[k]; }
};

template <TensorType T>
float vec_dot_canon(int64_t n, const void* w, const void* a) {
    const int64_t nb = n / type_traits(T).block_size;
    if constexpr (T == TensorType::F32) {
        return dot_lanes(n, LoadFloat{static_cast<const float*>(w), static_cast<const float*>(a)});
    } else if constexpr (T == TensorType::F16) {
        return dot_lanes(n,
                         LoadF16F32{static_cast<const uint8_t*>(w), static_cast<const float*>(a)});
    } else if constexpr (T == TensorType::BF16) {
        return dot_bf16_pairs(n, static_cast<const uint8_t*>(w), static_cast<const uint8_t*>(a));
    } else if constexpr (T == TensorType::Q4_0) {
        return dot_q4_0(nb, static_cast<const BlockQ4_0*>(w), static_cast<const BlockQ8_0*>(a));
    } else if constexpr (T == TensorType::Q4_1) {
        return dot_q4_1(nb, static_cast<const BlockQ4_1*>(w), static_cast<const BlockQ8_1*>(a));
    } else if constexpr (T == TensorType::Q5_0) {
        return dot_q5<16>(nb, static_cast<const BlockQ5_0*>(w), static_cast<const BlockQ8_0*>(a));
    } else if constexpr (T == TensorType::Q5_1) {
        return dot_q5<0>(nb, static_cast<const BlockQ5_1*>(w), static_cast<const BlockQ8_1*>(a));
    } else if constexpr (T == TensorType::Q8_0) {
        return dot_q8_0(nb, static_cast<const BlockQ8_0*>(w), static_cast<const BlockQ8_0*>(a));
    } else if constexpr (T == TensorType::IQ4_NL) {
        return dot_iq4_nl(nb, static_cast<const BlockIQ4_NL*>(w), static_cast<const BlockQ8_0*>(a));
    } else if constexpr (T == TensorType::Q2_K) {
        return dot_q2_k(nb, static_cast<const BlockQ2_K*>(w), static_cast<const BlockQ8_K*>(a));
    } else if constexpr (T == TensorType::Q3_K) {
        return dot_q3_k(nb, static_cast<const BlockQ3_K*>(w), static_cast<const BlockQ8_K*>(a));
    } else if constexpr (T == TensorType::Q4_K) {
        return dot_q45_k<false>(nb, static_cast<const BlockQ4_K*>(w),
                                static_cast<const BlockQ8_K*>(a));
    } else if constexpr (T == TensorType::Q5_K) {
        return dot_q45_k<true>(nb, static_cast<const BlockQ5_K*>(w),
                               static_cast<const BlockQ8_K*>(a));
    } else if constexpr (T == TensorType::Q6_K) {
        return dot_q6_k(nb, static_cast<const BlockQ6_K*>(w), static_cast<const BlockQ8_K*>(a));
    } else {
        static_assert(T == TensorType::IQ4_XS);
        return dot_iq4_xs(nb, static_cast<const BlockIQ4_XS*>(w), static_cast<const BlockQ8_K*>(a));
    }
}

template <TensorType T>
void gemm_canon(const gemm::GemmArgs& a, int64_t r0, int64_t r1, void*) {
    for (int64_t r = r0; r < r1; ++r)
        for (int64_t t = 0; t < a.n_tokens; ++t)
            a.y[t * a.ldy + r] = vec_dot_canon<T>(a.n, a.w + (size_t)r * a.w_stride,
                                                  a.act + (size_t)t * a.act_stride);
}

template <TensorType D>
void quantize_scalar(const float* x, void* dst, int64_t n) {
    quantize_row_dot(D, x, dst, n);
}

KernelTable make_scalar_table() {
    KernelTable t;
    t.isa = "scalar";
    t.row_group = 1;
#define LOKAL_CANON(T)                                             \
    t.vec_dot[(int)TensorType::T] = &vec_dot_canon<TensorType::T>; \
    t.gemm[(int)TensorType::T] = &gemm_canon<TensorType::T>;
    LOKAL_CANON(F32)
    LOKAL_CANON(F16)
    LOKAL_CANON(BF16)
    LOKAL_CANON(Q4_0)
    LOKAL_CANON(Q4_1)
    LOKAL_CANON(Q5_0)
    LOKAL_CANON(Q5_1)
    LOKAL_CANON(Q8_0)
    LOKAL_CANON(Q2_K)
    LOKAL_CANON(Q3_K)
    LOKAL_CANON(Q4_K)
    LOKAL_CANON(Q5_K)
    LOKAL_CANON(Q6_K)
    LOKAL_CANON(IQ4_NL)
    LOKAL_CANON(IQ4_XS)
#undef LOKAL_CANON
#define LOKAL_Q(D) t.quantize[(int)TensorType::D] = &quantize_scalar<TensorType::D>;
    LOKAL_Q(F32)
    LOKAL_Q(F16)
    LOKAL_Q(BF16)
    LOKAL_Q(Q8_0)
    LOKAL_Q(Q8_1)
    LOKAL_Q(Q8_K)
#undef LOKAL_Q
    return t;
}

}  // namespace

const KernelTable& scalar_kernels() {
    static const KernelTable table = make_scalar_table();
    return table;
}

}  // namespace lokal
