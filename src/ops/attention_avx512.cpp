// AVX-512 attention for one query token and one K/V head group: the reference's two-pass
// numerics (attention.cpp), 16 lanes wide.
//
// K and V rows are converted from f16 straight out of the cache and shared by a block of
// query heads held in registers. Pass 1 keeps one partial-sum vector per (head, key) and
// reduces 16 keys at a time with one transposing tree (no per-key horizontal sums); the
// softmax uses a vector exp and a double sum, probabilities are rounded to f16 as the
// reference does, and pass 2 accumulates p * V with the head block's outputs in registers.
// GQA groups of 1, 2, 4 and 8 (head sizes 64 and 128) take attend_gqa instead, which keeps
// every partial sum and, while scoring, the query chunks in registers
// (BM_AttentionDecode/ctx:4096, 2 threads from memory: 402-434 -> 189-214 us per layer on a
// Zen 5; LOKAL_ATTN_GQA512=0 for A/B).
// GCC 12 flags the intrinsics' own _mm512_undefined_* self-initialization once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/attention_isa.h"
#include "ops/env_switch.h"

namespace lokal {
namespace {

constexpr int TK = 16;      // keys per tile (one vector of scores)
constexpr int TC = 64;      // keys per chunk (their K or V rows stay in L1 across head blocks)
constexpr int kAhead = 64;  // rows prefetched ahead: K/V rows are strided, so hardware
                            // prefetchers alone leave the loop waiting on memory

// e^x, as exp256 in attention_avx2.cpp.
inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

// out[i] = sum of the 16 lanes of v[i], for 16 vectors.
inline __m512 hsum16x16(const __m512* v) {
    __m512 t[8], u[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)  // quarters q0+q2, q1+q3 of v[2i] and v[2i+1]
        t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i)  // one quarter per key: keys 4i .. 4i+3
        u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xDD));
    const __m512 w0 = _mm512_add_ps(_mm512_unpacklo_ps(u[0], u[1]), _mm512_unpackhi_ps(u[0], u[1]));
    const __m512 w1 = _mm512_add_ps(_mm512_unpacklo_ps(u[2], u[3]), _mm512_unpackhi_ps(u[2], u[3]));
    const __m512 r = _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(w0), _mm512_castps_pd(w1))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(w0), _mm512_castps_pd(w1))));
    // Lane 4c + i of r holds key 4i + c.
    return _mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

inline __m512 round_f16(__m512 v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline __m512 load_h(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
}

// x[j] = exp(x[j] - vmax) for j < n_live and 0 for n_live <= j < n_pad (n_pad a multiple of
// 16, the padding's contents ignored); the results summed lane-wise in double, lanes 0-7 into
// sum[0] and 8-15 into sum[1], in j order (the reference's order per lane).
inline void exp_in_place(float* x, int64_t n_pad, int64_t n_live, __m512 vmax, __m512d sum[2]) {
    for (int64_t j = 0; j < n_pad; j += 16) {
        const __mmask16 live = n_live - j >= 16
                                   ? (__mmask16)0xFFFF
                                   : (__mmask16)((1u << std::max<int64_t>(0, n_live - j)) - 1);
        const __m512 e =
            _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), vmax)));
        _mm512_storeu_ps(x + j, e);
        sum[0] = _mm512_add_pd(sum[0], _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        sum[1] = _mm512_add_pd(sum[1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
}

// x[j] *= inv, rounded to f16 (the reference's probabilities), for j < n (a multiple of 16).
inline void scale_round_f16(float* x, int64_t n, __m512 inv) {
    for (int64_t j = 0; j < n; j += 16)
        _mm512_storeu_ps(x + j, round_f16(_mm512_mul_ps(_mm512_loadu_ps(x + j), inv)));
}

// The group query heads of kv_head, NC chunks of 16 dims each, f16-rounded into q[group][16 NC]
// (the reference scores f16-rounded queries).
template <int NC>
void load_queries_f16(const AttentionQuery& query, int kv_head, int group, float* q) {
    constexpr int HD = 16 * NC;
    for (int g = 0; g < group; ++g) {
        const float* src = query.q + (int64_t)(kv_head * group + g) * HD;
        for (int c = 0; c < NC; ++c)
            _mm512_storeu_ps(q + g * HD + 16 * c, round_f16(_mm512_loadu_ps(src + 16 * c)));
    }
}

// NC = head_dim / 16, HB = query heads per register block.
template <int NC, int HB>
void attend(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
            const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    constexpr int hd = NC * 16;
    const int group = s.n_head / s.n_kv_head;
    const int32_t first = s.window > 0 ? std::max<int32_t>(0, query.pos - s.window + 1) : 0;
    const int64_t n = query.pos - first + 1;
    const int64_t n_pad = (n + TK - 1) / TK * TK;
    buf.resize((size_t)(2 * group * hd + HB * TK * 16 + group * n_pad) + 16);
    float* q = buf.data();                        // [group][hd], f16-rounded
    float* acc = q + (size_t)group * hd;          // [group][hd] outputs between chunks
    float* part = acc + (size_t)group * hd;       // [HB][TK][16] partial dot vectors
    float* scores = part + (size_t)HB * TK * 16;  // [group][n_pad]
    load_queries_f16<NC>(query, kv_head, group, q);
    thread_local std::vector<int64_t> rows;
    kv_row_offsets(s, query, kv_head, first, n, rows);
    auto row = [&](const uint16_t* cache, int64_t j) { return cache + rows[(size_t)j]; };
    auto prefetch = [&](const uint16_t* cache, int64_t j) {
        if (j >= n) return;
        const char* r = (const char*)row(cache, j);
        for (int b = 0; b < hd * 2; b += 64) _mm_prefetch(r + b, _MM_HINT_T0);
    };
    const __m512 scale = _mm512_set1_ps(s.scale);

    // Pass 1: scores. Keys in chunks of TC (read from memory once; the chunk's rows stay in
    // L1 for every head block), heads in blocks of HB with their q in registers, 16 keys
    // reduced at a time.
    for (int64_t c0 = 0; c0 < n; c0 += TC) {
        const int64_t c1 = std::min<int64_t>(n, c0 + TC);
        for (int g0 = 0; g0 < group; g0 += HB) {
            const int hb = std::min(HB, group - g0);
            __m512 qr[HB][NC];
            for (int h = 0; h < HB; ++h)
#pragma GCC unroll 8
                for (int c = 0; c < NC; ++c)
                    qr[h][c] = _mm512_loadu_ps(q + (g0 + std::min(h, hb - 1)) * hd + 16 * c);
            for (int64_t j0 = c0; j0 < c1; j0 += TK) {
                const int m = (int)std::min<int64_t>(TK, c1 - j0);
                for (int i = 0; i < m; ++i) {
                    if (g0 == 0) prefetch(k_cache, j0 + i + kAhead);
                    const uint16_t* kr = row(k_cache, j0 + i);
                    __m512 k[NC];
#pragma GCC unroll 8
                    for (int c = 0; c < NC; ++c) k[c] = load_h(kr + 16 * c);
#pragma GCC unroll 8
                    for (int h = 0; h < HB; ++h) {
                        __m512 a = _mm512_mul_ps(qr[h][0], k[0]);
#pragma GCC unroll 8
                        for (int c = 1; c < NC; ++c) a = _mm512_fmadd_ps(qr[h][c], k[c], a);
                        _mm512_storeu_ps(part + (h * TK + i) * 16, a);
                    }
                }
                for (int h = 0; h < hb; ++h) {
                    float* ph = part + h * TK * 16;
                    for (int i = m; i < TK; ++i) _mm512_storeu_ps(ph + i * 16, _mm512_setzero_ps());
                    __m512 v[TK];
#pragma GCC unroll 16
                    for (int i = 0; i < TK; ++i) v[i] = _mm512_loadu_ps(ph + i * 16);
                    _mm512_storeu_ps(scores + (g0 + h) * n_pad + j0,
                                     _mm512_mul_ps(hsum16x16(v), scale));
                }
            }
        }
    }

    // Softmax per head; probabilities rounded to f16. Padding lanes get probability 0.
    for (int g = 0; g < group; ++g) {
        float* sg = scores + g * n_pad;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < n_pad; j += 16) {
            const __mmask16 live =
                n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
            mx = _mm512_mask_max_ps(mx, live, mx, _mm512_loadu_ps(sg + j));
        }
        const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512d sums[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
        exp_in_place(sg, n_pad, n, vmax, sums);
        const double sum = _mm512_reduce_add_pd(_mm512_add_pd(sums[0], sums[1]));
        scale_round_f16(sg, n_pad, _mm512_set1_ps((float)(1.0 / sum)));
    }

    // Pass 2: probability-weighted values, chunk by chunk as pass 1; a head block's outputs
    // stay in registers for the chunk and in `acc` between chunks.
    std::fill(acc, acc + (size_t)group * hd, 0.0f);
    for (int64_t c0 = 0; c0 < n; c0 += TC) {
        const int64_t c1 = std::min<int64_t>(n, c0 + TC);
        for (int g0 = 0; g0 < group; g0 += HB) {
            const int hb = std::min(HB, group - g0);
            __m512 a[HB][NC];
            for (int h = 0; h < HB; ++h)
#pragma GCC unroll 8
                for (int c = 0; c < NC; ++c)
                    a[h][c] = _mm512_loadu_ps(acc + (g0 + std::min(h, hb - 1)) * hd + 16 * c);
            const float* p0 = scores + g0 * n_pad;
            for (int64_t j = c0; j < c1; ++j) {
                if (g0 == 0) prefetch(v_cache, j + kAhead);
                const uint16_t* vr = row(v_cache, j);
                __m512 v[NC];
#pragma GCC unroll 8
                for (int c = 0; c < NC; ++c) v[c] = load_h(vr + 16 * c);
#pragma GCC unroll 8
                for (int h = 0; h < HB; ++h) {
                    // Heads past the group's end redo the last head; their results are dropped.
                    const __m512 p = _mm512_set1_ps(p0[std::min(h, hb - 1) * n_pad + j]);
#pragma GCC unroll 8
                    for (int c = 0; c < NC; ++c) a[h][c] = _mm512_fmadd_ps(p, v[c], a[h][c]);
                }
            }
            for (int h = 0; h < hb; ++h)
                for (int c = 0; c < NC; ++c)
                    _mm512_storeu_ps(acc + (g0 + h) * hd + 16 * c, a[h][c]);
        }
    }
    for (int g = 0; g < group; ++g)
        std::copy_n(acc + g * hd, hd, query.out + (int64_t)(kv_head * group + g) * hd);
}

// The decode-shaped kernel for GQA groups G in {1, 2, 4, 8} and head_dim = 16 NC, as
// attend_fast in attention_avx2.cpp, 16 lanes wide. Scores live key-major,
// scores[j * G + g]: KB = 16 / G keys at a time, one accumulator per (key, head) = 16 chains
// over the head's chunks, and one transposing tree (hsum16x16) yields the 16 scores already
// in key-major order, so lane l of every score vector holds head l % G and the max,
// exponentials and sums of all heads are lane-wise vector work. No partial sums go through
// memory. Values: G heads x CB chunks of 16 dims per register block (at most 16
// accumulators), every key's chunk converted once per block and weighted by each head's
// probability; keys in tiles of TKV so the later chunk blocks find the tile's V rows in L1.
template <int NC, int G>
void attend_gqa(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    constexpr int HD = 16 * NC, KB = 16 / G, CB = 16 / G < NC ? 16 / G : NC;
    static_assert(NC % CB == 0, "head_dim chunks must fill the register blocks");
    constexpr int PD = 64;      // keys prefetched ahead while scoring
    constexpr int TKV = 64;     // keys per value tile
    constexpr int RB = 2 * HD;  // bytes per f16 K or V row
    const int32_t first = s.window > 0 ? std::max<int32_t>(0, query.pos - s.window + 1) : 0;
    const int64_t n = query.pos - first + 1;
    const int64_t n_blk = (n + KB - 1) / KB * KB;
    const int64_t n_vec = n_blk * G;  // a multiple of 16
    buf.resize((size_t)(2 * G * HD + n_vec) + 16);
    float* q = buf.data();                 // [G][HD], f16-rounded
    float* acc = q + (size_t)G * HD;       // [G][HD]
    float* scores = acc + (size_t)G * HD;  // [n_blk][G]
    load_queries_f16<NC>(query, kv_head, G, q);
    thread_local std::vector<int64_t> rows_tl;
    kv_row_offsets(s, query, kv_head, first, n, rows_tl);
    // Padded to whole key blocks and the prefetch distances with the last row (its scores
    // are replaced with -inf below).
    rows_tl.resize((size_t)(n_blk + PD + TKV), rows_tl[(size_t)n - 1]);
    const int64_t* rows = rows_tl.data();
    auto prefetch_row = [](const uint16_t* row) {
#pragma GCC unroll 4
        for (int b = 0; b < RB; b += 64) _mm_prefetch((const char*)row + b, _MM_HINT_T0);
    };
    const __m512 scale = _mm512_set1_ps(s.scale);

    // Scores, and their lane-wise max.
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int64_t j0 = 0; j0 < n_blk; j0 += KB) {
#pragma GCC unroll 16
        for (int kb = 0; kb < KB; ++kb) prefetch_row(k_cache + rows[j0 + kb + PD]);
        __m512 d[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) d[i] = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int c = 0; c < NC; ++c) {
            // The G query chunks in registers for all KB keys: as memory operands of every
            // FMA they made scoring load-bound (36 loads per key at G = 8).
            __m512 qc[G];
#pragma GCC unroll 8
            for (int g = 0; g < G; ++g) {
                qc[g] = _mm512_loadu_ps(q + g * HD + 16 * c);
                asm("" : "+v"(qc[g]));  // keep it a register: GCC folds it back into each FMA
            }
#pragma GCC unroll 16
            for (int kb = 0; kb < KB; ++kb) {
                const __m512 k = load_h(k_cache + rows[j0 + kb] + 16 * c);
#pragma GCC unroll 8
                for (int g = 0; g < G; ++g)
                    d[kb * G + g] = _mm512_fmadd_ps(qc[g], k, d[kb * G + g]);
            }
        }
        const __m512 sc = _mm512_mul_ps(hsum16x16(d), scale);
        _mm512_storeu_ps(scores + j0 * G, sc);
        vmax = _mm512_max_ps(vmax, sc);
    }
    // The padding keys (copies of the last row) must not count: -inf scores, and the max
    // taken again without them.
    if (n_blk != n) {
        for (int64_t i = n * G; i < n_vec; ++i) scores[i] = -INFINITY;
        vmax = _mm512_set1_ps(-INFINITY);
        for (int64_t i = 0; i < n_vec; i += 16)
            vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(scores + i));
    }
    // Lanes l and l + G hold the same head: fold them so every lane has its head's max.
    if constexpr (G <= 8) vmax = _mm512_max_ps(vmax, _mm512_shuffle_f32x4(vmax, vmax, 0x4E));
    if constexpr (G <= 4) vmax = _mm512_max_ps(vmax, _mm512_shuffle_f32x4(vmax, vmax, 0xB1));
    if constexpr (G <= 2) vmax = _mm512_max_ps(vmax, _mm512_permute_ps(vmax, 0x4E));
    if constexpr (G <= 1) vmax = _mm512_max_ps(vmax, _mm512_permute_ps(vmax, 0xB1));

    // Softmax: exponentials (exactly 0 for the padding), per-lane sums in double,
    // probabilities rounded to f16 as the reference does.
    __m512d sums[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    exp_in_place(scores, n_vec, n * G, vmax, sums);
    alignas(64) double lane[16];
    _mm512_store_pd(lane, sums[0]);
    _mm512_store_pd(lane + 8, sums[1]);
    alignas(64) float inv[16];
    for (int l = 0; l < 16; ++l) {
        double sum = 0;
        for (int m = l % G; m < 16; m += G) sum += lane[m];
        inv[l] = (float)(1.0 / sum);
    }
    scale_round_f16(scores, n_vec, _mm512_load_ps(inv));

    // Values.
    std::fill(acc, acc + (size_t)G * HD, 0.0f);
    for (int64_t j0 = 0; j0 < n; j0 += TKV) {
        const int64_t j1 = std::min<int64_t>(n, j0 + TKV);
        for (int c0 = 0; c0 < NC; c0 += CB) {
            __m512 a[G][CB];
#pragma GCC unroll 8
            for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
                for (int cb = 0; cb < CB; ++cb)
                    a[g][cb] = _mm512_loadu_ps(acc + g * HD + 16 * (c0 + cb));
            for (int64_t j = j0; j < j1; ++j) {
                if (c0 == 0) prefetch_row(v_cache + rows[j + TKV]);  // the next tile's row
                const uint16_t* row = v_cache + rows[j];
                __m512 v[CB];
#pragma GCC unroll 8
                for (int cb = 0; cb < CB; ++cb) v[cb] = load_h(row + 16 * (c0 + cb));
#pragma GCC unroll 8
                for (int g = 0; g < G; ++g) {
                    const __m512 p = _mm512_set1_ps(scores[j * G + g]);
#pragma GCC unroll 8
                    for (int cb = 0; cb < CB; ++cb) a[g][cb] = _mm512_fmadd_ps(p, v[cb], a[g][cb]);
                }
            }
#pragma GCC unroll 8
            for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
                for (int cb = 0; cb < CB; ++cb)
                    _mm512_storeu_ps(acc + g * HD + 16 * (c0 + cb), a[g][cb]);
        }
    }
    for (int g = 0; g < G; ++g)
        std::copy_n(acc + g * HD, HD, query.out + (int64_t)(kv_head * G + g) * HD);
}

template <int NC>
bool attend_gqa_group(const AttentionShape& s, const uint16_t* k, const uint16_t* v,
                      const AttentionQuery& q, int h, std::vector<float>& buf) {
    // LOKAL_ATTN_GQA512=0: the generic kernel instead (for A/B measurements).
    static const bool on = env_switch("LOKAL_ATTN_GQA512");
    if (!on) return false;
    switch (s.n_head / s.n_kv_head) {
        case 8:
            return attend_gqa<NC, 8>(s, k, v, q, h, buf), true;
        case 4:
            return attend_gqa<NC, 4>(s, k, v, q, h, buf), true;
        case 2:
            return attend_gqa<NC, 2>(s, k, v, q, h, buf), true;
        case 1:
            return attend_gqa<NC, 1>(s, k, v, q, h, buf), true;
        default:
            return false;
    }
}

}  // namespace

bool attend_group_avx512(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                         const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    switch (s.head_dim) {
        case 64:
            if (attend_gqa_group<4>(s, k_cache, v_cache, query, kv_head, buf)) return true;
            attend<4, 4>(s, k_cache, v_cache, query, kv_head, buf);
            return true;
        case 128:
            if (attend_gqa_group<8>(s, k_cache, v_cache, query, kv_head, buf)) return true;
            attend<8, 2>(s, k_cache, v_cache, query, kv_head, buf);
            return true;
        case 32:
            attend<2, 8>(s, k_cache, v_cache, query, kv_head, buf);
            return true;
        case 80:
            attend<5, 3>(s, k_cache, v_cache, query, kv_head, buf);
            return true;
        case 96:
            attend<6, 2>(s, k_cache, v_cache, query, kv_head, buf);
            return true;
        default:
            return false;
    }
}

}  // namespace lokal
