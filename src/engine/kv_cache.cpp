#include "engine/kv_cache.h"

#include <algorithm>
#include <stdexcept>

namespace lokal {

KvCache::KvCache(const HParams& hp, int64_t capacity_tokens, int block_size, KvType type) {
    if (block_size <= 0) throw std::invalid_argument("kv cache: block size must be positive");
    if (!kv_block_size_valid(type, block_size))  // Q4_0: two slots per byte (ops/attention.h)
        throw std::invalid_argument("kv cache: a q4_0 cache needs an even block size");
    const int64_t blocks = std::max<int64_t>(1, (capacity_tokens + block_size - 1) / block_size);
    if (blocks > (1 << 24)) throw std::invalid_argument("kv cache: capacity too large");
    storage.allocate(hp, (int)blocks, block_size, type);
    refcount_.assign((size_t)blocks, 0);
    free_.reserve((size_t)blocks);
    for (int64_t b = blocks - 1; b >= 0; --b) free_.push_back((int32_t)b);
}

size_t KvCache::bytes_for(const HParams& hp, int64_t capacity_tokens, int block_size, KvType type) {
    const int64_t blocks = std::max<int64_t>(1, (capacity_tokens + block_size - 1) / block_size);
    return (size_t)blocks * (size_t)block_size * KvStorage::bytes_per_position(hp, type);
}

int32_t KvCache::create_sequence() {
    for (size_t i = 0; i < seqs_.size(); ++i)
        if (!seqs_[i].live) {
            seqs_[i] = Seq{{}, 0, true};
            return (int32_t)i;
        }
    seqs_.push_back(Seq{{}, 0, true});
    return (int32_t)seqs_.size() - 1;
}

int32_t KvCache::fork_sequence(int32_t src) {
    const int32_t id = create_sequence();
    seqs_[id].blocks = seqs_[src].blocks;
    seqs_[id].length = seqs_[src].length;
    for (int32_t b : seqs_[id].blocks) ++refcount_[b];
    return id;
}

void KvCache::attach(int32_t seq, const std::vector<int32_t>& blocks, int32_t length) {
    Seq& s = seqs_[seq];
    for (int32_t b : s.blocks) release_block(b);
    s.blocks = blocks;
    for (int32_t b : blocks) ++refcount_[b];
    s.length = length;
}

void KvCache::free_sequence(int32_t seq) {
    if (!valid(seq)) return;
    for (int32_t b : seqs_[seq].blocks) release_block(b);
    seqs_[seq] = Seq{};
}

int32_t KvCache::alloc_block() {
    const int32_t b = free_.back();
    free_.pop_back();
    refcount_[b] = 1;
    return b;
}

void KvCache::release_block(int32_t b) {
    if (--refcount_[b] == 0) free_.push_back(b);
}

void KvCache::copy_block(int32_t dst, int32_t src) {
    // A block's heads are not adjacent (blocks are grouped per head, ops/attention.h).
    const KvLayout& layout = storage.layout;
    const int64_t n = layout.head_block_elems;
    for (int l = 0; l < storage.n_layer; ++l)
        for (int h = 0; h < layout.n_kv_head; ++h) {
            const int64_t from = layout.block_offset(src, h), to = layout.block_offset(dst, h);
            std::copy_n(storage.k(l) + from, n, storage.k(l) + to);
            std::copy_n(storage.v(l) + from, n, storage.v(l) + to);
        }
}

bool KvCache::prepare(int32_t seq, int32_t from, int32_t end) {
    Seq& s = seqs_[seq];
    const int32_t bs = storage.block_size;
    const size_t need_blocks = (size_t)((end + bs - 1) / bs);
    // Count what we need before touching anything, so failure leaves the cache unchanged.
    size_t needed = need_blocks > s.blocks.size() ? need_blocks - s.blocks.size() : 0;
    const size_t first_written = (size_t)(from / bs);
    for (size_t j = first_written; j < std::min(need_blocks, s.blocks.size()); ++j)
        if (refcount_[s.blocks[j]] > 1) ++needed;
    if (needed > free_.size()) return false;
    for (size_t j = first_written; j < std::min(need_blocks, s.blocks.size()); ++j) {
        if (refcount_[s.blocks[j]] > 1) {
            const int32_t fresh = alloc_block();
            copy_block(fresh, s.blocks[j]);
            release_block(s.blocks[j]);
            s.blocks[j] = fresh;
        }
    }
    while (s.blocks.size() < need_blocks) s.blocks.push_back(alloc_block());
    return true;
}

void KvCache::truncate(int32_t seq, int32_t n) {
    Seq& s = seqs_[seq];
    const size_t keep = (size_t)((n + storage.block_size - 1) / storage.block_size);
    while (s.blocks.size() > keep) {
        release_block(s.blocks.back());
        s.blocks.pop_back();
    }
    s.length = std::min(s.length, n);
}

}  // namespace lokal
