// Causal self-attention of a batch of query tokens over a paged KV cache.
//
// K and V are stored in fixed-size blocks, one block's data holding block_size positions of
// one K/V head, in groups of consecutive blocks: each cache is [group][n_kv_head][blocks of the
// group][block data] (KvLayout; size a cache with kv_cache_elems). A group is the whole cache
// when it fits in 2 MiB, else as many blocks as fit in 2 MiB with every head (256 at
// TinyLlama shape), so a sequence whose blocks were allocated in order reads each head's keys
// as one long stream rather than block-sized pieces n_kv_head blocks apart (2 KiB every 8 KiB at
// TinyLlama shape: decode attention over 4,096 positions from memory took 9-22% longer that
// way, docs/PERFORMANCE.md 2026-12-05), and a cache's first blocks still lie in one huge page
// (a region per head would commit a huge page per head for a short sequence). A row is one
// position's head_dim values, in the cache's KvType: head_dim half floats, or head_dim / 32
// GGUF blocks: Q8_0 (an f16 scale and 32 int8 values, 34 bytes per 32 values instead of 64) or
// Q4_0 (an f16 scale and 32 4-bit values, 18 bytes). V blocks are [block_size][row]
// (kv_cache_offset). K blocks are dims-major, [head_dim][block_size] values (Q8_0's and
// Q4_0's scales after them, Q4_0's values two to a byte, Q8_0's four dims to a position's
// dword; see kv_block_size_valid): one dim (four for Q8_0) of consecutive positions is
// contiguous, so a SIMD kernel scores 8 or 16 keys per vector
// against a broadcast query value with no horizontal sums (those took a third of the decode
// attention's time with row-major keys; Q8_0 keys row-major ran 2.7x slower than f16, Q4_0
// ones on the AVX2 kernel 2.8x on an AVX-512 machine).
// A sequence's positions map to blocks through its block table: position p lies in block
// table[p / block_size], slot p % block_size. Each block's data for one head is contiguous,
// so one head's keys stream as block_size * head_dim * 2 contiguous bytes (a row-interleaved
// layout made decode read 128 of every 512 bytes and run at a tenth of the memory bandwidth).
// Scores are never materialized as an n x n matrix: each query streams over its keys with
// a softmax over its own keys only, so memory is O(keys) per query head, never O(n^2).
// Write and read cache entries through kv_store_k / kv_store_v / kv_load_k, which know the
// layouts.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>

#include "ops/thread_pool.h"
#include "quant/types.h"

namespace lokal {

// Element type of the K/V cache. Q8_0 halves the cache's memory and the bytes a long
// context reads per token at a small accuracy cost, Q4_0 takes 0.28x at a larger one
// (docs/PERFORMANCE.md, "KV cache types"); the choices Ollama offers. BF16 (llama.cpp's
// -ctk/-ctv bf16) takes f16's bytes with f32's range (no overflow to inf) and 3 fewer
// mantissa bits; its keys are scored two dims per multiply-add pair, with vdpbf16ps where the
// CPU has it (twice an fma's multiply-adds per instruction).
enum class KvType : uint8_t { F16, Q8_0, Q4_0, BF16 };
inline constexpr KvType kKvTypes[] = {KvType::F16, KvType::Q8_0, KvType::Q4_0, KvType::BF16};

const char* kv_type_name(KvType t);                     // "f16", "q8_0", "q4_0", "bf16"
std::optional<KvType> parse_kv_type(std::string_view);  // names as above (case-insensitive)
// The largest head size a block-type cache takes (the kernels keep a row's values on the
// stack); real models use up to 256.
inline constexpr int kMaxQ8HeadDim = 1024;
// Whether rows of head_dim values can be stored in type t (the block types: whole blocks
// of 32, at most kMaxQ8HeadDim; BF16: an even head_dim, its keys stored in pairs of dims).
inline bool kv_type_fits(KvType t, int head_dim) {
    if (t == KvType::F16) return true;
    if (t == KvType::BF16) return head_dim % 2 == 0;
    return head_dim % 32 == 0 && head_dim <= kMaxQ8HeadDim;
}
// Throws std::invalid_argument naming the head size when !kv_type_fits.
void require_kv_type_fits(KvType t, int head_dim);
// The GGUF block format of a row (F16 for f16 rows, BF16 for bf16): for quantize_row /
// dequantize_row.
TensorType kv_tensor_type(KvType t);
// uint16_t elements per K/V row: a Q8_0 block is 34 bytes = 17 elements, Q4_0 18 = 9.
constexpr int64_t kv_row_elems(KvType t, int head_dim) {
    switch (t) {
        case KvType::Q8_0:
            return (int64_t)head_dim / 32 * 17;
        case KvType::Q4_0:
            return (int64_t)head_dim / 32 * 9;
        default:
            return head_dim;
    }
}

struct AttentionShape {
    int n_head = 0;
    int n_kv_head = 0;  // GQA/MQA: n_head / n_kv_head query heads share one K/V head
    int head_dim = 0;
    int block_size = 0;
    float scale = 0;     // usually 1 / sqrt(head_dim)
    int32_t window = 0;  // sliding window in positions; 0 = attend to the whole prefix
    KvType kv_type = KvType::F16;
    int64_t n_blocks = 0;  // blocks in each K (and V) cache: the layout depends on it
};

// Throws std::invalid_argument unless the shape can address a cache (n_blocks > 0, heads and
// sizes positive, n_head a multiple of n_kv_head, an even block_size for Q4_0).
void require_valid_shape(const AttentionShape& s);

// K blocks, every cache type dims-major: f16 as [head_dim][block_size] values; Q8_0 as
// [head_dim / 4][block_size][4] int8 values plus 128 (each key's 4 consecutive dims one dword,
// the operand of an int8 dot-product instruction; stored as unsigned bytes so vpdpbusd takes
// them as they are), then [head_dim / 32][block_size] f16 scales (the same bytes as
// block_size rows of Q8_0 blocks); BF16 as [head_dim / 2][block_size][2] values (each key's
// dims 2i and 2i + 1 one dword, the operand of a BF16 pair dot product; dim pair i of
// consecutive keys contiguous); Q4_0 as [head_dim][block_size / 2] bytes, byte i
// of a dim holding slot i in its low nibble and slot i + block_size / 2 in its high one (so a
// block of 16 reads as one 8-byte load per dim, and a half block as one nibble plane), then
// the scales as for Q8_0. So a Q4_0 block holds an even number of positions: whether a cache
// of type t can have blocks of block_size positions (KvCache and require_valid_shape ask).
constexpr bool kv_block_size_valid(KvType t, int64_t block_size) {
    return block_size > 0 && (t != KvType::Q4_0 || block_size % 2 == 0);
}

// Byte offset of Q8_0 key value (dim d, slot) in its block: [head_dim / 4][block_size][4].
constexpr int64_t kv_q8_key_byte(int64_t block_size, int d, int64_t slot) {
    return ((int64_t)(d / 4) * block_size + slot) * 4 + d % 4;
}
// Element offset of BF16 key value (dim d, slot) in its block: [head_dim / 2][block_size][2].
constexpr int64_t kv_bf16_key_elem(int64_t block_size, int d, int64_t slot) {
    return ((int64_t)(d / 2) * block_size + slot) * 2 + d % 2;
}

// Where a cache's blocks lie (see the top of this file): groups of group_blocks consecutive
// blocks, each group [n_kv_head][group_blocks][one head's block data].
struct KvLayout {
    int64_t head_block_elems = 0;  // one block of one head
    int n_kv_head = 0;
    int64_t group_blocks = 0;
    int group_shift = 0;  // log2(group_blocks) when several groups; 62 (one group) otherwise

    // Element offset of (block, kv_head)'s data.
    int64_t block_offset(int64_t block, int kv_head) const {
        const int64_t group = block >> group_shift, in_group = block - (group << group_shift);
        return ((group * n_kv_head + kv_head) * group_blocks + in_group) * head_block_elems;
    }
};

// Bytes of one group with every head, at most: 2 MiB, so that each head reads long runs (at
// TinyLlama shape, f16: 256 blocks, 4,096 positions, 512 KiB per head) while the first blocks
// of a cache still lie in one huge page. A cache of fewer blocks is one group of exactly its
// blocks; a larger one takes the largest power of two of blocks that fits.
inline constexpr int64_t kKvGroupBytes = int64_t{2} << 20;

inline KvLayout kv_layout(int n_kv_head, int64_t head_block_elems, int64_t n_blocks) {
    KvLayout l{head_block_elems, n_kv_head, std::max<int64_t>(n_blocks, 1), 62};
    const int64_t per_block = 2 * head_block_elems * n_kv_head;  // bytes, every head
    if (n_blocks * per_block <= kKvGroupBytes || per_block <= 0) return l;
    l.group_shift = 0;
    while ((per_block << (l.group_shift + 1)) <= kKvGroupBytes) ++l.group_shift;
    l.group_blocks = int64_t{1} << l.group_shift;
    return l;
}
inline KvLayout kv_layout(const AttentionShape& s) {
    return kv_layout(s.n_kv_head, s.block_size * kv_row_elems(s.kv_type, s.head_dim), s.n_blocks);
}
// uint16_t elements of a K (or V) cache of the layout's blocks: whole groups.
inline int64_t kv_cache_elems(const KvLayout& l, int64_t n_blocks) {
    return (n_blocks + l.group_blocks - 1) / l.group_blocks * l.group_blocks * l.n_kv_head *
           l.head_block_elems;
}
// uint16_t elements of a K (or V) cache of shape s (s.n_blocks blocks).
inline int64_t kv_cache_elems(const AttentionShape& s) {
    return kv_cache_elems(kv_layout(s), s.n_blocks);
}

// Element offset of (block, kv_head)'s data (block_size positions) in a K or V cache (in loops,
// take kv_layout(s) once).
inline int64_t kv_block_offset(const AttentionShape& s, int64_t block, int kv_head) {
    return kv_layout(s).block_offset(block, kv_head);
}

// Element offset of (block, slot, kv_head)'s row in a V cache, or a K cache that is not
// dims-major (rows of kv_row_elems(s.kv_type, s.head_dim) elements).
inline int64_t kv_cache_offset(const AttentionShape& s, int64_t block, int64_t slot, int kv_head) {
    return kv_block_offset(s, block, kv_head) + slot * kv_row_elems(s.kv_type, s.head_dim);
}

// One position's K or V (head_dim floats) into its cache slot, in the cache's type (the
// reference quantizer's rounding) and layout. A Q4_0 K slot shares its bytes with the slot
// block_size / 2 away: K stores into one block and head must not run concurrently.
void kv_store_k(const AttentionShape& s, uint16_t* k_cache, int64_t block, int64_t slot,
                int kv_head, const float* x);
void kv_store_v(const AttentionShape& s, uint16_t* v_cache, int64_t block, int64_t slot,
                int kv_head, const float* x);
// The K (or V) of one cached position as head_dim floats.
void kv_load_k(const AttentionShape& s, const uint16_t* k_cache, int64_t block, int64_t slot,
               int kv_head, float* out);
void kv_load_v(const AttentionShape& s, const uint16_t* v_cache, int64_t block, int64_t slot,
               int kv_head, float* out);
// A Q8_0 cache's K of one position as it is scored: head_dim int8 values and head_dim / 32
// scales.
void kv_load_k_q8(const AttentionShape& s, const uint16_t* k_cache, int64_t block, int64_t slot,
                  int kv_head, int8_t* values, float* scales);
// One head's query (head_dim f16-rounded floats, a multiple of 32 up to kMaxQ8HeadDim) as Q8_0
// blocks, the reference quantizer's: head_dim int8 values, head_dim / 32 scales, and (when
// sums is not null) each block's sum of values. Against Q8_0 keys, scores are the exact
// integer dot products of each block, combined in block order as
// acc = fma(isum, key scale x query scale, acc), times the shape's scale.
void kv_quantize_query_q8(const float* q, int head_dim, int8_t* values, float* scales,
                          int32_t* sums);

struct AttentionQuery {
    const float* q = nullptr;  // [n_head][head_dim]
    float* out = nullptr;      // [n_head][head_dim]
    int32_t pos = 0;           // attends to positions [max(0, pos - window + 1), pos]
    const int32_t* block_table = nullptr;
};

// The first position a query at `pos` attends to (its window's start; 0 without a window).
inline int32_t attention_first_key(const AttentionShape& s, int32_t pos) {
    return s.window > 0 ? std::max<int32_t>(0, pos - s.window + 1) : 0;
}

// Every query's K/V (positions up to and including its own) must already be in the cache.
// Runs a SIMD kernel (attention_dims_major_impl.h, 16 lanes on the avx512 path for
// head_dim % 16 == 0, else 8 lanes for head_dim % 8 == 0)
// or the scalar reference; they agree within float rounding (tests/ops/attention_test.cpp).
// Consecutive queries with the same block table (a prompt's, a sequence's draft tokens) are
// taken in blocks of up to 8 heads per K/V head (8 queries at one head a K/V head, 1 at 8), one
// task per block and K/V head, all of a sequence's blocks at one head before the next head:
// each K/V tile loaded serves the whole block, and one head's keys stay in cache for all of the
// sequence's queries. A decode step with fewer such tasks than threads (one sequence of a
// model with few K/V heads) splits each group's query heads over the threads instead.
// Each (query, head) still takes its own keys in a fixed order, so its
// output is the same bits alone, in any block, batch or thread count (tested).
void attention_paged(ThreadPool& pool, const AttentionShape& shape, const uint16_t* k_cache,
                     const uint16_t* v_cache, const AttentionQuery* queries, int64_t n_queries);

// The scalar reference (the numerics the SIMD kernel follows), for tests.
void attention_paged_ref(ThreadPool& pool, const AttentionShape& shape, const uint16_t* k_cache,
                         const uint16_t* v_cache, const AttentionQuery* queries, int64_t n_queries);

}  // namespace lokal
