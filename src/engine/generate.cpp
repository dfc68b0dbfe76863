#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "tokenizer/detokenize.h"

namespace lokal {

std::string StopMatcher::push(const std::string& text) {
    if (stopped_) return {};
    pending_ += text;
    size_t cut = std::string::npos;
    for (const std::string& s : stops_) {
        if (s.empty()) continue;
        const size_t at = pending_.find(s);
        if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
        stopped_ = true;
        std::string out = pending_.substr(0, cut);
        pending_.clear();
        return out;
    }
    // Keep the longest tail that is a proper prefix of some stop string.
    size_t hold = 0;
    for (const std::string& s : stops_) {
        if (s.empty()) continue;
        for (size_t len = std::min(s.size() - 1, pending_.size()); len > hold; --len)
            if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
                hold = len;
                break;
            }
    }
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
}

std::string StopMatcher::flush() {
    std::string out = stopped_ ? std::string() : pending_;
    pending_.clear();
    return out;
}

GenerateResult generate(Context& ctx, const Vocab& vocab, int32_t seq,
                        const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                        const std::function<bool(const std::string&)>& on_text) {
    using Clock = std::chrono::steady_clock;
    auto ms_since = [](Clock::time_point t) {
        return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    };
    GenerateResult r;
    r.prompt_tokens = (int)prompt.size();
    if (prompt.empty()) throw ContextError("the prompt is empty");

    Sampler sampler(opts.sampling, ctx.model().hp.n_vocab, &vocab);
    for (int32_t t : prompt) sampler.accept(t);
    StreamingDetokenizer detok(vocab);
    StopMatcher stops(opts.stop);
    const int64_t n_vocab = ctx.model().hp.n_vocab;
    const int64_t base = ctx.cache().length(seq);  // positions cached before the prompt
    // Every token of the sequence (what drafters read): earlier turns, prompt, output.
    std::vector<int32_t> history;
    if (opts.drafter) {
        if (opts.preceding) history = *opts.preceding;
        history.insert(history.end(), prompt.begin(), prompt.end());
    }

    std::vector<float> logits;  // [rows][n_vocab] of the last pass
    auto t0 = Clock::now();
    ctx.eval(seq, prompt, false, logits);
    r.prompt_ms = ms_since(t0);

    auto emit = [&](const std::string& s) {
        if (s.empty()) return true;
        r.text += s;
        return on_text ? on_text(s) : true;
    };
    // Positions the sequence holds once every output token so far is evaluated but the
    // newest (which is evaluated with the next pass).
    auto pending_length = [&] {
        return base + (int64_t)prompt.size() + (int64_t)r.tokens.size() - 1;
    };
    // The sampled token becomes output; false (stop_reason set) when generation ends.
    auto take = [&](int32_t tok) {
        if (vocab.is_eog(tok)) {
            r.stop_reason = "eog";
            return false;
        }
        sampler.accept(tok);
        r.tokens.push_back(tok);
        if (opts.drafter) history.push_back(tok);
        if (!emit(stops.push(detok.push(tok)))) {
            r.stop_reason = "cancelled";
            return false;
        }
        if (stops.stopped()) {
            r.stop_reason = "stop";
            return false;
        }
        if (opts.n_predict > 0 && (int)r.tokens.size() >= opts.n_predict) {
            r.stop_reason = "length";
            return false;
        }
        if (pending_length() >= ctx.n_ctx()) {
            r.stop_reason = "context";
            return false;
        }
        return true;
    };

    auto t1 = Clock::now();
    size_t row = 0;             // the logits row the next token is sampled from
    int32_t chosen = -1;        // >= 0: the next token, already drawn while checking drafts
    std::vector<int32_t> step;  // the pass's tokens: the newest output token, then drafts
    std::vector<int32_t> drafts;
    for (;;) {
        if (opts.n_predict == 0) {
            r.stop_reason = "length";
            break;
        }
        const int32_t tok = chosen >= 0 ? chosen : sampler.sample(logits.data() + row * n_vocab);
        chosen = -1;
        if (!take(tok)) break;
        step.assign(1, tok);
        const int64_t at = pending_length();  // the position tok is written at
        if (opts.drafter && opts.drafter->params().n_max > 0) {
            // Drafts must fit the context, and need not go past n_predict.
            int64_t room = std::min<int64_t>(opts.drafter->params().n_max, ctx.n_ctx() - at - 1);
            if (opts.n_predict > 0)
                room = std::min<int64_t>(room, opts.n_predict - (int64_t)r.tokens.size());
            if (room > 0) {
                const auto td = Clock::now();
                drafts.clear();
                opts.drafter->propose(history, (int)room, drafts);
                r.draft.draft_ms += ms_since(td);
                // At most room tokens; a draft model's extra padding ids end the draft.
                for (int32_t d : drafts) {
                    if (d < 0 || d >= n_vocab) break;
                    step.push_back(d);
                }
            }
        }
        const size_t k = step.size() - 1;
        ctx.eval(seq, step, k > 0, logits);
        row = 0;
        if (k == 0) continue;
        // Check the drafts in order: each position's draw is the one decoding without
        // drafts would make there.
        ++r.draft.steps;
        r.draft.proposed += (int64_t)k;
        bool ended = false;
        size_t kept = 0;
        for (; kept < k; ++kept) {
            const int32_t t = sampler.sample(logits.data() + kept * n_vocab);
            if (t != step[kept + 1]) {
                chosen = t;
                break;
            }
            ++r.draft.accepted;
            if (!take(t)) {
                ended = true;
                break;
            }
        }
        if (ended) break;
        if (chosen >= 0)
            ctx.cache().truncate(seq, (int32_t)(at + 1 + (int64_t)kept));  // drop rejected drafts
        else
            row = k;  // every draft kept: the last row gives the next token
    }
    // Rejected drafts past the end never stay in the cache.
    const int64_t held = base + (int64_t)prompt.size() + (int64_t)r.tokens.size();
    if (ctx.cache().length(seq) > held) ctx.cache().truncate(seq, (int32_t)held);
    if (r.stop_reason != "cancelled" && r.stop_reason != "stop") {
        emit(stops.push(detok.flush()));
        emit(stops.flush());
    }
    r.eval_ms = ms_since(t1);
    return r;
}

}  // namespace lokal
