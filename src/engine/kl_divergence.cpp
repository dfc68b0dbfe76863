#include "engine/kl_divergence.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace lokal {
namespace {

constexpr char kMagic[8] = {'L', 'O', 'K', 'A', 'L', 'K', 'L', 'D'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 48;
constexpr double kFloor =
    -40.0;  // log-probabilities below this (p < 4e-18) are stored as the floor

template <class T>
void put(uint8_t* p, T v) {
    std::memcpy(p, &v, sizeof v);
}
template <class T>
T get(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Log-softmax in double; returns the argmax.
int32_t log_softmax(const float* l, int n, std::vector<double>& out) {
    out.resize((size_t)n);
    int32_t arg = 0;
    for (int i = 1; i < n; ++i)
        if (l[i] > l[arg]) arg = i;
    const double mx = l[arg];
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += std::exp((double)l[i] - mx);
    const double lse = mx + std::log(sum);
    for (int i = 0; i < n; ++i) out[i] = (double)l[i] - lse;
    return arg;
}

void encode(const float* logits, int32_t next, int n_vocab, std::vector<double>& lp, uint8_t* rec) {
    const int32_t top1 = log_softmax(logits, n_vocab, lp);
    const double hi = lp[(size_t)top1];
    double lo = hi;
    for (double v : lp) lo = std::min(lo, v);
    lo = std::max(lo, std::min(kFloor, hi));
    const double step = (hi - lo) / 65535.0;
    put<int32_t>(rec, next);
    put<int32_t>(rec + 4, top1);
    put<float>(rec + 8, (float)lo);
    put<float>(rec + 12, (float)step);
    // Quantize against the float values actually stored so decoding is consistent.
    const double flo = (float)lo, fstep = (float)step;
    uint8_t* q = rec + 16;
    for (int i = 0; i < n_vocab; ++i) {
        double c = fstep > 0 ? std::round((lp[(size_t)i] - flo) / fstep) : 0;
        c = std::clamp(c, 0.0, 65535.0);
        put<uint16_t>(q + 2 * (size_t)i, (uint16_t)c);
    }
}

// Decode a record into renormalized log-probabilities.
void decode(const uint8_t* rec, int n_vocab, std::vector<double>& lp) {
    const double lo = get<float>(rec + 8), step = get<float>(rec + 12);
    lp.resize((size_t)n_vocab);
    double mx = -INFINITY;
    for (int i = 0; i < n_vocab; ++i) {
        lp[(size_t)i] = lo + step * get<uint16_t>(rec + 16 + 2 * (size_t)i);
        mx = std::max(mx, lp[(size_t)i]);
    }
    double sum = 0;
    for (double v : lp) sum += std::exp(v - mx);
    const double lse = mx + std::log(sum);
    for (double& v : lp) v -= lse;
}

}  // namespace

KldBaseWriter::KldBaseWriter(const std::string& path, int n_vocab, int n_ctx)
    : path_(path),
      tmp_(path + ".tmp"),
      n_vocab_(n_vocab),
      n_ctx_(n_ctx),
      rec_(16 + 2 * (size_t)n_vocab) {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) throw KldError("cannot write '" + tmp_ + "': " + std::strerror(errno));
    uint8_t zero[kHeader] = {};
    if (std::fwrite(zero, 1, kHeader, f_) != kHeader) throw KldError("cannot write '" + tmp_ + "'");
}

KldBaseWriter::~KldBaseWriter() {
    if (f_) {
        std::fclose(f_);
        std::remove(tmp_.c_str());
    }
}

void KldBaseWriter::add(const float* logits, int32_t next_token) {
    std::vector<double> lp;
    encode(logits, next_token, n_vocab_, lp, rec_.data());
    if (std::fwrite(rec_.data(), 1, rec_.size(), f_) != rec_.size())
        throw KldError("cannot write '" + tmp_ + "'");
    ++n_;
}

void KldBaseWriter::finish(double nll_mean) {
    uint8_t h[kHeader] = {};
    std::memcpy(h, kMagic, 8);
    put<uint32_t>(h + 8, kVersion);
    put<uint32_t>(h + 12, (uint32_t)n_vocab_);
    put<uint32_t>(h + 16, (uint32_t)n_ctx_);
    put<uint64_t>(h + 24, n_);
    put<double>(h + 32, nll_mean);
    const bool ok = std::fseek(f_, 0, SEEK_SET) == 0 && std::fwrite(h, 1, kHeader, f_) == kHeader &&
                    std::fflush(f_) == 0;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    std::error_code ec;
    if (ok && closed) std::filesystem::rename(tmp_, path_, ec);
    if (!ok || !closed || ec) {
        std::remove(tmp_.c_str());
        throw KldError("cannot write '" + path_ + "'");
    }
}

KldBase KldBase::in_memory(int n_vocab, int n_ctx) {
    KldBase b;
    b.n_vocab = n_vocab;
    b.n_ctx = n_ctx;
    return b;
}

void KldBase::add(const float* logits, int32_t next_token) {
    const size_t at = records.size();
    records.resize(at + record_size());
    std::vector<double> lp;
    encode(logits, next_token, n_vocab, lp, records.data() + at);
    ++n_positions;
}

KldBase KldBase::load(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw KldError("cannot read KL-divergence base '" + path + "'");
    const std::string what = "KL-divergence base '" + path + "': ";
    uint8_t h[kHeader];
    if (!in.read(reinterpret_cast<char*>(h), kHeader))
        throw KldError(what + "too short for a header");
    if (std::memcmp(h, kMagic, 8) != 0)
        throw KldError(what + "not a lokal KL-divergence base (bad magic)");
    if (get<uint32_t>(h + 8) != kVersion)
        throw KldError(what + "unsupported version " + std::to_string(get<uint32_t>(h + 8)));
    KldBase b;
    const uint32_t nv = get<uint32_t>(h + 12), nc = get<uint32_t>(h + 16);
    if (nv < 2 || nv > (1u << 24))
        throw KldError(what + "bad vocabulary size " + std::to_string(nv));
    if (nc < 1 || nc > (1u << 24)) throw KldError(what + "bad context size");
    b.n_vocab = (int)nv;
    b.n_ctx = (int)nc;
    b.n_positions = get<uint64_t>(h + 24);
    b.nll_mean = get<double>(h + 32);
    if (!std::isfinite(b.nll_mean) || b.nll_mean < 0)
        throw KldError(what + "bad base log-likelihood");
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    if (ec) throw KldError(what + ec.message());
    const uint64_t rs = b.record_size();
    if (b.n_positions == 0 || b.n_positions > (size - kHeader) / rs ||
        kHeader + b.n_positions * rs != size)
        throw KldError(what + "size " + std::to_string(size) + " does not match " +
                       std::to_string(b.n_positions) + " positions of vocabulary " +
                       std::to_string(nv));
    b.records.resize(b.n_positions * rs);
    if (!in.read(reinterpret_cast<char*>(b.records.data()), (std::streamsize)b.records.size()))
        throw KldError(what + "truncated");
    for (uint64_t i = 0; i < b.n_positions; ++i) {
        const uint8_t* r = b.records.data() + i * rs;
        const int32_t next = get<int32_t>(r), top1 = get<int32_t>(r + 4);
        const float lo = get<float>(r + 8), step = get<float>(r + 12);
        if (next < 0 || next >= (int32_t)nv || top1 < 0 || top1 >= (int32_t)nv ||
            !std::isfinite(lo) || !std::isfinite(step) || lo > 0 || lo < -1e4f || step < 0 ||
            step > 1)
            throw KldError(what + "record " + std::to_string(i) + " is corrupt");
    }
    return b;
}

void KldComparer::add(const float* logits, int32_t next_token) {
    if (i_ >= base_.n_positions)
        throw KldError("the model scored more positions than the KL-divergence base holds (" +
                       std::to_string(base_.n_positions) + "): a different text or context size?");
    const uint8_t* rec = base_.records.data() + i_ * base_.record_size();
    if (get<int32_t>(rec) != next_token)
        throw KldError("position " + std::to_string(i_) +
                       " scores a different token than the KL-divergence base: a different text, "
                       "context size or vocabulary?");
    std::vector<double> base;
    decode(rec, base_.n_vocab, base);
    const int32_t top1 = log_softmax(logits, base_.n_vocab, logp_);
    double kld = 0;
    for (int i = 0; i < base_.n_vocab; ++i) {
        const double p = std::exp(base[(size_t)i]);
        if (p > 0) kld += p * (base[(size_t)i] - logp_[(size_t)i]);
    }
    kld_.push_back(std::max(0.0, kld));  // rounding can leave a tiny negative
    agree_ += top1 == get<int32_t>(rec + 4);
    nll_sum_ -= logp_[(size_t)next_token];
    const double dp = std::exp(logp_[(size_t)next_token]) - std::exp(base[(size_t)next_token]);
    dp2_sum_ += dp * dp;
    ++i_;
}

KldResult KldComparer::result() const {
    KldResult r;
    r.n = i_;
    if (i_ == 0) return r;
    if (i_ != base_.n_positions)
        throw KldError("the model scored " + std::to_string(i_) +
                       " positions, the KL-divergence base holds " +
                       std::to_string(base_.n_positions) + ": a different text or context size?");
    const double n = (double)i_;
    double sum = 0, sum2 = 0;
    for (double v : kld_) sum += v, sum2 += v * v;
    r.kld_mean = sum / n;
    r.kld_stderr =
        i_ > 1 ? std::sqrt(std::max(0.0, sum2 / n - r.kld_mean * r.kld_mean) / (n - 1)) : 0;
    std::vector<double> s = kld_;
    std::sort(s.begin(), s.end());
    auto pct = [&](double p) {
        return s[(size_t)std::min<double>(n - 1, std::floor(p * (n - 1) + 0.5))];
    };
    r.kld_median = pct(0.5);
    r.kld_p90 = pct(0.9);
    r.kld_p99 = pct(0.99);
    r.kld_max = s.back();
    r.top1_agreement = (double)agree_ / n;
    r.nll_mean = nll_sum_ / n;
    r.ppl = std::exp(r.nll_mean);
    r.base_nll_mean = base_.nll_mean;
    r.base_ppl = std::exp(base_.nll_mean);
    r.delta_ppl = r.ppl - r.base_ppl;
    r.delta_ppl_pct = 100.0 * r.delta_ppl / r.base_ppl;
    r.rms_delta_p = std::sqrt(dp2_sum_ / n);
    return r;
}

}  // namespace lokal
