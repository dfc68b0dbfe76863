#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace lokal {

PerplexityResult perplexity(const Model& model, int n_threads, const std::vector<int32_t>& tokens,
                            const PerplexityOptions& opts) {
    const int n_ctx = opts.n_ctx;
    if (n_ctx < 4) throw ContextError("perplexity needs a context of at least 4 tokens");
    const int n_chunks = (int)(tokens.size() / (size_t)n_ctx);
    if (n_chunks == 0)
        throw ContextError("the text has " + std::to_string(tokens.size()) +
                           " tokens, fewer than the context of " + std::to_string(n_ctx) +
                           " (use a longer text or a smaller -c)");
    // Several chunks per forward pass when they fit in one batch.
    const int per_pass = std::max(1, std::min(n_chunks, 512 / n_ctx));
    ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.n_seq_max = per_pass;
    cp.n_threads = n_threads;
    cp.kv_type = opts.kv_type;
    Context ctx(model, cp);
    KvCache& cache = ctx.cache();
    const int64_t nv = model.hp.n_vocab;
    const int first = n_ctx / 2;

    PerplexityResult r;
    double nll_sum = 0;
    Batch batch;
    ForwardOutput out;
    std::vector<double> row;
    for (int c0 = 0; c0 < n_chunks; c0 += per_pass) {
        const int nc = std::min(per_pass, n_chunks - c0);
        std::vector<int32_t> seqs;
        batch.clear();
        for (int c = 0; c < nc; ++c) {
            const int32_t s = cache.create_sequence();
            if (!cache.prepare(s, 0, n_ctx)) throw ContextError("the KV cache is full");
            seqs.push_back(s);
            batch.block_tables.push_back(&cache.table(s));
            const size_t start = (size_t)(c0 + c) * n_ctx;
            for (int j = 0; j < n_ctx; ++j) {
                int32_t tok = tokens[start + j];
                if (j == 0 && opts.bos >= 0) tok = opts.bos;
                batch.add(tok, j, c, j >= first && j < n_ctx - 1);
            }
        }
        ctx.decode(batch, out);
        const int scored_per_chunk = n_ctx - 1 - first;
        for (int c = 0; c < nc; ++c) {
            const size_t start = (size_t)(c0 + c) * n_ctx;
            for (int j = 0; j < scored_per_chunk; ++j) {
                const float* l = out.logits.data() + ((size_t)c * scored_per_chunk + j) * nv;
                const int32_t next = tokens[start + first + j + 1];
                // log-softmax in double for a stable sum over many tokens
                float max = l[0];
                for (int64_t i = 1; i < nv; ++i) max = std::max(max, l[i]);
                double sum = 0;
                for (int64_t i = 0; i < nv; ++i) sum += std::exp((double)l[i] - max);
                nll_sum += -((double)l[next] - max - std::log(sum));
                ++r.tokens_scored;
                if (opts.on_scored) opts.on_scored(l, next);
            }
            cache.free_sequence(seqs[c]);
        }
        r.chunks += nc;
        r.tokens_evaluated += (int64_t)nc * n_ctx;
        if (opts.progress)
            opts.progress(r.chunks, n_chunks, std::exp(nll_sum / (double)r.tokens_scored));
    }
    r.nll_mean = nll_sum / (double)r.tokens_scored;
    r.ppl = std::exp(r.nll_mean);
    return r;
}

}  // namespace lokal
