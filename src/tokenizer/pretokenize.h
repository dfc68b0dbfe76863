// Regex pre-tokenizer for byte-level BPE vocabularies (PCRE2, compiled once per Vocab).
//
// Mirrors llama.cpp's unicode_regex_split: the regexes of a pre-tokenizer are applied in
// sequence, each one splitting every fragment left by the previous one into its matches
// and the unmatched text between them (both kept). A fragment is matched on its own:
// lookarounds, ^ and $ see its ends as the ends of the subject.
//
// Unicode categories follow llama.cpp, not PCRE2's tables: a regex that uses \p{L},
// \p{N}, \p{P}, \p{M} or \p{S} runs on a "collapsed" subject in which every non-ASCII
// code point is replaced by a private-use stand-in for its class (white space by U+000B),
// and each \p{X} is rewritten to that stand-in plus X's ASCII members. A regex without
// categories runs on the real code points, non-ASCII white space again replaced by U+000B.
// Patterns are compiled with PCRE2_UTF (no PCRE2_UCP: \s must mean ASCII white space,
// exactly as in the reference) and PCRE2_DOLLAR_ENDONLY.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lokal {

class RegexSplitter {
  public:
    // Throws std::runtime_error when a pattern does not compile.
    explicit RegexSplitter(const std::vector<std::string>& patterns);
    ~RegexSplitter();
    RegexSplitter(const RegexSplitter&) = delete;
    RegexSplitter& operator=(const RegexSplitter&) = delete;

    // Splits a code point sequence; returns the length (in code points) of each piece,
    // in order, summing to cpts.size(). Thread-safe.
    std::vector<size_t> split(const std::vector<uint32_t>& cpts) const;

    size_t n_patterns() const { return patterns_.size(); }

  private:
    struct Pattern;
    std::vector<std::unique_ptr<Pattern>> patterns_;
};

// The pre-tokenizer configuration a tokenizer.ggml.pre name selects.
struct PreTokenizerSpec {
    std::vector<std::string> regexes;
    bool ignore_merges = false;  // a pre-token that is itself a token skips BPE merging
    int add_bos = -1;            // -1: no opinion; 0/1: default for add_bos_token
    bool no_bos = false;         // the vocabulary has no BOS token (chatglm)
    bool known = true;           // false when `name` was not recognised (fallback used)
};

PreTokenizerSpec pre_tokenizer_spec(std::string_view name);

}  // namespace lokal
