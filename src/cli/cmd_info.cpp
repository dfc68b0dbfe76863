// lokal info: what a model file is, and what this machine will run it with.
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/context.h"
#include "ops/cpu_features.h"
#include "ops/kernels.h"
#include "ops/thread_pool.h"

namespace lokal::cli {

void register_info(CLI::App& app) {
    struct Opts {
        std::string model, store;
        bool json = false;
        int ctx = 0, parallel = 1;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "info", "Show a model's architecture, size, tensor types and vocabulary");
    cmd->add_option("-m,--model", o->model, "GGUF file or stored model name")->required();
    cmd->add_flag("--json", o->json, "Print one JSON object");
    cmd->add_option("-c,--ctx-size", o->ctx,
                    "Context for the memory estimate (default: the model's, at most 4096)")
        ->check(CLI::Range(0, 1 << 22));
    cmd->add_option("--parallel", o->parallel, "Sequences for the memory estimate (as serve's)")
        ->capture_default_str()
        ->check(CLI::Range(1, 4096));
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->callback([o] {
        // Nothing computes here: the weights stay untouched (and unread) in the mapping.
        LoadedModel lm = load_model(o->model, o->store, false, /*repack=*/false);
        const Model& m = *lm.model;
        const HParams& hp = m.hp;
        std::map<std::string, std::pair<int, uint64_t>> types;  // type -> (tensors, bytes)
        for (const auto& t : m.file->tensors()) {
            auto& e = types[type_name(t.type)];
            e.first++;
            e.second += t.n_bytes;
        }
        const bool has_template = m.file->find("tokenizer.chat_template") != nullptr;
        const double bpw =
            8.0 * (double)m.weight_bytes() / (double)std::max<uint64_t>(1, m.n_params());
        nlohmann::json j = {
            {"path", lm.path},
            {"architecture", hp.arch},
            {"name", std::string(m.file->get_string("general.name").value_or(""))},
            {"parameters", m.n_params()},
            {"file_size", m.file->file_size()},
            {"bits_per_weight", bpw},
            {"gguf_version", m.file->version()},
            {"context_length", hp.n_ctx_train},
            {"embedding_length", hp.dim},
            {"block_count", hp.n_layer},
            {"feed_forward_length", hp.n_ff},
            {"head_count", hp.n_head},
            {"head_count_kv", hp.n_kv_head},
            {"head_dim", hp.head_dim},
            {"rope_freq_base", hp.rope.freq_base},
            {"expert_count", hp.n_expert},
            {"expert_used_count", hp.n_expert_used},
            {"vocab_type", lm.vocab->model_type()},
            {"vocab_pre", lm.vocab->pre_type()},
            {"vocab_size", lm.vocab->n_tokens()},
            {"bos", lm.vocab->bos()},
            {"eos", lm.vocab->eos()},
            {"chat_template", has_template},
            {"kernel_path", kernels().isa},
            {"kernel_bf16_dot", kernels().bf16_dot},
            {"packed_tensors", lm.model->packable_tensors()},
            {"threads_default", ThreadPool::default_threads()},
        };
        for (auto& [name, e] : types)
            j["tensor_types"][name] = {{"tensors", e.first}, {"bytes", e.second}};
        // Will it fit: weights plus the KV cache that -c x --parallel positions take, for
        // each cache type the model's head size allows.
        const int ctx = Context::resolve_n_ctx(m, o->ctx);
        const uint64_t physical = physical_memory_bytes();
        nlohmann::json mem = {{"weights_bytes", m.weight_bytes()},
                              {"ctx", ctx},
                              {"parallel", o->parallel},
                              {"physical_bytes", physical}};
        for (KvType t : kKvTypes) {
            const char* name = kv_type_name(t);
            if (!kv_type_fits(t, hp.head_dim)) {
                mem["kv_bytes_per_position"][name] = nullptr;
                mem["total_bytes"][name] = nullptr;
                continue;
            }
            ContextParams cp;  // what serve's pool takes (whole blocks)
            cp.n_ctx = ctx;
            cp.n_seq_max = o->parallel;
            cp.kv_type = t;
            mem["kv_bytes_per_position"][name] = KvStorage::bytes_per_position(hp, t);
            mem["total_bytes"][name] = m.weight_bytes() + Context::kv_bytes(m, cp);
        }
        j["memory"] = mem;
        if (o->json) {
            std::printf("%s\n",
                        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
            return;
        }
        std::printf("file:          %s (%.2f MiB, GGUF v%u)\n", lm.path.c_str(),
                    m.file->file_size() / 1048576.0, m.file->version());
        std::printf("architecture:  %s%s\n", hp.arch.c_str(),
                    hp.n_expert ? " (mixture of experts)" : "");
        std::printf("parameters:    %llu (%.2f bits per weight)\n",
                    (unsigned long long)m.n_params(), bpw);
        std::printf("layers:        %d, embedding %d, ffn %d\n", hp.n_layer, hp.dim, hp.n_ff);
        std::printf("attention:     %d heads, %d KV heads, head dim %d, rope base %g%s\n",
                    hp.n_head, hp.n_kv_head, hp.head_dim, hp.rope.freq_base,
                    hp.rope.neox ? " (neox)" : "");
        if (hp.n_expert)
            std::printf("experts:       %d, %d used per token\n", hp.n_expert, hp.n_expert_used);
        std::printf("context:       %d (training)\n", hp.n_ctx_train);
        std::printf("vocabulary:    %d tokens, %s/%s, bos %d, eos %d\n", lm.vocab->n_tokens(),
                    lm.vocab->model_type().c_str(), lm.vocab->pre_type().c_str(), lm.vocab->bos(),
                    lm.vocab->eos());
        std::printf("chat template: %s\n", has_template ? "yes" : "no");
        std::printf("tensor types:\n");
        for (auto& [name, e] : types)
            std::printf("  %-8s %5d tensors %10.2f MiB\n", name.c_str(), e.first,
                        e.second / 1048576.0);
        // "22.0 KiB (f16), 11.7 KiB (q8_0)": one entry per cache type the model can use.
        auto per_type = [&](const char* field, double unit, const char* unit_name) {
            std::string out;
            for (KvType t : kKvTypes) {
                const auto& v = mem[field][kv_type_name(t)];
                if (v.is_null()) continue;
                char buf[64];
                std::snprintf(buf, sizeof buf, "%s%.1f %s (%s)", out.empty() ? "" : ", ",
                              v.get<uint64_t>() / unit, unit_name, kv_type_name(t));
                out += buf;
            }
            return out;
        };
        std::printf("memory:        weights %.1f MiB; KV cache per position %s\n",
                    m.weight_bytes() / 1048576.0,
                    per_type("kv_bytes_per_position", 1024.0, "KiB").c_str());
        std::printf(
            "               at %d positions x %d sequences: %s; this machine has %.1f GiB\n", ctx,
            o->parallel, per_type("total_bytes", 1048576.0, "MiB").c_str(),
            physical / 1073741824.0);
        std::printf(
            "kernels:       %s%s, %d threads by default, %d weight tensors repacked when "
            "computing\n",
            kernels().isa, kernels().bf16_dot ? " + bf16 dot" : "", ThreadPool::default_threads(),
            lm.model->packable_tensors());
    });
}

}  // namespace lokal::cli
