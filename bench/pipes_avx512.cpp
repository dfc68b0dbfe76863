// Which AVX-512 instructions compete with vpdpbusd for the same execution pipes on this core.
//
// Each test runs 16 independent vpdpbusd (zmm16-31 untouched, no dependency chain longer than
// one iteration) plus a handful of another instruction, in one asm block so the compiler
// cannot spill or reorder, and prints cycles per iteration at the clock measured by a chain of
// dependent adds. 16 vpdpbusd alone take 8 cycles on a core that issues two per cycle; an
// instruction that adds cycles shares their pipes (or, for loads, saturates the load ports).
// The GEMM kernels' inner loops are balanced with these figures (gemm_avx512.cpp). The last
// rows do the same around 16 vfmadd231ps (decode attention's pipes: f16 conversions,
// broadcasts) and time 16 vdpbf16ps (a bf16 KV cache's key scoring) where the CPU has it.
//
//     build/bin/bench_pipes
#include <chrono>
#include <cstdio>

namespace {

#define DP(r) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define DP16 \
    DP(0)    \
    DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7) DP(8) DP(9) DP(10) DP(11) DP(12) DP(13) DP(14) DP(15)
#define X4(op) op(16) op(17) op(18) op(19)
#define X8(op) X4(op) op(20) op(21) op(22) op(23)
#define FMA(r) "vfmadd231ps %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define MUL(r) "vmulps %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define MULLO(r) "vpmulld %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define ADD(r) "vpaddd %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define AND(r) "vpandd %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define SRL(r) "vpsrlw $4, %%zmm30, %%zmm" #r "\n\t"
#define CVT(r) "vcvtdq2ps %%zmm30, %%zmm" #r "\n\t"
#define INS(r) "vinserti64x4 $1, %%ymm30, %%zmm31, %%zmm" #r "\n\t"
#define SHUF(r) "vpshufd $0x55, %%zmm30, %%zmm" #r "\n\t"
#define BCAST(r) "vpbroadcastd (%0), %%zmm" #r "\n\t"
#define BC128(r) "vbroadcasti32x4 (%0), %%zmm" #r "\n\t"
#define GF(r) "vgf2p8affineqb $0, %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define SRD(r) "vpsrld $2, %%zmm31, %%zmm" #r "\n\t"
#define SLD(r) "vpslld $1, %%zmm31, %%zmm" #r "\n\t"
#define TERN(r) "vpternlogd $0xF8, %%zmm30, %%zmm31, %%zmm" #r "\n\t"
// Mask registers k1-k7 in turn (k0 cannot be a write mask).
#define TSTM(k) "vptestmb %%zmm30, %%zmm31, %%k" #k "\n\t"
#define K8(op) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(1)
// The float pipes that decode attention runs on (attention_dims_major_impl.h): 16 independent
// FMAs, plus f16 conversions (from registers or memory) and broadcasts, against 16 BF16
// pair dot products.
#define FMA8A FMA(0) FMA(1) FMA(2) FMA(3) FMA(4) FMA(5) FMA(6) FMA(7)
#define FMA8B FMA(8) FMA(9) FMA(10) FMA(11) FMA(12) FMA(13) FMA(14) FMA(15)
#define FMA16 FMA8A FMA8B
#define CVTPH(r) "vcvtph2ps %%ymm30, %%zmm" #r "\n\t"
#define CVTPHM(r) "vcvtph2ps (%0), %%zmm" #r "\n\t"
#define BCSS(r) "vbroadcastss (%0), %%zmm" #r "\n\t"
#define BF(r) "vdpbf16ps %%zmm30, %%zmm31, %%zmm" #r "\n\t"
#define BF8A BF(0) BF(1) BF(2) BF(3) BF(4) BF(5) BF(6) BF(7)
#define BF8B BF(8) BF(9) BF(10) BF(11) BF(12) BF(13) BF(14) BF(15)
#define BF16X BF8A BF8B
#define ORK(r) "vpord %%zmm30, %%zmm31, %%zmm" #r "%{%%k1%}\n\t"

template <int Test>
[[gnu::noinline, gnu::target("avx512f,avx512bw,avx512bf16")]] double cycles_per_iter(long n,
                                                                                     const int* p,
                                                                                     double ghz) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) {
        if constexpr (Test == 0) asm volatile(DP16 ::"r"(p) : "memory");
        if constexpr (Test == 1) asm volatile(DP16 X4(FMA)::"r"(p) : "memory");
        if constexpr (Test == 2) asm volatile(DP16 X4(MUL)::"r"(p) : "memory");
        if constexpr (Test == 3) asm volatile(DP16 X4(MULLO)::"r"(p) : "memory");
        if constexpr (Test == 4) asm volatile(DP16 X4(ADD)::"r"(p) : "memory");
        if constexpr (Test == 5) asm volatile(DP16 X4(AND)::"r"(p) : "memory");
        if constexpr (Test == 6) asm volatile(DP16 X4(SRL)::"r"(p) : "memory");
        if constexpr (Test == 7) asm volatile(DP16 X4(CVT)::"r"(p) : "memory");
        if constexpr (Test == 8) asm volatile(DP16 X4(INS)::"r"(p) : "memory");
        if constexpr (Test == 9) asm volatile(DP16 X8(SHUF)::"r"(p) : "memory");
        if constexpr (Test == 10)
            asm volatile(DP16 X8(BCAST) X8(BCAST) X8(BCAST)::"r"(p) : "memory");
        if constexpr (Test == 11) asm volatile(DP16 X8(BC128) X8(BC128)::"r"(p) : "memory");
        // GFNI, mask tests, and the Q3_K decode's unpacking mixes (docs/PERFORMANCE.md,
        // "Tried 2026-12-07").
        if constexpr (Test == 12) asm volatile(DP16 X8(GF)::"r"(p) : "memory");
        if constexpr (Test == 13)
            asm volatile(DP16 K8(TSTM)::"r"(p)
                         : "memory", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
        if constexpr (Test == 14)
            asm volatile(DP16 X8(SRD) X8(AND) X8(SLD) X8(TERN)::"r"(p) : "memory");
        if constexpr (Test == 15)
            asm volatile(DP16 X8(AND) K8(TSTM) X8(ORK)::"r"(p)
                         : "memory", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
        if constexpr (Test == 16) asm volatile(FMA16 ::"r"(p) : "memory");
        if constexpr (Test == 17) asm volatile(FMA16 X4(CVTPH)::"r"(p) : "memory");
        if constexpr (Test == 18) asm volatile(FMA16 X4(CVTPHM)::"r"(p) : "memory");
        if constexpr (Test == 19) asm volatile(FMA16 X8(BCSS)::"r"(p) : "memory");
        if constexpr (Test == 20) asm volatile(BF16X ::"r"(p) : "memory");
        if constexpr (Test == 21) asm volatile(BF16X X4(CVTPHM) X8(BCSS)::"r"(p) : "memory");
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return s / (double)n * ghz * 1e9;
}

double clock_ghz() {
    const long n = 200000000;
    long x = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i)
        asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return 4.0 * (double)n / s / 1e9;
}

}  // namespace

int main() {
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vnni")) {
        std::fprintf(stderr, "bench_pipes: this CPU has no AVX-512 VNNI; nothing to measure\n");
        return 1;
    }
    alignas(64) static int buf[16] = {1};
    const double ghz = clock_ghz();
    const long n = 20000000;
    std::printf("clock ~%.2f GHz (dependent adds); cycles per iteration:\n", ghz);
    struct Row {
        const char* what;
        double (*fn)(long, const int*, double);
    };
    const Row rows[] = {{"16 vpdpbusd", cycles_per_iter<0>},
                        {"+ 4 vfmadd231ps", cycles_per_iter<1>},
                        {"+ 4 vmulps", cycles_per_iter<2>},
                        {"+ 4 vpmulld", cycles_per_iter<3>},
                        {"+ 4 vpaddd", cycles_per_iter<4>},
                        {"+ 4 vpandd", cycles_per_iter<5>},
                        {"+ 4 vpsrlw", cycles_per_iter<6>},
                        {"+ 4 vcvtdq2ps", cycles_per_iter<7>},
                        {"+ 4 vinserti64x4", cycles_per_iter<8>},
                        {"+ 8 vpshufd", cycles_per_iter<9>},
                        {"+ 24 vpbroadcastd (mem)", cycles_per_iter<10>},
                        {"+ 16 vbroadcasti32x4 (mem)", cycles_per_iter<11>},
                        {"+ 8 vgf2p8affineqb", cycles_per_iter<12>},
                        {"+ 8 vptestmb", cycles_per_iter<13>},
                        {"+ 8 vpsrld 8 vpandd 8 vpslld 8 vpternlogd", cycles_per_iter<14>},
                        {"+ 8 vpandd 8 vptestmb 8 vpord{k}", cycles_per_iter<15>},
                        {"16 vfmadd231ps", cycles_per_iter<16>},
                        {"+ 4 vcvtph2ps (reg)", cycles_per_iter<17>},
                        {"+ 4 vcvtph2ps (mem)", cycles_per_iter<18>},
                        {"+ 8 vbroadcastss (mem)", cycles_per_iter<19>},
                        {"16 vdpbf16ps", cycles_per_iter<20>},
                        {"+ 4 vcvtph2ps (mem) + 8 vbroadcastss (mem)", cycles_per_iter<21>}};
    const bool gfni = __builtin_cpu_supports("gfni");
    const bool bf16 = __builtin_cpu_supports("avx512bf16");
    for (const Row& r : rows) {
        if (r.fn == cycles_per_iter<12> && !gfni) {
            std::printf("  %-42s   n/a (no GFNI)\n", r.what);
            continue;
        }
        if ((r.fn == cycles_per_iter<20> || r.fn == cycles_per_iter<21>)&&!bf16) {
            std::printf("  %-42s   n/a (no AVX-512 BF16)\n", r.what);
            continue;
        }
        std::printf("  %-42s %5.2f\n", r.what, r.fn(n, buf, ghz));
    }
    return 0;
}
