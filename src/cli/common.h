// Shared pieces of the CLI commands: model loading by path or store name, errors, I/O.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "engine/context.h"
#include "model/model.h"
#include "ops/attention.h"
#include "store/resolve.h"
#include "tokenizer/vocab.h"

namespace CLI {
class App;
}

namespace lokal::cli {

// A user-facing failure: main prints "lokal: <message>" on one line and exits 1.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct LoadedModel {
    std::string path;                        // the GGUF file actually opened
    std::unique_ptr<Model> model;            // null when only the vocabulary was loaded
    std::unique_ptr<gguf::File> vocab_file;  // set when only the vocabulary was loaded
    std::unique_ptr<Vocab> vocab;
    std::optional<store::ModelConfig> config;  // Modelfile settings of a stored model
    double load_ms = 0;

    const gguf::File& file() const { return model ? *model->file : *vocab_file; }
};

// `name_or_path`: a GGUF path or a model name in the store. With vocab_only, a
// vocabulary-only GGUF (no tensors) is accepted and no weights are validated. Commands that
// never compute pass repack = false: repacking touches every weight page (seconds, and the
// whole model resident) for nothing.
LoadedModel load_model(const std::string& name_or_path, const std::string& store_dir,
                       bool vocab_only = false, bool repack = true);

// The --cache-type option (KV cache element type), shared by run, serve, bench and
// perplexity: rejected at parse time unless parse_kv_type knows the name.
void add_cache_type_option(CLI::App* cmd, KvType* type);

// The weights plus a context's KV cache (every position of every sequence) against this
// machine's memory: a UsageError naming both sizes and `advice` (what to lower) when they
// exceed 90% of it. The cache is mapped lazily, so a context too large for the machine
// otherwise fails late, when generation reaches pages the system cannot give (the kernel's
// out-of-memory kill, no message), hours into a long fill.
void require_context_fits(const Model& m, const ContextParams& cp, const std::string& advice);
// The same for `kv` bytes of KV cache that `what` (the start of the message) holds at once;
// `kv_what` names the cache in the message ("f16 KV cache").
void require_memory_fits(const Model& m, uint64_t kv, const std::string& kv_what,
                         const std::string& what, const std::string& advice);

// Whole file as bytes; UsageError naming the file when it cannot be read.
std::string read_text_file(const std::string& path);

// Escape for a one-line diagnostic.
std::string one_line(std::string s);

inline double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace lokal::cli
