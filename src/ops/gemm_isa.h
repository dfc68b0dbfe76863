// Internal to src/ops: the per-ISA kernel entry points the tables in kernels_*.cpp assemble.
#pragma once

#include "ops/gemm_common.h"

namespace lokal::gemm {

// vec_dot of one row through a GEMM kernel (1 row x 1 token): the same arithmetic as the
// matmul by construction.
float vec_dot_via(GemmFn fn, TensorType t, int64_t n, const void* w_row, const void* act_row);

namespace avx512 {
// gemm_avx512.cpp; amx: 16-token tiles through the AMX tile unit (same results).
GemmFn quant_gemm(TensorType t, bool amx);
}  // namespace avx512
namespace avx2 {
GemmFn quant_gemm(TensorType t);  // gemm_avx2.cpp
}

}  // namespace lokal::gemm
