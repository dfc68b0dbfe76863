// Model loading: hyperparameters from metadata, every tensor's presence, type and shape
// checked against them before the forward pass may touch it.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "model/model.h"
#include "ops/huge_pages.h"
#include "ops/thread_pool.h"
#include "quant/quant.h"

namespace lokal {
namespace {

std::string fmt_shape(const int64_t* ne, int n) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

class Loader {
  public:
    explicit Loader(const gguf::File& f) : f_(f) {}

    const gguf::File& f_;
    std::string arch;

    std::string key(const char* suffix) const { return arch + "." + suffix; }

    int get_int(const char* suffix, int fallback, bool required) const {
        const std::string k = key(suffix);
        const gguf::Value* v = f_.find(k);
        if (!v) {
            if (required) throw ModelError("model: missing metadata key '" + k + "'");
            return fallback;
        }
        if (v->type == gguf::ValueType::ARRAY)
            throw ModelError("model: '" + k + "' is an array; per-layer values are not supported");
        auto u = f_.get_uint(k);
        if (!u || *u > (1u << 30)) throw ModelError("model: '" + k + "' is out of range");
        return (int)*u;
    }

    float get_float(const char* suffix, float fallback) const {
        auto v = f_.get_float(key(suffix));
        return v ? (float)*v : fallback;
    }

    Tensor tensor(const std::string& name, std::initializer_list<int64_t> shape,
                  bool required) const {
        const gguf::TensorInfo* ti = f_.find_tensor(name);
        Tensor t;
        t.name = name;
        if (!ti) {
            if (required) throw ModelError("model: missing tensor '" + name + "'");
            return t;
        }
        int i = 0;
        bool ok = (int)shape.size() >= ti->n_dims;
        for (int64_t want : shape) {
            if (ti->ne[i] != want) ok = false;
            ++i;
        }
        if (!ok) {
            int64_t expect[4] = {1, 1, 1, 1};
            int n = 0;
            for (int64_t want : shape) expect[n++] = want;
            throw ModelError("model: tensor '" + name + "' has shape " +
                             fmt_shape(ti->ne, ti->n_dims) + ", expected " + fmt_shape(expect, n));
        }
        if (!type_traits(ti->type).is_supported)
            throw ModelError("model: tensor '" + name + "' has type " + type_name(ti->type) +
                             ", which lokal cannot compute with yet");
        t.type = ti->type;
        for (int d = 0; d < 4; ++d) t.ne[d] = ti->ne[d];
        t.data = ti->data;
        return t;
    }

    // Small 1-D tensors (norms, biases) as f32 copies.
    std::vector<float> vector(const std::string& name, int64_t n, bool required) const {
        Tensor t = tensor(name, {n}, required);
        if (!t.present()) return {};
        std::vector<float> out((size_t)n);
        dequantize_row(t.type, t.data, out.data(), n);
        return out;
    }
};

// The weights only matmul reads: the output and each layer's attention and FFN projections
// (absent ones included; present() tells). M is Model or const Model.
template <class M>
auto matmul_weights(M& m) {
    using T = std::conditional_t<std::is_const_v<M>, const Tensor, Tensor>;
    std::vector<T*> v = {&m.output};
    for (auto& L : m.layers)
        for (T* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.gate_exps,
                     &L.up_exps, &L.down_exps})
            v.push_back(t);
    return v;
}

// Whether the output layer is token_embd itself (a tied embedding: one copy in the file).
template <class M>
bool output_is_tied(const M& m) {
    return m.output.present() && m.output.data == m.token_embd.data;
}

// The weights that go into the arena (pack_weights): every present matmul weight, a tied
// output as the token_embd it shares (its one copy serves the output matmul and the
// embedding lookup).
template <class M>
auto arena_weights(M& m) {
    auto v = matmul_weights(m);
    v.clear();
    for (auto* t : matmul_weights(m))
        if (t->present() && t->data != m.token_embd.data) v.push_back(t);
    if (output_is_tied(m)) v.push_back(&m.token_embd);
    return v;
}

// Those of them the kernels in use want row-interleaved.
template <class M>
auto packable_weights(M& m) {
    auto v = arena_weights(m);
    std::erase_if(v, [](auto* t) { return !matmul_can_pack(t->type); });
    return v;
}

// Every matmul weight, the packable ones (matmul_can_pack) repacked, the rest (F16, BF16,
// F32) copied as they are, and a tied token_embd, repacked too when its type is (the output
// matmul shares it; the embedding lookup reads its rows back with matmul_read_row: a tied
// Q4_0 output of 128256 x 2048 read weights at 17 GB/s row-major, a third of the packed
// layers' rate, and took half of a llama-3.2-1b token). They are copied into one anonymous arena,
// on all threads, one matrix (or expert slice) per task. The buffer is on huge pages
// (ops/huge_pages.h): decode streams every weight once per token, and on the file's 4 KiB
// pages each stream crosses a page (a TLB miss, and the hardware prefetcher stops) every
// 4 KiB (F16 decode, qwen2.5-0.5b shape: weights read at ~30 GB/s from the file mapping,
// the same kernels at ~50 GB/s from huge pages; docs/PERFORMANCE.md). The file's pages are
// dropped from this process as they are copied (they stay in the page cache), so resident
// memory ends at the weights' size and peaks a 4 MiB piece per thread above it.
void pack_weights(Model& m) {
    struct Job {
        Tensor* t;
        const uint8_t* src;  // one [ne1][row] slice in the file mapping
        uint8_t* dst;        // its place in the arena
        size_t bytes;
        bool pack;  // repack it there (else a plain copy)
    };
    const bool tied = output_is_tied(m);  // before the arena moves token_embd
    const auto tensors = arena_weights(m);
    auto slice_bytes = [](const Tensor* t) { return (size_t)t->ne[1] * t->row_bytes(); };
    auto round_up = [](size_t x, size_t a) { return (x + a - 1) / a * a; };
    size_t total = 0;
    for (const Tensor* t : tensors) total += round_up(slice_bytes(t) * t->ne[2] * t->ne[3], 64);
    if (total == 0) return;
    try {
        m.packed_weights = ZeroBuffer<uint8_t>(total);
    } catch (const std::bad_alloc&) {
        return;  // no memory for a copy: the row-major kernels still work
    }
    uint8_t* base = m.packed_weights.data();

    std::vector<Job> jobs;
    size_t off = 0;
    for (Tensor* t : tensors) {
        const size_t slice = slice_bytes(t);
        const bool pack = matmul_can_pack(t->type);
        for (int64_t e = 0; e < t->ne[2] * t->ne[3]; ++e)
            jobs.push_back(
                {t, t->data + (size_t)e * slice, base + off + (size_t)e * slice, slice, pack});
        t->data = base + off;
        t->packed = pack;
        off += round_up(slice * t->ne[2] * t->ne[3], 64);
    }
    if (tied) m.output.data = m.token_embd.data, m.output.packed = m.token_embd.packed;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    ThreadPool pool(ThreadPool::default_threads());
    pool.parallel_tasks((int64_t)jobs.size(), [&](int64_t i, int) {
        const Job& j = jobs[(size_t)i];
        // In pieces, each piece's file pages dropped once copied: a whole large slice (a tied
        // F16 embedding is ~55 MiB at qwen2.5-0.5b shape) resident twice on each thread at
        // once put the peak 10% above the weights. Only whole pages inside the slice: the
        // pages at its ends may hold other tensors.
        constexpr size_t kPiece = (size_t)4 << 20;
        uintptr_t dropped = round_up((uintptr_t)j.src, page);  // pages below are done
        for (size_t o = 0; o < j.bytes; o += kPiece) {
            const size_t n = std::min(kPiece, j.bytes - o);
            std::memcpy(j.dst + o, j.src + o, n);
            const uintptr_t hi = ((uintptr_t)j.src + o + n) / page * page;
            if (hi > dropped) madvise((void*)dropped, hi - dropped, MADV_DONTNEED), dropped = hi;
        }
        if (j.pack) matmul_pack(j.t->type, j.t->ne[0], j.t->ne[1], j.dst);
    });
}

}  // namespace

MatView Tensor::mat(int64_t expert) const {
    MatView m;
    m.packed = packed;
    m.type = type;
    m.n_cols = ne[0];
    m.n_rows = ne[1];
    m.row_bytes = row_bytes();
    m.data = data ? data + (size_t)expert * (size_t)ne[1] * m.row_bytes : nullptr;
    return m;
}

std::unique_ptr<Model> Model::load(const std::string& path, bool repack) {
    auto model = std::make_unique<Model>();
    model->file = gguf::File::open(path);
    const gguf::File& f = *model->file;
    Loader ld(f);

    auto arch = f.get_string("general.architecture");
    if (!arch)
        throw ModelError("model: '" + path +
                         "' has no general.architecture (a vocabulary-only file?)");
    ld.arch = std::string(*arch);
    model->spec = find_arch(ld.arch);
    if (!model->spec)
        throw ModelError("model: architecture '" + ld.arch +
                         "' is not supported (supported: " + supported_arch_names() + ")");

    HParams& hp = model->hp;
    hp.arch = ld.arch;
    hp.dim = ld.get_int("embedding_length", 0, true);
    hp.n_layer = ld.get_int("block_count", 0, true);
    hp.n_ff = ld.get_int("feed_forward_length", 0, true);
    hp.n_head = ld.get_int("attention.head_count", 0, true);
    hp.n_kv_head = ld.get_int("attention.head_count_kv", hp.n_head, false);
    hp.n_ctx_train = ld.get_int("context_length", 2048, false);
    hp.n_expert = ld.get_int("expert_count", 0, false);
    hp.n_expert_used = ld.get_int("expert_used_count", 0, false);
    hp.rms_eps = ld.get_float("attention.layer_norm_rms_epsilon", 1e-5f);
    hp.sliding_window = ld.get_int("attention.sliding_window", 0, false);

    if (hp.dim <= 0 || hp.n_layer <= 0 || hp.n_head <= 0 || hp.n_kv_head <= 0 || hp.n_ff <= 0)
        throw ModelError("model: dimensions must be positive (embedding, blocks, heads, ffn)");
    if (hp.n_layer > 4096 || hp.n_head > 4096)
        throw ModelError("model: implausible layer or head count");
    if (hp.n_head % hp.n_kv_head != 0)
        throw ModelError("model: head_count " + std::to_string(hp.n_head) +
                         " is not a multiple of head_count_kv " + std::to_string(hp.n_kv_head));
    hp.head_dim = ld.get_int("attention.key_length", hp.dim / hp.n_head, false);
    const int v_len = ld.get_int("attention.value_length", hp.head_dim, false);
    if (v_len != hp.head_dim)
        throw ModelError("model: key_length != value_length is not supported");
    if (hp.head_dim <= 0 || hp.head_dim > 1024 || hp.head_dim % 2 != 0)
        throw ModelError("model: head dimension " + std::to_string(hp.head_dim) +
                         " is not supported");
    if (hp.n_expert > 0) {
        if (hp.n_expert_used <= 0 || hp.n_expert_used > hp.n_expert || hp.n_expert > 512)
            throw ModelError("model: expert_used_count must be in 1..expert_count (<= 512)");
    } else {
        hp.n_expert_used = 0;
    }

    hp.rope.n_rot = ld.get_int("rope.dimension_count", hp.head_dim, false);
    if (hp.rope.n_rot <= 0 || hp.rope.n_rot > hp.head_dim || hp.rope.n_rot % 2 != 0)
        throw ModelError("model: rope dimension count must be even and <= head dimension");
    hp.rope.freq_base = ld.get_float("rope.freq_base", model->spec->default_rope_base);
    hp.rope.neox = model->spec->rope == RopeStyle::Neox;
    float scale = 1.0f;
    if (auto type = f.get_string(ld.key("rope.scaling.type")); type && *type == "linear")
        scale = ld.get_float("rope.scaling.factor", 1.0f);
    else if (!type)
        scale = ld.get_float("rope.scale_linear", 1.0f);
    if (!(scale > 0) || !std::isfinite(scale))
        throw ModelError("model: rope scaling factor must be positive");
    hp.rope.freq_scale = 1.0f / scale;
    if (!(hp.rope.freq_base > 0) || !std::isfinite(hp.rope.freq_base))
        throw ModelError("model: rope.freq_base must be positive");

    const int64_t dim = hp.dim, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.n_ff;
    // The vocabulary size is the embedding's row count.
    const gguf::TensorInfo* te = f.find_tensor("token_embd.weight");
    if (!te) throw ModelError("model: missing tensor 'token_embd.weight'");
    if (te->ne[1] <= 0 || te->ne[1] > (1 << 24))
        throw ModelError("model: implausible vocabulary size");
    hp.n_vocab = (int)te->ne[1];
    const int64_t nv = hp.n_vocab;

    model->token_embd = ld.tensor("token_embd.weight", {dim, nv}, true);
    model->output_norm = ld.vector("output_norm.weight", dim, true);
    model->output = ld.tensor("output.weight", {dim, nv}, !model->spec->tied_output);
    if (!model->output.present()) model->output = model->token_embd;
    if (f.find_tensor("rope_freqs.weight"))
        model->rope_freq_factors = ld.vector("rope_freqs.weight", hp.rope.n_rot / 2, true);

    model->layers.resize(hp.n_layer);
    for (int il = 0; il < hp.n_layer; ++il) {
        LayerWeights& L = model->layers[il];
        const std::string p = "blk." + std::to_string(il) + ".";
        L.attn_norm = ld.vector(p + "attn_norm.weight", dim, true);
        L.wq = ld.tensor(p + "attn_q.weight", {dim, qd}, true);
        L.wk = ld.tensor(p + "attn_k.weight", {dim, kvd}, true);
        L.wv = ld.tensor(p + "attn_v.weight", {dim, kvd}, true);
        L.wo = ld.tensor(p + "attn_output.weight", {qd, dim}, true);
        L.bq = ld.vector(p + "attn_q.bias", qd, false);
        L.bk = ld.vector(p + "attn_k.bias", kvd, false);
        L.bv = ld.vector(p + "attn_v.bias", kvd, false);
        L.ffn_norm = ld.vector(p + "ffn_norm.weight", dim, true);
        if (hp.n_expert == 0) {
            L.w_gate = ld.tensor(p + "ffn_gate.weight", {dim, ff}, true);
            L.w_up = ld.tensor(p + "ffn_up.weight", {dim, ff}, true);
            L.w_down = ld.tensor(p + "ffn_down.weight", {ff, dim}, true);
        } else {
            const int64_t ne = hp.n_expert;
            L.router = ld.tensor(p + "ffn_gate_inp.weight", {dim, ne}, true);
            L.gate_exps = ld.tensor(p + "ffn_gate_exps.weight", {dim, ff, ne}, true);
            L.up_exps = ld.tensor(p + "ffn_up_exps.weight", {dim, ff, ne}, true);
            L.down_exps = ld.tensor(p + "ffn_down_exps.weight", {ff, dim, ne}, true);
        }
    }
    const char* env = std::getenv("LOKAL_REPACK");
    if (repack && !(env && std::string(env) == "0")) pack_weights(*model);
    return model;
}

uint64_t Model::n_params() const {
    uint64_t n = 0;
    for (const auto& t : file->tensors()) n += (uint64_t)t.n_elements();
    return n;
}

int Model::packable_tensors() const {
    return (int)packable_weights(*this).size();
}

int Model::packed_tensors() const {
    int n = 0;
    for (const Tensor* t : matmul_weights(*this)) n += t->packed ? 1 : 0;
    return n;
}

uint64_t Model::weight_bytes() const {
    uint64_t n = 0;
    for (const auto& t : file->tensors()) n += t.n_bytes;
    return n;
}

}  // namespace lokal
