// Matrix multiplication of a (possibly quantized) weight matrix with a batch of f32
// activation rows: the operation that dominates every forward pass.
#pragma once

#include <cstddef>
#include <cstdint>
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

    const uint8_t* row(int64_t r) const { return data + (size_t)r * row_bytes; }
    bool empty() const { return data == nullptr; }
};

// Reusable buffers so a forward pass allocates nothing per op.
struct MatmulScratch {
    std::vector<uint8_t> act;  // activations converted to the weight's dot format
};

// y[t * ldy + o] = dot(W[o, :], x[t * ldx + :]) for t < n_tokens, o < W.n_rows.
// Activations are converted to the weight type's dot format once per row and reused for
// every output row. Each output is one dot product over the same data in the same order
// whatever n_tokens or the thread count is, so results are batch invariant.
void matmul(ThreadPool& pool, const MatView& w, const float* x, int64_t ldx, int64_t n_tokens,
            float* y, int64_t ldy, MatmulScratch& scratch);

}  // namespace lokal
