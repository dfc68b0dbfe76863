// Incremental detokenization for streaming generated text.
//
// push() appends a token's piece (Vocab::token_to_piece) and returns the longest prefix
// of the not-yet-returned bytes that is complete UTF-8, holding back an incomplete
// multi-byte sequence at the end (e.g. a character split across <0xXX> byte tokens).
// Output is always valid UTF-8: bytes that cannot start or continue a valid sequence are
// replaced by U+FFFD (one per maximal invalid subpart, as the WHATWG decoder does), and
// flush() turns a held incomplete tail into one U+FFFD. The pieces are not otherwise
// changed (no leading-space stripping), so the concatenated output equals the
// concatenated pieces whenever those are valid UTF-8.
#pragma once

#include <string>

#include "tokenizer/vocab.h"

namespace lokal {

class StreamingDetokenizer {
  public:
    explicit StreamingDetokenizer(const Vocab& vocab, bool render_special = false)
        : vocab_(vocab), render_special_(render_special) {}

    std::string push(TokenId id);
    std::string flush();                             // emit whatever is held; state is reset
    size_t held() const { return pending_.size(); }  // bytes held back

  private:
    std::string drain(bool final);

    const Vocab& vocab_;
    bool render_special_;
    std::string pending_;
};

}  // namespace lokal
