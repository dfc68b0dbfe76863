#include "store/create.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "gguf/gguf.h"
#include "store/convert.h"

namespace lokal::store {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string file_type_name(uint64_t t) {
    static const std::map<uint64_t, const char*> names = {
        {0, "F32"},      {1, "F16"},      {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
        {8, "Q5_0"},     {9, "Q5_1"},     {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
        {13, "Q3_K_L"},  {14, "Q4_K_S"},  {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
        {18, "Q6_K"},    {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"},
        {23, "IQ3_XXS"}, {24, "IQ1_S"},   {25, "IQ4_NL"}, {26, "IQ3_S"},  {27, "IQ3_M"},
        {28, "IQ2_S"},   {29, "IQ2_M"},   {30, "IQ4_XS"}, {31, "IQ1_M"},  {32, "BF16"}};
    auto it = names.find(t);
    return it == names.end() ? "" : it->second;
}

std::string human_count(uint64_t n) {
    const char* units[] = {"", "K", "M", "B", "T"};
    double v = (double)n;
    int u = 0;
    while (v >= 1000 && u < 4) v /= 1000, ++u;
    char buf[32];
    if (u == 0)
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)n);
    else
        snprintf(buf, sizeof buf, "%.1f%s", v, units[u]);
    return buf;
}

std::string human_bytes(uint64_t n) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1000 && u < 4) v /= 1000, ++u;
    char buf[32];
    if (u == 0)
        snprintf(buf, sizeof buf, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
    return buf;
}

ModelInfo inspect_gguf(const std::string& path) {
    std::unique_ptr<gguf::File> f;
    try {
        f = gguf::File::open(path);
    } catch (const std::exception& e) {
        throw Error(path + ": not a valid GGUF file: " + e.what());
    }
    ModelInfo info;
    try {
        info.architecture = std::string(f->get_string("general.architecture").value_or(""));
        info.name = std::string(f->get_string("general.name").value_or(""));
        const std::string a = info.architecture;
        auto u = [&](const std::string& k) { return f->get_uint(a + "." + k).value_or(0); };
        info.context_length = u("context_length");
        info.embedding_length = u("embedding_length");
        info.block_count = u("block_count");
        info.head_count = u("attention.head_count");
        info.head_count_kv = u("attention.head_count_kv");
        info.vocab_size = u("vocab_size");
        if (const auto* toks = f->get_array("tokenizer.ggml.tokens")) {
            if (!info.vocab_size) info.vocab_size = toks->count;
        }
        info.tokenizer = std::string(f->get_string("tokenizer.ggml.model").value_or(""));
        info.has_chat_template = f->find("tokenizer.chat_template") != nullptr;
        std::map<TensorType, uint64_t> bytes_by_type;
        for (const auto& t : f->tensors()) {
            info.parameters += (uint64_t)t.n_elements();
            if (t.n_dims >= 2) bytes_by_type[t.type] += t.n_bytes;
        }
        info.parameter_size = human_count(info.parameters);
        if (auto ft = f->get_uint("general.file_type")) info.quantization = file_type_name(*ft);
        if (info.quantization.empty() && !bytes_by_type.empty()) {
            auto best = std::max_element(bytes_by_type.begin(), bytes_by_type.end(),
                                         [](auto& x, auto& y) { return x.second < y.second; });
            info.quantization = type_name(best->first);
            for (char& c : info.quantization) c = (char)toupper((unsigned char)c);
        }
    } catch (const gguf::Error& e) {
        throw Error(path + ": " + e.what());
    }
    return info;
}

namespace {

std::string expand_path(const std::string& p, const std::string& base) {
    if (p.starts_with("~/")) {
        const char* home = std::getenv("HOME");
        return std::string(home ? home : "") + p.substr(1);
    }
    if (!p.empty() && p[0] == '/') return p;
    return (fs::path(base) / p).string();
}

std::string config_json(const ModelInfo& info, const std::vector<Layer>& layers) {
    json j = json::object();
    j["model_format"] = "gguf";
    j["model_family"] = info.architecture;
    j["model_families"] = json::array({info.architecture});
    j["model_type"] = info.parameter_size;
    j["file_type"] = info.quantization;
    j["architecture"] = "amd64";
    j["os"] = "linux";
    j["rootfs"] = {{"type", "layers"}, {"diff_ids", json::array()}};
    for (const auto& l : layers) j["rootfs"]["diff_ids"].push_back(l.digest.str());
    return j.dump();
}

struct TempFile {
    std::string path;
    ~TempFile() {
        if (!path.empty()) ::unlink(path.c_str());
    }
};

}  // namespace

void create_model(Store& store, const ModelName& name, const Modelfile& mf,
                  const CreateOptions& opts) {
    auto say = [&](const std::string& s) {
        if (opts.status) opts.status(s);
    };
    json params = parameters_to_json(mf.parameters);  // validate before touching anything
    FileLock lock = store.lock_shared();

    std::vector<Layer> layers;
    std::string model_path;
    json base_params = json::object();
    std::string from_path = expand_path(mf.from, opts.base_dir);
    struct stat st {};
    TempFile converted;
    if (::stat(from_path.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            say("converting " + mf.from + " to GGUF");
            converted.path = temp_path_for(store.blobs_dir() + "/convert") + ".gguf";
            ConvertOptions co;
            co.type = parse_convert_type(opts.convert_type);
            co.status = opts.status;
            convert_hf_to_gguf(from_path, converted.path, co);
            from_path = converted.path;
        } else if (!S_ISREG(st.st_mode)) {
            throw Error("FROM " + show_str(mf.from) + " is not a file or directory");
        }
        inspect_gguf(from_path);  // validates
        say("importing " + mf.from);
        layers.push_back(store.add_blob_file(from_path, media::kModel));
        model_path = store.blob_path(layers.back().digest);
    } else {
        auto base_name = try_parse_name(mf.from);
        std::optional<Manifest> base;
        if (base_name) base = store.read_manifest(*base_name);
        if (!base) throw Error("FROM " + show_str(mf.from) + ": no such file or stored model");
        for (const auto& l : base->layers) {
            if (!store.has_blob(l.digest, l.size))
                throw Error("FROM " + mf.from + ": blob " + l.digest.str() + " is missing");
            bool overridden = (l.media_type == media::kTemplate && mf.chat_template) ||
                              (l.media_type == media::kSystem && mf.system) ||
                              (l.media_type == media::kLicense && !mf.licenses.empty()) ||
                              (l.media_type == media::kMessages && !mf.messages.empty()) ||
                              (l.media_type == media::kAdapter && mf.adapter);
            if (l.media_type == media::kParams) {
                json j = json::parse(store.read_blob_text(l), nullptr, false);
                if (j.is_object()) base_params = j;
                continue;
            }
            if (!overridden) layers.push_back(l);
        }
        model_path = store.blob_path(base->model().digest);
    }
    ModelInfo info = inspect_gguf(model_path);

    if (mf.adapter) {
        std::string p = expand_path(*mf.adapter, opts.base_dir);
        layers.push_back(store.add_blob_file(p, media::kAdapter));
    }
    if (mf.chat_template) layers.push_back(store.add_blob(*mf.chat_template, media::kTemplate));
    if (mf.system) layers.push_back(store.add_blob(*mf.system, media::kSystem));
    for (const auto& lic : mf.licenses) layers.push_back(store.add_blob(lic, media::kLicense));
    if (!mf.messages.empty()) {
        json msgs = json::array();
        for (const auto& [role, content] : mf.messages)
            msgs.push_back({{"role", role}, {"content", content}});
        layers.push_back(store.add_blob(msgs.dump(), media::kMessages));
    }
    for (auto& [k, v] : params.items()) base_params[k] = v;
    if (!base_params.empty()) layers.push_back(store.add_blob(base_params.dump(), media::kParams));

    Manifest m;
    m.layers = layers;
    m.config = store.add_blob(config_json(info, layers), media::kConfig);
    say("writing manifest");
    store.write_manifest(name, m.to_json());
}

std::string modelfile_for(const ModelConfig& c) {
    auto block = [](const std::string& s) { return "\"\"\"" + s + "\"\"\""; };
    std::string out = "# Modelfile generated by \"lokal show --modelfile\"\n";
    out += "FROM " + c.model_path + "\n";
    if (c.chat_template) out += "TEMPLATE " + block(*c.chat_template) + "\n";
    if (c.system) out += "SYSTEM " + block(*c.system) + "\n";
    const auto& p = c.parameters;
    auto num = [&](const char* k, auto v) {
        if (!v) return;
        std::string text;
        if constexpr (std::is_floating_point_v<std::decay_t<decltype(*v)>>) {
            char buf[32];
            snprintf(buf, sizeof buf, "%g", (double)*v);
            text = buf;
        } else {
            text = std::to_string(*v);
        }
        out += std::string("PARAMETER ") + k + " " + text + "\n";
    };
    num("temperature", p.temperature);
    num("top_k", p.top_k);
    num("top_p", p.top_p);
    num("min_p", p.min_p);
    num("repeat_penalty", p.repeat_penalty);
    num("repeat_last_n", p.repeat_last_n);
    num("presence_penalty", p.presence_penalty);
    num("frequency_penalty", p.frequency_penalty);
    num("seed", p.seed);
    num("num_ctx", p.num_ctx);
    num("num_predict", p.num_predict);
    for (const auto& s : p.stop) out += "PARAMETER stop " + json(s).dump() + "\n";
    for (const auto& m : c.messages) out += "MESSAGE " + m.role + " " + block(m.content) + "\n";
    for (const auto& l : c.licenses) out += "LICENSE " + block(l) + "\n";
    return out;
}

}  // namespace lokal::store
