// AVX-512 (VNNI) GEMM for the quantized weight types.
//
// Layout: lanes are weight rows. A row group of 16 rows is unpacked, a chunk of blocks at a
// time, into a panel of unsigned bytes where vector k holds bytes 4k..4k+3 of each of the 16
// rows (a transpose), plus per-row scales as float or int32 vectors. Each activation dword is
// then broadcast and one vpdpbusd gives 16 exact 4-element dot products, so no horizontal
// sums are needed and one unpacked block serves every token of the batch. Integer block sums
// feed the canonical per-(row, token) fma chain of gemm_common.h, identical for 1 or 512
// tokens, so outputs are batch invariant by construction.
//
// The weights are read through a reader (Strided: row-major, transposed with shuffles and
// gathers; Packed: two of the 8-row interleaved groups that matmul_pack made at load, so a
// block of 16 rows is two plain loads per vector). Decode reads the packed layout about 3x
// faster on a Zen 5 (TinyLlama Q4_0 23 -> 60-79 tokens/s), the same layout the AVX2 kernels
// read, so one packing serves both.
// GCC 12 flags the intrinsics' own _mm512_undefined_* self-initialization once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/env_switch.h"
#include "ops/gemm_amx.h"
#include "ops/gemm_isa.h"
#include "quant/blocks.h"

namespace lokal::gemm::avx512 {
namespace {

constexpr int RG = 16;

// The 16 rows of a group, at a fixed stride (a partial last group is copied into a padded
// buffer first, so the kernels never need per-row pointers).
struct Rows {
    const uint8_t* base;
    size_t s;
    __m512i idx;  // byte offset of each row, for gathers

    Rows(const uint8_t* b, size_t stride) : base(b), s(stride) {
        idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32((int32_t)stride));
    }
    __m512i gather(size_t off) const { return _mm512_i32gather_epi32(idx, base + off, 1); }
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

// T[k] = dword k of the 16 bytes at offset `off` of each row (lane i = row i).
[[gnu::always_inline]] inline void load_t4(const Rows& R, size_t off, __m512i T[4]) {
    // Row i+4c of A[i] sits in 128-bit lane c; four base pointers and s, 3s address all 16.
    const size_t s = R.s, s3 = 3 * s;
    const uint8_t* q0 = R.base + off;
    const uint8_t* q4 = q0 + 4 * s;
    const uint8_t* q8 = q0 + 8 * s;
    const uint8_t* q12 = q4 + 8 * s;
    auto lane = [](const uint8_t* a, const uint8_t* b, const uint8_t* c, const uint8_t* d) {
        __m512i v = _mm512_castsi128_si512(ld128(a));
        v = _mm512_inserti32x4(v, ld128(b), 1);
        v = _mm512_inserti32x4(v, ld128(c), 2);
        return _mm512_inserti32x4(v, ld128(d), 3);
    };
    __m512i A[4];
    A[0] = lane(q0, q4, q8, q12);
    A[1] = lane(q0 + s, q4 + s, q8 + s, q12 + s);
    A[2] = lane(q0 + 2 * s, q4 + 2 * s, q8 + 2 * s, q12 + 2 * s);
    A[3] = lane(q0 + s3, q4 + s3, q8 + s3, q12 + s3);
    const __m512i t0 = _mm512_unpacklo_epi32(A[0], A[1]), t1 = _mm512_unpackhi_epi32(A[0], A[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(A[2], A[3]), t3 = _mm512_unpackhi_epi32(A[2], A[3]);
    T[0] = _mm512_unpacklo_epi64(t0, t2);
    T[1] = _mm512_unpackhi_epi64(t0, t2);
    T[2] = _mm512_unpacklo_epi64(t1, t3);
    T[3] = _mm512_unpackhi_epi64(t1, t3);
}

inline __m512i lo4(__m512i v) {
    return _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
}
inline __m512i hi4(__m512i v) {
    return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
}
// a | (b & c)
inline __m512i or_and(__m512i a, __m512i b, __m512i c) {
    return _mm512_ternarylogic_epi32(a, b, c, 0xF8);
}
// Shift left by s (negative: right) in 32-bit lanes.
inline __m512i shl(__m512i v, int s) {
    return s >= 0 ? _mm512_slli_epi32(v, (unsigned)s) : _mm512_srli_epi32(v, (unsigned)-s);
}
inline __m512 half_lo(__m512i g) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}
inline __m512 half_hi(__m512i g) {
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
}
inline __m512i bits(__m512i v, int shift, int mask) {
    return _mm512_and_si512(_mm512_srli_epi32(v, (unsigned)shift), _mm512_set1_epi32(mask));
}

// Byte i of every dword = bit (4k + i) of that lane's 32-bit qh, as 0x10 (the 5th bit).
inline __m512i q5_high(__m512i W, __m512i qh, int k) {
    const __m512i rep = _mm512_shuffle_epi8(
        qh, _mm512_add_epi8(_mm512_set4_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0),
                            _mm512_set1_epi8((char)(k / 2))));
    const __m512i sel = _mm512_set1_epi32(k % 2 ? (int)0x80402010 : 0x08040201);
    // W holds a nibble, so adding 16 sets bit 4.
    return _mm512_mask_add_epi8(W, _mm512_test_epi8_mask(rep, sel), W, _mm512_set1_epi8(0x10));
}

inline __m512i iq4_lut() {
    return _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129,
                                                (char)141, (char)153, (char)166, (char)181,
                                                (char)197, (char)217, (char)241));
}

// ---- where a type's unpack reads the 16 rows of block b ----
//
// Byte x of the block (a constant after inlining). t4: dwords x..x+3 (16 bytes) as 4 vectors,
// lane i = row i; g: the dword at x; h: the fp16 at x as floats (x starts a 2-byte field);
// prefetch: fetch what block b will need some way ahead (batches); prefetch_burst: the same
// for decode, in bursts (gemm_isa.h).

// Strided: row-major rows, transposed on the fly (shuffles and gathers).
template <int BB>
struct Strided {
    Rows R;
    [[gnu::always_inline]] void t4(int64_t b, int x, __m512i T[4]) const {
        load_t4(R, (size_t)b * BB + x, T);
    }
    [[gnu::always_inline]] __m512i g(int64_t b, int x) const {
        return R.gather((size_t)b * BB + x);
    }
    // A 2-byte field at the end of a block is read with the two bytes before it (no read
    // past the last row's end).
    [[gnu::always_inline]] __m512 h(int64_t b, int x) const {
        return x + 4 <= BB ? half_lo(g(b, x)) : half_hi(g(b, x - 2));
    }
    template <int P, int N>
    [[gnu::always_inline]] void prefetch_part(int64_t b) const {
        if constexpr (P == 0) prefetch(b);  // row-major tails: whole blocks, as before
    }
    // 16 row streams: every cache line that starts inside block b, 1 KiB ahead in each row
    // (decode and batches alike).
    template <bool Stepped>
    [[gnu::always_inline]] void prefetch_burst(int64_t b) const {
        prefetch(b);
    }
    [[gnu::always_inline]] void prefetch_few(int64_t b) const { prefetch(b); }
    [[gnu::always_inline]] void prefetch(int64_t b) const {
        const size_t off = (size_t)b * BB;
        for (size_t p = (off + 63) & ~(size_t)63; p < off + BB; p += 64)
            for (int i = 0; i < RG; ++i)
                _mm_prefetch((const char*)(R.base + i * R.s + p + 1024), _MM_HINT_T0);
    }
};

// Packed: a unit of two row-interleaved groups of 8 (gemm_common.h, interleave 2) makes the 16
// rows, so every access is two plain loads from one run: rows 0-7 at o, rows 8-15 at o + kRun.
template <TensorType TT>
struct Packed {
    static constexpr int kRun = kPackRows * pack_layout(TT).block_bytes;  // a block of 8 rows
    // The unit's first byte, and the bytes from block b to what prefetch(b) fetches (0: none).
    const uint8_t* base;
    size_t ahead;
    // prefetch_few of Q5_0 / Q4_1 / Q5_1: pages ahead (few_pages(), read once per call).
    bool few_pages = false;
    [[gnu::always_inline]] size_t at(int64_t b, int x) const {
        return (size_t)b * (2 * kRun) + (size_t)kPackPos<TT>[(size_t)x];
    }
    [[gnu::always_inline]] __m512i both(size_t o) const {
        return _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(base + o))),
            _mm256_loadu_si256((const __m256i*)(base + o + kRun)), 1);
    }
    [[gnu::always_inline]] void t4(int64_t b, int x, __m512i T[4]) const {
        const size_t o = at(b, x);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) T[k] = both(o + 32 * (size_t)k);
    }
    [[gnu::always_inline]] __m512i g(int64_t b, int x) const {
        return both(at(b, x));
    }
    [[gnu::always_inline]] __m512 h(int64_t b, int x) const {
        const size_t o = at(b, x);
        const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(ld128(base + o)),
                                                  ld128(base + o + kRun), 1);
        return _mm512_cvtph_ps(v);
    }
    [[gnu::always_inline]] void prefetch(int64_t b) const {
        prefetch_part<0, 1>(b);
    }
    // Batches of 2-8 tokens (stream_block) of Q4_0 and IQ4_NL, whose kernels read weights the
    // fastest of the batches: each page's first line kPageAheadOfLines ahead and the lines half
    // as far ahead as elsewhere (4 KiB). By the time a line is requested, the hardware
    // prefetcher, started on its page 12 KiB before, has it on the way, so the line requests no
    // longer wait out the memory's latency (240-430 ns on this VM, bench/mem_latency.cpp) in
    // L1's few miss buffers (docs/PERFORMANCE.md, "Batches of 2–8 tokens: pages far ahead,
    // lines nearer"). bench/ab against prefetch(b) (Zen 5, 2026-12-07 night, built binaries): Q4_0
    // batched 8 1.167 (8 of 8), batched 4 1.269, batched 2 1.394 (4 of 4 each), IQ4_NL batched
    // 8 1.131 (4 of 4); BM_MatmulFromMemory 5632 x 2048, 8 tokens, 2 threads, min / mean 198 / 211
    // -> 178 / 184 us (in cache 182). Lines 2 KiB ahead: 199 / 204; page requests alone: 339 / 369.
    // Where the arithmetic per byte is longer the near lines do not pay: 16 tokens
    // (stream_tiles) 0.867, batched 8 Q4_1 0.995, Q5_1 1.011, Q5_0 0.841 (those three take the
    // pages alone, below); K-quants and Q8_0 with lines 4 KiB ahead level or slower in
    // BM_MatmulFromMemory; the AVX2 batches 0.970 (Q4_0, pages 16 KiB ahead of their lines 2 KiB
    // ahead; two builds, so placement too). Decode keeps its requests (gemm_isa.h): lines 4 KiB
    // ahead there made Q4_0 tg 0.80-0.86x.
    static constexpr bool kFewNear = TT == TensorType::Q4_0 || TT == TensorType::IQ4_NL;
    // Q5_0, Q4_1 and Q5_1 (slower kernels: the near lines lost, Q5_0 0.841) take the page
    // requests with their lines 8 KiB ahead as before: batched 8 Q5_0 1.180, Q4_1 1.146, Q5_1
    // 1.156 (6 of 6 each; `bench/ab --env-b LOKAL_GEMM_FEW_PAGES=0`, one binary, so one code
    // placement for both sides: a build that changed them moved Q4_0's kernels and read its
    // batches 0.81x with none of its instructions changed, docs/PERFORMANCE.md). Against the
    // builds before: Q5_0 1.186, Q5_1 1.124, Q4_0 0.999 and 1.029.
    static constexpr bool kFewPages =
        TT == TensorType::Q5_0 || TT == TensorType::Q4_1 || TT == TensorType::Q5_1;
    [[gnu::always_inline]] void prefetch_few(int64_t b) const {
        if constexpr (kFewPages) {
            if (few_pages) return prefetch_part<0, 1, false, true>(b);
        }
        prefetch_part<0, 1, kFewNear>(b);
    }
    // Decode (gemm_isa.h): kDecodeAhead, unless prefetching is off (ahead 0). The 32-element
    // types (blocks under 64 bytes) request one line per page (Kick), the K-quants every line.
    static constexpr bool kKick = pack_layout(TT).block_bytes < 64;
    // Where every line is requested, also each page's first line kPageAheadOfLines ahead
    // (gemm_isa.h): the K-quant decode and Q8_0's batches, where it measured faster.
    static constexpr bool kDecodePagesAhead = !kKick;
    static constexpr bool kBatchPagesAhead = TT == TensorType::Q8_0;
    template <bool Stepped>
    [[gnu::always_inline]] void prefetch_burst(int64_t b) const {
        prefetch_decode_burst<2 * kRun, Stepped, kKick>(base, b, ahead ? kDecodeAhead : 0);
        if constexpr (kDecodePagesAhead)
            prefetch_decode_burst<2 * kRun, false, true>(base, b, ahead ? kPageAheadOfLines : 0);
    }
    // Lines [P * n / N, (P + 1) * n / N) of the n that prefetch(b) takes (batches); Near and
    // Pages: prefetch_few's schedules.
    template <int P, int N, bool Near = false, bool Pages = false>
    [[gnu::always_inline]] void prefetch_part(int64_t b) const {
        if (!ahead) return;
        // ahead is kBatchAhead = kDecodeAhead here, so 2 * ahead is kPageAheadOfLines (kept in
        // the form that was measured: the constant compiles to other code).
        if constexpr (P == 0 && (kBatchPagesAhead || Near || Pages))
            prefetch_decode_burst<2 * kRun, false, true>(base, b, 2 * ahead);
        constexpr int n = (2 * kRun + 63) / 64;
        const char* p = (const char*)base + (size_t)b * (2 * kRun) + (Near ? ahead / 2 : ahead);
#pragma GCC unroll 64
        for (int l = P * n / N; l < (P + 1) * n / N; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
    }
};

// ---- panels ----

struct alignas(64) P32 {
    __m512i w[8];
    __m512 d, m;
};
struct alignas(64) PK {
    __m512i w[64];
    __m512i sc[16];  // sub-block scales, int32
    __m512i mn[8];   // mins as int16 pairs
    __m512 d, dm;
};

// ---- per-type unpacking of one block of 16 rows ----

struct TQ4_0 {
    static constexpr int QK = 32, BB = 18, AB = 34, AO = 2;
    static constexpr bool kLeanDecode = true;  // stream_group: unrolled, step32<Ty, true>
    static constexpr bool kMin = false;
    static constexpr int NSUB = 1;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m512i T[4];
        R.t4(b, 2, T);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) P.w[k] = lo4(T[k]), P.w[4 + k] = hi4(T[k]);
        P.d = R.h(b, 0);
    }
};
struct TIQ4_NL {
    static constexpr int QK = 32, BB = 18, AB = 34, AO = 2;
    static constexpr bool kLeanDecode = true;  // stream_group: unrolled, step32<Ty, true>
    static constexpr bool kMin = false;
    static constexpr int NSUB = 1;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m512i T[4];
        R.t4(b, 2, T);
        const __m512i lut = iq4_lut();
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            P.w[k] = _mm512_shuffle_epi8(lut, lo4(T[k]));
            P.w[4 + k] = _mm512_shuffle_epi8(lut, hi4(T[k]));
        }
        P.d = R.h(b, 0);
    }
};
struct TQ4_1 {
    static constexpr int QK = 32, BB = 20, AB = 36, AO = 4;
    static constexpr bool kMin = true;
    static constexpr int NSUB = 1;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m512i T[4];
        R.t4(b, 4, T);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) P.w[k] = lo4(T[k]), P.w[4 + k] = hi4(T[k]);
        const __m512i g = R.g(b, 0);
        P.d = half_lo(g);
        P.m = half_hi(g);
    }
};
template <bool One>
struct TQ5 {
    static constexpr int QK = 32, BB = One ? 24 : 22, AB = One ? 36 : 34, AO = One ? 4 : 2;
    static constexpr int QH = One ? 4 : 2, QS = One ? 8 : 6;
    static constexpr bool kMin = One;
    static constexpr int NSUB = 1;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m512i T[4];
        R.t4(b, QS, T);
        const __m512i qh = R.g(b, QH);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            P.w[k] = q5_high(lo4(T[k]), qh, k);
            P.w[4 + k] = q5_high(hi4(T[k]), qh, 4 + k);
        }
        if constexpr (One) {
            const __m512i g = R.g(b, 0);
            P.d = half_lo(g);
            P.m = half_hi(g);
        } else {
            P.d = R.h(b, 0);  // Q5_0's scale is a 2-byte field
        }
    }
};
struct TQ8_0 {
    static constexpr int QK = 32, BB = 34, AB = 34, AO = 2;
    static constexpr bool kStream16 = true;  // gemm_group: 16 tokens through stream_group
    static constexpr bool kMin = false;
    static constexpr int NSUB = 1;
    template <class S>
    [[gnu::always_inline]] static void unpack(const S& R, int64_t b, P32& P) {
        __m512i T[4], U[4];
        R.t4(b, 2, T);
        R.t4(b, 18, U);
        const __m512i flip = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            P.w[k] = _mm512_xor_si512(T[k], flip);
            P.w[4 + k] = _mm512_xor_si512(U[k], flip);
        }
        P.d = R.h(b, 0);
    }
};

// K-quants: NSUB sub-blocks (scales), NM words of min pairs (0 = no min term), CORR: the
// sub-block sums need the side corrections.
struct TQ2_K {
    static constexpr int BB = 84, NSUB = 16, NM = 8;
    static constexpr bool CORR = false;
    // Calls put(k, v) for every dword vector k of the block (any order: sums are exact).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
#pragma GCC unroll 16
        for (int h = 0; h < 2; ++h) {
            __m512i Qa[4], Qb[4];
            R.t4(b, 16 + 32 * h, Qa);
            R.t4(b, 32 + 32 * h, Qb);
#pragma GCC unroll 16
            for (int s = 0; s < 4; ++s)
#pragma GCC unroll 16
                for (int k = 0; k < 4; ++k) {
                    put(32 * h + 8 * s + k,
                        _mm512_and_si512(_mm512_srli_epi32(Qa[k], 2 * s), _mm512_set1_epi8(3)));
                    put(32 * h + 8 * s + 4 + k,
                        _mm512_and_si512(_mm512_srli_epi32(Qb[k], 2 * s), _mm512_set1_epi8(3)));
                }
        }
    }
    // The scale loops unrolled (here and in TQ3_K): rolled, GCC kept the shift counts and
    // the packed offsets as run-time values, and the loop was the decode's hottest code.
    // Unrolled, `BM_GemmL1` one token Q2_K and Q3_K 0.58-0.59x the time, tg 1.19x (Q2_K) and
    // 1.05x (Q3_K_M); unrolling the other types' scale loops made TinyLlama Q4_K_M tg 0.95x
    // (faster in L1, slower from memory), docs/PERFORMANCE.md.
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        __m512i D[4];
#pragma GCC unroll 16
        for (int i = 0; i < 4; ++i) D[i] = R.g(b, 4 * i);
        __m512i m[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) {
            P.sc[j] = bits(D[j / 4], 8 * (j % 4), 0xF);
            m[j] = bits(D[j / 4], 8 * (j % 4) + 4, 0xF);
        }
#pragma GCC unroll 16
        for (int p = 0; p < 8; ++p)
            P.mn[p] = _mm512_or_si512(m[2 * p], _mm512_slli_epi32(m[2 * p + 1], 16));
        const __m512i g = R.g(b, 80);
        P.d = half_lo(g);
        P.dm = half_hi(g);
    }
};
struct TQ3_K {
    static constexpr int BB = 110, NSUB = 16, NM = 0;
    static constexpr bool CORR = true;
    // Calls put(k, v) for every dword vector k of the block (any order: sums are exact).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
        __m512i Ma[4], Mb[4];
        R.t4(b, 0, Ma);
        R.t4(b, 16, Mb);
        const __m512i three = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
#pragma GCC unroll 16
        for (int h = 0; h < 2; ++h) {
            __m512i Qa[4], Qb[4];
            R.t4(b, 32 + 32 * h, Qa);
            R.t4(b, 48 + 32 * h, Qb);
#pragma GCC unroll 16
            for (int s = 0; s < 4; ++s) {
                const int sh = 2 - (4 * h + s);  // bit 4h+s of hmask to bit 2
#pragma GCC unroll 16
                for (int k = 0; k < 4; ++k) {
                    const __m512i la = _mm512_and_si512(_mm512_srli_epi32(Qa[k], 2 * s), three);
                    const __m512i lb = _mm512_and_si512(_mm512_srli_epi32(Qb[k], 2 * s), three);
                    put(32 * h + 8 * s + k, or_and(la, shl(Ma[k], sh), four));
                    put(32 * h + 8 * s + 4 + k, or_and(lb, shl(Mb[k], sh), four));
                }
            }
        }
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        __m512i D[3];
#pragma GCC unroll 16
        for (int i = 0; i < 3; ++i) D[i] = R.g(b, 96 + 4 * i);
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j) {
            const int jj = j % 8;
            const __m512i low = bits(D[jj / 4], 8 * (jj % 4) + 4 * (j / 8), 0xF);
            const __m512i high = bits(D[2], 8 * (j % 4) + 2 * (j / 4), 3);
            P.sc[j] = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)),
                                       _mm512_set1_epi32(32));
        }
        P.d = R.h(b, 108);
    }
};
template <bool Five>
struct TQ45_K {
    static constexpr int BB = Five ? 176 : 144, NSUB = 8, NM = 4;
    static constexpr int QS = Five ? 48 : 16;
    static constexpr bool CORR = false;
    // Calls put(k, v) for every dword vector k of the block (any order: sums are exact).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
        __m512i Ha[4], Hb[4];
        if (Five) {
            R.t4(b, 16, Ha);
            R.t4(b, 32, Hb);
        }
        const __m512i b4 = _mm512_set1_epi8(0x10);
#pragma GCC unroll 16
        for (int c = 0; c < 4; ++c) {
            __m512i Ta[4], Tb[4];
            R.t4(b, QS + 32 * c, Ta);
            R.t4(b, QS + 32 * c + 16, Tb);
#pragma GCC unroll 16
            for (int k = 0; k < 4; ++k) {
                __m512i w0 = lo4(Ta[k]), w1 = lo4(Tb[k]), w2 = hi4(Ta[k]), w3 = hi4(Tb[k]);
                if (Five) {
                    w0 = or_and(w0, shl(Ha[k], 4 - 2 * c), b4);
                    w1 = or_and(w1, shl(Hb[k], 4 - 2 * c), b4);
                    w2 = or_and(w2, shl(Ha[k], 3 - 2 * c), b4);
                    w3 = or_and(w3, shl(Hb[k], 3 - 2 * c), b4);
                }
                put(16 * c + k, w0);
                put(16 * c + 4 + k, w1);
                put(16 * c + 8 + k, w2);
                put(16 * c + 12 + k, w3);
            }
        }
    }
    // w = the 8 dword vectors of sub-block j (j at run time; Q4_K only: with Q5_K's high
    // bits the panel was faster).
    template <class S>
    requires(!Five)
        [[gnu::always_inline]] static void sub(const S& R, int64_t b, int j, __m512i* w) {
        const __m128i shift = _mm_cvtsi32_si128(4 * (j & 1));
        __m512i T[8];
        R.t4(b, QS + 32 * (j >> 1), T);
        R.t4(b, QS + 32 * (j >> 1) + 16, T + 4);
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) w[k] = lo4(_mm512_srl_epi16(T[k], shift));
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        const __m512i D0 = R.g(b, 4), D1 = R.g(b, 8), D2 = R.g(b, 12);
        __m512i m[8];
        for (int j = 0; j < 4; ++j) {
            P.sc[j] = bits(D0, 8 * j, 63);
            m[j] = bits(D1, 8 * j, 63);
            P.sc[4 + j] =
                _mm512_or_si512(bits(D2, 8 * j, 0xF), _mm512_slli_epi32(bits(D0, 8 * j + 6, 3), 4));
            m[4 + j] = _mm512_or_si512(bits(D2, 8 * j + 4, 0xF),
                                       _mm512_slli_epi32(bits(D1, 8 * j + 6, 3), 4));
        }
        for (int p = 0; p < 4; ++p)
            P.mn[p] = _mm512_or_si512(m[2 * p], _mm512_slli_epi32(m[2 * p + 1], 16));
        const __m512i g = R.g(b, 0);
        P.d = half_lo(g);
        P.dm = half_hi(g);
    }
};
struct TQ6_K {
    static constexpr int BB = 210, NSUB = 16, NM = 0;
    static constexpr bool CORR = true;
    // Calls put(k, v) for every dword vector k of the block (any order: sums are exact).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
        const __m512i m30 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 16
        for (int h = 0; h < 2; ++h) {
            __m512i L[4][4], H[2][4];
#pragma GCC unroll 16
            for (int i = 0; i < 4; ++i) R.t4(b, 64 * h + 16 * i, L[i]);
            R.t4(b, 128 + 32 * h, H[0]);
            R.t4(b, 144 + 32 * h, H[1]);
#pragma GCC unroll 16
            for (int s = 0; s < 4; ++s)
#pragma GCC unroll 16
                for (int part = 0; part < 2; ++part)
#pragma GCC unroll 16
                    for (int k = 0; k < 4; ++k) {
                        const __m512i l = L[2 * (s & 1) + part][k];
                        const __m512i nib = s < 2 ? lo4(l) : hi4(l);
                        put(32 * h + 8 * s + 4 * part + k,
                            or_and(nib, shl(H[part][k], 4 - 2 * s), m30));
                    }
        }
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        for (int i = 0; i < 4; ++i) {
            const __m512i D = R.g(b, 192 + 4 * i);
            for (int j = 0; j < 4; ++j)
                P.sc[4 * i + j] = _mm512_srai_epi32(_mm512_slli_epi32(D, 24 - 8 * j), 24);
        }
        P.d = R.h(b, 208);
    }
};
struct TIQ4_XS {
    static constexpr int BB = 136, NSUB = 8, NM = 0;
    static constexpr bool CORR = true;
    // Calls put(k, v) for every dword vector k of the block (any order: sums are exact).
    template <class S, class Put>
    [[gnu::always_inline]] static void weights(const S& R, int64_t b, Put&& put) {
        const __m512i lut = iq4_lut();
#pragma GCC unroll 16
        for (int ib = 0; ib < 8; ++ib) {
            __m512i T[4];
            R.t4(b, 8 + 16 * ib, T);
#pragma GCC unroll 16
            for (int k = 0; k < 4; ++k) {
                put(8 * ib + k, _mm512_shuffle_epi8(lut, lo4(T[k])));
                put(8 * ib + 4 + k, _mm512_shuffle_epi8(lut, hi4(T[k])));
            }
        }
    }
    template <class S>
    [[gnu::always_inline]] static void scales(const S& R, int64_t b, PK& P) {
        const __m512i g0 = R.g(b, 0), g1 = R.g(b, 4);
        for (int ib = 0; ib < 8; ++ib) {
            const __m512i ls = _mm512_or_si512(bits(g1, 8 * (ib / 2) + 4 * (ib % 2), 0xF),
                                               _mm512_slli_epi32(bits(g0, 16 + 2 * ib, 3), 4));
            P.sc[ib] = _mm512_sub_epi32(ls, _mm512_set1_epi32(32));
        }
        P.d = half_lo(g0);
    }
};

// ---- compute: one chunk of unpacked blocks for a tile of T tokens ----

struct Tok {
    const uint8_t* act;    // the token's activation row
    const uint32_t* side;  // its side record
};

// The canonical fma step(s) of one 32-element block for one token, from its exact sum.
template <class Ty>
[[gnu::always_inline]] inline __m512 finish32(__m512i isum, __m512 d, __m512 m, const Tok& tk,
                                              int64_t bg, int64_t nb, __m512 f) {
    const uint32_t* sd = tk.side;
    const __m512 dd = _mm512_mul_ps(d, _mm512_set1_ps(ldf(sd + bg)));
    f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, f);
    if (Ty::kMin) f = _mm512_fmadd_ps(m, _mm512_set1_ps(ldf(sd + nb + bg)), f);
    return f;
}

// The 8 activation dwords at y, each broadcast to the 16 lanes: the first 4 by broadcast
// loads, the last 4 from one 16-byte broadcast load by in-lane shuffles. Per
// block and token the 32-element kernels do 8 vpdpbusd plus a mul and an fma on the two
// FMA pipes and ~11 loads on a machine that loads two per cycle (Zen 5): eight broadcast
// loads made the loads the limit, eight shuffles the four vector pipes. Half and half:
// BM_GemmL1 8 tokens Q4_0 +4%, Q8_0 +10%, 1 token +10%; bench/ab batched 8: Q4_0 1.026 (5
// of 5), Q8_0 1.029 (4 of 5); tg level. (The K-quant loops, which also spend the FMA pipes
// on vpmulld per sub-block, measured level or slower with it: not used there.)
[[gnu::always_inline]] inline void act_dwords8(const uint8_t* y, __m512i v[8]) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) v[k] = _mm512_set1_epi32(ld32(y + 4 * k));
    const __m512i hi = _mm512_broadcast_i32x4(ld128(y + 16));
    v[4] = _mm512_shuffle_epi32(hi, _MM_PERM_AAAA);
    v[5] = _mm512_shuffle_epi32(hi, _MM_PERM_BBBB);
    v[6] = _mm512_shuffle_epi32(hi, _MM_PERM_CCCC);
    v[7] = _mm512_shuffle_epi32(hi, _MM_PERM_DDDD);
}

// acc + vpdpbusd(w, the dword at y broadcast), the broadcast embedded in the instruction's
// memory operand ({1to16}): no broadcast or shuffle of its own (GCC does not fold
// _mm512_set1_epi32 of a load into the operand, so this is written out).
inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const uint8_t* y) {
    struct Dword {
        uint8_t b[4];  // the operand's 4 bytes, at any alignment
    };
    asm("vpdpbusd %[y]%{1to16%}, %[w], %[acc]"
        : [acc] "+v"(acc)
        : [w] "v"(w), [y] "m"(*reinterpret_cast<const Dword*>(y)));
    return acc;
}

// One unpacked block (w: the 8 dword vectors) times one token. Bcast (one-token decode of
// lean_decode's types): the activations through dpbusd_bcast, 9 vector ops a block fewer, so
// more blocks' loads fit the out-of-order window while the weights stream in; the same sums
// in the same order. (For 2-8 tokens act_dwords8's mix stays: there every broadcast load
// meets the loads' limit, BM_GemmL1 Q4_0 / Q8_0 8 tokens 905 / 946 -> 941 / 1078 ns.)
template <class Ty, bool Bcast = false>
[[gnu::always_inline]] inline __m512 step32(const __m512i* w, __m512 d, __m512 m, const Tok& tk,
                                            int64_t bg, int64_t nb, __m512 f) {
    const uint8_t* y = tk.act + bg * Ty::AB + Ty::AO;
    const uint32_t* sd = tk.side;
    __m512i s0 = Ty::kMin ? _mm512_setzero_si512() : _mm512_set1_epi32((int32_t)sd[nb + bg]);
    __m512i s1 = _mm512_setzero_si512();
    if constexpr (Bcast) {
#pragma GCC unroll 4
        for (int k = 0; k < 8; k += 2) {
            s0 = dpbusd_bcast(s0, w[k], y + 4 * k);
            s1 = dpbusd_bcast(s1, w[k + 1], y + 4 * k + 4);
        }
    } else {
        __m512i yv[8];
        act_dwords8(y, yv);
#pragma GCC unroll 4
        for (int k = 0; k < 8; k += 2) {
            s0 = _mm512_dpbusd_epi32(s0, w[k], yv[k]);
            s1 = _mm512_dpbusd_epi32(s1, w[k + 1], yv[k + 1]);
        }
    }
    return finish32<Ty>(_mm512_add_epi32(s0, s1), d, m, tk, bg, nb, f);
}

template <class Ty, int T>
[[gnu::always_inline]] inline void compute32(const P32* pan, int nbc, int64_t b0, int64_t nb,
                                             const Tok* tk, __m512* facc) {
    for (int b = 0; b < nbc; ++b) {
        const P32& P = pan[b];
        __m512i w[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(&P.w[k]);
        const __m512 d = P.d, m = Ty::kMin ? P.m : d;
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) facc[t] = step32<Ty>(w, d, m, tk[t], b0 + b, nb, facc[t]);
    }
}

// The canonical fma step(s) of one K block for one token, from its exact integer sum.
template <class Ty>
[[gnu::always_inline]] inline __m512 finishK(const PK& P, __m512i isum, const Tok& tk, int64_t bg,
                                             int64_t nb, __m512 f) {
    constexpr int NC = Ty::CORR ? Ty::NSUB : 0;
    const float dy = ldf(tk.side + bg);
    f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(P.d, _mm512_set1_ps(dy)), f);
    if constexpr (Ty::NM > 0) {
        const uint32_t* ys = tk.side + nb + nb * NC + bg * Ty::NM;
        __m512i ms = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int p = 0; p < Ty::NM; ++p)
            ms =
                _mm512_add_epi32(ms, _mm512_madd_epi16(P.mn[p], _mm512_set1_epi32((int32_t)ys[p])));
        f = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(P.dm, _mm512_set1_ps(dy)), f);
    }
    return f;
}

// Sub-block j of K block bg (its DW dword vectors w, its scales sc) into the block sums of T
// tokens: each token's exact sub-block sum (plus its side correction), times the scale.
template <class Ty, int T>
[[gnu::always_inline]] inline void subblock_sums(const __m512i* w, __m512i sc, const Tok* tk,
                                                 int64_t bg, int64_t nb, int j, __m512i* isum) {
    constexpr int DW = 64 / Ty::NSUB;
    constexpr int NC = Ty::CORR ? Ty::NSUB : 0;
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        const uint8_t* y = tk[t].act + bg * 292 + 4 + 4 * DW * j;
        __m512i s0 = Ty::CORR ? _mm512_set1_epi32((int32_t)tk[t].side[nb + bg * NC + j])
                              : _mm512_setzero_si512();
        __m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < DW; k += 2) {
            s0 = _mm512_dpbusd_epi32(s0, w[k], _mm512_set1_epi32(ld32(y + 4 * k)));
            s1 = _mm512_dpbusd_epi32(s1, w[k + 1], _mm512_set1_epi32(ld32(y + 4 * k + 4)));
        }
        isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
    }
}

template <class Ty, int T>
[[gnu::always_inline]] inline void computeK(const PK* pan, int nbc, int64_t b0, int64_t nb,
                                            const Tok* tk, __m512* facc) {
    constexpr int NS = Ty::NSUB, DW = 64 / NS;
    for (int b = 0; b < nbc; ++b) {
        const PK& P = pan[b];
        const int64_t bg = b0 + b;
        __m512i isum[T];
        for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
        for (int j = 0; j < NS; ++j) {
            __m512i w[DW];
#pragma GCC unroll 8
            for (int k = 0; k < DW; ++k) w[k] = _mm512_load_si512(&P.w[DW * j + k]);
            const __m512i sc = _mm512_load_si512(&P.sc[j]);
            subblock_sums<Ty, T>(w, sc, tk, bg, nb, j, isum);
        }
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) facc[t] = finishK<Ty>(P, isum[t], tk[t], bg, nb, facc[t]);
    }
}

// One K block for T tokens, each sub-block's dword vectors made from the weights when the
// sub-block loop reaches them and used from registers by every token (no panel written and
// read back: the panel's 64 stores were a fifth of the 8-token kernel's samples).
template <class Ty, int T, class S>
[[gnu::always_inline]] inline void direct_k(const S& R, int64_t b, int64_t nb, const Tok* tk,
                                            __m512* facc) {
    constexpr int NS = Ty::NSUB, DW = 64 / NS;
    PK P;  // scales only
    R.template prefetch_part<0, 2>(b);
    Ty::scales(R, b, P);
    __m512i isum[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int j = 0; j < NS; ++j) {
        __m512i w[DW];
        Ty::sub(R, b, j, w);
        const __m512i sc = _mm512_load_si512(&P.sc[j]);
        subblock_sums<Ty, T>(w, sc, tk, b, nb, j, isum);
    }
    R.template prefetch_part<1, 2>(b);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) facc[t] = finishK<Ty>(P, isum[t], tk[t], b, nb, facc[t]);
}

template <class Ty, class S>
[[gnu::always_inline]] inline void unpack_k(const S& R, int64_t b, PK& P) {
    Ty::weights(R, b, [&](int k, __m512i v) { _mm512_store_si512(&P.w[k], v); });
    Ty::scales(R, b, P);
}

// unpack_k for the batched streaming paths, with R.prefetch(b) in two halves around it: a
// K-quant block is 36 (Q4_K) to 54 (Q6_K) lines, and all at once they stalled the loads
// there (decode prefers bursts, gemm_isa.h; bursts here measured level, bench/ab batched 8).
// BM_MatmulFromMemory 5632 x 2048, 8 tokens, 2 threads: Q6_K 459-501 -> 340-374 us,
// Q4_K 296-319 -> 265-283; bench/ab Q4_K_M batched 8 1.187.
template <class Ty, class S>
[[gnu::always_inline]] inline void prefetch_unpack_k(const S& R, int64_t b, PK& P) {
    R.template prefetch_part<0, 2>(b);
    unpack_k<Ty>(R, b, P);
    R.template prefetch_part<1, 2>(b);
}

// Decode, K-quants: the block's dword vectors go straight into the sub-block sums.
template <class Ty, class Src>
[[gnu::always_inline]] inline __m512 gemv_k(const Src& R, int64_t b, int64_t nb, const Tok& tk,
                                            __m512 f) {
    constexpr int NS = Ty::NSUB, DW = 64 / NS;
    constexpr int NC = Ty::CORR ? NS : 0;
    PK P;  // scales only
    R.template prefetch_burst<true>(b);
    Ty::scales(R, b, P);
    __m512i S[NS];
#pragma GCC unroll 16
    for (int j = 0; j < NS; ++j)
        S[j] = Ty::CORR ? _mm512_set1_epi32((int32_t)tk.side[nb + b * NC + j])
                        : _mm512_setzero_si512();
    const uint8_t* y = tk.act + b * 292 + 4;
    Ty::weights(R, b, [&](int k, __m512i v) {
        S[k / DW] = _mm512_dpbusd_epi32(S[k / DW], v, _mm512_set1_epi32(ld32(y + 4 * k)));
    });
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 16
    for (int j = 0; j < NS; ++j) isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(S[j], P.sc[j]));
    return finishK<Ty>(P, isum, tk, b, nb, f);
}

// ---- AMX: 16-token tiles, integer sums from the tile unit, the same float epilogue ----

constexpr size_t kPanelBytes = 48 * 1024, kTileSumBytes = 64 * 1024;

template <class Pan, class Ty>
void amx_tile(const Pan* pan, int nbc, int64_t b0, int64_t nb, const GemmArgs& a, int64_t t0,
              int32_t* C, float* acc_buf, bool first) {
    constexpr bool k32 = sizeof(Pan) == sizeof(P32);
    Tok tk[16];
    __m512 f[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) {
        tk[t] = {a.act + (size_t)(t0 + t) * a.act_stride,
                 a.side + (size_t)(t0 + t) * a.side_stride};
        f[t] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc_buf + 16 * t);
    }
    if constexpr (k32) {
        amx::block_sums(tk[0].act + b0 * Ty::AB + Ty::AO, a.act_stride, Ty::AB,
                        reinterpret_cast<const uint8_t*>(pan[0].w), sizeof(P32), nbc, C);
        for (int b = 0; b < nbc; ++b) {
            const int64_t bg = b0 + b;
            const __m512 d = pan[b].d, m = Ty::kMin ? pan[b].m : d;
            const int32_t* cb = C + b * 256;
#pragma GCC unroll 16
            for (int t = 0; t < 16; ++t) {
                __m512i isum = _mm512_load_si512(cb + 16 * t);
                if (!Ty::kMin)
                    isum = _mm512_add_epi32(isum, _mm512_set1_epi32((int32_t)tk[t].side[nb + bg]));
                f[t] = finish32<Ty>(isum, d, m, tk[t], bg, nb, f[t]);
            }
        }
    } else {
        constexpr int NS = Ty::NSUB, DW = 64 / NS;
        constexpr int NC = Ty::CORR ? NS : 0;
        for (int b = 0; b < nbc; ++b)
            amx::block_sums(tk[0].act + (b0 + b) * 292 + 4, a.act_stride, 4 * DW,
                            reinterpret_cast<const uint8_t*>(pan[b].w), 64 * DW, NS,
                            C + b * NS * 256);
        for (int b = 0; b < nbc; ++b) {
            const int64_t bg = b0 + b;
            const PK& P = pan[b];
            const int32_t* cb = C + b * NS * 256;
#pragma GCC unroll 4
            for (int t = 0; t < 16; ++t) {
                __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 16
                for (int j = 0; j < NS; ++j) {
                    __m512i sj = _mm512_load_si512(cb + j * 256 + 16 * t);
                    if (Ty::CORR)
                        sj = _mm512_add_epi32(
                            sj, _mm512_set1_epi32((int32_t)tk[t].side[nb + bg * NC + j]));
                    isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(sj, P.sc[j]));
                }
                f[t] = finishK<Ty>(P, isum, tk[t], bg, nb, f[t]);
            }
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) _mm512_store_ps(acc_buf + 16 * t, f[t]);
}

// ---- driver ----

template <class C, class Pan, int T>
void run_tile(const Pan* pan, int nbc, int64_t b0, int64_t nb, const Tok* tk, float* acc_buf,
              bool first) {
    __m512 facc[T];
    for (int t = 0; t < T; ++t)
        facc[t] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc_buf + 16 * t);
    C::fn(pan, nbc, b0, nb, tk, facc);
    for (int t = 0; t < T; ++t) _mm512_store_ps(acc_buf + 16 * t, facc[t]);
}

// Tokens [t0, n) in tiles of 8, 4, 2 and 1 (largest first): fn.template operator()<T>(t).
template <class I, class F>
[[gnu::always_inline]] inline void for_each_tile(I t0, I n, F&& fn) {
    while (t0 < n) {
        const I left = n - t0;
        if (left >= 8) {
            fn.template operator()<8>(t0), t0 += 8;
        } else if (left >= 4) {
            fn.template operator()<4>(t0), t0 += 4;
        } else if (left >= 2) {
            fn.template operator()<2>(t0), t0 += 2;
        } else {
            fn.template operator()<1>(t0), t0 += 1;
        }
    }
}

// Batches of 9..kStreamMany tokens (larger decode batches, speculative checks, short prompt
// chunks; 2-8 go to stream_group) read each block once: unpacked, then used by tiles of 8, 4,
// 2, 1 tokens in turn while it is in registers or L1, instead of a panel of CB blocks written
// to scratch and read back per tile. The accumulators stay in L1 between tiles. Each token's
// arithmetic is the panel path's (the same block order and operations), so the results do not
// depend on the path.
constexpr int kStreamMany = 16;

// LOKAL_GEMM_FEW_PAGES=0: Q5_0's, Q4_1's and Q5_1's batches of 2-8 tokens without page requests.
bool few_pages() {
    static const bool on = env_switch("LOKAL_GEMM_FEW_PAGES");
    return on;
}

// LOKAL_GEMM_STREAM=0 sends these batches to the panel path (for A/B measurements).
bool stream_few_tokens() {
    static const bool on = env_switch("LOKAL_GEMM_STREAM");
    return on;
}

// LOKAL_GEMM_FIXED=0 sends 2-8 tokens to stream_tiles instead of stream_group (for A/B).
bool stream_fixed_tokens() {
    static const bool on = env_switch("LOKAL_GEMM_FIXED");
    return on;
}

template <class Pan, class Ty, template <class, int> class Compute, class S>
void stream_tiles(const GemmArgs& a, const S& R, int64_t g, __mmask16 out_mask) {
    constexpr int QK = sizeof(Pan) == sizeof(P32) ? 32 : 256;
    const int64_t nb = a.n / QK;
    const int nt = (int)a.n_tokens;
    Tok tk[kStreamMany];
    __m512 f[kStreamMany];
    for (int t = 0; t < nt; ++t) {
        tk[t] = {a.act + (size_t)t * a.act_stride, a.side + (size_t)t * a.side_stride};
        f[t] = _mm512_setzero_ps();
    }
    Pan P;
    for (int64_t b = 0; b < nb; ++b) {
        if constexpr (QK == 32) {
            R.prefetch(b);
            Ty::unpack(R, b, P);
        } else {
            prefetch_unpack_k<Ty>(R, b, P);
        }
        for_each_tile(0, nt,
                      [&]<int T>(int t0) { Compute<Ty, T>::fn(&P, 1, b, nb, tk + t0, f + t0); });
    }
    for (int t = 0; t < nt; ++t) _mm512_mask_storeu_ps(a.y + t * a.ldy + g, out_mask, f[t]);
}

// Exactly T tokens (T <= kStreamTokens): one pass over the row group's weights with the
// accumulators and token pointers in registers (a compile-time T lets them stay there).
// Each unpacked block goes straight from registers into every token's step32; a K block is
// unpacked to L1 and read back by computeK, except for decode (T = 1), where gemv_k feeds
// the dword vectors straight into the sub-block sums, and for Q4_K, whose sub-blocks
// direct_k makes one at a time as it uses them (Q5_K and Q6_K share their high-bit
// vectors between sub-blocks and were slower that way). The AVX2 kernels have the same
// shape (there Q4_K's sub-blocks made per 4-token tile measured level: not used).
// Tokens 2-8 ran 1.21x (Q4_0) and 1.12x (Q8_0) faster this way than through stream_tiles,
// whose run-time token count keeps the accumulators in memory (bench/ab, batched 8).
constexpr int kStreamTokens = 8;

// Types whose one-token decode takes step32<Ty, true> in a loop unrolled by 8 (kLeanDecode): Q4_0
// and IQ4_NL, measured faster (docs/PERFORMANCE.md, "Decode: the 32-element loop unrolled");
// Q4_1, Q5_0 and Q5_1 slower (the broadcasts alone 0.96-0.98x, with the unrolling Q5_0
// 0.89x; their unpacks are longer).
template <class Ty>
constexpr bool lean_decode() {
    if constexpr (requires { Ty::kLeanDecode; })
        return Ty::kLeanDecode;
    else
        return false;
}

// Types whose batches of exactly 16 tokens take stream_group<16> (kStream16): Q8_0 (gemm_group).
template <class Ty>
constexpr bool stream16() {
    if constexpr (requires { Ty::kStream16; })
        return Ty::kStream16;
    else
        return false;
}

// Block b of a row group for T tokens (stream_group's loop body).
template <class Pan, class Ty, int T, class S>
[[gnu::always_inline]] inline void stream_block(const S& R, int64_t b, int64_t nb, const Tok* tk,
                                                __m512* f) {
    constexpr int QK = sizeof(Pan) == sizeof(P32) ? 32 : 256;
    if constexpr (QK == 32) {
        if constexpr (T == 1)
            R.template prefetch_burst<false>(b);
        else if constexpr (T <= kStreamTokens)
            R.prefetch_few(b);
        else
            R.prefetch(b);
        P32 P;
        Ty::unpack(R, b, P);
        const __m512 m = Ty::kMin ? P.m : P.d;
        constexpr bool kBcast = (T == 1 && lean_decode<Ty>()) || T > kStreamTokens;
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) f[t] = step32<Ty, kBcast>(P.w, P.d, m, tk[t], b, nb, f[t]);
    } else if constexpr (T == 1) {
        f[0] = gemv_k<Ty>(R, b, nb, tk[0], f[0]);
    } else if constexpr (requires { Ty::sub(R, b, 0, (__m512i*)nullptr); }) {
        direct_k<Ty, T>(R, b, nb, tk, f);
    } else {
        PK P;
        prefetch_unpack_k<Ty>(R, b, P);
        computeK<Ty, T>(&P, 1, b, nb, tk, f);
    }
}

template <class Pan, class Ty, int T, class S>
void stream_group(const GemmArgs& a, const S& R, int64_t g, __mmask16 out_mask) {
    constexpr int QK = sizeof(Pan) == sizeof(P32) ? 32 : 256;
    const int64_t nb = a.n / QK;
    Tok tk[T];
    __m512 f[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
        tk[t] = {a.act + (size_t)t * a.act_stride, a.side + (size_t)t * a.side_stride};
        f[t] = _mm512_setzero_ps();
    }
    // lean_decode's types unrolled by 8 blocks (Q4_0's burst, gemm_isa.h): with step32<Ty, true>,
    // Q4_0 tg 1.040x (9 of 10), IQ4_NL 1.037x (10 of 10) in bench/ab with the sides alternating
    // (1.08x with the new build always first). The batches (Q4_0 batched 8 0.84x) and the AVX2
    // loops (Q4_K_M 0.68x) measured slower unrolled; the K-quants level.
    if constexpr (QK == 32 && T == 1 && lean_decode<Ty>()) {
#pragma GCC unroll 8
        for (int64_t b = 0; b < nb; ++b) stream_block<Pan, Ty, T>(R, b, nb, tk, f);
    } else {
        for (int64_t b = 0; b < nb; ++b) stream_block<Pan, Ty, T>(R, b, nb, tk, f);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(a.y + t * a.ldy + g, out_mask, f[t]);
}

// Decode (one token) of two packed 16-row groups far apart (GemmArgs::pair_rows), in
// lockstep block by block: each thread then reads two forward streams, as the read-bandwidth
// test's best pass does (the hardware prefetcher keeps more lines in flight for two streams
// than for one); each activation dword is an embedded broadcast of both groups' vpdpbusd
// (dpbusd_bcast: Q8_0 tg 1.05x against one shared register broadcast in one A/B, 0.98-1.03x
// in the later ones against the code before it). Each
// group's float chain is stream_group<1>'s, in the same order: the same bits. Used for Q8_0
// (kernels_avx512.cpp says which types and why): TinyLlama tg against one group at a time
// (bench/ab, LOKAL_GEMM_PAIRS=0 as B, Zen 5, 2026-12-06) Q8_0 1.155 and 1.104; Q4_0 1.077 in
// fast-memory minutes but 0.929 in slow ones. With both bursts at the same block: Q4_0 0.85.
template <class Ty, TensorType TT>
void decode_pair32(const GemmArgs& a, int64_t gA, int64_t gB, size_t ahead) {
    const int64_t nb = a.n / 32;
    const Packed<TT> RA{a.w + (size_t)gA * a.w_stride, ahead};
    const Packed<TT> RB{a.w + (size_t)gB * a.w_stride, ahead};
    const Tok tk{a.act, a.side};
    __m512 fA = _mm512_setzero_ps(), fB = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        RA.template prefetch_burst<false>(b);
        prefetch_decode_burst_second<2 * Packed<TT>::kRun, Packed<TT>::kKick>(
            RB.base, b, ahead ? kDecodeAhead : 0);
        P32 PA, PB;
        Ty::unpack(RA, b, PA);
        Ty::unpack(RB, b, PB);
        const uint8_t* y = tk.act + b * Ty::AB + Ty::AO;
        const __m512i c0 =
            Ty::kMin ? _mm512_setzero_si512() : _mm512_set1_epi32((int32_t)tk.side[nb + b]);
        __m512i a0 = c0, a1 = _mm512_setzero_si512(), b0 = c0, b1 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 8; k += 2) {
            a0 = dpbusd_bcast(a0, PA.w[k], y + 4 * k);
            a1 = dpbusd_bcast(a1, PA.w[k + 1], y + 4 * k + 4);
            b0 = dpbusd_bcast(b0, PB.w[k], y + 4 * k);
            b1 = dpbusd_bcast(b1, PB.w[k + 1], y + 4 * k + 4);
        }
        fA = finish32<Ty>(_mm512_add_epi32(a0, a1), PA.d, Ty::kMin ? PA.m : PA.d, tk, b, nb, fA);
        fB = finish32<Ty>(_mm512_add_epi32(b0, b1), PB.d, Ty::kMin ? PB.m : PB.d, tk, b, nb, fB);
    }
    _mm512_storeu_ps(a.y + gA, fA);
    _mm512_storeu_ps(a.y + gB, fB);
}

// stream_group<T> for T = a.n_tokens (1 .. T), picked by direct calls the compiler inlines:
// through a table of function pointers 8 sequences ran 0.92x as fast (bench/ab, Q4_0).
template <class Pan, class Ty, int T = kStreamTokens, class S>
[[gnu::always_inline]] inline void stream_by_count(const GemmArgs& a, const S& R, int64_t g,
                                                   __mmask16 out_mask) {
    if constexpr (T > 1)
        if (a.n_tokens < T) return stream_by_count<Pan, Ty, T - 1>(a, R, g, out_mask);
    stream_group<Pan, Ty, T>(a, R, g, out_mask);
}

// One group of 16 rows (g) for every token, reading the weights through S (Strided/Packed).
template <class Pan, class Ty, template <class, int> class Compute, int CB, class S>
void gemm_group(const GemmArgs& a, const S& R, int64_t g, int nv, bool use_amx, Pan* pan,
                int32_t* tile_sums, float* acc) {
    constexpr int QK = sizeof(Pan) == sizeof(P32) ? 32 : 256;
    const int64_t nb = a.n / QK;
    const __mmask16 out_mask = (__mmask16)((1u << nv) - 1);
    if (a.n_tokens <= kStreamTokens && (a.n_tokens == 1 || stream_fixed_tokens()))
        return stream_by_count<Pan, Ty>(a, R, g, out_mask);
    // Q8_0, exactly 16 tokens (a server's 16 busy slots): stream_group's one pass with the 16
    // accumulators in registers (the activations as embedded broadcasts: step32's Bcast) rather
    // than stream_tiles' accumulators in L1. Batched 16 1.291 (4 of 4; `bench/ab --metric
    // batched16 --env-b LOKAL_GEMM_STREAM16=0`, 2026-12-07 23:00); the other 32-element types
    // were level or slower that way (Q4_0 0.972, IQ4_NL 0.919, Q5_0 0.962, Q4_1 0.991).
    // LOKAL_GEMM_STREAM16=0: stream_tiles (for A/B).
    if constexpr (stream16<Ty>()) {
        static const bool sixteen = env_switch("LOKAL_GEMM_STREAM16");
        if (a.n_tokens == kStreamMany && sixteen && stream_few_tokens())
            return stream_group<Pan, Ty, kStreamMany>(a, R, g, out_mask);
    }
    if (a.n_tokens <= kStreamMany && stream_few_tokens())
        return stream_tiles<Pan, Ty, Compute>(a, R, g, out_mask);
    Tok tk_all[8];
    for (int64_t c0 = 0; c0 < nb; c0 += CB) {
        const int nbc = (int)std::min<int64_t>(CB, nb - c0);
        for (int b = 0; b < nbc; ++b) {
            if constexpr (QK == 32) {
                Ty::unpack(R, c0 + b, pan[b]);
            } else {
                unpack_k<Ty>(R, c0 + b, pan[b]);
            }
        }
        int64_t t0 = 0;
        if (use_amx)
            for (; t0 + 16 <= a.n_tokens; t0 += 16)
                amx_tile<Pan, Ty>(pan, nbc, c0, nb, a, t0, tile_sums, acc + 16 * t0, c0 == 0);
        for_each_tile(t0, a.n_tokens, [&]<int T>(int64_t t) {
            for (int i = 0; i < T; ++i)
                tk_all[i] = {a.act + (size_t)(t + i) * a.act_stride,
                             a.side + (size_t)(t + i) * a.side_stride};
            run_tile<Compute<Ty, T>, Pan, T>(pan, nbc, c0, nb, tk_all, acc + 16 * t, c0 == 0);
        });
    }
    for (int64_t t = 0; t < a.n_tokens; ++t)
        _mm512_mask_storeu_ps(a.y + t * a.ldy + g, out_mask, _mm512_load_ps(acc + 16 * t));
}

// How far ahead (bytes) the packed paths prefetch; 0: not at all. A 16-row unit is one
// forward stream (gemm_common.h) that the hardware prefetcher follows by itself while the
// loop between loads is short; where the arithmetic per byte is longer it falls behind.
// Decode: kDecodeAhead in bursts (gemm_isa.h; Packed::prefetch_burst).
// Batches: 8 KiB best of 8/16 KiB, one and two units (BM_MatmulFromMemory 8 tokens, 2
// threads: Q4_0 238-261 -> 193-216 us, Q6_K 337-378 -> 270-285, Q4_K 248-289 -> 238-249;
// Q8_0 level; 12 KiB: Q4_K_M batched 8 0.936x, bench/ab). LOKAL_GEMM_PREFETCH=0: none
// anywhere (for A/B).
constexpr size_t kBatchAhead = 8192;
static_assert(kBatchAhead == kDecodeAhead, "prefetch_decode_start covers the batches' gap too");
size_t packed_prefetch_ahead() {
    static const bool on = env_switch("LOKAL_GEMM_PREFETCH");
    return on ? kBatchAhead : 0;
}

template <class Pan, class Ty, TensorType TT, template <class, int> class Compute, int CB, bool Amx>
void gemm_quant(const GemmArgs& a, int64_t r0, int64_t r1, void* scratch) {
    constexpr int QK = sizeof(Pan) == sizeof(P32) ? 32 : 256;
    constexpr int BB = pack_layout(TT).block_bytes;
    static_assert(BB == Ty::BB);
    if (split_token_blocks(a, kStreamMany, [&](const GemmArgs& s) {
            gemm_quant<Pan, Ty, TT, Compute, CB, Amx>(s, r0, r1, scratch);
        }))
        return;
    Pan* pan = static_cast<Pan*>(scratch);
    int32_t* tile_sums = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(scratch) + kPanelBytes);
    float* acc =
        reinterpret_cast<float*>(static_cast<uint8_t*>(scratch) + kPanelBytes + kTileSumBytes);
    static_assert(sizeof(Pan) * CB <= kPanelBytes);
    static_assert(QK == 32 ? CB * 1024 <= kTileSumBytes : CB * Ty::NSUB * 1024 <= kTileSumBytes);
    // Full 16-token tiles go to the AMX tile unit (same bits as the VNNI tiles).
    const bool use_amx = Amx && a.n_tokens >= 16;
    if (use_amx) amx::configure(QK == 32 ? 32 : 256 / Ty::NSUB);
    // In a packed matrix, rows [0, packed_end) are packed: 16-row units (interleave 2) from
    // row 0 while they fit, then at most one 8-row group; the rest row-major.
    const int64_t packed_end = a.packed ? a.n_rows - a.n_rows % kPackRows : 0;
    const size_t ahead = packed_prefetch_ahead();
    std::vector<uint8_t> pad;
    // Decode's first bytes (gemm_isa.h); also for the 32-element types' batches of 2-8 tokens,
    // which prefetch kBatchAhead (as far) ahead of each block: bench/ab --metric batched8 Q4_0
    // 1.016 (8 of 8), Q8_0 1.011 (5 of 8); for the K-quants' batches 0.986-0.988 (not used).
    if ((a.n_tokens == 1 || (QK == 32 && a.n_tokens <= kStreamTokens)) && ahead &&
        r0 + RG <= packed_end)
        prefetch_decode_start(a.w + (size_t)r0 * a.w_stride,
                              (size_t)(std::min(r1, packed_end) - r0) * a.w_stride);
    if constexpr (QK == 32) {
        if (a.pair_rows) {  // whole packed groups only (matmul.cpp)
            if (ahead)
                prefetch_decode_start(a.w + (size_t)(r0 + a.pair_rows) * a.w_stride,
                                      (size_t)(r1 - r0) * a.w_stride);
            for (int64_t g = r0; g < r1; g += RG)
                decode_pair32<Ty, TT>(a, g, g + a.pair_rows, ahead);
            return;
        }
    }
    for (int64_t g = r0; g < r1; g += RG) {
        const int nv = (int)std::min<int64_t>(RG, r1 - g);
        const uint8_t* base = a.w + (size_t)g * a.w_stride;
        if (g + RG <= packed_end) {
            const Packed<TT> R{base, ahead, few_pages()};
            gemm_group<Pan, Ty, Compute, CB>(a, R, g, nv, use_amx, pan, tile_sums, acc);
            continue;
        }
        if (nv < RG) {  // a partial group: pad to 16 rows (the extra outputs are discarded)
            pad.assign((size_t)RG * a.w_stride, 0);
            std::memcpy(pad.data(), base, (size_t)nv * a.w_stride);
            // Its first 8 rows may be a packed group: back to row-major in the copy.
            const int64_t packed_rows = std::clamp<int64_t>(packed_end - g, 0, nv);
            if (packed_rows > 0) unpack_rows(TT, a.n, packed_rows, pad.data(), 1);
            base = pad.data();
        }
        const Strided<BB> R{Rows(base, a.w_stride)};
        gemm_group<Pan, Ty, Compute, CB>(a, R, g, nv, use_amx, pan, tile_sums, acc);
    }
    if (use_amx) amx::release();
}

template <class Ty, int T>
struct C32 {
    [[gnu::always_inline]] static void fn(const P32* p, int n, int64_t b0, int64_t nb,
                                          const Tok* tk, __m512* f) {
        compute32<Ty, T>(p, n, b0, nb, tk, f);
    }
};
template <class Ty, int T>
struct CK {
    [[gnu::always_inline]] static void fn(const PK* p, int n, int64_t b0, int64_t nb, const Tok* tk,
                                          __m512* f) {
        computeK<Ty, T>(p, n, b0, nb, tk, f);
    }
};

template <bool Amx>
GemmFn quant_gemm_for(TensorType t) {
    switch (t) {
        case TensorType::Q4_0:
            return &gemm_quant<P32, TQ4_0, TensorType::Q4_0, C32, 32, Amx>;
        case TensorType::Q4_1:
            return &gemm_quant<P32, TQ4_1, TensorType::Q4_1, C32, 32, Amx>;
        case TensorType::Q5_0:
            return &gemm_quant<P32, TQ5<false>, TensorType::Q5_0, C32, 32, Amx>;
        case TensorType::Q5_1:
            return &gemm_quant<P32, TQ5<true>, TensorType::Q5_1, C32, 32, Amx>;
        case TensorType::Q8_0:
            return &gemm_quant<P32, TQ8_0, TensorType::Q8_0, C32, 32, Amx>;
        case TensorType::IQ4_NL:
            return &gemm_quant<P32, TIQ4_NL, TensorType::IQ4_NL, C32, 32, Amx>;
        case TensorType::Q2_K:
            return &gemm_quant<PK, TQ2_K, TensorType::Q2_K, CK, 4, Amx>;
        case TensorType::Q3_K:
            return &gemm_quant<PK, TQ3_K, TensorType::Q3_K, CK, 4, Amx>;
        case TensorType::Q4_K:
            return &gemm_quant<PK, TQ45_K<false>, TensorType::Q4_K, CK, 4, Amx>;
        case TensorType::Q5_K:
            return &gemm_quant<PK, TQ45_K<true>, TensorType::Q5_K, CK, 4, Amx>;
        case TensorType::Q6_K:
            return &gemm_quant<PK, TQ6_K, TensorType::Q6_K, CK, 4, Amx>;
        case TensorType::IQ4_XS:
            return &gemm_quant<PK, TIQ4_XS, TensorType::IQ4_XS, CK, 4, Amx>;
        default:
            return nullptr;
    }
}

}  // namespace

GemmFn quant_gemm(TensorType t, bool amx) {
    return amx ? quant_gemm_for<true>(t) : quant_gemm_for<false>(t);
}

}  // namespace lokal::gemm::avx512
