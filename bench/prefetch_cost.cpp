// What does a burst of software prefetches cost the thread that issues it, and what does it
// buy a read that comes later? (docs/PERFORMANCE.md, "Tried 2026-12-07 evening": the weights
// of the matmul after attention requested while attention computes.) One thread, a region of
// R MiB in a 512 MiB buffer on 2 MiB or 4 KiB pages, the caches flushed by reading 128 MiB
// elsewhere between steps. Per iteration: a cold read of the region; then one prefetch per line of
// another cold region (the time the loop of prefetches takes), 300 us of waiting, and a read
// of that region. Hints: 0 = T0, 1 = T1, 2 = T2, 3 = NTA. Not part of the build; AVX-512:
//
//   g++ -O2 -mavx512f -o /tmp/prefetch_cost bench/prefetch_cost.cpp
//   for h in 0 1 3; do for p in huge small; do taskset -c 1 /tmp/prefetch_cost 1 $h $p; done; done
#include <immintrin.h>
#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

double now_us() {
    return std::chrono::duration<double, std::micro>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// Reads n bytes at p (64-byte loads), returns a value that depends on all of them.
__attribute__((noinline)) long read_all(const char* p, size_t n) {
    __m512i a = _mm512_setzero_si512();
    for (size_t i = 0; i < n; i += 64) a = _mm512_add_epi64(a, _mm512_load_si512(p + i));
    long lanes[8];
    _mm512_storeu_si512(lanes, a);
    return lanes[0] + lanes[7];
}

// The instructions written out: GCC 12 at -O2 dropped this loop of _mm_prefetch calls.
void prefetch_all(const char* p, size_t n, int hint) {
    for (size_t i = 0; i < n; i += 64) {
        const char* a = p + i;
        if (hint == 0)
            asm volatile("prefetcht0 %0" : : "m"(*a));
        else if (hint == 1)
            asm volatile("prefetcht1 %0" : : "m"(*a));
        else if (hint == 2)
            asm volatile("prefetcht2 %0" : : "m"(*a));
        else
            asm volatile("prefetchnta %0" : : "m"(*a));
    }
}

char* buffer(size_t bytes, int fill, bool huge) {
    char* p = static_cast<char*>(std::aligned_alloc(size_t(2) << 20, bytes));
    if (!p) std::exit(1);
    madvise(p, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    std::memset(p, fill, bytes);
    return p;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr,
                     "usage: prefetch_cost REGION_MIB HINT(0=T0 1=T1 2=T2 3=NTA) huge|small\n");
        return 2;
    }
    const bool huge = std::strcmp(argv[3], "huge") == 0;
    const size_t region = (size_t)(std::atof(argv[1]) * 1048576.0) / 64 * 64;
    const int hint = std::atoi(argv[2]);
    const size_t big = size_t(512) << 20, flush = size_t(128) << 20;
    if (region == 0 || region > (size_t(8) << 20)) {
        std::fprintf(stderr, "prefetch_cost: REGION_MIB from 1/16384 to 8\n");
        return 2;
    }
    char* buf = buffer(big, 1, huge);
    char* other = buffer(big, 2, huge);
    const int iters = 20;
    long sink = 0;
    double cold = 0, issue = 0, after = 0;
    for (int it = 0; it < iters; ++it) {
        const char* r = buf + (size_t)(2 * it % 48) * (size_t(8) << 20);
        const char* s = r + (size_t(8) << 20);
        sink += read_all(other, flush);
        double t = now_us();
        sink += read_all(r, region);
        cold += now_us() - t;
        sink += read_all(other + flush, flush);
        t = now_us();
        prefetch_all(s, region, hint);
        issue += now_us() - t;
        for (const double w = now_us(); now_us() - w < 300;) {
        }
        t = now_us();
        sink += read_all(s, region);
        after += now_us() - t;
    }
    std::printf(
        "region %.2f MiB, hint %d, %s pages: cold read %.1f us; prefetch loop %.1f us; read 300 "
        "us after the prefetches %.1f us (%ld)\n",
        region / 1048576.0, hint, huge ? "2 MiB" : "4 KiB", cold / iters, issue / iters,
        after / iters, sink & 1);
}
