// An inference context: a model, a thread pool, a paged KV cache and the forward pass's
// scratch memory. Sequences live in the cache; eval() runs tokens of one sequence in
// batches of up to n_batch, decode() runs an arbitrary multi-sequence batch.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <vector>

#include "engine/kv_cache.h"
#include "model/forward.h"
#include "model/model.h"
#include "ops/thread_pool.h"

namespace lokal {

struct ContextError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct ContextParams {
    int n_ctx = 0;        // positions per sequence; 0: the model's training context, capped at 4096
    int n_seq_max = 1;    // sequences the KV pool is sized for
    int n_threads = 0;    // 0: physical cores
    int n_batch = 512;    // tokens per forward pass
    int block_size = 16;  // KV block size in positions
    KvType kv_type = KvType::F16;  // K/V cache element type (q8_0: half the memory)
};

class Context {
  public:
    Context(const Model& model, const ContextParams& params);

    // Positions per sequence that params.n_ctx gives for this model (0: the model's).
    static int resolve_n_ctx(const Model& model, int requested);
    // Bytes of the KV cache a Context with these params allocates (its pool's full size).
    static size_t kv_bytes(const Model& model, const ContextParams& params);
    // What weights and KV caches may take unless the user says otherwise: 90% of this
    // machine's physical memory (UINT64_MAX when the system does not say). lokal serve's
    // budget and the CLI's context check.
    static uint64_t default_memory_budget();

    const Model& model() const { return model_; }
    int n_ctx() const { return n_ctx_; }
    int n_batch() const { return params_.n_batch; }
    ThreadPool& pool() { return pool_; }
    KvCache& cache() { return cache_; }
    Forward& forward() { return forward_; }

    // Append `tokens` to sequence `seq` (its cache holds length(seq) positions already).
    // Fills `logits` with the last token's logits row, or with every token's rows
    // ([tokens.size()][n_vocab]) when all_logits. Throws ContextError when the sequence
    // would exceed n_ctx or the KV pool is exhausted.
    void eval(int32_t seq, std::span<const int32_t> tokens, bool all_logits,
              std::vector<float>& logits);

    // Run a batch whose block tables the caller prepared (see KvCache::prepare). With
    // `abort`, the pass checks it between layers and returns false when it was set
    // (Forward::run): nothing was computed that the caller must undo.
    bool decode(const Batch& batch, ForwardOutput& out, bool want_hidden = false,
                const std::atomic<bool>* abort = nullptr);

  private:
    const Model& model_;
    ContextParams params_;
    int n_ctx_;
    ThreadPool pool_;
    KvCache cache_;
    Forward forward_;
    Batch batch_;
    ForwardOutput out_;
};

}  // namespace lokal
