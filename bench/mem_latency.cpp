// How long one read from memory takes on this machine: a pointer chase through 1 GiB on huge
// pages in a random order (each load's address comes from the previous load, so nothing
// overlaps and no prefetcher helps), one thread, the other cores idle. The prefetch distances
// in gemm_isa.h and gemm_avx512.cpp are sized against it: a request issued d bytes ahead of a
// stream read at r bytes/s arrives in time only if d / r exceeds this latency
// (docs/PERFORMANCE.md, "Batches of 2–8 tokens: pages far ahead, lines nearer").
// Not part of the build:
//
//   g++ -O2 -o /tmp/mem_latency bench/mem_latency.cpp && /tmp/mem_latency
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

int main() {
    constexpr size_t kBytes = size_t(1) << 30, kLine = 64, kLines = kBytes / kLine;
    void* mem = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        std::perror("mmap");
        return 1;
    }
    madvise(mem, kBytes, MADV_HUGEPAGE);
    auto* words = static_cast<uint64_t*>(mem);
    // One cycle through every line in a random order: line order[i] points to order[i + 1].
    std::vector<uint32_t> order(kLines);
    std::iota(order.begin(), order.end(), 0u);
    std::shuffle(order.begin(), order.end(), std::mt19937_64(1));
    for (size_t i = 0; i < kLines; ++i)
        words[(size_t)order[i] * (kLine / 8)] = (uint64_t)order[(i + 1) % kLines] * (kLine / 8);
    for (int round = 0; round < 3; ++round) {
        constexpr int kSteps = 2000000;
        uint64_t at = (uint64_t)order[0] * (kLine / 8);
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < kSteps; ++i) at = words[at];
        const double ns =
            std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        std::printf("round %d: %.1f ns per dependent read (end %llu)\n", round, ns / kSteps,
                    (unsigned long long)at);
    }
    munmap(mem, kBytes);
    return 0;
}
