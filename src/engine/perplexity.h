// Perplexity the way llama.cpp's perplexity tool computes it, so numbers compare:
// the text is tokenized once (with BOS), split into consecutive chunks of n_ctx tokens,
// the first token of each chunk is replaced by BOS, and only the second half of each
// chunk is scored. PPL = exp(mean negative log-likelihood of the scored tokens).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "engine/context.h"

namespace lokal {

struct PerplexityResult {
    double ppl = 0;
    double nll_mean = 0;
    int chunks = 0;
    int64_t tokens_evaluated = 0;  // chunks * n_ctx
    int64_t tokens_scored = 0;
};

struct PerplexityOptions {
    int n_ctx = 128;
    int32_t bos = -1;  // replaces each chunk's first token; -1 keeps it
    KvType kv_type = KvType::F16;
    // Called after each chunk with (chunks done, total chunks, running ppl).
    std::function<void(int, int, double)> progress;
    // Receives each scored position's full logits row [n_vocab] and the true next token,
    // in order (for saving KL-divergence bases and comparing against them).
    std::function<void(const float* logits, int32_t next_token)> on_scored;
};

// Throws ContextError when the text has fewer than n_ctx tokens.
PerplexityResult perplexity(const Model& model, int n_threads, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& opts);

}  // namespace lokal
