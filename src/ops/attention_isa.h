// Internal to src/ops: per-ISA attention kernels, each task nq queries of one sequence (one
// block table, the same first key) at one K/V head, all their heads sharing it.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/attention.h"

namespace lokal {

// The K/V head a task attends at, and which of the query heads sharing it: heads [first,
// first + count) of its n_head / n_kv_head (a decode step splits them over threads that
// would otherwise wait; a block of several queries takes them all).
struct HeadSpan {
    int kv_head = 0;
    int first = 0;
    int count = 0;
};

// attention_avx2.cpp (AVX2 + FMA + F16C); head_dim a multiple of 8, any cache type.
void attend_block_avx2(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                       const AttentionQuery* queries, int nq, HeadSpan heads,
                       std::vector<float>& buf);

// attention_avx512.cpp (AVX-512 F/BW/VL); any cache type, head_dim a multiple of 16.
void attend_block_avx512(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                         const AttentionQuery* queries, int nq, HeadSpan heads,
                         std::vector<float>& buf);

}  // namespace lokal
