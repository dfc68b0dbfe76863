// AVX2 attention for one query token and one K/V head group: the reference's two-pass
// numerics (attention.cpp) on 8-wide vectors.
//
// Keys are taken 8 at a time: their rows are converted from f16 once into a small f32 tile
// and every query head of the GQA group reads that tile, so K and V are loaded from the
// cache once per group. Pass 1 writes the scaled scores (O(n) per head), the softmax runs
// with a vector exp and a double sum, probabilities are rounded to f16 as the reference
// does, and pass 2 accumulates the probability-weighted V tiles.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/attention_isa.h"
#include "ops/simd_math_avx2.h"

namespace lokal {
namespace {

constexpr int TK = 32;  // keys per tile

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// The 8 horizontal sums of a[0..7], in lane order.
inline __m256 hsum8(const __m256* a) {
    const __m256 s01 = _mm256_hadd_ps(a[0], a[1]), s23 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 s45 = _mm256_hadd_ps(a[4], a[5]), s67 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 s0123 = _mm256_hadd_ps(s01, s23), s4567 = _mm256_hadd_ps(s45, s67);
    // s0123 = [a0 a1 a2 a3 | a0 a1 a2 a3] halves (low/high 128 of each), likewise s4567.
    const __m256 lo = _mm256_permute2f128_ps(s0123, s4567, 0x20);
    const __m256 hi = _mm256_permute2f128_ps(s0123, s4567, 0x31);
    return _mm256_add_ps(lo, hi);
}

inline __m256 round_f16(__m256 v) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// NC = head_dim / 8 when known at compile time (full unrolling), 0 = read from the shape.
template <int NC>
void attend(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
            const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    const int group = s.n_head / s.n_kv_head;
    const int hd = s.head_dim;
    const int nc = NC ? NC : hd / 8;
    const int32_t first = s.window > 0 ? std::max<int32_t>(0, query.pos - s.window + 1) : 0;
    const int64_t n = query.pos - first + 1;
    const int64_t n_pad = (n + 7) / 8 * 8;
    buf.resize((size_t)(2 * group * hd + TK * hd + group * n_pad) + 8);
    float* q = buf.data();                   // [group][hd], f16-rounded
    float* acc = q + (size_t)group * hd;     // [group][hd]
    float* tile = acc + (size_t)group * hd;  // [TK][hd] converted K or V rows
    float* scores = tile + (size_t)TK * hd;  // [group][n_pad]
    for (int g = 0; g < group; ++g) {
        const float* src = query.q + (int64_t)(kv_head * group + g) * hd;
        for (int c = 0; c < nc; ++c)
            _mm256_storeu_ps(q + g * hd + 8 * c, round_f16(_mm256_loadu_ps(src + 8 * c)));
    }
    std::fill(acc, acc + (size_t)group * hd, 0.0f);
    thread_local std::vector<int64_t> rows;
    kv_row_offsets(s, query, kv_head, first, n, rows);
    auto cache_row = [&](int64_t p) { return rows[(size_t)(p - first)]; };
    // Converts keys [j0, j0 + m) (positions first + j) of `cache` into the f32 tile.
    auto load_tile = [&](const uint16_t* cache, int64_t j0, int m) {
        // The rows are strided (kv_dim apart) and may jump between blocks: prefetch the next
        // tile while converting this one.
        const int64_t next = std::min<int64_t>(TK, n - j0 - TK);
        for (int64_t i = 0; i < next; ++i) {
            const char* r = (const char*)(cache + cache_row(first + j0 + TK + i));
            for (int b = 0; b < hd * 2; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
        }
        for (int i = 0; i < m; ++i) {
            const uint16_t* row = cache + cache_row(first + j0 + i);
#pragma GCC unroll 16
            for (int c = 0; c < nc; ++c)
                _mm256_storeu_ps(tile + i * hd + 8 * c,
                                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + 8 * c))));
        }
    };
    const __m256 scale = _mm256_set1_ps(s.scale);

    // Pass 1: scores, 8 keys at a time (8 independent fma chains, one horizontal sum).
    for (int64_t j0 = 0; j0 < n; j0 += TK) {
        const int m = (int)std::min<int64_t>(TK, n - j0);
        load_tile(k_cache, j0, m);
        for (int g = 0; g < group; ++g) {
            const float* qg = q + g * hd;
            float* sg = scores + g * n_pad + j0;
            int i0 = 0;
            for (; i0 + 8 <= m; i0 += 8) {
                const float* t = tile + i0 * hd;
                __m256 d[8];
#pragma GCC unroll 8
                for (int i = 0; i < 8; ++i) d[i] = _mm256_setzero_ps();
#pragma GCC unroll 16
                for (int c = 0; c < nc; ++c) {
                    const __m256 qc = _mm256_loadu_ps(qg + 8 * c);
#pragma GCC unroll 8
                    for (int i = 0; i < 8; ++i)
                        d[i] = _mm256_fmadd_ps(qc, _mm256_loadu_ps(t + i * hd + 8 * c), d[i]);
                }
                _mm256_storeu_ps(sg + i0, _mm256_mul_ps(hsum8(d), scale));
            }
            for (; i0 < m; ++i0) {
                __m256 d = _mm256_setzero_ps();
                for (int c = 0; c < nc; ++c)
                    d = _mm256_fmadd_ps(_mm256_loadu_ps(qg + 8 * c),
                                        _mm256_loadu_ps(tile + i0 * hd + 8 * c), d);
                sg[i0] = hsum(d) * s.scale;
            }
        }
    }

    // Softmax per head; probabilities rounded to f16. Padding lanes get probability 0.
    for (int g = 0; g < group; ++g) {
        float* sg = scores + g * n_pad;
        const float max = *std::max_element(sg, sg + n);
        for (int64_t j = n; j < n_pad; ++j) sg[j] = -INFINITY;
        const __m256 vmax = _mm256_set1_ps(max), ninf = _mm256_set1_ps(-INFINITY);
        __m256d sum0 = _mm256_setzero_pd(), sum1 = _mm256_setzero_pd();
        for (int64_t j = 0; j < n_pad; j += 8) {
            const __m256 x = _mm256_loadu_ps(sg + j);
            const __m256 e = _mm256_blendv_ps(exp256(_mm256_sub_ps(x, vmax)), _mm256_setzero_ps(),
                                              _mm256_cmp_ps(x, ninf, _CMP_EQ_OQ));
            _mm256_storeu_ps(sg + j, e);
            sum0 = _mm256_add_pd(sum0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            sum1 = _mm256_add_pd(sum1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
        alignas(32) double parts[4];
        _mm256_store_pd(parts, _mm256_add_pd(sum0, sum1));
        const double sum = (parts[0] + parts[1]) + (parts[2] + parts[3]);
        const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
        for (int64_t j = 0; j < n_pad; j += 8)
            _mm256_storeu_ps(sg + j, round_f16(_mm256_mul_ps(_mm256_loadu_ps(sg + j), inv)));
    }

    // Pass 2: probability-weighted values; each head's accumulator stays in registers for a
    // whole tile (nc independent fma chains per key).
    for (int64_t j0 = 0; j0 < n; j0 += TK) {
        const int m = (int)std::min<int64_t>(TK, n - j0);
        load_tile(v_cache, j0, m);
        for (int g = 0; g < group; ++g) {
            const float* pg = scores + g * n_pad + j0;
            float* ag = acc + g * hd;
            if constexpr (NC > 0) {
                __m256 a[NC];
#pragma GCC unroll 16
                for (int c = 0; c < NC; ++c) a[c] = _mm256_loadu_ps(ag + 8 * c);
                for (int i = 0; i < m; ++i) {
                    const __m256 p = _mm256_set1_ps(pg[i]);
#pragma GCC unroll 16
                    for (int c = 0; c < NC; ++c)
                        a[c] = _mm256_fmadd_ps(p, _mm256_loadu_ps(tile + i * hd + 8 * c), a[c]);
                }
#pragma GCC unroll 16
                for (int c = 0; c < NC; ++c) _mm256_storeu_ps(ag + 8 * c, a[c]);
            } else {
                for (int c = 0; c < nc; ++c) {
                    __m256 a = _mm256_loadu_ps(ag + 8 * c);
                    for (int i = 0; i < m; ++i)
                        a = _mm256_fmadd_ps(_mm256_set1_ps(pg[i]),
                                            _mm256_loadu_ps(tile + i * hd + 8 * c), a);
                    _mm256_storeu_ps(ag + 8 * c, a);
                }
            }
        }
    }
    for (int g = 0; g < group; ++g)
        std::copy_n(acc + g * hd, hd, query.out + (int64_t)(kv_head * group + g) * hd);
}

}  // namespace

void attend_group_avx2(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                       const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    switch (s.head_dim) {
        case 64:
            return attend<8>(s, k_cache, v_cache, query, kv_head, buf);
        case 128:
            return attend<16>(s, k_cache, v_cache, query, kv_head, buf);
        case 80:
            return attend<10>(s, k_cache, v_cache, query, kv_head, buf);
        case 96:
            return attend<12>(s, k_cache, v_cache, query, kv_head, buf);
        case 32:
            return attend<4>(s, k_cache, v_cache, query, kv_head, buf);
        default:
            return attend<0>(s, k_cache, v_cache, query, kv_head, buf);
    }
}

}  // namespace lokal
