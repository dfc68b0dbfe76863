// Token sampling: penalties, logit bias, top-k, top-p, min-p, temperature, then a draw
// from a seeded RNG (same seed, same output). Temperature <= 0 is greedy.
//
// With a JSON schema (structured output) the sampled token must keep the text a prefix of
// a value the schema allows: the draw is made as usual and kept when the token fits (the
// common case, one check); otherwise every token that does not fit is masked out and the
// draw is made again from what is left. End-of-generation tokens fit only once the value
// is complete, and once nothing else can follow they are all that fits.
//
// A lazy constraint (json_trigger set) applies only from where the generated text shows the
// trigger (tool calls: "<tool_call>", or "{" at the start): the text before is free, the
// constraint starts at the trigger's first byte (the schema begins with it), and once the
// constrained part is complete the sampler waits for the trigger again (several calls in
// one answer). A token that brings the trigger with bytes the schema refuses leaves the
// constraint asleep (the text then is not a call).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/json_matcher.h"
#include "engine/json_schema.h"

namespace lokal {

class Vocab;

// The exponential behind every probability the sampler computes: exp(x) within 5e-7
// relative for x in [-87, 0] (tested; its arguments are <= 0), 0 below, NaN for NaN, from plain
// single-precision operations in a fixed order (sampler.cpp is built without fused multiply-adds),
// so the same bits on every machine and in sampler_exp_shifted's four-lane loop. (std::exp was a
// library call per token: about a fifth of a sample's time over 32,000-151,936 logits, perf.)
float sampler_exp(float x);
// out[i] = sampler_exp((l[i] - max) / t) for i < n, the same bits.
void sampler_exp_shifted(const float* l, float max, float t, float* out, int32_t n);

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
    std::shared_ptr<const JsonSchema> json_schema;      // structured output (null: free text)
    std::string json_trigger;            // non-empty: the constraint is lazy (see above)
    bool json_trigger_at_start = false;  // the trigger counts only at the start of the text
};

class Sampler {
  public:
    // vocab is needed (and kept) when params.json_schema is set.
    Sampler(const SamplerParams& params, int32_t n_vocab, const Vocab* vocab = nullptr);

    // Choose the next token from one row of logits [n_vocab]. The token is taken as
    // generated: a JSON constraint advances past it.
    int32_t sample(const float* logits);
    // Record a token in the penalty window (prompt tokens and each generated token).
    void accept(int32_t token);

    const SamplerParams& params() const { return p_; }

    // The JSON constraint, when there is one.
    const JsonMatcher* json() const { return json_.get(); }

  private:
    using Cand = std::pair<float, int32_t>;  // a candidate: logit, token
    int32_t draw();                          // from work_
    int32_t draw_top_k();                    // draw() with top-k cutting
    bool top_p_cut(double sum1, Cand& cut);  // see .cpp
    // The draw over the candidates ranked up to *cut (null: all), see .cpp.
    int32_t draw_buckets(float max, uint64_t u, const Cand* cut);
    double exp_terms(float max, float t);  // fills exp_, returns its sum
    void assign_buckets(float max);        // bucket_of_, see .cpp
    template <class Keep>
    void weigh_buckets(double sum, Keep&& keep);  // bucket_weight_, see .cpp
    template <class Keep>
    void sort_bucket(int b, Keep&& keep);  // bucket_members_: bucket b's candidates, ranked
    bool fits(int32_t token) const;
    int32_t sample_constrained();
    void watch_trigger(int32_t token);  // lazy constraint asleep: look for the trigger

    SamplerParams p_;
    int32_t n_vocab_;
    std::mt19937_64 rng_;
    std::deque<int32_t> history_;
    std::unordered_map<int32_t, int> counts_;
    std::vector<float> work_;
    std::vector<float> exp_;  // exp_terms: each token's softmax term
    float exp_t_ = 0;         // the temperature exp_ holds every token's term at (NaN: none)
    std::vector<uint16_t> bucket_of_;
    std::vector<uint64_t> bucket_weight_;
    std::vector<Cand> bucket_members_;  // also draw_top_k's ranked candidates
    std::vector<int32_t> top_k_ids_;
    const Vocab* vocab_ = nullptr;
    std::unique_ptr<JsonMatcher> json_;
    std::string since_trigger_;  // lazy: text generated while asleep (its recent tail)
    bool trigger_dead_ = false;  // lazy at-start trigger that can no longer come
    std::vector<uint8_t> allowed_;
};

}  // namespace lokal
