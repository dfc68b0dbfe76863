// The forward pass over a batch of tokens from any number of sequences.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <utility>
#include <vector>

#include "model/model.h"
#include "ops/attention.h"
#include "ops/huge_pages.h"
#include "ops/matmul.h"
#include "ops/thread_pool.h"

namespace lokal {

// The KV cache memory: per layer, K and V in fixed-size blocks of f16 or Q8_0 rows.
// k[layer] and v[layer] are each [group][n_kv_head][blocks of the group][block data]
// (ops/attention.h, KvLayout: V blocks are [block_size][row], f16 K blocks
// [head_dim][block_size]).
// Which block holds which positions of which sequence is decided by the caller (engine/kv_cache.h)
// through the block tables passed with each batch.
struct KvStorage {
    int n_layer = 0;
    int n_blocks = 0;
    int block_size = 0;
    KvType type = KvType::F16;
    KvLayout layout;  // where each block of each head lies in a layer's K (or V) cache
    // Every layer's K then V, each [n_blocks rounded up to whole groups of the layout] blocks
    // with values in `type` (layouts: ops/attention.h): zero until written, memory committed
    // as blocks are first used, on huge pages when large (ops/huge_pages.h). One arena, not a
    // buffer per layer's K and V: each buffer took whole 2 MiB pages, and at 1-2 MiB a layer
    // (TinyLlama at 2,048 positions: 1 MiB) the first token committed twice the cache (`lokal
    // run -c 2048` peak RSS as high as with -c 4096).
    ZeroBuffer<uint16_t> arena;
    size_t layer_elems = 0;  // one layer's K (or V), whole 64-byte lines

    uint16_t* k(int layer) { return arena.data() + 2 * (size_t)layer * layer_elems; }
    uint16_t* v(int layer) { return k(layer) + layer_elems; }

    // Throws std::invalid_argument when the model's head size cannot be stored in `kv_type`.
    void allocate(const HParams& hp, int blocks, int block_sz, KvType kv_type);
    size_t bytes() const {
        return 2ull * 2 * n_layer * (size_t)n_blocks * (size_t)layout.n_kv_head *
               (size_t)layout.head_block_elems;
    }
    // K and V bytes of one position over all layers, in cache type t.
    static size_t bytes_per_position(const HParams& hp, KvType t) {
        return 2ull * 2 * (size_t)hp.n_layer * (size_t)hp.n_kv_head *
               (size_t)kv_row_elems(t, hp.head_dim);
    }
};

// One batch: token i is `tokens[i]` at position `pos[i]` of the sequence whose block table
// is block_tables[seq[i]]. Positions of one sequence must continue what its cache already
// holds. Logits are produced only for tokens with want_logits[i] != 0, in batch order.
struct Batch {
    std::vector<int32_t> tokens;
    std::vector<int32_t> pos;
    std::vector<int32_t> seq;
    std::vector<uint8_t> want_logits;
    std::vector<const std::vector<int32_t>*> block_tables;  // indexed by seq[i]

    void clear() {
        tokens.clear(), pos.clear(), seq.clear(), want_logits.clear(), block_tables.clear();
    }
    void add(int32_t token, int32_t position, int32_t seq_index, bool logits) {
        tokens.push_back(token), pos.push_back(position), seq.push_back(seq_index),
            want_logits.push_back(logits);
    }
    int64_t size() const { return (int64_t)tokens.size(); }
};

// Sees the input of every matrix multiplication (importance-matrix collection).
// x is [n_tokens][w.ne[0]]; for an expert tensor, `expert` says which slice.
using MatmulObserver =
    std::function<void(const Tensor& w, int64_t expert, const float* x, int64_t n_tokens)>;

struct ForwardOutput {
    std::vector<float> logits;  // [n_wanted][n_vocab]
    std::vector<float> hidden;  // [n_wanted][dim], final normed hidden states (when asked)
};

// Scratch buffers reused across calls so a forward pass allocates only when batches grow.
class Forward {
  public:
    Forward(const Model& model, ThreadPool& pool);

    // Runs the batch, writes its K/V into `kv`, fills out.logits (and out.hidden if
    // want_hidden) for the flagged tokens. Throws std::invalid_argument on a bad batch.
    // Returns false, with out empty, when `abort` was found set between layers: the pass
    // stopped early. The K/V it wrote are for the batch's own positions, which the caller
    // has not counted as cached, and a rerun writes the same bits over them.
    bool run(const Batch& batch, KvStorage& kv, ForwardOutput& out, bool want_hidden = false,
             const std::atomic<bool>* abort = nullptr);

    MatmulObserver observer;  // optional

  private:
    void attention_block(const Batch& batch, int il, KvStorage& kv);
    void rope_prepare(const Batch& batch);
    void ffn_dense(int il, int64_t n);
    void ffn_moe(int il, int64_t n);
    // y = w · x; with residual, also residual += y inside the matmul (MatmulOut::residual).
    void mm(const Tensor& w, int64_t expert, const float* x, int64_t ldx, int64_t n, float* y,
            int64_t ldy, float* residual = nullptr);
    // Weights applied to one input (Q/K/V, gate/up, down) whose producer converts it for
    // them as it writes it (matmul_convert_row): norm_then_convert (RMSNorm) or ffn_dense's
    // SwiGLU, then mm_converted.
    struct SharedInput {
        MatmulOut outs[3];
        const Tensor* weights[3] = {};
        int n = 0;
    };
    static SharedInput shared_input(std::initializer_list<std::pair<const Tensor*, float*>> outs);
    void norm_then_convert(const std::vector<float>& norm, const SharedInput& in, int64_t n);
    void mm_converted(const SharedInput& in, const float* x, int64_t ldx, int64_t n);

    const Model& model_;
    ThreadPool& pool_;
    MatmulScratch mm_scratch_;
    // Activations, each [n_tokens][width]
    std::vector<float> x_, xb_, q_, k_, v_, att_, hb_, hb2_;
    // The model's RoPE (its frequency factors included), and each token's rotation
    // (rope_angles) taken once per run for every layer: [n_tokens][n_rot / 2] each.
    RopeParams rope_;
    std::vector<float> rope_cos_, rope_sin_;
    // MoE routing scratch
    std::vector<float> router_logits_, xe_, he_, he2_, ye_;
};

}  // namespace lokal
