// AVX-512 attention for a block of query tokens of one sequence at one K/V head (every cache type):
// the shared kernel of attention_dims_major_impl.h on 16-lane vectors. Dims-major K makes each dim
// of 16 consecutive keys one vector, so scoring needs no transposing lane reductions; those took
// ~29% of the row-major kernel's samples (docs/PERFORMANCE.md). GCC 12 flags the intrinsics' own
// _mm512_undefined_* self-initialization once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/attention_dims_major_impl.h"
#include "ops/attention_isa.h"
#include "ops/cpu_features.h"
#include "ops/env_switch.h"

namespace lokal {
namespace {

// e^x for x <= 0 (scores minus their max), as exp256 in simd_math_avx2.h without its upper
// clamp; the lower one keeps -inf from becoming NaN.
inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
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

inline __m512 round_f16(__m512 v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

struct Avx512 {
    using V = __m512;
    static constexpr int L = 16;
    static constexpr int kScoreAcc = 16;  // 2 runs x 8 heads (one run: 1.2x slower scoring)
    static constexpr int kScoreHeads = 8;
    static constexpr int kScoreHeadsQ4 = 8;
    static constexpr int kValueAcc = 16;
    static __mmask16 first_n(int n) {
        return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
    }
    static V zero() { return _mm512_setzero_ps(); }
    static V set1(float x) { return _mm512_set1_ps(x); }
    static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
    static V load(const float* p) { return _mm512_loadu_ps(p); }
    static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
    // The bitwise or of two vectors, and whether every bit of one is 0 (+0.0 in every lane).
    static V or_bits(V a, V b) {
        return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
    }
    static bool zero_bits(V a) {
        const __m512i x = _mm512_castps_si512(a);
        return _mm512_test_epi32_mask(x, x) == 0;
    }
    static V load_h(const uint16_t* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
    }
    static V load_h_n(const uint16_t* p, int n) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_n(n), p));
    }
    static V load_b(const int8_t* p) {
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
    }
    // Q4_0 levels (0-15) as floats: 16 nibbles, the low ones of 8 bytes then their high
    // ones, or one plane of 16 bytes.
    static V levels(__m128i nibbles) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(nibbles)); }
    static V load_q4_pair(const uint8_t* p) {
        const __m128i x = _mm_loadl_epi64((const __m128i*)p), m = _mm_set1_epi8(0x0F);
        return levels(
            _mm_unpacklo_epi64(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m)));
    }
    static V load_q4_plane(const uint8_t* p, int shift) {
        const __m128i x =
            _mm_srl_epi16(_mm_loadu_si128((const __m128i*)p), _mm_cvtsi32_si128(shift));
        return levels(_mm_and_si128(x, _mm_set1_epi8(0x0F)));
    }
    // Q8_0 keys (stored + 128): a run's 4 dims as one vector of L dwords, and their dot
    // products with 4 query bytes; vpdpbusd adds sum((k + 128) q) = sum(k q) + 128 sum(q),
    // which to_float takes back off (kKeysOffset) before the exact sum becomes a float.
    using VI = __m512i;
    struct KQ {
        __m512i u;
    };
    static constexpr bool kKeysOffset = true;
    static VI izero() { return _mm512_setzero_si512(); }
    static KQ load_kq(const uint8_t* p) { return {_mm512_loadu_si512(p)}; }
    static KQ load_kq_n(const uint8_t* p, int n) {
        return {_mm512_maskz_loadu_epi32(first_n(n), p)};
    }
    static VI dot_kq(VI acc, const KQ& k, int32_t q4) {
        return _mm512_dpbusd_epi32(acc, k.u, _mm512_set1_epi32(q4));
    }
    static V to_float(VI x, int32_t offset) {
        return _mm512_cvtepi32_ps(_mm512_sub_epi32(x, _mm512_set1_epi32(offset)));
    }
    static float half(uint16_t h) { return _cvtsh_ss(h); }
    // BF16 keys: a run's dim pair as L dwords, split into the even and odd dims' floats (a
    // bf16 value is the top half of its float); V rows of L bf16 values as floats.
    using KP = __m512i;
    static constexpr bool kNativeBf16 = false;
    static KP load_kp(const uint8_t* p) { return _mm512_loadu_si512(p); }
    static KP load_kp_n(const uint8_t* p, int n) { return _mm512_maskz_loadu_epi32(first_n(n), p); }
    static V bf_even(KP k) { return _mm512_castsi512_ps(_mm512_slli_epi32(k, 16)); }
    static V bf_odd(KP k) {
        return _mm512_castsi512_ps(_mm512_and_si512(k, _mm512_set1_epi32((int)0xFFFF0000u)));
    }
    static V load_bf(const uint16_t* p) {
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
    }
    static void store_n(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first_n(n), v); }
    // f16-rounded copies of n floats (n a multiple of 16).
    static void round_f16_n(const float* src, float* dst, int n) {
        for (int i = 0; i < n; i += 16)
            _mm512_storeu_ps(dst + i, round_f16(_mm512_loadu_ps(src + i)));
    }
    // Softmax steps on one tile of 16 scores, `live` of them real (the rest get 0).
    struct Sum {
        __m512 v = _mm512_setzero_ps();  // lane-wise partial sums
    };
    static V max_n(V m, V x, int live) { return _mm512_mask_max_ps(m, first_n(live), m, x); }
    static float reduce_max(V m) { return _mm512_reduce_max_ps(m); }
    // x = e^(x - vmax), summed lane-wise in float: 256 terms a lane at 4,096 keys, each
    // <= 1, so the sum's rounding (~1e-5 at worst) stays far below the f16 rounding of the
    // probabilities it normalizes. (Double sums took 5 more operations a tile and, with 8
    // heads' sums live, spilled: the softmax was ~17% of decode attention.)
    static void exp_tile(float* x, V vmax, int live, Sum& sum) {
        const __m512 e =
            _mm512_maskz_mov_ps(first_n(live), exp512(_mm512_sub_ps(_mm512_loadu_ps(x), vmax)));
        _mm512_storeu_ps(x, e);
        sum.v = _mm512_add_ps(sum.v, e);
    }
    static double reduce_sum(const Sum& s) { return _mm512_reduce_add_ps(s.v); }
    // x *= inv, rounded to f16 (the reference's probabilities).
    static void scale_round_tile(float* x, V inv) {
        _mm512_storeu_ps(x, round_f16(_mm512_mul_ps(_mm512_loadu_ps(x), inv)));
    }
};

// Avx512 with AVX512_BF16: BF16 keys scored with vdpbf16ps, both dims of a pair in one
// instruction (the odd dim's product added first, then the even one's).
struct Avx512Bf16 : Avx512 {
    static constexpr bool kNativeBf16 = true;
    static V dot_bf16(V acc, KP k, uint32_t q_pair) {
        return _mm512_dpbf16_ps(acc, (__m512bh)k, (__m512bh)_mm512_set1_epi32((int)q_pair));
    }
};

// LOKAL_BF16_DOT=0: the fma pairs even where the instruction exists (for A/B).
bool native_bf16_attention() {
    static const bool on = cpu_features().avx512bf16 && env_switch("LOKAL_BF16_DOT");
    return on;
}

}  // namespace

void attend_block_avx512(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                         const AttentionQuery* queries, int nq, HeadSpan heads,
                         std::vector<float>& buf) {
    if (s.kv_type == KvType::BF16 && native_bf16_attention())
        return attend_dims_major_dispatch<Avx512Bf16, KvType::BF16>(s, k_cache, v_cache, queries,
                                                                    nq, heads, buf);
    attend_dims_major_cache<Avx512>(s, k_cache, v_cache, queries, nq, heads, buf);
}

}  // namespace lokal
