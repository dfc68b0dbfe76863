#include "ops/kernels.h"

#include <cstdlib>
#include <cstring>

#include "ops/cpu_features.h"
#include "quant/quant.h"

namespace lokal {
namespace {

template <TensorType T>
float vec_dot_ref_for(int64_t n, const void* w, const void* a) {
    return vec_dot_ref(T, n, w, a);
}

KernelTable make_reference_table() {
    KernelTable t = scalar_kernels();
    t.isa = "reference";
#define LOKAL_REF(T) t.vec_dot[(int)TensorType::T] = &vec_dot_ref_for<TensorType::T>;
    LOKAL_REF(F32)
    LOKAL_REF(F16)
    LOKAL_REF(BF16)
    LOKAL_REF(Q4_0)
    LOKAL_REF(Q4_1)
    LOKAL_REF(Q5_0)
    LOKAL_REF(Q5_1)
    LOKAL_REF(Q8_0)
    LOKAL_REF(Q2_K)
    LOKAL_REF(Q3_K)
    LOKAL_REF(Q4_K)
    LOKAL_REF(Q5_K)
    LOKAL_REF(Q6_K)
    LOKAL_REF(IQ4_NL)
    LOKAL_REF(IQ4_XS)
#undef LOKAL_REF
    return t;
}

int isa_rank(const char* isa) {
    if (std::strcmp(isa, "amx") == 0) return 3;
    if (std::strcmp(isa, "avx512") == 0) return 2;
    if (std::strcmp(isa, "avx2") == 0) return 1;
    return 0;
}

const KernelTable& select_table() {
    const CpuFeatures& f = cpu_features();
    int best = f.has_avx512_path() ? 2 : f.has_avx2_path() ? 1 : 0;
    if (const char* want = std::getenv("LOKAL_ISA"); want && *want) {
        const int r = isa_rank(want);
        // AMX only on request: with per-block exact sums (K = 32 per tile op) and the float
        // epilogue per block, it measured no faster than VNNI (see docs in gemm_amx.cpp).
        if (r == 3 && best == 2 && f.amx_int8)
            best = 3;
        else if (r < best)
            best = r;
    }
    switch (best) {
        case 3:
            return amx_kernels();
        case 2:
            return avx512_kernels();
        case 1:
            return avx2_kernels();
        default:
            return scalar_kernels();
    }
}

}  // namespace

const KernelTable& reference_kernels() {
    static const KernelTable table = make_reference_table();
    return table;
}

const KernelTable& kernels() {
    static const KernelTable& table = select_table();
    return table;
}

const KernelTable* kernels_for(const char* isa) {
    const CpuFeatures& f = cpu_features();
    switch (isa_rank(isa)) {
        case 3:
            return f.has_avx512_path() && f.amx_int8 ? &amx_kernels() : nullptr;
        case 2:
            return f.has_avx512_path() ? &avx512_kernels() : nullptr;
        case 1:
            return f.has_avx2_path() ? &avx2_kernels() : nullptr;
        default:
            return std::strcmp(isa, "scalar") == 0 ? &scalar_kernels() : nullptr;
    }
}

}  // namespace lokal
