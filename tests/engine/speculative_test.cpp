// Speculative decoding: the drafters propose what they should, and generating with drafts
// gives exactly the output of generating without (greedy and seeded sampling, penalties,
// stop strings, length and context limits), leaving no rejected draft in the cache.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/context.h"
#include "engine/generate.h"
#include "engine/speculative.h"
#include "shared_path.h"
#include "tokenizer/vocab.h"

namespace lokal {
namespace {

std::vector<int32_t> propose(Drafter& d, const std::vector<int32_t>& history, int max_tokens) {
    std::vector<int32_t> out;
    d.propose(history, max_tokens, out);
    return out;
}

TEST(Speculative, LookupCopiesWhatFollowedTheLatestMatch) {
    DraftParams p;
    p.ngram_max = 3;
    p.ngram_min = 2;
    LookupDrafter d(p);
    // The last three tokens (1 2 3) occur at 0 and at 4; the later one was followed by 7 5.
    const std::vector<int32_t> h = {1, 2, 3, 9, 1, 2, 3, 7, 5, 1, 2, 3};
    EXPECT_EQ(propose(d, h, 2), (std::vector<int32_t>{7, 5}));
    // Past the end of the history the copy reads its own output: 7 5 1 2 3 7 ...
    EXPECT_EQ(propose(d, h, 6), (std::vector<int32_t>{7, 5, 1, 2, 3, 7}));
    // Only the shorter n-gram (8 3) matches: what followed it.
    EXPECT_EQ(propose(d, {8, 3, 4, 6, 8, 3}, 3), (std::vector<int32_t>{4, 6, 8}));
}

TEST(Speculative, LookupContinuesAPeriodAndNeedsTheMinimumMatch) {
    DraftParams p;
    p.ngram_max = 3;
    p.ngram_min = 2;
    LookupDrafter d(p);
    EXPECT_EQ(propose(d, {5, 6, 5, 6, 5, 6}, 5), (std::vector<int32_t>{5, 6, 5, 6, 5}));
    // Nothing repeats, or only single tokens do (below ngram_min): no drafts.
    EXPECT_TRUE(propose(d, {1, 2, 3, 4, 5}, 4).empty());
    EXPECT_TRUE(propose(d, {1, 2, 7, 3, 2}, 4).empty());
    EXPECT_TRUE(propose(d, {4}, 4).empty());
    EXPECT_TRUE(propose(d, {4, 4, 4}, 0).empty());
    p.ngram_min = 1;
    LookupDrafter single(p);
    EXPECT_EQ(propose(single, {1, 2, 7, 3, 2}, 2), (std::vector<int32_t>{7, 3}));
}

std::unique_ptr<Model> load(const std::string& name) {
    return Model::load(test::shared_path("models/" + name));
}

std::unique_ptr<Vocab> vocab_of(const Model& m) {
    return Vocab::from_gguf(*m.file);
}

struct Case {
    const char* name;
    GenerateOptions opts;
    int n_ctx = 256;
};

// `middle`: a piece of the greedy output, so that the stop-string case does stop.
std::vector<Case> cases(const std::string& middle) {
    std::vector<Case> cs;
    GenerateOptions greedy;
    greedy.n_predict = 80;
    greedy.sampling.temperature = 0;
    cs.push_back({"greedy", greedy});
    GenerateOptions sampled;
    sampled.n_predict = 80;
    sampled.sampling.temperature = 0.9f;
    sampled.sampling.seed = 7;
    cs.push_back({"sampled", sampled});
    GenerateOptions penalized = sampled;
    penalized.sampling.repeat_penalty = 1.3f;
    penalized.sampling.frequency_penalty = 0.2f;
    penalized.sampling.top_k = 0;
    penalized.sampling.min_p = 0;
    cs.push_back({"penalties", penalized});
    GenerateOptions stopped = greedy;
    stopped.stop = {middle};
    cs.push_back({"stop string", stopped});
    GenerateOptions full = greedy;
    full.n_predict = -1;
    cs.push_back({"context limit", full, 40});
    return cs;
}

GenerateResult run(const Model& model, const Vocab& vocab, const std::vector<int32_t>& prompt,
                   GenerateOptions opts, int n_ctx, Drafter* drafter,
                   std::vector<float>* next_logits = nullptr) {
    ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.block_size = 4;  // drafts cross block boundaries
    Context ctx(model, cp);
    const int32_t seq = ctx.cache().create_sequence();
    opts.drafter = drafter;
    GenerateResult r = generate(ctx, vocab, seq, prompt, opts, nullptr);
    // The cache holds the prompt and the output (all but possibly the newest token) and
    // nothing rejected: the logits of one more token are those a plain run gives.
    const int64_t held = (int64_t)prompt.size() + (int64_t)r.tokens.size();
    EXPECT_LE(ctx.cache().length(seq), held);
    EXPECT_GE(ctx.cache().length(seq), held - 1);
    if (next_logits && !r.tokens.empty() && ctx.cache().length(seq) < ctx.n_ctx()) {
        ctx.cache().truncate(seq, (int32_t)held - 1);
        const int32_t last[1] = {r.tokens.back()};
        ctx.eval(seq, last, false, *next_logits);
    }
    return r;
}

void expect_same(const GenerateResult& plain, const GenerateResult& spec) {
    EXPECT_EQ(spec.tokens, plain.tokens);
    EXPECT_EQ(spec.text, plain.text);
    EXPECT_EQ(spec.stop_reason, plain.stop_reason);
}

// The output with drafts equals the output without, bit for bit, for drafts that are
// always right (the model drafting for itself), sometimes right (a lower-precision copy
// of the model; prompt lookup) and with any draft length.
TEST(Speculative, DraftsNeverChangeTheOutput) {
    auto target = load("tiny-k.Q8_0.gguf");
    auto low = load("tiny-k.Q4_0.gguf");
    auto vocab = vocab_of(*target);
    const std::vector<int32_t> prompt = vocab->tokenize("Once upon a time there was", true, false);
    ASSERT_GT(prompt.size(), 2u);
    int64_t accepted_low = 0, proposed_low = 0;
    GenerateOptions greedy;
    greedy.n_predict = 80;
    greedy.sampling.temperature = 0;
    const std::string text = run(*target, *vocab, prompt, greedy, 256, nullptr).text;
    ASSERT_GT(text.size(), 8u);
    for (const Case& c : cases(text.substr(text.size() / 2, 2))) {
        SCOPED_TRACE(c.name);
        std::vector<float> plain_next;
        const GenerateResult plain =
            run(*target, *vocab, prompt, c.opts, c.n_ctx, nullptr, &plain_next);
        ASSERT_FALSE(plain.tokens.empty());
        if (!c.opts.stop.empty()) {
            EXPECT_EQ(plain.stop_reason, "stop");
        }
        if (c.n_ctx == 40) {
            EXPECT_EQ(plain.stop_reason, "context");
        }
        for (int n_draft : {1, 3, 8}) {
            SCOPED_TRACE(n_draft);
            DraftParams dp;
            dp.n_max = n_draft;
            dp.p_min = 0;  // always draft, so every path is taken
            {
                LookupDrafter lookup(dp);
                std::vector<float> next;
                const GenerateResult r =
                    run(*target, *vocab, prompt, c.opts, c.n_ctx, &lookup, &next);
                expect_same(plain, r);
                EXPECT_EQ(next, plain_next);
                EXPECT_LE(r.draft.accepted, r.draft.proposed);
            }
            for (const Model* draft : {target.get(), low.get()}) {
                ContextParams dc;
                dc.n_ctx = c.n_ctx;
                Context draft_ctx(*draft, dc);
                ModelDrafter md(draft_ctx, dp);
                std::vector<float> next;
                const GenerateResult r = run(*target, *vocab, prompt, c.opts, c.n_ctx, &md, &next);
                expect_same(plain, r);
                EXPECT_EQ(next, plain_next);
                EXPECT_GT(r.draft.proposed, 0);
                if (draft == target.get() && c.opts.sampling.temperature == 0) {
                    // The model drafting for itself greedily is always right.
                    EXPECT_EQ(r.draft.accepted, r.draft.proposed);
                } else if (draft == low.get()) {
                    accepted_low += r.draft.accepted;
                    proposed_low += r.draft.proposed;
                }
            }
        }
    }
    // The Q4_0 copy agrees often but not always: both outcomes of a check were exercised.
    EXPECT_GT(accepted_low, 0);
    EXPECT_LT(accepted_low, proposed_low);
}

// A drafter whose context runs out stops drafting; the output is unchanged.
TEST(Speculative, DraftModelThatRunsOutOfRoomStops) {
    auto target = load("tiny-k.Q8_0.gguf");
    auto vocab = vocab_of(*target);
    const std::vector<int32_t> prompt = vocab->tokenize("A cat", true, false);
    GenerateOptions o;
    o.n_predict = 60;
    o.sampling.temperature = 0;
    const GenerateResult plain = run(*target, *vocab, prompt, o, 128, nullptr);
    ContextParams dc;
    dc.n_ctx = 24;  // smaller than the generation
    Context draft_ctx(*target, dc);
    DraftParams dp;
    dp.n_max = 4;
    dp.p_min = 0;
    ModelDrafter md(draft_ctx, dp);
    const GenerateResult r = run(*target, *vocab, prompt, o, 128, &md);
    expect_same(plain, r);
    EXPECT_GT(md.declined(), 0);
    EXPECT_GT(r.draft.accepted, 0);
}

TEST(Speculative, DraftVocabularyMustMatch) {
    auto k = load("tiny-k.Q8_0.gguf");
    auto k4 = load("tiny-k.Q4_0.gguf");
    auto qwen = load("tiny-qwen2.Q8_0.gguf");
    auto vk = vocab_of(*k), vk4 = vocab_of(*k4), vq = vocab_of(*qwen);
    EXPECT_EQ(draft_vocab_mismatch(*vk, *vk4), "");
    EXPECT_NE(draft_vocab_mismatch(*vk, *vq).find("tokenizer"), std::string::npos);
    EXPECT_NE(draft_vocab_mismatch(*vq, *vk).find("tokenizer"), std::string::npos);
}

}  // namespace
}  // namespace lokal
