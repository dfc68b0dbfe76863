// Does the order of the addresses within a packed block change how fast a stream reads from
// memory? (docs/PERFORMANCE.md, "Tried 2026-12-07 afternoon": a 16-row transposed packing read
// each block's lines front to back and decode from memory ran 16-28% slower than today's
// layout, which reads each 64-byte vector as two 32-byte halves one 8-row run apart.)
// Plain reads with the decode's prefetch (bursts of whole blocks about 2304 bytes, 8 KiB
// ahead, as gemm_isa.h), no arithmetic, over a 1 GiB buffer on huge pages, per thread a
// contiguous slice; the block size is Q4_K's 16-row block (2304 bytes, runs of 1152) or
// Q4_0's (288, runs of 144). Patterns per block:
//   seq64  - 64-byte loads front to back (the transposed packing's order)
//   seq32  - 32-byte loads front to back
//   runs32 - 32-byte loads alternating between the block's two runs, o and o + run (today's)
//   inter64 - runs32's loads with the two runs interleaved in 64-byte granules (run 0's
//            granule k at 128 k, run 1's at 128 k + 64): line after line, front to back
// Then seq64, runs32 and inter64 on Q4_K-sized blocks under three prefetch modes: the
// decode's bursts (every line), none (the hardware prefetcher alone), and one line per 4 KiB
// page as far ahead (what the AVX-512 32-element decode does since 2cb38a2, gemm_isa.h).
// Last, seq64 with 0-16 vpdpbusd per line between the loads, 2 threads, the three modes.
// Not part of the build; AVX-512 with VNNI:
//
//   g++ -O2 -mavx512f -mavx512vnni -o /tmp/stream_order bench/stream_order.cpp -lpthread
//   /tmp/stream_order
// GCC 12 flags the intrinsics' own _mm512_undefined_* self-initialization once inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr size_t kAhead = 8192;
constexpr size_t kBurstBytes = 2304;

enum Pattern { kSeq64, kSeq32, kRuns32, kInter64 };
enum Prefetch { kBursts, kNone, kPages };
const char* const kPrefetchNames[] = {"bursts", "none", "pages"};
Prefetch g_prefetch = kBursts;
const char* const kNames[] = {"seq64", "seq32", "runs32", "inter64"};

template <Pattern P>
long long read_blocks(const char* p, size_t n, size_t block) {
    const size_t run = block / 2;
    const size_t burst_blocks = std::max<size_t>(1, (kBurstBytes + block / 2) / block);
    __m512i acc = _mm512_setzero_si512();
    __m256i acc2 = _mm256_setzero_si256();
    size_t b = 0;
    for (size_t o = 0; o + block <= n; o += block, ++b) {
        if (g_prefetch == kBursts && b % burst_blocks == 0)
            for (size_t l = 0; l < burst_blocks * block; l += 64)
                _mm_prefetch(p + o + kAhead + l, _MM_HINT_T0);
        if (g_prefetch == kPages && o % 4096 < block)  // the block that starts or crosses a page
            _mm_prefetch(p + ((o + kAhead) & ~(size_t)4095) + 4096 * (o % 4096 != 0), _MM_HINT_T0);
        const char* q = p + o;
        if constexpr (P == kSeq64) {
            for (size_t i = 0; i < block; i += 64)
                acc = _mm512_xor_si512(acc, _mm512_loadu_si512((const void*)(q + i)));
        } else if constexpr (P == kSeq32) {
            for (size_t i = 0; i < block; i += 32)
                acc2 = _mm256_xor_si256(acc2, _mm256_loadu_si256((const __m256i*)(q + i)));
        } else if constexpr (P == kInter64) {
            for (size_t i = 0; i < run; i += 32) {
                const size_t at =
                    i / 64 * 128 + i % 64;  // the runs in alternating 64-byte granules
                acc2 = _mm256_xor_si256(acc2, _mm256_loadu_si256((const __m256i*)(q + at)));
                acc2 = _mm256_xor_si256(acc2, _mm256_loadu_si256((const __m256i*)(q + at + 64)));
            }
        } else {
            for (size_t i = 0; i < run; i += 32) {
                acc2 = _mm256_xor_si256(acc2, _mm256_loadu_si256((const __m256i*)(q + i)));
                acc2 = _mm256_xor_si256(acc2, _mm256_loadu_si256((const __m256i*)(q + run + i)));
            }
        }
    }
    long long r[8];
    std::memcpy(r, &acc, 64);
    long long s[4];
    std::memcpy(s, &acc2, 32);
    return r[0] ^ r[7] ^ s[0] ^ s[3];
}

long long read_pattern(Pattern p, const char* data, size_t n, size_t block) {
    switch (p) {
        case kSeq64:
            return read_blocks<kSeq64>(data, n, block);
        case kSeq32:
            return read_blocks<kSeq32>(data, n, block);
        case kInter64:
            return read_blocks<kInter64>(data, n, block);
        default:
            return read_blocks<kRuns32>(data, n, block);
    }
}

// Seq64's loads with D vpdpbusd per 64-byte line on the loaded vector (8 accumulators), the
// prefetch as g_prefetch says (bursts: every line of each 2304 bytes, 8 KiB ahead): does
// arithmetic between the loads keep the hardware prefetcher from streaming a page?
template <int D>
long long read_dense(const char* p, size_t n) {
    __m512i acc[8];
    for (__m512i& a : acc) a = _mm512_setzero_si512();
    const __m512i y = _mm512_set1_epi32(0x01010101);
    for (size_t o = 0; o + 2304 <= n; o += 2304) {
        if (g_prefetch == kBursts)
            for (size_t l = 0; l < 2304; l += 64) _mm_prefetch(p + o + kAhead + l, _MM_HINT_T0);
        if (g_prefetch == kPages && o % 4096 < 2304)
            _mm_prefetch(p + ((o + kAhead) & ~(size_t)4095) + 4096 * (o % 4096 != 0), _MM_HINT_T0);
        for (size_t i = 0; i < 2304; i += 64) {
            const __m512i v = _mm512_loadu_si512((const void*)(p + o + i));
            if constexpr (D == 0) acc[0] = _mm512_xor_si512(acc[0], v);
#pragma GCC unroll 16
            for (int d = 0; d < D; ++d) acc[d % 8] = _mm512_dpbusd_epi32(acc[d % 8], v, y);
        }
    }
    long long r = 0, t[8];
    for (const __m512i& a : acc) std::memcpy(t, &a, 64), r ^= t[0];
    return r;
}

// GB/s of `threads` threads each reading its slice (a multiple of unit bytes) once.
template <class Read>
double measure_read(Read read, const char* data, size_t n, size_t unit, int threads) {
    const size_t slice = n / (size_t)threads / unit * unit;
    std::vector<std::thread> ts;
    std::vector<long long> sink((size_t)threads);
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] { sink[(size_t)t] = read(data + t * slice, slice); });
    for (auto& t : ts) t.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sink[0] == 42) std::puts("");
    return (double)(slice * (size_t)threads) / s / 1e9;
}

// The same with pattern p on blocks of `block` bytes.
double measure(Pattern p, const char* data, size_t n, size_t block, int threads) {
    return measure_read([&](const char* q, size_t m) { return read_pattern(p, q, m, block); }, data,
                        n, block, threads);
}

template <int D>
void dense_row(const char* data, size_t n) {
    double best[3] = {0, 0, 0};
    for (int round = 0; round < 4; ++round)
        for (int k = 0; k < 3; ++k) {
            const int m = (round % 2 == 0) ? k : 2 - k;
            g_prefetch = (Prefetch)m;
            best[m] = std::max(best[m], measure_read(read_dense<D>, data, n, 2304, 2));
        }
    std::printf("seq64 + %2d vpdpbusd per line, 2 threads, prefetch:", D);
    for (int k = 0; k < 3; ++k) std::printf("  %s %5.1f GB/s", kPrefetchNames[k], best[k]);
    std::printf("\n");
}

}  // namespace

int main() {
    const size_t n = (size_t)1 << 30;
    char* data =
        (char*)mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (data == MAP_FAILED) return 1;
    madvise(data, n, MADV_HUGEPAGE);
    for (size_t i = 0; i < n; i += 4096) data[i] = (char)i;
    for (size_t block : {(size_t)2304, (size_t)288})
        for (int threads : {1, 2}) {
            // Five rounds with the patterns interleaved (the VM's bandwidth drifts); best of each.
            double best[3] = {0, 0, 0};
            for (int round = 0; round < 5; ++round)
                for (int k = 0; k < 3; ++k) {
                    const int pi = (round % 2 == 0) ? k : 2 - k;
                    best[pi] = std::max(best[pi], measure((Pattern)pi, data, n, block, threads));
                }
            std::printf("block %4zu, %d thread%s:", block, threads, threads > 1 ? "s" : " ");
            for (int k = 0; k < 3; ++k) std::printf("  %s %5.1f GB/s", kNames[k], best[k]);
            std::printf("\n");
        }
    for (Pattern pat : {kSeq64, kRuns32, kInter64})
        for (int threads : {1, 2}) {
            double best[3] = {0, 0, 0};
            for (int round = 0; round < 5; ++round)
                for (int k = 0; k < 3; ++k) {
                    const int m = (round % 2 == 0) ? k : 2 - k;
                    g_prefetch = (Prefetch)m;
                    best[m] = std::max(best[m], measure(pat, data, n, 2304, threads));
                }
            std::printf("%-7s block 2304, %d thread%s, prefetch:", kNames[pat], threads,
                        threads > 1 ? "s" : " ");
            for (int k = 0; k < 3; ++k) std::printf("  %s %5.1f GB/s", kPrefetchNames[k], best[k]);
            std::printf("\n");
        }
    dense_row<0>(data, n);
    dense_row<2>(data, n);
    dense_row<4>(data, n);
    dense_row<8>(data, n);
    dense_row<12>(data, n);
    dense_row<16>(data, n);
    munmap(data, n);
    return 0;
}
