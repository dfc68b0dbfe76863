// Arithmetic peaks for `lokal bench` (bench_compute.h).
#include "cli/bench_compute.h"

#include "ops/cpu_features.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace lokal::cli {
namespace {

// Instructions per thread and pass: kRegs independent accumulators (12 for AVX2's 16
// registers, which also hold the operands), so neither latency nor the loop counter limits
// the rate; ~10-40 ms per pass on current CPUs.
constexpr int kRegs = 16, kRegsAvx2 = 12;
constexpr int64_t kIters = int64_t{1} << 22;  // x kRegs instructions

#if defined(__x86_64__)
// Each loop keeps its kRegs accumulators in registers (intrinsics; inline asm on an array
// of vectors made GCC keep them in memory, and the store-to-load chain halved the rate).
// The inputs come from `seed` at run time so nothing folds; the results feed g_sink.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) uint32_t issue_vpdpbusd_zmm(int seed) {
    __m512i a[kRegs];
    for (int k = 0; k < kRegs; ++k) a[k] = _mm512_set1_epi32(seed + k);
    const __m512i w = _mm512_set1_epi32(seed * 0x01020304), x = _mm512_set1_epi32(seed + 7);
    for (int64_t i = 0; i < kIters; ++i)
#pragma GCC unroll 16
        for (int k = 0; k < kRegs; ++k) a[k] = _mm512_dpbusd_epi32(a[k], w, x);
    __m512i r = a[0];
    for (int k = 1; k < kRegs; ++k) r = _mm512_xor_si512(r, a[k]);
    alignas(64) uint32_t v[16];
    _mm512_store_si512(v, r);
    return v[0];
}

__attribute__((target("avx2"))) uint32_t issue_vpmaddubsw_ymm(int seed) {
    __m256i a[kRegsAvx2];
    for (int k = 0; k < kRegsAvx2; ++k) a[k] = _mm256_set1_epi32(seed + k);
    const __m256i w = _mm256_set1_epi32(seed * 0x01020304);
    for (int64_t i = 0; i < kIters; ++i)
#pragma GCC unroll 12
        for (int k = 0; k < kRegsAvx2; ++k) a[k] = _mm256_maddubs_epi16(a[k], w);
    __m256i r = a[0];
    for (int k = 1; k < kRegsAvx2; ++k) r = _mm256_xor_si256(r, a[k]);
    alignas(32) uint32_t v[8];
    _mm256_store_si256((__m256i*)v, r);
    return v[0];
}

__attribute__((target("avx512f"))) uint32_t issue_vfmadd_zmm(int seed) {
    __m512 a[kRegs];
    for (int k = 0; k < kRegs; ++k) a[k] = _mm512_set1_ps((float)(seed + k));
    const __m512 w = _mm512_set1_ps(0.999f + 1e-9f * (float)seed), x = _mm512_set1_ps(1e-3f);
    for (int64_t i = 0; i < kIters; ++i)
#pragma GCC unroll 16
        for (int k = 0; k < kRegs; ++k) a[k] = _mm512_fmadd_ps(a[k], w, x);
    __m512 r = a[0];
    for (int k = 1; k < kRegs; ++k) r = _mm512_add_ps(r, a[k]);
    alignas(64) float v[16];
    _mm512_store_ps(v, r);
    return (uint32_t)v[0];
}

__attribute__((target("avx2,fma"))) uint32_t issue_vfmadd_ymm(int seed) {
    __m256 a[kRegsAvx2];
    for (int k = 0; k < kRegsAvx2; ++k) a[k] = _mm256_set1_ps((float)(seed + k));
    const __m256 w = _mm256_set1_ps(0.999f + 1e-9f * (float)seed), x = _mm256_set1_ps(1e-3f);
    for (int64_t i = 0; i < kIters; ++i)
#pragma GCC unroll 12
        for (int k = 0; k < kRegsAvx2; ++k) a[k] = _mm256_fmadd_ps(a[k], w, x);
    __m256 r = a[0];
    for (int k = 1; k < kRegsAvx2; ++k) r = _mm256_add_ps(r, a[k]);
    alignas(32) float v[8];
    _mm256_store_ps(v, r);
    return (uint32_t)v[0];
}

__attribute__((target("avx512f,avx512bf16"))) uint32_t issue_vdpbf16ps_zmm(int seed) {
    __m512 a[kRegs];
    for (int k = 0; k < kRegs; ++k) a[k] = _mm512_set1_ps((float)(seed + k));
    const __m512bh w = (__m512bh)_mm512_set1_epi16((short)(0x3f80 + seed));
    for (int64_t i = 0; i < kIters; ++i)
#pragma GCC unroll 16
        for (int k = 0; k < kRegs; ++k) a[k] = _mm512_dpbf16_ps(a[k], w, w);
    __m512 r = a[0];
    for (int k = 1; k < kRegs; ++k) r = _mm512_add_ps(r, a[k]);
    alignas(64) float v[16];
    _mm512_store_ps(v, r);
    return (uint32_t)v[0];
}
#endif

std::atomic<uint32_t> g_sink{0};

// Instructions per second of `issue` (kIters x regs instructions) run by `threads` threads at
// once: the best of `passes`.
double instructions_per_second(uint32_t (*issue)(int), int regs, int threads, int passes) {
    double best = 0;
    for (int p = 0; p < passes; ++p) {
        std::atomic<int> ready{0};
        std::atomic<bool> go{false};
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t)
            pool.emplace_back([&] {
                ready.fetch_add(1);
                while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
                g_sink.fetch_xor(issue(1 + (int)(g_sink.load() & 1)));
            });
        while (ready.load() < threads) std::this_thread::yield();
        const auto t0 = std::chrono::steady_clock::now();
        go.store(true, std::memory_order_release);
        for (std::thread& th : pool) th.join();
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s > 0) best = std::max(best, (double)threads * (double)kIters * regs / s);
    }
    return best;
}

}  // namespace

ComputePeaks measure_compute_peaks(const std::string& isa, int threads, bool bf16_dot, int passes) {
    ComputePeaks p;
    threads = std::max(1, threads);
    passes = std::max(1, passes);
#if defined(__x86_64__)
    const CpuFeatures& f = cpu_features();
    if ((isa == "avx512" || isa == "amx") && f.has_avx512_path()) {
        p.isa = "avx512";
        p.int8_instr = "vpdpbusd zmm";
        p.int8_macs = 64 * instructions_per_second(issue_vpdpbusd_zmm, kRegs, threads, passes);
        p.f32_instr = "vfmadd231ps zmm";
        p.f32_macs = 16 * instructions_per_second(issue_vfmadd_zmm, kRegs, threads, passes);
        if (bf16_dot && f.avx512bf16)
            p.bf16_macs = 32 * instructions_per_second(issue_vdpbf16ps_zmm, kRegs, threads, passes);
    } else if (isa == "avx2" && f.has_avx2_path()) {
        p.isa = "avx2";
        p.int8_instr = "vpmaddubsw ymm";
        p.int8_macs =
            32 * instructions_per_second(issue_vpmaddubsw_ymm, kRegsAvx2, threads, passes);
        p.f32_instr = "vfmadd231ps ymm";
        p.f32_macs = 8 * instructions_per_second(issue_vfmadd_ymm, kRegsAvx2, threads, passes);
    }
#else
    (void)isa;
    (void)bf16_dot;
#endif
    p.threads = threads;
    return p;
}

}  // namespace lokal::cli
