// The AVX-512 tables: quantized GEMM from gemm_avx512.cpp, float-weight GEMM and activation
// conversion here. Requires F/BW/DQ/VL/VNNI (CpuFeatures::has_avx512_path); the "amx" table
// also AMX-INT8, which it uses for prompt-sized batches (identical results).
// GCC 12 flags the intrinsics' own _mm512_undefined_* self-initialization once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/cpu_features.h"
#include "ops/env_switch.h"
#include "ops/gemm_isa.h"
#include "ops/kernels.h"
#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"

namespace lokal {
namespace {

using gemm::GemmArgs;

// ---- F32 and F16 weights: lanes are k mod 16 (the canonical float arithmetic) ----

template <TensorType T>
inline __m512 load16(const uint8_t* p, int64_t k, __mmask16 m) {
    if constexpr (T == TensorType::F32) {
        return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(p) + k);
    } else {
        static_assert(T == TensorType::F16);
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + 2 * k));
    }
}

// The canonical reduction tree: l[i]+l[i+8], then +4, +2, +1.
inline float reduce16(__m512 v) {
    const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

template <TensorType Ty, int R, int T>
void float_tile(const GemmArgs& a, int64_t r, int64_t t, bool pf) {
    // F16 weights take f32 activations (type_traits(F16).dot_type).
    constexpr TensorType At = TensorType::F32;
    __m512 acc[R][T];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
    const uint8_t* wp[R];
    const uint8_t* xp[T];
    gemm::float_tile_rows<R, T>(a, r, t, wp, xp);
    constexpr int64_t EB = Ty == TensorType::F32 ? 4 : 2;  // bytes per weight
    const int64_t row_bytes = a.n * EB;
    int64_t k = 0;
    for (; k + 16 <= a.n; k += 16) {
        __m512 w[R], x[T];
        if (pf && ((k * EB) & 63) == 0)
            gemm::prefetch_float_rows<R>(wp, a.w_stride, row_bytes, k * EB);  // gemm_isa.h
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) w[i] = load16<Ty>(wp[i], k, 0xFFFF);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) x[j] = load16<At>(xp[j], k, 0xFFFF);
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
            for (int j = 0; j < T; ++j) acc[i][j] = _mm512_fmadd_ps(w[i], x[j], acc[i][j]);
    }
    if (k < a.n) {
        const __mmask16 m = (__mmask16)((1u << (a.n - k)) - 1);
        __m512 w[R], x[T];
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) w[i] = load16<Ty>(wp[i], k, m);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) x[j] = load16<At>(xp[j], k, m);
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
            for (int j = 0; j < T; ++j) acc[i][j] = _mm512_mask3_fmadd_ps(w[i], x[j], acc[i][j], m);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + r + i] = reduce16(acc[i][j]);
}

// Batches of float weights: rows [r0, r1) in 4 x 4 tiles, over the tokens in blocks whose
// activations (act_bytes each) stay in L2 (gemm_isa.h: kActBlockBytes); rows past the last 4
// one at a time. tile.template operator()<R, T>(r, t, prefetch) computes one tile.
template <class Tile>
[[gnu::always_inline]] inline void float_tiles_4x4(const GemmArgs& a, int64_t r0, int64_t r1,
                                                   int64_t act_bytes, Tile&& tile) {
    const int64_t tb = std::max<int64_t>(4, gemm::kActBlockBytes / (act_bytes * a.n) / 4 * 4);
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += tb) {
        const int64_t t1 = std::min(a.n_tokens, t0 + tb);
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
            int64_t t = t0;
            for (; t + 4 <= t1; t += 4) tile.template operator()<4, 4>(r, t, t == 0);
            for (; t < t1; ++t) tile.template operator()<4, 1>(r, t, t == 0);
        }
        for (; r < r1; ++r) {
            int64_t t = t0;
            for (; t + 4 <= t1; t += 4) tile.template operator()<1, 4>(r, t, false);
            for (; t < t1; ++t) tile.template operator()<1, 1>(r, t, false);
        }
    }
}

template <TensorType Ty>
void gemm_float(const GemmArgs& a, int64_t r0, int64_t r1, void*) {
    float_tiles_4x4(a, r0, r1, 4, [&]<int R, int T>(int64_t r, int64_t t, bool pf) {
        float_tile<Ty, R, T>(a, r, t, pf);
    });
}

// ---- BF16 weights: the canonical BF16 order (gemm_common.h), pairs of elements per lane ----
//
// Native: vdpbf16ps is the canonical step itself (32 multiply-adds per instruction, twice an
// fma's). Without AVX512_BF16 (Ice Lake, Cascade Lake) the same arithmetic from two fmas per
// lane, odd element first, with MXCSR's DAZ and FTZ set (the instruction reads denormals as zero
// and flushes denormal results).

template <bool Native>
[[gnu::always_inline]] inline __m512 bf16_pairs(__m512 acc, __m512i w, __m512i x, __mmask16 lanes) {
    if constexpr (Native) {
        // Not _mm512_mask_dpbf16_ps: GCC 12 moves its 16-bit mask with kmovb, so lanes 8-15
        // were never written (caught by Kernels.Bf16DotFollowsThePairOrder).
        const __m512 r = _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x);
        return lanes == 0xFFFF ? r : _mm512_mask_mov_ps(acc, lanes, r);
    } else {
        const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
        const __m512 wo = _mm512_castsi512_ps(_mm512_and_si512(w, hi)),
                     xo = _mm512_castsi512_ps(_mm512_and_si512(x, hi));
        const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)),
                     xe = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
        acc = _mm512_mask3_fmadd_ps(wo, xo, acc, lanes);
        return _mm512_mask3_fmadd_ps(we, xe, acc, lanes);
    }
}

template <bool Native, int R, int T>
void bf16_tile(const GemmArgs& a, int64_t r, int64_t t, bool pf) {
    __m512 acc[R][T];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) acc[i][j] = _mm512_setzero_ps();
    const uint8_t* wp[R];
    const uint8_t* xp[T];
    gemm::float_tile_rows<R, T>(a, r, t, wp, xp);
    const int64_t row_bytes = a.n * 2;
    int64_t k = 0;
    for (; k + 32 <= a.n; k += 32) {  // 32 elements, 64 bytes: a cache line of each row
        if (pf) gemm::prefetch_float_rows<R>(wp, a.w_stride, row_bytes, k * 2);  // gemm_isa.h
        __m512i x[T];
#pragma GCC unroll 8
        for (int j = 0; j < T; ++j) x[j] = _mm512_loadu_si512(xp[j] + 2 * k);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            const __m512i w = _mm512_loadu_si512(wp[i] + 2 * k);
#pragma GCC unroll 8
            for (int j = 0; j < T; ++j) acc[i][j] = bf16_pairs<Native>(acc[i][j], w, x[j], 0xFFFF);
        }
    }
    if (k < a.n) {
        // Elements past n read as zero; lanes whose even element is past n keep their value.
        const int left = (int)(a.n - k);
        const __mmask32 em = left >= 32 ? ~0u : (1u << left) - 1;
        const __mmask16 lanes = (__mmask16)((1u << ((left + 1) / 2)) - 1);
        __m512i w[R], x[T];
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i) w[i] = _mm512_maskz_loadu_epi16(em, wp[i] + 2 * k);
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) x[j] = _mm512_maskz_loadu_epi16(em, xp[j] + 2 * k);
#pragma GCC unroll 4
        for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
            for (int j = 0; j < T; ++j)
                acc[i][j] = bf16_pairs<Native>(acc[i][j], w[i], x[j], lanes);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < T; ++j) a.y[(t + j) * a.ldy + r + i] = reduce16(acc[i][j]);
}

template <bool Native>
void gemm_bf16(const GemmArgs& a, int64_t r0, int64_t r1, void*) {
    const gemm::MxcsrDazFtz mode;
    int64_t rs = r0;
    // Decode: 8 rows a tile (qwen2.5-0.5b shape BF16, tg32, tile heights through a temporary
    // switch, alternated: 4 rows 60.0 / 44.2 / 43.8 t/s, 8 rows 67.6 / 49.2 / 49.8, 2 rows
    // 54.1 / 43.4 / 42.8).
    if (a.n_tokens == 1)
        for (; rs + 8 <= r1; rs += 8) bf16_tile<Native, 8, 1>(a, rs, 0, true);
    // Batches: 4 x 4 tiles (6 x 4 measured level, 8 x 3 and 4 x 6 slower, through a temporary
    // switch) over token blocks.
    float_tiles_4x4(a, rs, r1, 2, [&]<int R, int T>(int64_t r, int64_t t, bool pf) {
        bf16_tile<Native, R, T>(a, r, t, pf);
    });
}

// ---- activation conversion, bit-identical to quantize_row_dot ----

inline float hmax(__m512 v) {
    return _mm512_reduce_max_ps(v);
}

void quantize_q8_0(const float* x, void* dst, int64_t n) {
    BlockQ8_0* y = static_cast<BlockQ8_0*>(dst);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; ++b, x += 32) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const float amax =
            hmax(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[b].d = fp32_to_fp16(d);
        const __m512 s = _mm512_set1_ps(id);
        // cvtps rounds to nearest even, as std::nearbyint in the default rounding mode.
        _mm_storeu_si128((__m128i*)y[b].qs,
                         _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, s))));
        _mm_storeu_si128((__m128i*)(y[b].qs + 16),
                         _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, s))));
    }
}

void quantize_q8_k(const float* x, void* dst, int64_t n) {
    BlockQ8_K* y = static_cast<BlockQ8_K*>(dst);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
        __m512 am = _mm512_setzero_ps();
        for (int i = 0; i < 16; ++i)
            am = _mm512_max_ps(am, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + 16 * i)));
        const float amax = hmax(am);
        if (amax == 0.0f) {
            std::memset(&y[b], 0, sizeof(BlockQ8_K));
            continue;
        }
        // The signed value of the first element with the largest magnitude.
        float max = 0;
        const __m512 vam = _mm512_set1_ps(amax);
        for (int i = 0; i < 16; ++i) {
            const __mmask16 m =
                _mm512_cmpeq_ps_mask(_mm512_andnot_ps(sign, _mm512_loadu_ps(x + 16 * i)), vam);
            if (m) {
                max = x[16 * i + __builtin_ctz(m)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m512 s = _mm512_set1_ps(iscale);
        const __m512i hi = _mm512_set1_epi32(127);
        for (int i = 0; i < 16; ++i) {
            const __m512i q = _mm512_min_epi32(
                _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * i), s)), hi);
            _mm_storeu_si128((__m128i*)(y[b].qs + 16 * i), _mm512_cvtepi32_epi8(q));
            y[b].bsums[i] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[b].d = 1.0f / iscale;
    }
}

void quantize_f16(const float* x, void* dst, int64_t n) {
    uint8_t* d = static_cast<uint8_t*>(dst);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i*)(d + 2 * i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) quantize_row_dot(TensorType::F16, x + i, d + 2 * i, n - i);
}

void quantize_bf16(const float* x, void* dst, int64_t n) {
    uint8_t* d = static_cast<uint8_t*>(dst);
    int64_t i = 0;
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    for (; i + 16 <= n; i += 16) {
        const __m512i u = _mm512_loadu_si512(x + i);
        // Round to nearest even; NaNs keep their payload top and get the quiet bit.
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        __m512i r = _mm512_srli_epi32(
            _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
        r = _mm512_mask_mov_epi32(r, nan,
                                  _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(64)));
        _mm256_storeu_si256((__m256i*)(d + 2 * i), _mm512_cvtepi32_epi16(r));
    }
    if (i < n) quantize_row_dot(TensorType::BF16, x + i, d + 2 * i, n - i);
}

template <TensorType D>
void quantize_scalar(const float* x, void* dst, int64_t n) {
    quantize_row_dot(D, x, dst, n);
}

template <TensorType T>
float vec_dot(int64_t n, const void* w, const void* a);

KernelTable make_table(bool amx, bool native_bf16);

// LOKAL_BF16_DOT=0: the fma path even where the instruction exists (for A/B; same results).
bool has_bf16_dot() {
    static const bool on = cpu_features().avx512bf16 && env_switch("LOKAL_BF16_DOT");
    return on;
}

const KernelTable& table(bool amx = false) {
    static const KernelTable t = make_table(false, has_bf16_dot());
    static const KernelTable ta = make_table(true, has_bf16_dot());
    return amx ? ta : t;
}

// The table a CPU without AVX512_BF16 gets (tests run it where the instruction exists too).
const KernelTable& table_without_bf16_dot() {
    static const KernelTable t = make_table(false, false);
    return t;
}

template <TensorType T>
float vec_dot(int64_t n, const void* w, const void* a) {
    return gemm::vec_dot_via(table().gemm[(int)T], T, n, w, a);
}

// BF16 vec_dot through the table's own BF16 GEMM (native or fma; vec_dot above reads the
// process's table).
template <bool Native>
float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    return gemm::vec_dot_via(&gemm_bf16<Native>, TensorType::BF16, n, w, a);
}

KernelTable make_table(bool amx, bool native_bf16) {
    KernelTable t;
    t.isa = amx ? "amx" : "avx512";
    t.row_group = 16;
    t.reads_packed = true;
    t.pack_interleave = 2;  // the two 8-row groups of a 16-row tile in one stream
    t.gemm[(int)TensorType::F32] = &gemm_float<TensorType::F32>;
    t.gemm[(int)TensorType::F16] = &gemm_float<TensorType::F16>;
    t.gemm[(int)TensorType::BF16] = native_bf16 ? &gemm_bf16<true> : &gemm_bf16<false>;
    t.vec_dot[(int)TensorType::BF16] = native_bf16 ? &vec_dot_bf16<true> : &vec_dot_bf16<false>;
    t.bf16_dot = native_bf16;
    for (TensorType ty : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,
                          TensorType::Q8_0, TensorType::IQ4_NL, TensorType::Q2_K, TensorType::Q3_K,
                          TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_XS})
        t.gemm[(int)ty] = gemm::avx512::quant_gemm(ty, amx);
    // Q8_0 decode in pairs of far-apart row groups (gemm_avx512.cpp, decode_pair32): bench/ab
    // tg against LOKAL_GEMM_PAIRS=0 (Zen 5, 2026-12-06) Q8_0 1.155 and 1.104 (all pairs ahead);
    // the other 32-element types were slower in the VM's slow-memory minutes (Q4_0 0.929,
    // though 1.077 in fast ones; Q4_1 0.939, Q5_0 0.842, IQ4_NL 0.969): not paired.
    // LOKAL_GEMM_PAIRS=0: none.
    if (env_switch("LOKAL_GEMM_PAIRS")) t.pairs_decode[(int)TensorType::Q8_0] = true;
#define LOKAL_VD(T) t.vec_dot[(int)TensorType::T] = &vec_dot<TensorType::T>;
    LOKAL_VD(F32)
    LOKAL_VD(F16)
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

const KernelTable& avx512_kernels() {
    return table(false);
}
const KernelTable& amx_kernels() {
    return table(true);
}
const KernelTable& avx512_kernels_without_bf16_dot() {
    return table_without_bf16_dot();
}

}  // namespace lokal
