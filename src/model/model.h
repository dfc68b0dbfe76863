// A loaded model: hyperparameters from GGUF metadata and weight views into the mapping.
//
// Large weights are used in place from the memory-mapped file, except the matmul weights of
// a model loaded to compute, which are copied and repacked into an anonymous arena on huge
// pages (Model::load); the small 1-D tensors (norm weights, biases) become f32 copies.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/arch.h"
#include "ops/huge_pages.h"
#include "ops/matmul.h"
#include "ops/ops.h"

namespace lokal {

struct ModelError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct HParams {
    std::string arch;
    int n_vocab = 0;
    int n_ctx_train = 0;
    int dim = 0;  // embedding length
    int n_layer = 0;
    int n_head = 0;
    int n_kv_head = 0;
    int head_dim = 0;  // dim / n_head unless key_length says otherwise
    int n_ff = 0;      // FFN hidden size (per expert for MoE)
    int n_expert = 0;  // 0 = dense FFN
    int n_expert_used = 0;
    float rms_eps = 1e-5f;
    RopeParams rope;         // n_rot, base, scale, style
    int sliding_window = 0;  // 0 = none

    int q_dim() const { return n_head * head_dim; }
    int kv_dim() const { return n_kv_head * head_dim; }
};

// A weight tensor lying in the mapping. ne[0] is the row length.
struct Tensor {
    std::string name;
    TensorType type = TensorType::F32;
    int64_t ne[4] = {1, 1, 1, 1};
    const uint8_t* data = nullptr;
    bool packed = false;  // rows interleaved in place for the kernels (matmul_pack)

    bool present() const { return data != nullptr; }
    size_t row_bytes() const { return row_size(type, ne[0]); }
    // The 2-D matrix [ne[1] rows][ne[0] cols]; for a 3-D expert tensor, expert e's slice.
    MatView mat(int64_t expert = 0) const;
};

struct LayerWeights {
    std::vector<float> attn_norm;   // [dim]
    Tensor wq;                      // [q_dim rows][dim]
    Tensor wk, wv;                  // [kv_dim rows][dim]
    Tensor wo;                      // [dim rows][q_dim]
    std::vector<float> bq, bk, bv;  // [q_dim], [kv_dim], [kv_dim]; empty when absent
    std::vector<float> ffn_norm;    // [dim]
    // Dense FFN (n_expert == 0)
    Tensor w_gate, w_up;  // [n_ff rows][dim]
    Tensor w_down;        // [dim rows][n_ff]
    // Mixture of experts (n_expert > 0)
    Tensor router;              // [n_expert rows][dim]
    Tensor gate_exps, up_exps;  // [n_expert][n_ff rows][dim]
    Tensor down_exps;           // [n_expert][dim rows][n_ff]
};

struct Model {
    std::unique_ptr<gguf::File> file;
    ZeroBuffer<uint8_t> packed_weights;  // repacked matmul weights; empty without repack
    const ArchSpec* spec = nullptr;
    HParams hp;
    Tensor token_embd;                     // [n_vocab rows][dim]
    std::vector<float> output_norm;        // [dim]
    Tensor output;                         // [n_vocab rows][dim]; token_embd when tied
    std::vector<float> rope_freq_factors;  // [n_rot/2] or empty
    std::vector<LayerWeights> layers;

    // Open, validate and map a model. Throws ModelError / gguf::Error with one line.
    // With `repack` (for a model that will compute) the matmul weights are copied into
    // packed_weights and repacked there for the kernels in use (matmul_pack) unless
    // LOKAL_REPACK=0; the file is never written. Without it nothing is read beyond what
    // validation needs.
    static std::unique_ptr<Model> load(const std::string& path, bool repack = true);

    uint64_t n_params() const;
    int packed_tensors() const;     // weights repacked at load for the kernels in use
    int packable_tensors() const;   // weights the kernels in use would repack
    uint64_t weight_bytes() const;  // bytes of tensor data in the file
};

}  // namespace lokal
