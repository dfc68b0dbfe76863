// Internal to src/ops: the canonical arithmetic every kernel path implements, and the data the
// matmul hands to the per-ISA GEMM kernels.
//
// Canonical arithmetic (what makes results batch-, thread- and ISA-invariant)
// ---------------------------------------------------------------------------
// Quantized weights: for one output (row r, token t), for each block b in order
//     isum_b = exact integer dot product of the block (sub-block scales applied in integer)
//     acc    = fma((float)isum_b, d_w * d_a, acc)            d_w, d_a as float, product rounded
// plus, for types with a min/offset term, a second fma per block:
//     Q4_1/Q5_1:       acc = fma(m_w, s_a, acc)               (s_a: the Q8_1 block's s)
//     Q2_K/Q4_K/Q5_K:  acc = fma(-(float)msum_b, dmin_w * d_a, acc)
// acc starts at +0 and the result is acc. Integer sums are exact, so any SIMD or tile unit
// (dpbusd, maddubs, AMX) may compute them in any order; only the float chain is fixed, and it
// is the same whether a kernel vectorizes over rows, tokens or both.
//
// Float weights (F32/F16/BF16, activations converted exactly to f32): 16 lanes, lane l
// accumulates elements k = l (mod 16) in order with fma; then s8[i] = l[i] + l[i+8],
// s4[i] = s8[i] + s8[i+4], s2[i] = s4[i] + s4[i+2], result = s2[0] + s2[1].
//
// The scalar table (kernels_scalar.cpp) is the executable definition; the SIMD tables must
// reproduce it bit for bit, which the tests check.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace lokal::gemm {

// Per-token activation side data, 4-byte words (float or int32) derived from the activation
// row in dot format, so the kernels need no horizontal sums and no fp16 conversions per block:
//   32-element blocks (Q4_0 Q5_0 Q8_0 IQ4_NL): f32 dy[nb], i32 corr[nb] = -offset * sum(y_b)
//   Q4_1 / Q5_1:                               f32 dy[nb], f32 sy[nb] (the Q8_1 s)
//   K-quants / IQ4_XS:                         f32 dy[nsb], i32 corr[nsb][NC], ysum[nsb][NM]
// where the kernels store weights as unsigned bytes u = q + offset, corr_j = -offset * (sum of
// the activations of sub-block j) restores the signed sum, and ysum (pairs of int16 sums of
// the activations under each weight min, low half first) feeds the min term.
struct SideLayout {
    int nc = 0;  // corrections per block
    int nm = 0;  // words of int16-pair activation sums (for mins) per block
    int words_per_block = 0;
};

bool is_gemm_quant(TensorType t);
SideLayout side_layout(TensorType t);
size_t side_words(TensorType t, int64_t n);
// act_row is in type_traits(t).dot_type format.
void prepare_side(TensorType t, const void* act_row, int64_t n, uint32_t* side);

struct GemmArgs {
    TensorType type = TensorType::F32;
    int64_t n = 0;  // elements per row (K)
    const uint8_t* w = nullptr;
    size_t w_stride = 0;  // bytes between weight rows
    int64_t n_rows = 0;
    const uint8_t* act = nullptr;  // n_tokens rows in dot format
    size_t act_stride = 0;
    const uint32_t* side = nullptr;  // n_tokens side records (null for float types)
    size_t side_stride = 0;          // words
    int64_t n_tokens = 0;
    float* y = nullptr;  // y[t * ldy + r]
    int64_t ldy = 0;
};

// Computes y for rows [r0, r1) and every token. r0 is a multiple of the table's row_group.
// scratch: per-thread memory of at least scratch_bytes(n_tokens), 64-byte aligned.
using GemmFn = void (*)(const GemmArgs& a, int64_t r0, int64_t r1, void* scratch);

// Upper bound on any path's scratch needs.
size_t scratch_bytes(int64_t n_tokens);

}  // namespace lokal::gemm
