// Byte-level matcher for JSON text that follows a compiled schema (json_schema.h), used to
// constrain sampling: feed() the bytes generated so far, then ask which tokens may follow.
//
// It is a pushdown automaton run nondeterministically: the state is a small set of stacks
// (one per way the text so far can be read: anyOf alternatives, an object key that may be
// a listed property or an additional one, a literal that may be complete or go on). Each
// stack is a list of frames, one per open value, innermost last. A stack that cannot take
// a byte dies; the text is allowed while some stack lives.
//
// Whitespace wherever JSON allows it between tokens, as one run of "", " " or a newline and
// up to kMaxIndent spaces or tabs (pretty printing, but no endless padding); none before or
// after the root value. Numbers: at most kMaxNumberBytes bytes, and
// at most kMaxIntegerDigits digits before the point (what a client can read as an int64).
// Strings: valid UTF-8, no raw control characters, escapes as JSON defines them.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string_view>
#include <vector>

#include "engine/json_schema.h"

namespace lokal {

class TokenTrie;

class JsonMatcher {
  public:
    static constexpr int kMaxIndent = 20;
    static constexpr int kMaxNumberBytes = 32;
    static constexpr int kMaxIntegerDigits = 16;
    static constexpr int kMaxExponentDigits = 2;
    static constexpr int kMaxDepth = 64;   // open values per stack
    static constexpr int kMaxStacks = 32;  // ways of reading kept at once (see advance())

    explicit JsonMatcher(std::shared_ptr<const JsonSchema> schema);

    // Appends bytes; false (and no change) when they cannot continue the text.
    bool feed(std::string_view bytes);
    // Whether these bytes could be appended (the state is not changed).
    bool accepts(std::string_view bytes) const;
    // The text so far is one complete value (the generation may end here).
    bool can_end() const;
    // Nothing can follow any more (only the end).
    bool finished() const;

    // allowed[t] = 1 for each text token of `trie` whose bytes can be appended, and for the
    // end-of-generation tokens when can_end(); 0 for every other id. Size: trie.n_vocab().
    // False (allowed incomplete) when the walk would cost more than kWalkBudget frame
    // steps (a state with many deep ways of reading): then test tokens one by one.
    bool allowed_tokens(const TokenTrie& trie, std::vector<uint8_t>& allowed) const;
    static constexpr int64_t kWalkBudget = 4'000'000;

    struct Frame {
        int32_t node = 0;
        uint8_t phase = 0;
        uint8_t ws = 0;     // the whitespace run so far (see take_ws)
        int32_t a = 0;      // object: next listed property; array: items; string: code points;
                            // literal: first live value; number: bytes
        int32_t b = 0;      // object: value schema after the colon; literal: end of live values
        int32_t pos = 0;    // key/literal: bytes matched; string: escape/UTF-8 progress
        int32_t bytes = 0;  // additional key: bytes read (quote included)
        uint64_t mask = 0;  // object key: live candidates (bit j: property a + j);
                            // additional key: listed keys it still equals
        bool operator==(const Frame& o) const;
        bool operator<(const Frame& o) const;
    };
    using Stack = std::vector<Frame>;

  private:
    using States = std::vector<Stack>;
    void step(Stack s, uint8_t byte, States& out) const;
    void push_value(Stack s, int32_t node, States& out) const;
    void step_object(Stack& s, uint8_t c, States& out) const;
    void step_array(Stack& s, uint8_t c, States& out) const;
    void step_string(Stack& s, uint8_t c, States& out) const;
    void step_number(Stack& s, uint8_t c, States& out) const;
    void step_literal(Stack& s, uint8_t c, States& out) const;
    void step_sequence(Stack& s, uint8_t c, States& out) const;
    void finish_value(Stack s, States& out) const;
    void advance(const States& in, uint8_t byte, States& out) const;
    static void normalize(States& states);  // sorted, unique, at most kMaxStacks
    bool stack_can_end(const Stack& s) const;
    bool plain_text_keeps_state(const States& states) const;
    void walk(const TokenTrie& trie, int32_t node, const States& states, int depth,
              std::deque<States>& scratch, std::vector<uint8_t>& allowed, int64_t& budget) const;

    std::shared_ptr<const JsonSchema> schema_;
    States states_;
};

}  // namespace lokal
