#include "tokenizer/vocab.h"

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <stdexcept>

#include "tokenizer/pretokenize.h"
#include "tokenizer/token_trie.h"
#include "tokenizer/unicode.h"

namespace lokal {

namespace {

[[noreturn]] void fail(const std::string& msg) {
    throw std::runtime_error("vocab: " + msg);
}

bool is_int_type(gguf::ValueType t) {
    switch (t) {
        case gguf::ValueType::UINT8:
        case gguf::ValueType::INT8:
        case gguf::ValueType::UINT16:
        case gguf::ValueType::INT16:
        case gguf::ValueType::UINT32:
        case gguf::ValueType::INT32:
        case gguf::ValueType::UINT64:
        case gguf::ValueType::INT64:
            return true;
        default:
            return false;
    }
}

bool is_unsigned_type(gguf::ValueType t) {
    return t == gguf::ValueType::UINT8 || t == gguf::ValueType::UINT16 ||
           t == gguf::ValueType::UINT32 || t == gguf::ValueType::UINT64;
}

bool is_float_type(gguf::ValueType t) {
    return t == gguf::ValueType::FLOAT32 || t == gguf::ValueType::FLOAT64;
}

// An array of `n` elements accepted by `ok`, or nullptr when absent.
const gguf::Value* get_array(const gguf::File& f, const std::string& key, uint64_t n,
                             bool (*ok)(gguf::ValueType), const char* what) {
    const gguf::Value* a = f.get_array(key);
    if (!a) return nullptr;
    if (!ok(a->elem_type)) fail(key + " must be an array of " + what);
    if (a->count != n)
        fail(key + " has " + std::to_string(a->count) + " entries, expected " + std::to_string(n));
    return a;
}

// A token id from the metadata: nullopt when absent or "unset" (negative, or 0xFFFFFFFF
// as some converters write for -1); the caller then keeps its default, as the reference.
std::optional<int64_t> get_id(const gguf::File& f, const std::string& key) {
    const gguf::Value* v = f.find(key);
    if (!v) return std::nullopt;
    if (!is_int_type(v->type)) fail(key + " is not an integer");
    if (is_unsigned_type(v->type)) {
        if (v->u >= 0xFFFFFFFFull) return std::nullopt;
        return static_cast<int64_t>(v->u);
    }
    if (v->i < 0) return std::nullopt;
    return v->i;
}

bool c_isspace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

}  // namespace

Vocab::Vocab() = default;
Vocab::~Vocab() = default;

const TokenTrie& Vocab::token_trie() const {
    std::call_once(trie_once_, [this] { trie_ = std::make_unique<TokenTrie>(*this); });
    return *trie_;
}

std::unique_ptr<Vocab> Vocab::from_gguf(const gguf::File& f) {
    std::unique_ptr<Vocab> v(new Vocab());
    const auto model = f.get_string("tokenizer.ggml.model");
    if (!model) fail("missing tokenizer.ggml.model");
    v->model_ = std::string(*model);
    if (v->model_ == "llama") {
        v->is_spm_ = true;
    } else if (v->model_ == "gpt2") {
        v->is_spm_ = false;
    } else {
        fail("unsupported tokenizer model '" + v->model_ + "'");
    }
    if (auto pre = f.get_string("tokenizer.ggml.pre")) v->pre_ = std::string(*pre);

    // Tokens, scores, types.
    const gguf::Value* tokens = f.get_array("tokenizer.ggml.tokens");
    if (!tokens) fail("missing tokenizer.ggml.tokens");
    if (tokens->elem_type != gguf::ValueType::STRING || tokens->strings.size() != tokens->count)
        fail("tokenizer.ggml.tokens must be an array of strings");
    const uint64_t n = tokens->count;
    if (n == 0) fail("tokenizer.ggml.tokens is empty");
    if (n > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
        fail("too many tokens (" + std::to_string(n) + ")");
    const gguf::Value* scores = get_array(f, "tokenizer.ggml.scores", n, is_float_type, "floats");
    const gguf::Value* types =
        get_array(f, "tokenizer.ggml.token_type", n, is_int_type, "integers");

    v->text_.reserve(n);
    v->score_.assign(n, 0.0f);
    v->type_.assign(n, kNormal);
    for (uint64_t i = 0; i < n; ++i) {
        v->text_.emplace_back(tokens->strings[i]);
        if (scores) {
            const double s = scores->elem_float(i);
            v->score_[i] = std::isnan(s) ? -FLT_MAX : static_cast<float>(s);
        }
        if (types) {
            const int64_t t = types->elem_int(i);
            v->type_[i] = (t >= kNormal && t <= kByte) ? static_cast<TokenType>(t) : kUndefined;
        }
    }
    v->to_id_.reserve(n);
    for (uint64_t i = 0; i < n; ++i) v->to_id_[v->text_[i]] = static_cast<TokenId>(i);

    // Model-specific defaults.
    PreTokenizerSpec spec;
    int64_t bos = -1, eos = -1, unk = -1;
    if (v->is_spm_) {
        bos = 1, eos = 2, unk = 0;
        v->add_bos_ = true;
        v->add_space_prefix_ = true;
    } else {
        const gguf::Value* merges = f.get_array("tokenizer.ggml.merges");
        if (!merges) fail("missing tokenizer.ggml.merges");
        if (merges->elem_type != gguf::ValueType::STRING || merges->strings.size() != merges->count)
            fail("tokenizer.ggml.merges must be an array of strings");
        if (merges->count > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
            fail("too many merges");
        v->merge_rank_.reserve(merges->count);
        std::string key;
        for (uint64_t i = 0; i < merges->count; ++i) {
            const std::string_view m = merges->strings[i];
            const size_t sp = m.find(' ', 1);
            if (sp == std::string_view::npos) continue;
            key.assign(m.substr(0, sp));
            key.push_back('\xff');
            key.append(m.substr(sp + 1));
            v->merge_rank_.emplace(key, static_cast<int32_t>(i));  // first one wins
        }
        spec = pre_tokenizer_spec(v->pre_);
        if (!spec.known)
            std::fprintf(stderr, "lokal: warning: %s pre-tokenizer '%s', using %s\n",
                         v->pre_.empty() ? "missing" : "unknown", v->pre_.c_str(),
                         v->pre_.empty() ? "'default'" : "the llama3 (cl100k-style) split");
        v->splitter_ = std::make_unique<RegexSplitter>(spec.regexes);
        v->ignore_merges_ = spec.ignore_merges;
        v->add_bos_ = spec.add_bos == 1;
        bos = spec.no_bos ? -1 : 11;
        eos = 11;
    }
    // Defaults that do not exist in this vocabulary mean "none".
    const auto none_if_out = [n](int64_t id) { return id >= 0 && id < int64_t(n) ? id : -1; };
    bos = none_if_out(bos), eos = none_if_out(eos), unk = none_if_out(unk);

    // Special token ids: out of range is an error for those the tokenizer emits.
    const auto read_id = [&](const char* key, int64_t& id, bool strict) {
        const auto got = get_id(f, key);
        if (!got) return;
        if (*got >= int64_t(n)) {
            if (strict)
                fail(std::string(key) + " = " + std::to_string(*got) + " is out of range (" +
                     std::to_string(n) + " tokens)");
            std::fprintf(stderr, "lokal: warning: ignoring %s = %lld (out of range)\n", key,
                         static_cast<long long>(*got));
            return;
        }
        id = *got;
    };
    int64_t pad = -1;
    read_id("tokenizer.ggml.bos_token_id", bos, true);
    read_id("tokenizer.ggml.eos_token_id", eos, true);
    read_id("tokenizer.ggml.unknown_token_id", unk, true);
    read_id("tokenizer.ggml.padding_token_id", pad, false);
    v->bos_ = static_cast<TokenId>(bos);
    v->eos_ = static_cast<TokenId>(eos);
    v->unk_ = static_cast<TokenId>(unk);
    v->pad_ = static_cast<TokenId>(pad);

    if (auto b = f.get_bool("tokenizer.ggml.add_space_prefix")) v->add_space_prefix_ = *b;
    if (auto b = f.get_bool("tokenizer.ggml.add_bos_token")) v->add_bos_ = *b;
    if (auto b = f.get_bool("tokenizer.ggml.add_eos_token")) v->add_eos_ = *b;
    if (v->add_bos_ && v->bos_ < 0) fail("BOS is to be added but the vocabulary has no BOS token");
    if (v->add_eos_ && v->eos_ < 0) fail("EOS is to be added but the vocabulary has no EOS token");

    v->init_specials(f);

    if (v->is_spm_) {
        v->byte_id_.assign(256, -1);
        static const char* hex = "0123456789ABCDEF";
        for (int b = 0; b < 256; ++b) {
            const char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
            TokenId id = v->find_token(name);
            if (id < 0) id = v->find_token(std::string(1, static_cast<char>(b)));
            v->byte_id_[b] = id;
        }
    }
    v->piece_.reserve(n);
    for (uint64_t i = 0; i < n; ++i) v->piece_.push_back(v->make_piece(static_cast<TokenId>(i)));
    return v;
}

void Vocab::init_specials(const gguf::File& f) {
    const int64_t n = n_tokens();
    const auto make_control = [&](TokenId id) {
        if (in_range(id)) type_[id] = kControl;
    };
    const auto first_of = [&](std::initializer_list<const char*> names) -> TokenId {
        for (const char* name : names)
            if (TokenId id = find_token(name); id >= 0) return id;
        return -1;
    };
    const auto read_opt = [&](const char* key) -> TokenId {
        const auto got = get_id(f, key);
        if (!got) return -1;
        if (*got >= n) {
            std::fprintf(stderr, "lokal: warning: ignoring %s = %lld (out of range)\n", key,
                         static_cast<long long>(*got));
            return -1;
        }
        return static_cast<TokenId>(*got);
    };

    // End of turn / message and FIM tokens: from the metadata, else by their text.
    eot_ = read_opt("tokenizer.ggml.eot_token_id");
    eom_ = read_opt("tokenizer.ggml.eom_token_id");
    TokenId fim_pad = read_opt("tokenizer.ggml.fim_pad_token_id");
    TokenId fim_rep = read_opt("tokenizer.ggml.fim_rep_token_id");
    TokenId fim_sep = read_opt("tokenizer.ggml.fim_sep_token_id");
    if (eot_ < 0) {
        eot_ = first_of({"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                         "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>"});
        make_control(eot_);
    }
    if (eom_ < 0) {
        eom_ = first_of({"<|eom_id|>"});
        make_control(eom_);
    }
    if (fim_pad < 0) {
        fim_pad = first_of({"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"});
        make_control(fim_pad);
    }
    if (fim_rep < 0) {
        fim_rep = first_of({"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"});
        make_control(fim_rep);
    }
    if (fim_sep < 0) {
        fim_sep = first_of({"<|file_sep|>"});
        make_control(fim_sep);
    }
    // Fill-in-the-middle markers: the current metadata keys, the older ones, then the texts
    // of the code model families (Qwen2.5-Coder / CodeGemma, OpenCoder, StarCoder,
    // DeepSeek-Coder, CodeLlama), as llama.cpp looks for them.
    const auto fim_token = [&](const char* key, const char* old_key,
                               std::initializer_list<const char*> texts) {
        TokenId id = read_opt(key);
        if (id < 0) id = read_opt(old_key);
        if (id < 0) {
            id = first_of(texts);
            make_control(id);
        }
        return id;
    };
    fim_pre_ = fim_token(
        "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id",
        {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>"});
    fim_suf_ = fim_token(
        "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id",
        {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>"});
    fim_mid_ = fim_token(
        "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id",
        {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>"});

    eog_.assign(n, 0);
    const auto mark_eog = [&](TokenId id) {
        if (in_range(id)) eog_[id] = 1;
    };
    for (const char* name : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                             "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>"}) {
        const TokenId id = find_token(name);
        mark_eog(id);
        make_control(id);
    }
    for (TokenId id : {fim_pad, fim_rep, fim_sep, eos_, eot_, eom_}) mark_eog(id);

    // Tokens split out of the raw text before tokenization, longest first.
    for (TokenId id = 0; id < n; ++id) {
        const TokenType t = type_[id];
        if ((t == kControl || t == kUserDefined || t == kUnknown) && !text_[id].empty())
            specials_.push_back(id);
    }
    std::stable_sort(specials_.begin(), specials_.end(),
                     [&](TokenId a, TokenId b) { return text_[a].size() > text_[b].size(); });

    // Phi-3 (by general.name, as the reference does): whitespace after special tokens is
    // dropped, except after <unk>, <s> and <|endoftext|>.
    rstrip_.assign(n, 0);
    std::string name(f.get_string("general.name").value_or(""));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
        for (TokenId id : specials_) rstrip_[id] = 1;
        if (TokenId id = find_token("</s>"); id >= 0) rstrip_[id] = 1;
        for (const char* keep : {"<unk>", "<s>", "<|endoftext|>"})
            if (TokenId id = find_token(keep); id >= 0) rstrip_[id] = 0;
    }
}

std::string Vocab::make_piece(TokenId id) const {
    const std::string& text = text_[id];
    switch (type_[id]) {
        case kControl:
        case kUnknown:
        case kUserDefined:
            return text;
        case kNormal: {
            std::string out;
            if (is_spm_) {
                // U+2581 -> space.
                for (size_t i = 0; i < text.size(); ++i) {
                    if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
                        out.push_back(' ');
                        i += 2;
                    } else {
                        out.push_back(text[i]);
                    }
                }
                return out;
            }
            size_t pos = 0;
            while (pos < text.size()) {
                const uint32_t cp = unicode::decode_one(text, pos);
                const int b = unicode::cp_to_byte(cp);
                if (b >= 0) {
                    out.push_back(static_cast<char>(b));
                } else {
                    unicode::append_utf8(out, cp);  // not a byte image: pass through
                }
            }
            return out;
        }
        case kByte: {
            if (!is_spm_) return {};
            if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>') {
                const int hi = hex_digit(text[3]), lo = hex_digit(text[4]);
                if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
            }
            return {};
        }
        default:
            return {};
    }
}

std::string Vocab::token_to_piece(TokenId id, bool render_special) const {
    if (!in_range(id)) return {};
    const TokenType t = type_[id];
    if (!render_special && (t == kControl || t == kUnknown)) return {};
    return piece_[id];
}

Vocab::TokenType Vocab::type(TokenId id) const {
    return in_range(id) ? type_[id] : kUndefined;
}

bool Vocab::is_eog(TokenId id) const {
    return in_range(id) && eog_[id];
}

std::string_view Vocab::token_text(TokenId id) const {
    return in_range(id) ? std::string_view(text_[id]) : std::string_view();
}

float Vocab::token_score(TokenId id) const {
    return in_range(id) ? score_[id] : 0.0f;
}

TokenId Vocab::find_token(std::string_view text) const {
    const auto it = to_id_.find(text);
    return it == to_id_.end() ? -1 : it->second;
}

std::vector<Vocab::Fragment> Vocab::partition(std::string_view text, bool parse_special) const {
    std::vector<Fragment> frags;
    if (text.empty()) return frags;
    frags.push_back({-1, 0, text.size()});
    std::vector<Fragment> next;
    for (const TokenId id : specials_) {
        const TokenType t = type_[id];
        if (!parse_special && (t == kControl || t == kUnknown)) continue;
        const std::string& s = text_[id];
        if (text.find(s) == std::string_view::npos) continue;
        next.clear();
        for (const Fragment& fr : frags) {
            if (fr.token >= 0) {
                next.push_back(fr);
                continue;
            }
            size_t off = fr.offset, len = fr.length;
            while (len > 0) {
                const size_t m = text.substr(off, len).find(s);
                if (m == std::string_view::npos) {
                    next.push_back({-1, off, len});
                    break;
                }
                if (m > 0) next.push_back({-1, off, m});
                next.push_back({id, 0, 0});
                size_t r_off = off + m + s.size();
                size_t r_len = len - m - s.size();
                if (rstrip_[id]) {
                    while (r_len > 0 && c_isspace(text[r_off])) ++r_off, --r_len;
                }
                off = r_off, len = r_len;
            }
        }
        frags.swap(next);
    }
    return frags;
}

std::vector<TokenId> Vocab::fill_in_middle(std::string_view prefix, std::string_view suffix) const {
    if (!has_fim()) return {};
    std::vector<TokenId> out;
    if (add_bos_ && bos_ >= 0) out.push_back(bos_);
    out.push_back(fim_pre_);
    for (TokenId t : tokenize(prefix, false, false)) out.push_back(t);
    out.push_back(fim_suf_);
    for (TokenId t : tokenize(suffix, false, false)) out.push_back(t);
    out.push_back(fim_mid_);
    return out;
}

std::vector<TokenId> Vocab::tokenize(std::string_view text, bool add_special,
                                     bool parse_special) const {
    std::vector<TokenId> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && add_bos_) out.push_back(bos_);
    const std::vector<Fragment> frags = partition(text, parse_special);
    if (is_spm_) {
        bool prev_special = true;  // the first fragment gets the space prefix too
        std::string buf;
        for (const Fragment& fr : frags) {
            if (fr.token >= 0) {
                out.push_back(fr.token);
                prev_special = true;
                continue;
            }
            buf.clear();
            if (add_space_prefix_ && prev_special) buf += "\xE2\x96\x81";
            for (char c : text.substr(fr.offset, fr.length)) {
                if (c == ' ') {
                    buf += "\xE2\x96\x81";
                } else {
                    buf.push_back(c);
                }
            }
            tokenize_spm(buf, out);
            prev_special = false;
        }
    } else {
        for (const Fragment& fr : frags) {
            if (fr.token >= 0) {
                out.push_back(fr.token);
            } else {
                tokenize_bpe(text.substr(fr.offset, fr.length), out);
            }
        }
    }
    if (add_special && add_eos_) out.push_back(eos_);
    return out;
}

}  // namespace lokal
