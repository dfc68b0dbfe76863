#include "ops/kernels.h"

#include "quant/quant.h"

namespace lokal {
namespace {

template <TensorType T>
float vec_dot_ref_for(int64_t n, const void* w, const void* a) {
    return vec_dot_ref(T, n, w, a);
}

KernelTable make_reference_table() {
    KernelTable t;
    t.isa = "scalar";
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

}  // namespace

const KernelTable& reference_kernels() {
    static const KernelTable table = make_reference_table();
    return table;
}

const KernelTable& kernels() { return reference_kernels(); }

}  // namespace lokal
