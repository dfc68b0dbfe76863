// AVX2 GEMM for the quantized weight types: the AVX-512 design (gemm_avx512.cpp) on 8-row
// groups, with vpmaddubsw instead of vpdpbusd.
//
// vpmaddubsw adds two u8*s8 products into a saturating int16, so sums stay exact only while
// they fit: per weight type, GD dwords are summed in int16 before widening (8 for 4-bit
// values, 4 for 5-bit, 2 for 6-bit), and byte-wide values (Q8_0, IQ4) are split into two
// nibble planes, u = 16 * hi + lo. Integer block sums are exact, so results are bit-identical
// to the other paths.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/env_switch.h"
#include "ops/gemm_isa.h"
#include "quant/blocks.h"

namespace lokal::gemm::avx2 {
namespace {

// The most tokens one streaming tile takes: up to 4 it beats the panel for every type
// measured (BM_Matmul/rows:32000/cols:2048/thr:2/pack:1: Q4_0, Q4_K, Q8_0); one tile of 8
// was slower for Q8_0 and Q4_K (more accumulators than registers), so 5-8 tokens stream
// as two tiles of at most 4 over each unpacked block.
constexpr int kStreamTokens = 4;
constexpr int kStreamMany = 16;
// LOKAL_GEMM_STREAM16=0: 9-16 tokens on the panel path (for A/B measurements).
bool stream_many() {
    static const bool on = env_switch("LOKAL_GEMM_STREAM16");
    return on;
}

// LOKAL_GEMM_STREAM=0 turns the few-token streaming path off (for A/B measurements).
bool stream_few_tokens() {
    static const bool on = env_switch("LOKAL_GEMM_STREAM");
    return on;
}

// LOKAL_GEMM_STREAM8=0: 5-8 tokens on the panel path (for A/B measurements).
bool stream_two_tiles() {
    static const bool on = env_switch("LOKAL_GEMM_STREAM8");
    return on;
}

constexpr int RG = 8;

// The 8 rows of a group at a fixed stride (a partial group is padded first, see gemm_quant).
struct Rows {
    const uint8_t* base;
    size_t s;
    __m256i idx;  // byte offset of each row, for gathers

    Rows(const uint8_t* b, size_t stride) : base(b), s(stride) {
        idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                 _mm256_set1_epi32((int32_t)stride));
    }
    __m256i gather(size_t off) const {
        return _mm256_i32gather_epi32((const int*)(base + off), idx, 1);
    }
};

inline __m128i ld128(const uint8_t* p) {
    return _mm_loadu_si128((const __m128i*)p);
}
inline int32_t ld32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
inline float ldf(const uint32_t* p) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
}

// T[k] = dword k of the 16 bytes at `off` of each of the 8 rows (lane i = row i).
[[gnu::always_inline]] inline void load_t4(const Rows& R, size_t off, __m256i T[4]) {
    // Rows j and j+4 in the two 128-bit lanes of A[j].
    const size_t s = R.s;
    const uint8_t* q0 = R.base + off;
    const uint8_t* q4 = q0 + 4 * s;
    __m256i A[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j)
        A[j] = _mm256_inserti128_si256(_mm256_castsi128_si256(ld128(q0 + j * s)), ld128(q4 + j * s),
                                       1);
    const __m256i t0 = _mm256_unpacklo_epi32(A[0], A[1]), t1 = _mm256_unpackhi_epi32(A[0], A[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(A[2], A[3]), t3 = _mm256_unpackhi_epi32(A[2], A[3]);
    T[0] = _mm256_unpacklo_epi64(t0, t2);
    T[1] = _mm256_unpackhi_epi64(t0, t2);
    T[2] = _mm256_unpacklo_epi64(t1, t3);
    T[3] = _mm256_unpackhi_epi64(t1, t3);
}

// Where a type's unpack reads 8 rows of block b: byte x of the block (a constant after
// inlining). t4: dwords x..x+3 (16 bytes) as 4 vectors, lane i = row i; g: the dword at x;
// h: the fp16 at x as floats.
//
// Strided: row-major rows, transposed on the fly (shuffles and gathers).
template <int BB>
struct Strided {
    Rows R;
    [[gnu::always_inline]] void t4(int64_t b, int x, __m256i T[4]) const {
        load_t4(R, (size_t)b * BB + x, T);
    }
    [[gnu::always_inline]] __m256i g(int64_t b, int x) const {
        return R.gather((size_t)b * BB + x);
    }
    __m256 h(int64_t b, int x) const;
    // Decode reads 8 row streams: when block b starts a new cache line, fetch that line of
    // each row 1 KiB ahead (a prefetch past the end is harmless). The same for batches.
    [[gnu::always_inline]] void prefetch_burst(int64_t b, size_t /*ahead*/) const { prefetch(b); }
    [[gnu::always_inline]] void prefetch(int64_t b) const {
        const size_t off = (size_t)b * BB;
        if (off % 64 >= BB) return;
        for (int i = 0; i < 8; ++i)
            _mm_prefetch((const char*)(R.base + i * R.s + off + 1024), _MM_HINT_T0);
    }
};
// Packed: the group is row-interleaved at load (gemm_common.h), so every access is a load.
template <TensorType TT>
struct Packed {
    static constexpr PackLayout L = pack_layout(TT);
    const uint8_t* base;  // the group's first byte
    [[gnu::always_inline]] const uint8_t* at(int64_t b, int x) const {
        return base + (size_t)b * (kPackRows * L.block_bytes) + kPackPos<TT>[(size_t)x];
    }
    [[gnu::always_inline]] void t4(int64_t b, int x, __m256i T[4]) const {
        const uint8_t* p = at(b, x);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) T[k] = _mm256_loadu_si256((const __m256i*)(p + 32 * k));
    }
    [[gnu::always_inline]] __m256i g(int64_t b, int x) const {
        return _mm256_loadu_si256((const __m256i*)at(b, x));
    }
    [[gnu::always_inline]] __m256 h(int64_t b, int x) const {
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)at(b, x)));
    }
    // Batches stream the group front to back: fetch block b's run some blocks early.
    [[gnu::always_inline]] void prefetch(int64_t b) const {
        constexpr int kRun = kPackRows * L.block_bytes, kAhead = 2048;
        const char* p = (const char*)base + (size_t)b * kRun + kAhead;
#pragma GCC unroll 32
        for (int o = 0; o < kRun; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
    }
    // Decode (gemm_isa.h; `ahead` from decode_ahead).
    [[gnu::always_inline]] void prefetch_burst(int64_t b, size_t ahead) const {
        prefetch_decode_burst<kPackRows * L.block_bytes, false>(base, b, ahead);
    }
};

inline __m256i c8(int v) {
    return _mm256_set1_epi8((char)v);
}
inline __m256i lo4(__m256i v) {
    return _mm256_and_si256(v, c8(0x0F));
}
inline __m256i hi4(__m256i v) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 4), c8(0x0F));
}
inline __m256i or_and(__m256i a, __m256i b, __m256i c) {
    return _mm256_or_si256(a, _mm256_and_si256(b, c));
}
inline __m256i shl(__m256i v, int s) {
    return s >= 0 ? _mm256_slli_epi32(v, s) : _mm256_srli_epi32(v, -s);
}
inline __m256 half_lo(__m256i g) {
    const __m256i x = _mm256_and_si256(g, _mm256_set1_epi32(0xFFFF));
    return _mm256_cvtph_ps(
        _mm_packus_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1)));
}
inline __m256 half_hi(__m256i g) {
    return half_lo(_mm256_srli_epi32(g, 16));
}
// A 2-byte field at the end of a block is read with the two bytes before it (no read past
// the last row's end).
template <int BB>
[[gnu::always_inline]] inline __m256 Strided<BB>::h(int64_t b, int x) const {
    return x + 4 <= BB ? half_lo(g(b, x)) : half_hi(g(b, x - 2));
}
inline __m256i bits(__m256i v, int shift, int mask) {
    return _mm256_and_si256(_mm256_srli_epi32(v, shift), _mm256_set1_epi32(mask));
}
inline __m256i q5_high(__m256i W, __m256i qh, int k) {
    const __m256i ctrl = _mm256_add_epi8(_mm256_setr_epi32(0, 0x04040404, 0x08080808, 0x0C0C0C0C, 0,
                                                           0x04040404, 0x08080808, 0x0C0C0C0C),
                                         c8(k / 2));
    const __m256i sel = _mm256_set1_epi32(k % 2 ? (int)0x80402010 : 0x08040201);
    const __m256i hit =
        _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(qh, ctrl), sel), sel);
    return _mm256_or_si256(W, _mm256_and_si256(hit, c8(0x10)));
}
inline __m256i iq4_lut() {
    const __m128i l =
        _mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153, (char)166,
                      (char)181, (char)197, (char)217, (char)241);
    return _mm256_broadcastsi128_si256(l);
}

struct alignas(32) P32 {
    __m256i w[16];  // [0,8): values (or low nibble plane); [8,16): high nibble plane (split)
    __m256 d, m;
};
struct alignas(32) PK {
    __m256i w[128];
    __m256i sc[16];
    __m256i mn[8];
    __m256 d, dm;
};

// Byte values into the split planes when the type needs them.
template <bool Split>
inline void put(__m256i* w, int k, int nw, __m256i v) {
    if (Split) {
        w[k] = lo4(v);
        w[nw + k] = hi4(v);
    } else {
        w[k] = v;
    }
}

struct TQ4_0 {
    static constexpr int QK = 32, BB = 18, AB = 34, AO = 2, GD = 8;
    static constexpr bool kMin = false, Split = false;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m256i T[4];
        R.t4(b, 2, T);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) P.w[k] = lo4(T[k]), P.w[4 + k] = hi4(T[k]);
        P.d = R.h(b, 0);
    }
};
struct TIQ4_NL {
    static constexpr int QK = 32, BB = 18, AB = 34, AO = 2, GD = 8;
    static constexpr bool kMin = false, Split = true;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m256i T[4];
        R.t4(b, 2, T);
        const __m256i lut = iq4_lut();
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            put<true>(P.w, k, 8, _mm256_shuffle_epi8(lut, lo4(T[k])));
            put<true>(P.w, 4 + k, 8, _mm256_shuffle_epi8(lut, hi4(T[k])));
        }
        P.d = R.h(b, 0);
    }
};
struct TQ4_1 {
    static constexpr int QK = 32, BB = 20, AB = 36, AO = 4, GD = 8;
    static constexpr bool kMin = true, Split = false;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m256i T[4];
        R.t4(b, 4, T);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) P.w[k] = lo4(T[k]), P.w[4 + k] = hi4(T[k]);
        const __m256i g = R.g(b, 0);
        P.d = half_lo(g);
        P.m = half_hi(g);
    }
};
template <bool One>
struct TQ5 {
    static constexpr int QK = 32, BB = One ? 24 : 22, AB = One ? 36 : 34, AO = One ? 4 : 2, GD = 4;
    static constexpr int QH = One ? 4 : 2, QS = One ? 8 : 6;
    static constexpr bool kMin = One, Split = false;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m256i T[4];
        R.t4(b, QS, T);
        const __m256i qh = R.g(b, QH);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            P.w[k] = q5_high(lo4(T[k]), qh, k);
            P.w[4 + k] = q5_high(hi4(T[k]), qh, 4 + k);
        }
        if (One) {
            const __m256i g = R.g(b, 0);
            P.d = half_lo(g);
            P.m = half_hi(g);
        } else {
            P.d = R.h(b, 0);
        }
    }
};
struct TQ8_0 {
    static constexpr int QK = 32, BB = 34, AB = 34, AO = 2, GD = 8;
    static constexpr bool kMin = false, Split = true;
    static constexpr bool kHardwarePrefetch = true;  // decode_ahead
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m256i T[4], U[4];
        R.t4(b, 2, T);
        R.t4(b, 18, U);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            put<true>(P.w, k, 8, _mm256_xor_si256(T[k], c8(0x80)));
            put<true>(P.w, 4 + k, 8, _mm256_xor_si256(U[k], c8(0x80)));
        }
        P.d = R.h(b, 0);
    }
};

// Split-plane types hand put() the two nibble planes as dwords k and 64 + k.
template <class Put>
[[gnu::always_inline]] inline void put_split(Put& put, int k, __m256i v) {
    put(k, lo4(v));
    put(64 + k, hi4(v));
}

struct TQ2_K {
    static constexpr int BB = 84, NSUB = 16, NM = 8, GD = 4;
    static constexpr bool CORR = false, Split = false;
    // Calls put(k, v) for every dword vector k of the block; gemv_k needs each chunk's first
    // and last dword to come first and last (the sums themselves are exact in any order).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
#pragma GCC unroll 16
        for (int h = 0; h < 2; ++h) {
            __m256i Qa[4], Qb[4];
            R.t4(b, 16 + 32 * h, Qa);
            R.t4(b, 32 + 32 * h, Qb);
#pragma GCC unroll 16
            for (int s = 0; s < 4; ++s)
#pragma GCC unroll 16
                for (int k = 0; k < 4; ++k) {
                    put(32 * h + 8 * s + k,
                        _mm256_and_si256(_mm256_srli_epi32(Qa[k], 2 * s), c8(3)));
                    put(32 * h + 8 * s + 4 + k,
                        _mm256_and_si256(_mm256_srli_epi32(Qb[k], 2 * s), c8(3)));
                }
        }
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        __m256i D[4], m[16];
#pragma GCC unroll 16
        for (int i = 0; i < 4; ++i) D[i] = R.g(b, 4 * i);
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) {
            P.sc[j] = bits(D[j / 4], 8 * (j % 4), 0xF);
            m[j] = bits(D[j / 4], 8 * (j % 4) + 4, 0xF);
        }
#pragma GCC unroll 16
        for (int p = 0; p < 8; ++p)
            P.mn[p] = _mm256_or_si256(m[2 * p], _mm256_slli_epi32(m[2 * p + 1], 16));
        const __m256i g = R.g(b, 80);
        P.d = half_lo(g);
        P.dm = half_hi(g);
    }
};
struct TQ3_K {
    static constexpr int BB = 110, NSUB = 16, NM = 0, GD = 4;
    static constexpr bool CORR = true, Split = false;
    // Calls put(k, v) for every dword vector k of the block; gemv_k needs each chunk's first
    // and last dword to come first and last (the sums themselves are exact in any order).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
        __m256i Ma[4], Mb[4];
        R.t4(b, 0, Ma);
        R.t4(b, 16, Mb);
#pragma GCC unroll 16
        for (int h = 0; h < 2; ++h) {
            __m256i Qa[4], Qb[4];
            R.t4(b, 32 + 32 * h, Qa);
            R.t4(b, 48 + 32 * h, Qb);
#pragma GCC unroll 16
            for (int s = 0; s < 4; ++s) {
                const int sh = 2 - (4 * h + s);
#pragma GCC unroll 16
                for (int k = 0; k < 4; ++k) {
                    const __m256i la = _mm256_and_si256(_mm256_srli_epi32(Qa[k], 2 * s), c8(3));
                    const __m256i lb = _mm256_and_si256(_mm256_srli_epi32(Qb[k], 2 * s), c8(3));
                    put(32 * h + 8 * s + k, or_and(la, shl(Ma[k], sh), c8(4)));
                    put(32 * h + 8 * s + 4 + k, or_and(lb, shl(Mb[k], sh), c8(4)));
                }
            }
        }
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        __m256i D[3];
#pragma GCC unroll 16
        for (int i = 0; i < 3; ++i) D[i] = R.g(b, 96 + 4 * i);
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) {
            const int jj = j % 8;
            const __m256i low = bits(D[jj / 4], 8 * (jj % 4) + 4 * (j / 8), 0xF);
            const __m256i high = bits(D[2], 8 * (j % 4) + 2 * (j / 4), 3);
            P.sc[j] = _mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32(high, 4)),
                                       _mm256_set1_epi32(32));
        }
        P.d = R.h(b, 108);
    }
};
template <bool Five>
struct TQ45_K {
    static constexpr int BB = Five ? 176 : 144, NSUB = 8, NM = 4, GD = Five ? 4 : 8;
    static constexpr int QS = Five ? 48 : 16;
    static constexpr bool CORR = false, Split = false;
    // Calls put(k, v) for every dword vector k of the block; gemv_k needs each chunk's first
    // and last dword to come first and last (the sums themselves are exact in any order).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
        __m256i Ha[4], Hb[4];
        if (Five) {
            R.t4(b, 16, Ha);
            R.t4(b, 32, Hb);
        }
#pragma GCC unroll 16
        for (int c = 0; c < 4; ++c) {
            __m256i Ta[4], Tb[4];
            R.t4(b, QS + 32 * c, Ta);
            R.t4(b, QS + 32 * c + 16, Tb);
#pragma GCC unroll 16
            for (int k = 0; k < 4; ++k) {
                __m256i w0 = lo4(Ta[k]), w1 = lo4(Tb[k]), w2 = hi4(Ta[k]), w3 = hi4(Tb[k]);
                if (Five) {
                    w0 = or_and(w0, shl(Ha[k], 4 - 2 * c), c8(0x10));
                    w1 = or_and(w1, shl(Hb[k], 4 - 2 * c), c8(0x10));
                    w2 = or_and(w2, shl(Ha[k], 3 - 2 * c), c8(0x10));
                    w3 = or_and(w3, shl(Hb[k], 3 - 2 * c), c8(0x10));
                }
                put(16 * c + k, w0);
                put(16 * c + 4 + k, w1);
                put(16 * c + 8 + k, w2);
                put(16 * c + 12 + k, w3);
            }
        }
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        const __m256i D0 = R.g(b, 4), D1 = R.g(b, 8), D2 = R.g(b, 12);
        __m256i m[8];
#pragma GCC unroll 16
        for (int j = 0; j < 4; ++j) {
            P.sc[j] = bits(D0, 8 * j, 63);
            m[j] = bits(D1, 8 * j, 63);
            P.sc[4 + j] =
                _mm256_or_si256(bits(D2, 8 * j, 0xF), _mm256_slli_epi32(bits(D0, 8 * j + 6, 3), 4));
            m[4 + j] = _mm256_or_si256(bits(D2, 8 * j + 4, 0xF),
                                       _mm256_slli_epi32(bits(D1, 8 * j + 6, 3), 4));
        }
#pragma GCC unroll 16
        for (int p = 0; p < 4; ++p)
            P.mn[p] = _mm256_or_si256(m[2 * p], _mm256_slli_epi32(m[2 * p + 1], 16));
        const __m256i g = R.g(b, 0);
        P.d = half_lo(g);
        P.dm = half_hi(g);
    }
};
struct TQ6_K {
    static constexpr int BB = 210, NSUB = 16, NM = 0, GD = 2;
    static constexpr bool CORR = true, Split = false;
    // Calls put(k, v) for every dword vector k of the block; gemv_k needs each chunk's first
    // and last dword to come first and last (the sums themselves are exact in any order).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
        // 16 bytes of ql hold sub-blocks s (low nibbles) and s + 2 (high), so both are
        // emitted from one load; 8 vectors live at a time.
#pragma GCC unroll 16
        for (int h = 0; h < 2; ++h)
#pragma GCC unroll 16
            for (int s = 0; s < 2; ++s)
#pragma GCC unroll 16
                for (int part = 0; part < 2; ++part) {
                    __m256i L[4], H[4];
                    R.t4(b, 64 * h + 16 * (2 * s + part), L);
                    R.t4(b, 128 + 32 * h + 16 * part, H);
#pragma GCC unroll 16
                    for (int k = 0; k < 4; ++k) {
                        put(32 * h + 8 * s + 4 * part + k,
                            or_and(lo4(L[k]), shl(H[k], 4 - 2 * s), c8(0x30)));
                        put(32 * h + 8 * (s + 2) + 4 * part + k,
                            or_and(hi4(L[k]), shl(H[k], -2 * s), c8(0x30)));
                    }
                }
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
#pragma GCC unroll 16
        for (int i = 0; i < 4; ++i) {
            const __m256i D = R.g(b, 192 + 4 * i);
#pragma GCC unroll 16
            for (int j = 0; j < 4; ++j)
                P.sc[4 * i + j] = _mm256_srai_epi32(_mm256_slli_epi32(D, 24 - 8 * j), 24);
        }
        P.d = R.h(b, 208);
    }
};
struct TIQ4_XS {
    static constexpr int BB = 136, NSUB = 8, NM = 0, GD = 8;
    static constexpr bool CORR = true, Split = true;
    // Calls put(k, v) for every dword vector k of the block; gemv_k needs each chunk's first
    // and last dword to come first and last (the sums themselves are exact in any order).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
        const __m256i lut = iq4_lut();
#pragma GCC unroll 16
        for (int ib = 0; ib < 8; ++ib) {
            __m256i T[4];
            R.t4(b, 8 + 16 * ib, T);
#pragma GCC unroll 16
            for (int k = 0; k < 4; ++k) {
                put_split(put, 8 * ib + k, _mm256_shuffle_epi8(lut, lo4(T[k])));
                put_split(put, 8 * ib + 4 + k, _mm256_shuffle_epi8(lut, hi4(T[k])));
            }
        }
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        const __m256i g0 = R.g(b, 0), g1 = R.g(b, 4);
#pragma GCC unroll 16
        for (int ib = 0; ib < 8; ++ib) {
            const __m256i ls = _mm256_or_si256(bits(g1, 8 * (ib / 2) + 4 * (ib % 2), 0xF),
                                               _mm256_slli_epi32(bits(g0, 16 + 2 * ib, 3), 4));
            P.sc[ib] = _mm256_sub_epi32(ls, _mm256_set1_epi32(32));
        }
        P.d = half_lo(g0);
    }
};

// How far ahead a type's packed decode requests its weights in bursts (gemm_isa.h), or 0 for
// none: the hardware prefetcher alone. On the Zen 3 (AVX2 only, 2026-12-08) Q8_0's decode ran
// 1.32x faster without the bursts (bench/ab tg, this switch in one binary, 8 of 8 pairs; the
// build against the one before 1.32x, 6 of 6); Q4_0 was level (0.99) and Q4_K_M slower (0.92)
// that way (a temporary switch), so they keep them (docs/PERFORMANCE.md, "Zen 3: Q8_0's
// decode without software prefetch"). Presumably (not measured: no hardware counters) each
// burst line holds one of L1's few miss buffers for a whole memory latency, where the hardware
// prefetcher fills L2. Measured on the Zen 3 only.
// LOKAL_GEMM_HW_PREFETCH=0 gives Q8_0 its bursts back (for A/B).
template <class Ty>
size_t decode_ahead() {
    if constexpr (requires { Ty::kHardwarePrefetch; }) {
        static const bool hardware = Ty::kHardwarePrefetch && env_switch("LOKAL_GEMM_HW_PREFETCH");
        if (hardware) return 0;
    }
    return kDecodeAhead;
}

struct Tok {
    const uint8_t* act;
    const uint32_t* side;
};

// Exact sum over dwords [k0, k0 + n) of w (u8) x y (s8) for T tokens, added to s[t].
// Plane offset nw: when Split, w[nw + k] is the high nibble plane (weight 16).
template <int T, int GD, bool Split>
[[gnu::always_inline]] inline void dot_dwords(const __m256i* w, int nw, int k0, int n,
                                              const uint8_t* const* y, __m256i* s) {
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int g = 0; g < n; g += GD) {
        __m256i p[T], q[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) p[t] = q[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = k0 + g; k < k0 + g + GD; ++k) {
            const __m256i wl = _mm256_load_si256(&w[k]);
            const __m256i wh = Split ? _mm256_load_si256(&w[nw + k]) : wl;
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t) {
                const __m256i yb = _mm256_set1_epi32(ld32(y[t] + 4 * k));
                p[t] = _mm256_add_epi16(p[t], _mm256_maddubs_epi16(wl, yb));
                if (Split) q[t] = _mm256_add_epi16(q[t], _mm256_maddubs_epi16(wh, yb));
                // Keep the running sums a chain in registers: GCC otherwise reassociates
                // them into trees with many live temporaries and spills them.
                asm("" : "+x"(p[t]));
                if (Split) asm("" : "+x"(q[t]));
            }
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(p[t], ones));
            if (Split)
                s[t] = _mm256_add_epi32(s[t], _mm256_slli_epi32(_mm256_madd_epi16(q[t], ones), 4));
        }
    }
}

template <class Ty, int T>
[[gnu::always_inline]] inline void compute32(const P32* pan, int nbc, int64_t b0, int64_t nb,
                                             const Tok* tk, __m256* facc) {
    for (int b = 0; b < nbc; ++b) {
        const P32& P = pan[b];
        const int64_t bg = b0 + b;
        const uint8_t* y[T];
        __m256i s[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            y[t] = tk[t].act + bg * Ty::AB + Ty::AO;
            s[t] =
                Ty::kMin ? _mm256_setzero_si256() : _mm256_set1_epi32((int32_t)tk[t].side[nb + bg]);
        }
        dot_dwords<T, Ty::GD, Ty::Split>(P.w, 8, 0, 8, y, s);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            const __m256 d = _mm256_mul_ps(P.d, _mm256_set1_ps(ldf(tk[t].side + bg)));
            facc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), d, facc[t]);
            if (Ty::kMin)
                facc[t] = _mm256_fmadd_ps(P.m, _mm256_set1_ps(ldf(tk[t].side + nb + bg)), facc[t]);
        }
    }
}

template <class Ty>
[[gnu::always_inline]] inline __m256 finishK(const PK& P, __m256i isum, const Tok& tk, int64_t bg,
                                             int64_t nb, __m256 f) {
    constexpr int NC = Ty::CORR ? Ty::NSUB : 0;
    const float dy = ldf(tk.side + bg);
    f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(P.d, _mm256_set1_ps(dy)), f);
    if constexpr (Ty::NM > 0) {
        const uint32_t* ys = tk.side + nb + nb * NC + bg * Ty::NM;
        __m256i ms = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int p = 0; p < Ty::NM; ++p)
            ms =
                _mm256_add_epi32(ms, _mm256_madd_epi16(P.mn[p], _mm256_set1_epi32((int32_t)ys[p])));
        f = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(P.dm, _mm256_set1_ps(dy)), f);
    }
    return f;
}

template <class Ty, int T>
[[gnu::always_inline]] inline void computeK(const PK* pan, int nbc, int64_t b0, int64_t nb,
                                            const Tok* tk, __m256* facc) {
    constexpr int NS = Ty::NSUB, DW = 64 / NS;
    constexpr int NC = Ty::CORR ? NS : 0;
    for (int b = 0; b < nbc; ++b) {
        const PK& P = pan[b];
        const int64_t bg = b0 + b;
        const uint8_t* y[T];
        __m256i isum[T];
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
            y[t] = tk[t].act + bg * 292 + 4;
            isum[t] = _mm256_setzero_si256();
        }
        for (int j = 0; j < NS; ++j) {
            __m256i s[T];
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t)
                s[t] = Ty::CORR ? _mm256_set1_epi32((int32_t)tk[t].side[nb + bg * NC + j])
                                : _mm256_setzero_si256();
            dot_dwords<T, Ty::GD, Ty::Split>(P.w, 64, DW * j, DW, y, s);
            const __m256i sc = _mm256_load_si256(&P.sc[j]);
            for (int t = 0; t < T; ++t)
                isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(s[t], sc));
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) facc[t] = finishK<Ty>(P, isum[t], tk[t], bg, nb, facc[t]);
    }
}

template <class Ty, class S>
[[gnu::always_inline]] inline void unpack_k(const S& R, int64_t b, PK& P) {
    Ty::weights(R, b, [&](int k, __m256i v) { _mm256_store_si256(&P.w[k], v); });
    Ty::scales(R, b, P);
}

// Decode, K-quants: each dword vector's products go into an int16 sum of its chunk (GD
// dwords, never more than a sub-block, so the sum is exact), widened into the sub-block's
// int32 sum when the chunk is complete, and the sub-block is scaled into the block sum when
// it is. Every weights() emits a chunk's first dword first and its last dword last (the high
// plane of a split type right after the low one), and a sub-block's chunks likewise, so the
// ends are known from kk alone; all of this resolves at compile time, and only a few partial
// sums are live at once (no spills). Integer sums are exact: same result as any other order.
template <class Ty, class S>
[[gnu::always_inline]] inline __m256 gemv_k(const S& R, int64_t b, int64_t nb, const Tok& tk,
                                            __m256 f) {
    constexpr int NS = Ty::NSUB, DW = 64 / NS;
    constexpr int NC = Ty::CORR ? NS : 0;
    constexpr int CH = Ty::GD < DW ? Ty::GD : DW;  // dwords per int16 chunk
    constexpr int NCH = 64 / CH;
    constexpr int PL = Ty::Split ? 2 : 1;  // planes (split types: low and high nibbles)
    PK P;                                  // scales only
    Ty::scales(R, b, P);
    __m256i acc16[PL][NCH];
    __m256i sub[NS];
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i isum = _mm256_setzero_si256();
    const uint8_t* y = tk.act + b * 292 + 4;
    Ty::weights(R, b, [&](int k, __m256i v) {
        const int kk = k & 63;  // k >= 64: the high nibble plane of split types (weight 16)
        const int pl = k >= 64 ? PL - 1 : 0;
        const int c = kk / CH, j = kk / DW;
        const __m256i p = _mm256_maddubs_epi16(v, _mm256_set1_epi32(ld32(y + 4 * kk)));
        acc16[pl][c] = kk % CH == 0 ? p : _mm256_add_epi16(acc16[pl][c], p);
        if (kk % CH != CH - 1 || pl != PL - 1) return;
        __m256i w = _mm256_madd_epi16(acc16[0][c], ones);
        if (Ty::Split)
            w = _mm256_add_epi32(w,
                                 _mm256_slli_epi32(_mm256_madd_epi16(acc16[PL - 1][c], ones), 4));
        sub[j] = kk % DW == CH - 1 ? w : _mm256_add_epi32(sub[j], w);
        if (kk % DW != DW - 1) return;
        if (Ty::CORR)
            sub[j] = _mm256_add_epi32(sub[j], _mm256_set1_epi32((int32_t)tk.side[nb + b * NC + j]));
        isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(sub[j], P.sc[j]));
    });
    return finishK<Ty>(P, isum, tk, b, nb, f);
}

template <class Ty, int T>
struct C32 {
    [[gnu::always_inline]] static void fn(const P32* p, int n, int64_t b0, int64_t nb,
                                          const Tok* tk, __m256* f) {
        compute32<Ty, T>(p, n, b0, nb, tk, f);
    }
};
template <class Ty, int T>
struct CK {
    [[gnu::always_inline]] static void fn(const PK* p, int n, int64_t b0, int64_t nb, const Tok* tk,
                                          __m256* f) {
        computeK<Ty, T>(p, n, b0, nb, tk, f);
    }
};

template <class C, class Pan, int T>
void run_tile(const Pan* pan, int nbc, int64_t b0, int64_t nb, const Tok* tk, float* acc_buf,
              bool first) {
    __m256 facc[T];
    for (int t = 0; t < T; ++t)
        facc[t] = first ? _mm256_setzero_ps() : _mm256_load_ps(acc_buf + 8 * t);
    C::fn(pan, nbc, b0, nb, tk, facc);
    for (int t = 0; t < T; ++t) _mm256_store_ps(acc_buf + 8 * t, facc[t]);
}

// Decode (1 token) and a few tokens (2..kStreamTokens: speculative checks, small decode
// batches): one pass over the weights, each block unpacked once, prefetched ahead and used
// for every token while in registers/L1, instead of unpacking a panel to scratch and reading
// it back. T2 > 0: a second group of T2 tokens uses the same unpacked block (up to 8 tokens
// in two tiles of at most 4, so the dot products keep their registers). The arithmetic per
// token is the panel path's (the same block order and operations), so results do not depend
// on which path ran.
template <class Pan, class Ty, template <class, int> class Compute, int T, int T2 = 0, class S>
void stream_group(const GemmArgs& a, const S& R, int64_t g, int nv) {
    constexpr int QK = sizeof(Pan) == sizeof(P32) ? 32 : 256;
    constexpr int TT = T + T2;
    const int64_t nb = a.n / QK;
    Tok tk[TT];
    for (int t = 0; t < TT; ++t)
        tk[t] = {a.act + (size_t)t * a.act_stride, a.side + (size_t)t * a.side_stride};
    __m256 f[TT];
    for (int t = 0; t < TT; ++t) f[t] = _mm256_setzero_ps();
    Pan P;
    const size_t ahead = decode_ahead<Ty>();
    for (int64_t b = 0; b < nb; ++b) {
        if constexpr (TT == 1)
            R.prefetch_burst(b, ahead);
        else
            R.prefetch(b);
        if constexpr (QK == 32) {
            Ty::unpack(R, b, P);
            Compute<Ty, T>::fn(&P, 1, b, nb, tk, f);
        } else if constexpr (TT == 1) {
            f[0] = gemv_k<Ty>(R, b, nb, tk[0], f[0]);  // K-quant decode: unpacked as used
        } else {
            unpack_k<Ty>(R, b, P);
            Compute<Ty, T>::fn(&P, 1, b, nb, tk, f);
        }
        if constexpr (T2 > 0) Compute<Ty, T2>::fn(&P, 1, b, nb, tk + T, f + T);
    }
    for (int t = 0; t < TT; ++t) {
        alignas(32) float out[8];
        _mm256_store_ps(out, f[t]);
        for (int i = 0; i < nv; ++i) a.y[t * a.ldy + g + i] = out[i];
    }
}

// 9..kStreamMany tokens (prefill chunks of short prompts, larger decode batches): the same
// one pass over the weights, each unpacked block used by tiles of at most 4 tokens in turn;
// the accumulators live in memory (L1) between tiles.
template <class Pan, class Ty, template <class, int> class Compute, class S>
void stream_tiles(const GemmArgs& a, const S& R, int64_t g, int nv) {
    constexpr int QK = sizeof(Pan) == sizeof(P32) ? 32 : 256;
    const int64_t nb = a.n / QK;
    const int nt = (int)a.n_tokens;
    Tok tk[kStreamMany];
    alignas(32) __m256 f[kStreamMany];
    for (int t = 0; t < nt; ++t) {
        tk[t] = {a.act + (size_t)t * a.act_stride, a.side + (size_t)t * a.side_stride};
        f[t] = _mm256_setzero_ps();
    }
    Pan P;
    for (int64_t b = 0; b < nb; ++b) {
        R.prefetch(b);
        if constexpr (QK == 32)
            Ty::unpack(R, b, P);
        else
            unpack_k<Ty>(R, b, P);
        for (int t0 = 0; t0 < nt; t0 += kStreamTokens) {
            switch (std::min(kStreamTokens, nt - t0)) {
                case 1:
                    Compute<Ty, 1>::fn(&P, 1, b, nb, tk + t0, f + t0);
                    break;
                case 2:
                    Compute<Ty, 2>::fn(&P, 1, b, nb, tk + t0, f + t0);
                    break;
                case 3:
                    Compute<Ty, 3>::fn(&P, 1, b, nb, tk + t0, f + t0);
                    break;
                default:
                    Compute<Ty, 4>::fn(&P, 1, b, nb, tk + t0, f + t0);
            }
        }
    }
    for (int t = 0; t < nt; ++t) {
        alignas(32) float out[8];
        _mm256_store_ps(out, f[t]);
        for (int i = 0; i < nv; ++i) a.y[t * a.ldy + g + i] = out[i];
    }
}

// One group of 8 rows (g) for every token, reading the weights through S (Strided/Packed).
template <class Pan, class Ty, template <class, int> class Compute, int CB, class S>
void gemm_group(const GemmArgs& a, const S& R, int64_t g, int nv, Pan* pan, float* acc) {
    constexpr int QK = sizeof(Pan) == sizeof(P32) ? 32 : 256;
    const int64_t nb = a.n / QK;
    if (a.n_tokens == 1) return stream_group<Pan, Ty, Compute, 1>(a, R, g, nv);
    if (a.n_tokens <= kStreamTokens && stream_few_tokens()) {
        switch (a.n_tokens) {
            case 2:
                return stream_group<Pan, Ty, Compute, 2>(a, R, g, nv);
            case 3:
                return stream_group<Pan, Ty, Compute, 3>(a, R, g, nv);
            default:
                return stream_group<Pan, Ty, Compute, 4>(a, R, g, nv);
        }
    }
    // Two tiles per unpacked block, accumulators in registers, up to 8 tokens; the split
    // types (Q8_0, IQ4: two nibble planes, twice the int16 sums) spill there past 6 and run
    // 7-8 tokens faster with the accumulators in L1 (stream_tiles; BM_Matmul, thr:1).
    constexpr int kTwoTiles = Ty::Split ? 6 : 2 * kStreamTokens;
    if (a.n_tokens <= kTwoTiles && stream_few_tokens() && stream_two_tiles()) {
        switch (a.n_tokens) {
            case 5:
                return stream_group<Pan, Ty, Compute, 4, 1>(a, R, g, nv);
            case 6:
                return stream_group<Pan, Ty, Compute, 4, 2>(a, R, g, nv);
            case 7:
                return stream_group<Pan, Ty, Compute, 4, 3>(a, R, g, nv);
            default:
                return stream_group<Pan, Ty, Compute, 4, 4>(a, R, g, nv);
        }
    }
    if (a.n_tokens <= kStreamMany && stream_many())
        return stream_tiles<Pan, Ty, Compute>(a, R, g, nv);
    Tok tk[4];
    for (int64_t c0 = 0; c0 < nb; c0 += CB) {
        const int nbc = (int)std::min<int64_t>(CB, nb - c0);
        for (int b = 0; b < nbc; ++b) {
            if constexpr (QK == 32) {
                Ty::unpack(R, c0 + b, pan[b]);
            } else {
                unpack_k<Ty>(R, c0 + b, pan[b]);
            }
        }
        for (int64_t t0 = 0; t0 < a.n_tokens;) {
            const int64_t left = a.n_tokens - t0;
            const int T = left >= 4 ? 4 : left >= 2 ? 2 : 1;
            for (int t = 0; t < T; ++t)
                tk[t] = {a.act + (size_t)(t0 + t) * a.act_stride,
                         a.side + (size_t)(t0 + t) * a.side_stride};
            float* ab = acc + 8 * t0;
            const bool first = c0 == 0;
            if (T == 4)
                run_tile<Compute<Ty, 4>, Pan, 4>(pan, nbc, c0, nb, tk, ab, first);
            else if (T == 2)
                run_tile<Compute<Ty, 2>, Pan, 2>(pan, nbc, c0, nb, tk, ab, first);
            else
                run_tile<Compute<Ty, 1>, Pan, 1>(pan, nbc, c0, nb, tk, ab, first);
            t0 += T;
        }
    }
    for (int64_t t = 0; t < a.n_tokens; ++t)
        for (int i = 0; i < nv; ++i) a.y[t * a.ldy + g + i] = acc[8 * t + i];
}

// Decode (one token) of two packed 8-row groups far apart (GemmArgs::pair_rows), block by
// block in turn with their bursts half a burst apart: two forward streams per thread, as on
// AVX-512 (gemm_avx512.cpp, decode_pair32). Each group's arithmetic is stream_group's.
template <class Ty, TensorType TT>
void decode_pair32(const GemmArgs& a, int64_t gA, int64_t gB) {
    const int64_t nb = a.n / 32;
    const Packed<TT> RA{a.w + (size_t)gA * a.w_stride}, RB{a.w + (size_t)gB * a.w_stride};
    const Tok tk{a.act, a.side};
    __m256 fA = _mm256_setzero_ps(), fB = _mm256_setzero_ps();
    P32 PA, PB;
    const size_t ahead = decode_ahead<Ty>();
    for (int64_t b = 0; b < nb; ++b) {
        RA.prefetch_burst(b, ahead);
        prefetch_decode_burst_second<kPackRows * pack_layout(TT).block_bytes>(RB.base, b, ahead);
        Ty::unpack(RA, b, PA);
        compute32<Ty, 1>(&PA, 1, b, nb, &tk, &fA);
        Ty::unpack(RB, b, PB);
        compute32<Ty, 1>(&PB, 1, b, nb, &tk, &fB);
    }
    _mm256_storeu_ps(a.y + gA, fA);
    _mm256_storeu_ps(a.y + gB, fB);
}

template <class Pan, class Ty, TensorType TT, template <class, int> class Compute, int CB>
void gemm_quant(const GemmArgs& a, int64_t r0, int64_t r1, void* scratch) {
    static_assert(sizeof(Pan) * CB <= 48 * 1024);
    constexpr int BB = pack_layout(TT).block_bytes;
    if (split_token_blocks(a, kStreamMany, [&](const GemmArgs& s) {
            gemm_quant<Pan, Ty, TT, Compute, CB>(s, r0, r1, scratch);
        }))
        return;
    Pan* pan = static_cast<Pan*>(scratch);
    float* acc = reinterpret_cast<float*>(static_cast<uint8_t*>(scratch) + 48 * 1024);
    // Rows of a last partial group are row-major even in a packed matrix.
    const int64_t full_end = a.n_rows - a.n_rows % RG;
    std::vector<uint8_t> pad;
    if (a.n_tokens == 1 && a.packed && r0 + RG <= full_end)
        prefetch_decode_start(a.w + (size_t)r0 * a.w_stride,
                              (size_t)(std::min(r1, full_end) - r0) * a.w_stride);
    if constexpr (sizeof(Pan) == sizeof(P32)) {
        if (a.pair_rows) {  // whole packed groups only (matmul.cpp)
            prefetch_decode_start(a.w + (size_t)(r0 + a.pair_rows) * a.w_stride,
                                  (size_t)(r1 - r0) * a.w_stride);
            for (int64_t g = r0; g < r1; g += RG) decode_pair32<Ty, TT>(a, g, g + a.pair_rows);
            return;
        }
    }
    for (int64_t g = r0; g < r1; g += RG) {
        const int nv = (int)std::min<int64_t>(RG, r1 - g);
        const uint8_t* base = a.w + (size_t)g * a.w_stride;
        if (a.packed && g + RG <= full_end) {
            gemm_group<Pan, Ty, Compute, CB>(a, Packed<TT>{base}, g, nv, pan, acc);
            continue;
        }
        if (nv < RG) {  // a partial group: pad to 8 rows (the extra outputs are discarded)
            pad.assign((size_t)RG * a.w_stride, 0);
            std::memcpy(pad.data(), base, (size_t)nv * a.w_stride);
            base = pad.data();
        }
        gemm_group<Pan, Ty, Compute, CB>(a, Strided<BB>{Rows(base, a.w_stride)}, g, nv, pan, acc);
    }
}

}  // namespace

GemmFn quant_gemm(TensorType t) {
    switch (t) {
        case TensorType::Q4_0:
            return &gemm_quant<P32, TQ4_0, TensorType::Q4_0, C32, 32>;
        case TensorType::Q4_1:
            return &gemm_quant<P32, TQ4_1, TensorType::Q4_1, C32, 32>;
        case TensorType::Q5_0:
            return &gemm_quant<P32, TQ5<false>, TensorType::Q5_0, C32, 32>;
        case TensorType::Q5_1:
            return &gemm_quant<P32, TQ5<true>, TensorType::Q5_1, C32, 32>;
        case TensorType::Q8_0:
            return &gemm_quant<P32, TQ8_0, TensorType::Q8_0, C32, 32>;
        case TensorType::IQ4_NL:
            return &gemm_quant<P32, TIQ4_NL, TensorType::IQ4_NL, C32, 32>;
        case TensorType::Q2_K:
            return &gemm_quant<PK, TQ2_K, TensorType::Q2_K, CK, 4>;
        case TensorType::Q3_K:
            return &gemm_quant<PK, TQ3_K, TensorType::Q3_K, CK, 4>;
        case TensorType::Q4_K:
            return &gemm_quant<PK, TQ45_K<false>, TensorType::Q4_K, CK, 4>;
        case TensorType::Q5_K:
            return &gemm_quant<PK, TQ45_K<true>, TensorType::Q5_K, CK, 4>;
        case TensorType::Q6_K:
            return &gemm_quant<PK, TQ6_K, TensorType::Q6_K, CK, 4>;
        case TensorType::IQ4_XS:
            return &gemm_quant<PK, TIQ4_XS, TensorType::IQ4_XS, CK, 4>;
        default:
            return nullptr;
    }
}

}  // namespace lokal::gemm::avx2
