#include "store/resolve.h"

#include <sys/stat.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "store/store.h"

namespace lokal::store {

using json = nlohmann::json;

std::string default_store_dir() {
    if (const char* h = std::getenv("LOKAL_HOME"); h && *h) return h;
    if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.lokal";
    return ".lokal";
}

namespace {

std::optional<std::pair<Store, Manifest>> find_stored(const std::string& name,
                                                      const std::string& dir, ModelName* out_name) {
    struct stat st {};
    if (::stat(name.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return std::nullopt;
    auto n = try_parse_name(name);
    if (!n) return std::nullopt;
    Store store(dir.empty() ? default_store_dir() : dir);
    auto m = store.read_manifest(*n);
    if (!m) return std::nullopt;
    if (!store.has_blob(m->model().digest, m->model().size))
        throw Error("model " + n->display() + " is incomplete: blob " + m->model().digest.str() +
                    " is missing (pull it again)");
    if (out_name) *out_name = *n;
    return std::make_pair(std::move(store), std::move(*m));
}

template <class T>
void get_num(const json& j, const char* key, std::optional<T>& out) {
    auto it = j.find(key);
    if (it == j.end()) return;
    if (!it->is_number()) throw Error(std::string("params: ") + key + " is not a number");
    out = it->get<T>();
}

}  // namespace

std::optional<std::string> resolve_model(const std::string& name_or_path,
                                         const std::string& store_dir_or_empty) {
    auto found = find_stored(name_or_path, store_dir_or_empty, nullptr);
    if (!found) return std::nullopt;
    return found->first.blob_path(found->second.model().digest);
}

std::optional<ModelConfig> load_model_config(const std::string& name,
                                             const std::string& store_dir_or_empty) {
    ModelName n;
    auto found = find_stored(name, store_dir_or_empty, &n);
    if (!found) return std::nullopt;
    const Store& store = found->first;
    const Manifest& m = found->second;
    ModelConfig c;
    c.name = n.display();
    c.model_path = store.blob_path(m.model().digest);
    for (const Layer* l : m.find_all(media::kAdapter))
        c.adapter_paths.push_back(store.blob_path(l->digest));
    for (const Layer* l : m.find_all(media::kProjector))
        c.projector_paths.push_back(store.blob_path(l->digest));
    if (const Layer* l = m.find(media::kSystem)) c.system = store.read_blob_text(*l);
    if (const Layer* l = m.find(media::kTemplate)) c.chat_template = store.read_blob_text(*l);
    for (const Layer* l : m.find_all(media::kLicense))
        c.licenses.push_back(store.read_blob_text(*l));
    if (const Layer* l = m.find(media::kParams)) {
        json j = json::parse(store.read_blob_text(*l), nullptr, false);
        if (!j.is_object()) throw Error("model " + c.name + ": params layer is not a JSON object");
        auto& p = c.parameters;
        get_num(j, "temperature", p.temperature);
        get_num(j, "top_p", p.top_p);
        get_num(j, "min_p", p.min_p);
        get_num(j, "repeat_penalty", p.repeat_penalty);
        get_num(j, "presence_penalty", p.presence_penalty);
        get_num(j, "frequency_penalty", p.frequency_penalty);
        get_num(j, "top_k", p.top_k);
        get_num(j, "repeat_last_n", p.repeat_last_n);
        get_num(j, "num_ctx", p.num_ctx);
        get_num(j, "num_predict", p.num_predict);
        get_num(j, "seed", p.seed);
        if (auto it = j.find("stop"); it != j.end()) {
            if (it->is_string())
                p.stop.push_back(it->get<std::string>());
            else if (it->is_array()) {
                for (const auto& s : *it)
                    if (s.is_string()) p.stop.push_back(s.get<std::string>());
            }
        }
    }
    if (const Layer* l = m.find(media::kMessages)) {
        json j = json::parse(store.read_blob_text(*l), nullptr, false);
        if (!j.is_array()) throw Error("model " + c.name + ": messages layer is not a JSON array");
        for (const auto& e : j) {
            if (!e.is_object() || !e.contains("role") || !e.contains("content") ||
                !e["role"].is_string() || !e["content"].is_string())
                throw Error("model " + c.name + ": malformed message in messages layer");
            c.messages.push_back({e["role"].get<std::string>(), e["content"].get<std::string>()});
        }
    }
    return c;
}

}  // namespace lokal::store
