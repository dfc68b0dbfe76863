#include "cli/quantize_model.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cli/common.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "quant/quantize.h"

namespace lokal::cli {
namespace {

MixModel mix_model(const gguf::File& f) {
    MixModel m;
    m.arch = std::string(f.get_string("general.architecture").value_or(""));
    auto u = [&](const std::string& key) {
        return (int)f.get_uint(m.arch + "." + key).value_or(0);
    };
    m.n_layer = u("block_count");
    m.n_head = u("attention.head_count");
    m.n_head_kv =
        f.find(m.arch + ".attention.head_count_kv") ? u("attention.head_count_kv") : m.n_head;
    m.n_expert = u("expert_count");
    if (m.n_layer == 0) {  // no block_count: count the layers the tensor names mention
        for (const auto& t : f.tensors()) {
            int l = -1;
            if (std::sscanf(t.name.c_str(), "blk.%d.", &l) == 1)
                m.n_layer = std::max(m.n_layer, l + 1);
        }
    }
    return m;
}

void draw_progress(int done, int total, const std::string& what) {
    constexpr int kWidth = 30;
    const int fill = total ? done * kWidth / total : kWidth;
    std::string bar(kWidth, ' ');
    std::fill(bar.begin(), bar.begin() + fill, '#');
    std::fprintf(stderr, "\rquantizing [%s] %3d/%d %-40.40s", bar.c_str(), done, total,
                 what.c_str());
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
}

// Convert one tensor, rows spread over threads. Each row is quantized on its own from the
// same input, so the bytes do not depend on the thread count.
void convert_tensor(const gguf::TensorInfo& t, TensorType out_type,
                    const std::vector<std::vector<float>>& importance, uint8_t* dst,
                    int n_threads) {
    const int64_t ncols = t.ne[0];
    const int64_t rows = t.n_rows();
    const int64_t rows_per_mat = t.ne[1];
    const size_t in_row = row_size(t.type, ncols), out_row = row_size(out_type, ncols);
    const int64_t chunk = std::max<int64_t>(1, 16384 / ncols);
    std::atomic<int64_t> next{0};
    auto work = [&] {
        std::vector<float> buf((size_t)ncols);
        for (;;) {
            const int64_t r0 = next.fetch_add(chunk);
            if (r0 >= rows) break;
            const int64_t r1 = std::min(rows, r0 + chunk);
            for (int64_t r = r0; r < r1; ++r) {
                const uint8_t* src = t.data + (size_t)r * in_row;
                const float* x = buf.data();
                if (t.type == TensorType::F32 &&
                    reinterpret_cast<uintptr_t>(src) % alignof(float) == 0)
                    x = reinterpret_cast<const float*>(src);
                else if (t.type == TensorType::F32)
                    std::memcpy(buf.data(), src, in_row);
                else
                    dequantize_row(t.type, src, buf.data(), ncols);
                const int64_t mat = r / rows_per_mat;  // expert slice of a 3-D tensor
                const float* qw =
                    importance.size() > (size_t)mat && !importance[(size_t)mat].empty()
                        ? importance[(size_t)mat].data()
                        : nullptr;
                quantize_row(out_type, x, dst + (size_t)r * out_row, ncols, qw);
            }
        }
    };
    const int n = (int)std::clamp<int64_t>(rows / chunk, 1, n_threads);
    std::vector<std::thread> pool;
    for (int i = 1; i < n; ++i) pool.emplace_back(work);
    work();
    for (auto& th : pool) th.join();
}

}  // namespace

QuantizeSummary quantize_model(const QuantizeJob& job) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!job.preset) throw UsageError("no quantization type given");
    auto in = gguf::File::open(job.input);
    const MixModel model = mix_model(*in);

    std::vector<const gguf::TensorInfo*> order;
    std::vector<MixTensor> all;
    for (const auto& t : in->tensors()) {
        order.push_back(&t);
        MixTensor m;
        m.name = t.name;
        m.n_dims = t.n_dims;
        std::copy(t.ne, t.ne + 4, m.ne);
        m.type = t.type;
        all.push_back(std::move(m));
    }
    std::stable_sort(order.begin(), order.end(),
                     [](const gguf::TensorInfo* a, const gguf::TensorInfo* b) {
                         return quantization_order_less(a->name, b->name);
                     });
    MixPlanner planner(*job.preset, model, all, job.imatrix != nullptr);

    gguf::Writer w;
    for (const gguf::KeyValue& kv : in->metadata()) w.copy_value(kv.key, kv.value);
    w.set_alignment(in->alignment());
    // Appended last, as the reference does, so the files it writes and ours line up.
    w.remove("general.quantization_version");
    w.remove("general.file_type");
    w.set_u32("general.quantization_version", 2);
    w.set_u32("general.file_type", (uint32_t)job.preset->file_type);
    if (job.imatrix) {
        w.set_string("quantize.imatrix.file", job.imatrix_path);
        if (!job.imatrix->datasets.empty())
            w.set_string("quantize.imatrix.dataset", job.imatrix->datasets[0]);
        w.set_i32("quantize.imatrix.entries_count", (int32_t)job.imatrix->entries.size());
        w.set_i32("quantize.imatrix.chunks_count", job.imatrix->chunk_count);
    }

    const int n_threads =
        job.threads > 0 ? job.threads : (int)std::max(1u, std::thread::hardware_concurrency());
    QuantizeSummary s;
    s.n_tensors = (int)order.size();
    std::vector<std::vector<uint8_t>> buffers;
    buffers.reserve(order.size());
    bool warned_requant = false;
    int done = 0;
    for (const gguf::TensorInfo* t : order) {
        MixTensor m;
        m.name = t->name;
        m.n_dims = t->n_dims;
        std::copy(t->ne, t->ne + 4, m.ne);
        m.type = t->type;
        const MixChoice c = planner.choose(m);
        if (!c.fallback.empty() && job.warn) job.warn(t->name + ": " + c.fallback);
        std::vector<int64_t> ne(t->ne, t->ne + std::max(1, t->n_dims));
        s.n_elements += (uint64_t)t->n_elements();
        s.types[type_name(c.type)]++;
        if (!c.convert) {
            w.add_tensor(t->name, t->type, ne, t->data);
            s.tensor_bytes += t->n_bytes;
        } else {
            if (!can_quantize(c.type))
                throw UsageError(std::string("cannot produce tensor type ") + type_name(c.type));
            if (!type_traits(t->type).is_supported)
                throw UsageError("tensor '" + t->name + "' has type " + type_name(t->type) +
                                 ", which lokal cannot read");
            if (type_traits(t->type).is_quantized && !warned_requant && job.warn) {
                job.warn("the input is already quantized (" + std::string(type_name(t->type)) +
                         "): requantizing through dequantization loses quality twice; start from "
                         "F32/F16/BF16 if you can");
                warned_requant = true;
            }
            std::vector<std::vector<float>> importance;
            if (job.imatrix) {
                const int64_t n_mat = t->ne[2] * t->ne[3];
                for (int64_t e = 0; e < n_mat; ++e)
                    importance.push_back(job.imatrix->importance(t->name, t->ne[0], n_mat, e));
                bool any = false;
                for (const auto& v : importance) any = any || !v.empty();
                if (any)
                    ++s.n_with_importance;
                else
                    importance.clear();
            }
            buffers.emplace_back(row_size(c.type, t->ne[0]) * (size_t)t->n_rows());
            convert_tensor(*t, c.type, importance, buffers.back().data(), n_threads);
            w.add_tensor(t->name, c.type, ne, buffers.back().data());
            s.tensor_bytes += buffers.back().size();
            ++s.n_converted;
        }
        ++done;
        if (job.progress) draw_progress(done, (int)order.size(), t->name);
    }
    s.n_fallback = planner.n_fallback();
    std::filesystem::path out_path(job.output);
    w.write(job.output);
    s.input_bytes = in->file_size();
    s.output_bytes = std::filesystem::file_size(out_path);
    s.bits_per_weight = s.n_elements ? 8.0 * (double)s.tensor_bytes / (double)s.n_elements : 0;
    s.seconds = ms_since(t0) / 1000.0;
    return s;
}

}  // namespace lokal::cli
