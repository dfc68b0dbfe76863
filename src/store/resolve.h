// Model name resolution for `lokal run NAME`, `-m NAME` and the server.
//
//   std::string path = std::filesystem::exists(arg) ? arg
//                    : store::resolve_model(arg, store_dir).value_or(arg);
//   if (auto cfg = store::load_model_config(arg, store_dir)) { ...cfg->parameters... }
//
// Functions throw store::Error when a stored manifest or layer is corrupt (a clear line
// for the user), and return nullopt when `name` is not a stored model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lokal::store {

// $LOKAL_HOME, else ~/.lokal (else ./.lokal when HOME is unset).
std::string default_store_dir();

// The GGUF blob of a stored model, or nullopt when `name_or_path` is an existing file,
// not a valid model name, or not in the store. An empty store dir means the default.
std::optional<std::string> resolve_model(const std::string& name_or_path,
                                         const std::string& store_dir_or_empty);

// PARAMETER defaults from a Modelfile (unset fields: use the engine's defaults).
struct ModelParameters {
    std::optional<float> temperature, top_p, min_p, repeat_penalty, presence_penalty,
        frequency_penalty;
    std::optional<int32_t> top_k, repeat_last_n, num_ctx, num_predict;
    std::optional<uint64_t> seed;
    std::vector<std::string> stop;
};

struct ChatMessage {
    std::string role;  // system, user, assistant
    std::string content;
};

struct ModelConfig {
    std::string name;        // canonical short name, e.g. "tiny:latest"
    std::string model_path;  // the GGUF blob
    std::vector<std::string> adapter_paths;
    std::vector<std::string> projector_paths;
    ModelParameters parameters;
    std::optional<std::string> system;         // SYSTEM
    std::optional<std::string> chat_template;  // TEMPLATE: overrides the GGUF's chat template
    std::vector<ChatMessage> messages;         // MESSAGE history to prepend
    std::vector<std::string> licenses;
};

std::optional<ModelConfig> load_model_config(const std::string& name,
                                             const std::string& store_dir_or_empty);

}  // namespace lokal::store
