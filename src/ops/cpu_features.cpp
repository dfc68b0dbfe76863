#include "ops/cpu_features.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cstdint>

namespace lokal {
namespace {

#if defined(__x86_64__)

struct Regs {
    unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned sub) {
    Regs r;
    if (!__get_cpuid_count(leaf, sub, &r.a, &r.b, &r.c, &r.d)) r = Regs{};
    return r;
}

// XCR0 via xgetbv, written as raw bytes so the generic x86-64 build needs no -mxsave.
uint64_t xgetbv0() {
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

// Linux hands out the AMX tile data state only on request; until then the first tile
// instruction faults. Returns whether the permission is (now) granted.
bool request_amx_permission() {
#if defined(__linux__)
    constexpr long ARCH_GET_XCOMP_PERM = 0x1022;
    constexpr long ARCH_REQ_XCOMP_PERM = 0x1023;
    constexpr long XFEATURE_XTILEDATA = 18;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return false;
    unsigned long bitmask = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bitmask) != 0) return false;
    return (bitmask & (1ul << XFEATURE_XTILEDATA)) != 0;
#else
    return false;
#endif
}

CpuFeatures detect() {
    CpuFeatures f;
    const Regs l0 = cpuid(0, 0);
    if (l0.a < 7) return f;
    const Regs l1 = cpuid(1, 0);
    const bool osxsave = (l1.c >> 27) & 1;
    const bool avx = (l1.c >> 28) & 1;
    if (!osxsave || !avx) return f;
    const uint64_t xcr0 = xgetbv0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;                     // SSE + AVX state
    const bool os_zmm = (xcr0 & 0xE6) == 0xE6;                   // + opmask, ZMM_Hi256, Hi16_ZMM
    const bool os_tile = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG + XTILEDATA
    if (!os_ymm) return f;

    const Regs l7 = cpuid(7, 0);
    const Regs l7s1 = cpuid(7, 1);
    f.fma = (l1.c >> 12) & 1;
    f.f16c = (l1.c >> 29) & 1;
    f.avx2 = (l7.b >> 5) & 1;
    f.bmi2 = (l7.b >> 8) & 1;
    f.avx_vnni = (l7s1.a >> 4) & 1;
    if (os_zmm) {
        f.avx512f = (l7.b >> 16) & 1;
        f.avx512dq = (l7.b >> 17) & 1;
        f.avx512bw = (l7.b >> 30) & 1;
        f.avx512vl = (l7.b >> 31) & 1;
        f.avx512vnni = (l7.c >> 11) & 1;
        f.avx512bf16 = (l7s1.a >> 5) & 1;
    }
    const bool amx_tile = (l7.d >> 24) & 1;
    if (os_tile && amx_tile && request_amx_permission()) {
        f.amx_tile = true;
        f.amx_int8 = (l7.d >> 25) & 1;
        f.amx_bf16 = (l7.d >> 22) & 1;
    }
    return f;
}

#else

CpuFeatures detect() {
    return CpuFeatures{};
}

#endif

}  // namespace

std::string CpuFeatures::describe() const {
    std::string s;
    auto add = [&](bool on, const char* name) {
        if (!on) return;
        if (!s.empty()) s += ' ';
        s += name;
    };
    add(avx2, "avx2");
    add(fma, "fma");
    add(f16c, "f16c");
    add(bmi2, "bmi2");
    add(avx512f, "avx512f");
    add(avx512bw, "avx512bw");
    add(avx512dq, "avx512dq");
    add(avx512vl, "avx512vl");
    add(avx512vnni, "avx512vnni");
    add(avx512bf16, "avx512bf16");
    add(avx_vnni, "avx_vnni");
    add(amx_tile, "amx_tile");
    add(amx_int8, "amx_int8");
    add(amx_bf16, "amx_bf16");
    return s.empty() ? "none" : s;
}

const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detect();
    return f;
}

uint64_t physical_memory_bytes() {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

}  // namespace lokal
