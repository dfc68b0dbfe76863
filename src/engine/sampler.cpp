#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <stdexcept>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "tokenizer/token_trie.h"
#include "tokenizer/vocab.h"

namespace lokal {

namespace {

// sampler_exp's steps (Cephes' expf): n = x / ln 2 rounded (the 1.5 * 2^23 trick), r = x -
// n ln 2 in two parts, exp(r) by a degree-7 polynomial, times 2^n built in the exponent
// field. sampler_exp_shifted repeats them lane by lane in the same order.
constexpr float kExpLo = -87.0f, kExpHi = 88.0f, kLog2e = 1.44269504088896341f,
                kRound = 12582912.0f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

// The index the serial rule "best = 0; for each i, if x[i] > x[best] then best = i" picks:
// the first maximum, NaNs never chosen (a NaN at 0 is never replaced). Two passes the
// compiler vectorizes, the largest value in 16 independent lanes and then its first index,
// instead of one loop whose every step waits on the last comparison: it runs on the
// server's scheduler thread for every sequence of every step while the other workers wait
// (32,000 logits: ~1.8% of an 8-stream server's samples before).
int32_t first_argmax(const float* x, int32_t n) {
    if (n <= 0 || std::isnan(x[0])) return 0;
    constexpr int W = 16;
    float lane[W];
    std::fill(lane, lane + W, -std::numeric_limits<float>::infinity());
    int32_t i = 0;
    for (; i + W <= n; i += W)
        for (int j = 0; j < W; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
    float best = lane[0];
    for (int j = 1; j < W; ++j) best = lane[j] > best ? lane[j] : best;
    for (; i < n; ++i) best = x[i] > best ? x[i] : best;
    for (i = 0; i < n; ++i)
        if (x[i] == best) return i;
    return 0;  // not reached: best is one of the values (x[0] is not NaN)
}

// A candidate's share of a draw: its probability in units of 2^-53, truncated. The draw
// compares the uniform 53-bit integer with running sums of these, and integer sums do not
// depend on the order they are taken in, so whole groups of candidates can be skipped by
// their total.
inline uint64_t draw_weight(float p) {
    return p > 0 ? (uint64_t)((double)p * 9007199254740992.0) : 0;  // NaN: none
}

// A candidate: its logit and token id.
using Cand = std::pair<float, int32_t>;

// The sampler's ranking: logit descending, then token id; NaN after every number (a strict
// total order, so the ranking is unique whatever the logits hold).
struct Better {
    bool operator()(const Cand& a, const Cand& b) const {
        if (a.first > b.first) return true;
        if (a.first < b.first) return false;
        const bool an = std::isnan(a.first), bn = std::isnan(b.first);
        if (an != bn) return bn;     // any number before a NaN
        return a.second < b.second;  // equal logits, or both NaN
    }
};

// Rank buckets: a token's logit distance below the best, in steps of 1/64 down to 64 below,
// then one bucket for the rest (-inf and NaN included). Buckets follow the ranking (a token
// in an earlier bucket ranks before every token in a later one), so sums of integer weights
// per bucket find the bucket a running total crosses in, and only that bucket is sorted.
// (Steps of 1/16 left thousands of a flat distribution's 151,936 logits in one bucket to
// sort: top-p 0.9 over them 2.5 ms a sample against 2.0 with 1/64; 1/256 1.85 ms, with
// 16,385 buckets to clear per pass.)
constexpr int kBucketSteps = 64, kLastBucket = 64 * kBucketSteps;
inline int rank_bucket(float max, float v) {
    const float d = max - v;
    return d < 64.0f ? (int)(d * (float)kBucketSteps) : kLastBucket;  // NaN: the last
}

}  // namespace

float sampler_exp(float x) {
    if (!(x >= kExpLo)) return x != x ? x : 0.0f;  // NaN stays NaN; -inf and below: 0
    const float xc = x > kExpHi ? kExpHi : x;
    const float nf = (xc * kLog2e + kRound) - kRound;
    float r = xc - nf * kLn2Hi;
    r = r - nf * kLn2Lo;
    float p = kExpP[0];
    for (int j = 1; j < 6; ++j) p = p * r + kExpP[j];
    const float y = (p * (r * r) + r) + 1.0f;
    const uint32_t e = (uint32_t)((int32_t)nf + 127) << 23;
    float scale;
    std::memcpy(&scale, &e, sizeof scale);
    return y * scale;
}

// Four lanes at a time where SSE2 is there (every x86-64): sampler_exp's operations.
void sampler_exp_shifted(const float* l, float max, float t, float* out, int32_t n) {
    int32_t i = 0;
#if defined(__SSE2__)
    const __m128 vmax = _mm_set1_ps(max), vt = _mm_set1_ps(t), lo = _mm_set1_ps(kExpLo),
                 hi = _mm_set1_ps(kExpHi);
    for (; i + 4 <= n; i += 4) {
        const __m128 x = _mm_div_ps(_mm_sub_ps(_mm_loadu_ps(l + i), vmax), vt);
        const __m128 xc = _mm_min_ps(_mm_max_ps(x, lo), hi);  // NaN lanes: kExpLo (fixed below)
        const __m128 k = _mm_add_ps(_mm_mul_ps(xc, _mm_set1_ps(kLog2e)), _mm_set1_ps(kRound));
        const __m128 nf = _mm_sub_ps(k, _mm_set1_ps(kRound));
        __m128 r = _mm_sub_ps(xc, _mm_mul_ps(nf, _mm_set1_ps(kLn2Hi)));
        r = _mm_sub_ps(r, _mm_mul_ps(nf, _mm_set1_ps(kLn2Lo)));
        __m128 p = _mm_set1_ps(kExpP[0]);
        for (int j = 1; j < 6; ++j) p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(kExpP[j]));
        const __m128 y =
            _mm_add_ps(_mm_add_ps(_mm_mul_ps(p, _mm_mul_ps(r, r)), r), _mm_set1_ps(1.0f));
        const __m128i e =
            _mm_slli_epi32(_mm_add_epi32(_mm_cvttps_epi32(nf), _mm_set1_epi32(127)), 23);
        const __m128 v = _mm_mul_ps(y, _mm_castsi128_ps(e));
        // x >= kExpLo: v; NaN: NaN (x itself); below (-inf included): 0.
        const __m128 in = _mm_cmpge_ps(x, lo), nan = _mm_cmpunord_ps(x, x);
        _mm_storeu_ps(out + i, _mm_or_ps(_mm_and_ps(in, v), _mm_and_ps(nan, x)));
    }
#endif
    for (; i < n; ++i) out[i] = sampler_exp((l[i] - max) / t);
}

Sampler::Sampler(const SamplerParams& params, int32_t n_vocab, const Vocab* vocab)
    : p_(params), n_vocab_(n_vocab), rng_(params.seed), vocab_(vocab) {
    if (p_.json_schema) {
        if (!vocab_) throw std::logic_error("Sampler: a JSON schema needs the vocabulary");
        if (p_.json_trigger.empty()) json_ = std::make_unique<JsonMatcher>(p_.json_schema);
    }
}

bool Sampler::fits(int32_t token) const {
    const TokenTrie& trie = vocab_->token_trie();
    if (trie.is_eog(token)) return json_->can_end();
    const std::string_view bytes = trie.bytes(token);
    return !bytes.empty() && json_->accepts(bytes);
}

void Sampler::accept(int32_t token) {
    if (p_.penalty_last_n == 0) return;
    history_.push_back(token);
    ++counts_[token];
    if (p_.penalty_last_n > 0 && (int)history_.size() > p_.penalty_last_n) {
        const int32_t old = history_.front();
        history_.pop_front();
        if (--counts_[old] == 0) counts_.erase(old);
    }
}

int32_t Sampler::sample(const float* logits) {
    work_.assign(logits, logits + n_vocab_);
    for (auto [tok, bias] : p_.logit_bias)
        if (tok >= 0 && tok < n_vocab_) work_[tok] += bias;
    const bool penalize =
        p_.repeat_penalty != 1.0f || p_.frequency_penalty != 0 || p_.presence_penalty != 0;
    if (penalize) {
        for (auto [tok, count] : counts_) {
            float& l = work_[tok];
            l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
            l -= (float)count * p_.frequency_penalty + p_.presence_penalty;
        }
    }
    if (json_) return sample_constrained();
    const int32_t tok = draw();
    if (p_.json_schema && !trigger_dead_) watch_trigger(tok);
    return tok;
}

void Sampler::watch_trigger(int32_t tok) {
    const TokenTrie& trie = vocab_->token_trie();
    if (trie.is_eog(tok)) return;
    since_trigger_ += trie.bytes(tok);
    const std::string& trig = p_.json_trigger;
    size_t at = std::string::npos;
    if (p_.json_trigger_at_start) {
        const size_t first = since_trigger_.find_first_not_of(" \t\r\n");
        if (first == std::string::npos) {
            since_trigger_.clear();  // leading whitespace: nothing to keep
            return;
        }
        const std::string_view rest = std::string_view(since_trigger_).substr(first);
        if (rest.substr(0, trig.size()) != std::string_view(trig).substr(0, rest.size())) {
            trigger_dead_ = true;  // the text starts otherwise: not a call
            return;
        }
        if (rest.size() >= trig.size()) at = first;
    } else {
        at = since_trigger_.find(trig);
    }
    if (at == std::string::npos) {
        // Keep only what may still be the start of the trigger.
        if (!p_.json_trigger_at_start && since_trigger_.size() >= trig.size())
            since_trigger_.erase(0, since_trigger_.size() - (trig.size() - 1));
        return;
    }
    auto m = std::make_unique<JsonMatcher>(p_.json_schema);
    if (m->feed(std::string_view(since_trigger_).substr(at))) json_ = std::move(m);
    since_trigger_.clear();
    if (p_.json_trigger_at_start) trigger_dead_ = !json_;
}

int32_t Sampler::sample_constrained() {
    int32_t tok = draw();
    if (!fits(tok)) {
        const TokenTrie& trie = vocab_->token_trie();
        if (!json_->allowed_tokens(trie, allowed_)) {
            // The walk was too costly for this state: the most likely tokens that fit, in
            // order, one check each (bounded), stand for the mask.
            constexpr size_t kChecks = 512;
            std::vector<int32_t> order((size_t)n_vocab_);
            for (int32_t i = 0; i < n_vocab_; ++i) order[(size_t)i] = i;
            const size_t top = std::min(kChecks, order.size());
            std::partial_sort(order.begin(), order.begin() + (ptrdiff_t)top, order.end(),
                              [&](int32_t a, int32_t b) {
                                  return work_[(size_t)a] > work_[(size_t)b] ||
                                         (work_[(size_t)a] == work_[(size_t)b] && a < b);
                              });
            allowed_.assign((size_t)trie.n_vocab(), 0);
            if (json_->can_end())
                for (int32_t t : trie.end_of_generation()) allowed_[(size_t)t] = 1;
            int found = 0;
            for (size_t k = 0; k < top && found < 64; ++k)
                if (order[k] < trie.n_vocab() && fits(order[k]))
                    allowed_[(size_t)order[k]] = 1, ++found;
        }
        bool any = false;
        for (int32_t i = 0; i < n_vocab_; ++i) {
            const bool ok = i < trie.n_vocab() && allowed_[(size_t)i] &&
                            work_[(size_t)i] > -std::numeric_limits<float>::infinity();
            if (!ok) work_[(size_t)i] = -std::numeric_limits<float>::infinity();
            any = any || ok;
        }
        if (any) {
            tok = draw();
        } else {
            // Nothing the schema allows is possible (a logit bias of -inf on all of it):
            // end the generation rather than break the format.
            tok = vocab_->eos() >= 0 ? vocab_->eos() : tok;
        }
    }
    if (!vocab_->token_trie().is_eog(tok) && !json_->feed(vocab_->token_trie().bytes(tok)))
        tok = vocab_->eos() >= 0 ? vocab_->eos() : tok;  // unreachable: the token was checked
    // Lazy: a complete call puts the constraint back to sleep (another may follow; at the
    // start of the text only one can). finished() tries every byte: only once complete.
    if (!p_.json_trigger.empty() && json_->can_end() && json_->finished()) {
        json_.reset();
        trigger_dead_ = p_.json_trigger_at_start;
    }
    return tok;
}

int32_t Sampler::draw() {
    const float* l = work_.data();
    exp_t_ = std::numeric_limits<float>::quiet_NaN();  // exp_ holds nothing of these logits
    // Greedy: the first maximum wins, like the reference.
    if (p_.temperature <= 0) return first_argmax(l, n_vocab_);
    if (p_.top_k > 0 && p_.top_k < n_vocab_) return draw_top_k();

    // The best candidate. With it not finite (+inf, or every logit -inf or NaN) every
    // probability is NaN or 0 and the draw takes the best-ranked candidate.
    int32_t best = first_argmax(l, n_vocab_);
    if (std::isnan(l[best]))  // a NaN at 0 (the greedy rule keeps it): the best of the rest
        for (int32_t i = 1; i < n_vocab_; ++i)
            if (Better()({l[i], i}, {l[best], best})) best = i;
    const float max = l[best];
    if (!std::isfinite(max)) {
        rng_();  // a draw is still taken: the generator's sequence does not depend on this
        return best;
    }
    assign_buckets(max);  // the rank buckets, for top-p's cut and the draw alike

    // Top-p and min-p on the temperature-1 probabilities, as in the reference chain: the
    // kept candidates are the ranks up to `cut` (none: all of them), the earlier of the two
    // filters' cuts.
    bool has_cut = false;
    Cand cut{};
    if (p_.top_p < 1.0f || p_.min_p > 0) {
        const double sum1 = exp_terms(max, 1.0f);
        if (p_.top_p < 1.0f) has_cut = top_p_cut(sum1, cut);
        if (p_.min_p > 0) {
            // Probabilities never rise with the rank, so the ranks that pass the threshold
            // come first; the last of them (the best when none passes) is min-p's cut.
            const float threshold = (float)(exp_[(size_t)best] / sum1) * p_.min_p;
            Cand last{l[best], best};
            for (int32_t i = 0; i < n_vocab_; ++i)
                if ((float)(exp_[(size_t)i] / sum1) >= threshold && Better()(last, {l[i], i}))
                    last = {l[i], i};
            if (!has_cut || Better()(last, cut)) cut = last, has_cut = true;
        }
    }
    // A uniform draw from the top 53 bits of the generator: the same on every platform.
    const uint64_t u = rng_() >> 11;
    return draw_buckets(max, u, has_cut ? &cut : nullptr);
}

// Top-p's cut over every token (exp_ holds the temperature-1 terms, sum1 their sum): the
// first candidate in rank order at which the running total of weights reaches top_p, found
// from the rank buckets' totals and a sort of the one bucket it lies in. False when the
// total never reaches it (nothing cut).
bool Sampler::top_p_cut(double sum1, Cand& cut) {
    const uint64_t target = (uint64_t)std::ldexp((double)std::max(p_.top_p, 0.0f), 53);
    weigh_buckets(sum1, [](int32_t) { return true; });
    uint64_t cum = 0;
    int b = 0;
    while (b <= kLastBucket && cum + bucket_weight_[(size_t)b] < target)
        cum += bucket_weight_[(size_t)b++];
    if (b > kLastBucket) return false;
    sort_bucket(b, [](int32_t) { return true; });
    for (const Cand& c : bucket_members_)
        if ((cum += draw_weight((float)(exp_[(size_t)c.second] / sum1))) >= target) {
            cut = c;
            return true;
        }
    return false;  // (not reached: the bucket's weights reach the target)
}

// Top-k: the k best ranked at once (k below the vocabulary), then the same filters and
// draw over them in rank order.
int32_t Sampler::draw_top_k() {
    const float* l = work_.data();
    const int32_t k = p_.top_k;
    std::vector<Cand>& c = bucket_members_;
    c.resize((size_t)n_vocab_);
    for (int32_t i = 0; i < n_vocab_; ++i) c[(size_t)i] = {l[i], i};
    std::partial_sort(c.begin(), c.begin() + k, c.end(), Better());
    c.resize((size_t)k);
    const float max = c[0].first;
    // Each rank's term exp((logit - max) / t); the normalizer over the ranks [0, n) in
    // token order (the reference's definition, the same whatever path ranked them).
    std::vector<int32_t>& by_id = top_k_ids_;
    auto normalizer = [&](float t, int32_t n) {
        by_id.resize((size_t)n);
        for (int32_t r = 0; r < n; ++r) by_id[(size_t)r] = c[(size_t)r].second;
        std::sort(by_id.begin(), by_id.end());
        double sum = 0;
        for (int32_t i : by_id) sum += sampler_exp((l[i] - max) / t);
        return sum;
    };
    auto prob = [&](int32_t r, float t, double sum) {
        return (float)(sampler_exp((c[(size_t)r].first - max) / t) / sum);
    };
    int32_t keep = k;
    if (p_.top_p < 1.0f || p_.min_p > 0) {
        const double sum1 = normalizer(1.0f, keep);
        if (p_.top_p < 1.0f) {
            const uint64_t target = (uint64_t)std::ldexp((double)std::max(p_.top_p, 0.0f), 53);
            uint64_t cum = 0;
            for (int32_t r = 0; r < keep; ++r)
                if ((cum += draw_weight(prob(r, 1.0f, sum1))) >= target) {
                    keep = r + 1;
                    break;
                }
        }
        if (p_.min_p > 0) {
            const float threshold = prob(0, 1.0f, sum1) * p_.min_p;
            int32_t n = 1;
            while (n < keep && prob(n, 1.0f, sum1) >= threshold) ++n;
            keep = n;
        }
    }
    const uint64_t u = rng_() >> 11;
    const double sum = normalizer(p_.temperature, keep);
    // Rounding may leave u at or above the weights' total: then the last candidate that has
    // any weight (none: the best).
    uint64_t cum = 0;
    int32_t chosen = 0;
    for (int32_t r = 0; r < keep; ++r) {
        const uint64_t w = draw_weight(prob(r, p_.temperature, sum));
        if (w > 0) chosen = r;
        cum += w;
        if (u < cum) {
            chosen = r;
            break;
        }
    }
    return c[(size_t)chosen].second;
}

// exp_[i] = exp((logit i - max) / t) for every token; returns their sum, in double, in token
// order (the softmax's normalizer when nothing is cut).
double Sampler::exp_terms(float max, float t) {
    exp_.resize((size_t)n_vocab_);
    sampler_exp_shifted(work_.data(), max, t, exp_.data(), n_vocab_);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab_; ++i) sum += exp_[(size_t)i];
    exp_t_ = t;
    return sum;
}

// bucket_of_[i] = token i's rank bucket below the best logit `max`.
void Sampler::assign_buckets(float max) {
    const float* l = work_.data();
    bucket_of_.resize((size_t)n_vocab_);
    for (int32_t i = 0; i < n_vocab_; ++i) bucket_of_[(size_t)i] = (uint16_t)rank_bucket(max, l[i]);
}

// bucket_weight_[b]: the weights draw_weight(exp_[i] / sum) of the tokens in bucket b
// (assign_buckets) that keep(i) admits.
template <class Keep>
void Sampler::weigh_buckets(double sum, Keep&& keep) {
    bucket_weight_.assign(kLastBucket + 1, 0);
    for (int32_t i = 0; i < n_vocab_; ++i)
        if (keep(i))
            bucket_weight_[bucket_of_[(size_t)i]] += draw_weight((float)(exp_[(size_t)i] / sum));
}

// bucket_members_ = the candidates of bucket b (bucket_of_) that keep(i) admits, ranked.
template <class Keep>
void Sampler::sort_bucket(int b, Keep&& keep) {
    bucket_members_.clear();
    for (int32_t i = 0; i < n_vocab_; ++i)
        if (bucket_of_[(size_t)i] == b && keep(i)) bucket_members_.push_back({work_[(size_t)i], i});
    std::sort(bucket_members_.begin(), bucket_members_.end(), Better());
}

// The draw at the sampler's temperature over the candidates ranked up to *cut (null: every
// token), without ranking them: each kept token's weight goes into its rank bucket, the
// buckets' totals say which one the draw lands in, and only that bucket is sorted and
// walked. The same token as walking the fully ranked candidates with the same weights: a
// flat distribution (a draw deep in the ranking) costs a few passes over the logits, not a
// sort of most of them. The normalizer is summed in token order over the kept tokens.
int32_t Sampler::draw_buckets(float max, uint64_t u, const Cand* cut) {
    const float* l = work_.data();
    // Ranked at or before the cut (never NaN: no NaN passes a filter), NaN never kept.
    const float cl = cut ? cut->first : 0;
    const int32_t ci = cut ? cut->second : 0;
    auto kept = [&](int32_t i) { return !cut || l[i] > cl || (l[i] == cl && i <= ci); };
    // The terms at temperature 1 are there already when the filters made them (the same
    // expression, so the same values): an OpenAI client's top-p at temperature 1.
    const bool reuse = exp_t_ == p_.temperature;
    exp_.resize((size_t)n_vocab_);
    if (!reuse) sampler_exp_shifted(l, max, p_.temperature, exp_.data(), n_vocab_);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab_; ++i)
        if (kept(i)) sum += exp_[(size_t)i];
    weigh_buckets(sum, kept);
    uint64_t cum = 0;
    int target = -1, last_weighted = 0;
    for (int b = 0; b <= kLastBucket; ++b) {
        if (bucket_weight_[(size_t)b] == 0) continue;
        last_weighted = b;
        if (u < cum + bucket_weight_[(size_t)b]) {
            target = b;
            break;
        }
        cum += bucket_weight_[(size_t)b];
    }
    // u at or above the total: the last candidate with any weight, in the last bucket that
    // has weight (every weight 0: the best candidate, in bucket 0).
    sort_bucket(target >= 0 ? target : last_weighted, kept);
    int32_t chosen = -1;
    for (const auto& [v, i] : bucket_members_) {
        const uint64_t w = draw_weight((float)(exp_[(size_t)i] / sum));
        if (w > 0 || chosen < 0) chosen = i;
        cum += w;
        if (target >= 0 && u < cum) return i;
    }
    return chosen >= 0 ? chosen : first_argmax(l, n_vocab_);
}

}  // namespace lokal
