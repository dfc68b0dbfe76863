// Internal to src/ops: per-ISA attention kernels (one query token x one K/V head group).
#pragma once

#include <cstdint>
#include <vector>

#include "ops/attention.h"

namespace lokal {

// rows[j] = element offset of position first + j's K/V row for kv_head in either cache, for
// j < n: the block table is walked once per call (a division per key would cost more than
// its dot product).
inline void kv_row_offsets(const AttentionShape& s, const AttentionQuery& query, int kv_head,
                           int32_t first, int64_t n, std::vector<int64_t>& rows) {
    rows.resize((size_t)n);
    const int64_t row_elems = kv_row_elems(s.kv_type, s.head_dim);
    const KvLayout layout = kv_layout(s);
    int64_t bi = first / s.block_size, slot = first % s.block_size;
    int64_t block_at = layout.block_offset(query.block_table[bi], kv_head);
    for (int64_t j = 0; j < n; ++j) {
        rows[(size_t)j] = block_at + slot * row_elems;
        if (++slot == s.block_size && j + 1 < n)
            slot = 0, block_at = layout.block_offset(query.block_table[++bi], kv_head);
    }
}

// attention_avx2.cpp (AVX2 + FMA + F16C); head_dim a multiple of 8, any cache type.
void attend_group_avx2(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                       const AttentionQuery& query, int kv_head, std::vector<float>& buf);

// attention_avx512.cpp (AVX-512 F/BW/VL); f16 caches, head_dim a multiple of 16.
void attend_group_avx512(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                         const AttentionQuery& query, int kv_head, std::vector<float>& buf);

}  // namespace lokal
