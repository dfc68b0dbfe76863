#include "engine/context.h"

#include "ops/cpu_features.h"

#include <algorithm>
#include <cstdint>
#include <string>

namespace lokal {
namespace {

int resolve_ctx(const Model& m, int requested) {
    if (requested > 0) return requested;
    return std::min(m.hp.n_ctx_train > 0 ? m.hp.n_ctx_train : 4096, 4096);
}

}  // namespace

int Context::resolve_n_ctx(const Model& model, int requested) {
    return resolve_ctx(model, requested);
}

size_t Context::kv_bytes(const Model& model, const ContextParams& params) {
    return KvCache::bytes_for(
        model.hp, (int64_t)resolve_ctx(model, params.n_ctx) * std::max(1, params.n_seq_max),
        params.block_size, params.kv_type);
}

uint64_t Context::default_memory_budget() {
    const uint64_t physical = physical_memory_bytes();
    return physical > 0 ? (uint64_t)((double)physical * 0.9) : UINT64_MAX;
}

Context::Context(const Model& model, const ContextParams& params)
    : model_(model),
      params_(params),
      n_ctx_(resolve_ctx(model, params.n_ctx)),
      pool_(params.n_threads),
      cache_(model.hp, (int64_t)resolve_ctx(model, params.n_ctx) * std::max(1, params.n_seq_max),
             params.block_size, params.kv_type),
      forward_(model, pool_) {
    if (params_.n_batch <= 0) params_.n_batch = 512;
    if (n_ctx_ > (1 << 22)) throw ContextError("context size too large");
}

void Context::eval(int32_t seq, std::span<const int32_t> tokens, bool all_logits,
                   std::vector<float>& logits) {
    const int32_t start = cache_.length(seq);
    if ((int64_t)start + (int64_t)tokens.size() > n_ctx_)
        throw ContextError("the sequence needs " + std::to_string(start + tokens.size()) +
                           " positions but the context holds " + std::to_string(n_ctx_) +
                           " (raise it with -c)");
    const int64_t nv = model_.hp.n_vocab;
    logits.clear();
    if (all_logits) logits.reserve(tokens.size() * (size_t)nv);
    for (size_t done = 0; done < tokens.size();) {
        const size_t n = std::min(tokens.size() - done, (size_t)params_.n_batch);
        const int32_t from = start + (int32_t)done, to = from + (int32_t)n;
        if (!cache_.prepare(seq, from, to)) throw ContextError("the KV cache is full");
        batch_.clear();
        batch_.block_tables.push_back(&cache_.table(seq));
        const bool last_chunk = done + n == tokens.size();
        for (size_t i = 0; i < n; ++i)
            batch_.add(tokens[done + i], from + (int32_t)i, 0,
                       all_logits || (last_chunk && i + 1 == n));
        forward_.run(batch_, cache_.storage, out_);
        cache_.set_length(seq, to);
        logits.insert(logits.end(), out_.logits.begin(), out_.logits.end());
        done += n;
    }
}

bool Context::decode(const Batch& batch, ForwardOutput& out, bool want_hidden,
                     const std::atomic<bool>* abort) {
    return forward_.run(batch, cache_.storage, out, want_hidden, abort);
}

}  // namespace lokal
