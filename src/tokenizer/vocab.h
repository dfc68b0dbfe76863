// Tokenizer vocabulary loaded from GGUF metadata: SentencePiece-style ("llama") and
// byte-level BPE ("gpt2") tokenization, special tokens and detokenization pieces.
//
// Behaviour follows llama.cpp (the reference the test vectors come from), including:
// - Special tokens (control, user-defined, unknown) are split out of the raw text before
//   tokenization, longest first; with parse_special == false control and unknown tokens
//   are plain text but user-defined tokens are still matched.
// - SPM: a space is prepended to the text and to every text fragment that follows a
//   special token (when tokenizer.ggml.add_space_prefix, default true); spaces become
//   U+2581; unknown characters fall back to <0xXX> byte tokens, and where the vocabulary
//   has none, to the unknown token (the reference aborts there).
// - BPE: regex pre-tokenization selected by tokenizer.ggml.pre (see pretokenize.h),
//   GPT-2 byte-to-unicode mapping, merges by rank from tokenizer.ggml.merges.
// - End-of-generation tokens: eos, eot, eom and tokens whose text is one of
//   <|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, <|eom_id|>, <EOT>,
//   _<EOT> (these are also made control tokens), plus FIM pad/repo/file-sep tokens.
//
// The file is untrusted: from_gguf validates array types and lengths and special token
// ids and throws std::runtime_error with a one-line message.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gguf/gguf.h"

namespace lokal {

using TokenId = int32_t;

class RegexSplitter;
class TokenTrie;

class Vocab {
  public:
    // tokenizer.ggml.token_type values.
    enum TokenType : uint8_t {
        kUndefined = 0,
        kNormal = 1,
        kUnknown = 2,
        kControl = 3,
        kUserDefined = 4,
        kUnused = 5,
        kByte = 6,
    };

    static std::unique_ptr<Vocab> from_gguf(const gguf::File& f);
    ~Vocab();
    Vocab(const Vocab&) = delete;
    Vocab& operator=(const Vocab&) = delete;

    // add_special: prepend BOS / append EOS as the metadata says (add_bos(), add_eos()).
    // parse_special: match control and unknown token texts in `text`.
    std::vector<TokenId> tokenize(std::string_view text, bool add_special,
                                  bool parse_special) const;

    // The bytes a token stands for (SPM: U+2581 -> space, <0xXX> -> the byte; BPE: the
    // byte-to-unicode mapping reversed, code points outside it passed through). Control
    // and unknown tokens give "" unless render_special; unused/undefined tokens and ids
    // out of range always give "". Concatenating pieces reproduces the generated text.
    std::string token_to_piece(TokenId id, bool render_special = false) const;

    int32_t n_tokens() const { return static_cast<int32_t>(text_.size()); }
    TokenId bos() const { return bos_; }
    TokenId eos() const { return eos_; }
    TokenId eot() const { return eot_; }
    TokenId eom() const { return eom_; }
    TokenId unk() const { return unk_; }
    TokenId pad() const { return pad_; }
    // Fill-in-the-middle: prefix, suffix and middle markers (-1 when the model has none).
    TokenId fim_pre() const { return fim_pre_; }
    TokenId fim_suf() const { return fim_suf_; }
    TokenId fim_mid() const { return fim_mid_; }
    bool has_fim() const { return fim_pre_ >= 0 && fim_suf_ >= 0 && fim_mid_ >= 0; }
    // The prompt a code model completes between `prefix` and `suffix`, in the
    // prefix-suffix-middle order the models are trained on (and llama.cpp's infill sends):
    // [BOS] PRE prefix SUF suffix MID, the texts tokenized without special tokens (so
    // marker text inside the code stays text). Empty when !has_fim().
    std::vector<TokenId> fill_in_middle(std::string_view prefix, std::string_view suffix) const;
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    bool add_space_prefix() const { return add_space_prefix_; }
    bool is_eog(TokenId id) const;
    bool is_control(TokenId id) const { return type(id) == kControl; }
    TokenType type(TokenId id) const;

    std::string_view token_text(TokenId id) const;  // "" when out of range
    float token_score(TokenId id) const;            // 0 when out of range
    // Exact text lookup; -1 when absent.
    TokenId find_token(std::string_view text) const;

    // The text tokens as a byte trie (for grammar-constrained sampling), built on first use
    // (thread-safe) and kept for the vocabulary's lifetime.
    const TokenTrie& token_trie() const;

    std::string model_type() const { return model_; }  // "llama" or "gpt2"
    std::string pre_type() const { return pre_; }      // tokenizer.ggml.pre as given

  private:
    Vocab();
    struct Fragment {
        TokenId token;  // -1 for raw text
        size_t offset, length;
    };
    void init_specials(const gguf::File& f);
    std::vector<Fragment> partition(std::string_view text, bool parse_special) const;
    void tokenize_spm(std::string_view text, std::vector<TokenId>& out) const;
    void tokenize_bpe(std::string_view text, std::vector<TokenId>& out) const;
    TokenId spm_byte_token(uint8_t byte) const;
    int bpe_rank(std::string_view left, std::string_view right, std::string& key) const;
    std::string make_piece(TokenId id) const;
    bool in_range(TokenId id) const { return id >= 0 && id < n_tokens(); }

    bool is_spm_ = true;
    std::string model_, pre_;
    std::vector<std::string> text_;
    std::vector<float> score_;
    std::vector<TokenType> type_;
    std::vector<std::string> piece_;  // rendered with specials
    std::vector<uint8_t> rstrip_;     // per token: strip whitespace after it (phi-3)
    std::unordered_map<std::string_view, TokenId> to_id_;
    std::unordered_map<std::string, int32_t> merge_rank_;  // key: left '\xff' right
    std::vector<TokenId> specials_;  // split out before tokenizing, longest first
    std::vector<TokenId> byte_id_;   // SPM: token of each byte (<0xXX> or the byte)
    std::vector<uint8_t> eog_;       // per token
    std::unique_ptr<RegexSplitter> splitter_;
    mutable std::once_flag trie_once_;
    mutable std::unique_ptr<TokenTrie> trie_;

    TokenId bos_ = -1, eos_ = -1, eot_ = -1, eom_ = -1, unk_ = -1, pad_ = -1;
    TokenId fim_pre_ = -1, fim_suf_ = -1, fim_mid_ = -1;
    bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
    bool ignore_merges_ = false;
};

}  // namespace lokal
