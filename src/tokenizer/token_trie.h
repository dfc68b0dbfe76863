// The vocabulary as a byte trie: every token that stands for text, keyed by its bytes
// (Vocab::token_to_piece), so a byte-level constraint (a JSON grammar) can find every token
// it allows by walking shared prefixes once instead of testing each token from scratch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lokal {

class Vocab;

class TokenTrie {
  public:
    struct Node {
        int32_t first_child = -1;   // index into nodes(), -1: a leaf
        int32_t next_sibling = -1;  // siblings in increasing byte order
        uint8_t byte = 0;           // the edge from the parent
        int32_t tok_begin = 0;      // tokens whose bytes end here: tokens()[tok_begin, tok_end)
        int32_t tok_end = 0;
    };

    // Text tokens only: control, unknown, unused tokens and tokens with no bytes are left
    // out (a constraint never allows them); end-of-generation tokens are listed apart.
    explicit TokenTrie(const Vocab& vocab);

    const std::vector<Node>& nodes() const { return nodes_; }  // [0] is the root
    const std::vector<int32_t>& tokens() const { return tokens_; }
    const std::vector<int32_t>& end_of_generation() const { return eog_; }
    // The bytes of a text token; "" for tokens not in the trie.
    std::string_view bytes(int32_t token) const;
    bool is_eog(int32_t token) const;
    int32_t n_vocab() const { return (int32_t)bytes_.size(); }

  private:
    std::vector<Node> nodes_;
    std::vector<int32_t> tokens_;
    std::vector<int32_t> eog_;
    std::vector<std::string> bytes_;  // per token id
    std::vector<uint8_t> eog_flag_;
};

}  // namespace lokal
