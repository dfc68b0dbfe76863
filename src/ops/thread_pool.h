// A fixed pool of worker threads that run one parallel loop at a time.
//
// parallel_for splits [0, n) into contiguous chunks, one per thread, and the calling
// thread takes part in the work. Workers spin briefly on a generation counter before
// sleeping, so the per-op overhead in a forward pass (hundreds of ops per token) stays
// in the microseconds.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace lokal {

class ThreadPool {
  public:
    // n_threads total, including the caller; 0 picks the number of physical cores.
    explicit ThreadPool(int n_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int n_threads() const { return n_threads_; }

    // Run fn(begin, end, thread_index) over [0, n) split into n_threads contiguous chunks.
    // Chunk boundaries depend only on n and n_threads.
    void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

    // Run fn(task, thread_index) for each task in [0, n_tasks), dealing tasks out dynamically
    // (for uneven work such as attention over sequences of different lengths).
    void parallel_tasks(int64_t n_tasks, const std::function<void(int64_t, int)>& fn);

    // Run fn(begin, end, thread_index) over [0, n) in ranges dealt out dynamically, each
    // range a share of what is left (guided): large ranges first, then smaller ones down to
    // min_range, so threads that share memory bandwidth finish within a small range of each
    // other. Which thread runs a range depends on timing; fn must not care.
    void parallel_ranges(int64_t n, int64_t min_range,
                         const std::function<void(int64_t, int64_t, int)>& fn);

    // Run fn(begin, end, thread_index) over [0, n), each thread owning a contiguous span
    // (thread t: [n * t / T, n * (t + 1) / T)) that it takes front to back in pieces (1 /
    // piece_divisor of what is left of it, at least min_range); a thread done with its own
    // span takes pieces from the back of another's. So each thread reads one forward address
    // stream, started once, and a new one only when it steals near the end (the guided
    // ranges above start ~log(n) streams per thread). A small divisor makes fewer, larger
    // pieces (fewer calls of fn, less left to steal); a large one finer balance at the end.
    // Which thread runs a range depends on timing; fn must not care.
    void parallel_spans(int64_t n, int64_t min_range,
                        const std::function<void(int64_t, int64_t, int)>& fn,
                        int64_t piece_divisor = 8);

    // Workers stop spinning now and sleep until the next parallel loop: for a caller that
    // knows no work follows soon. A pool left spinning takes a core for 20,000 pause
    // instructions after its last loop, which another pool's threads — another Context's —
    // then wait for (on this project's VM far longer than that suggests: docs/PERFORMANCE.md);
    // `lokal bench` switches between contexts every repetition and parks each one after it.
    void park() { parked_.store(true, std::memory_order_release); }

    static int default_threads();

  private:
    void worker(int index);
    void run_on_all(const std::function<void(int)>& job);
    // run_on_all(body) through a std::function that holds only a pointer to body: a closure
    // over several references (24 bytes and up) does not fit std::function's own storage (16
    // bytes in libstdc++), so every loop allocated it and the workers read it from the heap.
    // An empty parallel_for round trip on 2 threads: mean 1.65 -> 1.38 us, min 1.57 -> 1.33
    // (BM_ThreadPoolDispatch, alternated, 2026-12-07).
    template <class Body>
    void run_body(const Body& body) {
        run_on_all([&body](int t) { body(t); });
    }

    int n_threads_;
    std::vector<std::thread> workers_;
    const std::function<void(int)>* job_ = nullptr;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::atomic<int> sleeping_{0};
    std::atomic<bool> parked_{false};  // park(): no spinning until the next loop
    // parallel_spans: per thread, its span's remaining [begin, end) as begin | end << 32, on
    // its own cache line (owner and thief update it with compare-exchange).
    struct alignas(64) Span {
        std::atomic<uint64_t> range{0};
    };
    std::unique_ptr<Span[]> spans_;
};

}  // namespace lokal
