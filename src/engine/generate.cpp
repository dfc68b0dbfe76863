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

    std::vector<float> logits;
    auto t0 = Clock::now();
    ctx.eval(seq, prompt, false, logits);
    r.prompt_ms = ms_since(t0);

    auto emit = [&](const std::string& s) {
        if (s.empty()) return true;
        r.text += s;
        return on_text ? on_text(s) : true;
    };
    auto t1 = Clock::now();
    for (;;) {
        if (opts.n_predict == 0) {
            r.stop_reason = "length";
            break;
        }
        const int32_t tok = sampler.sample(logits.data());
        if (vocab.is_eog(tok)) {
            r.stop_reason = "eog";
            break;
        }
        sampler.accept(tok);
        r.tokens.push_back(tok);
        if (!emit(stops.push(detok.push(tok)))) {
            r.stop_reason = "cancelled";
            break;
        }
        if (stops.stopped()) {
            r.stop_reason = "stop";
            break;
        }
        if (opts.n_predict > 0 && (int)r.tokens.size() >= opts.n_predict) {
            r.stop_reason = "length";
            break;
        }
        if (ctx.cache().length(seq) >= ctx.n_ctx()) {
            r.stop_reason = "context";
            break;
        }
        const int32_t next[1] = {tok};
        ctx.eval(seq, next, false, logits);
    }
    if (r.stop_reason != "cancelled" && r.stop_reason != "stop") {
        emit(stops.push(detok.flush()));
        emit(stops.flush());
    }
    r.eval_ms = ms_since(t1);
    return r;
}

}  // namespace lokal
