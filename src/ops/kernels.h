// Kernel dispatch: the dot-product kernel for each weight type, chosen once at start from
// what the processor supports. The scalar reference in src/quant is always available and
// is what every faster path is tested against.
#pragma once

#include <cstdint>

#include "quant/types.h"

namespace lokal {

// dot(w_row, act_row) for n elements; act_row is in type_traits(w).dot_type format.
using VecDotFn = float (*)(int64_t n, const void* w_row, const void* act_row);

struct KernelTable {
    const char* isa = "scalar";  // name of the selected path, for `lokal info` / `bench`
    VecDotFn vec_dot[(int)TensorType::COUNT] = {};
};

// The table in use. Selected on first call; LOKAL_ISA=scalar forces the reference path.
const KernelTable& kernels();

// The scalar reference table (tests compare against it).
const KernelTable& reference_kernels();

}  // namespace lokal
