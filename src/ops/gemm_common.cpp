#include "ops/gemm_common.h"

#include "ops/gemm_isa.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "quant/blocks.h"
#include "quant/fp16.h"

namespace lokal::gemm {
namespace {

// The unsigned-byte offset the kernels add to each weight type's signed values.
int weight_offset(TensorType t) {
    switch (t) {
        case TensorType::Q4_0:
            return 8;
        case TensorType::Q5_0:
            return 16;
        case TensorType::Q8_0:
        case TensorType::IQ4_NL:
        case TensorType::IQ4_XS:
            return 128;
        case TensorType::Q3_K:
            return 4;
        case TensorType::Q6_K:
            return 32;
        default:
            return 0;
    }
}

uint32_t f32_word(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// Two int16 in one word, low first: the kernels multiply them by int16 pairs of weight mins
// with one pmaddwd.
uint32_t pair16(int lo, int hi) {
    return (uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16);
}

}  // namespace

bool is_gemm_quant(TensorType t) {
    switch (t) {
        case TensorType::Q4_0:
        case TensorType::Q4_1:
        case TensorType::Q5_0:
        case TensorType::Q5_1:
        case TensorType::Q8_0:
        case TensorType::IQ4_NL:
        case TensorType::Q2_K:
        case TensorType::Q3_K:
        case TensorType::Q4_K:
        case TensorType::Q5_K:
        case TensorType::Q6_K:
        case TensorType::IQ4_XS:
            return true;
        default:
            return false;
    }
}

SideLayout side_layout(TensorType t) {
    SideLayout s;
    switch (t) {
        case TensorType::Q4_0:
        case TensorType::Q5_0:
        case TensorType::Q8_0:
        case TensorType::IQ4_NL:
        case TensorType::Q4_1:
        case TensorType::Q5_1:
            s.nc = 1;
            break;  // Q4_1/Q5_1: the word holds sy (float)
        case TensorType::Q2_K:
            s.nm = 8;
            break;
        case TensorType::Q3_K:
        case TensorType::Q6_K:
            s.nc = 16;
            break;
        case TensorType::Q4_K:
        case TensorType::Q5_K:
            s.nm = 4;
            break;
        case TensorType::IQ4_XS:
            s.nc = 8;
            break;
        default:
            return s;
    }
    s.words_per_block = 1 + s.nc + s.nm;
    return s;
}

size_t side_words(TensorType t, int64_t n) {
    const SideLayout s = side_layout(t);
    return (size_t)(n / type_traits(t).block_size) * (size_t)s.words_per_block;
}

void prepare_side(TensorType t, const void* act_row, int64_t n, uint32_t* side) {
    const SideLayout s = side_layout(t);
    const int64_t nb = n / type_traits(t).block_size;
    uint32_t* dy = side;
    uint32_t* corr = side + nb;
    uint32_t* ysum = corr + nb * s.nc;
    const int off = weight_offset(t);
    const TensorType dot = type_traits(t).dot_type;
    if (dot == TensorType::Q8_0) {
        const BlockQ8_0* y = static_cast<const BlockQ8_0*>(act_row);
        for (int64_t b = 0; b < nb; ++b) {
            int sum = 0;
            for (int j = 0; j < QK8_0; ++j) sum += y[b].qs[j];
            dy[b] = f32_word(fp16_to_fp32(y[b].d));
            corr[b] = (uint32_t)(-off * sum);
        }
    } else if (dot == TensorType::Q8_1) {
        const BlockQ8_1* y = static_cast<const BlockQ8_1*>(act_row);
        for (int64_t b = 0; b < nb; ++b) {
            dy[b] = f32_word(fp16_to_fp32(y[b].d));
            corr[b] = f32_word(fp16_to_fp32(y[b].s));
        }
    } else {  // Q8_K
        const BlockQ8_K* y = static_cast<const BlockQ8_K*>(act_row);
        for (int64_t b = 0; b < nb; ++b) {
            dy[b] = f32_word(y[b].d);
            const int16_t* bs = y[b].bsums;
            uint32_t* c = corr + b * s.nc;
            uint32_t* m = ysum + b * s.nm;
            if (s.nc == 16)
                for (int j = 0; j < 16; ++j) c[j] = (uint32_t)(-off * bs[j]);
            if (s.nc == 8)
                for (int j = 0; j < 8; ++j) c[j] = (uint32_t)(-off * (bs[2 * j] + bs[2 * j + 1]));
            if (s.nm == 8)  // Q2_K: the 16 bsums as int16 pairs
                for (int p = 0; p < 8; ++p) m[p] = pair16(bs[2 * p], bs[2 * p + 1]);
            if (s.nm == 4)  // Q4_K/Q5_K: the 8 sums of 32 as int16 pairs
                for (int p = 0; p < 4; ++p)
                    m[p] = pair16(bs[4 * p] + bs[4 * p + 1], bs[4 * p + 2] + bs[4 * p + 3]);
        }
    }
}

namespace {

// Moves block b of the 8 rows at `rows` (row_bytes apart) into the packed run at `run`, field
// by field (gemm_common.h), or back.
void move_run(const PackLayout& L, uint8_t* run, uint8_t* rows, size_t row_bytes, int64_t b,
              bool to_packed) {
    int p = 0;
    for (int fi = 0; fi < L.n_fields; ++fi) {
        const PackField& f = L.fields[fi];
        const int unit = f.size == 2 ? 2 : 4;
        for (int i = 0; i < kPackRows; ++i) {
            uint8_t* row_field = rows + (size_t)i * row_bytes + b * L.block_bytes + f.off;
            for (int k = 0; k < f.size; k += unit) {
                uint8_t* packed = run + p + (f.size == 2 ? 2 * i : 32 * (k / 4) + 4 * i);
                if (to_packed)
                    std::memcpy(packed, row_field + k, unit);
                else
                    std::memcpy(row_field + k, packed, unit);
            }
        }
        p += kPackRows * f.size;
    }
}

// Moves the full 8-row groups between row-major and packed order through one temporary:
// units of `interleave` groups while they fit, then single groups.
void repack(TensorType t, int64_t n_cols, int64_t n_rows, uint8_t* data, int interleave,
            bool to_packed) {
    const PackLayout L = pack_layout(t);
    if (L.block_bytes == 0) return;
    if (interleave < 1) throw std::invalid_argument("pack_rows: interleave must be >= 1");
    const size_t row_bytes = row_size(t, n_cols);
    const int64_t nb = n_cols / type_traits(t).block_size;
    const size_t run_bytes = (size_t)kPackRows * L.block_bytes;
    std::vector<uint8_t> tmp((size_t)interleave * kPackRows * row_bytes);
    for (int64_t g = 0; g + kPackRows <= n_rows;) {
        const int il = g + (int64_t)interleave * kPackRows <= n_rows ? interleave : 1;
        uint8_t* unit = data + (size_t)g * row_bytes;
        std::memcpy(tmp.data(), unit, (size_t)il * kPackRows * row_bytes);
        uint8_t* packed_base = to_packed ? unit : tmp.data();
        uint8_t* rows_base = to_packed ? tmp.data() : unit;
        for (int64_t b = 0; b < nb; ++b)
            for (int j = 0; j < il; ++j)
                move_run(L, packed_base + (size_t)(b * il + j) * run_bytes,
                         rows_base + (size_t)j * kPackRows * row_bytes, row_bytes, b, to_packed);
        g += (int64_t)il * kPackRows;
    }
}

}  // namespace

void pack_rows(TensorType t, int64_t n_cols, int64_t n_rows, uint8_t* data, int interleave) {
    repack(t, n_cols, n_rows, data, interleave, true);
}

void unpack_rows(TensorType t, int64_t n_cols, int64_t n_rows, uint8_t* data, int interleave) {
    repack(t, n_cols, n_rows, data, interleave, false);
}

void unpack_row(TensorType t, int64_t n_cols, int64_t n_rows, const uint8_t* data, int interleave,
                int64_t row, uint8_t* out) {
    const PackLayout L = pack_layout(t);
    const size_t row_bytes = row_size(t, n_cols);
    if (row < 0 || row >= n_rows) throw std::out_of_range("unpack_row: row out of range");
    if (interleave < 1) throw std::invalid_argument("unpack_row: interleave must be >= 1");
    // Where the row's unit starts, how many groups it has (repack's walk, in closed form).
    const int64_t unit_rows = (int64_t)interleave * kPackRows;
    const int64_t full_units_end = n_rows / unit_rows * unit_rows;
    const int64_t groups_end = n_rows / kPackRows * kPackRows;
    if (L.block_bytes == 0 || row >= groups_end) {  // row-major
        std::memcpy(out, data + (size_t)row * row_bytes, row_bytes);
        return;
    }
    const int64_t unit0 =
        row < full_units_end ? row / unit_rows * unit_rows : row / kPackRows * kPackRows;
    const int il = row < full_units_end ? interleave : 1;
    const int j = (int)((row - unit0) / kPackRows), i = (int)(row % kPackRows);
    const uint8_t* unit = data + (size_t)unit0 * row_bytes;
    const size_t run_bytes = (size_t)kPackRows * L.block_bytes;
    const int64_t nb = n_cols / type_traits(t).block_size;
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* run = unit + (size_t)(b * il + j) * run_bytes;
        int p = 0;
        for (int fi = 0; fi < L.n_fields; ++fi) {
            const PackField& f = L.fields[fi];
            uint8_t* dst = out + b * L.block_bytes + f.off;
            if (f.size == 2)
                std::memcpy(dst, run + p + 2 * i, 2);
            else
                for (int k = 0; k < f.size; k += 4)
                    std::memcpy(dst + k, run + p + 32 * (k / 4) + 4 * i, 4);
            p += kPackRows * f.size;
        }
    }
}

size_t scratch_bytes(int64_t n_tokens) {
    // Weight panel (48 KiB) + AMX tile sums (64 KiB) + per-token float accumulators of one
    // row group.
    return 112 * 1024 + (size_t)n_tokens * 16 * sizeof(float) + 64;
}

float vec_dot_via(GemmFn fn, TensorType t, int64_t n, const void* w_row, const void* act_row) {
    struct Free {
        void operator()(void* p) const { std::free(p); }
    };
    thread_local std::vector<uint32_t> side;
    thread_local std::unique_ptr<void, Free> scratch(std::aligned_alloc(64, scratch_bytes(1)));
    GemmArgs a;
    a.type = t;
    a.n = n;
    a.w = static_cast<const uint8_t*>(w_row);
    a.w_stride = row_size(t, n);
    a.n_rows = 1;
    a.act = static_cast<const uint8_t*>(act_row);
    a.act_stride = row_size(type_traits(t).dot_type, n);
    if (is_gemm_quant(t)) {
        side.resize(side_words(t, n));
        prepare_side(t, act_row, n, side.data());
        a.side = side.data();
        a.side_stride = side.size();
    }
    a.n_tokens = 1;
    float y = 0;
    a.y = &y;
    a.ldy = 1;
    fn(a, 0, 1, scratch.get());
    return y;
}

}  // namespace lokal::gemm
