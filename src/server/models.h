// Models the server has loaded: each with its own Context (paged KV pool) and Scheduler
// loop. Loaded on demand by name (a GGUF path, a file in --models-dir, or a store name),
// kept for keep_alive after their last request, unloaded least recently used when more
// than max_loaded are needed or when loading one would exceed the memory budget (weights
// plus KV pools, max_memory). Requests hold a shared_ptr, so an unloaded model stays alive
// until its last request ends.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/context.h"
#include "engine/scheduler.h"
#include "engine/speculative.h"
#include "model/model.h"
#include "store/resolve.h"
#include "tokenizer/vocab.h"

namespace lokal::server {

using Clock = std::chrono::steady_clock;

// Thrown when a model cannot be found or loaded; the server answers 404 or 500.
struct ModelNotFound : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Thrown when a model does not fit the memory budget. busy: models serving requests hold
// the memory it needs (retry later); otherwise it cannot fit with these settings at all.
struct ModelTooLarge : std::runtime_error {
    ModelTooLarge(const std::string& msg, bool is_busy) : std::runtime_error(msg), busy(is_busy) {}
    bool busy;
};

// Used when a model ships no chat template (documented in docs/SERVER.md).
extern const char* const kDefaultChatTemplate;

struct ServedModel {
    std::string name;  // as the client named it
    std::string path;
    std::unique_ptr<Model> model;
    std::unique_ptr<Vocab> vocab;
    std::optional<store::ModelConfig> config;
    std::string chat_template;
    bool default_template = false;
    // The draft model (serve --model-draft) and its one-sequence Context, for the model
    // loaded at start only; null otherwise. Destroyed after sched, which uses the drafter.
    std::unique_ptr<Model> draft_model;
    std::unique_ptr<Context> draft_ctx;
    std::unique_ptr<Drafter> drafter;
    std::unique_ptr<Context> ctx;  // destroyed after sched (declared before it)
    std::unique_ptr<Scheduler> sched;
    double load_ms = 0;
    std::chrono::system_clock::time_point loaded_at;
    uint64_t bytes = 0;  // weights + the KV pool's full size: what counts against the budget

    // Guarded by the registry's mutex.
    int active = 0;
    Clock::time_point last_used;
    std::optional<Clock::time_point> expires;  // nullopt: never

    std::string token_text(int32_t id) const {
        return id >= 0 ? vocab->token_to_piece(id, true) : std::string();
    }
};

struct ModelOptions {
    std::string store_dir;   // "" = default
    std::string models_dir;  // GGUF files listed by /api/tags, addressed by file stem
    int n_ctx = 0;           // 0: the model's, at most 4096
    int parallel = 4;
    int n_threads = 0;
    int n_batch = 512;
    int max_queue = 64;
    int max_loaded = 3;
    bool prefix_cache = true;
    bool prefill_first = true;       // SchedulerParams::prefill_first
    bool abort_for_arrivals = true;  // SchedulerParams::abort_for_arrivals
    int lookup_draft = 0;            // SchedulerParams::lookup_draft (0: no speculation)
    int draft_max_running = 1;       // SchedulerParams::draft_max_running
    // A small model of the same vocabulary (a GGUF path or a store name) drafting for the
    // model named draft_for (serve -m): speculative decoding, instead of lookup.
    std::string draft_model, draft_for;
    DraftParams draft;  // n_max tokens per draft, p_min confidence
    KvType kv_type = KvType::F16;
    uint64_t max_memory = 0;  // budget for all loaded models' bytes; 0: 90% of physical memory
    std::chrono::milliseconds keep_alive = std::chrono::minutes(5);  // negative: forever
};

struct ModelListing {
    std::string name, path;
    uint64_t size = 0;
    std::filesystem::file_time_type modified;
};

class ModelRegistry {
  public:
    explicit ModelRegistry(ModelOptions opts);
    ~ModelRegistry();

    // Loaded (or loads) the model and marks a request as active on it; release() ends it.
    std::shared_ptr<ServedModel> acquire(const std::string& name);
    // keep_alive: how long to keep the model after this request (nullopt: the default).
    void release(const std::shared_ptr<ServedModel>& m,
                 std::optional<std::chrono::milliseconds> keep_alive);
    void unload(const std::string& name);

    std::vector<std::shared_ptr<ServedModel>> loaded() const;
    std::vector<ModelListing> available() const;  // models-dir files and the store
    const ModelOptions& options() const { return opts_; }
    uint64_t memory_budget() const;  // max_memory, or its default
    // A GGUF path the operator named (`serve -m PATH`): requests may use it by that exact
    // string. Any other name is looked up only as a plain file name in the models dir or as
    // a store name, never as a path: a client must not make the server open its files.
    void allow_path(const std::string& path);
    std::string resolve_path(const std::string& name) const;  // "" when not found

  private:
    // What loading a model will take, found from its file's header without loading it.
    struct LoadPlan {
        std::string path;
        std::optional<store::ModelConfig> config;
        ContextParams cp;
        uint64_t weight_bytes = 0, kv_bytes = 0;
    };
    LoadPlan plan_load(const std::string& name) const;
    // Unloads idle models, least recently used first, until the count and the budget allow
    // `plan`; throws ModelTooLarge when they cannot. Called with mu_ held.
    void make_room(const std::string& name, const LoadPlan& plan);
    std::shared_ptr<ServedModel> load(const std::string& name, const LoadPlan& plan);
    void load_draft(ServedModel& m) const;
    std::string draft_path() const;  // opts_.draft_model as a file, or ModelNotFound  //
                                     // opts_.draft_model, checked against m's vocabulary
    void sweep();

    ModelOptions opts_;
    std::vector<std::string> allowed_paths_;  // set before serving, read-only after
    mutable std::mutex mu_;
    std::mutex load_mu_;  // one load at a time
    std::unordered_map<std::string, std::shared_ptr<ServedModel>> models_;
    bool stop_ = false;
    std::condition_variable cv_;
    std::thread sweeper_;
};

// Parses Ollama-style durations: a number of seconds, or "5m", "1h30m", "10s", "-1".
// Magnitudes past 100 years are clamped to it (either sign; negative means forever);
// malformed text is nullopt.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& s);
// ms as a duration, clamped like parse_duration; nullopt for NaN.
std::optional<std::chrono::milliseconds> duration_of_ms(double ms);
// "8G", "512MiB", "1.5g", "1048576": bytes, with binary K/M/G/T multiples (an optional
// trailing "B" or "iB"); nullopt for anything else, negative, or past 2^60.
std::optional<uint64_t> parse_byte_size(const std::string& s);

}  // namespace lokal::server
