// Random-weight models of real architectures' exact shapes, for benchmarks that need no
// download. A model is streamed to disk tensor by tensor, a few rows at a time, already in
// its final tensor type, so even a 7B shape never needs more than a few MiB of memory.
//
// The per-tensor types follow llama-quantize's mixes (Q6_K output, more bits for some
// attn_v / ffn_down layers in the _M mixes, K-quant fallbacks for rows that are not a
// multiple of 256), so a synthesized file has the size and the kernel mix of the file a
// user would download.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quant/types.h"

namespace lokal::synth {

// The hyperparameters that fix every tensor's shape.
struct Shape {
    std::string name;  // preset name, also general.name ("synth-<name>")
    std::string arch;  // "llama" or "qwen2"
    int n_vocab = 0;   // used when no vocabulary file is given
    int dim = 0;
    int n_layer = 0;
    int n_head = 0;
    int n_kv_head = 0;
    int n_ff = 0;      // per expert for MoE
    int n_expert = 0;  // 0: dense FFN
    int n_expert_used = 0;
    int n_ctx = 0;  // context_length metadata
    float rope_base = 10000.0f;
    float rms_eps = 1e-5f;
    bool tied_output = false;  // no output.weight: the logits reuse token_embd
    bool qkv_bias = false;     // attn_q/k/v biases (Qwen2)
    bool llama3_rope = false;  // rope_freqs.weight with Llama 3.1+ long-context factors
};

// Presets: tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b, llama-2-7b, llama-3.1-8b,
// mixtral-8x-tiny, and test-sized tiny, tiny-moe, tiny-qwen2 (the shapes of ../shared's
// tiny-k / tiny-moe / tiny-qwen2 models).
std::optional<Shape> find_preset(std::string_view name);
std::vector<std::string> preset_names();

// A file type as llama-quantize names it ("Q4_K_M", "q8_0", "f16"): the base tensor type
// and the GGUF general.file_type id (llama_ftype).
struct Mix {
    std::string name;  // canonical upper-case name, e.g. "Q4_K_M"
    TensorType base = TensorType::F32;
    int ftype = 0;
};
std::optional<Mix> find_mix(std::string_view name);
std::vector<std::string> mix_names();

// One tensor of the model to write.
struct TensorPlan {
    std::string name;
    TensorType type = TensorType::F32;
    std::vector<int64_t> ne;  // ne[0] is the row length
    enum class Init { Normal, Ones, Llama3RopeFactors } init = Init::Normal;
    uint64_t bytes = 0;  // data bytes in the file
};

// Every tensor of `shape` with the type `mix` gives it, in file order.
std::vector<TensorPlan> plan_tensors(const Shape& shape, const Mix& mix);

struct Options {
    Shape shape;
    Mix mix;
    std::string vocab_path;  // a GGUF holding tokenizer.* keys; empty: a generated placeholder
    uint64_t seed = 1;
    float stddev = 0.02f;  // of the random weights (norm weights are 1)
    int n_threads = 0;     // 0: physical cores
    // Called after each tensor is written (index from 0, count, plan), e.g. for progress.
    std::function<void(size_t, size_t, const TensorPlan&)> on_tensor;
};

struct Summary {
    uint64_t n_params = 0;
    uint64_t data_bytes = 0;  // tensor data
    uint64_t file_bytes = 0;
    int n_vocab = 0;  // the vocabulary actually written
    size_t n_tensors = 0;
};

// Write the model to `path` (via a temporary file beside it, renamed when complete).
// Throws std::runtime_error (gguf::Error, std::invalid_argument) with one line.
Summary write_model(const Options& options, const std::string& path);

}  // namespace lokal::synth
