// The continuous-batching scheduler: batch invariance, prefix caching, preemption,
// cancellation, the bounded queue and embeddings.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <set>
#include <thread>

#include "engine/scheduler.h"
#include "engine/speculative.h"
#include "shared_path.h"

namespace lokal {
namespace {

struct Loaded {
    std::unique_ptr<Model> model;
    std::unique_ptr<Vocab> vocab;
};

const Loaded& stories() {
    static Loaded l = [] {
        Loaded x;
        x.model = Model::load(test::shared_path("models/stories260K.gguf"));
        x.vocab = Vocab::from_gguf(*x.model->file);
        return x;
    }();
    return l;
}

struct Result {
    std::string text;
    std::vector<int32_t> tokens;
    std::vector<float> logprobs;                 // per token (when asked)
    std::vector<std::vector<TokenLogprob>> top;  // per token (when asked)
    SeqEvent last;
};

Result collect(SeqHandle& h) {
    Result r;
    SeqEvent ev;
    for (;;) {
        if (!h.next(ev, std::chrono::seconds(60))) {
            ADD_FAILURE() << "timed out waiting for the scheduler";
            return r;
        }
        r.text += ev.text;
        if (ev.token >= 0) {
            r.tokens.push_back(ev.token);
            r.logprobs.push_back(ev.logprob);
            r.top.push_back(ev.top);
        }
        if (ev.done) {
            r.last = ev;
            return r;
        }
    }
}

// Submits every request at once to a scheduler over ctx; their results, in order.
std::vector<Result> submit_all(Context& ctx, const Vocab& vocab, const SchedulerParams& sp,
                               const std::vector<SeqRequest>& reqs, Scheduler::Stats* stats) {
    Scheduler s(ctx, vocab, sp);
    std::vector<std::shared_ptr<SeqHandle>> hs;
    for (const SeqRequest& r : reqs) hs.push_back(s.submit(r));
    std::vector<Result> out;
    for (auto& h : hs) out.push_back(collect(*h));
    if (stats) *stats = s.stats();
    return out;
}

SeqRequest greedy(const std::string& prompt, int n) {
    SeqRequest r;
    r.prompt = stories().vocab->tokenize(prompt, true, false);
    r.n_predict = n;
    r.sampling.temperature = 0;
    r.ignore_eos = true;
    return r;
}

const std::vector<std::string> kPrompts = {"Once upon a time", "The little dog",
                                           "Lily went to the park and", "One day, a big bear"};

ContextParams params(int n_ctx, int n_seq) {
    ContextParams cp;
    cp.n_ctx = n_ctx;
    cp.n_seq_max = n_seq;
    cp.n_threads = 2;
    return cp;
}

TEST(Scheduler, GreedyOutputSameAloneAndBesideFifteenOthers) {
    const Loaded& m = stories();
    std::vector<Result> solo;
    {
        Context ctx(*m.model, params(256, 1));
        SchedulerParams sp;
        sp.max_running = 1;
        sp.prefix_cache = false;
        Scheduler s(ctx, *m.vocab, sp);
        for (auto& p : kPrompts) solo.push_back(collect(*s.submit(greedy(p, 48))));
    }
    Context ctx(*m.model, params(256, 16));
    SchedulerParams sp;
    sp.max_running = 16;
    sp.step_tokens = 37;  // odd budget: prompts are split into chunks at varying points
    sp.prefix_cache = false;
    Scheduler s(ctx, *m.vocab, sp);
    std::vector<std::shared_ptr<SeqHandle>> hs;
    for (int i = 0; i < 16; ++i) hs.push_back(s.submit(greedy(kPrompts[i % 4], 48)));
    for (int i = 0; i < 16; ++i) {
        Result r = collect(*hs[i]);
        EXPECT_EQ(r.tokens, solo[i % 4].tokens) << "request " << i;
        EXPECT_EQ(r.text, solo[i % 4].text);
        EXPECT_EQ(r.last.finish_reason, "length");
        EXPECT_EQ(r.last.completion_tokens, 48);
    }
    EXPECT_GT(s.stats().steps, 0);
}

// Prefix caching reuses cached K/V down to the token: full blocks by their chain hash, then
// the start of a cached block (or of the partly filled block a finished request left) that
// the prompt shares, copied on first write. The text is what an uncached run gives.
TEST(Scheduler, PrefixCacheReusesToTheToken) {
    const Loaded& m = stories();
    SeqRequest first = greedy(
        "Once upon a time there was a little girl named Lily. She loved to play outside in the sun "
        "with her friends every day.",
        16);
    const size_t n_prompt = first.prompt.size();
    ASSERT_GE(n_prompt, 33u);
    ASSERT_NE(n_prompt % 16, 0u);  // the prompt ends inside a block
    Context ctx(*m.model, params(256, 2));
    Scheduler s(ctx, *m.vocab, SchedulerParams{});
    Context plain_ctx(*m.model, params(256, 2));
    SchedulerParams no_cache;
    no_cache.prefix_cache = false;
    Scheduler plain(plain_ctx, *m.vocab, no_cache);

    Result a = collect(*s.submit(first));
    EXPECT_EQ(a.last.cached_tokens, 0);
    ASSERT_EQ(a.tokens.size(), 16u);

    // The same prompt again (a regenerate): all but the last prompt token come from the cache.
    Result b = collect(*s.submit(first));
    EXPECT_EQ(b.last.cached_tokens, (int)n_prompt - 1);
    EXPECT_EQ(b.tokens, a.tokens);

    // The next turn of a chat: the prompt continues the first request's text. Its K/V hold
    // the prompt and every generated token but the last (sampled, never fed back).
    SeqRequest next = first;
    next.prompt.insert(next.prompt.end(), a.tokens.begin(), a.tokens.end());
    const auto more = m.vocab->tokenize(" Then they went home.", false, false);
    next.prompt.insert(next.prompt.end(), more.begin(), more.end());
    Result c = collect(*s.submit(next));
    EXPECT_EQ(c.last.cached_tokens, (int)n_prompt + 15);
    EXPECT_EQ(c.tokens, collect(*plain.submit(next)).tokens);

    // A prompt that leaves the cached text in the middle of a block reuses up to there.
    SeqRequest fork = first;
    fork.prompt.resize(20);
    const auto other = m.vocab->tokenize(" purple elephants who sang songs", false, false);
    fork.prompt.insert(fork.prompt.end(), other.begin(), other.end());
    if (fork.prompt[20] == first.prompt[20]) fork.prompt.erase(fork.prompt.begin() + 20);  // a "▁"
    ASSERT_NE(fork.prompt[20], first.prompt[20]);
    Result d = collect(*s.submit(fork));
    EXPECT_EQ(d.last.cached_tokens, 20);
    EXPECT_EQ(d.tokens, collect(*plain.submit(fork)).tokens);

    // That request wrote into its copy of the shared block, not into the cached one.
    Result e = collect(*s.submit(first));
    EXPECT_EQ(e.last.cached_tokens, (int)n_prompt - 1);
    EXPECT_EQ(e.tokens, a.tokens);

    EXPECT_EQ(s.stats().prefix_hit_tokens,
              2 * (int64_t)(n_prompt - 1) + (int64_t)n_prompt + 15 + 20);
    EXPECT_GT(s.stats().kv_cached, 0);
}

// Prompts sharing prefixes of every length, under a KV pool too small for the sequences
// running together (eviction, preemption, a shared edge block dropped instead of copied):
// every answer is the one an uncached scheduler gives alone, and when all are done the only
// blocks still held are the cache's, one entry each (no block leaked or claimed twice).
TEST(Scheduler, RandomPrefixSharingUnderATinyPoolMatchesUncachedRuns) {
    const Loaded& m = stories();
    const std::vector<int32_t> base = m.vocab->tokenize(
        "Once upon a time there was a little girl named Lily. She loved to play outside in the sun "
        "with her friends and her dog every day.",
        true, false);
    ASSERT_GE(base.size(), 37u);
    const std::vector<std::string> tails = {" The end.", " Then it rained.", " She was happy",
                                            " Ben came", " The dog barked loudly at the cat"};
    std::mt19937 rng(7);
    std::vector<SeqRequest> reqs;
    for (int i = 0; i < 40; ++i) {
        SeqRequest r;
        const size_t keep = 1 + rng() % 36;  // any offset, inside a block or on its edge
        r.prompt.assign(base.begin(), base.begin() + (long)keep);
        if (rng() % 4 != 0) {  // else the bare prefix: a regenerate of an earlier prompt
            const auto t = m.vocab->tokenize(tails[rng() % tails.size()], false, false);
            r.prompt.insert(r.prompt.end(), t.begin(), t.end());
        }
        r.n_predict = 1 + (int)(rng() % 12);
        r.sampling.temperature = 0;
        r.ignore_eos = true;
        reqs.push_back(r);
    }
    std::vector<Result> want;
    {
        Context ctx(*m.model, params(64, 1));
        SchedulerParams sp;
        sp.max_running = 1;
        sp.prefix_cache = false;
        Scheduler s(ctx, *m.vocab, sp);
        for (const SeqRequest& r : reqs) want.push_back(collect(*s.submit(r)));
    }
    Context ctx(*m.model, params(80, 1));  // 5 blocks for up to 3 sequences of <= 4 blocks
    SchedulerParams sp;
    sp.max_running = 3;
    sp.step_tokens = 19;  // prompts split at varying points
    Scheduler s(ctx, *m.vocab, sp);
    for (size_t wave = 0; wave < reqs.size(); wave += 10) {  // later waves hit the cache
        std::vector<std::shared_ptr<SeqHandle>> hs;
        for (size_t i = wave; i < wave + 10; ++i) hs.push_back(s.submit(reqs[i]));
        for (size_t i = wave; i < wave + 10; ++i) {
            const Result r = collect(*hs[i - wave]);
            EXPECT_EQ(r.last.finish_reason, "length") << "request " << i << ": " << r.last.error;
            EXPECT_EQ(r.tokens, want[i].tokens) << "request " << i;
        }
    }
    // The loop publishes its stats after the step that sent the last answer.
    Scheduler::Stats st = s.stats();
    for (int i = 0; i < 200 && (st.running > 0 || st.kv_used != st.kv_cached); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        st = s.stats();
    }
    EXPECT_GT(st.prefix_hit_tokens, 0);
    EXPECT_GT(st.preemptions, 0);
    EXPECT_EQ(st.running, 0);
    EXPECT_EQ(st.kv_used, st.kv_cached);
}

TEST(Scheduler, PreemptsUnderATinyKvBudgetAndStillCompletes) {
    const Loaded& m = stories();
    std::vector<Result> solo;
    {
        Context ctx(*m.model, params(64, 4));
        Scheduler s(ctx, *m.vocab, SchedulerParams{});
        for (int i = 0; i < 3; ++i) solo.push_back(collect(*s.submit(greedy(kPrompts[i], 40))));
    }
    // 64 positions in all (4 blocks) for three sequences of ~45 positions each.
    Context ctx(*m.model, params(64, 1));
    SchedulerParams sp;
    sp.max_running = 3;
    Scheduler s(ctx, *m.vocab, sp);
    std::vector<std::shared_ptr<SeqHandle>> hs;
    for (int i = 0; i < 3; ++i) hs.push_back(s.submit(greedy(kPrompts[i], 40)));
    for (int i = 0; i < 3; ++i) {
        Result r = collect(*hs[i]);
        EXPECT_EQ(r.last.finish_reason, "length") << r.last.error;
        EXPECT_EQ(r.tokens, solo[i].tokens) << "request " << i;
    }
    EXPECT_GT(s.stats().preemptions, 0);
}

// Prompt log-probabilities (echo + logprobs): each prompt token after the first is scored
// exactly once, on the first event, with the same values alone and when preemption under a
// tiny KV budget makes the prompt be computed again.
TEST(Scheduler, PromptLogprobsOnceAndTheSameUnderPreemption) {
    const Loaded& m = stories();
    auto run = [&](Scheduler& s, const std::vector<SeqRequest>& reqs) {
        std::vector<std::shared_ptr<SeqHandle>> hs;
        for (const SeqRequest& r : reqs) hs.push_back(s.submit(r));
        std::vector<std::vector<PromptLogprob>> out(reqs.size());
        for (size_t i = 0; i < hs.size(); ++i) {
            SeqEvent ev;
            for (int n = 0;; ++n) {
                if (!hs[i]->next(ev, std::chrono::seconds(60))) {
                    ADD_FAILURE() << "timed out";
                    break;
                }
                if (n > 0) {
                    EXPECT_TRUE(ev.prompt_logprobs.empty()) << "event " << n;
                }
                for (auto& p : ev.prompt_logprobs) out[i].push_back(p);
                if (ev.done) break;
            }
        }
        return out;
    };
    std::vector<SeqRequest> reqs;
    for (int i = 0; i < 3; ++i) {
        SeqRequest r = greedy(kPrompts[i], 40);
        r.top_logprobs = 1;
        r.prompt_logprobs = true;
        reqs.push_back(r);
    }
    std::vector<std::vector<PromptLogprob>> solo;
    {
        Context ctx(*m.model, params(64, 4));
        Scheduler s(ctx, *m.vocab, SchedulerParams{});
        for (auto& r : reqs) solo.push_back(run(s, {r})[0]);
    }
    Context ctx(*m.model, params(64, 1));
    SchedulerParams sp;
    sp.max_running = 3;
    Scheduler s(ctx, *m.vocab, sp);
    const auto busy = run(s, reqs);
    EXPECT_GT(s.stats().preemptions, 0);
    for (size_t i = 0; i < reqs.size(); ++i) {
        ASSERT_EQ(solo[i].size(), reqs[i].prompt.size() - 1);
        ASSERT_EQ(busy[i].size(), solo[i].size());
        for (size_t k = 0; k < solo[i].size(); ++k) {
            EXPECT_EQ(solo[i][k].token, reqs[i].prompt[k + 1]);
            EXPECT_LE(solo[i][k].logprob, 0.0f);
            ASSERT_EQ(solo[i][k].top.size(), 1u);
            EXPECT_GE(solo[i][k].top[0].logprob, solo[i][k].logprob);
            EXPECT_EQ(busy[i][k].logprob, solo[i][k].logprob) << "request " << i << " token " << k;
        }
    }
}

// A newcomer's prompt runs in a step of its own while others decode (its first token does
// not wait for theirs), never twice in a row, and the text is the same either way.
TEST(Scheduler, PrefillFirstRunsANewPromptAlone) {
    const Loaded& m = stories();
    std::vector<std::string> texts[2];
    for (bool first : {true, false}) {
        Context ctx(*m.model, params(1024, 4));
        SchedulerParams sp;
        sp.max_running = 4;
        sp.prefill_first = first;
        Scheduler s(ctx, *m.vocab, sp);
        auto a = s.submit(greedy("Once upon a time", 400));
        SeqEvent ev;
        for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->next(ev, std::chrono::seconds(60)));
        ASSERT_FALSE(ev.done);  // a is decoding now
        auto b = s.submit(greedy("Lily went to the park and", 8));
        auto c = s.submit(greedy("One day, a big bear", 8));
        texts[first].push_back(collect(*b).text);
        texts[first].push_back(collect(*c).text);
        a->cancel();
        collect(*a);
        const auto st = s.stats();
        if (first) {
            EXPECT_GE(st.prefill_only_steps, 1);
            EXPECT_LE(st.prefill_only_steps * 2, st.steps + 1);  // never two in a row
        } else {
            EXPECT_EQ(st.prefill_only_steps, 0);
        }
    }
    EXPECT_EQ(texts[0], texts[1]);
}

// A request arriving while a step of decoding sequences runs stops that step between
// layers (the matmul observer submits it from inside the third one-token step, at its first
// matmul, so the stop is certain); the newcomer is prefilled, the decoders' step reruns,
// and every text is what a scheduler that never stops a step produces.
TEST(Scheduler, ArrivalStopsADecodeStepWithoutChangingAnyOutput) {
    const Loaded& m = stories();
    std::vector<std::string> texts[2];
    int64_t aborted[2] = {0, 0};
    for (bool abort : {true, false}) {
        Context ctx(*m.model, params(1024, 4));
        SchedulerParams sp;
        sp.max_running = 4;
        sp.abort_for_arrivals = abort;
        std::atomic<bool> submitted{false};
        std::shared_ptr<SeqHandle> late;
        Scheduler* sched = nullptr;
        int decode_steps = 0;  // loop thread only
        const Tensor* first_weight = &m.model->layers[0].wq;
        ctx.forward().observer = [&](const Tensor& w, int64_t, const float*, int64_t n) {
            if (n == 1 && &w == first_weight && ++decode_steps == 3) {
                late = sched->submit(greedy("The little dog", 12));
                submitted = true;
            }
        };
        Scheduler s(ctx, *m.vocab, sp);
        sched = &s;
        Result ra = collect(*s.submit(greedy("Once upon a time", 40)));
        ASSERT_TRUE(submitted);
        texts[abort] = {ra.text, collect(*late).text};
        EXPECT_EQ(ra.last.completion_tokens, 40);
        aborted[abort] = s.stats().aborted_steps;
        ctx.forward().observer = nullptr;
    }
    EXPECT_EQ(texts[0], texts[1]);
    EXPECT_GE(aborted[1], 1);
    EXPECT_EQ(aborted[0], 0);
}

// Requests sent back to back, each as soon as the previous one answered, stop the decode
// steps again and again, yet the decoding sequence advances at least once per two of them
// (a stopped step right after a prefill-only one is followed by a mixed step).
TEST(Scheduler, BackToBackArrivalsDoNotStarveDecoding) {
    const Loaded& m = stories();
    Context ctx(*m.model, params(1024, 4));
    SchedulerParams sp;
    sp.max_running = 4;
    Scheduler s(ctx, *m.vocab, sp);
    auto a = s.submit(greedy("Once upon a time", 1000));
    SeqEvent ev;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(a->next(ev, std::chrono::seconds(60)));
    int before = 3;
    while (a->next(ev, std::chrono::milliseconds(0))) ++before;
    const int n_short = 12;
    for (int i = 0; i < n_short; ++i) {
        Result r = collect(*s.submit(greedy(kPrompts[i % 4], 1)));
        EXPECT_EQ(r.last.completion_tokens, 1);
    }
    int after = before;
    while (a->next(ev, std::chrono::milliseconds(0))) ++after;
    EXPECT_GE(after - before, n_short / 2 - 1);
    if (!ev.done) {
        a->cancel();
        collect(*a);
    }
}

TEST(Scheduler, CancellationFreesTheSequence) {
    const Loaded& m = stories();
    Context ctx(*m.model, params(512, 1));
    SchedulerParams sp;
    sp.step_tokens = 1;  // a long prefill takes many steps
    sp.prefix_cache = false;
    Scheduler s(ctx, *m.vocab, sp);
    SeqRequest r;
    r.prompt.assign(400, 300);
    r.n_predict = 100;
    auto h = s.submit(r);
    h->cancel();
    Result res = collect(*h);
    EXPECT_EQ(res.last.finish_reason, "cancelled");
    for (int i = 0; i < 100 && !s.idle(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(s.idle());
    EXPECT_EQ(ctx.cache().free_blocks(), ctx.cache().n_blocks());
}

TEST(Scheduler, RefusesBeyondTheQueueBound) {
    const Loaded& m = stories();
    Context ctx(*m.model, params(512, 1));
    SchedulerParams sp;
    sp.max_running = 1;
    sp.max_queue = 2;
    sp.step_tokens = 1;
    Scheduler s(ctx, *m.vocab, sp);
    SeqRequest r;
    r.prompt.assign(400, 300);
    std::vector<std::shared_ptr<SeqHandle>> accepted;
    int refused = 0;
    for (int i = 0; i < 10; ++i) {
        auto h = s.submit(r);
        if (h)
            accepted.push_back(h);
        else
            ++refused;
    }
    EXPECT_GE(refused, 7);
    for (auto& h : accepted) h->cancel();
    for (auto& h : accepted) EXPECT_EQ(collect(*h).last.finish_reason, "cancelled");
}

TEST(Scheduler, PromptLongerThanContextIsAnError) {
    const Loaded& m = stories();
    Context ctx(*m.model, params(32, 1));
    Scheduler s(ctx, *m.vocab, SchedulerParams{});
    SeqRequest r;
    r.prompt.assign(40, 300);
    Result res = collect(*s.submit(r));
    EXPECT_EQ(res.last.finish_reason, "error");
    EXPECT_NE(res.last.error.find("context"), std::string::npos);
}

TEST(Scheduler, StopStringsAndEmbeddings) {
    const Loaded& m = stories();
    Context ctx(*m.model, params(256, 4));
    Scheduler s(ctx, *m.vocab, SchedulerParams{});
    Result full = collect(*s.submit(greedy("Once upon a time", 40)));
    ASSERT_GT(full.text.size(), 10u);
    SeqRequest r = greedy("Once upon a time", 40);
    const std::string stop = full.text.substr(5, 3);
    r.stop = {stop};
    Result cut = collect(*s.submit(r));
    EXPECT_EQ(cut.last.finish_reason, "stop");
    EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));

    // Embeddings batched beside a generation: unit length, deterministic.
    auto gen = s.submit(greedy("The little dog", 30));
    SeqRequest e;
    e.embed = true;
    e.prompt = m.vocab->tokenize("a happy cat", true, false);
    Result e1 = collect(*s.submit(e));
    Result e2 = collect(*s.submit(e));
    collect(*gen);
    ASSERT_EQ((int)e1.last.embedding.size(), m.model->hp.dim);
    double norm = 0;
    for (float v : e1.last.embedding) norm += (double)v * v;
    EXPECT_NEAR(norm, 1.0, 1e-4);
    EXPECT_EQ(e1.last.embedding, e2.last.embedding);
}

// Sequences decoding together draw their tokens on every thread at once (Scheduler::step);
// each draws with its own sampler and generator, so a seeded request gives the tokens it
// gives alone, and the same log-probabilities (computed on those threads too). Top-p alone
// at temperature 1 (an OpenAI client's settings) and lokal's default filters, different
// seeds and prompts, log-probabilities asked by two of the four.
TEST(Scheduler, SampledTokensDoNotDependOnTheBatch) {
    const Loaded& m = stories();
    Context ctx(*m.model, params(256, 4));
    Scheduler s(ctx, *m.vocab, SchedulerParams{});
    const char* prompts[] = {"Once upon a time", "The little dog ran to the park",
                             "Lily and Ben went to the beach", "One day a big bird"};
    std::vector<SeqRequest> reqs;
    for (int i = 0; i < 4; ++i) {
        SeqRequest r = greedy(prompts[i], 24);
        r.sampling.temperature = 1.0f;
        if (i % 2 == 0) r.sampling.top_k = 0, r.sampling.top_p = 0.9f, r.sampling.min_p = 0;
        r.sampling.seed = 7 + (uint64_t)i;
        if (i < 2) r.top_logprobs = 3;
        reqs.push_back(r);
    }
    std::vector<Result> alone;
    for (auto& r : reqs) alone.push_back(collect(*s.submit(r)));
    const auto before = s.stats();
    std::vector<std::shared_ptr<SeqHandle>> hs;
    for (auto& r : reqs) hs.push_back(s.submit(r));
    for (int i = 0; i < 4; ++i) {
        const Result r = collect(*hs[(size_t)i]);
        EXPECT_EQ(r.tokens, alone[(size_t)i].tokens) << "request " << i;
        EXPECT_EQ(r.tokens.size(), 24u);
        EXPECT_EQ(r.logprobs, alone[(size_t)i].logprobs) << "request " << i;
        ASSERT_EQ(r.top.size(), alone[(size_t)i].top.size());
        for (size_t t = 0; t < r.top.size(); ++t) {
            ASSERT_EQ(r.top[t].size(), i < 2 ? 3u : 0u) << "request " << i;
            for (size_t j = 0; j < r.top[t].size(); ++j) {
                EXPECT_EQ(r.top[t][j].token, alone[(size_t)i].top[t][j].token);
                EXPECT_EQ(r.top[t][j].logprob, alone[(size_t)i].top[t][j].logprob);
            }
            if (i < 2) {
                EXPECT_LE(r.logprobs[t], 0.0f);
            }
        }
    }
    // They decoded together: far fewer steps than the 4 x 24 tokens one at a time take.
    const auto after = s.stats();
    EXPECT_EQ(after.tokens_out - before.tokens_out, 4 * 24);
    EXPECT_LT(after.steps - before.steps, 2 * 24);
}

// n > 1: the prompt is computed once and its blocks shared; each choice is exactly what
// the same request (same seed) gives alone.
TEST(Scheduler, GroupForksThePromptInsteadOfRecomputingIt) {
    const Loaded& m = stories();
    Context ctx(*m.model, params(256, 4));
    SchedulerParams sp;
    sp.prefix_cache = false;  // sharing must come from the fork, not from the prefix cache
    Scheduler s(ctx, *m.vocab, sp);
    std::vector<SeqRequest> reqs;
    for (int i = 0; i < 4; ++i) {
        SeqRequest r = greedy(
            "Once upon a time there was a little girl named Lily. She loved to play outside", 16);
        r.sampling.temperature = 0.9f;
        r.sampling.seed = 100 + (uint64_t)i;
        reqs.push_back(r);
    }
    const int64_t prompt = (int64_t)reqs[0].prompt.size();
    ASSERT_GT(prompt, 16);
    std::vector<Result> alone;
    for (auto& r : reqs) alone.push_back(collect(*s.submit(r)));
    const auto before = s.stats();
    auto hs = s.submit_group(reqs);
    ASSERT_EQ(hs.size(), 4u);
    std::set<std::vector<int32_t>> distinct;
    for (int i = 0; i < 4; ++i) {
        Result r = collect(*hs[i]);
        EXPECT_EQ(r.tokens, alone[i].tokens) << "choice " << i;
        EXPECT_EQ(r.last.finish_reason, "length");
        EXPECT_EQ(r.last.prompt_tokens, prompt);
        distinct.insert(r.tokens);
    }
    EXPECT_GT(distinct.size(), 1u);  // different seeds, different choices
    const auto after = s.stats();
    EXPECT_EQ(after.forks - before.forks, 3);
    // Once the prompt, then 15 decode steps per choice (the first token of each comes from
    // the prompt's logits); alone, each of the four computed its own prompt.
    EXPECT_EQ(after.batch_tokens - before.batch_tokens, prompt + 4 * 15);
    EXPECT_EQ(before.batch_tokens, 4 * (prompt + 15));
    for (int i = 0; i < 100 && !s.idle(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(ctx.cache().free_blocks(), ctx.cache().n_blocks());  // shared blocks all freed
}

// A cancelled group leader hands the prompt to a follower; the others still complete.
TEST(Scheduler, CancelledGroupLeaderPromotesAFollower) {
    const Loaded& m = stories();
    Context ctx(*m.model, params(256, 4));
    SchedulerParams sp;
    sp.prefix_cache = false;
    Scheduler s(ctx, *m.vocab, sp);
    std::vector<SeqRequest> reqs(3, greedy("The little dog ran to the park", 12));
    for (int i = 0; i < 3; ++i) reqs[i].sampling.seed = (uint64_t)i;
    const Result alone = collect(*s.submit(reqs[1]));
    // The leader asks for far more tokens than it can make before cancel() below lands: with
    // 12 like the others, a fast machine finished it first ("length", seen on a Zen 5).
    reqs[0].n_predict = 200;
    auto hs = s.submit_group(reqs);
    hs[0]->cancel();
    EXPECT_EQ(collect(*hs[0]).last.finish_reason, "cancelled");
    for (int i = 1; i < 3; ++i) {
        Result r = collect(*hs[i]);
        EXPECT_EQ(r.last.finish_reason, "length");
        EXPECT_EQ(r.tokens, alone.tokens);  // greedy: every choice the same
    }
    EXPECT_THROW(s.submit_group({greedy("a", 1), greedy("b", 1)}), std::invalid_argument);
}

}  // namespace
}  // namespace lokal

namespace lokal {
namespace {

// Prompt-lookup speculation changes no output: greedy and seeded sampling, stop strings,
// several sequences at once, and preemption under a tiny KV budget give the tokens the
// scheduler gives without drafts. Drafts are proposed and both kept and rejected; beyond
// draft_max_running decoders, none are proposed.
TEST(Scheduler, LookupDraftsKeepTheOutput) {
    const Loaded& m = stories();
    std::vector<SeqRequest> reqs;
    for (size_t i = 0; i < kPrompts.size(); ++i) {
        SeqRequest r = greedy(kPrompts[i], 60);
        if (i == 1) r.sampling.temperature = 0.8f, r.sampling.seed = 5;
        reqs.push_back(r);
    }
    auto run_all = [&](int n_ctx, int n_seq, int max_running, int lookup, int draft_running,
                       Scheduler::Stats* stats) {
        Context ctx(*m.model, params(n_ctx, n_seq));
        SchedulerParams sp;
        sp.max_running = max_running;
        sp.lookup_draft = lookup;
        sp.draft_max_running = draft_running;
        return submit_all(ctx, *m.vocab, sp, reqs, stats);
    };
    // A stop string from the middle of request 2's own text, so that it does stop.
    const std::string text2 = run_all(128, 4, 1, 0, 2, nullptr)[2].text;
    ASSERT_GT(text2.size(), 20u);
    reqs[2].stop = {text2.substr(text2.size() / 2, 4)};
    const std::vector<Result> plain = run_all(128, 4, 1, 0, 2, nullptr);
    EXPECT_EQ(plain[2].last.finish_reason, "stop");
    Scheduler::Stats together;
    struct Setup {
        const char* name;
        int n_ctx, n_seq, max_running, draft_running;
    };
    for (const Setup& c :
         {Setup{"one at a time", 128, 4, 1, 2}, Setup{"four together", 128, 4, 4, 4},
          Setup{"tiny KV budget", 80, 1, 4, 4}}) {
        SCOPED_TRACE(c.name);
        Scheduler::Stats st;
        const std::vector<Result> spec =
            run_all(c.n_ctx, c.n_seq, c.max_running, 6, c.draft_running, &st);
        for (size_t i = 0; i < reqs.size(); ++i) {
            EXPECT_EQ(spec[i].tokens, plain[i].tokens) << "request " << i;
            EXPECT_EQ(spec[i].text, plain[i].text) << "request " << i;
            EXPECT_EQ(spec[i].last.finish_reason, plain[i].last.finish_reason) << "request " << i;
            EXPECT_EQ(spec[i].last.completion_tokens, plain[i].last.completion_tokens);
        }
        EXPECT_GT(st.draft_accepted, 0);
        EXPECT_LT(st.draft_accepted, st.draft_proposed);
        if (c.max_running == 4 && c.n_seq == 4) together = st;
        if (c.n_seq == 1) {
            EXPECT_GT(st.preemptions, 0);
        }
    }
    Scheduler::Stats st;
    const std::vector<Result> busy = run_all(128, 4, 4, 6, 1, &st);
    for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(busy[i].tokens, plain[i].tokens);
    // Drafts only once a single sequence was left decoding.
    EXPECT_LT(st.draft_proposed, together.draft_proposed);
}

// A draft model (tiny-k's Q4_0 copy drafting for its Q8_0 original) in the scheduler: one
// drafter follows whichever sequence is decoding alone, and every request's tokens are the
// ones the scheduler gives without it, one at a time or four together.
TEST(Scheduler, DraftModelKeepsTheOutput) {
    auto target = Model::load(test::shared_path("models/tiny-k.Q8_0.gguf"));
    auto vocab = Vocab::from_gguf(*target->file);
    auto small = Model::load(test::shared_path("models/tiny-k.Q4_0.gguf"));
    std::vector<SeqRequest> reqs;
    for (const char* p : {"A cat", "The dog went", "Once there was", "Lily and Ben"}) {
        SeqRequest r;
        r.prompt = vocab->tokenize(p, true, false);
        r.n_predict = 20 + 10 * (int)reqs.size();  // together, the last decodes alone at the end
        r.sampling.temperature = 0;
        r.ignore_eos = true;
        reqs.push_back(r);
    }
    reqs[1].sampling.temperature = 0.8f, reqs[1].sampling.seed = 3;
    auto run_all = [&](int max_running, Drafter* drafter, Scheduler::Stats* stats) {
        Context ctx(*target, params(128, 4));
        SchedulerParams sp;
        sp.max_running = max_running;
        sp.drafter = drafter;
        sp.draft_max_running = 1;
        return submit_all(ctx, *vocab, sp, reqs, stats);
    };
    const std::vector<Result> plain = run_all(4, nullptr, nullptr);
    Context draft_ctx(*small, params(128, 1));
    DraftParams dp;
    dp.n_max = 3;
    dp.p_min = 0;
    ModelDrafter drafter(draft_ctx, dp);
    for (int max_running : {1, 4}) {
        SCOPED_TRACE(max_running);
        Scheduler::Stats st;
        const std::vector<Result> spec = run_all(max_running, &drafter, &st);
        for (size_t i = 0; i < reqs.size(); ++i) {
            EXPECT_EQ(spec[i].tokens, plain[i].tokens) << "request " << i;
            EXPECT_EQ(spec[i].text, plain[i].text) << "request " << i;
        }
        EXPECT_GT(st.draft_accepted, 0);
        EXPECT_LT(st.draft_accepted, st.draft_proposed);
    }
}

}  // namespace
}  // namespace lokal
