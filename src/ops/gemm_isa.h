// Internal to src/ops: the per-ISA kernel entry points the tables in kernels_*.cpp assemble.
#pragma once

#include <xmmintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "ops/gemm_common.h"

namespace lokal::gemm {

// vec_dot of one row through a GEMM kernel (1 row x 1 token): the same arithmetic as the
// matmul by construction.
float vec_dot_via(GemmFn fn, TensorType t, int64_t n, const void* w_row, const void* act_row);

// Float-weight tiles (kernels_avx2.cpp, kernels_avx512.cpp) read R row-major rows side by
// side, short streams that the hardware prefetcher picked up late: F16 decode read weights at
// a third of the bandwidth (qwen2.5-0.5b shape, 15 GB/s of 47). So on a tile's first token
// tile, every 64 bytes, each row's line kFloatAhead bytes ahead is prefetched; past the row's
// end (and for rows shorter than the distance) the same place in the row R further down, the
// next tile's. 2048 was the best of 512 B - 8 KiB in BM_MatmulFromMemory (F16 and BF16, 2048
// and 5632 x 2048, AVX-512; 2026-12-05). at: the bytes of each row read so far.
constexpr int64_t kFloatAhead = 2048;

// Quantized decode (one token) streams each thread's packed row units front to back and
// prefetches kDecodeAhead bytes ahead in bursts: at every Burst-th block, the lines of the
// Burst blocks from there (Burst whole blocks of about kDecodeBurstBytes: 8 Q4_0 blocks of
// 16 rows, 4 of Q8_0, one K-quant block on AVX-512; as many bytes of 8-row blocks on AVX2).
// Before, every block requested its own lines (AVX-512: Q4_0 4 KiB ahead, Q8_0 none,
// K-quants in two halves around the block; AVX2: each block 2 KiB ahead), and the decode
// matmuls read 30-36 GB/s where the K-quants' whole-block requests read 39-46 (`lokal bench
// --matmul-profile`, llama-2-7b and TinyLlama shapes, Zen 5). A burst's lines are requested
// back to back (Stepped = false) except on AVX-512 K-quant decode, where back to back they
// held up the block's arithmetic: there one per loop step (TinyLlama Q4_K_M tg 0.81x the
// halves before back to back, 1.18x stepped; stepped Q4_0 was 0.94-0.95x back to back, and
// AVX2 Q4_K_M stepped 1.18x the old and back to back 1.47x). Sizes and distances, alternated
// `bench/ab` through temporary switches: bursts of 1152 bytes 0.96x, 4608 0.92-0.94x, 6912
// and 9216 slower still; 4 KiB ahead 0.93x (AVX2 Q4_K_M), 6-12 KiB no better than 8. (A
// switch read inside the loop can slow the side it is compared with, docs/PERFORMANCE.md:
// built binaries put 12 KiB at 1.02-1.04x on AVX-512 decode once, level on 2026-12-06.) The
// batches' distance is their own (packed_prefetch_ahead).
constexpr int kDecodeBurstBytes = 2304;
constexpr size_t kDecodeAhead = 8192;

// Whole blocks of `Run` bytes per burst.
constexpr int decode_burst_blocks(int run) {
    return std::max(1, (kDecodeBurstBytes + run / 2) / run);
}

// The burst of block b of a packed unit whose blocks are `Run` bytes apart (see above).
// Kick: instead of every line of the burst, only the first line of each 4 KiB page the burst
// reaches (the bursts tile the stream, so each page once): the hardware prefetcher, which
// works within a page, then streams the page from its first line on, kDecodeAhead before the
// kernel gets there. Used by the AVX-512 decode of the 32-element types (Packed::kKick in
// gemm_avx512.cpp): TinyLlama tg Q4_0 1.04-1.10, Q8_0 1.09-1.12, IQ4_NL 1.06, Q5_0 1.06
// (bench/ab with the sides alternating, 2026-12-07; the committed code ahead in every pair). Not
// for the K-quants (Q4_K_M 0.49; not for the zig-zag between a block's two 8-row runs: packed
// so that the decode reads line after line it was as slow, docs/PERFORMANCE.md) nor AVX2
// (Q4_0 1.004, Q4_K_M 0.873). Plain reads with one request per page: 37.3 GB/s on one
// thread and 71.2 on two, where the bursts read 26.5 and 50.2 (bench/stream_order.cpp,
// docs/PERFORMANCE.md).
template <int Run, bool Stepped, bool Kick = false>
[[gnu::always_inline]] inline void prefetch_decode_burst(const uint8_t* unit, int64_t b,
                                                         size_t ahead) {
    constexpr int kBurst = decode_burst_blocks(Run);
    constexpr int n = (Run * kBurst + 63) / 64;
    if (!ahead || b % kBurst != 0) return;
    const char* p = (const char*)unit + (size_t)b * Run + ahead;
    if constexpr (Kick) {
        const uintptr_t first = (uintptr_t)p, end = first + (uintptr_t)Run * kBurst;
        for (uintptr_t page = (first + 4095) & ~(uintptr_t)4095; page < end; page += 4096)
            _mm_prefetch((const char*)page, _MM_HINT_T0);
    } else if constexpr (!Stepped) {
#pragma GCC unroll 64
        for (int l = 0; l < n; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
    } else {
#pragma GCC unroll 1
        for (int l = 0; l < n; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
    }
}

// Where a kernel requests every line of its weights kDecodeAhead ahead (the K-quant decode,
// the batches of 2-16 tokens), the first line of each page can be requested twice as far ahead
// as well: the page's lines are then on their way (the hardware prefetcher streams a page from
// a request for its first line) when the line requests reach them. Used on AVX-512 (Zen 5,
// 2026-12-07, docs/PERFORMANCE.md; bench/ab, built binaries against the code before) by:
// - the K-quant decode: Q4_K_M tg 1.002, 1.023, 1.013, 1.010 (27 of 40 pairs ahead), Q6_K
//   1.014, 1.002 (through a temporary switch: 16 KiB 1.04, 12 KiB 0.99, 24 KiB 0.97, 32 KiB
//   0.94);
// - Q8_0's batches: batched 8 1.219 (6 of 6), 1.129 (8 of 8); tg level (1.011), as expected:
//   the decode does not take this path.
// Not used for Q4_0's batches: 1.03-1.12 in one form of the code, 0.73-0.81 in another, and
// its decode (untouched) 0.95-0.96 beside the first: code placement, not the requests, it
// seems. Nor for the K-quant batches: Q4_K_M batched 8 1.008, 0.987, 1.001.
constexpr size_t kPageAheadOfLines = 2 * kDecodeAhead;

// The bursts of a second stream read in lockstep with a first (decode pairs: gemm_avx512.cpp,
// decode_pair32): as far ahead, but half a burst later than the first stream's; at the same
// block (72 Q4_0 lines back to back) they made the pairs slower than one group at a time.
template <int Run, bool Kick = false>
[[gnu::always_inline]] inline void prefetch_decode_burst_second(const uint8_t* unit, int64_t b,
                                                                size_t ahead) {
    constexpr int kHalf = decode_burst_blocks(Run) / 2;
    prefetch_decode_burst<Run, false, Kick>(unit, b + kHalf,
                                            ahead ? ahead - (size_t)kHalf * Run : 0);
}

// The first kDecodeAhead bytes of a decode range, requested before its first block: the
// bursts fetch kDecodeAhead ahead of the block being read, so the first bytes of a range
// were fetched by nobody but the hardware prefetcher, which starts each new stream cold —
// and every decode call starts two (one per thread's span) plus one for each piece a thread
// takes from the back of another's (ThreadPool::parallel_spans). One request per loop step,
// as the K-quant bursts. Measured (`bench/ab`, tg, Zen 5, 2026-12-06): docs/PERFORMANCE.md,
// "Decode: the first bytes of every range".
[[gnu::always_inline]] inline void prefetch_decode_start(const uint8_t* p, size_t bytes) {
    bytes = std::min(bytes, kDecodeAhead);
#pragma GCC unroll 1
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char*)p + o, _MM_HINT_T0);
}

// Batches go over their tokens in blocks of this many bytes of activations, which stay in L2
// (1-2 MiB on AVX-512 CPUs, 512 KiB on Zen 3) while every tile of the call reads them: with
// 512 tokens at once they streamed from L3 for every tile and the tiles waited on them.
// BM_Matmul 512 tokens, 2 threads. Float weights on AVX-512 (float_tiles_4x4), alternated
// through a temporary switch (2026-12-05): F16 2048 x 2048 16.5-17.8 -> 13.5-15.2 ms, 5632 x
// 2048 44.7-50.1 -> 38.4-42.8; BF16 9.3-10.1 -> 8.3-8.9, 25.6-28.0 -> 22.5-25.8 (512 KiB level
// or slightly better, less safe on smaller L2s; the AVX2 F16 tiles are compute-bound: level
// there, not used). Quantized weights (split_token_blocks, AVX-512 and AVX2), built binaries,
// min of 3 alternated (2026-12-06): Q4_0 2048 x 2048 6.35 -> 4.99 ms, 5632 x 2048 15.5 -> 12.6;
// Q4_K 5.65 -> 4.94, 14.8 -> 12.6; Q8_0 6.20 -> 5.78, 15.9 -> 13.1; bench/ab pp512 Q4_0
// 1.014-1.016, Q4_K_M 1.10, Q8_0 1.05, llama-2-7b Q4_0 pp256 1.12; 512 KiB level with 256.
constexpr int64_t kActBlockBytes = int64_t{256} << 10;

// Runs fn on consecutive token blocks of `a` (kActBlockBytes of activations, at least 16
// tokens each, whole 16-token AMX tiles) when a has more than `stream_max` tokens and more
// than one block; returns whether it did (else the caller computes `a` as it is). Each token's
// arithmetic does not depend on the batch (gemm_common.h), so neither do the results.
template <class F>
bool split_token_blocks(const GemmArgs& a, int64_t stream_max, F&& fn) {
    if (a.n_tokens <= stream_max || a.act_stride == 0) return false;
    const int64_t tb = std::max<int64_t>(16, kActBlockBytes / (int64_t)a.act_stride / 16 * 16);
    if (tb >= a.n_tokens) return false;
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += tb) {
        GemmArgs s = a;
        s.act += (size_t)t0 * a.act_stride;
        if (s.side) s.side += (size_t)t0 * a.side_stride;
        s.y += t0 * a.ldy;
        s.n_tokens = std::min(tb, a.n_tokens - t0);
        fn(s);
    }
    return true;
}

// The first bytes of a float tile's R weight rows (from row r) and T activation rows (from
// token t).
template <int R, int T>
[[gnu::always_inline]] inline void float_tile_rows(const GemmArgs& a, int64_t r, int64_t t,
                                                   const uint8_t* (&wp)[R],
                                                   const uint8_t* (&xp)[T]) {
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) wp[i] = a.w + (size_t)(r + i) * a.w_stride;
#pragma GCC unroll 8
    for (int j = 0; j < T; ++j) xp[j] = a.act + (size_t)(t + j) * a.act_stride;
}

// MXCSR's DAZ and FTZ for one GEMM call of BF16 weights (gemm_common.h: the canonical BF16
// order reads denormals as zero and flushes denormal results, as the BF16 dot product
// instruction does; the fma paths get that from MXCSR). Set once per call, around the
// reduction tree too.
struct MxcsrDazFtz {
    unsigned saved = _mm_getcsr();
    MxcsrDazFtz() { _mm_setcsr(saved | 0x8040); }
    ~MxcsrDazFtz() { _mm_setcsr(saved); }
    MxcsrDazFtz(const MxcsrDazFtz&) = delete;
    MxcsrDazFtz& operator=(const MxcsrDazFtz&) = delete;
};

template <int R>
[[gnu::always_inline]] inline void prefetch_float_rows(const uint8_t* const (&wp)[R],
                                                       size_t w_stride, int64_t row_bytes,
                                                       int64_t at) {
    const int64_t p = at + (kFloatAhead < row_bytes ? kFloatAhead : row_bytes);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
        _mm_prefetch(
            (const char*)(p < row_bytes ? wp[i] + p : wp[i] + R * w_stride + (p - row_bytes)),
            _MM_HINT_T0);
}

namespace avx512 {
// gemm_avx512.cpp; amx: 16-token tiles through the AMX tile unit (same results).
GemmFn quant_gemm(TensorType t, bool amx);
}  // namespace avx512
namespace avx2 {
GemmFn quant_gemm(TensorType t);  // gemm_avx2.cpp
}

}  // namespace lokal::gemm
