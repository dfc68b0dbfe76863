// lokal perplexity: the llama.cpp perplexity method on a text file, and KL-divergence of a
// model against saved base logits (--kl-divergence-base writes them, --kl-divergence reads).
#include <cstdio>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/kl_divergence.h"
#include "engine/perplexity.h"

namespace lokal::cli {

void register_perplexity(CLI::App& app) {
    struct Opts {
        std::string model, file, store, kld_base, kld;
        int ctx = 512, threads = 0;
        bool json = false;
        KvType cache_type = KvType::F16;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd =
        app.add_subcommand("perplexity", "Measure perplexity of a model on a text file");
    cmd->add_option("-m,--model", o->model, "GGUF file or stored model name")->required();
    cmd->add_option("-f,--file", o->file, "Text file to score")->required();
    auto* ctx_opt =
        cmd->add_option("-c,--ctx-size", o->ctx, "Tokens per chunk (half of each chunk is scored)")
            ->capture_default_str()
            ->check(CLI::Range(4, 1 << 20));
    cmd->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")
        ->check(CLI::Range(0, 1024));
    cmd->add_flag("--json", o->json, "Print the results as one JSON object");
    add_cache_type_option(cmd, &o->cache_type);
    auto* base_opt =
        cmd->add_option("--kl-divergence-base", o->kld_base,
                        "Save this model's scored logits to FILE (the base for --kl-divergence)");
    cmd->add_option(
           "--kl-divergence", o->kld,
           "Compare against base logits in FILE: mean/p99 KL-divergence, top-1 agreement, ΔPPL")
        ->excludes(base_opt);
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->callback([o, ctx_opt] {
        const std::string text = read_text_file(o->file);
        std::optional<KldBase> base;
        if (!o->kld.empty()) {
            base = KldBase::load(o->kld);
            if (!ctx_opt->count()) o->ctx = base->n_ctx;  // score the positions the base scored
        }
        LoadedModel lm = load_model(o->model, o->store);
        const int n_vocab = lm.model->hp.n_vocab;
        if (base && base->n_vocab != n_vocab)
            throw UsageError("the KL-divergence base has a vocabulary of " +
                             std::to_string(base->n_vocab) + " tokens, this model " +
                             std::to_string(n_vocab));
        if (base && base->n_ctx != o->ctx)
            throw UsageError("the KL-divergence base was scored with -c " +
                             std::to_string(base->n_ctx) + ", not " + std::to_string(o->ctx));
        const auto tokens = lm.vocab->tokenize(text, true, false);
        PerplexityOptions po;
        po.n_ctx = o->ctx;
        po.kv_type = o->cache_type;
        po.bos = lm.vocab->add_bos() ? lm.vocab->bos() : -1;
        po.progress = [](int done, int total, double ppl) {
            std::fprintf(stderr, "\rperplexity: chunk %d/%d, ppl %.4f", done, total, ppl);
            if (done == total) std::fprintf(stderr, "\n");
        };
        std::unique_ptr<KldBaseWriter> writer;
        std::unique_ptr<KldComparer> comparer;
        if (!o->kld_base.empty()) {
            writer = std::make_unique<KldBaseWriter>(o->kld_base, n_vocab, o->ctx);
            po.on_scored = [&](const float* l, int32_t next) { writer->add(l, next); };
        } else if (base) {
            comparer = std::make_unique<KldComparer>(*base);
            po.on_scored = [&](const float* l, int32_t next) { comparer->add(l, next); };
        }
        const PerplexityResult r = perplexity(*lm.model, o->threads, tokens, po);
        if (writer) writer->finish(r.nll_mean);
        nlohmann::json j = {{"ppl", r.ppl},
                            {"chunks", r.chunks},
                            {"tokens", r.tokens_evaluated},
                            {"scored", r.tokens_scored},
                            {"nll", r.nll_mean},
                            {"ctx", o->ctx},
                            {"cache_type", kv_type_name(o->cache_type)}};
        if (comparer) {
            const KldResult k = comparer->result();
            j["kld"] = {{"mean", k.kld_mean}, {"stderr", k.kld_stderr}, {"median", k.kld_median},
                        {"p90", k.kld_p90},   {"p99", k.kld_p99},       {"max", k.kld_max}};
            j["top1_agreement"] = k.top1_agreement;
            j["base_ppl"] = k.base_ppl;
            j["delta_ppl"] = k.delta_ppl;
            j["delta_ppl_pct"] = k.delta_ppl_pct;
            j["rms_delta_p"] = k.rms_delta_p;
            if (!o->json) {
                std::printf(
                    "perplexity: %.4f (base %.4f, ΔPPL %+.4f = %+.3f%%) over %d chunks of %d "
                    "tokens\n",
                    k.ppl, k.base_ppl, k.delta_ppl, k.delta_ppl_pct, r.chunks, o->ctx);
                std::printf(
                    "KL-divergence: mean %.6f ± %.6f, median %.6f, p90 %.6f, p99 %.6f, max %.6f\n",
                    k.kld_mean, k.kld_stderr, k.kld_median, k.kld_p90, k.kld_p99, k.kld_max);
                std::printf("top-1 agreement: %.3f%% of %llu positions; RMS Δp %.4f%%\n",
                            100 * k.top1_agreement, (unsigned long long)k.n, 100 * k.rms_delta_p);
                return;
            }
        }
        if (writer) j["kl_divergence_base"] = o->kld_base;
        if (o->json) {
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf("perplexity: %.4f over %d chunks of %d tokens (%lld scored)\n", r.ppl,
                        r.chunks, o->ctx, (long long)r.tokens_scored);
            if (writer)
                std::printf("saved base logits of %lld positions to %s\n",
                            (long long)r.tokens_scored, o->kld_base.c_str());
        }
    });
}

}  // namespace lokal::cli
