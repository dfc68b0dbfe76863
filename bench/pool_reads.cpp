// What a sustained read gets of the roofline: plain reads, one request per 4 KiB page 8 KiB
// ahead (as `lokal bench --memory`'s best pattern), split over 2 threads as one call after
// another, each call timed, in three ways: a minimal pool (one worker spinning on a counter,
// a fixed half each), lokal's ThreadPool with a fixed half per thread (parallel_tasks), and
// ThreadPool::parallel_spans in the decode's 18,432-byte units. Calls read copies of a
// 256 MiB buffer in turn (9 MiB or 36 MiB each); per way and size, the mean over ~0.7 s of
// calls and the best single call. The roofline is a best of short passes; generation is a
// mean over seconds (docs/PERFORMANCE.md, "The roofline: a request per page ahead").
// Not part of the build; each way in its own process (a spinning minimal pool would take a
// core from the ThreadPool's workers):
//
// clang-format off
//   g++ -O2 -std=c++20 -Isrc -o /tmp/pool_reads bench/pool_reads.cpp src/ops/thread_pool.cpp -lpthread
//   for w in 2 0 1; do /tmp/pool_reads $w; done
// clang-format on
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "ops/thread_pool.h"

namespace {

using Clock = std::chrono::steady_clock;

__attribute__((target("avx2"))) uint64_t read_paged(const uint8_t* p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a;
    for (size_t o = 0; o < n; o += 64) {
        if (((uintptr_t)(p + o) & 4095) == 0) _mm_prefetch((const char*)p + o + 8192, _MM_HINT_T0);
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i*)(p + o)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i*)(p + o + 32)));
    }
    return (uint64_t)_mm256_extract_epi64(_mm256_xor_si256(a, b), 0);
}

const char* const kWays[] = {"minimal spin pool, halves", "ThreadPool, halves",
                             "ThreadPool, spans"};

}  // namespace

int main(int argc, char** argv) {
    const int way = argc > 1 ? std::atoi(argv[1]) : 0;
    if (way < 0 || way > 2) {
        std::fprintf(stderr, "usage: pool_reads 0|1|2 (minimal pool, ThreadPool halves, spans)\n");
        return 2;
    }
    const size_t total = (size_t)256 << 20;
    auto* buf =
        (uint8_t*)mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return 1;
    madvise(buf, total, MADV_HUGEPAGE);
    std::memset(buf, 0x5A, total);  // real pages, not the shared zero page
    std::atomic<uint64_t> sink{0};
    size_t size = 0, copy = 0;

    // The minimal pool: the worker reads the second half of the current copy per generation.
    std::atomic<long> generation{0};
    std::atomic<long> done{0};
    std::thread worker;
    if (way == 0)
        worker = std::thread([&] {
            long seen = 0;
            for (;;) {
                long g;
                while ((g = generation.load(std::memory_order_acquire)) == seen) _mm_pause();
                if (g < 0) return;
                seen = g;
                sink ^= read_paged(buf + copy * size + size / 2, size / 2);
                done.fetch_add(1, std::memory_order_release);
            }
        });
    lokal::ThreadPool pool(way == 0 ? 1 : 2);

    for (int round = 0; round < 3; ++round)
        for (size_t s : {(size_t)9 << 20, (size_t)36 << 20}) {
            size = s, copy = 0;
            const size_t copies = total / size;
            double seconds = 0, best = 0;
            long calls = 0;
            const auto start = Clock::now();
            while (std::chrono::duration<double>(Clock::now() - start).count() < 0.7) {
                const auto t0 = Clock::now();
                if (way == 0) {
                    const long want = done.load() + 1;
                    generation.fetch_add(1, std::memory_order_release);
                    sink ^= read_paged(buf + copy * size, size / 2);
                    while (done.load(std::memory_order_acquire) < want) _mm_pause();
                } else if (way == 1) {
                    pool.parallel_tasks(2, [&](int64_t k, int) {
                        sink ^= read_paged(buf + copy * size + (size_t)k * (size / 2), size / 2);
                    });
                } else {
                    pool.parallel_spans(
                        (int64_t)(size / 18432), 1, [&](int64_t u0, int64_t u1, int) {
                            sink ^= read_paged(buf + copy * size + (size_t)u0 * 18432,
                                               (size_t)(u1 - u0) * 18432);
                        });
                }
                const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
                seconds += sec, ++calls;
                best = std::max(best, (double)size / sec / 1e9);
                copy = (copy + 1) % copies;
            }
            std::printf("%-26s %2zu MiB calls: mean %5.1f GB/s, best call %5.1f (%ld calls)\n",
                        kWays[way], size >> 20, (double)size * (double)calls / seconds / 1e9, best,
                        calls);
        }
    if (way == 0) {
        generation.store(-1, std::memory_order_release);
        worker.join();
    }
    if (sink.load() == 42) std::puts("");
    munmap(buf, total);
    return 0;
}
