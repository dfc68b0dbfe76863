// Internal to src/ops: the per-ISA kernel entry points the tables in kernels_*.cpp assemble.
#pragma once

#include <xmmintrin.h>

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

// Float-weight batches on AVX-512 go over tokens in blocks of this many bytes of activations,
// which stay in L2 (1-2 MiB on AVX-512 CPUs) while every tile of the call reads them: with
// 512 tokens at once they streamed from L3 for every 4-row tile and the tiles waited on them.
// BM_Matmul 512 tokens, 2 threads, alternated through a temporary switch (2026-12-05): F16
// 2048 x 2048 16.5-17.8 -> 13.5-15.2 ms, 5632 x 2048 44.7-50.1 -> 38.4-42.8; BF16 9.3-10.1
// -> 8.3-8.9, 25.6-28.0 -> 22.5-25.8 (512 KiB level or slightly better, less safe on smaller
// L2s). The AVX2 F16 tiles are compute-bound: level there, not used.
constexpr int64_t kActBlockBytes = int64_t{256} << 10;

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
