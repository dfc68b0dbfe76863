// Internal to src/ops: the AMX int8 tile helpers gemm_avx512.cpp uses for 16-token tiles.
// Call only where cpu_features().amx_int8 holds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lokal::gemm::amx {

// Loads this thread's tile configuration for (sub-)blocks of sub_bytes (16 or 32) bytes;
// release() hands the tile state back (before the thread does anything else with it).
void configure(int sub_bytes);
void release();

// For i < n: c[i][t][r] = sum over k < sub_bytes of (int8) a_i[t * a_stride + k] *
// (uint8) b_i[(k / 4) * 64 + 4 * r + k % 4], with a_i = a + i * a_step, b_i = b + i * b_step,
// for 16 tokens t and 16 weight rows r: exact int32 block sums of 16 tokens x 16 rows.
void block_sums(const uint8_t* a, size_t a_stride, size_t a_step, const uint8_t* b, size_t b_step,
                int n, int32_t* c);

}  // namespace lokal::gemm::amx
