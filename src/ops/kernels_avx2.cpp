// The AVX2 (+FMA, F16C) table: quantized GEMM from gemm_avx2.cpp, float-weight GEMM and
// activation conversion here. The float kernels keep the canonical 16 lanes as two ymm
// halves, so they match the AVX-512 and scalar paths bit for bit.
#include <immintrin.h>

#include <cstring>
#include <optional>

#include "ops/env_switch.h"
#include "ops/gemm_isa.h"
#include "ops/kernels.h"
#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"

namespace lokal {
namespace {

using gemm::GemmArgs;

template <TensorType T>
inline __m256 load8(const uint8_t* p, int64_t k) {
    if constexpr (T == TensorType::F32) {
        return _mm256_loadu_ps(reinterpret_cast<const float*>(p) + k);
    } else {
        static_assert(T == TensorType::F16);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + 2 * k)));
    }
}

// Elements [k, n) (fewer than 16) of a row as f32, zero-padded to 16.
template <TensorType T>
inline void load_tail(const uint8_t* p, int64_t k, int64_t n, float out[16]) {
    for (int i = 0; i < 16; ++i) {
        if (k + i >= n) {
            out[i] = 0;
        } else if constexpr (T == TensorType::F32) {
            out[i] = reinterpret_cast<const float*>(p)[k + i];
        } else {
            uint16_t h;
            std::memcpy(&h, p + 2 * (k + i), 2);
            out[i] = fp16_to_fp32(h);
        }
    }
}

inline float reduce16(__m256 lo, __m256 hi) {
    const __m256 s8 = _mm256_add_ps(lo, hi);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

template <TensorType Ty, int R, int T>
void float_tile(const GemmArgs& a, int64_t r, int64_t t, bool pf) {
    // F16 weights take f32 activations (type_traits(F16).dot_type).
    constexpr TensorType At = TensorType::F32;
    __m256 lo[R][T], hi[R][T];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) lo[i][j] = hi[i][j] = _mm256_setzero_ps();
    const uint8_t* wp[R];
    const uint8_t* xp[T];
    gemm::float_tile_rows<R, T>(a, r, t, wp, xp);
    constexpr int64_t EB = Ty == TensorType::F32 ? 4 : 2;  // bytes per weight
    const int64_t row_bytes = a.n * EB;
    int64_t k = 0;
    for (; k + 16 <= a.n; k += 16) {
        if (pf && ((k * EB) & 63) == 0)
            gemm::prefetch_float_rows<R>(wp, a.w_stride, row_bytes, k * EB);  // gemm_isa.h
        __m256 x0[T], x1[T];
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) x0[j] = load8<At>(xp[j], k), x1[j] = load8<At>(xp[j], k + 8);
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) {
            const __m256 w0 = load8<Ty>(wp[i], k), w1 = load8<Ty>(wp[i], k + 8);
#pragma GCC unroll 4
            for (int j = 0; j < T; ++j) {
                lo[i][j] = _mm256_fmadd_ps(w0, x0[j], lo[i][j]);
                hi[i][j] = _mm256_fmadd_ps(w1, x1[j], hi[i][j]);
            }
        }
    }
    if (k < a.n) {
        // Lanes past the end keep their value (a blend, not an fma with zeros, so -0 stays).
        alignas(32) int32_t mask[16];
#pragma GCC unroll 4
        for (int i = 0; i < 16; ++i) mask[i] = k + i < a.n ? -1 : 0;
        const __m256 m0 = _mm256_load_ps((const float*)mask),
                     m1 = _mm256_load_ps((const float*)mask + 8);
        alignas(32) float buf[16];
        __m256 x0[T], x1[T];
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) {
            load_tail<At>(xp[j], k, a.n, buf);
            x0[j] = _mm256_load_ps(buf), x1[j] = _mm256_load_ps(buf + 8);
        }
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) {
            load_tail<Ty>(wp[i], k, a.n, buf);
            const __m256 w0 = _mm256_load_ps(buf), w1 = _mm256_load_ps(buf + 8);
#pragma GCC unroll 4
            for (int j = 0; j < T; ++j) {
                lo[i][j] = _mm256_blendv_ps(lo[i][j], _mm256_fmadd_ps(w0, x0[j], lo[i][j]), m0);
                hi[i][j] = _mm256_blendv_ps(hi[i][j], _mm256_fmadd_ps(w1, x1[j], hi[i][j]), m1);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + r + i] = reduce16(lo[i][j], hi[i][j]);
}

template <TensorType Ty>
void gemm_float(const GemmArgs& a, int64_t r0, int64_t r1, void*) {
    int64_t r = r0;
    // Decode: 4 rows a tile. Each accumulator is one FMA chain (the canonical order allows no
    // second one per lane), so 2 rows' 4 chains ran at a latency-bound FMA every cycle; 8
    // chains reach the memory speed (BM_MatmulFromMemory F16 5632 x 2048, 2 threads, AVX2:
    // 556 -> 394 us mean; BF16 691 -> 378). (AVX-512 keeps 4 rows: 2 were latency-bound
    // there too, 8 slower from memory.)
    if (a.n_tokens == 1)
        for (; r + 4 <= r1; r += 4) float_tile<Ty, 4, 1>(a, r, 0, true);
    // Batches: 3 rows x 2 tokens, 12 of the 16 registers accumulating (each row-token pair
    // takes two, lanes k mod 16). BM_Matmul F16 2048 x 2048, 512 tokens, 1 thread (AVX2 on the
    // Zen 5, 2026-12-05): 2 x 2 83-95 ms, 2 x 3 77-79, 3 x 2 66, 4 x 2 and 3 x 3 (spilling)
    // 69-77, 1 x 6 184, 6 x 1 123.
    for (; r + 3 <= r1; r += 3) {
        int64_t t = 0;
        for (; t + 2 <= a.n_tokens; t += 2) float_tile<Ty, 3, 2>(a, r, t, t == 0);
        for (; t < a.n_tokens; ++t) float_tile<Ty, 3, 1>(a, r, t, t == 0);
    }
    for (; r < r1; ++r)
        for (int64_t t = 0; t < a.n_tokens; ++t) float_tile<Ty, 1, 1>(a, r, t, false);
}

// ---- BF16 weights: the canonical BF16 order (gemm_common.h), pairs of elements per lane ----
//
// The 16 canonical lanes as two ymm halves: lanes 0-7 take the dwords (element pairs) 0-7 of
// a 32-element chunk, lanes 8-15 dwords 8-15. Each pair is two fmas, odd element first, with
// MXCSR's DAZ and FTZ set for the call: the arithmetic of AVX-512's vdpbf16ps.

inline __m256 bf16_odd(__m256i v) {
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xFFFF0000u)));
}
inline __m256 bf16_even(__m256i v) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

// One chunk of 32 elements (the 64 bytes at offset `at` of each row and token) into the
// accumulators; Masked: only the lanes set in lane_mask (all-ones floats) change. (Written as
// two bf16_half_chunk calls on [half][R][T] accumulators, the decode tiles ran slower in the
// model: qwen2.5-0.5b BF16 tg32 under LOKAL_ISA=avx2 55-57 -> 47-48 t/s, alternated.)
template <int R, int T, bool Masked>
[[gnu::always_inline]] inline void bf16_chunk(const uint8_t* const (&wp)[R],
                                              const uint8_t* const (&xp)[T], int64_t at,
                                              __m256 (&acc)[R][T][2], const __m256* lane_mask) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        __m256 xo[T], xe[T];
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) {
            const __m256i v = _mm256_loadu_si256((const __m256i*)(xp[j] + at + 32 * h));
            xo[j] = bf16_odd(v), xe[j] = bf16_even(v);
        }
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) {
            const __m256i v = _mm256_loadu_si256((const __m256i*)(wp[i] + at + 32 * h));
            const __m256 wo = bf16_odd(v), we = bf16_even(v);
#pragma GCC unroll 4
            for (int j = 0; j < T; ++j) {
                __m256 r = _mm256_fmadd_ps(we, xe[j], _mm256_fmadd_ps(wo, xo[j], acc[i][j][h]));
                if constexpr (Masked) r = _mm256_blendv_ps(acc[i][j][h], r, lane_mask[h]);
                acc[i][j][h] = r;
            }
        }
    }
}

// The last partial chunk of a BF16 tile (left < 32 elements from byte `at`): zero-padded
// copies of the rows' and tokens' elements, and the lanes it may change (those whose even
// element is before n; the others keep their value).
template <int R, int T>
struct Bf16Tail {
    alignas(32) uint8_t wbuf[R][64];
    alignas(32) uint8_t xbuf[T][64];
    const uint8_t* wq[R];
    const uint8_t* xq[T];
    __m256 lane_mask[2];

    Bf16Tail(const uint8_t* const (&wp)[R], const uint8_t* const (&xp)[T], int64_t at, int left) {
        for (int i = 0; i < R; ++i) {
            std::memset(wbuf[i], 0, 64);
            std::memcpy(wbuf[i], wp[i] + at, (size_t)left * 2);
            wq[i] = wbuf[i];
        }
        for (int j = 0; j < T; ++j) {
            std::memset(xbuf[j], 0, 64);
            std::memcpy(xbuf[j], xp[j] + at, (size_t)left * 2);
            xq[j] = xbuf[j];
        }
        alignas(32) int32_t mask[16];
        for (int l = 0; l < 16; ++l) mask[l] = 2 * l < left ? -1 : 0;
        lane_mask[0] = _mm256_load_ps((const float*)mask);
        lane_mask[1] = _mm256_load_ps((const float*)mask + 8);
    }
};

template <int R, int T>
void bf16_tile(const GemmArgs& a, int64_t r, int64_t t, bool pf) {
    __m256 acc[R][T][2];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
    const uint8_t* wp[R];
    const uint8_t* xp[T];
    gemm::float_tile_rows<R, T>(a, r, t, wp, xp);
    const int64_t row_bytes = a.n * 2;
    int64_t k = 0;
    for (; k + 32 <= a.n; k += 32) {
        if (pf) gemm::prefetch_float_rows<R>(wp, a.w_stride, row_bytes, k * 2);  // gemm_isa.h
        bf16_chunk<R, T, false>(wp, xp, 2 * k, acc, nullptr);
    }
    if (k < a.n) {
        const Bf16Tail<R, T> tail(wp, xp, 2 * k, (int)(a.n - k));
        bf16_chunk<R, T, true>(tail.wq, tail.xq, 0, acc, tail.lane_mask);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j)
            a.y[(t + j) * a.ldy + r + i] = reduce16(acc[i][j][0], acc[i][j][1]);
}

// Half h (lanes 8h..8h+7) of one chunk of 32 elements, at byte `at` of each row and token
// (the chunk's start plus 32h); Masked: only the lanes set in lane_mask change.
template <int R, int T, bool Masked>
[[gnu::always_inline]] inline void bf16_half_chunk(const uint8_t* const (&wp)[R],
                                                   const uint8_t* const (&xp)[T], int64_t at,
                                                   __m256 (&acc)[R][T], __m256 lane_mask) {
    __m256 xo[T], xe[T];
#pragma GCC unroll 4
    for (int j = 0; j < T; ++j) {
        const __m256i v = _mm256_loadu_si256((const __m256i*)(xp[j] + at));
        xo[j] = bf16_odd(v), xe[j] = bf16_even(v);
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
        const __m256i v = _mm256_loadu_si256((const __m256i*)(wp[i] + at));
        const __m256 wo = bf16_odd(v), we = bf16_even(v);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) {
            __m256 r = _mm256_fmadd_ps(we, xe[j], _mm256_fmadd_ps(wo, xo[j], acc[i][j]));
            if constexpr (Masked) r = _mm256_blendv_ps(acc[i][j], r, lane_mask);
            acc[i][j] = r;
        }
    }
}

// Batches, one half of the lanes at a time: lanes 0-7 of every row-token pair over the whole
// row, then lanes 8-15 (each lane's order is unchanged). Half the accumulators are live, so a
// tile can take 4 rows x 2 tokens (16 pairs' 8 accumulators) where both halves at once
// allowed 2 x 2.
template <int R, int T>
void bf16_tile_by_half(const GemmArgs& a, int64_t r, int64_t t, bool pf) {
    const uint8_t* wp[R];
    const uint8_t* xp[T];
    gemm::float_tile_rows<R, T>(a, r, t, wp, xp);
    const int64_t row_bytes = a.n * 2;
    const int left = (int)(a.n % 32);
    const int64_t full = a.n - left;
    std::optional<Bf16Tail<R, T>> tail;
    if (left) tail.emplace(wp, xp, 2 * full, left);
    alignas(32) float lanes[R][T][16];
    for (int h = 0; h < 2; ++h) {
        __m256 acc[R][T];
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
            for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
        for (int64_t k = 0; k < full; k += 32) {
            if (pf && h == 0) gemm::prefetch_float_rows<R>(wp, a.w_stride, row_bytes, k * 2);
            bf16_half_chunk<R, T, false>(wp, xp, 2 * k + 32 * h, acc, _mm256_setzero_ps());
        }
        if (tail) bf16_half_chunk<R, T, true>(tail->wq, tail->xq, 32 * h, acc, tail->lane_mask[h]);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
            for (int j = 0; j < T; ++j) _mm256_store_ps(lanes[i][j] + 8 * h, acc[i][j]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j)
            a.y[(t + j) * a.ldy + r + i] =
                reduce16(_mm256_load_ps(lanes[i][j]), _mm256_load_ps(lanes[i][j] + 8));
}

void gemm_bf16(const GemmArgs& a, int64_t r0, int64_t r1, void*) {
    const gemm::MxcsrDazFtz mode;
    int64_t r = r0;
    // Decode: 8 rows a tile (a row group). A lane's pairs are one fma chain, two dependent fmas
    // a chunk, so each row holds two chains in flight: 4 rows were latency-bound
    // (BM_MatmulFromMemory BF16 5632 x 2048, 1 thread, tile heights through a temporary switch:
    // 2 rows 1375-1463 us, 4 rows 834-983,
    // 6 rows 627-802, 8 rows 664-800; the k mod 16 order before, 4 rows, 758-760).
    if (a.n_tokens == 1) {
        for (; r + 8 <= r1; r += 8) bf16_tile<8, 1>(a, r, 0, true);
        for (; r + 4 <= r1; r += 4) bf16_tile<4, 1>(a, r, 0, true);
    }
    // Batches: 4 rows x 2 tokens, a half of the lanes at a time (bf16_tile_by_half).
    // BM_Matmul BF16 2048 x 2048, 1 thread, LOKAL_ISA=avx2 on the Zen 5, shapes through a
    // temporary switch, two rounds: 512
    // tokens 2 x 2 both halves 115 / 101 ms, 4 x 2 by half 101 / 84, 2 x 4 by half 156 / 143,
    // 4 x 3 by half 132 / 117; 8 tokens 1.80 / 1.86 -> 1.73 / 1.45 ms.
    if (a.n_tokens > 1)
        for (; r + 4 <= r1; r += 4) {
            int64_t t = 0;
            for (; t + 2 <= a.n_tokens; t += 2) bf16_tile_by_half<4, 2>(a, r, t, t == 0);
            for (; t < a.n_tokens; ++t) bf16_tile<4, 1>(a, r, t, t == 0);
        }
    for (; r + 2 <= r1; r += 2) {
        int64_t t = 0;
        for (; t + 2 <= a.n_tokens; t += 2) bf16_tile<2, 2>(a, r, t, t == 0);
        for (; t < a.n_tokens; ++t) bf16_tile<2, 1>(a, r, t, t == 0);
    }
    for (; r < r1; ++r)
        for (int64_t t = 0; t < a.n_tokens; ++t) bf16_tile<1, 1>(a, r, t, false);
}

// ---- activation conversion, bit-identical to quantize_row_dot ----

inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

inline int hsum8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// 32 int32 (values in int8 range) to 32 bytes in order.
inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd),
                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void quantize_q8_0(const float* x, void* dst, int64_t n) {
    BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; ++b, x += 32) {
        __m256 v[4], am = _mm256_setzero_ps();
        for (int i = 0; i < 4; ++i) {
            v[i] = _mm256_loadu_ps(x + 8 * i);
            am = _mm256_max_ps(am, _mm256_andnot_ps(sign, v[i]));
        }
        const float amax = hmax8(am);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = fp32_to_fp16(d);
        const __m256 s = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], s));
        _mm256_storeu_si256((__m256i*)y[b].qs, pack32(q[0], q[1], q[2], q[3]));
    }
}

void quantize_q8_k(const float* x, void* dst, int64_t n) {
    BlockQ8_K* y = static_cast<BlockQ8_K*>(dst);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        __m256 am = _mm256_setzero_ps();
        for (int i = 0; i < 32; ++i)
            am = _mm256_max_ps(am, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)));
        const float amax = hmax8(am);
        if (amax == 0.0f) {
            std::memset(&y[b], 0, sizeof(BlockQ8_K));
            continue;
        }
        float max = 0;
        const __m256 vam = _mm256_set1_ps(amax);
        for (int i = 0; i < 32; ++i) {
            const int m = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)), vam, _CMP_EQ_OQ));
            if (m) {
                max = x[8 * i + __builtin_ctz((unsigned)m)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 s = _mm256_set1_ps(iscale);
        const __m256i hi = _mm256_set1_epi32(127);
        for (int g = 0; g < 8; ++g) {
            __m256i q[4];
            for (int i = 0; i < 4; ++i)
                q[i] = _mm256_min_epi32(
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * i), s)), hi);
            _mm256_storeu_si256((__m256i*)(y[b].qs + 32 * g), pack32(q[0], q[1], q[2], q[3]));
            y[b].bsums[2 * g] = (int16_t)hsum8(_mm256_add_epi32(q[0], q[1]));
            y[b].bsums[2 * g + 1] = (int16_t)hsum8(_mm256_add_epi32(q[2], q[3]));
        }
        y[b].d = 1.0f / iscale;
    }
}

void quantize_f16(const float* x, void* dst, int64_t n) {
    uint8_t* d = static_cast<uint8_t*>(dst);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i*)(d + 2 * i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) quantize_row_dot(TensorType::F16, x + i, d + 2 * i, n - i);
}

void quantize_bf16(const float* x, void* dst, int64_t n) {
    uint8_t* d = static_cast<uint8_t*>(dst);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i u = _mm256_loadu_si256((const __m256i*)(x + i));
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i r = _mm256_srli_epi32(
            _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
        // NaN: |u| > inf as signed compare works since both sides are non-negative.
        const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                               _mm256_set1_epi32(0x7f800000));
        const __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
        const __m256i v = _mm256_blendv_epi8(r, qn, nan);
        _mm_storeu_si128((__m128i*)(d + 2 * i), _mm_packus_epi32(_mm256_castsi256_si128(v),
                                                                 _mm256_extracti128_si256(v, 1)));
    }
    if (i < n) quantize_row_dot(TensorType::BF16, x + i, d + 2 * i, n - i);
}

template <TensorType D>
void quantize_scalar(const float* x, void* dst, int64_t n) {
    quantize_row_dot(D, x, dst, n);
}

KernelTable make_table();

const KernelTable& table() {
    static const KernelTable t = make_table();
    return t;
}

template <TensorType T>
float vec_dot(int64_t n, const void* w, const void* a) {
    return gemm::vec_dot_via(table().gemm[(int)T], T, n, w, a);
}

KernelTable make_table() {
    KernelTable t;
    t.isa = "avx2";
    t.row_group = 8;
    t.reads_packed = true;
    t.gemm[(int)TensorType::F32] = &gemm_float<TensorType::F32>;
    t.gemm[(int)TensorType::F16] = &gemm_float<TensorType::F16>;
    t.gemm[(int)TensorType::BF16] = &gemm_bf16;
    for (TensorType ty : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                          TensorType::Q8_0, TensorType::IQ4_NL, TensorType::Q2_K, TensorType::Q3_K,
                          TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_XS})
        t.gemm[(int)ty] = gemm::avx2::quant_gemm(ty);
    // Q8_0 decode in pairs of far-apart row groups (gemm_avx2.cpp, decode_pair32): on a Zen 5
    // through LOKAL_ISA=avx2 (bench/ab tg, LOKAL_GEMM_PAIRS=0 as B, 2026-12-06) Q8_0 1.042 (5
    // of 6), Q4_0 0.987 (3 of 6) and 0.989 — level, so only Q8_0 pairs here (the AVX2 kernels
    // there are compute-bound; a Zen 3 is yet to be measured). LOKAL_GEMM_PAIRS=0: none.
    if (env_switch("LOKAL_GEMM_PAIRS")) t.pairs_decode[(int)TensorType::Q8_0] = true;
#define LOKAL_VD(T) t.vec_dot[(int)TensorType::T] = &vec_dot<TensorType::T>;
    LOKAL_VD(F32)
    LOKAL_VD(F16)
    LOKAL_VD(BF16)
    LOKAL_VD(Q4_0)
    LOKAL_VD(Q4_1)
    LOKAL_VD(Q5_0)
    LOKAL_VD(Q5_1)
    LOKAL_VD(Q8_0)
    LOKAL_VD(Q2_K)
    LOKAL_VD(Q3_K)
    LOKAL_VD(Q4_K)
    LOKAL_VD(Q5_K)
    LOKAL_VD(Q6_K)
    LOKAL_VD(IQ4_NL)
    LOKAL_VD(IQ4_XS)
#undef LOKAL_VD
    t.quantize[(int)TensorType::F32] = &quantize_scalar<TensorType::F32>;
    t.quantize[(int)TensorType::F16] = &quantize_f16;
    t.quantize[(int)TensorType::BF16] = &quantize_bf16;
    t.quantize[(int)TensorType::Q8_0] = &quantize_q8_0;
    t.quantize[(int)TensorType::Q8_1] = &quantize_scalar<TensorType::Q8_1>;
    t.quantize[(int)TensorType::Q8_K] = &quantize_q8_k;
    return t;
}

}  // namespace

const KernelTable& avx2_kernels() {
    return table();
}

}  // namespace lokal
