#include "ops/matmul.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <tuple>

#include "ops/env_switch.h"
#include "ops/gemm_common.h"
#include "ops/kernels.h"
#include "ops/ops.h"

namespace lokal {

void MatmulScratch::Free::operator()(void* p) const {
    std::free(p);
}

namespace {

using Conv = MatmulScratch::Conversion;
using Side = MatmulScratch::SideRecords;

uint8_t* thread_scratch(MatmulScratch& s, int thread) {
    return s.per_thread[(size_t)thread].get();
}

void ensure_thread_scratch(MatmulScratch& s, int n_threads, size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes > s.per_thread_bytes) {
        s.per_thread.clear();
        s.per_thread_bytes = bytes;
    }
    while ((int)s.per_thread.size() < n_threads) {
        void* p = std::aligned_alloc(64, s.per_thread_bytes);
        if (!p) throw std::bad_alloc();
        s.per_thread.emplace_back(static_cast<uint8_t*>(p));
    }
}

std::atomic<bool> g_profile_on{false};
std::mutex g_profile_mutex;
std::map<std::tuple<int64_t, int64_t, int64_t>, MatmulShapeStat> g_profile;

// Which activation formats and side records the outputs need, into scratch (buffers sized).
void plan_conversion(const MatmulOut* outs, int n_outs, int64_t n_tokens, MatmulScratch& scratch) {
    const KernelTable& kt = kernels();
    const int64_t n = outs[0].w.n_cols;
    std::vector<Conv>& convs = scratch.convs;
    std::vector<Side>& sides = scratch.sides;
    convs.clear();
    sides.clear();
    size_t act_bytes = 0, side_words = 0;
    for (int i = 0; i < n_outs; ++i) {
        const MatView& w = outs[i].w;
        if (w.n_cols != n) throw std::invalid_argument("matmul_multi: weights differ in width");
        if (!kt.gemm[(int)w.type]) throw std::invalid_argument("matmul: unsupported weight type");
        if (w.packed && !kt.reads_packed)
            throw std::invalid_argument(
                "matmul: packed weights with kernels that cannot read them");
        const TensorType dot = type_traits(w.type).dot_type;
        if (dot != TensorType::F32 && std::none_of(convs.begin(), convs.end(), [&](const Conv& c) {
                return c.format == dot;
            })) {
            convs.push_back({dot, row_size(dot, n), act_bytes});
            act_bytes += convs.back().row_bytes * (size_t)n_tokens;
        }
        if (gemm::is_gemm_quant(w.type) &&
            std::none_of(sides.begin(), sides.end(),
                         [&](const Side& s) { return s.weight_type == w.type; })) {
            sides.push_back({w.type, gemm::side_words(w.type, n), side_words});
            side_words += sides.back().words * (size_t)n_tokens;
        }
    }
    if (scratch.act.size() < act_bytes) scratch.act.resize(act_bytes);
    if (scratch.side.size() < side_words) scratch.side.resize(side_words);
    scratch.n_cols = n;
    scratch.n_tokens = n_tokens;
}

const Conv& conversion_for(const MatmulScratch& s, TensorType format) {
    return *std::find_if(s.convs.begin(), s.convs.end(),
                         [&](const Conv& c) { return c.format == format; });
}

// Token t's row: converted once per format, side records once per weight type.
void convert_row(const KernelTable& kt, MatmulScratch& s, int64_t t, const float* x) {
    uint8_t* act = s.act.data();
    for (const Conv& c : s.convs)
        kt.quantize[(int)c.format](x, act + c.offset + (size_t)t * c.row_bytes, s.n_cols);
    for (const Side& sd : s.sides) {
        const Conv& c = conversion_for(s, type_traits(sd.weight_type).dot_type);
        gemm::prepare_side(sd.weight_type, act + c.offset + (size_t)t * c.row_bytes, s.n_cols,
                           s.side.data() + sd.offset + (size_t)t * sd.words);
    }
}

// matmul_multi itself (converted: the activations are already in scratch); the public
// functions add the profile's timing around it when enabled.
void matmul_multi_run(ThreadPool& pool, const MatmulOut* outs, int n_outs, const float* x,
                      int64_t ldx, int64_t n_tokens, MatmulScratch& scratch, bool converted) {
    if (n_tokens <= 0 || n_outs <= 0) return;
    const KernelTable& kt = kernels();
    const int64_t n = outs[0].w.n_cols;
    // Reused per calling thread: a decode step makes ~150 of these calls, so no per-call
    // allocation. Bound to locals so the worker lambdas see the caller's instances.
    thread_local std::vector<int64_t> tl_first_unit, tl_pair_units;
    thread_local std::vector<gemm::GemmArgs> tl_args;
    std::vector<int64_t>& first_unit = tl_first_unit;
    std::vector<int64_t>& pair_units = tl_pair_units;
    std::vector<gemm::GemmArgs>& args = tl_args;
    if (!converted) {
        plan_conversion(outs, n_outs, n_tokens, scratch);
        if (!scratch.convs.empty())
            pool.parallel_for(n_tokens, [&](int64_t t0, int64_t t1, int) {
                for (int64_t t = t0; t < t1; ++t) convert_row(kt, scratch, t, x + t * ldx);
            });
    } else if (scratch.n_cols != n || scratch.n_tokens != n_tokens) {
        throw std::logic_error("matmul_multi_converted: not the rows matmul_convert_begin planned");
    }
    ensure_thread_scratch(scratch, pool.n_threads(), gemm::scratch_bytes(n_tokens));
    uint8_t* act = scratch.act.data();
    uint32_t* side = scratch.side.data();

    // Work units: row groups of every output, split in contiguous runs across threads.
    const int rg = kt.row_group;
    first_unit.assign((size_t)n_outs + 1, 0);
    pair_units.assign((size_t)n_outs, 0);
    args.assign((size_t)n_outs, gemm::GemmArgs{});
    for (int i = 0; i < n_outs; ++i) {
        const MatView& w = outs[i].w;
        gemm::GemmArgs& a = args[(size_t)i];
        a.type = w.type;
        a.n = n;
        a.w = w.data;
        a.w_stride = w.row_bytes;
        a.packed = w.packed;
        a.n_rows = w.n_rows;
        const TensorType dot = type_traits(w.type).dot_type;
        if (dot == TensorType::F32) {
            a.act = reinterpret_cast<const uint8_t*>(x);
            a.act_stride = (size_t)ldx * sizeof(float);
        } else {
            const Conv& c = conversion_for(scratch, dot);
            a.act = act + c.offset;
            a.act_stride = c.row_bytes;
        }
        for (const Side& s : scratch.sides)
            if (s.weight_type == w.type) a.side = side + s.offset, a.side_stride = s.words;
        a.n_tokens = n_tokens;
        a.y = outs[i].y;
        a.ldy = outs[i].ldy;
        // Decode through a pairing kernel: unit k < P stands for row groups k and k + P of
        // the packed ones (P: half of them), so a thread's span reads two forward streams
        // (gemm_avx512.cpp, decode_pair32); the units after P are the remaining groups, one
        // each.
        int64_t units = (w.n_rows + rg - 1) / rg;
        if (n_tokens == 1 && w.packed && kt.pairs_decode[(int)w.type]) {
            const int64_t full = (w.n_rows - w.n_rows % gemm::kPackRows) / rg;
            pair_units[(size_t)i] = full / 2;
            units -= full / 2;
        }
        first_unit[(size_t)i + 1] = first_unit[(size_t)i] + units;
    }
    const int64_t n_units = first_unit[(size_t)n_outs];
    // Each thread owns a contiguous span of units and reads it as one forward stream (two for
    // paired units); threads sharing memory bandwidth do not finish at the same time, so the
    // one done early takes pieces from the back of another's span instead of waiting
    // (parallel_spans). The guided ranges used before started a new stream at every range
    // (~log(units) per thread and call): ~6 us more per call on two threads, which the small
    // matrices paid most (bench/ab tg: Q4_K_M 1.092, Q4_0 1.051, Q8_0 1.031). Each row group
    // is computed the same way on any thread. LOKAL_MATMUL_SPANS=0: the guided ranges, for A/B.
    // (Fixed chunks, the split before those, ran slower and are gone.)
    auto run_units = [&](int64_t u0, int64_t u1, int thread) {
        uint8_t* s = thread_scratch(scratch, thread);
        for (int i = 0; i < n_outs && u0 < u1; ++i) {
            const int64_t b = std::max(u0, first_unit[(size_t)i]),
                          e = std::min(u1, first_unit[(size_t)i + 1]);
            if (b >= e) continue;
            const gemm::GemmArgs& a = args[(size_t)i];
            const int64_t pu = pair_units[(size_t)i];
            const int64_t k0 = b - first_unit[(size_t)i], k1 = e - first_unit[(size_t)i];
            auto run = [&](const gemm::GemmArgs& ga, int64_t r0, int64_t r1) {
                kt.gemm[(int)a.type](ga, r0, r1, s);
                if (float* res = outs[i].residual)
                    for (int64_t t = 0; t < n_tokens; ++t) {
                        add_inplace(res + t * a.ldy + r0, a.y + t * a.ldy + r0, r1 - r0);
                        if (const int64_t p = ga.pair_rows)
                            add_inplace(res + t * a.ldy + r0 + p, a.y + t * a.ldy + r0 + p,
                                        r1 - r0);
                    }
            };
            if (k0 < pu) {  // paired units: row groups k and k + pu
                gemm::GemmArgs pa = a;
                pa.pair_rows = pu * rg;
                run(pa, k0 * rg, std::min(k1, pu) * rg);
            }
            if (k1 > pu) {  // single units after them: row group k + pu
                const int64_t kb = std::max(k0, pu) + pu, ke = k1 + pu;
                run(a, kb * rg, std::min(a.n_rows, ke * rg));
            }
        }
    };
    // Decode takes its span in halves of what is left, batches in eighths. A decode unit is a
    // few tenths of a microsecond of reading, and every piece (a kernel call) cost about as
    // much again: with eighths a thread made ~22-30 pieces per call and a 2,048 x 2,048 Q4_0
    // call took ~8 us longer than with halves (5-9 pieces; timed by a throwaway build,
    // docs/PERFORMANCE.md, "Decode takes its span in halves"). bench/ab tg, built binaries,
    // this against the code before: Q4_0 1.028 (6 of 8), Q4_K_M 1.042 (5 of 8), Q8_0 1.017
    // (6 of 8); against no pieces at all (fixed halves, no stealing) Q4_0 1.062 (a temporary
    // switch). Batches compute for microseconds a unit and balance better in eighths: halves
    // gave batched 8 Q4_K_M 0.976-0.979 and pp512 Q4_0 0.975.
    const int64_t piece_divisor = n_tokens == 1 ? 2 : 8;
    static const bool spans = env_switch("LOKAL_MATMUL_SPANS");
    if (spans)
        pool.parallel_spans(n_units, 1, run_units, piece_divisor);
    else
        pool.parallel_ranges(n_units, 1, run_units);
}

}  // namespace

void matmul_profile_enable(bool on) {
    g_profile_on.store(on, std::memory_order_relaxed);
}

std::vector<MatmulShapeStat> matmul_profile_take() {
    std::lock_guard<std::mutex> lock(g_profile_mutex);
    std::vector<MatmulShapeStat> v;
    for (const auto& [key, st] : g_profile) v.push_back(st);
    g_profile.clear();
    return v;
}

namespace {

void matmul_multi_timed(ThreadPool& pool, const MatmulOut* outs, int n_outs, const float* x,
                        int64_t ldx, int64_t n_tokens, MatmulScratch& scratch, bool converted) {
    if (!g_profile_on.load(std::memory_order_relaxed) || n_tokens <= 0 || n_outs <= 0)
        return matmul_multi_run(pool, outs, n_outs, x, ldx, n_tokens, scratch, converted);
    const auto t0 = std::chrono::steady_clock::now();
    matmul_multi_run(pool, outs, n_outs, x, ldx, n_tokens, scratch, converted);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int64_t rows = 0;
    double bytes = 0;
    for (int i = 0; i < n_outs; ++i) {
        rows += outs[i].w.n_rows;
        bytes += (double)outs[i].w.n_rows * (double)outs[i].w.row_bytes;
    }
    std::lock_guard<std::mutex> lock(g_profile_mutex);
    MatmulShapeStat& st = g_profile[{rows, outs[0].w.n_cols, n_tokens}];
    st.rows = rows, st.cols = outs[0].w.n_cols, st.tokens = n_tokens;
    st.calls += 1;
    st.seconds += s;
    st.weight_bytes += bytes;
}

}  // namespace

void matmul_multi(ThreadPool& pool, const MatmulOut* outs, int n_outs, const float* x, int64_t ldx,
                  int64_t n_tokens, MatmulScratch& scratch) {
    matmul_multi_timed(pool, outs, n_outs, x, ldx, n_tokens, scratch, false);
}

void matmul_convert_begin(const MatmulOut* outs, int n_outs, int64_t n_tokens,
                          MatmulScratch& scratch) {
    if (n_outs <= 0 || n_tokens <= 0)
        throw std::invalid_argument("matmul_convert_begin: nothing to convert");
    plan_conversion(outs, n_outs, n_tokens, scratch);
}

void matmul_convert_row(MatmulScratch& scratch, int64_t t, const float* x_row) {
    convert_row(kernels(), scratch, t, x_row);
}

void matmul_multi_converted(ThreadPool& pool, const MatmulOut* outs, int n_outs, const float* x,
                            int64_t ldx, int64_t n_tokens, MatmulScratch& scratch) {
    matmul_multi_timed(pool, outs, n_outs, x, ldx, n_tokens, scratch, true);
}

bool matmul_can_pack(TensorType t) {
    return kernels().reads_packed && gemm::is_gemm_quant(t) &&
           gemm::pack_layout(t).block_bytes == (int)type_traits(t).type_size;
}

void matmul_pack(TensorType t, int64_t n_cols, int64_t n_rows, uint8_t* data) {
    if (!matmul_can_pack(t)) throw std::invalid_argument("matmul_pack: type cannot be packed");
    gemm::pack_rows(t, n_cols, n_rows, data, kernels().pack_interleave);
}

void matmul_read_row(const MatView& w, int64_t row, uint8_t* out) {
    if (row < 0 || row >= w.n_rows) throw std::out_of_range("matmul_read_row: row out of range");
    if (!w.packed) {
        std::memcpy(out, w.data + (size_t)row * w.row_bytes, w.row_bytes);
        return;
    }
    gemm::unpack_row(w.type, w.n_cols, w.n_rows, w.data, kernels().pack_interleave, row, out);
}

void matmul(ThreadPool& pool, const MatView& w, const float* x, int64_t ldx, int64_t n_tokens,
            float* y, int64_t ldy, MatmulScratch& scratch) {
    MatmulOut o{w, y, ldy};
    matmul_multi(pool, &o, 1, x, ldx, n_tokens, scratch);
}

}  // namespace lokal
