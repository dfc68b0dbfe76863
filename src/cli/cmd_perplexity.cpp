// lokal perplexity: the llama.cpp perplexity method on a text file.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/perplexity.h"

namespace lokal::cli {

void register_perplexity(CLI::App& app) {
    struct Opts {
        std::string model, file, store;
        int ctx = 512, threads = 0;
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("perplexity", "Measure perplexity of a model on a text file");
    cmd->add_option("-m,--model", o->model, "GGUF file or stored model name")->required();
    cmd->add_option("-f,--file", o->file, "Text file to score")->required();
    cmd->add_option("-c,--ctx-size", o->ctx, "Tokens per chunk (half of each chunk is scored)")->capture_default_str()
        ->check(CLI::Range(4, 1 << 20));
    cmd->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")->check(CLI::Range(0, 1024));
    cmd->add_flag("--json", o->json, "Print {\"ppl\", \"chunks\", \"tokens\"} as JSON");
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->callback([o] {
        const std::string text = read_text_file(o->file);
        LoadedModel lm = load_model(o->model, o->store);
        const auto tokens = lm.vocab->tokenize(text, true, false);
        PerplexityOptions po;
        po.n_ctx = o->ctx;
        po.bos = lm.vocab->add_bos() ? lm.vocab->bos() : -1;
        po.progress = [](int done, int total, double ppl) {
            std::fprintf(stderr, "\rperplexity: chunk %d/%d, ppl %.4f", done, total, ppl);
            if (done == total) std::fprintf(stderr, "\n");
        };
        const PerplexityResult r = perplexity(*lm.model, o->threads, tokens, po);
        if (o->json) {
            nlohmann::json j = {{"ppl", r.ppl}, {"chunks", r.chunks}, {"tokens", r.tokens_evaluated},
                                {"scored", r.tokens_scored}, {"nll", r.nll_mean}, {"ctx", o->ctx}};
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf("perplexity: %.4f over %d chunks of %d tokens (%lld scored)\n", r.ppl, r.chunks, o->ctx,
                        (long long)r.tokens_scored);
        }
    });
}

}  // namespace lokal::cli
