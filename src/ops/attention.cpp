#include "ops/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "quant/fp16.h"

namespace lokal {
namespace {

// One task: one query token and one K/V head, covering the `group` query heads that share
// it, so each K/V row is loaded and converted once for all of them.
void attend_group(const AttentionShape& s, const uint16_t* k_cache, const uint16_t* v_cache,
                  const AttentionQuery& query, int kv_head, std::vector<float>& buf) {
    const int group = s.n_head / s.n_kv_head;
    const int hd = s.head_dim;
    const int64_t kv_dim = (int64_t)s.n_kv_head * hd;
    buf.assign((size_t)group * hd * 2 + 2 * hd + 2 * group, 0.0f);
    float* q = buf.data();                   // [group][hd], rounded through f16 like the reference
    float* acc = q + (size_t)group * hd;     // [group][hd]
    float* k = acc + (size_t)group * hd;     // [hd]
    float* v = k + hd;                       // [hd]
    float* m = v + hd;                       // [group] running max
    float* l = m + group;                    // [group] running sum
    for (int g = 0; g < group; ++g) {
        const float* src = query.q + (int64_t)(kv_head * group + g) * hd;
        for (int i = 0; i < hd; ++i) q[g * hd + i] = fp16_to_fp32(fp32_to_fp16(src[i]));
        m[g] = -std::numeric_limits<float>::infinity();
        l[g] = 0;
    }
    const int32_t first = s.window > 0 ? std::max<int32_t>(0, query.pos - s.window + 1) : 0;
    for (int32_t p = first; p <= query.pos; ++p) {
        const int64_t block = query.block_table[p / s.block_size];
        const int64_t row = (block * s.block_size + p % s.block_size) * kv_dim + (int64_t)kv_head * hd;
        for (int i = 0; i < hd; ++i) {
            k[i] = fp16_to_fp32(k_cache[row + i]);
            v[i] = fp16_to_fp32(v_cache[row + i]);
        }
        for (int g = 0; g < group; ++g) {
            float dot = 0;
            const float* qg = q + g * hd;
            for (int i = 0; i < hd; ++i) dot += qg[i] * k[i];
            const float score = dot * s.scale;
            float* a = acc + g * hd;
            if (score > m[g]) {
                const float correction = std::exp(m[g] - score);  // 0 on the first key
                l[g] *= correction;
                for (int i = 0; i < hd; ++i) a[i] *= correction;
                m[g] = score;
            }
            const float w = std::exp(score - m[g]);
            l[g] += w;
            for (int i = 0; i < hd; ++i) a[i] += w * v[i];
        }
    }
    for (int g = 0; g < group; ++g) {
        float* out = query.out + (int64_t)(kv_head * group + g) * hd;
        const float inv = l[g] > 0 ? 1.0f / l[g] : 0.0f;
        for (int i = 0; i < hd; ++i) out[i] = acc[g * hd + i] * inv;
    }
}

}  // namespace

void attention_paged(ThreadPool& pool, const AttentionShape& shape, const uint16_t* k_cache,
                     const uint16_t* v_cache, const AttentionQuery* queries, int64_t n_queries) {
    std::vector<std::vector<float>> buffers(pool.n_threads());
    pool.parallel_tasks(n_queries * shape.n_kv_head, [&](int64_t task, int thread) {
        const int64_t qi = task / shape.n_kv_head;
        const int kv_head = (int)(task % shape.n_kv_head);
        attend_group(shape, k_cache, v_cache, queries[qi], kv_head, buffers[thread]);
    });
}

}  // namespace lokal
