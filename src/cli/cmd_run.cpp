// lokal run: generate a continuation of a prompt, or chat interactively.
#include <cstdio>
#include <iostream>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/generate.h"
#include "engine/json_schema.h"
#include "template/chat_template.h"

namespace lokal::cli {
namespace {

struct RunOpts {
    std::string model, prompt, prompt_file, system, store, format, suffix;
    std::vector<std::string> stop;
    int n_predict = -1, ctx = 0, threads = 0, batch = 512, repeat_last_n = 64, top_k = 40;
    float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f, presence = 0,
          frequency = 0;
    uint64_t seed = 0;
    bool json = false, no_parse_special = false;
    KvType cache_type = KvType::F16;
    // Speculative decoding: a draft model, or prompt lookup.
    std::string draft_model;
    bool lookup = false;
    DraftParams draft;
};

// Used when a model ships no chat template (documented in README): plain "role: text" lines.
constexpr const char* kDefaultChatTemplate =
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

void print_stats(const LoadedModel& lm, const GenerateResult& r, const Drafter* drafter) {
    auto rate = [](double n, double ms) { return ms > 0 ? n * 1000.0 / ms : 0.0; };
    std::fprintf(stderr,
                 "\nload %.1f ms | prompt %d tokens, %.1f ms, %.1f t/s | generation %zu tokens, "
                 "%.1f ms, %.1f t/s\n",
                 lm.load_ms, r.prompt_tokens, r.prompt_ms, rate(r.prompt_tokens, r.prompt_ms),
                 r.tokens.size(), r.eval_ms, rate((double)r.tokens.size(), r.eval_ms));
    if (drafter) {
        const DraftStats& d = r.draft;
        std::fprintf(stderr,
                     "draft (%s) | %lld passes, %lld tokens proposed, %lld accepted (%.0f%%), "
                     "%.1f tokens per pass, %.1f ms drafting\n",
                     drafter->name(), (long long)d.steps, (long long)d.proposed,
                     (long long)d.accepted,
                     d.proposed ? 100.0 * (double)d.accepted / (double)d.proposed : 0.0,
                     d.steps ? 1.0 + (double)d.accepted / (double)d.steps : 0.0, d.draft_ms);
    }
}

// The drafter the flags ask for (null: none); a draft model is loaded into `draft`.
std::unique_ptr<Drafter> make_drafter(const RunOpts& o, const LoadedModel& lm, const Context& ctx,
                                      LoadedModel& draft, std::unique_ptr<Context>& draft_ctx) {
    if (o.lookup && !o.draft_model.empty())
        throw UsageError("--lookup and --model-draft are two kinds of drafts: choose one");
    if (o.lookup) return std::make_unique<LookupDrafter>(o.draft);
    if (o.draft_model.empty()) return nullptr;
    draft = load_model(o.draft_model, o.store);
    const std::string why = draft_vocab_mismatch(*lm.vocab, *draft.vocab);
    if (!why.empty())
        throw UsageError("--model-draft: " + why + "; use a smaller model of the same family");
    ContextParams dp;
    dp.n_ctx = ctx.n_ctx();
    dp.n_threads = o.threads;
    dp.n_batch = o.batch;
    draft_ctx = std::make_unique<Context>(*draft.model, dp);
    return std::make_unique<ModelDrafter>(*draft_ctx, o.draft);
}

void interactive_chat(const RunOpts& o, LoadedModel& lm, Context& ctx, GenerateOptions gen) {
    LoadedModel draft;
    std::unique_ptr<Context> draft_ctx;
    const std::unique_ptr<Drafter> drafter = make_drafter(o, lm, ctx, draft, draft_ctx);
    gen.drafter = drafter.get();
    std::string tmpl = lm.config && lm.config->chat_template ? *lm.config->chat_template : "";
    if (tmpl.empty()) {
        if (auto t = lm.model->file->get_string("tokenizer.chat_template")) tmpl = std::string(*t);
    }
    if (tmpl.empty()) {
        std::fprintf(
            stderr,
            "note: the model has no chat template; using lokal's plain 'role: text' format\n");
        tmpl = kDefaultChatTemplate;
        gen.stop.push_back("\nuser:");
    }
    const Vocab& vocab = *lm.vocab;
    auto text_of = [&](int32_t id) {
        return id >= 0 ? vocab.token_to_piece(id, true) : std::string();
    };
    nlohmann::json messages = nlohmann::json::array();
    std::string system =
        !o.system.empty() ? o.system : (lm.config && lm.config->system ? *lm.config->system : "");
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    if (lm.config)
        for (const auto& m : lm.config->messages)
            messages.push_back({{"role", m.role}, {"content", m.content}});

    const int32_t seq = ctx.cache().create_sequence();
    std::vector<int32_t> cached;  // tokens whose K/V are in the cache for `seq`
    std::fprintf(stderr, "chat with %s: type a message, Ctrl-D to quit\n", o.model.c_str());
    std::string line;
    while (true) {
        std::fprintf(stderr, "> ");
        if (!std::getline(std::cin, line)) break;
        if (line.empty()) continue;
        messages.push_back({{"role", "user"}, {"content", line}});
        const std::string rendered = tmpl::apply_chat_template(
            tmpl, messages, true, text_of(vocab.bos()), text_of(vocab.eos()));
        // The template writes BOS itself when the model wants it.
        std::vector<int32_t> all = vocab.tokenize(rendered, false, true);
        // Reuse the cached prefix; evaluate only what changed.
        size_t common = 0;
        while (common < cached.size() && common < all.size() && cached[common] == all[common])
            ++common;
        if (common == all.size()) common = all.size() - 1;  // at least one token must be evaluated
        ctx.cache().truncate(seq, (int32_t)common);
        std::vector<int32_t> delta(all.begin() + (ptrdiff_t)common, all.end());
        const std::vector<int32_t> earlier(all.begin(), all.begin() + (ptrdiff_t)common);
        gen.preceding = &earlier;
        if ((int)all.size() >= ctx.n_ctx())
            throw UsageError("the conversation no longer fits the context (-c)");
        GenerateResult r = generate(ctx, vocab, seq, delta, gen, [](const std::string& s) {
            std::fwrite(s.data(), 1, s.size(), stdout);
            std::fflush(stdout);
            return true;
        });
        std::printf("\n");
        cached = all;
        cached.insert(cached.end(), r.tokens.begin(), r.tokens.end());
        ctx.cache().truncate(seq,
                             (int32_t)std::min<size_t>(cached.size(), ctx.cache().length(seq)));
        cached.resize(ctx.cache().length(seq));
        messages.push_back({{"role", "assistant"}, {"content", r.text}});
    }
}

}  // namespace

void register_run(CLI::App& app) {
    auto o = std::make_shared<RunOpts>();
    CLI::App* cmd =
        app.add_subcommand("run", "Generate text from a prompt, or chat when no prompt is given");
    cmd->add_option("-m,--model,model", o->model, "GGUF file or stored model name")->required();
    cmd->add_option("-p,--prompt", o->prompt,
                    "Prompt; its continuation is printed (the prompt is not echoed)");
    cmd->add_option("-f,--file", o->prompt_file, "Read the prompt from a file");
    cmd->add_option("--suffix", o->suffix,
                    "Code completion: fill in between the prompt and this text (needs a model "
                    "with fill-in-the-middle tokens)");
    auto* n = cmd->add_option("-n,--n-predict", o->n_predict,
                              "Tokens to generate (-1: until the end or a full context)");
    auto* temp =
        cmd->add_option("--temp", o->temp, "Temperature; 0 is greedy")->capture_default_str();
    auto* top_k =
        cmd->add_option("--top-k", o->top_k, "Top-k sampling (0: off)")->capture_default_str();
    auto* top_p =
        cmd->add_option("--top-p", o->top_p, "Top-p sampling (1: off)")->capture_default_str();
    auto* min_p =
        cmd->add_option("--min-p", o->min_p, "Min-p sampling (0: off)")->capture_default_str();
    auto* rp = cmd->add_option("--repeat-penalty", o->repeat_penalty, "Repetition penalty (1: off)")
                   ->capture_default_str();
    auto* rln =
        cmd->add_option("--repeat-last-n", o->repeat_last_n, "Tokens the penalties look back on")
            ->capture_default_str();
    auto* pp = cmd->add_option("--presence-penalty", o->presence, "Presence penalty");
    auto* fp = cmd->add_option("--frequency-penalty", o->frequency, "Frequency penalty");
    auto* seed = cmd->add_option("--seed", o->seed, "RNG seed (default: random)");
    auto* ctxo = cmd->add_option("-c,--ctx-size", o->ctx,
                                 "Context size in tokens (default: the model's, at most 4096)");
    cmd->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")
        ->check(CLI::Range(0, 1024));
    cmd->add_option("-b,--batch-size", o->batch, "Prompt tokens per forward pass")
        ->check(CLI::Range(1, 1 << 16));
    add_cache_type_option(cmd, &o->cache_type);
    auto* stop = cmd->add_option("--stop", o->stop, "Stop string (repeatable)");
    cmd->add_option("--system", o->system, "System message for chat");
    cmd->add_option("--format", o->format,
                    "Structured output: 'json' (any JSON object), a JSON schema file, or an "
                    "inline schema ('{...}')");
    cmd->add_flag("--json", o->json, "Print one JSON object at the end instead of streaming");
    cmd->add_flag("--no-parse-special", o->no_parse_special,
                  "Treat special-token text in the prompt as plain text");
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->add_option("--model-draft", o->draft_model,
                    "Speculative decoding with this smaller model of the same vocabulary "
                    "drafting ahead (the output stays the same, only faster)");
    cmd->add_flag("--lookup", o->lookup,
                  "Speculative decoding with drafts copied from earlier in the prompt and "
                  "output (prompt lookup; pays off when the answer repeats its input)");
    cmd->add_option("--draft-max,--draft", o->draft.n_max, "Draft tokens checked per pass at most")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    cmd->add_option("--draft-p-min", o->draft.p_min,
                    "Draft model: stop a draft where its top probability is below this")
        ->capture_default_str()
        ->check(CLI::Range(0.0f, 1.0f));
    cmd->add_option("--lookup-ngram", o->draft.ngram_max,
                    "Lookup: the longest run of recent tokens searched for")
        ->capture_default_str()
        ->check(CLI::Range(1, 16));
    ctxo->check(CLI::Range(0, 1 << 22));
    temp->check(CLI::Range(0.0f, 100.0f));
    top_p->check(CLI::Range(0.0f, 1.0f));
    min_p->check(CLI::Range(0.0f, 1.0f));
    rp->check(CLI::Range(0.0f, 100.0f));

    cmd->callback([=] {
        LoadedModel lm = load_model(o->model, o->store);
        // A stored model's Modelfile PARAMETERs are defaults; flags on the command line win.
        if (lm.config) {
            const auto& p = lm.config->parameters;
            if (!temp->count() && p.temperature) o->temp = *p.temperature;
            if (!top_k->count() && p.top_k) o->top_k = *p.top_k;
            if (!top_p->count() && p.top_p) o->top_p = *p.top_p;
            if (!min_p->count() && p.min_p) o->min_p = *p.min_p;
            if (!rp->count() && p.repeat_penalty) o->repeat_penalty = *p.repeat_penalty;
            if (!rln->count() && p.repeat_last_n) o->repeat_last_n = *p.repeat_last_n;
            if (!pp->count() && p.presence_penalty) o->presence = *p.presence_penalty;
            if (!fp->count() && p.frequency_penalty) o->frequency = *p.frequency_penalty;
            if (!seed->count() && p.seed) o->seed = *p.seed;
            if (!ctxo->count() && p.num_ctx) o->ctx = *p.num_ctx;
            if (!n->count() && p.num_predict) o->n_predict = *p.num_predict;
            if (!stop->count()) o->stop = p.stop;
        }
        if (!seed->count() && !(lm.config && lm.config->parameters.seed))
            o->seed = std::random_device{}();

        GenerateOptions gen;
        gen.n_predict = o->n_predict;
        gen.stop = o->stop;
        SamplerParams& sp = gen.sampling;
        sp.temperature = o->temp;
        sp.top_k = o->top_k;
        sp.top_p = o->top_p;
        sp.min_p = o->min_p;
        sp.repeat_penalty = o->repeat_penalty;
        sp.penalty_last_n = o->repeat_last_n;
        sp.presence_penalty = o->presence;
        sp.frequency_penalty = o->frequency;
        sp.seed = o->seed;
        if (!o->format.empty()) {
            try {
                if (o->format == "json")
                    sp.json_schema = json_object_schema();
                else if (o->format[0] == '{')
                    sp.json_schema = compile_json_schema(o->format);
                else
                    sp.json_schema = compile_json_schema(read_text_file(o->format));
            } catch (const JsonSchemaError& e) {
                throw UsageError(std::string("--format: ") + e.what());
            }
        }

        ContextParams cp;
        cp.n_ctx = o->ctx;
        cp.n_threads = o->threads;
        cp.n_batch = o->batch;
        cp.kv_type = o->cache_type;
        require_context_fits(*lm.model, cp, "lower -c (--ctx-size) or use --cache-type q8_0");
        Context ctx(*lm.model, cp);

        std::string prompt = o->prompt;
        if (!o->prompt_file.empty()) prompt = read_text_file(o->prompt_file);
        if (prompt.empty() && o->prompt_file.empty() && o->prompt.empty() && o->suffix.empty()) {
            if (o->json) throw UsageError("--json needs a prompt (-p or -f)");
            interactive_chat(*o, lm, ctx, gen);
            return;
        }
        if (!o->suffix.empty() && !lm.vocab->has_fim())
            throw UsageError(
                "--suffix: this model has no fill-in-the-middle tokens (use a code "
                "model such as Qwen2.5-Coder, StarCoder or CodeLlama)");
        const std::vector<int32_t> ids =
            o->suffix.empty() ? lm.vocab->tokenize(prompt, true, !o->no_parse_special)
                              : lm.vocab->fill_in_middle(prompt, o->suffix);
        if (ids.empty()) throw UsageError("the prompt tokenizes to nothing");
        if ((int)ids.size() >= ctx.n_ctx())
            throw UsageError("the prompt has " + std::to_string(ids.size()) +
                             " tokens but the context holds " + std::to_string(ctx.n_ctx()) +
                             "; raise -c or shorten the prompt");
        LoadedModel draft;
        std::unique_ptr<Context> draft_ctx;
        const std::unique_ptr<Drafter> drafter = make_drafter(*o, lm, ctx, draft, draft_ctx);
        gen.drafter = drafter.get();
        const int32_t seq = ctx.cache().create_sequence();
        const bool stream = !o->json;
        GenerateResult r = generate(ctx, *lm.vocab, seq, ids, gen, [stream](const std::string& s) {
            if (stream) {
                std::fwrite(s.data(), 1, s.size(), stdout);
                std::fflush(stdout);
            }
            return true;
        });
        if (o->json) {
            nlohmann::json j = {{"text", r.text},
                                {"tokens", r.tokens},
                                {"prompt_tokens", r.prompt_tokens},
                                {"eval_tokens", r.tokens.size()},
                                {"prompt_ms", r.prompt_ms},
                                {"eval_ms", r.eval_ms},
                                {"stop_reason", r.stop_reason},
                                {"seed", o->seed}};
            if (drafter)
                j["draft"] = {{"kind", drafter->name()},
                              {"passes", r.draft.steps},
                              {"proposed", r.draft.proposed},
                              {"accepted", r.draft.accepted},
                              {"draft_ms", r.draft.draft_ms}};
            std::printf("%s\n",
                        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        }
        print_stats(lm, r, drafter.get());
    });
}

}  // namespace lokal::cli
