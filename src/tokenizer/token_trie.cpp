#include "tokenizer/token_trie.h"

#include <algorithm>
#include <numeric>

#include "tokenizer/vocab.h"

namespace lokal {

TokenTrie::TokenTrie(const Vocab& vocab) {
    const int32_t n = vocab.n_tokens();
    bytes_.resize((size_t)n);
    eog_flag_.assign((size_t)n, 0);
    std::vector<int32_t> text_tokens;
    for (int32_t id = 0; id < n; ++id) {
        if (vocab.is_eog(id)) {
            eog_flag_[(size_t)id] = 1;
            eog_.push_back(id);
            continue;
        }
        const auto type = vocab.type(id);
        if (type != Vocab::kNormal && type != Vocab::kByte && type != Vocab::kUserDefined) continue;
        std::string piece = vocab.token_to_piece(id);
        if (piece.empty()) continue;
        bytes_[(size_t)id] = std::move(piece);
        text_tokens.push_back(id);
    }
    // Sorted by bytes, each token extends the path of the one before it: pop back to the
    // common prefix, then add the rest. Equal byte strings end at the same node, adjacent.
    std::stable_sort(text_tokens.begin(), text_tokens.end(),
                     [&](int32_t a, int32_t b) { return bytes_[(size_t)a] < bytes_[(size_t)b]; });
    nodes_.emplace_back();
    std::vector<int32_t> last_child(1, -1);
    std::vector<int32_t> path{0};  // path[d]: the node at depth d of the previous token
    std::string_view prev;
    for (int32_t id : text_tokens) {
        const std::string_view s = bytes_[(size_t)id];
        size_t common = 0;
        while (common < s.size() && common < prev.size() && s[common] == prev[common]) ++common;
        common = std::min(common, path.size() - 1);
        path.resize(common + 1);
        for (size_t d = common; d < s.size(); ++d) {
            const int32_t parent = path.back();
            const int32_t child = (int32_t)nodes_.size();
            Node node;
            node.byte = (uint8_t)s[d];
            node.tok_begin = node.tok_end = (int32_t)tokens_.size();
            nodes_.push_back(node);
            last_child.push_back(-1);
            if (last_child[(size_t)parent] < 0)
                nodes_[(size_t)parent].first_child = child;
            else
                nodes_[(size_t)last_child[(size_t)parent]].next_sibling = child;
            last_child[(size_t)parent] = child;
            path.push_back(child);
        }
        Node& end = nodes_[(size_t)path.back()];
        if (end.tok_begin == end.tok_end) end.tok_begin = (int32_t)tokens_.size();
        tokens_.push_back(id);
        end.tok_end = (int32_t)tokens_.size();
        prev = s;
    }
}

std::string_view TokenTrie::bytes(int32_t token) const {
    if (token < 0 || token >= n_vocab()) return {};
    return bytes_[(size_t)token];
}

bool TokenTrie::is_eog(int32_t token) const {
    return token >= 0 && token < n_vocab() && eog_flag_[(size_t)token];
}

}  // namespace lokal
