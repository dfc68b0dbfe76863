#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>

#include "tokenizer/token_trie.h"
#include "tokenizer/vocab.h"

namespace lokal {

namespace {

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

// The candidates in the sampler's order: logit descending, ties by token id (a strict total
// order, so the ranking is unique), of the first `limit` of them. Ranked lazily, in bands of
// logits below the best (within 2, 4, 8, ..., 64 of it, then everything else): one pass over the
// logits per band and a sort of the band alone, instead of sorting the whole vocabulary for
// every token (32,000 candidates: ~2.5 ms a sample at the OpenAI API's defaults, where
// neither top-k nor top-p cuts, against the few dozen ranks a draw usually walks).
class RankedLogits {
  public:
    using Cand = std::pair<float, int32_t>;  // logit, token
    RankedLogits(const float* logits, int32_t n, int32_t limit) : l_(logits), n_(n), limit_(limit) {
        if (limit_ < n_) {  // top-k: the k best, ranked at once (k is small)
            std::vector<Cand> c((size_t)n_);
            for (int32_t i = 0; i < n_; ++i) c[(size_t)i] = {l_[i], i};
            std::partial_sort(c.begin(), c.begin() + limit_, c.end(), Better());
            c.resize((size_t)limit_);
            ranked_ = std::move(c);
            return;
        }
        top_ = l_[first_argmax(l_, n_)];
        if (std::isnan(top_))  // a NaN at 0 (the greedy rule keeps it): the best of the rest
            for (int32_t i = 1; i < n_; ++i)
                if (l_[i] > top_ || (std::isnan(top_) && !std::isnan(l_[i]))) top_ = l_[i];
    }
    // The best candidate's logit (NaN only when every logit is).
    float best() { return limit_ < n_ ? ranked_[0].first : top_; }
    // Candidate r (r < limit; the last band ranks every candidate, so the loop ends).
    const Cand& at(int32_t r) {
        // A walk this deep (top-p or min-p over a flat distribution) will want most ranks:
        // one sort of everything is cheaper than band after band.
        if (r >= n_ / 8 && (int32_t)ranked_.size() <= r) rank_all();
        while ((int32_t)ranked_.size() <= r && band_ <= kBands) add_band();
        return ranked_[(size_t)std::min<int64_t>(r, (int64_t)ranked_.size() - 1)];
    }

    // Logit descending, then token id; NaN after every number (a strict order for the sorts,
    // whatever the logits hold).
    struct Better {
        bool operator()(const Cand& a, const Cand& b) const {
            if (a.first > b.first) return true;
            if (a.first < b.first) return false;
            const bool an = std::isnan(a.first), bn = std::isnan(b.first);
            if (an != bn) return bn;     // any number before a NaN
            return a.second < b.second;  // equal logits, or both NaN
        }
    };

  private:
    static constexpr int kBands = 6;  // logits within 2, 4, ..., 64 of the best; then the rest
    // The next band: logits in [lo, hi) for hi the last band's lo; the last band takes all
    // that no band took (-inf and NaN included).
    void add_band() {
        const size_t start = ranked_.size();
        if (band_ == kBands) {
            for (int32_t i = 0; i < n_; ++i)
                if (!(l_[i] >= hi_)) ranked_.push_back({l_[i], i});
        } else {
            const float lo = top_ - (float)(2 << band_);
            for (int32_t i = 0; i < n_; ++i) {
                const float v = l_[i];
                if (v >= lo && (band_ == 0 || v < hi_)) ranked_.push_back({v, i});
            }
            hi_ = lo;
        }
        ++band_;
        // A band holding most of the vocabulary (a flat distribution): one sort of all.
        if ((int32_t)ranked_.size() > n_ / 8 && band_ <= kBands) return rank_all();
        std::sort(ranked_.begin() + (ptrdiff_t)start, ranked_.end(), Better());
    }

    // Every candidate ranked at once (one sort of the whole vocabulary).
    void rank_all() {
        if (band_ > kBands) return;
        std::vector<Cand> c((size_t)n_);
        for (int32_t i = 0; i < n_; ++i) c[(size_t)i] = {l_[i], i};
        std::sort(c.begin(), c.end(), Better());
        ranked_ = std::move(c);
        band_ = kBands + 1;
    }

    const float* l_;
    int32_t n_, limit_;
    float top_ = 0, hi_ = 0;
    int band_ = 0;
    std::vector<Cand> ranked_;
};

}  // namespace

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
    // Greedy: the first maximum wins, like the reference.
    if (p_.temperature <= 0) return first_argmax(work_.data(), n_vocab_);

    // Candidates by logit, best first (top-k: only the k best), ranked only as far as the
    // filters and the draw look.
    const int32_t limit = p_.top_k > 0 && p_.top_k < n_vocab_ ? (int32_t)p_.top_k : n_vocab_;
    RankedLogits ranked(work_.data(), n_vocab_, limit);
    const float max = ranked.best();
    // Each candidate's softmax probability at temperature t over the candidates [0, n):
    // exp((logit - max) / t), the sum over them in double, in token order when they are all
    // there (no ranking needed; exp_ then holds every token's term), else in rank order.
    auto softmax_sum = [&](float t, int32_t n) {
        if (n == n_vocab_) return exp_terms(max, t);
        double sum = 0;
        for (int32_t r = 0; r < n; ++r) sum += std::exp((ranked.at(r).first - max) / t);
        return sum;
    };
    auto prob = [&](int32_t r, float t, double sum) {
        return (float)(std::exp((ranked.at(r).first - max) / t) / sum);
    };

    // Probabilities at temperature 1 decide top-p and min-p, as in the reference chain.
    int32_t keep = limit;
    if (p_.top_p < 1.0f || p_.min_p > 0) {
        const double sum1 = softmax_sum(1.0f, keep);
        if (p_.top_p < 1.0f) {
            double cum = 0;
            for (int32_t r = 0; r < keep; ++r) {
                cum += prob(r, 1.0f, sum1);
                if (cum >= p_.top_p) {
                    keep = r + 1;
                    break;
                }
            }
        }
        if (p_.min_p > 0) {
            const float threshold = prob(0, 1.0f, sum1) * p_.min_p;
            int32_t k = 1;
            if (keep == n_vocab_) {
                // Nothing cut yet: count instead of walking the ranking (a probability never
                // rises with the rank, so the ranks that pass are the first `count`); exp_
                // holds the terms of sum1.
                int32_t count = 0;
                for (int32_t i = 0; i < n_vocab_; ++i)
                    count += (float)(exp_[(size_t)i] / sum1) >= threshold;
                k = std::max<int32_t>(1, count);
            } else {
                while (k < keep && prob(k, 1.0f, sum1) >= threshold) ++k;
            }
            keep = k;
        }
    }

    // A uniform draw from the top 53 bits of the generator: the same on every platform.
    const uint64_t u = rng_() >> 11;
    if (keep == n_vocab_) return draw_unranked(max, u);
    const double sum = softmax_sum(p_.temperature, keep);
    // Rounding may leave u at or above the weights' total: then the last candidate that has
    // any weight (a masked token has none).
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
    return ranked.at(chosen).second;
}

// exp_[i] = exp((logit i - max) / t) for every token; returns their sum, in double, in token
// order (the softmax's normalizer when nothing is cut).
double Sampler::exp_terms(float max, float t) {
    exp_.resize((size_t)n_vocab_);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab_; ++i) sum += exp_[(size_t)i] = std::exp((work_[i] - max) / t);
    return sum;
}

// The draw over the whole vocabulary (no filter cut: the OpenAI API's defaults) without
// ranking it: every token's weight goes into a bucket by its logit's distance below the best
// (1/16 wide down to 64 below, then one for the rest; the buckets keep the rank order), the
// buckets' totals say which one the draw lands in, and only that bucket is sorted and walked.
// The same token as walking the fully ranked candidates with the same weights: a flat
// distribution (a draw deep in the ranking) costs three passes over the logits, not a sort
// of most of them.
int32_t Sampler::draw_unranked(float max, uint64_t u) {
    constexpr int kSteps = 16, kLast = 64 * kSteps;  // buckets 0 .. kLast
    const double sum = exp_terms(max, p_.temperature);
    bucket_of_.resize((size_t)n_vocab_);
    bucket_weight_.assign(kLast + 1, 0);
    for (int32_t i = 0; i < n_vocab_; ++i) {
        const float d = max - work_[(size_t)i];
        const int b = d < 64.0f ? (int)(d * (float)kSteps) : kLast;  // NaN, -inf: the last
        bucket_of_[(size_t)i] = (uint16_t)b;
        bucket_weight_[(size_t)b] += draw_weight((float)(exp_[(size_t)i] / sum));
    }
    uint64_t cum = 0;
    int target = -1, last_weighted = 0;
    for (int b = 0; b <= kLast; ++b) {
        if (bucket_weight_[(size_t)b] == 0) continue;
        last_weighted = b;
        if (u < cum + bucket_weight_[(size_t)b]) {
            target = b;
            break;
        }
        cum += bucket_weight_[(size_t)b];
    }
    // u at or above the total: the last candidate with any weight, in the last bucket that
    // has weight (every weight 0, as when the logits hold NaN: the best candidate).
    const int b = target >= 0 ? target : last_weighted;
    bucket_members_.clear();
    for (int32_t i = 0; i < n_vocab_; ++i)
        if (bucket_of_[(size_t)i] == b) bucket_members_.push_back({work_[(size_t)i], i});
    std::sort(bucket_members_.begin(), bucket_members_.end(), RankedLogits::Better());
    int32_t chosen = bucket_members_.empty() ? first_argmax(work_.data(), n_vocab_) : -1;
    for (const auto& [l, i] : bucket_members_) {
        const uint64_t w = draw_weight((float)(exp_[(size_t)i] / sum));
        if (w > 0 || chosen < 0) chosen = i;
        cum += w;
        if (target >= 0 && u < cum) return i;
    }
    return chosen;
}

}  // namespace lokal
