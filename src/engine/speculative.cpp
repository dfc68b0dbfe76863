#include "engine/speculative.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "tokenizer/vocab.h"

namespace lokal {

void LookupDrafter::propose(std::span<const int32_t> history, int max_tokens,
                            std::vector<int32_t>& out) {
    const size_t len = history.size();
    if (max_tokens <= 0 || len < 2) return;
    const size_t n_hi = std::min<size_t>((size_t)std::max(p_.ngram_max, 1), len - 1);
    const size_t n_lo = (size_t)std::max(std::min(p_.ngram_min, p_.ngram_max), 1);
    // Longest n-gram first: a longer match predicts better. The most recent earlier
    // occurrence wins (it is the one a repetition in the output is following).
    for (size_t n = n_hi; n >= n_lo && n > 0; --n) {
        const int32_t* tail = history.data() + (len - n);
        for (size_t start = len - n; start-- > 0;) {
            if (!std::equal(tail, tail + n, history.data() + start)) continue;
            // Copy what followed. Past the end of the history the copy reads its own
            // output, so a periodic text (a loop, a table row) continues its period.
            const size_t from = start + n, first = out.size();
            for (size_t j = 0; j < (size_t)max_tokens; ++j) {
                const size_t at = from + j;
                out.push_back(at < len ? history[at] : out[first + (at - len)]);
            }
            return;
        }
    }
}

ModelDrafter::ModelDrafter(Context& draft_ctx, const DraftParams& p)
    : Drafter(p), ctx_(draft_ctx), seq_(draft_ctx.cache().create_sequence()) {}

void ModelDrafter::propose(std::span<const int32_t> history, int max_tokens,
                           std::vector<int32_t>& out) {
    if (history.empty() || max_tokens <= 0) return;
    const int32_t n_vocab = ctx_.model().hp.n_vocab;
    // Keep the cached prefix the history still starts with; evaluate the rest (usually
    // the tokens accepted at the last check plus the one the model chose).
    size_t common = 0;
    while (common < cached_.size() && common < history.size() && cached_[common] == history[common])
        ++common;
    if (common == history.size()) --common;  // the last token's logits are needed
    const std::span<const int32_t> delta = history.subspan(common);
    const bool foreign = std::any_of(delta.begin(), delta.end(), [&](int32_t t) {
        return t < 0 || t >= n_vocab;  // a padding token only the big model has
    });
    if (foreign || (int64_t)history.size() >= ctx_.n_ctx()) {
        ++declined_;
        return;
    }
    ctx_.cache().truncate(seq_, (int32_t)common);
    cached_.resize(common);
    // The draft's cache ends holding history + all drafts but the last (>= 2 fit here).
    max_tokens = std::min<int64_t>(max_tokens, (int64_t)ctx_.n_ctx() - (int64_t)history.size() + 1);
    try {
        ctx_.eval(seq_, delta, false, logits_);
        cached_.insert(cached_.end(), delta.begin(), delta.end());
        for (int i = 0; i < max_tokens; ++i) {
            // Greedy, with the top probability as the draft's confidence (a softmax over
            // the vocabulary, skipped when no minimum is asked for).
            int32_t best = 0;
            for (int32_t v = 1; v < n_vocab; ++v)
                if (logits_[(size_t)v] > logits_[(size_t)best]) best = v;
            if (p_.p_min > 0) {
                double sum = 0;
                const float top = logits_[(size_t)best];
                for (int32_t v = 0; v < n_vocab; ++v)
                    sum += std::exp((double)(logits_[(size_t)v] - top));
                if (1.0 / sum < (double)p_.p_min) break;
            }
            out.push_back(best);
            if (i + 1 == max_tokens) break;
            const int32_t one[1] = {best};
            ctx_.eval(seq_, one, false, logits_);
            cached_.push_back(best);
        }
    } catch (const ContextError&) {
        // The draft's cache is full (it holds only this one sequence, so not expected):
        // forget it and go on without these drafts.
        ctx_.cache().truncate(seq_, 0);
        cached_.clear();
        ++declined_;
    }
}

std::string draft_vocab_mismatch(const Vocab& target, const Vocab& draft) {
    if (target.model_type() != draft.model_type())
        return "the draft model's tokenizer is '" + draft.model_type() + "', the model's is '" +
               target.model_type() + "'";
    const int32_t nt = target.n_tokens(), nd = draft.n_tokens();
    if (std::abs(nt - nd) > 128)
        return "the draft model has " + std::to_string(nd) + " tokens, the model " +
               std::to_string(nt) + " (they must share a vocabulary)";
    if (target.add_bos() != draft.add_bos() || (target.add_bos() && target.bos() != draft.bos()))
        return "the draft model's beginning-of-text token differs from the model's";
    for (int32_t id = 0; id < std::min(nt, nd); ++id)
        if (target.token_text(id) != draft.token_text(id))
            return "token " + std::to_string(id) + " differs between the model and the draft model";
    return {};
}

}  // namespace lokal
