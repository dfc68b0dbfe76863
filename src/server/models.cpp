#include "server/models.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "ops/cpu_features.h"

#include "store/store.h"

namespace lokal::server {

namespace fs = std::filesystem;

// Plain "role: text" lines; BOS comes from tokenization (see build_chat_prompt).
const char* const kDefaultChatTemplate =
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

std::optional<std::chrono::milliseconds> duration_of_ms(double ms) {
    constexpr double kMax = 100 * 365.25 * 24 * 3600e3;  // 100 years: "forever" enough
    if (std::isnan(ms)) return std::nullopt;
    return std::chrono::milliseconds((int64_t)std::clamp(ms, -kMax, kMax));
}

std::optional<std::chrono::milliseconds> parse_duration(const std::string& s) {
    if (s.empty()) return std::nullopt;
    // strtod, not stod: nothing here may throw on hostile text ("1e999", ".", "-").
    char* end = nullptr;
    const double whole = std::strtod(s.c_str(), &end);
    if (end == s.c_str() + s.size() && !std::isspace((unsigned char)s[0]))
        return duration_of_ms(whole * 1000);
    // Go-style: sequence of <number><unit> with units h, m, s, ms.
    double total = 0;
    bool neg = false;
    size_t i = 0;
    if (s[0] == '-') neg = true, i = 1;
    if (i == s.size()) return std::nullopt;
    while (i < s.size()) {
        size_t j = i;
        while (j < s.size() && (isdigit((unsigned char)s[j]) || s[j] == '.')) ++j;
        if (j == i) return std::nullopt;
        const std::string num = s.substr(i, j - i);
        const double v = std::strtod(num.c_str(), &end);
        if (end != num.c_str() + num.size()) return std::nullopt;  // "." or "1.2.3"
        size_t k = j;
        while (k < s.size() && isalpha((unsigned char)s[k])) ++k;
        const std::string unit = s.substr(j, k - j);
        if (unit == "h")
            total += v * 3600e3;
        else if (unit == "m")
            total += v * 60e3;
        else if (unit == "s")
            total += v * 1e3;
        else if (unit == "ms")
            total += v;
        else
            return std::nullopt;
        i = k;
    }
    return duration_of_ms(neg ? -total : total);
}

std::optional<uint64_t> parse_byte_size(const std::string& s) {
    size_t j = 0;
    while (j < s.size() && (isdigit((unsigned char)s[j]) || s[j] == '.')) ++j;
    if (j == 0) return std::nullopt;
    const std::string num = s.substr(0, j);
    char* end = nullptr;
    const double v = std::strtod(num.c_str(), &end);
    if (end != num.c_str() + num.size()) return std::nullopt;
    std::string unit = s.substr(j);
    for (char& c : unit) c = (char)std::toupper((unsigned char)c);
    double mult = 1;
    if (!unit.empty() && std::string("KMGT").find(unit[0]) != std::string::npos) {
        mult = std::pow(1024.0, 1 + (double)std::string("KMGT").find(unit[0]));
        unit.erase(0, 1);
        if (unit == "IB" || unit == "B") unit.clear();
    } else if (unit == "B") {
        unit.clear();
    }
    if (!unit.empty()) return std::nullopt;
    const double bytes = v * mult;
    if (!(bytes >= 0) || bytes > 1152921504606846976.0) return std::nullopt;  // 2^60
    return (uint64_t)bytes;
}

ModelRegistry::ModelRegistry(ModelOptions opts) : opts_(std::move(opts)) {
    sweeper_ = std::thread([this] {
        std::unique_lock lk(mu_);
        while (!stop_) {
            cv_.wait_for(lk, std::chrono::milliseconds(250));
            lk.unlock();
            sweep();
            lk.lock();
        }
    });
}

ModelRegistry::~ModelRegistry() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    sweeper_.join();
}

void ModelRegistry::allow_path(const std::string& path) {
    allowed_paths_.push_back(path);
}

std::string ModelRegistry::resolve_path(const std::string& name) const {
    std::error_code ec;
    // A file name, not a path: "../x" or "a/b" must not leave the models dir.
    const bool plain = !name.empty() && name != "." && name != ".." &&
                       name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
    if (!opts_.models_dir.empty() && plain) {
        for (const std::string& cand :
             {opts_.models_dir + "/" + name + ".gguf", opts_.models_dir + "/" + name})
            if (fs::is_regular_file(cand, ec)) return cand;
    }
    if (std::find(allowed_paths_.begin(), allowed_paths_.end(), name) != allowed_paths_.end() &&
        fs::is_regular_file(name, ec))
        return name;
    try {
        if (auto p = store::resolve_model(name, opts_.store_dir)) return *p;
    } catch (const std::exception&) {
    }
    return {};
}

ModelRegistry::LoadPlan ModelRegistry::plan_load(const std::string& name) const {
    LoadPlan plan;
    plan.path = resolve_path(name);
    if (plan.path.empty())
        throw ModelNotFound("model '" + name +
                            "' not found: no such file, and no model of that name in " +
                            (opts_.models_dir.empty() ? "" : "the models dir or ") + "the store");
    try {
        if (!fs::is_regular_file(name))
            plan.config = store::load_model_config(name, opts_.store_dir);
    } catch (const std::exception&) {
    }
    // The header and tensor table only: no weight is read or repacked.
    const auto probe = Model::load(plan.path, false);
    ContextParams& cp = plan.cp;
    cp.n_ctx = opts_.n_ctx;
    if (cp.n_ctx <= 0 && plan.config && plan.config->parameters.num_ctx)
        cp.n_ctx = *plan.config->parameters.num_ctx;
    cp.n_seq_max = std::max(1, opts_.parallel);
    cp.n_threads = opts_.n_threads;
    cp.n_batch = opts_.n_batch;
    cp.kv_type = opts_.kv_type;
    if (!kv_type_fits(cp.kv_type, probe->hp.head_dim)) {
        // One server may hold several models: one whose head size has no whole Q8_0 blocks
        // still serves, with the f16 cache (as Ollama does with its KV cache type).
        std::fprintf(stderr,
                     "lokal serve: model '%s' has head size %d, not a multiple of 32; using an "
                     "f16 KV cache instead of %s\n",
                     name.c_str(), probe->hp.head_dim, kv_type_name(cp.kv_type));
        cp.kv_type = KvType::F16;
    }
    plan.weight_bytes = probe->weight_bytes();
    plan.kv_bytes = Context::kv_bytes(*probe, cp);
    if (!opts_.draft_model.empty() && name == opts_.draft_for) {
        // The draft model and its one-sequence cache count against the budget too.
        const auto draft = Model::load(draft_path(), false);
        ContextParams dc;
        dc.n_ctx = cp.n_ctx;
        plan.weight_bytes += draft->weight_bytes();
        plan.kv_bytes += Context::kv_bytes(*draft, dc);
    }
    return plan;
}

uint64_t ModelRegistry::memory_budget() const {
    return opts_.max_memory > 0 ? opts_.max_memory : Context::default_memory_budget();
}

namespace {
std::string gib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
    return buf;
}
}  // namespace

void ModelRegistry::make_room(const std::string& name, const LoadPlan& plan) {
    const uint64_t need = plan.weight_bytes + plan.kv_bytes, budget = memory_budget();
    if (need > budget)
        throw ModelTooLarge("model '" + name + "' needs " + gib(need) + " (weights " +
                                gib(plan.weight_bytes) + ", KV cache " + gib(plan.kv_bytes) +
                                "), more than the memory budget of " + gib(budget) +
                                "; raise --max-memory, or lower -c or --parallel, or use "
                                "--cache-type q8_0",
                            false);
    auto used = [this] {
        uint64_t u = 0;
        for (auto& [_, m] : models_) u += m->bytes;
        return u;
    };
    while ((int)models_.size() >= std::max(1, opts_.max_loaded) || used() + need > budget) {
        auto victim = models_.end();
        for (auto it = models_.begin(); it != models_.end(); ++it)
            if (it->second->active == 0 &&
                (victim == models_.end() || it->second->last_used < victim->second->last_used))
                victim = it;
        if (victim == models_.end()) break;  // all busy
        std::fprintf(stderr, "lokal serve: unloading '%s' (least recently used; %s)\n",
                     victim->first.c_str(),
                     used() + need > budget ? "memory budget" : "--max-models");
        models_.erase(victim);
    }
    // Over the model count with every model busy: load anyway rather than fail. Over the
    // memory budget: fail, and say when to retry.
    if (used() + need > budget)
        throw ModelTooLarge("model '" + name + "' needs " + gib(need) + " but models serving " +
                                "requests hold " + gib(used()) + " of the memory budget of " +
                                gib(budget) + "; retry when they finish",
                            true);
}

std::string ModelRegistry::draft_path() const {
    std::error_code ec;
    if (fs::is_regular_file(opts_.draft_model, ec)) return opts_.draft_model;
    try {
        if (auto p = store::resolve_model(opts_.draft_model, opts_.store_dir)) return *p;
    } catch (const std::exception&) {
    }
    throw ModelNotFound("--model-draft: '" + opts_.draft_model +
                        "' is neither a GGUF file nor a model in the store");
}

void ModelRegistry::load_draft(ServedModel& m) const {
    const std::string path = draft_path();
    m.draft_model = Model::load(path);
    const auto vocab = Vocab::from_gguf(*m.draft_model->file);
    const std::string why = draft_vocab_mismatch(*m.vocab, *vocab);
    if (!why.empty())
        throw std::runtime_error("--model-draft: " + why +
                                 "; use a smaller model of the same family");
    std::fprintf(stderr,
                 "lokal serve: '%s' drafts for '%s' (up to %d tokens while at most %d "
                 "sequence%s decode)\n",
                 path.c_str(), m.name.c_str(), opts_.draft.n_max, opts_.draft_max_running,
                 opts_.draft_max_running == 1 ? "" : "s");
}

std::shared_ptr<ServedModel> ModelRegistry::load(const std::string& name, const LoadPlan& plan) {
    const std::string& path = plan.path;
    auto m = std::make_shared<ServedModel>();
    const auto t0 = Clock::now();
    m->name = name;
    m->path = path;
    m->config = plan.config;
    m->model = Model::load(path);
    m->vocab = Vocab::from_gguf(*m->model->file);
    if (m->vocab->n_tokens() != m->model->hp.n_vocab)
        throw std::runtime_error(
            "the vocabulary and the model's embedding disagree on the vocabulary size");
    if (!opts_.draft_model.empty() && name == opts_.draft_for) load_draft(*m);
    if (m->config && m->config->chat_template) m->chat_template = *m->config->chat_template;
    if (m->chat_template.empty())
        if (auto t = m->model->file->get_string("tokenizer.chat_template"))
            m->chat_template = std::string(*t);
    if (m->chat_template.empty()) {
        m->chat_template = kDefaultChatTemplate;
        m->default_template = true;
        std::fprintf(
            stderr,
            "lokal serve: model '%s' has no chat template; using the default 'role: text' format\n",
            name.c_str());
    }
    const ContextParams& cp = plan.cp;
    m->ctx = std::make_unique<Context>(*m->model, cp);
    m->bytes = m->model->weight_bytes() + m->ctx->cache().storage.bytes();
    if (m->draft_model) {
        ContextParams dc;  // one sequence as long as each of the model's
        dc.n_ctx = m->ctx->n_ctx();
        dc.n_seq_max = 1;
        dc.n_threads = opts_.n_threads;
        dc.n_batch = opts_.n_batch;
        m->draft_ctx = std::make_unique<Context>(*m->draft_model, dc);
        m->drafter = std::make_unique<ModelDrafter>(*m->draft_ctx, opts_.draft);
        m->bytes += m->draft_model->weight_bytes() + m->draft_ctx->cache().storage.bytes();
    }
    SchedulerParams sp;
    sp.max_running = std::max(1, opts_.parallel);
    sp.max_queue = opts_.max_queue;
    sp.step_tokens = opts_.n_batch;
    sp.prefix_cache = opts_.prefix_cache;
    sp.prefill_first = opts_.prefill_first;
    sp.abort_for_arrivals = opts_.abort_for_arrivals;
    sp.lookup_draft = opts_.lookup_draft;
    sp.draft_max_running = opts_.draft_max_running;
    sp.drafter = m->drafter.get();
    m->sched = std::make_unique<Scheduler>(*m->ctx, *m->vocab, sp);
    m->load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    m->loaded_at = std::chrono::system_clock::now();
    m->last_used = Clock::now();
    const KvStorage& kv = m->ctx->cache().storage;
    std::fprintf(stderr,
                 "lokal serve: loaded '%s' (%s) in %.0f ms, context %d, %d KV blocks (%s, %.1f "
                 "MiB)\n",
                 name.c_str(), path.c_str(), m->load_ms, m->ctx->n_ctx(), kv.n_blocks,
                 kv_type_name(kv.type), kv.bytes() / 1048576.0);
    return m;
}

std::shared_ptr<ServedModel> ModelRegistry::acquire(const std::string& name) {
    {
        std::lock_guard lk(mu_);
        auto it = models_.find(name);
        if (it != models_.end()) {
            ++it->second->active;
            it->second->last_used = Clock::now();
            return it->second;
        }
    }
    std::lock_guard load_lk(load_mu_);
    {
        std::lock_guard lk(mu_);  // another request may have loaded it meanwhile
        auto it = models_.find(name);
        if (it != models_.end()) {
            ++it->second->active;
            return it->second;
        }
    }
    const LoadPlan plan = plan_load(name);
    {
        std::lock_guard lk(mu_);
        make_room(name, plan);  // before loading: the unloaded models' memory is free first
    }
    auto m = load(name, plan);
    std::lock_guard lk(mu_);
    ++m->active;
    models_[name] = m;
    return m;
}

void ModelRegistry::release(const std::shared_ptr<ServedModel>& m,
                            std::optional<std::chrono::milliseconds> keep_alive) {
    std::lock_guard lk(mu_);
    --m->active;
    m->last_used = Clock::now();
    const auto ka = keep_alive.value_or(opts_.keep_alive);
    if (ka.count() < 0)
        m->expires.reset();
    else
        m->expires = Clock::now() + ka;
}

void ModelRegistry::unload(const std::string& name) {
    std::lock_guard lk(mu_);
    models_.erase(name);
}

void ModelRegistry::sweep() {
    std::vector<std::shared_ptr<ServedModel>> dropped;  // destroyed outside the lock
    {
        std::lock_guard lk(mu_);
        const auto now = Clock::now();
        for (auto it = models_.begin(); it != models_.end();) {
            if (it->second->active == 0 && it->second->expires && *it->second->expires <= now) {
                std::fprintf(stderr, "lokal serve: unloading '%s' (keep_alive expired)\n",
                             it->first.c_str());
                dropped.push_back(std::move(it->second));
                it = models_.erase(it);
            } else {
                ++it;
            }
        }
    }
}

std::vector<std::shared_ptr<ServedModel>> ModelRegistry::loaded() const {
    std::lock_guard lk(mu_);
    std::vector<std::shared_ptr<ServedModel>> out;
    for (auto& [_, m] : models_) out.push_back(m);
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a->name < b->name; });
    return out;
}

std::vector<ModelListing> ModelRegistry::available() const {
    std::vector<ModelListing> out;
    std::error_code ec;
    if (!opts_.models_dir.empty())
        for (auto& e : fs::directory_iterator(opts_.models_dir, ec)) {
            if (!e.is_regular_file(ec) || e.path().extension() != ".gguf") continue;
            out.push_back({e.path().stem().string(), e.path().string(), (uint64_t)e.file_size(ec),
                           e.last_write_time(ec)});
        }
    try {
        store::Store st(opts_.store_dir.empty() ? store::default_store_dir() : opts_.store_dir);
        for (auto& e : st.list()) out.push_back({e.name.display(), "", e.size, e.modified});
    } catch (const std::exception&) {
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
    return out;
}

}  // namespace lokal::server
