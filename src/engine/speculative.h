// Speculative decoding: a cheap drafter proposes the next few tokens, the model scores
// the current token and all drafts in one forward pass (k+1 positions of one sequence),
// and every draft token the sampler would have chosen anyway is kept.
//
// Verification is exact-match: at each position the sampler draws from the model's own
// logits, with the same state and the same random stream as it would without drafts, and
// a draft token survives only when it equals that draw; the first draw that differs is
// the next token, and the drafts after it are dropped from the cache. Because lokal's
// kernels give a position the same logits, bit for bit, whether it is decoded alone or
// inside a longer pass, speculation never changes the output: the same tokens for greedy
// decoding and for seeded sampling, with penalties, grammars and stop strings alike. It
// only makes it faster when drafts are accepted. (For a drafter that proposes one token
// per position, accepting with probability p(draft) is also the best any lossless scheme
// can do.)
//
// Two drafters:
// - LookupDrafter (prompt lookup, "n-gram" in vLLM, llama.cpp's lookup decoding): finds
//   the last n tokens earlier in the history (prompt + output) and proposes what followed
//   them there. Free to run; pays off when the output repeats its input (code edits,
//   summaries quoting the source, extraction, structured output).
// - ModelDrafter: a small model with the same vocabulary decodes greedily ahead of the
//   big one (llama.cpp's -md). Its own context follows the history: after each check it
//   drops the positions the big model rejected and catches up on the accepted ones. Given
//   another history (the server's next request) it keeps the prefix they share.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/context.h"

namespace lokal {

class Vocab;

struct DraftParams {
    // Tokens proposed per step at most (0: no speculation). 3: on a 2-core AVX2 machine the
    // check of 1 + 3 tokens still runs the streaming matmul (docs/PERFORMANCE.md).
    int n_max = 3;
    int ngram_max = 3;    // lookup: longest suffix of the history searched for
    int ngram_min = 2;    // lookup: shortest (1 matches any repeated token: many bad drafts)
    float p_min = 0.75f;  // draft model: stop a draft when its top probability falls below
};

// Counts over a generation.
struct DraftStats {
    int64_t steps = 0;     // verification passes that carried drafts
    int64_t proposed = 0;  // draft tokens proposed
    int64_t accepted = 0;  // draft tokens the model kept
    double draft_ms = 0;   // time spent drafting (the draft model's passes; lookup ~0)
};

class Drafter {
  public:
    explicit Drafter(const DraftParams& p) : p_(p) {}
    virtual ~Drafter() = default;
    const DraftParams& params() const { return p_; }
    // Append to `out` at most max_tokens tokens that may follow `history` (every token of
    // the sequence so far, the newest last). May append none.
    virtual void propose(std::span<const int32_t> history, int max_tokens,
                         std::vector<int32_t>& out) = 0;
    virtual const char* name() const = 0;

  protected:
    DraftParams p_;
};

class LookupDrafter final : public Drafter {
  public:
    explicit LookupDrafter(const DraftParams& p) : Drafter(p) {}
    void propose(std::span<const int32_t> history, int max_tokens,
                 std::vector<int32_t>& out) override;
    const char* name() const override { return "lookup"; }
};

// The draft model's Context is the caller's (sized like the target's: n_ctx positions,
// one sequence); the drafter owns one sequence in it.
class ModelDrafter final : public Drafter {
  public:
    ModelDrafter(Context& draft_ctx, const DraftParams& p);
    void propose(std::span<const int32_t> history, int max_tokens,
                 std::vector<int32_t>& out) override;
    const char* name() const override { return "model"; }
    // Histories it proposed nothing for because it cannot follow them: a token outside the
    // draft's vocabulary, or more tokens than its context holds. Not sticky: one drafter
    // serves many requests in the server, and the next history may fit.
    int64_t declined() const { return declined_; }

  private:
    Context& ctx_;
    int32_t seq_;
    std::vector<int32_t> cached_;  // the tokens whose K/V the draft's sequence holds
    std::vector<float> logits_;
    int64_t declined_ = 0;
};

// Empty when `draft` can draft for `target`: the same tokenizer kind and the same token
// texts over the shared range (the vocabulary sizes may differ by up to 128 padding
// tokens, as Qwen's sizes do); otherwise one line saying why not.
std::string draft_vocab_mismatch(const Vocab& target, const Vocab& draft);

}  // namespace lokal
