// Every model in ../shared/models against the reference engine's outputs in
// ../shared/reference: prompt tokens, per-position top-1 and top-8, logits, greedy
// continuations and perplexity.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/context.h"
#include "engine/perplexity.h"
#include "shared_path.h"
#include "tokenizer/vocab.h"

namespace lokal {
namespace {

using nlohmann::json;

std::vector<std::string> reference_names() {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(test::shared_path("reference")))
        if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
    std::sort(names.begin(), names.end());
    return names;
}

json load_json(const std::string& path) {
    std::ifstream in(path);
    return json::parse(in);
}

// Float weights and Q8_0 must reproduce the reference closely; lower-bit types are
// compared more loosely (the reference uses its own SIMD kernels).
bool is_exact_type(const std::string& name) {
    for (const char* s : {".f32", ".F16", ".BF16", ".Q8_0", ".f16"})
        if (name.find(s) != std::string::npos) return true;
    return name == "stories260K";
}
bool is_float_type(const std::string& name) {
    for (const char* s : {".f32", ".F16", ".BF16", ".f16"})
        if (name.find(s) != std::string::npos) return true;
    return name == "stories260K";
}

class Reference : public ::testing::TestWithParam<std::string> {};

TEST_P(Reference, LogitsTokensAndGreedyMatch) {
    const std::string name = GetParam();
    const json ref = load_json(test::shared_path("reference/" + name + ".json"));
    auto model = Model::load(test::shared_path("models/" + ref["model"].get<std::string>()));
    auto vocab = Vocab::from_gguf(*model->file);
    const int nv = model->hp.n_vocab;
    const bool exact = is_exact_type(name), is_float = is_float_type(name);

    for (const json& p : ref["prompts"]) {
        const std::string prompt = p["prompt"];
        SCOPED_TRACE(name + " prompt '" + prompt + "'");
        const auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(vocab->tokenize(prompt, true, true), ids);

        ContextParams cp;
        cp.n_ctx = 256;
        cp.n_threads = 2;
        Context ctx(*model, cp);
        const int32_t seq = ctx.cache().create_sequence();
        std::vector<float> logits;
        ctx.eval(seq, ids, true, logits);
        ASSERT_EQ(logits.size(), ids.size() * (size_t)nv);

        // Top-1 at every position; top-8 overlap.
        int overlap = 0, total = 0;
        for (size_t pos = 0; pos < ids.size(); ++pos) {
            const float* row = logits.data() + pos * nv;
            const json& top8 = p["top8"][pos];
            const int ref_top1 = top8[0][0];
            const int ours = (int)(std::max_element(row, row + nv) - row);
            EXPECT_EQ(ours, ref_top1) << "top-1 at position " << pos;
            std::vector<int> idx(nv);
            for (int i = 0; i < nv; ++i) idx[i] = i;
            std::partial_sort(idx.begin(), idx.begin() + 8, idx.end(),
                              [&](int a, int b) { return row[a] > row[b]; });
            std::set<int> mine(idx.begin(), idx.begin() + 8);
            for (const json& e : top8) {
                overlap += mine.count(e[0].get<int>()) ? 1 : 0;
                ++total;
            }
        }
        EXPECT_GE(overlap, total * (exact ? 7 : 5) / 8)
            << "top-8 overlap " << overlap << "/" << total;

        // Full logits of the last position, where the reference has them.
        if (p.contains("last_logits")) {
            const auto last = p["last_logits"].get<std::vector<float>>();
            ASSERT_EQ((int)last.size(), nv);
            const auto [mn, mx] = std::minmax_element(last.begin(), last.end());
            const float range = *mx - *mn;
            const float* row = logits.data() + (ids.size() - 1) * nv;
            float max_diff = 0;
            for (int i = 0; i < nv; ++i) max_diff = std::max(max_diff, std::fabs(row[i] - last[i]));
            const float tol = is_float ? 1e-3f : (exact ? 1e-2f : 6e-2f);
            EXPECT_LE(max_diff, tol * range)
                << "max |logit diff| " << max_diff << " of range " << range;
        } else {
            // Compare the top-8 logit values instead.
            for (size_t pos = 0; pos < ids.size(); ++pos)
                for (const json& e : p["top8"][pos]) {
                    const float l = logits[pos * nv + e[0].get<int>()];
                    EXPECT_NEAR(l, e[1].get<float>(), is_float ? 1e-2 : (exact ? 0.1 : 0.5));
                }
        }

        // Greedy continuation, 32 tokens or until end of generation. Where our choice
        // differs, the reference's token must be a numerical tie in our logits (within
        // kGreedyTie of the maximum: the reference sums in SIMD lane order, we do not);
        // past such a tie the two continuations are no longer comparable.
        if (exact) {
            // BF16 models round every matmul's activations to 8 significant bits, so a
            // last-bit difference upstream (kernels that agree across ISAs within rounding,
            // not bit for bit, such as attention) can move an activation by 2^-9 and, 30
            // tokens on, a logit by a few 1e-3: this machine's AVX2 and AVX-512 paths
            // differed by 0.003 at greedy step 30 of one prompt (2026-12-05). So a tie there
            // is 1e-2.
            const float kGreedyTie = name.find(".BF16") != std::string::npos ? 1e-2f : 2e-3f;
            const auto want = p["greedy_ids"].get<std::vector<int32_t>>();
            std::vector<int32_t> got;
            std::vector<float> l(logits.end() - nv, logits.end());
            for (int i = 0; i < 32; ++i) {
                const int32_t tok = (int32_t)(std::max_element(l.begin(), l.end()) - l.begin());
                if (i < (int)want.size() && tok != want[i]) {
                    EXPECT_GE(l[want[i]], l[tok] - kGreedyTie)
                        << "greedy step " << i << ": ours " << tok << " (" << l[tok]
                        << "), reference " << want[i] << " (" << l[want[i]] << ")";
                    std::printf(
                        "note: %s greedy step %d is a tie (%.5f vs %.5f); stopping the comparison "
                        "there\n",
                        name.c_str(), i, l[tok], l[want[i]]);
                    got.assign(want.begin(), want.end());
                    break;
                }
                if (vocab->is_eog(tok)) break;
                got.push_back(tok);
                const int32_t one[1] = {tok};
                ctx.eval(seq, one, false, l);
            }
            EXPECT_EQ(got, want);
        }
    }
}

TEST_P(Reference, PerplexityMatches) {
    const std::string name = GetParam();
    const json ref = load_json(test::shared_path("reference/" + name + ".json"));
    if (!ref.contains("perplexity")) GTEST_SKIP() << "no reference perplexity";
    auto model = Model::load(test::shared_path("models/" + ref["model"].get<std::string>()));
    auto vocab = Vocab::from_gguf(*model->file);
    std::ifstream in(test::shared_path(ref["text"].get<std::string>()));
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    PerplexityOptions po;
    po.n_ctx = ref["n_ctx"];
    po.bos = vocab->add_bos() ? vocab->bos() : -1;
    const auto r = perplexity(*model, 2, vocab->tokenize(text, true, false), po);
    double want = ref["perplexity"];
    if (name == "tiny-k.Q4_0" || name == "tiny-k.Q4_1") {
        // These two reference values come from the reference engine's large-batch Q4_0/Q4_1
        // kernel, which disagrees with the same engine's token-level kernel (Q4_0: 826.5 vs
        // 794.6 on the same file; exact float math over the file's weights gives 794.8).
        // Compare with the reference engine itself at micro-batch 8, run here.
        const std::string anchor = test::shared_path("anchor");
        const std::string cmd =
            "cd '" + anchor + "' && LD_LIBRARY_PATH=. ./llama-perplexity -m '" +
            test::shared_path("models/" + ref["model"].get<std::string>()) + "' -f '" +
            test::shared_path(ref["text"].get<std::string>()) +
            "' -c 128 -b 128 -ub 8 -t 2 2>&1 | grep -o 'PPL = [0-9.]*' | cut -d' ' -f3";
        FILE* pipe = popen(cmd.c_str(), "r");
        char buf[64] = {0};
        const bool ok = pipe && std::fgets(buf, sizeof buf, pipe) != nullptr;
        if (pipe) pclose(pipe);
        if (!ok || std::atof(buf) <= 0)
            GTEST_SKIP() << "the reference engine in shared/anchor could not run";
        want = std::atof(buf);
    }
    const double tol = is_float_type(name) ? 0.002 : 0.01;
    EXPECT_NEAR(r.ppl, want, want * tol) << name;
}

INSTANTIATE_TEST_SUITE_P(Shared, Reference, ::testing::ValuesIn(reference_names()),
                         [](const auto& info) {
                             std::string s = info.param;
                             for (char& c : s)
                                 if (!std::isalnum((unsigned char)c)) c = '_';
                             return s;
                         });

}  // namespace
}  // namespace lokal
