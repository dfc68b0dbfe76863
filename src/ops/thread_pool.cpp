#include "ops/thread_pool.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lokal {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
    _mm_pause();
#endif
}

// Physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo.
int count_physical_cores() {
    std::ifstream in("/proc/cpuinfo");
    std::set<std::pair<int, int>> cores;
    std::string line;
    int phys = 0, core = -1;
    while (std::getline(in, line)) {
        auto value = [&]() { return std::atoi(line.substr(line.find(':') + 1).c_str()); };
        if (line.rfind("physical id", 0) == 0) phys = value();
        if (line.rfind("core id", 0) == 0) {
            core = value();
            cores.insert({phys, core});
        }
    }
    int logical = (int)std::thread::hardware_concurrency();
    if (cores.empty()) return std::max(1, logical);
    return std::max(1, std::min((int)cores.size(), logical > 0 ? logical : (int)cores.size()));
}

constexpr int kSpinIterations = 20000;

}  // namespace

int ThreadPool::default_threads() {
    static const int n = count_physical_cores();
    return n;
}

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads > 0 ? n_threads : default_threads()),
      spans_(std::make_unique<Span[]>((size_t)n_threads_)) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    for (;;) {
        // Spin first: in a forward pass the next op follows within microseconds.
        int spins = 0;
        while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinIterations &&
               !parked_.load(std::memory_order_relaxed)) {
            cpu_relax();
            ++spins;
        }
        if (generation_.load(std::memory_order_acquire) == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            sleeping_.fetch_add(1);
            wake_.wait(lock, [&] { return generation_.load() != seen; });
            sleeping_.fetch_sub(1);
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stop_.load()) return;
        (*job_)(index);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::run_on_all(const std::function<void(int)>& job) {
    if (n_threads_ == 1) {
        job(0);
        return;
    }
    job_ = &job;
    pending_.store(n_threads_ - 1, std::memory_order_release);
    parked_.store(false, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    if (sleeping_.load() > 0) wake_.notify_all();
    job(0);
    while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
    job_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
    if (n <= 0) return;
    const int nt = (int)std::min<int64_t>(n_threads_, n);
    if (nt == 1) {
        fn(0, n, 0);
        return;
    }
    run_body([&](int t) {
        if (t >= nt) return;
        const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
        if (begin < end) fn(begin, end, t);
    });
}

void ThreadPool::parallel_tasks(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
    if (n_tasks <= 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
        for (int64_t i = 0; i < n_tasks; ++i) fn(i, 0);
        return;
    }
    std::atomic<int64_t> next{0};
    run_body([&](int t) {
        for (int64_t i = next.fetch_add(1); i < n_tasks; i = next.fetch_add(1)) fn(i, t);
    });
}

void ThreadPool::parallel_ranges(int64_t n, int64_t min_range,
                                 const std::function<void(int64_t, int64_t, int)>& fn) {
    if (n <= 0) return;
    min_range = std::max<int64_t>(1, min_range);
    if (n_threads_ == 1 || n <= min_range) {
        fn(0, n, 0);
        return;
    }
    // Each grab takes 1/(2 * threads) of what is left: the last ranges are min_range, so
    // the time one thread waits for the other at the end is about one small range.
    const int64_t divisor = 2 * (int64_t)n_threads_;
    std::atomic<int64_t> next{0};
    run_body([&](int t) {
        int64_t begin = next.load(std::memory_order_relaxed);
        while (begin < n) {
            const int64_t size = std::max(min_range, (n - begin) / divisor);
            const int64_t end = std::min(n, begin + size);
            if (next.compare_exchange_weak(begin, end, std::memory_order_relaxed)) {
                fn(begin, end, t);
                begin = next.load(std::memory_order_relaxed);
            }
        }
    });
}

namespace {

constexpr uint64_t pack_span(int64_t begin, int64_t end) {
    return (uint64_t)begin | (uint64_t)end << 32;
}
constexpr int64_t span_begin(uint64_t v) {
    return (int64_t)(v & 0xFFFFFFFFu);
}
constexpr int64_t span_end(uint64_t v) {
    return (int64_t)(v >> 32);
}

}  // namespace

void ThreadPool::parallel_spans(int64_t n, int64_t min_range,
                                const std::function<void(int64_t, int64_t, int)>& fn,
                                int64_t piece_divisor) {
    // Nothing to split (one thread, n <= min_range, n <= 0), or more than the 32-bit halves
    // of a span hold: as parallel_ranges does it.
    if (n_threads_ == 1 || n <= std::max<int64_t>(1, min_range) || n >= ((int64_t)1 << 31))
        return parallel_ranges(n, min_range, fn);
    min_range = std::max<int64_t>(1, min_range);
    piece_divisor = std::max<int64_t>(1, piece_divisor);
    const int nt = n_threads_;
    for (int t = 0; t < nt; ++t)
        spans_[(size_t)t].range.store(pack_span(n * t / nt, n * (t + 1) / nt),
                                      std::memory_order_relaxed);
    run_body([&](int t) {
        // Own span, front to back: consecutive pieces continue one address stream.
        std::atomic<uint64_t>& own = spans_[(size_t)t].range;
        uint64_t cur = own.load(std::memory_order_relaxed);
        for (;;) {
            const int64_t b = span_begin(cur), e = span_end(cur);
            if (b >= e) break;
            const int64_t nb = std::min(e, b + std::max(min_range, (e - b) / piece_divisor));
            if (own.compare_exchange_weak(cur, pack_span(nb, e), std::memory_order_relaxed)) {
                fn(b, nb, t);
                cur = own.load(std::memory_order_relaxed);
            }
        }
        // Then the others' spans, from their backs: half of what is left at a time while
        // that is large, so owner and thief finish within about one piece of each other.
        for (int k = 1; k < nt; ++k) {
            std::atomic<uint64_t>& other = spans_[(size_t)((t + k) % nt)].range;
            cur = other.load(std::memory_order_relaxed);
            for (;;) {
                const int64_t b = span_begin(cur), e = span_end(cur);
                if (b >= e) break;
                const int64_t ne = std::max(b, e - std::max(min_range, (e - b) / 2));
                if (other.compare_exchange_weak(cur, pack_span(b, ne), std::memory_order_relaxed)) {
                    fn(ne, e, t);
                    cur = other.load(std::memory_order_relaxed);
                }
            }
        }
    });
}

}  // namespace lokal
