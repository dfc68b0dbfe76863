// Large buffers on transparent huge pages (2 MiB) where the kernel grants them.
//
// Decoding streams every weight, and long-context attention every cached K/V row, once per
// token; with 4 KiB pages each stream walks a new page every 4 KiB and the hardware
// prefetchers stop at each boundary. On 2 Zen 3 cores TinyLlama Q4_0 decode gained about 4%
// (alternating the system THP mode, docs/PERFORMANCE.md).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace lokal {

// Anonymous zero-filled memory starting on a 2 MiB boundary, advised MADV_HUGEPAGE; nullptr
// when the system refuses. Release with huge_free(p, the same bytes).
void* huge_alloc(size_t bytes);
void huge_free(void* p, size_t bytes);

// A fixed-size, zero-filled, 64-byte aligned array whose memory is committed only as it is
// first written (fresh anonymous pages read as zero without being allocated). Holds the
// repacked weights and the KV pool; for a pool sized for the worst case this matters:
// `lokal serve -c 8192 --parallel 8` had 2 GiB resident from the start (0.6 GiB now) and took
// 0.8-7.5 s to start (0.5-0.7 s now), zeroing memory no request had used yet.
// From 1 MiB up on huge pages (huge_alloc); below that the heap, zeroed. Move-only; throws
// std::bad_alloc when the memory cannot be had.
template <class T>
class ZeroBuffer {
  public:
    ZeroBuffer() = default;
    explicit ZeroBuffer(size_t n) : n_(n) {
        const size_t bytes = n * sizeof(T);
        if (bytes == 0) return;
        if (bytes >= kHugeMin) {
            p_ = static_cast<T*>(huge_alloc(bytes));
        } else if ((p_ = static_cast<T*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)))) {
            std::memset(static_cast<void*>(p_), 0, bytes);
        }
        if (!p_) throw std::bad_alloc();
    }
    ZeroBuffer(ZeroBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
    ZeroBuffer& operator=(ZeroBuffer&& o) noexcept {
        if (this != &o) {
            release();
            p_ = o.p_, n_ = o.n_;
            o.p_ = nullptr, o.n_ = 0;
        }
        return *this;
    }
    ZeroBuffer(const ZeroBuffer&) = delete;
    ZeroBuffer& operator=(const ZeroBuffer&) = delete;
    ~ZeroBuffer() { release(); }

    T* data() { return p_; }
    const T* data() const { return p_; }
    size_t size() const { return n_; }
    T& operator[](size_t i) { return p_[i]; }
    const T& operator[](size_t i) const { return p_[i]; }

  private:
    static constexpr size_t kHugeMin = size_t(1) << 20;
    void release() {
        if (!p_) return;
        if (n_ * sizeof(T) >= kHugeMin)
            huge_free(p_, n_ * sizeof(T));
        else
            std::free(p_);
        p_ = nullptr;
    }
    T* p_ = nullptr;
    size_t n_ = 0;
};

}  // namespace lokal
