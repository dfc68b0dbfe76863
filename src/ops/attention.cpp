#include "ops/attention.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops/attention_isa.h"
#include "ops/env_switch.h"
#include "ops/kernels.h"
#include "quant/blocks.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "quant/quantize.h"

namespace lokal {

const char* kv_type_name(KvType t) {
    switch (t) {
        case KvType::Q8_0:
            return "q8_0";
        case KvType::Q4_0:
            return "q4_0";
        case KvType::BF16:
            return "bf16";
        default:
            return "f16";
    }
}

std::optional<KvType> parse_kv_type(std::string_view name) {
    std::string lower(name);
    for (char& c : lower) c = (char)std::tolower((unsigned char)c);
    if (lower == "f16") return KvType::F16;
    if (lower == "q8_0") return KvType::Q8_0;
    if (lower == "q4_0") return KvType::Q4_0;
    if (lower == "bf16") return KvType::BF16;
    return std::nullopt;
}

void require_kv_type_fits(KvType t, int head_dim) {
    if (!kv_type_fits(t, head_dim) && t == KvType::BF16)
        throw std::invalid_argument("a bf16 KV cache needs an even head size; this model's is " +
                                    std::to_string(head_dim) + " (use --cache-type f16)");
    if (!kv_type_fits(t, head_dim))
        throw std::invalid_argument(
            std::string("a ") + kv_type_name(t) +
            " KV cache needs a head size that is a multiple of 32 (at most " +
            std::to_string(kMaxQ8HeadDim) + "); this model's is " + std::to_string(head_dim) +
            " (use --cache-type f16)");
}

TensorType kv_tensor_type(KvType t) {
    return t == KvType::Q8_0   ? TensorType::Q8_0
           : t == KvType::Q4_0 ? TensorType::Q4_0
           : t == KvType::BF16 ? TensorType::BF16
                               : TensorType::F16;
}

void kv_quantize_query_q8(const float* q, int head_dim, int8_t* values, float* scales,
                          int32_t* sums) {
    if (head_dim % 32 != 0 || head_dim > kMaxQ8HeadDim)
        throw std::invalid_argument(
            "attention: a q8_0 query needs a head size that is a "
            "multiple of 32, at most " +
            std::to_string(kMaxQ8HeadDim));
    BlockQ8_0 blk[kMaxQ8HeadDim / 32];
    quantize_row(TensorType::Q8_0, q, blk, head_dim, nullptr);
    for (int b = 0; b < head_dim / 32; ++b) {
        scales[b] = fp16_to_fp32(blk[b].d);
        int32_t sum = 0;
        for (int i = 0; i < 32; ++i) sum += values[32 * b + i] = blk[b].qs[i];
        if (sums) sums[b] = sum;
    }
}

void require_valid_shape(const AttentionShape& s) {
    if (s.n_blocks <= 0 || s.block_size <= 0 || s.head_dim <= 0 || s.n_kv_head <= 0 ||
        s.n_head <= 0 || s.n_head % s.n_kv_head != 0)
        throw std::invalid_argument(
            "attention: the shape needs n_blocks, block_size, head_dim and heads (n_head a "
            "multiple of n_kv_head)");
    if (!kv_block_size_valid(s.kv_type, s.block_size))
        throw std::invalid_argument("attention: a q4_0 cache needs an even block size");
}

void kv_store_v(const AttentionShape& s, uint16_t* v_cache, int64_t block, int64_t slot,
                int kv_head, const float* x) {
    require_valid_shape(s);  // the layout depends on n_blocks
    quantize_row(kv_tensor_type(s.kv_type), x, v_cache + kv_cache_offset(s, block, slot, kv_head),
                 s.head_dim, nullptr);
}

void kv_store_k(const AttentionShape& s, uint16_t* k_cache, int64_t block, int64_t slot,
                int kv_head, const float* x) {
    require_valid_shape(s);
    // The row converted as quantize_row converts any row of the type, then scattered down its
    // slot's column: f16 value (dim d, slot) of the block lies at d * block_size + slot, a
    // BF16 value at (d / 2 * block_size + slot) * 2 + d % 2, a Q8_0 value at
    // (d / 4 * block_size + slot) * 4 + d % 4, plus 128 (and a Q8_0 scale (block b, slot) at
    // b * block_size + slot after the values).
    thread_local std::vector<uint16_t> row;
    row.resize((size_t)kv_row_elems(s.kv_type, s.head_dim));
    quantize_row(kv_tensor_type(s.kv_type), x, row.data(), s.head_dim, nullptr);
    const int64_t bs = s.block_size;
    if (s.kv_type == KvType::Q4_0) {
        // Value i of GGUF block b: the low nibble of its byte i (i < 16), else the high
        // nibble of byte i - 16. Dim d of slot goes to byte d * bs / 2 + slot % (bs / 2), the
        // low nibble for the first half of the block's slots.
        uint8_t* dst = (uint8_t*)(k_cache + kv_block_offset(s, block, kv_head));
        uint16_t* scales = (uint16_t*)(dst + (int64_t)s.head_dim * bs / 2);
        const uint8_t* src = (const uint8_t*)row.data();
        const int64_t half = bs / 2, at = slot % half;
        const bool high = slot >= half;
        for (int b = 0; b < s.head_dim / 32; ++b) {
            std::memcpy(&scales[b * bs + slot], src + 18 * b, 2);
            for (int i = 0; i < 32; ++i) {
                const uint8_t q =
                    i < 16 ? src[18 * b + 2 + i] & 0x0F : src[18 * b + 2 + i - 16] >> 4;
                uint8_t& byte = dst[(int64_t)(32 * b + i) * half + at];
                byte = high ? (uint8_t)((byte & 0x0F) | (q << 4)) : (uint8_t)((byte & 0xF0) | q);
            }
        }
        return;
    }
    if (s.kv_type == KvType::Q8_0) {
        uint8_t* dst = (uint8_t*)(k_cache + kv_block_offset(s, block, kv_head));
        uint16_t* scales = (uint16_t*)(dst + (int64_t)s.head_dim * bs);
        const uint8_t* src = (const uint8_t*)row.data();
        for (int b = 0; b < s.head_dim / 32; ++b) {
            std::memcpy(&scales[b * bs + slot], src + 34 * b, 2);
            for (int i = 0; i < 32; ++i)
                dst[kv_q8_key_byte(bs, 32 * b + i, slot)] = src[34 * b + 2 + i] ^ 0x80;
        }
        return;
    }
    if (s.kv_type == KvType::BF16) {
        uint16_t* dst = k_cache + kv_block_offset(s, block, kv_head);
        for (int d = 0; d < s.head_dim; ++d) dst[kv_bf16_key_elem(bs, d, slot)] = row[(size_t)d];
        return;
    }
    uint16_t* dst = k_cache + kv_block_offset(s, block, kv_head) + slot;
    for (int d = 0; d < s.head_dim; ++d) dst[(int64_t)d * bs] = row[(size_t)d];
}

void kv_load_k_q8(const AttentionShape& s, const uint16_t* k_cache, int64_t block, int64_t slot,
                  int kv_head, int8_t* values, float* scales) {
    if (s.head_dim > kMaxQ8HeadDim)
        throw std::invalid_argument("attention: a q8_0 cache takes head sizes up to " +
                                    std::to_string(kMaxQ8HeadDim));
    const int64_t bs = s.block_size;
    const uint8_t* src = (const uint8_t*)(k_cache + kv_block_offset(s, block, kv_head));
    const uint16_t* sc = (const uint16_t*)(src + (int64_t)s.head_dim * bs);
    for (int d = 0; d < s.head_dim; ++d)
        values[d] = (int8_t)(src[kv_q8_key_byte(bs, d, slot)] ^ 0x80);
    for (int b = 0; b < s.head_dim / 32; ++b) {
        uint16_t h;
        std::memcpy(&h, &sc[b * bs + slot], 2);
        scales[b] = fp16_to_fp32(h);
    }
}

void kv_load_v(const AttentionShape& s, const uint16_t* v_cache, int64_t block, int64_t slot,
               int kv_head, float* out) {
    dequantize_row(kv_tensor_type(s.kv_type), v_cache + kv_cache_offset(s, block, slot, kv_head),
                   out, s.head_dim);
}

void kv_load_k(const AttentionShape& s, const uint16_t* k_cache, int64_t block, int64_t slot,
               int kv_head, float* out) {
    const int64_t bs = s.block_size;
    if (s.kv_type == KvType::Q4_0) {
        // As dequantize_row: (the 4-bit value - 8) times the block's scale.
        const uint8_t* src = (const uint8_t*)(k_cache + kv_block_offset(s, block, kv_head));
        const uint16_t* scales = (const uint16_t*)(src + (int64_t)s.head_dim * bs / 2);
        const int64_t half = bs / 2, at = slot % half;
        for (int d = 0; d < s.head_dim; ++d) {
            uint16_t h;
            std::memcpy(&h, &scales[d / 32 * bs + slot], 2);
            const uint8_t byte = src[(int64_t)d * half + at];
            const int q = slot >= half ? byte >> 4 : byte & 0x0F;
            out[d] = (float)(q - 8) * fp16_to_fp32(h);
        }
        return;
    }
    if (s.kv_type == KvType::Q8_0) {
        // As dequantize_row: the block's scale times each int8 value.
        int8_t values[kMaxQ8HeadDim];
        float scales[kMaxQ8HeadDim / 32];
        kv_load_k_q8(s, k_cache, block, slot, kv_head, values, scales);
        for (int d = 0; d < s.head_dim; ++d) out[d] = scales[d / 32] * (float)values[d];
        return;
    }
    if (s.kv_type == KvType::BF16) {
        const uint16_t* src = k_cache + kv_block_offset(s, block, kv_head);
        for (int d = 0; d < s.head_dim; ++d)
            out[d] = bf16_to_fp32(src[kv_bf16_key_elem(bs, d, slot)]);
        return;
    }
    const uint16_t* src = k_cache + kv_block_offset(s, block, kv_head) + slot;
    for (int d = 0; d < s.head_dim; ++d) out[d] = fp16_to_fp32(src[(int64_t)d * bs]);
}

namespace {

// The scores of a Q8_0 cache's keys (`scores` [group][n], n keys from `first`, group heads): each
// head's f16-rounded query q [group][hd] quantized as Q8_0 (kv_quantize_query_q8), then per key the
// exact integer dot product of each 32-dim block, combined in block order as acc = fma(isum, key
// scale x query scale, acc), times s.scale (the SIMD kernels' steps).
void score_q8_keys(const AttentionShape& s, const uint16_t* k_cache, const AttentionQuery& query,
                   int kv_head, int group, int32_t first, const float* q, float* scores) {
    const int hd = s.head_dim, nb = hd / 32;
    const int64_t n = query.pos - first + 1;
    std::vector<int8_t> qv((size_t)group * hd);
    std::vector<float> qs((size_t)group * nb);
    for (int g = 0; g < group; ++g)
        kv_quantize_query_q8(q + g * hd, hd, qv.data() + g * hd, qs.data() + g * nb, nullptr);
    int8_t kv[kMaxQ8HeadDim];
    float ks[kMaxQ8HeadDim / 32];
    for (int32_t p = first; p <= query.pos; ++p) {
        kv_load_k_q8(s, k_cache, query.block_table[p / s.block_size], p % s.block_size, kv_head, kv,
                     ks);
        for (int g = 0; g < group; ++g) {
            float acc = 0;
            for (int b = 0; b < nb; ++b) {
                int32_t isum = 0;
                for (int i = 32 * b; i < 32 * b + 32; ++i) isum += (int32_t)qv[g * hd + i] * kv[i];
                acc = std::fma((float)isum, ks[b] * qs[g * nb + b], acc);
            }
            scores[g * n + (p - first)] = acc * s.scale;
        }
    }
}

// One task: one query token and one K/V head, covering the `group` query heads that share
// it, so each K/V row is loaded and converted once for all of them.
//
// Numerics follow the reference engine exactly, because quantized models amplify tiny
// attention differences into visible logit changes (their activations are re-quantized
// after attention): q is rounded to f16 (it meets f16 keys; against Q8_0 keys it is then
// quantized to Q8_0 and scored with integer dot products, score_q8_keys; against BF16 keys
// it is rounded to bf16 instead, as the pair dot product takes it), scores are scaled,
// softmax is
// taken with the max subtracted and the sum in double, and the normalized probabilities
// are rounded to f16 before they weight the f16 values. Memory is O(n_keys) per query
// head for the scores, never O(n^2).
void attend_group(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                  const AttentionQuery& query, HeadSpan heads, std::vector<float>& buf) {
    const int kv_head = heads.kv_head, group = heads.count;  // the heads taken here
    const int hd = s.head_dim;
    // Head g here is query head (kv_head x heads per K/V head + heads.first + g).
    const int64_t q_at = ((int64_t)kv_head * (s.n_head / s.n_kv_head) + heads.first) * hd;
    const int32_t first = attention_first_key(s, query.pos);
    const int64_t n = query.pos - first + 1;  // keys attended
    buf.assign((size_t)(2 * group * hd + hd + group * n), 0.0f);
    float* q = buf.data();                  // [group][hd]
    float* acc = q + (size_t)group * hd;    // [group][hd]
    float* row = acc + (size_t)group * hd;  // [hd] one converted K or V row
    float* scores = row + hd;               // [group][n]
    for (int g = 0; g < group; ++g) {
        const float* src = query.q + q_at + (int64_t)g * hd;
        for (int i = 0; i < hd; ++i)
            q[g * hd + i] = s.kv_type == KvType::BF16 ? bf16_to_fp32(fp32_to_bf16(src[i]))
                                                      : fp16_to_fp32(fp32_to_fp16(src[i]));
    }
    auto block_of = [&](int32_t p) { return query.block_table[p / s.block_size]; };
    // Pass 1: scores against every key.
    if (s.kv_type == KvType::Q8_0) {
        score_q8_keys(s, k_cache, query, kv_head, group, first, q, scores);
    } else {
        for (int32_t p = first; p <= query.pos; ++p) {
            kv_load_k(s, k_cache, block_of(p), p % s.block_size, kv_head, row);
            for (int g = 0; g < group; ++g) {
                double dot = 0;  // float products, double sum: the reference's scalar f16 dot
                for (int i = 0; i < hd; ++i) dot += (double)(q[g * hd + i] * row[i]);
                scores[g * n + (p - first)] = (float)dot * s.scale;
            }
        }
    }
    // Softmax per head; probabilities rounded to f16.
    for (int g = 0; g < group; ++g) {
        float* sg = scores + g * n;
        const float max = *std::max_element(sg, sg + n);
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += sg[j] = std::exp(sg[j] - max);
        const float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < n; ++j) sg[j] = fp16_to_fp32(fp32_to_fp16(sg[j] * inv));
    }
    // Pass 2: probability-weighted values.
    for (int32_t p = first; p <= query.pos; ++p) {
        kv_load_v(s, v_cache, block_of(p), p % s.block_size, kv_head, row);
        for (int g = 0; g < group; ++g) {
            const float w = scores[g * n + (p - first)];
            float* a = acc + g * hd;
            for (int i = 0; i < hd; ++i) a[i] += w * row[i];
        }
    }
    std::copy_n(acc, (size_t)group * hd, query.out + q_at);
}

// The reference takes a block's queries one by one.
void attend_block(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                  const AttentionQuery* queries, int nq, HeadSpan heads, std::vector<float>& buf) {
    for (int i = 0; i < nq; ++i) attend_group(s, k_cache, v_cache, queries[i], heads, buf);
}

// fn(shape, k, v, queries, nq, heads, buffer): nq queries of one block (below) at one K/V
// head, all its query heads when nq > 1.
using BlockFn = void (*)(const AttentionShape&, const uint16_t*, const uint16_t*,
                         const AttentionQuery*, int, HeadSpan, std::vector<float>&);

// Heads a block of queries may have together (query heads per K/V head x queries): the
// kernels' largest register block of heads.
constexpr int kBlockHeads = 8;

void run(ThreadPool& pool, BlockFn fn, const AttentionShape& shape, const uint16_t* k_cache,
         const uint16_t* v_cache, const AttentionQuery* queries, int64_t n_queries) {
    require_valid_shape(shape);
    require_kv_type_fits(shape.kv_type, shape.head_dim);
    // Blocks: runs of consecutive queries of one sequence (the same block table) that start
    // at the same key, up to kBlockHeads heads a K/V head, so that a prompt's queries share
    // each K/V tile they load (a group of 8 heads fills the kernels' registers alone; a model
    // without grouped heads, Llama 2 7B's, takes 8 queries a block).
    // Tasks, per sequence: every block of its queries at K/V head 0, then head 1, ...: one
    // head's keys and values stay in the caches for all of a prompt's queries (query by query,
    // each read every head's K/V again: 64 MB a layer at Llama 2 7B's 4,096 positions).
    // A decode batch has one query per sequence: query by query, heads in order, as before.
    const int group = shape.n_head / shape.n_kv_head;
    const int per_block = std::max(1, kBlockHeads / group);
    struct Task {
        int64_t query;  // the block's first
        int32_t n;      // queries in the block
        HeadSpan heads;
    };
    thread_local std::vector<Task> tasks;
    tasks.clear();
    for (int64_t seq_begin = 0; seq_begin < n_queries;) {
        int64_t seq_end = seq_begin + 1;
        while (seq_end < n_queries &&
               queries[seq_end].block_table == queries[seq_begin].block_table)
            ++seq_end;
        const size_t seq_tasks = tasks.size();
        for (int64_t b = seq_begin; b < seq_end;) {
            int64_t e = b + 1;
            while (e < seq_end && e - b < per_block &&
                   attention_first_key(shape, queries[e].pos) ==
                       attention_first_key(shape, queries[b].pos))
                ++e;
            tasks.push_back({b, (int32_t)(e - b), {0, 0, group}});
            b = e;
        }
        const size_t n_blocks = tasks.size() - seq_tasks;
        for (int h = 1; h < shape.n_kv_head; ++h)
            for (size_t i = 0; i < n_blocks; ++i) {
                Task t = tasks[seq_tasks + i];
                t.heads.kv_head = h;
                tasks.push_back(t);
            }
        seq_begin = seq_end;
    }
    // Fewer tasks than threads (a decode step of one or a few sequences, and a model with few
    // K/V heads: MQA's one, or any model on a many-core machine): single-query tasks split
    // their group's query heads in up to that many parts, so no thread waits while others
    // attend. Each part reads its K/V head's keys and values again (from the shared cache
    // when the parts run at once); with enough tasks (2 threads, TinyLlama's 4 K/V heads)
    // nothing is split: two parts' reads from memory took 1.35x one task's
    // (docs/PERFORMANCE.md, "Tried 2026-12-07"). The bits are the same either way
    // (attend_dims_major computes each head on its own).
    // LOKAL_ATTENTION_SPLIT=0: never split (for A/B).
    static const bool split = env_switch("LOKAL_ATTENTION_SPLIT");
    const int n_threads = pool.n_threads();
    if (split && (int64_t)tasks.size() < n_threads && group > 1) {
        const int parts =
            std::min<int>(group, (n_threads + (int)tasks.size() - 1) / (int)tasks.size());
        const size_t n_whole = tasks.size();
        for (size_t i = 0; i < n_whole; ++i) {
            if (tasks[i].n != 1) continue;  // a block of queries shares its tiles: kept whole
            const Task t = tasks[i];
            for (int p = 0; p < parts; ++p) {
                Task part = t;
                part.heads.first = group * p / parts;
                part.heads.count = group * (p + 1) / parts - part.heads.first;
                if (p == 0)
                    tasks[i] = part;
                else
                    tasks.push_back(part);
            }
        }
    }
    const Task* task_list = tasks.data();  // the caller's thread_local, read by every worker
    pool.parallel_tasks((int64_t)tasks.size(), [&](int64_t i, int) {
        const Task& t = task_list[i];
        // Kept per thread across calls: a fresh buffer of a long context's scores is an mmap
        // and page faults in every layer of every token.
        thread_local std::vector<float> buffer;
        fn(shape, k_cache, v_cache, queries + t.query, t.n, t.heads, buffer);
    });
}

}  // namespace

void attention_paged_ref(ThreadPool& pool, const AttentionShape& shape, const uint16_t* k_cache,
                         const uint16_t* v_cache, const AttentionQuery* queries,
                         int64_t n_queries) {
    run(pool, &attend_block, shape, k_cache, v_cache, queries, n_queries);
}

void attention_paged(ThreadPool& pool, const AttentionShape& shape, const uint16_t* k_cache,
                     const uint16_t* v_cache, const AttentionQuery* queries, int64_t n_queries) {
    // The SIMD kernels follow the dispatch (LOKAL_ISA=scalar keeps the reference).
    static const int level =
        std::strcmp(kernels().isa, "avx512") == 0 || std::strcmp(kernels().isa, "amx") == 0 ? 2
        : std::strcmp(kernels().isa, "avx2") == 0                                           ? 1
                                                                                            : 0;
    BlockFn fn = &attend_block;
    if (level == 2 && shape.head_dim % 16 == 0)
        fn = &attend_block_avx512;
    else if (level >= 1 && shape.head_dim % 8 == 0)
        fn = &attend_block_avx2;
    run(pool, fn, shape, k_cache, v_cache, queries, n_queries);
}

}  // namespace lokal
