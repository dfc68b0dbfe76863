// SentencePiece-style tokenization: start from UTF-8 characters and repeatedly merge the
// adjacent pair whose concatenation is the highest-scoring token (ties: leftmost), with
// a priority queue of candidate pairs, O(n log n).
#include <queue>
#include <vector>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace lokal {

namespace {

struct Symbol {
    int prev, next;
    size_t offset, n;  // bytes of the text; n == 0 once merged into its left neighbour
};

struct Bigram {
    int left, right;
    float score;
    size_t size;  // bytes of left + right when queued; a mismatch later means stale
};

struct BigramOrder {
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

}  // namespace

void Vocab::tokenize_spm(std::string_view text, std::vector<TokenId>& out) const {
    std::vector<Symbol> sym;
    sym.reserve(text.size());
    for (size_t off = 0; off < text.size();) {
        const size_t len =
            std::min(unicode::utf8_len(static_cast<uint8_t>(text[off])), text.size() - off);
        const int idx = static_cast<int>(sym.size());
        sym.push_back({idx - 1, off + len == text.size() ? -1 : idx + 1, off, len});
        off += len;
    }
    if (sym.empty()) return;

    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    const auto try_add = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const std::string_view s = text.substr(sym[left].offset, sym[left].n + sym[right].n);
        const TokenId id = find_token(s);
        if (id < 0) return;
        queue.push({left, right, score_[id], s.size()});
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_add(i - 1, i);

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& l = sym[b.left];
        Symbol& r = sym[b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }

    std::vector<TokenId> bytes;
    for (int i = 0; i != -1; i = sym[i].next) {
        const std::string_view s = text.substr(sym[i].offset, sym[i].n);
        if (const TokenId id = find_token(s); id >= 0) {
            out.push_back(id);
            continue;
        }
        // Byte fallback; a character some byte of which has no token becomes <unk>.
        bytes.clear();
        bool complete = true;
        for (char c : s) {
            const TokenId id = byte_id_[static_cast<uint8_t>(c)];
            if (id < 0) {
                complete = false;
                break;
            }
            bytes.push_back(id);
        }
        if (complete) {
            out.insert(out.end(), bytes.begin(), bytes.end());
        } else if (unk_ >= 0) {
            out.push_back(unk_);
        }
    }
}

}  // namespace lokal
