// Token sampling: penalties, logit bias, top-k, top-p, min-p, temperature, then a draw
// from a seeded RNG (same seed, same output). Temperature <= 0 is greedy.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lokal {

struct SamplerParams {
    float temperature = 0.8f;
    int top_k = 40;               // <= 0: off
    float top_p = 0.95f;          // >= 1: off
    float min_p = 0.05f;          // <= 0: off
    float repeat_penalty = 1.0f;  // 1: off. logit / r when positive, * r when negative
    float frequency_penalty = 0;  // minus count * f
    float presence_penalty = 0;   // minus p once a token appeared
    int penalty_last_n = 64;      // window of recent tokens the penalties look at (-1: all)
    uint64_t seed = 0xC0FFEE;
    std::vector<std::pair<int32_t, float>> logit_bias;  // added to the logit before anything else
};

struct TokenProb {
    int32_t token;
    float prob;
};

class Sampler {
  public:
    Sampler(const SamplerParams& params, int32_t n_vocab);

    // Choose the next token from one row of logits [n_vocab].
    int32_t sample(const float* logits);
    // Record a token in the penalty window (prompt tokens and each generated token).
    void accept(int32_t token);

    // The candidates left after filtering at the last sample(), with their probabilities
    // (for logprobs); greedy leaves only the argmax.
    const std::vector<TokenProb>& last_candidates() const { return cands_; }
    const SamplerParams& params() const { return p_; }

  private:
    SamplerParams p_;
    int32_t n_vocab_;
    std::mt19937_64 rng_;
    std::deque<int32_t> history_;
    std::unordered_map<int32_t, int> counts_;
    std::vector<float> work_;
    std::vector<TokenProb> cands_;
};

}  // namespace lokal
