// AVX2 attention for one query token and one K/V head group: the reference's two-pass
// numerics (attention.cpp) on 8-wide vectors.
//
// f16 and Q8_0 caches take the shared kernel of attention_dims_major_impl.h (dims-major K, 8
// keys per vector). Q4_0 caches (row-major K) take the kernels below: keys are taken 8 at a
// time, their rows converted once (into a small f32 tile, or in registers by the decode-shaped
// kernel) for every query head of the GQA group, so K and V are loaded from the cache once per
// group. Pass 1 writes the scaled scores (O(n) per head), the softmax runs with a vector exp
// and a double sum, probabilities are rounded to f16 as the reference does, and pass 2
// accumulates the probability-weighted V.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/attention_dims_major_impl.h"
#include "ops/attention_isa.h"
#include "ops/simd_math_avx2.h"

namespace lokal {
namespace {

constexpr int TK = 32;  // keys per tile

// Bytes of one cached row of hd values, and of one block of 32 values of the block types
// (an f16 scale, then the values).
constexpr int row_bytes(KvType t, int hd) {
    return 2 * (int)kv_row_elems(t, hd);
}
constexpr int block_bytes(KvType t) {
    return row_bytes(t, 32);
}

// The scale of block b of a cached row of a block type.
template <KvType KT>
[[gnu::always_inline]] inline float block_scale(const uint16_t* row, int b) {
    uint16_t dh;
    std::memcpy(&dh, (const uint8_t*)row + block_bytes(KT) * b, 2);
    return _cvtsh_ss(dh);
}

// Values [8c, 8c + 8) of a cached Q4_0 row, without the scale: the nibbles minus 8 (values
// j < 16 of a block are the low nibbles of its bytes j, values 16 + j the high ones).
template <KvType KT>
[[gnu::always_inline]] inline __m256 load_levels(const uint16_t* row, int c) {
    static_assert(KT == KvType::Q4_0, "Q4_0 rows only (Q8_0 K is dims-major)");
    const uint8_t* q = (const uint8_t*)row + block_bytes(KT) * (c / 4) + 2;
    __m128i b = _mm_loadl_epi64((const __m128i*)(q + 8 * (c % 2)));
    if (c % 4 >= 2) b = _mm_srli_epi16(b, 4);
    b = _mm_and_si128(b, _mm_set1_epi8(0x0F));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(b), _mm256_set1_epi32(8)));
}

// Values [8c, 8c + 8) of a cached row as floats: the levels times the block's f16 scale,
// the same product the reference's dequantization forms.
template <KvType KT>
[[gnu::always_inline]] inline __m256 load_chunk(const uint16_t* row, int c) {
    return _mm256_mul_ps(load_levels<KT>(row, c), _mm256_set1_ps(block_scale<KT>(row, c / 4)));
}

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

// dst[0, n) = src[0, n) rounded to f16 (n a multiple of 8).
inline void round_f16_copy(const float* src, float* dst, int n) {
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, round_f16(_mm256_loadu_ps(src + i)));
}
// q[0, n) = the group's query rows ([group][head_dim], n = group * head_dim), rounded to f16
// as the reference does.
inline void load_group_queries(const AttentionQuery& query, int kv_head, int n, float* q) {
    round_f16_copy(query.q + (int64_t)kv_head * n, q, n);
}

// x[i] = e^(x[i] - vmax) for i < n (a multiple of 8), -inf scores giving exactly 0; the
// per-lane sums in double go to sum[0] (lanes 0-3) and sum[1] (lanes 4-7).
inline void exp_in_place(float* x, int64_t n, __m256 vmax, __m256d sum[2]) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n; j += 8) {
        const __m256 v = _mm256_loadu_ps(x + j);
        const __m256 e = _mm256_blendv_ps(exp256(_mm256_sub_ps(v, vmax)), _mm256_setzero_ps(),
                                          _mm256_cmp_ps(v, ninf, _CMP_EQ_OQ));
        _mm256_storeu_ps(x + j, e);
        sum[0] = _mm256_add_pd(sum[0], _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        sum[1] = _mm256_add_pd(sum[1], _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
}

// NC = head_dim / 8 when known at compile time (full unrolling), 0 = read from the shape.
template <KvType KT, int NC>
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
    load_group_queries(query, kv_head, group * hd, q);
    std::fill(acc, acc + (size_t)group * hd, 0.0f);
    thread_local std::vector<int64_t> rows;
    kv_row_offsets(s, query, kv_head, first, n, rows);
    // A local pointer: every use of the thread_local vector itself goes through its TLS
    // wrapper, which cost more than converting the row.
    const int64_t* row_at = rows.data() - first;  // row_at[p]: position p's K/V row
    auto cache_row = [row_at](int64_t p) { return row_at[p]; };
    // Converts keys [j0, j0 + m) (positions first + j) of `cache` into the f32 tile.
    const int rb = row_bytes(KT, hd);
    auto load_tile = [&](const uint16_t* cache, int64_t j0, int m) {
        // The rows are strided (kv_dim apart) and may jump between blocks: prefetch the next
        // tile while converting this one.
        const int64_t next = std::min<int64_t>(TK, n - j0 - TK);
        for (int64_t i = 0; i < next; ++i) {
            const char* r = (const char*)(cache + cache_row(first + j0 + TK + i));
            for (int b = 0; b < rb; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
        }
        for (int i = 0; i < m; ++i) {
            const uint16_t* row = cache + cache_row(first + j0 + i);
#pragma GCC unroll 16
            for (int c = 0; c < nc; ++c)
                _mm256_storeu_ps(tile + i * hd + 8 * c, load_chunk<KT>(row, c));
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
        __m256d sums[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
        exp_in_place(sg, n_pad, _mm256_set1_ps(max), sums);
        alignas(32) double parts[4];
        _mm256_store_pd(parts, _mm256_add_pd(sums[0], sums[1]));
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

// The decode-shaped kernel for GQA groups G in {1, 2, 4, 8} and head_dim = 8 NC.
//
// Nothing is staged: K and V rows are converted (from Q4_0) in registers where they are used.
// (Converting rows into an f32 tile and reading it back took half of the generic kernel's
// time, measured with BM_AttentionDecode.) Scores live key-major, scores[j * G + g], so the
// 8 lanes of a vector always hold the same heads (lane l: head l % G): the max, the
// exponentials and the sums of all G heads are lane-wise vector work.
//
// Scores: KB = 8 / G keys at a time, one f32 accumulator per (key, head) = 8 chains, and one
// 8-way horizontal sum that yields the 8 scores already in key-major order.
// Values: G heads x CB = 8 / G chunks of 8 dims per register block, every key's chunk
// converted once per block and weighted by each head's probability.
template <KvType KT, int NC, int G>
void attend_fast(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                 const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    constexpr int KB = 8 / G, CB = 8 / G < NC ? 8 / G : NC, HD = 8 * NC;
    static_assert(NC % CB == 0, "head_dim chunks must fill the register blocks");
    constexpr int PD = 64;  // keys prefetched ahead (8 KiB of f16 K or V rows at head_dim 64)
    constexpr int RB = row_bytes(KT, 8 * NC);
    const int32_t first = s.window > 0 ? std::max<int32_t>(0, query.pos - s.window + 1) : 0;
    const int64_t n = query.pos - first + 1;
    const int64_t n_pad = (n + KB - 1) / KB * KB + 8;  // keys, with room for a full vector
    buf.resize((size_t)(2 * G * HD + n_pad * G) + 8);
    float* q = buf.data();                 // [G][HD], f16-rounded
    float* acc = q + (size_t)G * HD;       // [G][HD]
    float* scores = acc + (size_t)G * HD;  // [n_pad][G]
    load_group_queries(query, kv_head, G * HD, q);
    thread_local std::vector<int64_t> rows_tl;
    kv_row_offsets(s, query, kv_head, first, n, rows_tl);
    // Padded to whole key blocks and the prefetch distance with the last row (its scores
    // are overwritten with -inf below).
    rows_tl.resize((size_t)(n_pad + PD), rows_tl[(size_t)n - 1]);
    const int64_t* rows = rows_tl.data();
    auto prefetch_row = [&](const uint16_t* cache, int64_t j) {
        const char* r = (const char*)(cache + rows[j]);
#pragma GCC unroll 4
        for (int b = 0; b < RB; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
    };
    const __m256 scale = _mm256_set1_ps(s.scale);

    // Scores, and their lane-wise max.
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    const int64_t n_blk = (n + KB - 1) / KB * KB;
    for (int64_t j0 = 0; j0 < n_blk; j0 += KB) {
#pragma GCC unroll 8
        for (int kb = 0; kb < KB; ++kb) prefetch_row(k_cache, j0 + kb + PD);
        __m256 d[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) d[i] = _mm256_setzero_ps();
#pragma GCC unroll 16
        for (int c = 0; c < NC; ++c) {
#pragma GCC unroll 8
            for (int kb = 0; kb < KB; ++kb) {
                const __m256 k = load_chunk<KT>(k_cache + rows[j0 + kb], c);
#pragma GCC unroll 8
                for (int g = 0; g < G; ++g)
                    d[kb * G + g] =
                        _mm256_fmadd_ps(_mm256_loadu_ps(q + g * HD + 8 * c), k, d[kb * G + g]);
            }
        }
        const __m256 sc = _mm256_mul_ps(hsum8(d), scale);
        _mm256_storeu_ps(scores + j0 * G, sc);
        vmax = _mm256_max_ps(vmax, sc);
    }
    // The padding keys (copies of the last row) must not count: -inf scores, and the max
    // taken again without them.
    const int64_t n_real = n * G, n_vec = (n_real + 7) / 8 * 8;
    for (int64_t i = n_real; i < n_vec; ++i) scores[i] = -INFINITY;
    if (n_blk != n) {
        vmax = _mm256_set1_ps(-INFINITY);
        for (int64_t i = 0; i < n_vec; i += 8)
            vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(scores + i));
    }
    // Lanes l and l + G hold the same head: fold them so every lane has its head's max.
    if constexpr (G <= 4) vmax = _mm256_max_ps(vmax, _mm256_permute2f128_ps(vmax, vmax, 1));
    if constexpr (G <= 2) vmax = _mm256_max_ps(vmax, _mm256_permute_ps(vmax, 0x4E));
    if constexpr (G <= 1) vmax = _mm256_max_ps(vmax, _mm256_permute_ps(vmax, 0xB1));

    // Softmax: exponentials, per-lane sums in double, probabilities rounded to f16.
    __m256d sums[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    exp_in_place(scores, n_vec, vmax, sums);
    alignas(32) double lane[8];
    _mm256_store_pd(lane, sums[0]);
    _mm256_store_pd(lane + 4, sums[1]);
    alignas(32) float inv[8];
    for (int l = 0; l < 8; ++l) {
        double sum = 0;
        for (int m = l % G; m < 8; m += G) sum += lane[m];
        inv[l] = (float)(1.0 / sum);
    }
    const __m256 vinv = _mm256_load_ps(inv);
    for (int64_t i = 0; i < n_vec; i += 8)
        _mm256_storeu_ps(scores + i, round_f16(_mm256_mul_ps(_mm256_loadu_ps(scores + i), vinv)));

    // Values: for each block of CB chunks, all keys; per key each chunk is converted once
    // and weighted by the G probabilities. Keys are walked in tiles so that the later
    // chunk blocks find the tile's rows in L1.
    //
    // A row's levels are converted without their scale,
    // which is folded into the probabilities once per key and block instead (pq below), not
    // multiplied into every chunk in every pass; the products differ from the reference's
    // p * (q * d) only by float rounding.
    constexpr int TKV = 64, LR = (RB + 63) / 64;  // keys per tile, cache lines per row
    constexpr int NQB = HD / 32;                  // blocks per row
    alignas(32) float pq[NQB * TKV * G];          // [block][key in tile][head]: p * d
    static_assert(TKV <= PD, "rows[] is padded for prefetches up to PD keys ahead");
    for (int i = 0; i < G * HD; ++i) acc[i] = 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += TKV) {
        const int64_t j1 = std::min<int64_t>(n, j0 + TKV);
        for (int64_t j = j0; j < j1; ++j) {
            const uint16_t* row = v_cache + rows[j];
#pragma GCC unroll 4
            for (int b = 0; b < NQB; ++b) {
                const float d = block_scale<KT>(row, b);
                float* dst = pq + (b * TKV + (j - j0)) * G;
                if constexpr (G == 8) {
                    _mm256_store_ps(
                        dst, _mm256_mul_ps(_mm256_loadu_ps(scores + j * G), _mm256_set1_ps(d)));
                } else {
                    for (int g = 0; g < G; ++g) dst[g] = scores[j * G + g] * d;
                }
            }
        }
        for (int c0 = 0; c0 < NC; c0 += CB) {
            __m256 a[G][CB];
#pragma GCC unroll 8
            for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
                for (int cb = 0; cb < CB; ++cb)
                    a[g][cb] = _mm256_loadu_ps(acc + g * HD + 8 * (c0 + cb));
            const int pass = c0 / CB;
            for (int64_t j = j0; j < j1; ++j) {
                // The next tile's rows: one line per key in each of the first passes keeps a
                // steady number of misses in flight (a whole tile at once overflowed the miss
                // buffers: from memory, values took twice as long as from L3).
                if constexpr (NC / CB >= LR) {
                    if (pass < LR)
                        _mm_prefetch((const char*)(v_cache + rows[j + TKV]) + 64 * pass,
                                     _MM_HINT_T0);
                } else if (pass == 0) {
                    prefetch_row(v_cache, j + TKV);
                }
                const uint16_t* row = v_cache + rows[j];
                __m256 v[CB];
#pragma GCC unroll 8
                for (int cb = 0; cb < CB; ++cb) v[cb] = load_levels<KT>(row, c0 + cb);
#pragma GCC unroll 8
                for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
                    for (int cb = 0; cb < CB; ++cb) {
                        const int b = (c0 + cb) / 4;
                        const __m256 p = _mm256_broadcast_ss(pq + (b * TKV + (j - j0)) * G + g);
                        a[g][cb] = _mm256_fmadd_ps(p, v[cb], a[g][cb]);
                    }
            }
#pragma GCC unroll 8
            for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
                for (int cb = 0; cb < CB; ++cb)
                    _mm256_storeu_ps(acc + g * HD + 8 * (c0 + cb), a[g][cb]);
        }
    }
    for (int g = 0; g < G; ++g)
        std::copy_n(acc + g * HD, HD, query.out + (int64_t)(kv_head * G + g) * HD);
}

template <KvType KT, int NC>
bool attend_fast_group(const AttentionShape& s, const uint16_t* k, const uint16_t* v,
                       const AttentionQuery& q, int h, std::vector<float>& buf) {
    switch (s.n_head / s.n_kv_head) {
        case 8:
            return attend_fast<KT, NC, 8>(s, k, v, q, h, buf), true;
        case 4:
            return attend_fast<KT, NC, 4>(s, k, v, q, h, buf), true;
        case 2:
            return attend_fast<KT, NC, 2>(s, k, v, q, h, buf), true;
        case 1:
            return attend_fast<KT, NC, 1>(s, k, v, q, h, buf), true;
        default:
            return false;
    }
}

template <KvType KT>
void attend_group_typed(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                        const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    switch (s.head_dim) {
        case 64:
            if (attend_fast_group<KT, 8>(s, k_cache, v_cache, query, kv_head, buf)) return;
            return attend<KT, 8>(s, k_cache, v_cache, query, kv_head, buf);
        case 128:
            if (attend_fast_group<KT, 16>(s, k_cache, v_cache, query, kv_head, buf)) return;
            return attend<KT, 16>(s, k_cache, v_cache, query, kv_head, buf);
        case 80:
            return attend<KT, 10>(s, k_cache, v_cache, query, kv_head, buf);
        case 96:
            return attend<KT, 12>(s, k_cache, v_cache, query, kv_head, buf);
        case 32:
            if (attend_fast_group<KT, 4>(s, k_cache, v_cache, query, kv_head, buf)) return;
            return attend<KT, 4>(s, k_cache, v_cache, query, kv_head, buf);
        default:
            return attend<KT, 0>(s, k_cache, v_cache, query, kv_head, buf);
    }
}

struct Avx2 {
    using V = __m256;
    static constexpr int L = 8;
    static constexpr int kScoreAcc = 8;  // 16 registers: 8 accumulators, a key vector, a query
    static constexpr int kScoreHeads = 4;
    static constexpr int kValueAcc = 8;
    static __m256i first_n(int n) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static V zero() { return _mm256_setzero_ps(); }
    static V set1(float x) { return _mm256_set1_ps(x); }
    static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    static V load_h(const uint16_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p));
    }
    // No 16-bit masked loads in AVX2: a partial run (block or sequence ends) goes through a copy.
    static V load_h_n(const uint16_t* p, int n) {
        alignas(16) uint16_t t[8] = {};
        std::memcpy(t, p, (size_t)n * 2);
        return _mm256_cvtph_ps(_mm_load_si128((const __m128i*)t));
    }
    static V load_b(const int8_t* p) {
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)));
    }
    static V load_b_n(const int8_t* p, int n) {
        int64_t t = 0;
        std::memcpy(&t, p, (size_t)n);
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(t)));
    }
    static float half(uint16_t h) { return _cvtsh_ss(h); }
    static void store_n(float* p, V v, int n) { _mm256_maskstore_ps(p, first_n(n), v); }
    // f16-rounded copies of n floats (n a multiple of 8).
    static void round_f16_n(const float* src, float* dst, int n) { round_f16_copy(src, dst, n); }
    // Softmax steps on one tile of 8 scores, `live` of them real (the rest get 0).
    struct Sum {
        __m256 v = _mm256_setzero_ps();  // lane-wise partial sums
    };
    static V max_n(V m, V v, int live) {
        if (live >= 8) return _mm256_max_ps(m, v);
        return _mm256_max_ps(
            m, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(first_n(live))));
    }
    static float reduce_max(V m) {
        __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        r = _mm_max_ps(r, _mm_movehl_ps(r, r));
        return _mm_cvtss_f32(_mm_max_ss(r, _mm_movehdup_ps(r)));
    }
    // x = e^(x - vmax), summed lane-wise in float (see attention_avx512.cpp).
    static void exp_tile(float* x, V vmax, int live, Sum& sum) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x), vmax));
        if (live < 8) e = _mm256_and_ps(e, _mm256_castsi256_ps(first_n(live)));
        _mm256_storeu_ps(x, e);
        sum.v = _mm256_add_ps(sum.v, e);
    }
    static double reduce_sum(const Sum& s) {
        alignas(32) float parts[8];
        _mm256_store_ps(parts, s.v);
        double total = 0;
        for (float p : parts) total += p;
        return total;
    }
    // x *= inv, rounded to f16 (the reference's probabilities).
    static void scale_round_tile(float* x, V inv) {
        _mm256_storeu_ps(x, round_f16(_mm256_mul_ps(_mm256_loadu_ps(x), inv)));
    }
};

}  // namespace

void attend_group_avx2(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                       const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    if (s.kv_type == KvType::Q4_0)
        return attend_group_typed<KvType::Q4_0>(s, k_cache, v_cache, query, kv_head, buf);
    attend_dims_major_cache<Avx2>(s, k_cache, v_cache, query, kv_head, buf);
}

}  // namespace lokal
