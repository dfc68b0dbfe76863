// `lokal create` and `lokal show`: build a stored model from a Modelfile, describe one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "store/modelfile.h"
#include "store/resolve.h"
#include "store/store.h"

namespace lokal::store {

struct CreateOptions {
    std::string base_dir = ".";                      // relative FROM/ADAPTER paths start here
    std::string convert_type = "f16";                // for FROM <Hugging Face folder>
    std::function<void(const std::string&)> status;  // progress lines (optional)
};

// Create (or replace) `name` from a parsed Modelfile. Layers not given are inherited from a
// stored FROM model. Throws store::Error; on failure no manifest is written.
void create_model(Store& store, const ModelName& name, const Modelfile& mf,
                  const CreateOptions& opts = {});

// What `lokal show` prints about a GGUF file. Throws store::Error when the file is invalid.
struct ModelInfo {
    std::string architecture;
    std::string name;
    uint64_t parameters = 0;     // total tensor elements
    std::string parameter_size;  // "656.4K", "7.2B"
    std::string quantization;    // "F16", "Q4_K_M"
    uint64_t context_length = 0, embedding_length = 0, block_count = 0, head_count = 0,
             head_count_kv = 0, vocab_size = 0;
    std::string tokenizer;  // tokenizer.ggml.model
    bool has_chat_template = false;
};
ModelInfo inspect_gguf(const std::string& path);

// The name of a llama.cpp general.file_type value ("Q4_K_M"), or "" when unknown.
std::string file_type_name(uint64_t ftype);
std::string human_count(uint64_t n);  // 656432 -> "656.4K"
std::string human_bytes(uint64_t n);  // 1536 -> "1.5 KB"

// A Modelfile that recreates `cfg` (for `show --modelfile`).
std::string modelfile_for(const ModelConfig& cfg);

}  // namespace lokal::store
