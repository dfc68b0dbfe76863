// AVX2 attention for a block of query tokens of one sequence at one K/V head: the reference's
// two-pass numerics (attention.cpp) on 8-wide vectors, through the shared kernel of
// attention_dims_major_impl.h (dims-major K, 8 keys per vector) for every cache type.
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

inline __m256 round_f16(__m256 v) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// dst[0, n) = src[0, n) rounded to f16 (n a multiple of 8).
inline void round_f16_copy(const float* src, float* dst, int n) {
    for (int i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, round_f16(_mm256_loadu_ps(src + i)));
}

struct Avx2 {
    using V = __m256;
    static constexpr int L = 8;
    static constexpr int kScoreAcc = 8;  // 16 registers: 8 accumulators, a key vector, a query
    static constexpr int kScoreHeads = 4;
    static constexpr int kScoreHeadsQ4 = 8;  // 8 heads x 1 run: a Q4_0 key vector is 6 ops
    static constexpr int kValueAcc = 8;
    static __m256i first_n(int n) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static V zero() { return _mm256_setzero_ps(); }
    static V set1(float x) { return _mm256_set1_ps(x); }
    static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    // The bitwise or of two vectors, and whether every bit of one is 0 (+0.0 in every lane).
    static V or_bits(V a, V b) { return _mm256_or_ps(a, b); }
    static bool zero_bits(V a) {
        const __m256i x = _mm256_castps_si256(a);
        return _mm256_testz_si256(x, x) != 0;
    }
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
    // BF16 keys: a run's dim pair as L dwords, split into the even and odd dims' floats (a
    // bf16 value is the top half of its float); V rows of L bf16 values as floats. No BF16
    // dot product in AVX2: two fmas per pair.
    using KP = __m256i;
    static constexpr bool kNativeBf16 = false;
    static KP load_kp(const uint8_t* p) { return _mm256_loadu_si256((const __m256i*)p); }
    static KP load_kp_n(const uint8_t* p, int n) {
        alignas(32) uint32_t t[8] = {};
        std::memcpy(t, p, (size_t)n * 4);
        return _mm256_load_si256((const __m256i*)t);
    }
    static V bf_even(KP k) { return _mm256_castsi256_ps(_mm256_slli_epi32(k, 16)); }
    static V bf_odd(KP k) {
        return _mm256_castsi256_ps(_mm256_and_si256(k, _mm256_set1_epi32((int)0xFFFF0000u)));
    }
    static V load_bf(const uint16_t* p) {
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
    }
    // Q8_0 keys (stored + 128): a run's 4 dims as one vector of L dwords, taken back to int8
    // and split into |k| and k, so vpmaddubsw(|k|, sign(q, k)) gives the products k q exactly
    // (|k q| <= 127 x 127: a pair fits int16); no offset to take off.
    using VI = __m256i;
    struct KQ {
        __m256i a, s;
    };
    static constexpr bool kKeysOffset = false;
    static VI izero() { return _mm256_setzero_si256(); }
    static KQ kq(__m256i u) {
        const __m256i k = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80));
        return {_mm256_abs_epi8(k), k};
    }
    static KQ load_kq(const uint8_t* p) { return kq(_mm256_loadu_si256((const __m256i*)p)); }
    static KQ load_kq_n(const uint8_t* p, int n) {
        return kq(_mm256_maskload_epi32((const int*)p, first_n(n)));
    }
    static VI dot_kq(VI acc, const KQ& k, int32_t q4) {
        const __m256i p = _mm256_maddubs_epi16(k.a, _mm256_sign_epi8(_mm256_set1_epi32(q4), k.s));
        return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    }
    static V to_float(VI x, int32_t offset) {
        return _mm256_cvtepi32_ps(_mm256_sub_epi32(x, _mm256_set1_epi32(offset)));
    }
    // Q4_0 levels (0-15) as floats: 8 nibbles, the low ones of 4 bytes then their high
    // ones, or one plane of 8 bytes.
    static V levels(__m128i nibbles) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(nibbles)); }
    static V load_q4_pair(const uint8_t* p) {
        int32_t w;
        std::memcpy(&w, p, 4);
        const __m128i x = _mm_cvtsi32_si128(w), m = _mm_set1_epi8(0x0F);
        return levels(
            _mm_unpacklo_epi32(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m)));
    }
    static V load_q4_plane(const uint8_t* p, int shift) {
        const __m128i x =
            _mm_srl_epi16(_mm_loadl_epi64((const __m128i*)p), _mm_cvtsi32_si128(shift));
        return levels(_mm_and_si128(x, _mm_set1_epi8(0x0F)));
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

void attend_block_avx2(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                       const AttentionQuery* queries, int nq, HeadSpan heads,
                       std::vector<float>& buf) {
    attend_dims_major_cache<Avx2>(s, k_cache, v_cache, queries, nq, heads, buf);
}

}  // namespace lokal
