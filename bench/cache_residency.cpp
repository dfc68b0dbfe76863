// Can part of a model's weights stay in the last-level cache while the rest streams past it?
// (docs/PERFORMANCE.md, "Decode: the 32-element loop unrolled", leads.) Two threads; first
// the read rate of buffers of 1 MB .. 1 GB read over and over (where the last-level cache
// ends), then "tokens": each thread reads its half of a hot region (8, 16, 24 MB) with plain
// loads and then its half of 600 MB of cold weights, the cold ones with a prefetch 8 KiB
// ahead as T0 (mode 0) or NTA (mode 1), or none (mode 2). If the hot region stayed cached,
// its rate would be the small buffers' rate, not memory's. Not part of the build; AVX-512:
//
//   g++ -O2 -mavx512f -o /tmp/cache_residency bench/cache_residency.cpp -lpthread
//   /tmp/cache_residency
// GCC 12 flags the intrinsics' own _mm512_undefined_* self-initialization once inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// XOR of every 64-byte line of [p, p + n), with a prefetch of the lines 8 KiB ahead every
// 1 KiB (kHint < 0: none).
template <int kHint>
long long read_lines(const char* p, size_t n) {
    __m512i acc = _mm512_setzero_si512();
    for (size_t i = 0; i < n; i += 64) {
        if (kHint >= 0 && (i & 1023) == 0)
            for (int k = 0; k < 16; ++k) _mm_prefetch(p + i + 8192 + 64 * k, (_mm_hint)kHint);
        acc = _mm512_xor_si512(acc, _mm512_load_si512(p + i));
    }
    return _mm512_reduce_add_epi64(acc);
}

}  // namespace

int main() {
    const size_t cold = 600ull << 20, big = 1ull << 30, slack = 1 << 20;
    char* buf = static_cast<char*>(aligned_alloc(2 << 20, big + slack));
    if (!buf) return 1;
    std::memset(buf, 1, big + slack);
    long long sink = 0;

    for (size_t mb : {1, 4, 8, 16, 24, 32, 48, 64, 128, 1024}) {
        const size_t n = mb << 20;
        const int iters = (int)std::max<size_t>(1, (2048ull << 20) / n);
        double best = 0;
        for (int rep = 0; rep < 5; ++rep) {
            const auto t0 = Clock::now();
            long long s1 = 0, s2 = 0;
            std::thread th([&] {
                for (int it = 0; it < iters; ++it) s1 += read_lines<-1>(buf + n / 2, n / 2);
            });
            for (int it = 0; it < iters; ++it) s2 += read_lines<-1>(buf, n / 2);
            th.join();
            best = std::max(best, (double)n * iters / seconds_since(t0) / 1e9);
            sink += s1 + s2;
        }
        std::printf("%5zu MB read again and again: %6.1f GB/s (2 threads)\n", mb, best);
    }

    for (size_t hot_mb : {8, 16, 24})
        for (int mode = 0; mode < 3; ++mode) {
            const size_t hot = hot_mb << 20;
            double best_hot = 1e9, best_all = 1e9;
            for (int rep = 0; rep < 20; ++rep) {
                double hot_s[2] = {};
                const auto t0 = Clock::now();
                auto token = [&](int half) {
                    const char* h = buf + half * hot / 2;
                    const char* c = buf + hot + half * cold / 2;
                    const auto a = Clock::now();
                    long long s = read_lines<-1>(h, hot / 2);
                    hot_s[half] = seconds_since(a);
                    s += mode == 0   ? read_lines<_MM_HINT_T0>(c, cold / 2)
                         : mode == 1 ? read_lines<_MM_HINT_NTA>(c, cold / 2)
                                     : read_lines<-1>(c, cold / 2);
                    return s;
                };
                long long s1 = 0;
                std::thread th([&] { s1 = token(1); });
                const long long s0 = token(0);
                th.join();
                sink += s0 + s1;
                if (rep > 2) {  // the first passes bring the hot region in
                    best_hot = std::min(best_hot, std::max(hot_s[0], hot_s[1]));
                    best_all = std::min(best_all, seconds_since(t0));
                }
            }
            std::printf(
                "hot %2zu MB, cold prefetch %s: hot part %6.1f GB/s, whole token %5.1f GB/s\n",
                hot_mb,
                mode == 0   ? "T0  "
                : mode == 1 ? "NTA "
                            : "none",
                hot / best_hot / 1e9, (hot + cold) / best_all / 1e9);
        }
    return sink == 42 ? 2 : 0;
}
