// Byte-level BPE: pre-tokenize with the vocabulary's regexes, map each word's bytes to
// the GPT-2 printable code points, then repeatedly merge the adjacent pair with the
// lowest merge rank (ties: leftmost), with a priority queue, O(n log n) per word.
#include <queue>
#include <string>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace lokal {

namespace {

struct Symbol {
    int prev, next;
    size_t offset, n;
};

struct Bigram {
    int left, right;
    int32_t rank;
    size_t size;
};

struct BigramOrder {
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
};

}  // namespace

int Vocab::bpe_rank(std::string_view left, std::string_view right, std::string& key) const {
    key.assign(left);
    key.push_back('\xff');
    key.append(right);
    const auto it = merge_rank_.find(key);
    return it == merge_rank_.end() ? -1 : it->second;
}

void Vocab::tokenize_bpe(std::string_view text, std::vector<TokenId>& out) const {
    const std::vector<uint32_t> cpts = unicode::decode(text);
    const std::vector<size_t> pieces = splitter_->split(cpts);

    std::string word, utf8, key;
    std::vector<Symbol> sym;
    size_t start = 0;
    for (const size_t len : pieces) {
        // Byte-encode the piece.
        word.clear();
        for (size_t i = start; i < start + len; ++i) {
            utf8.clear();
            unicode::append_utf8(utf8, cpts[i]);
            for (char c : utf8) unicode::append_utf8(word, unicode::byte_to_cp(uint8_t(c)));
        }
        start += len;
        if (word.empty()) continue;
        if (ignore_merges_) {
            if (const TokenId id = find_token(word); id >= 0) {
                out.push_back(id);
                continue;
            }
        }

        sym.clear();
        for (size_t off = 0; off < word.size();) {
            const size_t n =
                std::min(unicode::utf8_len(static_cast<uint8_t>(word[off])), word.size() - off);
            const int idx = static_cast<int>(sym.size());
            sym.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n});
            off += n;
        }

        const std::string_view w(word);
        std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
        const auto try_add = [&](int left, int right) {
            if (left < 0 || right < 0) return;
            const int rank = bpe_rank(w.substr(sym[left].offset, sym[left].n),
                                      w.substr(sym[right].offset, sym[right].n), key);
            if (rank < 0) return;
            queue.push({left, right, rank, sym[left].n + sym[right].n});
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

        for (int i = 0; i != -1; i = sym[i].next) {
            const std::string_view s = w.substr(sym[i].offset, sym[i].n);
            if (const TokenId id = find_token(s); id >= 0) {
                out.push_back(id);
                continue;
            }
            // As the reference: single bytes of the encoded text that are tokens.
            for (char c : s)
                if (const TokenId id = find_token(std::string_view(&c, 1)); id >= 0)
                    out.push_back(id);
        }
    }
}

}  // namespace lokal
