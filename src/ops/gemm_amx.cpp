// AMX int8 tiles for the quantized GEMM: the exact integer part only.
//
// For a tile of 16 tokens, one TDPBSUD multiplies the tokens' activation bytes of one block
// (or sub-block: A, 16 rows x 16/32 signed bytes, read in place from the activation rows)
// by the 16-row weight panel of gemm_avx512.cpp (B, already in the dword-interleaved layout
// AMX expects, unsigned bytes), giving the 16 x 16 exact int32 block sums. The float part,
// the canonical per-output fma chain, stays in gemm_avx512.cpp, so results are identical to
// the VNNI path bit for bit.
//
// Measured (Sapphire Rapids class, 1 thread, 512 tokens): no faster than VNNI. Per-block sums
// cap K at 32 (Q2/Q3/Q6_K: 16) per tile op, the strided activation tile loads dominate, and
// the float epilogue per block is the same as VNNI's. Hence opt-in (LOKAL_ISA=amx); packing
// the activation tiles contiguously is the next thing to try.
#include <immintrin.h>

#include <cstring>

#include "ops/gemm_amx.h"

namespace lokal::gemm::amx {
namespace {

struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

}  // namespace

void configure(int sub_bytes) {
    // Two independent sets (A, B, C) = tiles (0, 1, 2) and (3, 4, 5), so consecutive
    // sub-blocks overlap in the tile unit.
    TileConfig c;
    for (int set = 0; set < 2; ++set) {
        c.colsb[3 * set + 0] = (uint16_t)sub_bytes;  // A: 16 tokens x sub_bytes
        c.rows[3 * set + 0] = 16;
        c.colsb[3 * set + 1] = 64;  // B: sub_bytes/4 dword rows x 16 weight rows x 4 bytes
        c.rows[3 * set + 1] = (uint8_t)(sub_bytes / 4);
        c.colsb[3 * set + 2] = 64;  // C: 16 tokens x 16 int32
        c.rows[3 * set + 2] = 16;
    }
    // GCC 12 does not see ldtilecfg read the struct and drops the stores above without this.
    __asm__ volatile("" : : "r"(&c) : "memory");
    _tile_loadconfig(&c);
}

void release() {
    _tile_release();
}

void block_sums(const uint8_t* a, size_t a_stride, size_t a_step, const uint8_t* b, size_t b_step,
                int n, int32_t* c) {
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        _tile_zero(2);
        _tile_zero(5);
        _tile_loadd(0, a + (size_t)i * a_step, a_stride);
        _tile_loadd(1, b + (size_t)i * b_step, 64);
        _tile_loadd(3, a + (size_t)(i + 1) * a_step, a_stride);
        _tile_loadd(4, b + (size_t)(i + 1) * b_step, 64);
        _tile_dpbsud(2, 0, 1);
        _tile_dpbsud(5, 3, 4);
        _tile_stored(2, c + (size_t)i * 256, 64);
        _tile_stored(5, c + (size_t)(i + 1) * 256, 64);
    }
    if (i < n) {
        _tile_zero(2);
        _tile_loadd(0, a + (size_t)i * a_step, a_stride);
        _tile_loadd(1, b + (size_t)i * b_step, 64);
        _tile_dpbsud(2, 0, 1);
        _tile_stored(2, c + (size_t)i * 256, 64);
    }
}

}  // namespace lokal::gemm::amx
