// KL-divergence of a (quantized) model against a base model, position by position over
// the tokens perplexity scores: KLD = sum_i p_base(i) * (log p_base(i) - log p_model(i)).
//
// The base logits are saved once ("--kl-divergence-base") in lokal's own compact file:
//
//   header (48 bytes, little-endian):
//     char[8]  magic "LOKALKLD"
//     u32      version (1)
//     u32      n_vocab
//     u32      n_ctx           context the positions were scored with
//     u32      reserved (0)
//     u64      n_positions
//     f64      nll_mean        the base model's mean negative log-likelihood (for ΔPPL)
//     u64      reserved (0)
//   n_positions records of 16 + 2 * n_vocab bytes:
//     i32 next_token, i32 top1 (the base's argmax), f32 lo, f32 step,
//     u16 q[n_vocab]           log p(i) ≈ lo + q[i] * step
//
// 16-bit log-probabilities over [max(min log p, -40), max log p] keep the error below
// 4e-4 nats per entry; the reader renormalizes each row, so the error a stored base adds
// to a KLD is second order (orders of magnitude below what a Q8_0 model scores). The file
// is untrusted input: the reader checks the size against the header and every field.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lokal {

struct KldError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Streams base rows to a file (through a temporary name; finish() publishes it).
class KldBaseWriter {
  public:
    KldBaseWriter(const std::string& path, int n_vocab, int n_ctx);
    ~KldBaseWriter();
    void add(const float* logits, int32_t next_token);
    void finish(double nll_mean);

  private:
    std::string path_, tmp_;
    std::FILE* f_ = nullptr;
    int n_vocab_, n_ctx_;
    uint64_t n_ = 0;
    std::vector<uint8_t> rec_;
};

struct KldBase {
    int n_vocab = 0;
    int n_ctx = 0;
    double nll_mean = 0;
    uint64_t n_positions = 0;
    std::vector<uint8_t> records;  // n_positions * record_size()

    size_t record_size() const { return 16 + 2 * (size_t)n_vocab; }
    static KldBase load(const std::string& path);
    // Build one in memory (quant-report) from rows added the same way as the writer's.
    void add(const float* logits, int32_t next_token);
    static KldBase in_memory(int n_vocab, int n_ctx);
};

struct KldResult {
    uint64_t n = 0;
    double kld_mean = 0, kld_stderr = 0, kld_median = 0, kld_p90 = 0, kld_p99 = 0, kld_max = 0;
    double top1_agreement = 0;  // fraction of positions where both models' argmax agree
    double nll_mean = 0, ppl = 0;
    double base_nll_mean = 0, base_ppl = 0;
    double delta_ppl = 0, delta_ppl_pct = 0;
    double rms_delta_p = 0;  // RMS change of the correct token's probability
};

// Compares a model's scored rows, in order, against a base.
class KldComparer {
  public:
    explicit KldComparer(const KldBase& base) : base_(base) {}
    // Throws KldError when rows run past the base or the next token differs (another text).
    void add(const float* logits, int32_t next_token);
    KldResult result() const;

  private:
    const KldBase& base_;
    uint64_t i_ = 0;
    std::vector<double> kld_;
    uint64_t agree_ = 0;
    double nll_sum_ = 0, dp2_sum_ = 0;
    std::vector<double> logp_;
};

}  // namespace lokal
