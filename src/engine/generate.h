// Single-sequence text generation: prompt evaluation in batches, then sample, stream,
// stop at end-of-generation tokens, stop strings, n_predict or a full context.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/sampler.h"
#include "engine/speculative.h"
#include "tokenizer/vocab.h"

namespace lokal {

struct GenerateOptions {
    int n_predict = -1;  // tokens to generate; -1: until end of generation or a full context
    SamplerParams sampling;
    std::vector<std::string> stop;  // stop strings (not included in the output)
    // Speculative decoding (speculative.h): drafts of up to drafter->params().n_max tokens
    // are checked in one pass each. The output is the same with or without; null: no drafts.
    Drafter* drafter = nullptr;
    // Tokens the sequence's cache holds before `prompt` (a chat's earlier turns), so that
    // drafters see the whole history. Null: the cache starts empty.
    const std::vector<int32_t>* preceding = nullptr;
};

struct GenerateResult {
    std::string text;             // the continuation, stop string excluded
    std::vector<int32_t> tokens;  // generated ids (end-of-generation token excluded)
    int prompt_tokens = 0;
    double prompt_ms = 0;
    double eval_ms = 0;
    std::string stop_reason;  // "eog", "stop", "length", "context", "cancelled"
    DraftStats draft;         // speculative decoding's counts (zero without a drafter)
};

// Streams text as it becomes final (valid UTF-8 that cannot be the start of a stop
// string) through on_text; return false from on_text to cancel.
GenerateResult generate(Context& ctx, const Vocab& vocab, int32_t seq,
                        const std::vector<int32_t>& prompt, const GenerateOptions& opts,
                        const std::function<bool(const std::string&)>& on_text);

// Holds back text that might be the beginning of a stop string and detects stop strings.
class StopMatcher {
  public:
    explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
    // Add text; returns the part that is now safe to emit. Sets stopped() when a stop
    // string completed (the text before it is returned, the rest dropped).
    std::string push(const std::string& text);
    std::string flush();  // remaining held-back text at the end
    bool stopped() const { return stopped_; }

  private:
    std::vector<std::string> stops_;
    std::string pending_;
    bool stopped_ = false;
};

}  // namespace lokal
