// Continuous batching: one loop thread steps every running sequence together.
//
// Each step packs the next token of every decoding sequence plus chunks of prompts still
// being prefilled (under a per-step token budget) into one Batch for Context::decode, so
// a new request starts within a step and nobody waits for another request to finish.
// Requests join and leave between steps. Full KV blocks are remembered by the hash of the
// token chain that produced them (prefix caching), and so is the partly filled last block
// a sequence leaves when it ends; a later request whose prompt starts with the same tokens
// attaches those blocks instead of recomputing them, down to the token: a block it shares
// only the start of is attached shared and copied when the request first writes into it
// (copy-on-write at the edge), as llama-server reuses a slot's common prefix. When blocks run
// out, cached blocks nobody uses are evicted least recently used first, then the newest
// running sequence is preempted: its blocks are freed and it is recomputed later from its
// tokens, so the result is the same (the kernels are batch-invariant).
//
// Thread model: submit() and the SeqHandle methods may be called from any thread; only
// the loop thread touches the Context.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/context.h"
#include "engine/sampler.h"
#include "tokenizer/vocab.h"

namespace lokal {

class Drafter;

struct SchedulerParams {
    int max_running = 4;    // sequences stepped together
    int max_queue = 64;     // waiting requests beyond which submit() refuses
    int step_tokens = 512;  // tokens per step: decode tokens first, then prefill chunks
    bool prefix_cache = true;
    // A step that can finish a prompt's prefill runs it without the decoding sequences, so
    // a newcomer's first token does not wait for everybody's next token (they wait one
    // step). Never two such steps in a row, so a stream of arrivals cannot stall decoding.
    bool prefill_first = true;
    // A request that arrives (and has a free slot) while a step of decoding sequences only
    // runs stops that step between layers; the next step takes the newcomer (alone, with
    // prefill_first), and the decoders' step reruns after it, giving the same bits (the
    // kernels are batch-invariant). The newcomer's first token then waits about one layer
    // instead of a whole step. A step stopped right after a prefill-only step is followed by
    // one that includes the decoders (prompt chunks beside them), so arrivals cannot starve
    // them: between two of their completed steps lie at most two stopped ones and one
    // prefill-only step.
    bool abort_for_arrivals = true;
    // Speculative decoding by prompt lookup (speculative.h): a decoding sequence also runs
    // up to lookup_draft tokens copied from earlier in its prompt and output, checked in the
    // same pass; the output is unchanged. Only while at most draft_max_running sequences
    // decode: a fuller batch has no spare compute for drafts (one sequence and 3 drafts is
    // 4 tokens, the most the AVX2 matmul streams at about one token's cost). 0: off.
    int lookup_draft = 0;
    int draft_max_running = 1;
    int lookup_ngram = 3;
    // Speculative decoding by a draft model (a ModelDrafter over its own Context), used
    // instead of prompt lookup, up to its DraftParams::n_max tokens, under the same
    // draft_max_running gate. The caller owns it; only the loop thread uses it.
    Drafter* drafter = nullptr;
};

enum class Pooling { Mean, Last };

struct SeqRequest {
    std::vector<int32_t> prompt;
    int n_predict = -1;  // -1: until end of generation or a full context; 0: prompt only
    SamplerParams sampling;
    std::vector<std::string> stop;
    int top_logprobs = -1;  // -1: no logprobs; otherwise also the N most likely tokens
    // Also report every prompt token's log-probability given the tokens before it (with
    // top_logprobs alternatives; needs top_logprobs >= 0), as OpenAI's echo + logprobs
    // does for scoring. The prompt is then computed in full (no prefix-cache reuse).
    bool prompt_logprobs = false;
    bool ignore_eos = false;
    bool embed = false;  // compute a pooled, L2-normalized embedding instead of generating
    Pooling pooling = Pooling::Mean;
};

struct TokenLogprob {
    int32_t token;
    float logprob;
};

// Prompt token `token` (at index 1 + its place in SeqEvent::prompt_logprobs) and its
// log-probability after the tokens before it.
struct PromptLogprob {
    int32_t token;
    float logprob;
    std::vector<TokenLogprob> top;
};

// What the loop reports to the request's owner. Every sampled token gives one event
// (its text may be empty while held back); the last event has done set.
struct SeqEvent {
    std::string text;  // text that became final with this token
    int32_t token = -1;
    float logprob = 0;  // log-softmax of the raw logits (when logprobs were asked)
    std::vector<TokenLogprob> top;
    // SeqRequest::prompt_logprobs: prompt tokens 1..n-1, on the sequence's first event.
    std::vector<PromptLogprob> prompt_logprobs;
    bool done = false;
    // eog, stop (stop string), length (n_predict), context (full), cancelled, error
    std::string finish_reason;
    std::string error;
    std::vector<float> embedding;
    int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
    double prompt_ms = 0, eval_ms = 0;  // admission to first token; first token to done
};

class SeqHandle {
  public:
    // Waits up to `timeout` for the next event; false when none came.
    bool next(SeqEvent& ev, std::chrono::milliseconds timeout);
    // Ask the loop to drop the sequence; it is freed at the next step.
    void cancel() { cancelled_ = true; }
    bool cancelled() const { return cancelled_; }

  private:
    friend class Scheduler;
    void push(SeqEvent ev);
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<SeqEvent> events_;
    std::atomic<bool> cancelled_{false};
};

class Scheduler {
  public:
    Scheduler(Context& ctx, const Vocab& vocab, const SchedulerParams& params);
    ~Scheduler();  // stops the loop; unfinished requests end with finish_reason "cancelled"
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // Queue a request; nullptr when the wait queue is full. A prompt that can never fit
    // gets an immediate error event.
    std::shared_ptr<SeqHandle> submit(SeqRequest req);
    // Queue requests with one and the same prompt (OpenAI's n > 1): the first is prefilled,
    // then the others fork its KV blocks (shared, copy-on-write) and sample their first
    // token from the same logits, so the prompt is computed once. The group takes one
    // place in the wait queue and is admitted when all of it fits beside the running
    // sequences. Empty when the queue is full.
    std::vector<std::shared_ptr<SeqHandle>> submit_group(std::vector<SeqRequest> reqs);

    struct Stats {
        int running = 0, waiting = 0;
        int kv_blocks = 0, kv_used = 0, kv_cached = 0;
        int64_t steps = 0, preemptions = 0, prefix_hit_tokens = 0, tokens_in = 0, tokens_out = 0;
        int64_t batch_tokens = 0;        // tokens run through the model (prefill and decode)
        int64_t forks = 0;               // sequences started from a group leader's prompt blocks
        int64_t prefill_only_steps = 0;  // steps that ran a prompt without the decoders
        int64_t aborted_steps = 0;       // decode steps stopped for an arrival (rerun later)
        int64_t draft_proposed = 0, draft_accepted = 0;  // speculative tokens
    };
    Stats stats() const;
    bool idle() const;  // nothing running or waiting
    const Context& context() const { return ctx_; }

  private:
    struct Seq;
    struct CacheEntry {
        int32_t block;
        uint64_t parent;  // hash of the chain of full blocks before this one (0: none)
        // The block's tokens, to rule out hash collisions: block_size of them for a full
        // block, fewer for a tail (a finished sequence's partly filled last block).
        std::vector<int32_t> tokens;
        std::list<uint64_t>::iterator lru;
    };

    void loop();
    bool step();  // false when there was nothing to do
    void drop_cancelled();
    // A cancelled group leader hands its followers to the first live one (nullptr: none).
    std::unique_ptr<Seq> promote(Seq& leader);
    int slots() const;  // running places taken, a group's followers included
    void admit(Seq& s);
    void fork_followers(Seq& s, const float* logits, std::vector<std::unique_ptr<Seq>>& started);
    bool reserve(Seq& s, int32_t n, const std::vector<Seq*>& in_batch);
    void preempt(Seq& s);
    void finish(Seq& s, const std::string& reason, const std::string& error = {});
    // A drawn token's log-probability and the most likely tokens' (SeqEvent's fields).
    struct TokenLogprobs {
        float logprob = 0;
        std::vector<TokenLogprob> top;
    };
    // Samples the next token from logits (or takes `sampled`, drawn from them already by
    // s's sampler, with its log-probabilities `lps` when asked) and hands it to the request.
    void emit_token(Seq& s, const float* logits, int32_t sampled = -1,
                    const TokenLogprobs* lps = nullptr);
    // Propose drafts (the draft model's, or prompt lookup's) for a decoding sequence (into
    // s.drafts) when the step has room for them without evicting or preempting anything.
    void draft_for(Seq& s, int budget);
    // After the pass: check s.drafts against the model's rows (from `logits`), emitting every
    // token the sampler chooses; drops the rejected drafts' positions.
    void verify_drafts(Seq& s, const float* logits);
    void register_blocks(Seq& s);
    // Keep the partly filled last block of a sequence that leaves (finished or preempted)
    // in the prefix cache, so a request continuing its tokens reuses them all.
    void cache_tail(Seq& s);
    void add_entry(uint64_t key, int32_t block, uint64_t parent, const int32_t* tokens, int n);
    void erase_entry(std::unordered_map<uint64_t, CacheEntry>::iterator e);
    bool evict_one();  // drops the least recently used entry no sequence uses
    // Drops the cache's entries for the block s writes next when only they share it with s.
    bool uncache_edge(Seq& s);
    // Hash of a chain extended by n tokens (n = block_size: a full block; fewer: a tail).
    uint64_t block_hash(uint64_t parent, const int32_t* tokens, int n) const;

    Context& ctx_;
    const Vocab& vocab_;
    SchedulerParams params_;
    bool last_step_prefill_only_ = false;
    // Set by submit when a request arrives with a slot free for it (free_slots_, kept by the
    // loop); an abortable step's forward pass stops when it sees it. Cleared when a step
    // starts admitting.
    std::atomic<bool> arrival_{false};
    std::atomic<int> free_slots_{0};

    mutable std::mutex mu_;  // guards waiting_, stop_, stats_ (the loop owns the rest)
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Seq>> waiting_;
    std::vector<std::unique_ptr<Seq>> running_;  // in admission order
    bool stop_ = false;
    Stats stats_;
    uint64_t admissions_ = 0;

    std::unordered_map<uint64_t, CacheEntry> prefix_;       // hash of a token block chain -> block
    std::unordered_multimap<uint64_t, uint64_t> children_;  // parent hash -> keys in prefix_
    std::list<uint64_t> lru_;                               // front: least recently used

    Batch batch_;
    ForwardOutput out_;
    std::thread thread_;
};

}  // namespace lokal
