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
// F32 and F16 weights (activations f32, converted exactly): 16 lanes, lane l accumulates
// elements k = l (mod 16) in order with fma; then s8[i] = l[i] + l[i+8],
// s4[i] = s8[i] + s8[i+4], s2[i] = s4[i] + s4[i+2], result = s2[0] + s2[1].
//
// BF16 weights (activations rounded to BF16): the arithmetic of AVX-512's BF16 pair dot
// product (vdpbf16ps), so that machines with it run it natively at twice the fma rate. 16 lanes;
// for each chunk c of 32 elements, lane l takes elements o = 32c + 2l + 1, then e = 32c + 2l:
//     acc_l = ftz(fma(w_o, x_o, acc_l)),  acc_l = ftz(fma(w_e, x_e, acc_l))
// with BF16 denormal inputs read as zero and denormal results flushed to zero (ftz); elements
// past n are zero, and in the last chunk a lane whose even element is past n is left as it
// is. Then the same reduction tree, each sum flushed to zero when denormal too. The SIMD paths
// run a whole GEMM call under MXCSR's DAZ and FTZ (set once per call), those without the
// instruction with two fmas per pair.
//
// The scalar table (kernels_scalar.cpp) is the executable definition; the SIMD tables must
// reproduce it bit for bit, which the tests check.
#pragma once

#include <array>
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

// Row-interleaved weights ("packed", made once at load by matmul_pack): in every full group of
// kPackRows consecutive rows, block b of the 8 rows lies in one run of 8 * block_bytes bytes,
// field by field. A field whose size is a multiple of 4 is stored dword-transposed (dword k of
// row i at field_pos + 32 k + 4 i); a 2-byte field (an fp16 scale) as 8 consecutive halves.
// The kernels then load 8 rows' worth of a block with plain vector loads instead of
// transposes and gathers.
//
// With interleave I > 1 (a table whose row tile is I groups), every full unit of I * 8 rows
// puts the I groups' runs of block b side by side: run (b, group j) at (b * I + j) * run
// bytes. A kernel reading the unit's blocks in order then reads one forward stream; with the
// groups one after the other (I separate streams) the hardware prefetcher restarted at each
// unit and decode from memory lost a fifth of its speed (docs/PERFORMANCE.md, 2026-12-05).
// Full 8-row groups after the last full unit are packed with I = 1; rows of a last partial
// group stay row-major. The bytes are the same, only their order differs, so packing is done
// in place.
constexpr int kPackRows = 8;

struct PackField {
    int off, size;  // byte range of one block; size 2 or a multiple of 4
};
struct PackLayout {
    int block_bytes = 0;
    int n_fields = 0;
    PackField fields[4] = {};

    // Offset of block byte x (the start of a dword, or of a 2-byte field) within the packed
    // run of 8 rows, -1 if x starts no packable unit.
    constexpr int pos(int x) const {
        int p = 0;
        for (int i = 0; i < n_fields; ++i) {
            const PackField& f = fields[i];
            if (x >= f.off && x < f.off + f.size)
                return f.size == 2 ? (x == f.off ? p : -1)
                                   : ((x - f.off) % 4 ? -1 : p + (x - f.off) / 4 * 32);
            p += kPackRows * f.size;
        }
        return -1;
    }
};

// The layout of each packable type (block_bytes 0 for the others).
constexpr PackLayout pack_layout(TensorType t) {
    switch (t) {
        case TensorType::Q4_0:
        case TensorType::IQ4_NL:
            return {18, 2, {{0, 2}, {2, 16}}};
        case TensorType::Q4_1:
            return {20, 2, {{0, 4}, {4, 16}}};
        case TensorType::Q5_0:
            return {22, 3, {{0, 2}, {2, 4}, {6, 16}}};
        case TensorType::Q5_1:
            return {24, 3, {{0, 4}, {4, 4}, {8, 16}}};
        case TensorType::Q8_0:
            return {34, 2, {{0, 2}, {2, 32}}};
        case TensorType::Q2_K:
            return {84, 3, {{0, 16}, {16, 64}, {80, 4}}};
        case TensorType::Q3_K:
            return {110, 4, {{0, 32}, {32, 64}, {96, 12}, {108, 2}}};
        case TensorType::Q4_K:
            return {144, 3, {{0, 4}, {4, 12}, {16, 128}}};
        case TensorType::Q5_K:
            return {176, 4, {{0, 4}, {4, 12}, {16, 32}, {48, 128}}};
        case TensorType::Q6_K:
            return {210, 4, {{0, 128}, {128, 64}, {192, 16}, {208, 2}}};
        case TensorType::IQ4_XS:
            return {136, 3, {{0, 4}, {4, 4}, {8, 128}}};
        default:
            return {};
    }
}

// pack_layout(TT).pos(x) for every byte x of a block, as a table the SIMD readers index with
// constant x: the compiler folds a constant index into a constant, where it left the field
// search of pos() as a loop in the K-quant decode (a quarter of its time, measured with perf
// on BM_MatmulL2).
template <TensorType TT>
inline constexpr auto kPackPos = [] {
    constexpr PackLayout L = pack_layout(TT);
    std::array<int16_t, L.block_bytes> t{};
    for (int x = 0; x < L.block_bytes; ++x) t[(size_t)x] = (int16_t)L.pos(x);
    return t;
}();

// In place: rows [0, n_rows - n_rows % kPackRows) of a row-major matrix into the packed
// layout with the given interleave, and back. Costs one pass over the data and a temporary
// of one unit (interleave * 8 rows).
void pack_rows(TensorType t, int64_t n_cols, int64_t n_rows, uint8_t* data, int interleave);
void unpack_rows(TensorType t, int64_t n_cols, int64_t n_rows, uint8_t* data, int interleave);
// Row `row` of a matrix packed by pack_rows (same interleave), in row-major order, into out
// (row_size(t, n_cols) bytes): for reading single rows (an embedding lookup) of a packed
// matrix without unpacking it.
void unpack_row(TensorType t, int64_t n_cols, int64_t n_rows, const uint8_t* data, int interleave,
                int64_t row, uint8_t* out);

struct GemmArgs {
    TensorType type = TensorType::F32;
    int64_t n = 0;  // elements per row (K)
    const uint8_t* w = nullptr;
    size_t w_stride = 0;  // bytes between weight rows
    bool packed = false;  // full 8-row groups in the packed layout (only gemm_packed reads it)
    int64_t n_rows = 0;
    const uint8_t* act = nullptr;  // n_tokens rows in dot format
    size_t act_stride = 0;
    const uint32_t* side = nullptr;  // n_tokens side records (null for float types)
    size_t side_stride = 0;          // words
    int64_t n_tokens = 0;
    float* y = nullptr;  // y[t * ldy + r]
    int64_t ldy = 0;
    // Decode through a table whose pairs_decode[type] is set (kernels.h): also compute rows
    // [r0 + pair_rows, r1 + pair_rows), reading them in lockstep with [r0, r1), so that a
    // thread streams from two places at once. 0: rows [r0, r1) only.
    int64_t pair_rows = 0;
};

// Computes y for rows [r0, r1) and every token. r0 is a multiple of the table's row_group.
// scratch: per-thread memory of at least scratch_bytes(n_tokens), 64-byte aligned.
using GemmFn = void (*)(const GemmArgs& a, int64_t r0, int64_t r1, void* scratch);

// Upper bound on any path's scratch needs.
size_t scratch_bytes(int64_t n_tokens);

}  // namespace lokal::gemm
