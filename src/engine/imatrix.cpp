#include "engine/imatrix.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/context.h"
#include "gguf/gguf.h"

namespace lokal {
namespace {

constexpr const char* kSum2 = ".in_sum2";
constexpr const char* kCounts = ".counts";

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool valid_value(double v) {
    return std::isfinite(v) && v >= 0;
}

Imatrix load_gguf(const std::string& path) {
    std::unique_ptr<gguf::File> f;
    try {
        f = gguf::File::open(path);
    } catch (const gguf::Error& e) {
        throw ImatrixError("imatrix '" + path + "': " + e.what());
    }
    Imatrix im;
    if (auto t = f->get_string("general.type"); !t || *t != "imatrix")
        throw ImatrixError("imatrix '" + path +
                           "': a GGUF file, but general.type is not \"imatrix\"");
    if (auto c = f->get_uint("imatrix.chunk_count"))
        im.chunk_count = (int)std::min<uint64_t>(*c, 1u << 30);
    if (auto c = f->get_uint("imatrix.chunk_size"))
        im.chunk_size = (int)std::min<uint64_t>(*c, 1u << 30);
    if (const gguf::Value* d = f->get_array("imatrix.datasets"))
        for (auto s : d->strings) im.datasets.emplace_back(s);
    for (const gguf::TensorInfo& t : f->tensors()) {
        if (!ends_with(t.name, kSum2)) continue;
        const std::string name = t.name.substr(0, t.name.size() - std::strlen(kSum2));
        const gguf::TensorInfo* c = f->find_tensor(name + kCounts);
        if (!c)
            throw ImatrixError("imatrix '" + path + "': " + t.name + " has no " + name + kCounts);
        if (t.type != TensorType::F32 || c->type != TensorType::F32 || t.n_dims > 2 ||
            c->n_dims > 2 || c->ne[0] != 1 || c->ne[1] != t.ne[1])
            throw ImatrixError("imatrix '" + path + "': tensors of " + name +
                               " have unexpected types or shapes");
        ImatrixEntry e;
        e.n_cols = t.ne[0];
        const int64_t n_mat = t.ne[1];
        e.sum2.resize((size_t)(n_mat * e.n_cols));
        e.counts.resize((size_t)n_mat);
        const float* s = reinterpret_cast<const float*>(t.data);
        const float* n = reinterpret_cast<const float*>(c->data);
        for (size_t i = 0; i < e.sum2.size(); ++i) {
            float v;
            std::memcpy(&v, s + i, 4);
            e.sum2[i] = v;
        }
        for (size_t i = 0; i < e.counts.size(); ++i) {
            float v;
            std::memcpy(&v, n + i, 4);
            e.counts[i] = v;
        }
        for (double v : e.sum2)
            if (!valid_value(v))
                throw ImatrixError("imatrix '" + path + "': " + name +
                                   " has a negative or non-finite value");
        for (double v : e.counts)
            if (!valid_value(v))
                throw ImatrixError("imatrix '" + path + "': " + name + " has a bad count");
        im.entries[name] = std::move(e);
    }
    if (im.entries.empty()) throw ImatrixError("imatrix '" + path + "' has no entries");
    return im;
}

// A bounds-checked reader over the whole (small) legacy file.
struct Cursor {
    const std::string& buf;
    size_t pos = 0;
    const std::string& path;
    void need(size_t n) {
        if (buf.size() - pos < n)
            throw ImatrixError("imatrix '" + path + "' is truncated at byte " +
                               std::to_string(pos));
    }
    int32_t i32() {
        need(4);
        int32_t v;
        std::memcpy(&v, buf.data() + pos, 4);
        pos += 4;
        return v;
    }
};

Imatrix load_dat(const std::string& path, const std::string& buf) {
    Cursor c{buf, 0, path};
    Imatrix im;
    const int32_t n = c.i32();
    // Each entry takes at least 16 bytes: a count beyond that is a corrupt or foreign file.
    if (n <= 0 || (size_t)n > buf.size() / 16)
        throw ImatrixError("imatrix '" + path + "': bad entry count " + std::to_string(n));
    for (int32_t k = 0; k < n; ++k) {
        const int32_t len = c.i32();
        if (len <= 0 || len > 4096) throw ImatrixError("imatrix '" + path + "': bad name length");
        c.need((size_t)len);
        std::string name = buf.substr(c.pos, (size_t)len);
        c.pos += (size_t)len;
        const int32_t ncall = c.i32();
        const int32_t nval = c.i32();
        if (ncall < 0 || nval <= 0)
            throw ImatrixError("imatrix '" + path + "': bad counts for " + name);
        c.need((size_t)nval * 4);
        ImatrixEntry e;
        e.n_cols = nval;  // experts are concatenated; importance() splits by the tensor's shape
        e.sum2.resize((size_t)nval);
        for (int32_t j = 0; j < nval; ++j) {
            float v;
            std::memcpy(&v, buf.data() + c.pos + 4 * (size_t)j, 4);
            if (!valid_value(v))
                throw ImatrixError("imatrix '" + path + "': " + name +
                                   " has a negative or non-finite value");
            e.sum2[j] = ncall > 0 ? v / (double)ncall : v;  // stored as mean * ncall
        }
        c.pos += (size_t)nval * 4;
        e.counts = {1.0};
        im.entries[std::move(name)] = std::move(e);
    }
    // Optional trailer: chunk count and dataset name.
    if (buf.size() - c.pos >= 4) {
        const int32_t chunks = c.i32();
        if (chunks >= 0) im.chunk_count = chunks;
        if (buf.size() - c.pos >= 4) {
            const int32_t len = c.i32();
            if (len > 0 && len <= 4096 && buf.size() - c.pos >= (size_t)len)
                im.datasets.push_back(buf.substr(c.pos, (size_t)len));
        }
    }
    return im;
}

}  // namespace

std::vector<float> Imatrix::importance(const std::string& name, int64_t n_cols, int64_t n_mat,
                                       int64_t mat) const {
    auto it = entries.find(name);
    if (it == entries.end()) return {};
    const ImatrixEntry& e = it->second;
    if ((int64_t)e.sum2.size() != n_cols * n_mat)
        throw ImatrixError("imatrix entry for " + name + " has " + std::to_string(e.sum2.size()) +
                           " values, the tensor needs " + std::to_string(n_cols * n_mat) +
                           " (a different model?)");
    double count = 1;
    if (e.n_mat() == n_mat)
        count = e.counts[(size_t)mat];
    else if (e.n_mat() == 1)
        count = e.counts[0];
    else
        throw ImatrixError("imatrix entry for " + name + " has " + std::to_string(e.n_mat()) +
                           " matrices, the tensor " + std::to_string(n_mat));
    if (count <= 0) return {};
    std::vector<float> out((size_t)n_cols);
    bool any = false;
    for (int64_t j = 0; j < n_cols; ++j) {
        out[j] = (float)(e.sum2[(size_t)(mat * n_cols + j)] / count);
        any = any || out[j] > 0;
    }
    if (!any) return {};  // all-zero weights would make every scale choice equal: use none
    return out;
}

void Imatrix::save_gguf(const std::string& path) const {
    gguf::Writer w;
    w.set_string("general.type", "imatrix");
    w.set_array_string("imatrix.datasets", datasets);
    w.set_u32("imatrix.chunk_count", (uint32_t)chunk_count);
    w.set_u32("imatrix.chunk_size", (uint32_t)chunk_size);
    // The writer keeps pointers until write(): hold the float copies here.
    std::vector<std::vector<float>> data;
    data.reserve(entries.size() * 2);
    for (const auto& [name, e] : entries) {
        data.emplace_back(e.sum2.begin(), e.sum2.end());
        w.add_tensor(name + kSum2, TensorType::F32, {e.n_cols, e.n_mat()}, data.back().data());
        data.emplace_back(e.counts.begin(), e.counts.end());
        w.add_tensor(name + kCounts, TensorType::F32, {1, e.n_mat()}, data.back().data());
    }
    w.write(path);
}

void Imatrix::save_dat(const std::string& path) const {
    std::string out;
    auto put32 = [&](int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
    put32((int32_t)entries.size());
    const int32_t ncall = std::max(1, chunk_count);
    for (const auto& [name, e] : entries) {
        put32((int32_t)name.size());
        out += name;
        put32(ncall);
        put32((int32_t)e.sum2.size());
        for (int64_t m = 0; m < e.n_mat(); ++m)
            for (int64_t j = 0; j < e.n_cols; ++j) {
                const double c = e.counts[(size_t)m];
                const float v =
                    c > 0 ? (float)(e.sum2[(size_t)(m * e.n_cols + j)] / c * ncall) : 0.0f;
                out.append(reinterpret_cast<const char*>(&v), 4);
            }
    }
    put32(chunk_count);
    const std::string ds = datasets.empty() ? "" : datasets[0];
    put32((int32_t)ds.size());
    out += ds;
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f.write(out.data(), (std::streamsize)out.size()) || !f.flush())
            throw ImatrixError("cannot write '" + tmp + "'");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) throw ImatrixError("cannot write '" + path + "': " + ec.message());
}

Imatrix Imatrix::load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ImatrixError("cannot read imatrix '" + path + "'");
    char magic[4] = {};
    in.read(magic, 4);
    if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return load_gguf(path);
    in.seekg(0);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string buf = ss.str();
    if (buf.size() > (1ull << 32)) throw ImatrixError("imatrix '" + path + "' is too large");
    return load_dat(path, buf);
}

Imatrix compute_imatrix(const Model& model, int n_threads, const std::vector<int32_t>& tokens,
                        const ImatrixOptions& opts) {
    const int n_ctx = opts.n_ctx;
    if (n_ctx < 2) throw ContextError("imatrix needs a context of at least 2 tokens");
    int n_chunks = (int)(tokens.size() / (size_t)n_ctx);
    if (opts.max_chunks > 0) n_chunks = std::min(n_chunks, opts.max_chunks);
    if (n_chunks == 0)
        throw ContextError("the text has " + std::to_string(tokens.size()) +
                           " tokens, fewer than the context of " + std::to_string(n_ctx) +
                           " (use a longer text or a smaller -c)");
    ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.n_threads = n_threads;
    cp.n_batch = n_ctx;
    Context ctx(model, cp);

    Imatrix im;
    im.chunk_size = n_ctx;
    if (!opts.dataset.empty()) im.datasets.push_back(opts.dataset);
    // The forward pass calls the observer from the calling thread, once per matmul, so the
    // sums need no locking. Accumulate in double: a long text sums millions of squares.
    ctx.forward().observer = [&](const Tensor& w, int64_t expert, const float* x, int64_t n) {
        const bool in_layer = w.name.rfind("blk.", 0) == 0;
        if (!in_layer && !(opts.process_output && w.name == "output.weight")) return;
        ImatrixEntry& e = im.entries[w.name];
        const int64_t cols = w.ne[0];
        const int64_t n_mat = w.ne[2] > 1 ? w.ne[2] : 1;
        if (e.n_cols == 0) {
            e.n_cols = cols;
            e.sum2.assign((size_t)(cols * n_mat), 0.0);
            e.counts.assign((size_t)n_mat, 0.0);
        }
        double* s = e.sum2.data() + expert * cols;
        for (int64_t t = 0; t < n; ++t) {
            const float* row = x + t * cols;
            for (int64_t j = 0; j < cols; ++j) s[j] += (double)row[j] * row[j];
        }
        e.counts[(size_t)expert] += (double)n;
    };
    std::vector<float> logits;
    for (int c = 0; c < n_chunks; ++c) {
        std::vector<int32_t> chunk(tokens.begin() + (ptrdiff_t)c * n_ctx,
                                   tokens.begin() + (ptrdiff_t)(c + 1) * n_ctx);
        if (opts.bos >= 0) chunk[0] = opts.bos;
        const int32_t seq = ctx.cache().create_sequence();
        ctx.eval(seq, chunk, false, logits);
        ctx.cache().free_sequence(seq);
        im.chunk_count = c + 1;
        if (opts.progress) opts.progress(c + 1, n_chunks);
    }
    ctx.forward().observer = nullptr;
    return im;
}

}  // namespace lokal
