// Memory read bandwidth, peak RSS and CPU name for `lokal bench`.
#include "cli/bench_memory.h"

#include "ops/cpu_features.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lokal::cli {
namespace {

// Each thread reads its slice as K streams in lockstep (the slice cut into K equal parts, the
// same offset of every part per step). One stream per thread understated what the kernels
// reach: on a Zen 5 VM two threads read 39-49 GB/s that way while the Q4_K decode matmuls
// read 50-58 GB/s, and two or four streams per thread read 50-56 (2026-12-05). A roofline
// the kernels exceed measures nothing, so the passes try K = 1, 2 and 4 and the best counts.
//
// Each K also runs a second time with one software request per 4 KiB page of every stream,
// 8 KiB ahead of the loads: the hardware prefetcher, which works within a page, then streams
// the page from its first line. On the same Zen 5 VM that read 71.2 and 65.8 GB/s with two
// threads where the same loads without it read 60.4 and 56.4 (bench/stream_order.cpp, seq64,
// 2026-12-07 12:05 and 14:10), and the AVX-512 decode of
// the 32-element types requests its weights that way since 2cb38a2: without it the roofline
// read 12-21% less (alternated with the build before, docs/PERFORMANCE.md, 2026-12-07).
struct ReadPattern {
    int streams;
    bool page_requests;
};
constexpr ReadPattern kPatterns[] = {{1, false}, {2, false}, {4, false},
                                     {1, true},  {2, true},  {4, true}};
constexpr size_t kPageAhead = 8192;

// The CLI is built for baseline x86-64; the AVX2 loop is compiled for AVX2 by attribute and
// chosen at run time, so the roofline is not understated by narrow loads on a fast machine.
#if defined(__x86_64__)
template <int K, bool Pages>
__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t part) {
    __m256i a[2 * K];
    for (int k = 0; k < 2 * K; ++k) a[k] = _mm256_setzero_si256();
    for (size_t i = 0; i + 64 <= part; i += 64) {
        if (Pages && i % 4096 == 0)  // past the buffer's end the requests are dropped, not faulted
            for (int k = 0; k < K; ++k)
                _mm_prefetch((const char*)(p + k * part + i + kPageAhead), _MM_HINT_T0);
        for (int k = 0; k < K; ++k) {
            const uint8_t* q = p + k * part + i;
            a[2 * k] = _mm256_xor_si256(a[2 * k], _mm256_load_si256((const __m256i*)q));
            a[2 * k + 1] =
                _mm256_xor_si256(a[2 * k + 1], _mm256_load_si256((const __m256i*)(q + 32)));
        }
    }
    __m256i r = a[0];
    for (int k = 1; k < 2 * K; ++k) r = _mm256_xor_si256(r, a[k]);
    return (uint64_t)_mm256_extract_epi64(r, 0) ^ (uint64_t)_mm256_extract_epi64(r, 3);
}

template <int K, bool Pages>
uint64_t read_sse2(const uint8_t* p, size_t part) {
    __m128i a[2 * K];
    for (int k = 0; k < 2 * K; ++k) a[k] = _mm_setzero_si128();
    for (size_t i = 0; i + 32 <= part; i += 32) {
        if (Pages && i % 4096 == 0)
            for (int k = 0; k < K; ++k)
                _mm_prefetch((const char*)(p + k * part + i + kPageAhead), _MM_HINT_T0);
        for (int k = 0; k < K; ++k) {
            const uint8_t* q = p + k * part + i;
            a[2 * k] = _mm_xor_si128(a[2 * k], _mm_load_si128((const __m128i*)q));
            a[2 * k + 1] = _mm_xor_si128(a[2 * k + 1], _mm_load_si128((const __m128i*)(q + 16)));
        }
    }
    __m128i r = a[0];
    for (int k = 1; k < 2 * K; ++k) r = _mm_xor_si128(r, a[k]);
    return (uint64_t)_mm_cvtsi128_si64(r);
}

template <int K, bool Pages>
uint64_t read_streams_k(const uint8_t* p, size_t part) {
    static const bool avx2 = __builtin_cpu_supports("avx2");
    return avx2 ? read_avx2<K, Pages>(p, part) : read_sse2<K, Pages>(p, part);
}
#else
template <int K, bool Pages>
uint64_t read_streams_k(const uint8_t* p, size_t part) {
    uint64_t a = 0;
    for (size_t i = 0; i + 8 <= part; i += 8)
        for (int k = 0; k < K; ++k) {
            uint64_t v;
            std::memcpy(&v, p + k * part + i, 8);
            a ^= v;
        }
    return a;
}
#endif

template <bool Pages>
uint64_t read_streams_paged(const uint8_t* p, size_t n, int streams) {
    switch (streams) {
        case 2:
            return read_streams_k<2, Pages>(p, n / 2);
        case 4:
            return read_streams_k<4, Pages>(p, n / 4);
        default:
            return read_streams_k<1, Pages>(p, n);
    }
}

// n bytes from p as pattern's streams of n / streams bytes each (n a multiple of 4096 * 4).
uint64_t read_streams(const uint8_t* p, size_t n, ReadPattern pattern) {
    return pattern.page_requests ? read_streams_paged<true>(p, n, pattern.streams)
                                 : read_streams_paged<false>(p, n, pattern.streams);
}

// A "Name:   123 kB" field of a /proc file, in KiB; 0 when absent.
size_t proc_field_kib(const char* file, const char* field) {
    std::ifstream in(file);
    std::string line;
    const size_t len = std::strlen(field);
    while (std::getline(in, line))
        if (line.compare(0, len, field) == 0)
            return (size_t)std::strtoull(line.c_str() + len, nullptr, 10);
    return 0;
}

}  // namespace

size_t default_bandwidth_buffer_bytes() {
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 <= 0) l3 = 64l << 20;
    const size_t phys = physical_memory_bytes() > 0 ? physical_memory_bytes() : (size_t)8 << 30;
    size_t want = std::max<size_t>((size_t)1 << 30, 4 * (size_t)l3);
    want = std::min({want, phys / 4, (size_t)4 << 30});
    return want & ~(size_t)((1 << 20) - 1);
}

ReadBandwidth measure_read_bandwidth(int threads, size_t bytes, int passes) {
    threads = std::max(1, threads);
    // passes rounds of every pattern, interleaved (the VM's bandwidth drifts).
    constexpr int kN = (int)std::size(kPatterns);
    const int n_passes = std::max(1, passes) * kN;
    auto pattern_of = [](int pass) { return kPatterns[pass % kN]; };
    const size_t slice = (bytes / (size_t)threads) & ~(size_t)16383;
    if (slice < 16384)
        throw std::invalid_argument("bandwidth buffer too small for the thread count");
    const size_t total = slice * (size_t)threads;
    // mmap so the memory goes back to the system at once (peak RSS is measured later).
    void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::bad_alloc();
    auto* buf = static_cast<uint8_t*>(mem);
    madvise(buf, total, MADV_HUGEPAGE);  // fewer TLB misses, as a large weight mapping may get

    std::atomic<int> ready{0};
    std::atomic<int> go{-1};  // pass number the workers may start; -2: quit
    std::vector<std::chrono::steady_clock::time_point> t0((size_t)threads), t1((size_t)threads);
    std::atomic<uint64_t> sink{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            uint8_t* p = buf + (size_t)t * slice;
            // Each thread writes its own slice first: real pages (never the shared zero
            // page) placed near the thread that reads them.
            std::memset(p, 0x5A + t, slice);
            ready.fetch_add(1);
            for (int pass = 0;; ++pass) {
                int g;
                while ((g = go.load(std::memory_order_acquire)) < pass && g != -2)
                    std::this_thread::yield();
                if (g == -2) break;
                t0[(size_t)t] = std::chrono::steady_clock::now();
                const uint64_t v = read_streams(p, slice, pattern_of(pass));
                t1[(size_t)t] = std::chrono::steady_clock::now();
                sink.fetch_xor(v);
                ready.fetch_add(1);
            }
        });
    }
    ReadBandwidth best;
    int done = threads;
    for (int pass = 0; pass < n_passes; ++pass) {
        while (ready.load() < done) std::this_thread::yield();
        go.store(pass, std::memory_order_release);
        done += threads;
        while (ready.load() < done) std::this_thread::yield();
        const auto start = *std::min_element(t0.begin(), t0.end());
        const auto end = *std::max_element(t1.begin(), t1.end());
        const double s = std::chrono::duration<double>(end - start).count();
        if (s > 0 && (double)total / s > best.bytes_per_s) {
            best.bytes_per_s = (double)total / s;
            best.streams_per_thread = pattern_of(pass).streams;
            best.page_requests = pattern_of(pass).page_requests;
        }
    }
    go.store(-2, std::memory_order_release);
    for (auto& th : pool) th.join();
    munmap(buf, total);
    if (sink.load() == 0x123456789ull) std::fprintf(stderr, " ");  // keeps the reads observable
    return best;
}

size_t peak_rss_bytes() {
    return proc_field_kib("/proc/self/status", "VmHWM:") * 1024;
}

size_t huge_page_bytes() {
    return proc_field_kib("/proc/self/smaps_rollup", "AnonHugePages:") * 1024;
}

std::string transparent_huge_pages_mode() {
    std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string line;
    std::getline(in, line);  // e.g. "always [madvise] never": the bracketed one is in force
    const size_t a = line.find('['), b = line.find(']');
    return a != std::string::npos && b > a ? line.substr(a + 1, b - a - 1) : "unknown";
}

bool reset_peak_rss() {
    {
        std::ofstream out("/proc/self/clear_refs");
        if (!out) return false;
        out << "5";  // "5": reset the peak resident set size to the current one
        if (!out.flush()) return false;
    }
    const size_t hwm = proc_field_kib("/proc/self/status", "VmHWM:"),
                 rss = proc_field_kib("/proc/self/status", "VmRSS:");
    return hwm > 0 && hwm <= rss + 4096;
}

std::string cpu_model_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const size_t c = line.find(':');
            if (c != std::string::npos) {
                size_t b = line.find_first_not_of(" \t", c + 1);
                return b == std::string::npos ? "unknown" : line.substr(b);
            }
        }
    }
    return "unknown";
}

}  // namespace lokal::cli
