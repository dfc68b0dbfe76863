// Matrix multiplication of a (possibly quantized) weight matrix with a batch of f32
// activation rows: the operation that dominates every forward pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "ops/thread_pool.h"
#include "quant/types.h"

namespace lokal {

// A 2-D weight matrix lying in the model mapping: n_rows rows of n_cols elements.
struct MatView {
    TensorType type = TensorType::F32;
    int64_t n_cols = 0;  // input features (row length, a multiple of the block size)
    int64_t n_rows = 0;  // output features
    size_t row_bytes = 0;
    const uint8_t* data = nullptr;
    bool packed = false;  // row-interleaved by matmul_pack: only matmul may read it

    const uint8_t* row(int64_t r) const { return data + (size_t)r * row_bytes; }
    bool empty() const { return data == nullptr; }
};

// Reusable buffers so a forward pass allocates nothing per op (after the first).
struct MatmulScratch {
    std::vector<uint8_t> act;    // activations converted to the weight's dot format
    std::vector<uint32_t> side;  // per-token block sums/scales the quantized kernels read
    // What the current call converts: one entry per activation format the weights need
    // (rows of row_bytes at offset in act) and per quantized weight type (side records of
    // words at offset in side), for n_tokens rows of n_cols.
    struct Conversion {
        TensorType format;
        size_t row_bytes = 0, offset = 0;
    };
    struct SideRecords {
        TensorType weight_type;
        size_t words = 0, offset = 0;
    };
    std::vector<Conversion> convs;
    std::vector<SideRecords> sides;
    int64_t n_cols = 0, n_tokens = 0;
    struct Free {
        void operator()(void* p) const;
    };
    std::vector<std::unique_ptr<uint8_t, Free>> per_thread;  // GEMM panels, 64-byte aligned
    size_t per_thread_bytes = 0;
};

// y[t * ldy + o] = dot(W[o, :], x[t * ldx + :]) for t < n_tokens, o < W.n_rows.
// Activations are converted to the weight type's dot format once per row and reused for
// every output row. Every output follows the canonical arithmetic of ops/gemm_common.h,
// whatever n_tokens, the thread count or the kernel path is, so results are batch invariant.
void matmul(ThreadPool& pool, const MatView& w, const float* x, int64_t ldx, int64_t n_tokens,
            float* y, int64_t ldy, MatmulScratch& scratch);

// Several weights applied to the same activations (Q/K/V, gate/up): the activations are
// converted once per dot format and all products run in one parallel region, so small
// matrices (K/V) do not leave threads idle. Same results as separate matmul calls.
struct MatmulOut {
    MatView w;
    float* y = nullptr;
    int64_t ldy = 0;
    // When set, residual[t * ldy + r] += y[t * ldy + r] for every output, by the thread that
    // computed the row group, right after it (in cache): a transformer's residual add without
    // a pass of its own over the whole batch. The same float additions, so the same bits.
    float* residual = nullptr;
};
void matmul_multi(ThreadPool& pool, const MatmulOut* outs, int n_outs, const float* x, int64_t ldx,
                  int64_t n_tokens, MatmulScratch& scratch);

// The same with the activations converted by the op that produces them (RMSNorm before
// Q/K/V and gate/up, SwiGLU before down): that op calls matmul_convert_row for each token
// row right after writing it, while the row is in L1, inside its own parallel loop, so a
// batch needs no conversion pass and no parallel region of its own (one per matmul fewer).
//   matmul_convert_begin(outs, n_outs, n_tokens, scratch);       sizes the buffers
//   parallel over t: produce x row t; matmul_convert_row(scratch, t, x row t);
//   matmul_multi_converted(pool, outs, n_outs, x, ldx, n_tokens, scratch);
// The conversion is the one matmul_multi does, so the results are the same bits. x is still
// read by weights whose dot format is f32. Rows of distinct t may be converted concurrently.
void matmul_convert_begin(const MatmulOut* outs, int n_outs, int64_t n_tokens,
                          MatmulScratch& scratch);
void matmul_convert_row(MatmulScratch& scratch, int64_t t, const float* x_row);
void matmul_multi_converted(ThreadPool& pool, const MatmulOut* outs, int n_outs, const float* x,
                            int64_t ldx, int64_t n_tokens, MatmulScratch& scratch);

// Wall time per matmul shape, for `lokal bench --matmul-profile`: where a forward pass's time
// goes and at what rate each shape reads its weights. Off by default (one relaxed atomic load
// per call); while on, each matmul / matmul_multi call is timed as a whole (conversion,
// threads and kernels; for matmul_multi_converted, whose producer converted, without the
// conversion) and counted under its shape: the rows of all its outputs together,
// the columns and the token count.
struct MatmulShapeStat {
    int64_t rows = 0, cols = 0, tokens = 0;
    int64_t calls = 0;
    double seconds = 0;
    double weight_bytes = 0;  // bytes of weights the calls read, all calls together
};
void matmul_profile_enable(bool on);
// The statistics gathered since the last take, by shape (ascending rows, cols, tokens);
// clears them.
std::vector<MatmulShapeStat> matmul_profile_take();

// Weight repacking at load: decoding reads every weight once, and the kernels run fastest
// when the 8 rows they compute together lie interleaved (gemm_common.h: block b of 8 rows in
// one contiguous run), so they load instead of transposing and gathering. Same bytes, other
// order, done in place (the caller provides writable memory: the model loader copies the weights
// into an arena); the results are bit-identical to the row-major weights. True when the kernels in
// use read packed weights of type t.
bool matmul_can_pack(TensorType t);
// Packs a row-major [n_rows][n_cols] matrix in place; a MatView over it needs packed = true.
void matmul_pack(TensorType t, int64_t n_cols, int64_t n_rows, uint8_t* data);
// Row `row` of w, packed or not, in row-major order into out (w.row_bytes bytes): for reading
// single rows of a matrix that is also a matmul weight (a tied embedding).
void matmul_read_row(const MatView& w, int64_t row, uint8_t* out);

}  // namespace lokal
