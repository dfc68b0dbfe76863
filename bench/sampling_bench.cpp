// Sampling cost: one token from a row of logits (greedy and with the usual filters, a
// TinyLlama-sized vocabulary), and constrained sampling: finding every token a JSON schema
// allows next (the walk over the vocabulary as a byte trie), at the states where it is
// cheapest and dearest, on the vocabularies in ../shared/models (LOKAL_SHARED overrides the
// path).
//   ./build/bin/bench_sampling
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/json_matcher.h"
#include "engine/json_schema.h"
#include "engine/sampler.h"
#include "gguf/gguf.h"
#include "tokenizer/token_trie.h"
#include "tokenizer/vocab.h"

namespace lokal {
namespace {

std::string shared_dir() {
    const char* env = std::getenv("LOKAL_SHARED");
    return env ? env : LOKAL_SHARED_DEFAULT;
}

const Vocab& vocab(int which) {
    static std::unique_ptr<gguf::File> files[2];
    static std::unique_ptr<Vocab> vocabs[2];
    if (!vocabs[which]) {
        const char* name = which == 0 ? "stories260K.gguf" : "tiny-qwen2.Q8_0.gguf";
        files[which] = gguf::File::open(shared_dir() + "/models/" + name);
        vocabs[which] = Vocab::from_gguf(*files[which]);
    }
    return *vocabs[which];
}

// args: vocabulary (0: stories260K SPM 512, 1: tiny-qwen2 BPE), state (0: inside a string,
// 1: inside a number, 2: after '{')
void BM_JsonAllowedTokens(benchmark::State& st) {
    const Vocab& v = vocab((int)st.range(0));
    const TokenTrie& trie = v.token_trie();
    const char* prefixes[] = {R"({"name": "abc)", R"({"name": "abc", "n": 12)", "{"};
    JsonMatcher m(json_object_schema());
    m.feed(prefixes[st.range(1)]);
    std::vector<uint8_t> allowed;
    for (auto _ : st) {
        m.allowed_tokens(trie, allowed);
        benchmark::DoNotOptimize(allowed.data());
    }
    int n = 0;
    for (uint8_t a : allowed) n += a;
    st.counters["allowed"] = n;
    st.counters["vocab"] = v.n_tokens();
}
BENCHMARK(BM_JsonAllowedTokens)
    ->ArgsProduct({{0, 1}, {0, 1, 2}})
    ->ArgNames({"vocab", "state"})
    ->Unit(benchmark::kMicrosecond);

// The worst a schema can do: alternatives that read alike, so many ways of reading stay
// alive (up to JsonMatcher::kMaxStacks): four levels of four identical anyOf members.
// state 0: inside a string of the innermost objects, 1: after its key's colon.
void BM_JsonAllowedTokensAmbiguous(benchmark::State& st) {
    std::string schema = R"({"type": "object", "properties": {"k": {"type": "string"}}})";
    for (int level = 0; level < 4; ++level) {
        const std::string member = R"({"type": "object", "properties": {"k": )" + schema + "}}";
        schema = R"({"anyOf": [)" + member + "," + member + "," + member + "," + member + "]}";
    }
    JsonMatcher m(compile_json_schema(schema));
    m.feed(st.range(0) == 0 ? R"({"k": {"k": {"k": {"k": {"k": "abc)" : R"({"k": {"k": )");
    const TokenTrie& trie = vocab(1).token_trie();
    std::vector<uint8_t> allowed;
    for (auto _ : st) {
        m.allowed_tokens(trie, allowed);
        benchmark::DoNotOptimize(allowed.data());
    }
}
BENCHMARK(BM_JsonAllowedTokensAmbiguous)
    ->Arg(0)
    ->Arg(1)
    ->ArgName("state")
    ->Unit(benchmark::kMicrosecond);

// The common case: one token's bytes checked against the state.
void BM_JsonAcceptsToken(benchmark::State& st) {
    JsonMatcher m(json_object_schema());
    m.feed(R"({"name": "abc)");
    for (auto _ : st) benchmark::DoNotOptimize(m.accepts(" world"));
}
BENCHMARK(BM_JsonAcceptsToken);

// One sample() from 32,000 (Llama 2's vocabulary) or 151,936 (Qwen2.5's) logits (the server
// does this per sequence per step). args: kind, vocab; kinds: 0 greedy, 1 temperature 0.8 with
// top-k 40, top-p 0.95, min-p 0.05 (the sampler's defaults), 2 temperature 1 with none of them (the
// OpenAI API's defaults), 3 the same over flat logits (sd 0.5 instead of 3: a draw lands deep in
// the ranking), 4 flat logits with kind 1's filters but no top-k (top-p and min-p keep most of the
// vocabulary), 5 an OpenAI client's top-p 0.9 at temperature 1 (no top-k, no min-p) over flat
// logits, 6 the same over peaked ones (sd 3).
void BM_SampleRow(benchmark::State& st) {
    const int n_vocab = (int)st.range(1);
    std::mt19937 rng(3);
    const int kind = (int)st.range(0);
    std::normal_distribution<float> d(0, kind >= 3 && kind != 6 ? 0.5f : 3.0f);
    std::vector<float> logits(n_vocab);
    for (float& v : logits) v = d(rng);
    SamplerParams p;
    p.temperature = kind == 0 ? 0.0f : kind == 1 || kind == 4 ? 0.8f : 1.0f;
    p.top_k = kind >= 2 ? 0 : 40;
    p.top_p = kind == 2 || kind == 3 ? 1.0f : kind >= 5 ? 0.9f : 0.95f;
    p.min_p = kind == 2 || kind == 3 || kind >= 5 ? 0.0f : 0.05f;
    Sampler s(p, n_vocab);
    for (auto _ : st) benchmark::DoNotOptimize(s.sample(logits.data()));
}
BENCHMARK(BM_SampleRow)
    ->ArgNames({"kind", "vocab"})
    ->ArgsProduct({benchmark::CreateDenseRange(0, 6, 1), {32000, 151936}});

}  // namespace
}  // namespace lokal

BENCHMARK_MAIN();
