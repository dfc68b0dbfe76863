#include "ops/matmul.h"

#include <algorithm>

#include "ops/kernels.h"
#include "quant/quant.h"

namespace lokal {

void matmul(ThreadPool& pool, const MatView& w, const float* x, int64_t ldx, int64_t n_tokens,
            float* y, int64_t ldy, MatmulScratch& scratch) {
    const TensorType dot_type = type_traits(w.type).dot_type;
    const size_t act_row = row_size(dot_type, w.n_cols);
    scratch.act.resize(act_row * (size_t)n_tokens);
    uint8_t* act = scratch.act.data();

    pool.parallel_for(n_tokens, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t)
            quantize_row_dot(dot_type, x + t * ldx, act + (size_t)t * act_row, w.n_cols);
    });

    const VecDotFn dot = kernels().vec_dot[(int)w.type];
    pool.parallel_for(w.n_rows, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* wr = w.row(r);
            for (int64_t t = 0; t < n_tokens; ++t)
                y[t * ldy + r] = dot(w.n_cols, wr, act + (size_t)t * act_row);
        }
    });
}

}  // namespace lokal
