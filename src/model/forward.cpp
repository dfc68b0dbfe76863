// The decoder-only transformer forward pass, top to bottom:
//   x = embed(tokens)
//   for each layer:  x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x))
//                    x += FFN(norm(x))        (SwiGLU, or a top-k mixture of SwiGLU experts)
//   logits = Wout · norm(x)                   (only for tokens that want them)
#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "ops/attention.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "quant/quantize.h"

namespace lokal {

void KvStorage::allocate(const HParams& hp, int blocks, int block_sz, KvType kv_type) {
    require_kv_type_fits(kv_type, hp.head_dim);
    n_layer = hp.n_layer;
    n_blocks = blocks;
    block_size = block_sz;
    type = kv_type;
    layout =
        kv_layout(hp.n_kv_head, (int64_t)block_sz * kv_row_elems(kv_type, hp.head_dim), blocks);
    // Whole groups of blocks (the layout's unit, ops/attention.h); blocks past n_blocks in the
    // last group are never handed out, so their memory is never touched or committed.
    layer_elems = ((size_t)kv_cache_elems(layout, blocks) + 31) / 32 * 32;
    arena = ZeroBuffer<uint16_t>();  // the old cache's memory goes before the new one's comes
    arena = ZeroBuffer<uint16_t>(2 * (size_t)n_layer * layer_elems);
}

namespace {

void check_batch(const Batch& b, const HParams& hp, const KvStorage& kv) {
    const int64_t n = b.size();
    if ((int64_t)b.pos.size() != n || (int64_t)b.seq.size() != n ||
        (int64_t)b.want_logits.size() != n)
        throw std::invalid_argument("batch: field lengths differ");
    for (int64_t i = 0; i < n; ++i) {
        if (b.tokens[i] < 0 || b.tokens[i] >= hp.n_vocab)
            throw std::invalid_argument("batch: token id " + std::to_string(b.tokens[i]) +
                                        " is outside the vocabulary");
        if (b.seq[i] < 0 || b.seq[i] >= (int32_t)b.block_tables.size() || !b.block_tables[b.seq[i]])
            throw std::invalid_argument("batch: token has no block table");
        if (b.pos[i] < 0) throw std::invalid_argument("batch: negative position");
        const auto& table = *b.block_tables[b.seq[i]];
        const size_t blk = (size_t)b.pos[i] / kv.block_size;
        if (blk >= table.size())
            throw std::invalid_argument("batch: position beyond the sequence's KV blocks");
        for (size_t j = 0; j <= blk; ++j)
            if (table[j] < 0 || table[j] >= kv.n_blocks)
                throw std::invalid_argument("batch: bad KV block id");
    }
}

void add_bias(float* y, const std::vector<float>& bias, int64_t n, int64_t width) {
    if (bias.empty()) return;
    for (int64_t t = 0; t < n; ++t) add_inplace(y + t * width, bias.data(), width);
}

}  // namespace

Forward::Forward(const Model& model, ThreadPool& pool) : model_(model), pool_(pool) {
    rope_ = model.hp.rope;
    if (!model.rope_freq_factors.empty()) rope_.freq_factors = model.rope_freq_factors.data();
}

void Forward::mm(const Tensor& w, int64_t expert, const float* x, int64_t ldx, int64_t n, float* y,
                 int64_t ldy, float* residual) {
    if (observer) observer(w, expert, x, n);
    const MatmulOut out{w.mat(expert), y, ldy, residual};
    matmul_multi(pool_, &out, 1, x, ldx, n, mm_scratch_);
}

Forward::SharedInput Forward::shared_input(
    std::initializer_list<std::pair<const Tensor*, float*>> outs) {
    SharedInput in;
    for (auto [w, y] : outs) {
        if (in.n == 3) throw std::logic_error("shared_input: at most 3 weights");
        in.outs[in.n] = {w->mat(0), y, w->ne[1]};
        in.weights[in.n++] = w;
    }
    return in;
}

// xb = RMSNorm(x) per token, each row converted for in's matmuls right after it is written
// (one parallel loop for both; a batch saves the conversion's own loop and region).
void Forward::norm_then_convert(const std::vector<float>& norm, const SharedInput& in, int64_t n) {
    const int64_t dim = model_.hp.dim;
    matmul_convert_begin(in.outs, in.n, n, mm_scratch_);
    pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) {
            rmsnorm(x_.data() + t * dim, norm.data(), xb_.data() + t * dim, dim, model_.hp.rms_eps);
            matmul_convert_row(mm_scratch_, t, xb_.data() + t * dim);
        }
    });
}

// All of in's products in one parallel region; the results are the bits separate mm() calls
// give.
void Forward::mm_converted(const SharedInput& in, const float* x, int64_t ldx, int64_t n) {
    if (observer)
        for (int i = 0; i < in.n; ++i) observer(*in.weights[i], 0, x, n);
    matmul_multi_converted(pool_, in.outs, in.n, x, ldx, n, mm_scratch_);
}

bool Forward::run(const Batch& batch, KvStorage& kv, ForwardOutput& out, bool want_hidden,
                  const std::atomic<bool>* abort) {
    const HParams& hp = model_.hp;
    check_batch(batch, hp, kv);
    const int64_t n = batch.size();
    const int64_t dim = hp.dim;
    out.logits.clear();
    out.hidden.clear();
    if (n == 0) return true;

    auto grow = [](std::vector<float>& v, int64_t size) {
        if ((int64_t)v.size() < size) v.resize((size_t)size);
    };
    grow(x_, n * dim);
    grow(xb_, n * dim);
    grow(q_, n * hp.q_dim());
    grow(k_, n * hp.kv_dim());
    grow(v_, n * hp.kv_dim());
    grow(att_, n * hp.q_dim());
    grow(hb_, n * hp.n_ff);
    grow(hb2_, n * hp.n_ff);

    // Embedding lookup: dequantize one row of token_embd per token (matmul_read_row: a tied
    // embedding may be packed for the output matmul).
    const MatView embd = model_.token_embd.mat();
    pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
        thread_local std::vector<uint8_t> row;
        row.resize(embd.row_bytes);
        for (int64_t t = t0; t < t1; ++t) {
            matmul_read_row(embd, batch.tokens[t], row.data());
            dequantize_row(embd.type, row.data(), x_.data() + t * dim, dim);
        }
    });

    rope_prepare(batch);
    for (int il = 0; il < hp.n_layer; ++il) {
        if (abort && abort->load(std::memory_order_relaxed)) return false;
        const LayerWeights& L = model_.layers[il];
        attention_block(batch, il, kv);  // RMSNorm, Q/K/V, RoPE, attention
        mm(L.wo, 0, att_.data(), hp.q_dim(), n, xb_.data(), dim, x_.data());  // and x += it

        if (hp.n_expert == 0) {
            ffn_dense(il, n);  // RMSNorm, gate/up, SwiGLU, down, and x += down's output
        } else {
            pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
                for (int64_t t = t0; t < t1; ++t)
                    rmsnorm(x_.data() + t * dim, L.ffn_norm.data(), xb_.data() + t * dim, dim,
                            hp.rms_eps);
            });
            ffn_moe(il, n);
            add_inplace(x_.data(), xb_.data(), n * dim);
        }
    }

    // Final norm and output projection only for the tokens that want logits.
    std::vector<int64_t> wanted;
    for (int64_t t = 0; t < n; ++t)
        if (batch.want_logits[t]) wanted.push_back(t);
    const int64_t nw = (int64_t)wanted.size();
    if (nw == 0) return true;
    std::vector<float> normed((size_t)(nw * dim));
    pool_.parallel_for(nw, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i)
            rmsnorm(x_.data() + wanted[i] * dim, model_.output_norm.data(), normed.data() + i * dim,
                    dim, hp.rms_eps);
    });
    out.logits.resize((size_t)(nw * hp.n_vocab));
    mm(model_.output, 0, normed.data(), dim, nw, out.logits.data(), hp.n_vocab);
    if (want_hidden) out.hidden = std::move(normed);
    return true;
}

void Forward::rope_prepare(const Batch& batch) {
    const int64_t n = batch.size(), half = rope_.n_rot / 2;
    if ((int64_t)rope_cos_.size() < n * half) {
        rope_cos_.resize((size_t)(n * half));
        rope_sin_.resize((size_t)(n * half));
    }
    pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t)
            rope_angles(batch.pos[t], rope_, rope_cos_.data() + t * half,
                        rope_sin_.data() + t * half);
    });
}

void Forward::attention_block(const Batch& batch, int il, KvStorage& kv) {
    const HParams& hp = model_.hp;
    const LayerWeights& L = model_.layers[il];
    const int64_t n = batch.size(), dim = hp.dim, qd = hp.q_dim(), kvd = hp.kv_dim();

    const SharedInput qkv =
        shared_input({{&L.wq, q_.data()}, {&L.wk, k_.data()}, {&L.wv, v_.data()}});
    norm_then_convert(L.attn_norm, qkv, n);
    mm_converted(qkv, xb_.data(), dim, n);
    add_bias(q_.data(), L.bq, n, qd);
    add_bias(k_.data(), L.bk, n, kvd);
    add_bias(v_.data(), L.bv, n, kvd);

    uint16_t* kc = kv.k(il);
    uint16_t* vc = kv.v(il);
    AttentionShape shape;
    shape.n_head = hp.n_head;
    shape.n_kv_head = hp.n_kv_head;
    shape.head_dim = hp.head_dim;
    shape.block_size = kv.block_size;
    shape.scale = 1.0f / std::sqrt((float)hp.head_dim);
    shape.window = hp.sliding_window;
    shape.kv_type = kv.type;
    shape.n_blocks = kv.n_blocks;
    // RoPE on q and k, then K/V go into their cache slots (in the cache's type: f16, Q8_0 or
    // Q4_0, with the reference quantizer's rounding, and its layout) before anyone attends.
    // Q4_0 K keeps two slots of a block in each byte, so its rows are stored by K/V head
    // afterwards: one thread per head's blocks, no two threads writing one byte.
    const bool k_by_head = kv.type == KvType::Q4_0;
    auto slot_of = [&](int64_t t, int64_t& block, int64_t& slot) {
        const int32_t pos = batch.pos[t];
        block = (*batch.block_tables[batch.seq[t]])[pos / kv.block_size];
        slot = pos % kv.block_size;
    };
    pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) {
            const float* cos = rope_cos_.data() + t * (rope_.n_rot / 2);
            const float* sin = rope_sin_.data() + t * (rope_.n_rot / 2);
            rope_rotate(q_.data() + t * qd, hp.n_head, hp.head_dim, cos, sin, rope_);
            rope_rotate(k_.data() + t * kvd, hp.n_kv_head, hp.head_dim, cos, sin, rope_);
            int64_t block, slot;
            slot_of(t, block, slot);
            for (int h = 0; h < hp.n_kv_head; ++h) {
                if (!k_by_head)
                    kv_store_k(shape, kc, block, slot, h,
                               k_.data() + t * kvd + (int64_t)h * hp.head_dim);
                kv_store_v(shape, vc, block, slot, h,
                           v_.data() + t * kvd + (int64_t)h * hp.head_dim);
            }
        }
    });
    if (k_by_head)
        pool_.parallel_for(hp.n_kv_head, [&](int64_t h0, int64_t h1, int) {
            for (int64_t h = h0; h < h1; ++h)
                for (int64_t t = 0; t < n; ++t) {
                    int64_t block, slot;
                    slot_of(t, block, slot);
                    kv_store_k(shape, kc, block, slot, (int)h,
                               k_.data() + t * kvd + h * hp.head_dim);
                }
        });

    std::vector<AttentionQuery> queries((size_t)n);
    for (int64_t t = 0; t < n; ++t) {
        queries[t].q = q_.data() + t * qd;
        queries[t].out = att_.data() + t * qd;
        queries[t].pos = batch.pos[t];
        queries[t].block_table = batch.block_tables[batch.seq[t]]->data();
    }
    attention_paged(pool_, shape, kc, vc, queries.data(), n);
}

void Forward::ffn_dense(int il, int64_t n) {
    const HParams& hp = model_.hp;
    const LayerWeights& L = model_.layers[il];
    const int64_t dim = hp.dim, ff = hp.n_ff;
    const SharedInput gate_up = shared_input({{&L.w_gate, hb_.data()}, {&L.w_up, hb2_.data()}});
    norm_then_convert(L.ffn_norm, gate_up, n);
    mm_converted(gate_up, xb_.data(), dim, n);
    // SwiGLU, each row converted for the down projection as it is written.
    SharedInput down = shared_input({{&L.w_down, xb_.data()}});
    down.outs[0].residual = x_.data();  // x += down · SwiGLU, inside the matmul's region
    matmul_convert_begin(down.outs, down.n, n, mm_scratch_);
    pool_.parallel_for(n, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) {
            swiglu(hb_.data() + t * ff, hb2_.data() + t * ff, hb_.data() + t * ff, ff);
            matmul_convert_row(mm_scratch_, t, hb_.data() + t * ff);
        }
    });
    mm_converted(down, hb_.data(), ff, n);
}

// Mixture of experts: softmax router, top-k experts per token, weights renormalized over
// the chosen k. Tokens are grouped by expert so each expert's weights are read once per
// batch; each token's expert outputs are summed in rank order, so the result does not
// depend on which other tokens share the batch.
void Forward::ffn_moe(int il, int64_t n) {
    const HParams& hp = model_.hp;
    const LayerWeights& L = model_.layers[il];
    const int64_t dim = hp.dim, ff = hp.n_ff, ne = hp.n_expert, k = hp.n_expert_used;

    router_logits_.resize((size_t)(n * ne));
    mm(L.router, 0, xb_.data(), dim, n, router_logits_.data(), ne);

    std::vector<int32_t> chosen((size_t)(n * k));
    std::vector<float> weight((size_t)(n * k));
    for (int64_t t = 0; t < n; ++t) {
        float* p = router_logits_.data() + t * ne;
        softmax(p, ne);
        std::vector<int32_t> order((size_t)ne);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int32_t a, int32_t b) { return p[a] > p[b]; });
        float sum = 0;
        for (int64_t j = 0; j < k; ++j) sum += p[order[j]];
        for (int64_t j = 0; j < k; ++j) {
            chosen[t * k + j] = order[j];
            weight[t * k + j] = p[order[j]] / sum;
        }
    }

    ye_.resize((size_t)(n * k * dim));
    for (int64_t e = 0; e < ne; ++e) {
        std::vector<int64_t> rows;  // (token * k + rank) entries routed to expert e
        for (int64_t i = 0; i < n * k; ++i)
            if (chosen[i] == e) rows.push_back(i);
        if (rows.empty()) continue;
        const int64_t m = (int64_t)rows.size();
        xe_.resize((size_t)(m * dim));
        he_.resize((size_t)(m * ff));
        he2_.resize((size_t)(m * ff));
        std::vector<float> ye((size_t)(m * dim));
        for (int64_t r = 0; r < m; ++r)
            std::copy_n(xb_.data() + (rows[r] / k) * dim, dim, xe_.data() + r * dim);
        // Gate and up in one call: one activation conversion and one parallel region (the
        // bits of two separate calls).
        if (observer) {
            observer(L.gate_exps, e, xe_.data(), m);
            observer(L.up_exps, e, xe_.data(), m);
        }
        const MatmulOut gate_up[2] = {{L.gate_exps.mat(e), he_.data(), ff},
                                      {L.up_exps.mat(e), he2_.data(), ff}};
        matmul_multi(pool_, gate_up, 2, xe_.data(), dim, m, mm_scratch_);
        for (int64_t r = 0; r < m; ++r)
            swiglu(he_.data() + r * ff, he2_.data() + r * ff, he_.data() + r * ff, ff);
        mm(L.down_exps, e, he_.data(), ff, m, ye.data(), dim);
        for (int64_t r = 0; r < m; ++r) {
            const float w = weight[rows[r]];
            float* dst = ye_.data() + rows[r] * dim;
            for (int64_t i = 0; i < dim; ++i) dst[i] = ye[r * dim + i] * w;
        }
    }
    for (int64_t t = 0; t < n; ++t) {
        float* dst = xb_.data() + t * dim;
        std::copy_n(ye_.data() + (t * k) * dim, dim, dst);
        for (int64_t j = 1; j < k; ++j) add_inplace(dst, ye_.data() + (t * k + j) * dim, dim);
    }
}

}  // namespace lokal
