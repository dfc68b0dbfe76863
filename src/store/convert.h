// `lokal convert`: a Hugging Face checkpoint folder (config.json, *.safetensors read through
// mmap, tokenizer.json, tokenizer_config.json) of the llama or qwen2 architecture to GGUF,
// the way llama.cpp's convert_hf_to_gguf.py lays it out (Q/K rows permuted for llama).
// Every input is untrusted: safetensors headers, shapes, offsets and JSON are validated and
// errors are one line naming the file and the problem (store::Error).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "quant/types.h"

namespace lokal::store {

struct ConvertOptions {
    TensorType type = TensorType::F16;  // F32, F16, BF16 or Q8_0 for 2-D weights
    std::function<void(const std::string&)> status;
};

void convert_hf_to_gguf(const std::string& dir, const std::string& out_path,
                        const ConvertOptions& opts = {});

// Parse "f32", "f16", "bf16", "q8_0"; throws store::Error otherwise.
TensorType parse_convert_type(std::string_view s);

// A memory-mapped .safetensors file with a validated header.
class SafeTensors {
  public:
    struct Tensor {
        std::string name;
        std::string dtype;  // "F32", "F16", "BF16"
        std::vector<int64_t> shape;
        const uint8_t* data = nullptr;
        uint64_t n_bytes = 0;
        int64_t n_elements() const {
            int64_t n = 1;
            for (auto d : shape) n *= d;
            return n;
        }
    };
    explicit SafeTensors(const std::string& path);  // throws store::Error
    static SafeTensors from_memory(const uint8_t* data, size_t size, std::string label);
    ~SafeTensors();
    SafeTensors(SafeTensors&& o) noexcept;
    SafeTensors(const SafeTensors&) = delete;
    SafeTensors& operator=(const SafeTensors&) = delete;

    const std::vector<Tensor>& tensors() const { return tensors_; }
    const Tensor* find(std::string_view name) const;
    // Element i of a float tensor, converted to f32 (F32/F16/BF16).
    static void to_f32(const Tensor& t, float* out);

  private:
    SafeTensors() = default;
    void parse(const std::string& label);
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    bool mapped_ = false;
    std::vector<Tensor> tensors_;
};

}  // namespace lokal::store
