// Kernel dispatch: the dot-product, GEMM and activation-conversion kernels for each weight
// type, chosen once at start from what the processor supports (cpu_features.h).
//
// Every table computes the same canonical arithmetic (gemm_common.h), so a given weight and
// activation give bit-identical outputs on the scalar, AVX2 and AVX-512 paths, at any batch
// size and thread count. The quant layer's vec_dot_ref (reference_kernels()) is the ground
// truth the canonical arithmetic is checked against within rounding.
#pragma once

#include <cstdint>

#include "ops/gemm_common.h"
#include "quant/types.h"

namespace lokal {

// dot(w_row, act_row) for n elements; act_row is in type_traits(w).dot_type format.
using VecDotFn = float (*)(int64_t n, const void* w_row, const void* act_row);

// One activation row of n floats into dot format (as quantize_row_dot does, bit for bit).
using QuantizeRowFn = void (*)(const float* x, void* dst, int64_t n);

struct KernelTable {
    const char* isa = "scalar";  // name of the selected path, for `lokal info` / `bench`
    int row_group = 1;           // the GEMM's row tile; matmul splits work in these units
    // The quantized gemm entries read GemmArgs::packed (row-interleaved weights,
    // gemm_common.h), so the loader may pack weights for this table.
    bool reads_packed = false;
    int pack_interleave = 1;  // 8-row groups per packed unit (gemm_common.h: pack_rows)
    bool bf16_dot = false;    // BF16 weights through the CPU's BF16 pair dot product (vdpbf16ps)
    // The gemm entry of these types reads GemmArgs::pair_rows for one-token calls on packed
    // weights (matmul pairs far-apart row groups for them: matmul.cpp).
    bool pairs_decode[(int)TensorType::COUNT] = {};
    VecDotFn vec_dot[(int)TensorType::COUNT] = {};
    gemm::GemmFn gemm[(int)TensorType::COUNT] = {};
    // Indexed by the activation (dot) type: F32, F16, BF16, Q8_0, Q8_1, Q8_K.
    QuantizeRowFn quantize[(int)TensorType::COUNT] = {};
};

// The table in use, selected on first call: the best of avx512 > avx2 > scalar the CPU runs.
// LOKAL_ISA=scalar|avx2|avx512 forces a lower path (a higher one than the CPU has is ignored);
// LOKAL_ISA=amx selects the AVX-512 table with AMX int8 tiles for batches of 16+ tokens where
// the CPU has them (same results; not faster so far, so not the default).
const KernelTable& kernels();

// A specific path, or null when this CPU cannot run it ("scalar", "avx2", "avx512", "amx").
const KernelTable* kernels_for(const char* isa);

// The quant layer's scalar reference dots (vec_dot only; tests compare against it).
const KernelTable& reference_kernels();

// Per-path tables, defined in kernels_scalar.cpp / kernels_avx2.cpp / kernels_avx512.cpp
// (amx too). Only call those the CPU runs.
const KernelTable& scalar_kernels();
const KernelTable& avx2_kernels();
const KernelTable& avx512_kernels();
const KernelTable& amx_kernels();
// The avx512 table as a CPU without AVX512_BF16 gets it (BF16 weights through fmas in the
// same canonical order); for tests on CPUs that have the instruction.
const KernelTable& avx512_kernels_without_bf16_dot();

}  // namespace lokal
