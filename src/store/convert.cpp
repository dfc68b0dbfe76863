// Hugging Face checkpoint -> GGUF for the llama and qwen2 architectures.
#include "store/convert.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "gguf/gguf.h"
#include "quant/fp16.h"
#include "quant/quantize.h"
#include "store/util.h"

namespace lokal::store {

namespace fs = std::filesystem;
using json = nlohmann::json;

TensorType parse_convert_type(std::string_view s) {
    std::string l(s);
    for (char& c : l) c = (char)tolower((unsigned char)c);
    if (l == "f32") return TensorType::F32;
    if (l == "f16") return TensorType::F16;
    if (l == "bf16") return TensorType::BF16;
    if (l == "q8_0") return TensorType::Q8_0;
    throw Error("unsupported output type " + show_str(s) + " (use f32, f16, bf16 or q8_0)");
}

namespace {

enum TokenType {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
};

json read_json(const fs::path& p, bool required) {
    std::error_code ec;
    if (!fs::exists(p, ec)) {
        if (required) throw Error(p.string() + ": missing");
        return json();
    }
    std::string text = read_file(p.string(), 256ull << 20);
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(p.string() + ": not a JSON object");
    return j;
}

struct HParams {
    std::string arch;  // "llama" or "qwen2"
    int64_t n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ctx = 0, n_vocab = 0,
            head_dim = 0;
    double eps = 1e-6, rope_theta = 10000;
    bool tied = false;
    std::optional<double> rope_linear;
};

int64_t get_int(const json& c, const char* key, int64_t lo, int64_t hi,
                std::optional<int64_t> def = {}) {
    auto it = c.find(key);
    if (it == c.end() || it->is_null()) {
        if (def) return *def;
        throw Error(std::string("config.json: missing ") + key);
    }
    if (!it->is_number_integer())
        throw Error(std::string("config.json: ") + key + " is not an integer");
    int64_t v = it->get<int64_t>();
    if (v < lo || v > hi)
        throw Error(std::string("config.json: ") + key + " = " + std::to_string(v) +
                    " is out of range");
    return v;
}

double get_float(const json& c, const char* key, double def) {
    auto it = c.find(key);
    if (it == c.end() || it->is_null()) return def;
    if (!it->is_number()) throw Error(std::string("config.json: ") + key + " is not a number");
    double v = it->get<double>();
    if (!std::isfinite(v) || v <= 0)
        throw Error(std::string("config.json: ") + key + " is invalid");
    return v;
}

HParams read_hparams(const json& c) {
    HParams h;
    std::string a;
    if (c.contains("architectures") && c["architectures"].is_array() &&
        !c["architectures"].empty() && c["architectures"][0].is_string())
        a = c["architectures"][0].get<std::string>();
    else if (c.contains("model_type") && c["model_type"].is_string())
        a = c["model_type"].get<std::string>();
    if (a == "LlamaForCausalLM" || a == "MistralForCausalLM" || a == "llama" || a == "mistral")
        h.arch = "llama";
    else if (a == "Qwen2ForCausalLM" || a == "qwen2")
        h.arch = "qwen2";
    else
        throw Error("config.json: unsupported architecture " + show_str(a) +
                    " (llama and qwen2 are)");
    h.n_embd = get_int(c, "hidden_size", 1, 1 << 20);
    h.n_ff = get_int(c, "intermediate_size", 1, 1 << 22);
    h.n_layer = get_int(c, "num_hidden_layers", 1, 4096);
    h.n_head = get_int(c, "num_attention_heads", 1, 4096);
    h.n_head_kv = get_int(c, "num_key_value_heads", 1, 4096, h.n_head);
    h.n_ctx = get_int(c, "max_position_embeddings", 1, 1ll << 32, 2048);
    h.n_vocab = get_int(c, "vocab_size", 1, 1 << 24);
    h.head_dim = get_int(c, "head_dim", 1, 1 << 16, h.n_embd / h.n_head);
    if (h.n_head % h.n_head_kv)
        throw Error("config.json: num_attention_heads is not a multiple of num_key_value_heads");
    if (h.head_dim % 2) throw Error("config.json: head dimension must be even");
    h.eps = get_float(c, "rms_norm_eps", 1e-6);
    h.rope_theta = get_float(c, "rope_theta", 10000);
    h.tied = c.value("tie_word_embeddings", false);
    if (auto it = c.find("rope_scaling"); it != c.end() && !it->is_null()) {
        std::string type = it->is_object() ? it->value("type", it->value("rope_type", "")) : "";
        if (type == "linear" && (*it).contains("factor") && (*it)["factor"].is_number())
            h.rope_linear = (*it)["factor"].get<double>();
        else
            throw Error("config.json: unsupported rope_scaling " + show_str(it->dump()));
    }
    return h;
}

// A token string from a tokenizer_config.json entry ("<s>" or {"content": "<s>"}).
std::optional<std::string> token_string(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
    return std::nullopt;
}

void convert_tokenizer(const fs::path& dir, const HParams& hp, const json& config,
                       gguf::Writer& w) {
    json tok = read_json(dir / "tokenizer.json", true);
    json tcfg = read_json(dir / "tokenizer_config.json", false);
    if (!tok.contains("model") || !tok["model"].is_object())
        throw Error("tokenizer.json: no model");
    const json& model = tok["model"];
    std::string type = model.value("type", "");
    if (type != "BPE")
        throw Error("tokenizer.json: unsupported model type " + show_str(type) + " (BPE is)");
    if (!model.contains("vocab") || !model["vocab"].is_object())
        throw Error("tokenizer.json: no vocab");
    const int64_t n_vocab = hp.n_vocab;
    std::vector<std::string> tokens(n_vocab);
    std::vector<bool> present(n_vocab, false);
    auto put = [&](const std::string& text, const json& id_json) {
        if (!id_json.is_number_integer()) throw Error("tokenizer.json: token id is not an integer");
        int64_t id = id_json.get<int64_t>();
        if (id < 0 || id >= n_vocab)
            throw Error("tokenizer.json: token id " + std::to_string(id) +
                        " outside the vocabulary of " + std::to_string(n_vocab));
        tokens[id] = text;
        present[id] = true;
    };
    for (auto& [text, id] : model["vocab"].items()) put(text, id);
    std::map<int64_t, bool> added;  // id -> special
    if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
        for (const auto& a : tok["added_tokens"]) {
            if (!a.is_object() || !a.contains("content") || !a["content"].is_string() ||
                !a.contains("id"))
                throw Error("tokenizer.json: malformed added token");
            put(a["content"].get<std::string>(), a["id"]);
            added[a["id"].get<int64_t>()] = a.value("special", false);
        }
    }
    const bool byte_fallback = model.value("byte_fallback", false);
    std::vector<int32_t> types(n_vocab, kNormal);
    static const std::regex byte_re("<0x[0-9A-Fa-f]{2}>");
    for (int64_t i = 0; i < n_vocab; ++i) {
        if (!present[i]) {
            tokens[i] = "[PAD" + std::to_string(i) + "]";
            types[i] = kUnused;
        } else if (auto it = added.find(i); it != added.end()) {
            types[i] = it->second ? kControl : kUserDefined;
        } else if (byte_fallback && std::regex_match(tokens[i], byte_re)) {
            types[i] = kByte;
        }
        if (!is_valid_utf8(tokens[i]))
            throw Error("tokenizer.json: token " + std::to_string(i) + " is not valid UTF-8");
    }
    std::vector<std::string> merges;
    if (model.contains("merges") && model["merges"].is_array()) {
        for (const auto& m : model["merges"]) {
            if (m.is_string())
                merges.push_back(m.get<std::string>());
            else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
                merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
            else
                throw Error("tokenizer.json: malformed merge");
        }
    }
    if (byte_fallback) {  // SentencePiece-style BPE: llama.cpp's "llama" vocabulary
        w.set_string("tokenizer.ggml.model", "llama");
        w.set_string("tokenizer.ggml.pre", "default");
        w.set_array_string("tokenizer.ggml.tokens", tokens);
        w.set_array_f32("tokenizer.ggml.scores", std::vector<float>(n_vocab, -1000.0f));
        w.set_array_i32("tokenizer.ggml.token_type", types);
    } else {  // byte-level BPE
        w.set_string("tokenizer.ggml.model", "gpt2");
        std::string pre = hp.arch == "qwen2" ? "qwen2" : "default";
        if (hp.arch == "llama" && tok.contains("pre_tokenizer") &&
            tok["pre_tokenizer"].dump().find("\\\\p{N}{1,3}") != std::string::npos)
            pre = "llama-bpe";
        w.set_string("tokenizer.ggml.pre", pre);
        w.set_array_string("tokenizer.ggml.tokens", tokens);
        w.set_array_i32("tokenizer.ggml.token_type", types);
        w.set_array_string("tokenizer.ggml.merges", merges);
    }
    auto id_of = [&](const std::string& s) -> std::optional<uint32_t> {
        for (int64_t i = 0; i < n_vocab; ++i)
            if (present[i] && tokens[i] == s) return (uint32_t)i;
        return std::nullopt;
    };
    auto special = [&](const char* key, const char* cfg_key, const char* gguf_key) {
        std::optional<uint32_t> id;
        if (auto s = token_string(tcfg, key)) id = id_of(*s);
        if (!id && cfg_key && config.contains(cfg_key) && config[cfg_key].is_number_unsigned() &&
            config[cfg_key].get<uint64_t>() < (uint64_t)n_vocab)
            id = (uint32_t)config[cfg_key].get<uint64_t>();
        if (id) w.set_u32(gguf_key, *id);
    };
    special("bos_token", "bos_token_id", "tokenizer.ggml.bos_token_id");
    special("eos_token", "eos_token_id", "tokenizer.ggml.eos_token_id");
    special("unk_token", nullptr, "tokenizer.ggml.unknown_token_id");
    special("pad_token", "pad_token_id", "tokenizer.ggml.padding_token_id");
    if (tcfg.contains("add_bos_token") && tcfg["add_bos_token"].is_boolean())
        w.set_bool("tokenizer.ggml.add_bos_token", tcfg["add_bos_token"].get<bool>());
    if (tcfg.contains("add_eos_token") && tcfg["add_eos_token"].is_boolean())
        w.set_bool("tokenizer.ggml.add_eos_token", tcfg["add_eos_token"].get<bool>());
    if (auto it = tcfg.find("chat_template"); it != tcfg.end()) {
        std::string tmpl;
        if (it->is_string())
            tmpl = it->get<std::string>();
        else if (it->is_array())
            for (const auto& t : *it)
                if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
                    t["template"].is_string())
                    tmpl = t["template"].get<std::string>();
        if (!tmpl.empty()) w.set_string("tokenizer.chat_template", tmpl);
    }
}

// Output tensor data kept alive until the writer is done.
struct OutTensor {
    std::vector<uint8_t> bytes;
};

}  // namespace

void convert_hf_to_gguf(const std::string& dir_str, const std::string& out_path,
                        const ConvertOptions& opts) {
    auto say = [&](const std::string& s) {
        if (opts.status) opts.status(s);
    };
    fs::path dir(dir_str);
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw Error(dir_str + ": not a directory");
    json config = read_json(dir / "config.json", true);
    HParams hp = read_hparams(config);
    const TensorType wtype = opts.type;

    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.path().extension() == ".safetensors") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw Error(dir_str + ": no .safetensors files");
    std::vector<SafeTensors> sts;
    std::map<std::string, const SafeTensors::Tensor*> by_name;
    for (const auto& f : files) {
        sts.emplace_back(f);
    }
    for (const auto& st : sts)
        for (const auto& t : st.tensors())
            if (!by_name.emplace(t.name, &t).second)
                throw Error("tensor " + show_str(t.name) + " appears twice");

    gguf::Writer w;
    const std::string a = hp.arch;
    w.set_string("general.architecture", a);
    w.set_string("general.name", fs::absolute(dir).lexically_normal().filename().string());
    w.set_u32(a + ".block_count", (uint32_t)hp.n_layer);
    w.set_u32(a + ".context_length", (uint32_t)std::min<int64_t>(hp.n_ctx, UINT32_MAX));
    w.set_u32(a + ".embedding_length", (uint32_t)hp.n_embd);
    w.set_u32(a + ".feed_forward_length", (uint32_t)hp.n_ff);
    w.set_u32(a + ".attention.head_count", (uint32_t)hp.n_head);
    w.set_u32(a + ".attention.head_count_kv", (uint32_t)hp.n_head_kv);
    w.set_f32(a + ".rope.freq_base", (float)hp.rope_theta);
    w.set_f32(a + ".attention.layer_norm_rms_epsilon", (float)hp.eps);
    uint32_t ftype = wtype == TensorType::F32    ? 0
                     : wtype == TensorType::F16  ? 1
                     : wtype == TensorType::BF16 ? 32
                                                 : 7;
    w.set_u32("general.file_type", ftype);
    w.set_u32(a + ".vocab_size", (uint32_t)hp.n_vocab);
    w.set_u32(a + ".rope.dimension_count", (uint32_t)hp.head_dim);
    if (hp.head_dim != hp.n_embd / hp.n_head) {
        w.set_u32(a + ".attention.key_length", (uint32_t)hp.head_dim);
        w.set_u32(a + ".attention.value_length", (uint32_t)hp.head_dim);
    }
    if (hp.rope_linear) {
        w.set_string(a + ".rope.scaling.type", "linear");
        w.set_f32(a + ".rope.scaling.factor", (float)*hp.rope_linear);
    }
    w.set_u32("general.quantization_version", 2);
    say("converting tokenizer");
    convert_tokenizer(dir, hp, config, w);

    std::vector<std::unique_ptr<OutTensor>> keep;
    std::set<std::string> used;
    // Add one tensor: `src` HF name, `dst` GGUF name, expected HF shape, optional Q/K permute.
    auto add = [&](const std::string& src, const std::string& dst, std::vector<int64_t> shape,
                   int permute_heads, bool required = true) {
        auto it = by_name.find(src);
        if (it == by_name.end()) {
            if (required) throw Error("checkpoint has no tensor " + show_str(src));
            return;
        }
        const auto& t = *it->second;
        used.insert(src);
        if (t.shape != shape) {
            std::string want, got;
            for (auto d : shape) want += std::to_string(d) + ",";
            for (auto d : t.shape) got += std::to_string(d) + ",";
            throw Error("tensor " + show_str(src) + " has shape [" + got + "], expected [" + want +
                        "]");
        }
        const int64_t n = t.n_elements();
        std::vector<float> f(n);
        SafeTensors::to_f32(t, f.data());
        const int64_t cols = shape.back();
        const int64_t rows = n / cols;
        if (permute_heads) {
            const int64_t hd = rows / permute_heads, half = hd / 2;
            std::vector<float> p(n);
            for (int64_t h = 0; h < permute_heads; ++h)
                for (int64_t i = 0; i < half; ++i)
                    for (int64_t j = 0; j < 2; ++j)
                        std::copy_n(&f[(h * hd + j * half + i) * cols], cols,
                                    &p[(h * hd + i * 2 + j) * cols]);
            f.swap(p);
        }
        TensorType tt = shape.size() == 1 ? TensorType::F32 : wtype;
        if (tt == TensorType::Q8_0 && cols % 32) tt = TensorType::F16;
        auto out = std::make_unique<OutTensor>();
        const size_t rs = row_size(tt, cols);
        out->bytes.resize(rs * (size_t)rows);
        for (int64_t r = 0; r < rows; ++r)
            quantize_row(tt, &f[r * cols], out->bytes.data() + r * rs, cols, nullptr);
        std::vector<int64_t> ne(shape.rbegin(), shape.rend());
        w.add_tensor(dst, tt, ne, out->bytes.data());
        keep.push_back(std::move(out));
    };
    say("converting tensors");
    const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff;
    const int64_t q_dim = hp.n_head * hp.head_dim, kv_dim = hp.n_head_kv * hp.head_dim;
    const bool has_embed = by_name.count("model.embed_tokens.weight");
    add(has_embed ? "model.embed_tokens.weight" : "lm_head.weight", "token_embd.weight", {V, E}, 0);
    const bool llama = a == "llama";
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        std::string s = "model.layers." + std::to_string(l) + ".",
                    d = "blk." + std::to_string(l) + ".";
        add(s + "input_layernorm.weight", d + "attn_norm.weight", {E}, 0);
        add(s + "self_attn.q_proj.weight", d + "attn_q.weight", {q_dim, E},
            llama ? (int)hp.n_head : 0);
        add(s + "self_attn.k_proj.weight", d + "attn_k.weight", {kv_dim, E},
            llama ? (int)hp.n_head_kv : 0);
        add(s + "self_attn.v_proj.weight", d + "attn_v.weight", {kv_dim, E}, 0);
        add(s + "self_attn.o_proj.weight", d + "attn_output.weight", {E, q_dim}, 0);
        if (!llama) {
            add(s + "self_attn.q_proj.bias", d + "attn_q.bias", {q_dim}, 0);
            add(s + "self_attn.k_proj.bias", d + "attn_k.bias", {kv_dim}, 0);
            add(s + "self_attn.v_proj.bias", d + "attn_v.bias", {kv_dim}, 0);
        }
        add(s + "post_attention_layernorm.weight", d + "ffn_norm.weight", {E}, 0);
        add(s + "mlp.gate_proj.weight", d + "ffn_gate.weight", {F, E}, 0);
        add(s + "mlp.up_proj.weight", d + "ffn_up.weight", {F, E}, 0);
        add(s + "mlp.down_proj.weight", d + "ffn_down.weight", {E, F}, 0);
    }
    add("model.norm.weight", "output_norm.weight", {E}, 0);
    if (!hp.tied)
        add("lm_head.weight", "output.weight", {V, E}, 0, has_embed);
    else
        used.insert("lm_head.weight");
    for (const auto& [name, t] : by_name)
        if (!used.count(name) && name.find("rotary_emb.inv_freq") == std::string::npos)
            throw Error("checkpoint tensor " + show_str(name) + " is not understood by the " + a +
                        " converter");
    say("writing " + out_path);
    try {
        w.write(out_path);
    } catch (const std::exception& e) {
        throw Error(std::string("cannot write ") + out_path + ": " + e.what());
    }
}

}  // namespace lokal::store
