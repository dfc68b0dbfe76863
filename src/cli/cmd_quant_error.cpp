// lokal quant-error: the reconstruction error of plain linear quantization,
// x_q = round((x - z) / s), x̂ = s·x_q + z, per tensor class, bit width and granularity.
// It shows on a user's own model why per-group scales beat per-channel and per-tensor
// ones: one outlier stretches the scale of everything that shares it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/quant_commands.h"
#include "gguf/gguf.h"
#include "quant/mix.h"
#include "quant/quant.h"

namespace lokal::cli {
namespace {

struct Granularity {
    std::string name;
    int64_t group = 0;  // 0: whole tensor, -1: one row (output channel), else elements per group
};

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');)
        if (!item.empty()) out.push_back(item);
    return out;
}

Granularity parse_granularity(const std::string& s) {
    if (s == "tensor") return {s, 0};
    if (s == "channel") return {s, -1};
    if (s.rfind("group", 0) == 0) {
        try {
            size_t used = 0;
            const long n = std::stol(s.substr(5), &used);
            if (used == s.size() - 5 && n > 0 && n <= (1 << 20)) return {s, n};
        } catch (...) {
        }
    }
    throw UsageError("bad granularity '" + s + "' (use tensor, channel or groupN, e.g. group32)");
}

// "blk.3.attn_q.weight" -> "attn_q"
std::string tensor_class(const std::string& name) {
    std::string c = name;
    int layer = -1, used = 0;
    if (std::sscanf(c.c_str(), "blk.%d.%n", &layer, &used) == 1 && used > 0)
        c = c.substr((size_t)used);
    if (c.size() > 7 && c.compare(c.size() - 7, 7, ".weight") == 0) c.resize(c.size() - 7);
    return c;
}

struct Err {
    double sse = 0, signal = 0;
    uint64_t n = 0;
};

// Quantize x[0, n) with one scale (and zero point when asymmetric); add the error to e.
void quantize_span(const float* x, int64_t n, int bits, bool symmetric, Err& e) {
    float lo = x[0], hi = x[0], amax = 0;
    for (int64_t i = 0; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
        amax = std::max(amax, std::fabs(x[i]));
    }
    double s, z, qmin, qmax;
    if (symmetric) {
        qmax = std::ldexp(1.0, bits - 1) - 1;  // e.g. 4 bits: [-7, 7], zero exactly representable
        if (qmax < 1) qmax = 1;                // 1 bit: {-1, 0, 1} would need 2; keep sign only
        qmin = -qmax;
        s = amax / qmax;
        z = 0;
    } else {
        qmin = 0;
        qmax = std::ldexp(1.0, bits) - 1;
        s = (hi - lo) / qmax;
        z = lo;
    }
    for (int64_t i = 0; i < n; ++i) {
        double q = s > 0 ? std::clamp(std::round((x[i] - z) / s), qmin, qmax) : 0;
        const double d = s * q + z - x[i];
        e.sse += d * d;
        e.signal += (double)x[i] * x[i];
    }
    e.n += (uint64_t)n;
}

void tensor_error(const std::vector<float>& w, int64_t ncols, int bits, const Granularity& g,
                  bool symmetric, Err& e) {
    const int64_t n = (int64_t)w.size();
    if (g.group == 0) return quantize_span(w.data(), n, bits, symmetric, e);
    const int64_t span = g.group < 0 ? ncols : g.group;
    for (int64_t r = 0; r < n; r += ncols)
        for (int64_t i = 0; i < ncols; i += span)
            quantize_span(w.data() + r + i, std::min(span, ncols - i), bits, symmetric, e);
}

}  // namespace

void register_quant_error(CLI::App& app) {
    struct Opts {
        std::string model, bits = "8,4,3,2", granularity = "tensor,channel,group32,group128", store;
        bool symmetric = false, asymmetric = false, json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("quant-error",
                                       "Reconstruction error (RMSE, SNR dB) of linear quantization "
                                       "per tensor class, bits and granularity");
    cmd->add_option("-m,--model", o->model, "GGUF file or stored model name")->required();
    cmd->add_option("--bits", o->bits, "Bit widths, comma-separated")->capture_default_str();
    cmd->add_option("--granularity", o->granularity, "Scale granularities: tensor, channel, groupN")
        ->capture_default_str();
    auto* sym = cmd->add_flag("--symmetric", o->symmetric, "z = 0, s = absmax / (2^(b-1) - 1)");
    cmd->add_flag("--asymmetric", o->asymmetric, "z = min, s = (max - min) / (2^b - 1) (default)")
        ->excludes(sym);
    cmd->add_flag("--json", o->json, "Print one JSON object");
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->callback([o] {
        std::vector<int> bits;
        for (const std::string& b : split(o->bits)) {
            int v = 0;
            try {
                size_t used = 0;
                v = std::stoi(b, &used);
                if (used != b.size()) v = 0;
            } catch (...) {
            }
            if (v < 1 || v > 16) throw UsageError("bad bit width '" + b + "' (1 to 16)");
            bits.push_back(v);
        }
        std::vector<Granularity> grans;
        for (const std::string& g : split(o->granularity)) grans.push_back(parse_granularity(g));
        if (bits.empty() || grans.empty())
            throw UsageError("--bits and --granularity need at least one value");
        LoadedModel lm = load_model(o->model, o->store, /*vocab_only=*/true);
        const gguf::File& f = lm.file();

        // class -> [bits][granularity] error, in first-seen order
        std::vector<std::string> classes;
        std::map<std::string, std::vector<std::vector<Err>>> errs;
        std::map<std::string, uint64_t> params;
        std::vector<std::vector<Err>> total(bits.size(), std::vector<Err>(grans.size()));
        std::vector<float> w;
        for (const gguf::TensorInfo& t : f.tensors()) {
            MixTensor m;
            m.name = t.name;
            m.n_dims = t.n_dims;
            if (!tensor_is_quantizable(m) || !type_traits(t.type).is_supported) continue;
            const std::string c = tensor_class(t.name);
            if (!errs.count(c)) {
                classes.push_back(c);
                errs[c].assign(bits.size(), std::vector<Err>(grans.size()));
            }
            params[c] += (uint64_t)t.n_elements();
            w.resize((size_t)t.n_elements());
            const size_t rb = row_size(t.type, t.ne[0]);
            for (int64_t r = 0; r < t.n_rows(); ++r)
                dequantize_row(t.type, t.data + r * rb, w.data() + r * t.ne[0], t.ne[0]);
            for (size_t b = 0; b < bits.size(); ++b)
                for (size_t g = 0; g < grans.size(); ++g) {
                    Err e;
                    tensor_error(w, t.ne[0], bits[b], grans[g], o->symmetric, e);
                    for (Err* dst : {&errs[c][b][g], &total[b][g]}) {
                        dst->sse += e.sse;
                        dst->signal += e.signal;
                        dst->n += e.n;
                    }
                }
        }
        if (classes.empty()) throw UsageError("the model has no weight matrices to measure");
        classes.push_back("all");
        errs["all"] = total;
        for (const std::string& c : classes)
            if (c != "all") params["all"] += params[c];

        auto rmse = [](const Err& e) { return e.n ? std::sqrt(e.sse / (double)e.n) : 0.0; };
        auto snr = [](const Err& e) {
            return e.sse > 0 ? 10 * std::log10(e.signal / e.sse) : INFINITY;
        };
        const char* mode = o->symmetric ? "symmetric" : "asymmetric";
        if (o->json) {
            nlohmann::json j = {
                {"model", lm.path}, {"mode", mode}, {"classes", nlohmann::json::array()}};
            for (const std::string& c : classes) {
                nlohmann::json jc = {
                    {"class", c}, {"parameters", params[c]}, {"results", nlohmann::json::array()}};
                for (size_t b = 0; b < bits.size(); ++b)
                    for (size_t g = 0; g < grans.size(); ++g) {
                        const Err& e = errs[c][b][g];
                        const double s = snr(e);
                        jc["results"].push_back(
                            {{"bits", bits[b]},
                             {"granularity", grans[g].name},
                             {"rmse", rmse(e)},
                             {"snr_db",
                              std::isfinite(s) ? nlohmann::json(s) : nlohmann::json(nullptr)}});
                    }
                j["classes"].push_back(jc);
            }
            std::printf("%s\n", j.dump().c_str());
            return;
        }
        std::printf("%s linear quantization of %s: SNR dB (RMSE) per tensor class\n", mode,
                    lm.path.c_str());
        for (const std::string& c : classes) {
            std::printf("\n%s (%llu weights)\n  %-5s", c.c_str(), (unsigned long long)params[c],
                        "bits");
            for (const Granularity& g : grans) std::printf(" %22s", g.name.c_str());
            std::printf("\n");
            for (size_t b = 0; b < bits.size(); ++b) {
                std::printf("  %-5d", bits[b]);
                for (size_t g = 0; g < grans.size(); ++g) {
                    char cell[64];
                    std::snprintf(cell, sizeof cell, "%6.2f (%.3g)", snr(errs[c][b][g]),
                                  rmse(errs[c][b][g]));
                    std::printf(" %22s", cell);
                }
                std::printf("\n");
            }
        }
    });
}

}  // namespace lokal::cli
