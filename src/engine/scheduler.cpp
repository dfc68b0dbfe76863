#include "engine/scheduler.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>
#include <utility>

#include "engine/generate.h"
#include "engine/speculative.h"
#include "tokenizer/detokenize.h"

namespace lokal {

using Clock = std::chrono::steady_clock;

static double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

struct Scheduler::Seq {
    Seq(SeqRequest r, const Vocab& vocab, int32_t n_vocab)
        : req(std::move(r)),
          sampler(req.sampling, n_vocab, &vocab),
          detok(vocab),
          stops(req.stop) {}

    SeqRequest req;
    std::shared_ptr<SeqHandle> handle = std::make_shared<SeqHandle>();
    Sampler sampler;
    StreamingDetokenizer detok;
    StopMatcher stops;
    std::vector<int32_t> tokens;  // prompt + generated; the cache holds the first n_past
    int32_t n_past = 0;
    int32_t cache_seq = -1;
    int n_generated = 0;
    int cached_tokens = 0;
    size_t registered = 0;  // full blocks already offered to the prefix cache
    uint64_t chain = 0;     // hash of the registered block chain
    uint64_t order = 0;     // admission stamp: larger is newer
    bool admitted_once = false;
    std::vector<double> pooled;  // embedding accumulator
    // prompt_logprobs: prompt tokens from index prompt_lp_next on are still to be scored;
    // scored ones wait in prompt_lps for the first event (a preempted sequence recomputes
    // its prompt but does not score it twice).
    int32_t prompt_lp_next = 1;
    std::vector<PromptLogprob> prompt_lps;
    // Whether position p's logits score a prompt token still to be reported.
    bool scores_prompt_at(int32_t p) const {
        return req.prompt_logprobs && p + 1 >= prompt_lp_next && p + 1 < (int32_t)req.prompt.size();
    }
    Clock::time_point t_admit, t_first;
    bool got_first = false;
    // Same-prompt requests waiting for this one's prefill (submit_group); forked then.
    std::vector<std::unique_ptr<Seq>> followers;
    // This step's speculative tokens after tokens.back() (positions n_past + 1 ...).
    std::vector<int32_t> drafts;
};

bool SeqHandle::next(SeqEvent& ev, std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, timeout, [&] { return !events_.empty(); })) return false;
    ev = std::move(events_.front());
    events_.pop_front();
    return true;
}

void SeqHandle::push(SeqEvent ev) {
    {
        std::lock_guard lk(mu_);
        events_.push_back(std::move(ev));
    }
    cv_.notify_all();
}

Scheduler::Scheduler(Context& ctx, const Vocab& vocab, const SchedulerParams& params)
    : ctx_(ctx), vocab_(vocab), params_(params) {
    params_.max_running = std::max(1, params_.max_running);
    params_.step_tokens = std::max(1, params_.step_tokens);
    stats_.kv_blocks = ctx_.cache().n_blocks();
    free_slots_.store(params_.max_running);
    thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    for (auto& s : running_) finish(*s, "cancelled");
    for (auto& s : waiting_) finish(*s, "cancelled");
}

std::shared_ptr<SeqHandle> Scheduler::submit(SeqRequest req) {
    std::vector<SeqRequest> one;
    one.push_back(std::move(req));
    auto hs = submit_group(std::move(one));
    return hs.empty() ? nullptr : hs[0];
}

std::vector<std::shared_ptr<SeqHandle>> Scheduler::submit_group(std::vector<SeqRequest> reqs) {
    if (reqs.empty()) return {};
    for (auto& r : reqs)
        if (r.prompt != reqs[0].prompt || (reqs.size() > 1 && r.embed))
            throw std::invalid_argument("submit_group: generations of one and the same prompt");
    std::vector<std::unique_ptr<Seq>> seqs;
    std::vector<std::shared_ptr<SeqHandle>> handles;
    for (auto& r : reqs) {
        seqs.push_back(std::make_unique<Seq>(std::move(r), vocab_, ctx_.model().hp.n_vocab));
        handles.push_back(seqs.back()->handle);
    }
    // Generation needs one free position after the prompt; an embedding needs none.
    const std::vector<int32_t>& prompt = seqs[0]->req.prompt;
    const size_t limit = (size_t)ctx_.n_ctx() - (seqs[0]->req.embed ? 0 : 1);
    if (prompt.empty() || prompt.size() > limit) {
        SeqEvent ev;
        ev.done = true;
        ev.finish_reason = "error";
        ev.error = prompt.empty()
                       ? "the prompt is empty"
                       : "the prompt has " + std::to_string(prompt.size()) +
                             " tokens but the context holds " + std::to_string(ctx_.n_ctx());
        for (auto& h : handles) h->push(ev);
        return handles;
    }
    for (auto& s : seqs) {
        s->tokens = s->req.prompt;
        for (int32_t t : s->req.prompt) s->sampler.accept(t);
    }
    std::unique_ptr<Seq> leader = std::move(seqs[0]);
    for (size_t i = 1; i < seqs.size(); ++i) leader->followers.push_back(std::move(seqs[i]));
    {
        std::lock_guard lk(mu_);
        if ((int)waiting_.size() >= params_.max_queue) return {};
        const int need = 1 + (int)leader->followers.size();
        waiting_.push_back(std::move(leader));
        stats_.waiting = (int)waiting_.size();
        if (free_slots_.load() >= need) arrival_.store(true);
    }
    cv_.notify_all();
    return handles;
}

Scheduler::Stats Scheduler::stats() const {
    std::lock_guard lk(mu_);
    return stats_;
}

bool Scheduler::idle() const {
    std::lock_guard lk(mu_);
    return stats_.running == 0 && waiting_.empty();
}

void Scheduler::loop() {
    for (;;) {
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [&] { return stop_ || !waiting_.empty() || !running_.empty(); });
            if (stop_) return;
        }
        try {
            step();
        } catch (const std::exception& e) {
            // A failed forward pass poisons only this step's sequences; the loop goes on.
            for (auto& s : running_) finish(*s, "error", e.what());
            running_.clear();
        }
        free_slots_.store(params_.max_running - slots());
        std::lock_guard lk(mu_);
        stats_.running = (int)running_.size();
        stats_.waiting = (int)waiting_.size();
        stats_.kv_used = ctx_.cache().n_blocks() - ctx_.cache().free_blocks();
        stats_.kv_cached = (int)prefix_.size();
    }
}

uint64_t Scheduler::block_hash(uint64_t parent, const int32_t* tokens, int n) const {
    // FNV-1a over the parent hash and the block's tokens; entries also keep the tokens.
    // A tail's length is mixed in, so it never takes a full block's key.
    uint64_t h = 1469598103934665603ull ^ parent;
    for (int i = 0; i < n; ++i) {
        h ^= (uint32_t)tokens[i];
        h *= 1099511628211ull;
        h ^= h >> 29;
    }
    if (n != ctx_.cache().block_size()) h = (h ^ (uint64_t)(n + 1)) * 1099511628211ull;
    return h;
}

void Scheduler::admit(Seq& s) {
    KvCache& kv = ctx_.cache();
    s.cache_seq = kv.create_sequence();
    s.n_past = 0;
    s.registered = 0;
    s.chain = 0;
    s.order = ++admissions_;
    if (!s.admitted_once) {
        s.t_admit = Clock::now();
        s.admitted_once = true;
    }
    if (!params_.prefix_cache || s.req.embed || s.req.prompt_logprobs) return;
    // Reuse cached blocks of the longest matching prefix, leaving at least one token to
    // compute so the last position's logits exist. Whole blocks first, by their chain hash.
    const int bs = kv.block_size();
    std::vector<int32_t> blocks;
    uint64_t h = 0;
    const size_t limit = s.tokens.size() - 1;
    for (size_t j = 0; (j + 1) * bs <= limit; ++j) {
        const int32_t* t = s.tokens.data() + j * bs;
        const uint64_t hj = block_hash(h, t, bs);
        auto it = prefix_.find(hj);
        if (it == prefix_.end() || it->second.parent != h || (int)it->second.tokens.size() != bs ||
            !std::equal(t, t + bs, it->second.tokens.begin()))
            break;
        lru_.splice(lru_.end(), lru_, it->second.lru);  // most recently used
        blocks.push_back(it->second.block);
        h = hj;
    }
    const size_t full = blocks.size();
    // Then the cached block (full or a tail) after that chain sharing the longest start with
    // the rest of the prompt. It is attached shared; KvCache::prepare copies it before this
    // sequence writes its first own position there (copy-on-write at the edge).
    const size_t at = full * bs;
    size_t best_len = 0;
    CacheEntry* best = nullptr;
    for (auto [c, end] = children_.equal_range(h); c != end; ++c) {
        CacheEntry& e = prefix_.at(c->second);
        const size_t n = std::min(e.tokens.size(), limit - at);
        size_t k = 0;
        while (k < n && e.tokens[k] == s.tokens[at + k]) ++k;
        if (k > best_len) best_len = k, best = &e;
    }
    if (best) {
        lru_.splice(lru_.end(), lru_, best->lru);
        blocks.push_back(best->block);
    }
    if (blocks.empty()) return;
    kv.attach(s.cache_seq, blocks, (int32_t)(at + best_len));
    s.n_past = (int32_t)(at + best_len);
    s.registered = full;
    s.chain = h;
    if (s.n_generated == 0) s.cached_tokens = std::max(s.cached_tokens, s.n_past);
    std::lock_guard lk(mu_);
    stats_.prefix_hit_tokens += s.n_past;
}

void Scheduler::add_entry(uint64_t key, int32_t block, uint64_t parent, const int32_t* tokens,
                          int n) {
    ctx_.cache().retain_block(block);
    lru_.push_back(key);
    prefix_.emplace(key, CacheEntry{block, parent, std::vector<int32_t>(tokens, tokens + n),
                                    std::prev(lru_.end())});
    children_.emplace(parent, key);
}

void Scheduler::register_blocks(Seq& s) {
    if (!params_.prefix_cache) return;
    KvCache& kv = ctx_.cache();
    const int bs = kv.block_size();
    const auto& table = kv.table(s.cache_seq);
    while ((s.registered + 1) * (size_t)bs <= (size_t)s.n_past) {
        const int32_t* t = s.tokens.data() + s.registered * bs;
        const uint64_t h = block_hash(s.chain, t, bs);
        if (!prefix_.count(h)) add_entry(h, table[s.registered], s.chain, t, bs);
        s.chain = h;
        ++s.registered;
    }
}

void Scheduler::cache_tail(Seq& s) {
    if (!params_.prefix_cache || s.cache_seq < 0 || s.req.embed) return;
    register_blocks(s);
    const int bs = ctx_.cache().block_size();
    const int n = s.n_past - (int)(s.registered * bs);  // positions in the partly filled block
    if (n <= 0 || n >= bs) return;
    // A block s still shares was never written by it: it is some cached entry's (or a
    // forked sibling's), and a second claim on it would keep it from ever being evicted.
    const int32_t block = ctx_.cache().table(s.cache_seq)[s.registered];
    if (ctx_.cache().refcount(block) != 1) return;
    const int32_t* t = s.tokens.data() + s.registered * bs;
    const uint64_t key = block_hash(s.chain, t, n);
    if (!prefix_.count(key)) add_entry(key, block, s.chain, t, n);
}

void Scheduler::erase_entry(std::unordered_map<uint64_t, CacheEntry>::iterator e) {
    ctx_.cache().release_block_ref(e->second.block);
    for (auto [c, end] = children_.equal_range(e->second.parent); c != end; ++c)
        if (c->second == e->first) {
            children_.erase(c);
            break;
        }
    lru_.erase(e->second.lru);
    prefix_.erase(e);
}

bool Scheduler::evict_one() {
    for (uint64_t key : lru_) {
        auto e = prefix_.find(key);
        if (ctx_.cache().refcount(e->second.block) != 1) continue;  // a sequence still uses it
        erase_entry(e);
        return true;
    }
    return false;
}

bool Scheduler::uncache_edge(Seq& s) {
    // The block s writes next may be one it shares with the cache alone (attached for a
    // partial prefix match); dropping the cache's claims lets s write it without a copy.
    KvCache& kv = ctx_.cache();
    const auto& table = kv.table(s.cache_seq);
    const size_t j = (size_t)(s.n_past / kv.block_size());
    if (j >= table.size() || kv.refcount(table[j]) == 1) return false;
    std::vector<std::unordered_map<uint64_t, CacheEntry>::iterator> claims;
    for (auto e = prefix_.begin(); e != prefix_.end(); ++e)
        if (e->second.block == table[j]) claims.push_back(e);
    if (claims.empty() || kv.refcount(table[j]) != 1 + (int32_t)claims.size())
        return false;  // another sequence shares it too: a copy is unavoidable
    for (auto e : claims) erase_entry(e);
    return true;
}

void Scheduler::preempt(Seq& s) {
    cache_tail(s);  // its full blocks are cached already: resuming recomputes little
    ctx_.cache().free_sequence(s.cache_seq);
    s.cache_seq = -1;
    s.n_past = 0;
    auto it =
        std::find_if(running_.begin(), running_.end(), [&](auto& p) { return p.get() == &s; });
    std::unique_ptr<Seq> owned = std::move(*it);
    running_.erase(it);
    std::lock_guard lk(mu_);
    ++stats_.preemptions;
    waiting_.push_front(std::move(owned));  // resumed first, by recomputing its tokens
}

// Make room for n more positions of s: evict unused cached blocks, then preempt the
// newest running sequence not already in this step's batch (s itself as a last resort).
bool Scheduler::reserve(Seq& s, int32_t n, const std::vector<Seq*>& in_batch) {
    KvCache& kv = ctx_.cache();
    for (;;) {
        if (kv.prepare(s.cache_seq, s.n_past, s.n_past + n)) return true;
        if (evict_one() || uncache_edge(s)) continue;
        Seq* victim = nullptr;
        for (auto& r : running_)
            if (r.get() != &s &&
                std::find(in_batch.begin(), in_batch.end(), r.get()) == in_batch.end() &&
                (!victim || r->order > victim->order))
                victim = r.get();
        if (!victim) {
            if (in_batch.empty()) {
                // Alone and still no room: the pool is smaller than this sequence needs.
                finish(s, "error", "the KV cache is too small for this request");
                auto it = std::find_if(running_.begin(), running_.end(),
                                       [&](auto& p) { return p.get() == &s; });
                running_.erase(it);
            } else {
                preempt(s);
            }
            return false;
        }
        preempt(*victim);
    }
}

void Scheduler::finish(Seq& s, const std::string& reason, const std::string& error) {
    // Followers not forked yet share the leader's fate (its prompt failed, or the
    // scheduler stops); a cancelled leader hands them on with promote() first.
    for (auto& f : s.followers) finish(*f, reason, error);
    s.followers.clear();
    SeqEvent ev;
    ev.done = true;
    ev.finish_reason = reason;
    ev.error = error;
    if (reason == "eog" || reason == "length" || reason == "context") {
        ev.text = s.stops.push(s.detok.flush());
        ev.text += s.stops.flush();
    }
    if (s.req.embed && reason == "length") {
        ev.finish_reason = "stop";
        double norm = 0;
        const double n = s.req.pooling == Pooling::Mean ? (double)s.req.prompt.size() : 1.0;
        for (double& v : s.pooled) v /= n, norm += v * v;
        norm = std::sqrt(norm);
        ev.embedding.reserve(s.pooled.size());
        for (double v : s.pooled) ev.embedding.push_back(norm > 0 ? (float)(v / norm) : 0.f);
    }
    const auto now = Clock::now();
    ev.prompt_tokens = (int)s.req.prompt.size();
    ev.cached_tokens = s.cached_tokens;
    ev.completion_tokens = s.n_generated;
    if (s.admitted_once) {
        ev.prompt_ms = ms_between(s.t_admit, s.got_first ? s.t_first : now);
        ev.eval_ms = s.got_first ? ms_between(s.t_first, now) : 0;
    }
    if (reason != "error") cache_tail(s);  // after an error its K/V may be incomplete
    if (s.cache_seq >= 0) ctx_.cache().free_sequence(s.cache_seq);
    s.cache_seq = -1;
    ev.prompt_logprobs = std::exchange(s.prompt_lps, {});
    s.handle->push(std::move(ev));
}

namespace {

// Log-probability of `tok` under the model's raw distribution (before temperature and
// filters, as OpenAI reports them), and the k most likely tokens with theirs. The terms
// through the sampler's four-lane exponential and the top k by one scan (151,936 logits: was
// ~0.9 ms with std::exp per token and a partial sort of every id, for each drawn token and
// each scored prompt position).
void log_probs(const float* logits, int nv, int32_t tok, int k, float& lp,
               std::vector<TokenLogprob>& top) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int i = 0; i < nv; ++i) mx = logits[i] > mx ? logits[i] : mx;
    thread_local std::vector<float> terms;
    terms.resize((size_t)nv);
    sampler_exp_shifted(logits, mx, 1.0f, terms.data(), nv);
    double part[4] = {};  // (four chains: one running sum waited on every add)
    int i = 0;
    for (; i + 4 <= nv; i += 4)
        for (int j = 0; j < 4; ++j) part[j] += terms[(size_t)(i + j)];
    for (; i < nv; ++i) part[0] += terms[(size_t)i];
    const float lse = mx + (float)std::log((part[0] + part[1]) + (part[2] + part[3]));
    lp = logits[tok] - lse;
    k = std::min(k, nv);
    if (k <= 0) return;
    auto better = [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    std::vector<int32_t> ids;
    if (k <= 64) {  // the k best so far, best first; most tokens lose to the last at once
        ids.reserve((size_t)k + 1);
        for (int32_t t = 0; t < nv; ++t) {
            if ((int)ids.size() == k && !better(t, ids.back())) continue;
            ids.insert(std::upper_bound(ids.begin(), ids.end(), t, better), t);
            if ((int)ids.size() > k) ids.pop_back();
        }
    } else {
        ids.resize((size_t)nv);
        for (int32_t t = 0; t < nv; ++t) ids[(size_t)t] = t;
        std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), better);
    }
    for (int r = 0; r < k; ++r) top.push_back({ids[(size_t)r], logits[ids[(size_t)r]] - lse});
}

}  // namespace

void Scheduler::emit_token(Seq& s, const float* logits, int32_t sampled, const TokenLogprobs* lps) {
    if (s.req.n_predict == 0) {  // the prompt only (scoring): nothing is sampled
        finish(s, "length");
        return;
    }
    const int32_t tok = sampled >= 0 ? sampled : s.sampler.sample(logits);
    if (!s.got_first) s.got_first = true, s.t_first = Clock::now();
    SeqEvent ev;
    if (lps) {
        ev.logprob = lps->logprob;
        ev.top = lps->top;
    } else if (s.req.top_logprobs >= 0) {
        log_probs(logits, ctx_.model().hp.n_vocab, tok, s.req.top_logprobs, ev.logprob, ev.top);
    }
    if (!s.req.ignore_eos && vocab_.is_eog(tok)) {
        finish(s, "eog");
        return;
    }
    s.sampler.accept(tok);
    s.tokens.push_back(tok);
    ++s.n_generated;
    {
        std::lock_guard lk(mu_);
        ++stats_.tokens_out;
    }
    ev.token = tok;
    ev.text = s.stops.push(s.detok.push(tok));
    ev.prompt_logprobs = std::exchange(s.prompt_lps, {});
    s.handle->push(std::move(ev));
    if (s.stops.stopped())
        finish(s, "stop");
    else if (s.req.n_predict >= 0 && s.n_generated >= s.req.n_predict)
        finish(s, "length");
    else if ((int)s.tokens.size() >= ctx_.n_ctx())
        finish(s, "context");
}

void Scheduler::draft_for(Seq& s, int budget) {
    if (s.req.embed || !s.followers.empty() || s.req.n_predict == 0) return;
    // Drafts must fit the context and the step, and need not go past n_predict.
    Drafter* drafter = params_.drafter;
    int64_t room =
        std::min<int64_t>(drafter ? drafter->params().n_max : params_.lookup_draft, budget);
    room = std::min<int64_t>(room, (int64_t)ctx_.n_ctx() - (int64_t)s.tokens.size());
    if (s.req.n_predict > 0) room = std::min<int64_t>(room, s.req.n_predict - s.n_generated);
    if (room <= 0) return;
    if (drafter) {
        drafter->propose(s.tokens, (int)room, s.drafts);  // at most room tokens
    } else {
        DraftParams dp;
        dp.ngram_max = params_.lookup_ngram;
        LookupDrafter lookup(dp);
        lookup.propose(s.tokens, (int)room, s.drafts);
    }
    // Drafts take only free blocks: never worth evicting a cached prefix or a sequence.
    if (!s.drafts.empty() &&
        !ctx_.cache().prepare(s.cache_seq, s.n_past + 1, s.n_past + 1 + (int32_t)s.drafts.size()))
        s.drafts.clear();
}

void Scheduler::verify_drafts(Seq& s, const float* logits) {
    const size_t nv = (size_t)ctx_.model().hp.n_vocab, k = s.drafts.size();
    ++s.n_past;  // tokens.back(), decoded in this pass
    int64_t accepted = 0;
    // Each row is the one decoding without drafts would sample from at that point; a draft
    // survives only when the sampler's choice there equals it.
    for (size_t j = 0;; ++j) {
        emit_token(s, logits + j * nv);
        if (s.cache_seq < 0 || j == k || s.tokens.back() != s.drafts[j]) break;
        ++s.n_past;
        ++accepted;
    }
    {
        std::lock_guard lk(mu_);
        stats_.draft_proposed += (int64_t)k;
        stats_.draft_accepted += accepted;
    }
    s.drafts.clear();
    if (s.cache_seq < 0) return;                   // finished
    ctx_.cache().truncate(s.cache_seq, s.n_past);  // the rejected drafts' positions
    ctx_.cache().set_length(s.cache_seq, s.n_past);
    register_blocks(s);
}

std::unique_ptr<Scheduler::Seq> Scheduler::promote(Seq& leader) {
    std::unique_ptr<Seq> next;
    for (auto& f : leader.followers) {
        if (f->handle->cancelled())
            finish(*f, "cancelled");
        else if (!next)
            next = std::move(f);
        else
            next->followers.push_back(std::move(f));
    }
    leader.followers.clear();
    return next;
}

// Drop cancelled sequences (their clients went away) before spending work on them.
void Scheduler::drop_cancelled() {
    std::vector<std::unique_ptr<Seq>> requeue;  // live followers of cancelled running leaders
    for (size_t i = 0; i < running_.size();) {
        Seq& s = *running_[i];
        if (!s.handle->cancelled()) {
            ++i;
            continue;
        }
        if (auto next = promote(s)) requeue.push_back(std::move(next));
        finish(s, "cancelled");
        running_.erase(running_.begin() + (long)i);
    }
    std::lock_guard lk(mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
        if (!(*it)->handle->cancelled()) {
            ++it;
            continue;
        }
        auto next = promote(**it);
        finish(**it, "cancelled");
        if (next)
            *it++ = std::move(next);  // keeps the group's place in the queue
        else
            it = waiting_.erase(it);
    }
    for (auto& r : requeue) waiting_.push_front(std::move(r));
}

int Scheduler::slots() const {
    int n = 0;
    for (auto& s : running_) n += 1 + (int)s->followers.size();
    return n;
}

void Scheduler::fork_followers(Seq& s, const float* logits,
                               std::vector<std::unique_ptr<Seq>>& started) {
    KvCache& kv = ctx_.cache();
    int64_t forked = 0;
    for (auto& f : s.followers) {
        if (f->handle->cancelled()) {
            finish(*f, "cancelled");
            continue;
        }
        // Shares every block of the prompt; the partly filled last block is copied when
        // either sequence writes its next position (KvCache::prepare).
        f->cache_seq = kv.fork_sequence(s.cache_seq);
        f->n_past = s.n_past;
        f->registered = s.registered;
        f->chain = s.chain;
        f->order = ++admissions_;
        f->admitted_once = true;
        f->t_admit = s.t_admit;
        f->cached_tokens = s.cached_tokens;
        f->prompt_lps = s.prompt_lps;  // the same prompt, scored once
        f->prompt_lp_next = s.prompt_lp_next;
        ++forked;
        emit_token(*f, logits);
        if (f->cache_seq >= 0) started.push_back(std::move(f));  // else finished at once
    }
    s.followers.clear();
    std::lock_guard lk(mu_);
    stats_.forks += forked;
}

bool Scheduler::step() {
    drop_cancelled();
    arrival_.store(false);  // before admitting: a later arrival can stop this step
    // Admit waiting requests while there is room; they take blocks only when stepped. A
    // group is admitted whole (alone when it is larger than max_running).
    for (;;) {
        std::unique_ptr<Seq> s;
        {
            std::lock_guard lk(mu_);
            if (waiting_.empty()) break;
            const int need = 1 + (int)waiting_.front()->followers.size();
            if (!running_.empty() && slots() + need > params_.max_running) break;
            // A preempted sequence needs at least one free block to make progress.
            if (!running_.empty() && ctx_.cache().free_blocks() == 0 && (int)prefix_.size() == 0)
                break;
            s = std::move(waiting_.front());
            waiting_.pop_front();
            if (!s->admitted_once) stats_.tokens_in += (int64_t)s->req.prompt.size();
        }
        admit(*s);
        running_.push_back(std::move(s));
    }
    free_slots_.store(params_.max_running - slots());
    if (running_.empty()) return false;

    // Decoding sequences first (one token each), then prefill chunks, each pass oldest
    // first, under the step's token budget.
    batch_.clear();
    std::vector<Seq*> in_batch;
    std::vector<int32_t> counts;
    int budget = params_.step_tokens;
    bool want_hidden = false;
    // Decoding sequences have one token pending; a prompt being prefilled has more, or just
    // one when the prefix cache held all the rest (it is still a newcomer waiting for its
    // first token).
    auto decoding = [](const Seq& s) { return s.got_first && s.tokens.size() - s.n_past == 1; };
    int n_decoding = 0;
    bool finishable_prefill = false;
    for (auto& s : running_) {
        const size_t pending = s->tokens.size() - (size_t)s->n_past;
        n_decoding += decoding(*s);
        finishable_prefill |= !decoding(*s) && pending <= (size_t)budget;
    }
    const bool prefill_only =
        params_.prefill_first && !last_step_prefill_only_ && n_decoding > 0 && finishable_prefill;
    const bool after_prefill_only = last_step_prefill_only_;
    last_step_prefill_only_ = prefill_only;
    const bool speculate =
        (params_.lookup_draft > 0 || params_.drafter) && n_decoding <= params_.draft_max_running;
    for (int pass = prefill_only ? 1 : 0; pass < 2 && budget > 0; ++pass) {
        std::vector<Seq*> order;
        for (auto& s : running_)
            if (decoding(*s) == (pass == 0)) order.push_back(s.get());
        std::sort(order.begin(), order.end(), [](Seq* a, Seq* b) { return a->order < b->order; });
        for (Seq* s : order) {
            if (budget <= 0) break;
            if (std::find_if(running_.begin(), running_.end(),
                             [&](auto& p) { return p.get() == s; }) == running_.end())
                continue;  // preempted while making room for an earlier one
            const int32_t pending = (int32_t)s->tokens.size() - s->n_past;
            const int32_t n = std::min(pending, budget);
            if (!reserve(*s, n, in_batch)) continue;
            in_batch.push_back(s);
            counts.push_back(n);
            budget -= n;
        }
    }
    if (in_batch.empty()) return true;
    // Drafts last, from what the step has left: they never take a block or a token of the
    // budget that a sequence needs.
    for (size_t i = 0; i < in_batch.size(); ++i) {
        Seq& s = *in_batch[i];
        s.drafts.clear();
        if (!speculate || budget <= 0 || s.tokens.size() - (size_t)s.n_past != 1) continue;
        draft_for(s, budget);
        counts[i] += (int32_t)s.drafts.size();
        budget -= (int)s.drafts.size();
    }
    for (size_t i = 0; i < in_batch.size(); ++i) {
        Seq& s = *in_batch[i];
        batch_.block_tables.push_back(&ctx_.cache().table(s.cache_seq));
        const bool last = s.n_past + counts[i] == (int32_t)s.tokens.size();
        const int32_t n_known = (int32_t)s.tokens.size();
        for (int32_t j = 0; j < counts[i]; ++j) {
            const int32_t p = s.n_past + j;
            if (p >= n_known) {  // a draft: every position's logits check the next one
                batch_.add(s.drafts[(size_t)(p - n_known)], p, (int32_t)i, true);
                continue;
            }
            batch_.add(s.tokens[p], p, (int32_t)i,
                       s.req.embed || (last && j + 1 == counts[i]) || s.scores_prompt_at(p) ||
                           !s.drafts.empty());
        }
        want_hidden |= s.req.embed;
    }
    // Only a step of decoding sequences (one token each, so no drafts) may stop for an
    // arrival: nothing in it but their next token, which the rerun computes again.
    bool abortable = params_.abort_for_arrivals;
    for (size_t i = 0; i < in_batch.size() && abortable; ++i)
        abortable = counts[i] == 1 && decoding(*in_batch[i]);
    if (!ctx_.decode(batch_, out_, want_hidden, abortable ? &arrival_ : nullptr)) {
        // The decoders have not advanced: if they already sat out a prefill-only step, the
        // next step must include them (a mixed step), so arrivals can never starve them.
        last_step_prefill_only_ = after_prefill_only;
        std::lock_guard lk(mu_);
        ++stats_.aborted_steps;
        return true;
    }
    {
        std::lock_guard lk(mu_);
        ++stats_.steps;
        if (prefill_only) ++stats_.prefill_only_steps;
        for (int32_t c : counts) stats_.batch_tokens += c;
    }

    const int nv = ctx_.model().hp.n_vocab, dim = ctx_.model().hp.dim;
    size_t row = 0;
    std::vector<Seq*> done;
    // Sequences that sample one token from one row (the common decode step), sampled after
    // the loop on every thread: each has its own sampler and generator, so the tokens do not
    // depend on which thread draws them, and a step no longer waits for the sequences'
    // draws one after another (top-p over a flat distribution: ~0.3 ms each at 32,000
    // logits). Their log-probabilities, when asked, too (a pass over the vocabulary each:
    // ~0.17 ms at 32,000 logits, ~0.9 ms at 151,936).
    std::vector<std::pair<Seq*, const float*>> plain;
    std::vector<std::unique_ptr<Seq>> started;  // forked followers
    for (size_t i = 0; i < in_batch.size(); ++i) {
        Seq& s = *in_batch[i];
        if (!s.drafts.empty()) {
            verify_drafts(s, out_.logits.data() + row * (size_t)nv);
            row += (size_t)counts[i];
            if (s.cache_seq < 0) done.push_back(&s);
            continue;
        }
        const int32_t p0 = s.n_past;
        s.n_past += counts[i];
        ctx_.cache().set_length(s.cache_seq, s.n_past);
        if (s.req.embed) {
            s.pooled.resize((size_t)dim, 0.0);
            for (int32_t j = 0; j < counts[i]; ++j, ++row) {
                const float* h = out_.hidden.data() + row * (size_t)dim;
                if (s.req.pooling == Pooling::Mean ||
                    s.n_past - counts[i] + j + 1 == (int32_t)s.tokens.size())
                    for (int d = 0; d < dim; ++d)
                        s.pooled[d] = (s.req.pooling == Pooling::Mean ? s.pooled[d] : 0.0) + h[d];
            }
            if (s.n_past == (int32_t)s.tokens.size()) {
                finish(s, "length");
                done.push_back(&s);
            }
            continue;
        }
        register_blocks(s);
        // Rows come in batch order: the prompt positions that score a prompt token, then
        // (when the prefill is complete) the last position, which samples.
        for (int32_t p = p0; p < s.n_past; ++p) {
            if (!s.scores_prompt_at(p)) continue;
            PromptLogprob e{s.tokens[p + 1], 0.0f, {}};
            log_probs(out_.logits.data() + row * (size_t)nv, nv, e.token, s.req.top_logprobs,
                      e.logprob, e.top);
            ++row;
            s.prompt_lps.push_back(std::move(e));
            s.prompt_lp_next = p + 2;
        }
        if (s.n_past != (int32_t)s.tokens.size()) continue;  // prefill continues next step
        const float* logits = out_.logits.data() + row * (size_t)nv;
        ++row;
        if (!s.followers.empty()) fork_followers(s, logits, started);
        plain.push_back({&s, logits});
    }
    std::vector<int32_t> sampled(plain.size(), -1);
    std::vector<TokenLogprobs> lps(plain.size());
    std::vector<std::exception_ptr> failed(plain.size());  // rethrown at that sequence's turn
    if (plain.size() > 1)
        ctx_.pool().parallel_for((int64_t)plain.size(), [&](int64_t k0, int64_t k1, int) {
            for (size_t k = (size_t)k0; k < (size_t)k1; ++k) try {
                    Seq& s = *plain[k].first;
                    if (s.req.n_predict == 0) continue;
                    sampled[k] = s.sampler.sample(plain[k].second);
                    if (s.req.top_logprobs >= 0)
                        log_probs(plain[k].second, nv, sampled[k], s.req.top_logprobs,
                                  lps[k].logprob, lps[k].top);
                } catch (...) {
                    failed[k] = std::current_exception();
                }
        });
    for (size_t k = 0; k < plain.size(); ++k) {
        if (failed[k]) std::rethrow_exception(failed[k]);
        Seq& s = *plain[k].first;
        const bool drawn = sampled[k] >= 0 && s.req.top_logprobs >= 0;
        emit_token(s, plain[k].second, sampled[k], drawn ? &lps[k] : nullptr);
        if (s.cache_seq < 0) done.push_back(&s);  // finish() freed it
    }
    for (Seq* s : done) {
        auto it =
            std::find_if(running_.begin(), running_.end(), [&](auto& p) { return p.get() == s; });
        if (it != running_.end()) running_.erase(it);
    }
    for (auto& f : started) running_.push_back(std::move(f));
    return true;
}

}  // namespace lokal
