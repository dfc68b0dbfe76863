// Paged KV cache: one pool of fixed-size blocks shared by all sequences, a block table per
// sequence, reference counts so sequences can share blocks (forked prompts, cached
// prefixes), and copy-on-write when a shared block is about to be written.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "model/forward.h"
#include "model/model.h"

namespace lokal {

class KvCache {
  public:
    // Room for `capacity_tokens` positions in total over all sequences, rounded up to blocks,
    // stored as `type` (std::invalid_argument when the model's head size does not fit it).
    KvCache(const HParams& hp, int64_t capacity_tokens, int block_size = 16,
            KvType type = KvType::F16);

    KvStorage storage;

    // storage.bytes() of a cache constructed with these arguments, without allocating it.
    static size_t bytes_for(const HParams& hp, int64_t capacity_tokens, int block_size,
                            KvType type);

    int block_size() const { return storage.block_size; }
    int n_blocks() const { return storage.n_blocks; }
    int free_blocks() const { return (int)free_.size(); }

    // A new empty sequence; returns its id (ids are reused after free).
    int32_t create_sequence();
    // A new sequence sharing all of src's blocks (and its length) without copying.
    int32_t fork_sequence(int32_t src);
    void free_sequence(int32_t seq);

    // Make positions [0, end) writable for `seq`: allocates missing blocks and copies any
    // shared block in [from, end) so writes never touch another sequence's data. Returns
    // false (and changes nothing) when the pool has too few free blocks.
    bool prepare(int32_t seq, int32_t from, int32_t end);

    // Forget positions >= n of seq (e.g. rejected speculative tokens); frees whole blocks.
    void truncate(int32_t seq, int32_t n);

    const std::vector<int32_t>& table(int32_t seq) const { return seqs_[seq].blocks; }
    int32_t length(int32_t seq) const { return seqs_[seq].length; }
    void set_length(int32_t seq, int32_t n) { seqs_[seq].length = n; }
    bool valid(int32_t seq) const {
        return seq >= 0 && seq < (int32_t)seqs_.size() && seqs_[seq].live;
    }

    // Block-level sharing for prefix caching (engine/scheduler): a holder outside any
    // sequence keeps a block alive with retain_block and lets it go with release_block;
    // attach gives an empty sequence shared, already computed blocks (each retained).
    void retain_block(int32_t b) { ++refcount_[b]; }
    void release_block_ref(int32_t b) { release_block(b); }
    int32_t refcount(int32_t b) const { return refcount_[b]; }
    void attach(int32_t seq, const std::vector<int32_t>& blocks, int32_t length);

  private:
    struct Seq {
        std::vector<int32_t> blocks;
        int32_t length = 0;  // positions whose K/V are in the cache
        bool live = false;
    };
    int32_t alloc_block();
    void release_block(int32_t b);
    void copy_block(int32_t dst, int32_t src);

    std::deque<Seq> seqs_;  // a deque: table() references stay valid as sequences are added
    std::vector<int32_t> refcount_;
    std::vector<int32_t> free_;  // a stack of free block ids
};

}  // namespace lokal
