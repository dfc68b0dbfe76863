#include "cli/common.h"

#include "ops/cpu_features.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace lokal::cli {

LoadedModel load_model(const std::string& name_or_path, const std::string& store_dir,
                       bool vocab_only, bool repack) {
    LoadedModel lm;
    auto t0 = std::chrono::steady_clock::now();
    std::error_code ec;
    if (std::filesystem::is_regular_file(name_or_path, ec)) {
        lm.path = name_or_path;
    } else if (auto p = store::resolve_model(name_or_path, store_dir)) {
        lm.path = *p;
        lm.config = store::load_model_config(name_or_path, store_dir);
    } else if (std::filesystem::exists(name_or_path, ec)) {
        throw UsageError("'" + name_or_path + "' is not a regular file");
    } else {
        throw UsageError(
            "model '" + name_or_path +
            "' not found: no such file, and no model of that name in the store (see `lokal list`)");
    }
    if (vocab_only) {
        lm.vocab_file = gguf::File::open(lm.path);
        if (lm.vocab_file->find("general.architecture") && !lm.vocab_file->tensors().empty()) {
            lm.vocab_file.reset();
            lm.model = Model::load(lm.path, repack);
        }
    } else {
        lm.model = Model::load(lm.path, repack);
    }
    lm.vocab = Vocab::from_gguf(lm.file());
    if (lm.model && lm.vocab->n_tokens() != lm.model->hp.n_vocab)
        throw UsageError("the vocabulary has " + std::to_string(lm.vocab->n_tokens()) +
                         " tokens but the model's "
                         "embedding has " +
                         std::to_string(lm.model->hp.n_vocab) + " rows");
    lm.load_ms = ms_since(t0);
    return lm;
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UsageError("cannot read '" + path + "': " + std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

void add_cache_type_option(CLI::App* cmd, KvType* type) {
    cmd->add_option_function<std::string>(
           "--cache-type", [type](const std::string& name) { *type = *parse_kv_type(name); },
           "KV cache type: f16 (default); bf16: f16's memory with f32's range, its keys "
           "scored twice as fast where the CPU has AVX512_BF16; q8_0: half the memory and "
           "the bytes a long context reads, at a small accuracy cost; q4_0: 0.28x, at a "
           "larger one (both need a head size that is a multiple of 32)")
        ->check(
            [](const std::string& name) {
                return parse_kv_type(name)
                           ? std::string()
                           : "unknown KV cache type '" + name + "' (use f16, bf16, q8_0 or q4_0)";
            },
            "f16|bf16|q8_0|q4_0");
}

void require_memory_fits(const Model& m, uint64_t kv, const std::string& kv_what,
                         const std::string& what, const std::string& advice) {
    const uint64_t weights = m.weight_bytes();
    if (weights + kv <= Context::default_memory_budget()) return;
    auto gib = [](uint64_t b) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f GiB", b / 1073741824.0);
        return std::string(buf);
    };
    throw UsageError(what + " needs " + gib(weights + kv) + " (weights " + gib(weights) + ", " +
                     kv_what + " " + gib(kv) + "), more than 90% of this machine's " +
                     gib(physical_memory_bytes()) + "; " + advice);
}

void require_context_fits(const Model& m, const ContextParams& cp, const std::string& advice) {
    const int n_ctx = Context::resolve_n_ctx(m, cp.n_ctx);
    require_memory_fits(m, Context::kv_bytes(m, cp),
                        kv_type_name(cp.kv_type) + std::string(" KV cache"),
                        "a context of " + std::to_string(n_ctx) + " positions" +
                            (cp.n_seq_max > 1 ? " x " + std::to_string(cp.n_seq_max) + " sequences"
                                              : std::string()),
                        advice);
}

}  // namespace lokal::cli
