// lokal synth: write a random-weight model of a real architecture's shape, so benchmarks
// need no download (see model/synth.h).
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "model/synth.h"

namespace lokal::cli {
namespace {

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

}  // namespace

void register_synth_command(CLI::App& app) {
    struct Opts {
        std::string preset, type, vocab, out;
        uint64_t seed = 1;
        int layers = 0, threads = 0;
        float stddev = 0.02f;
        bool json = false, quiet = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "synth", "Write a random-weight model of a real architecture's shape (for benchmarks)");
    cmd->add_option("--preset", o->preset, "Shape: " + join(synth::preset_names()))->required();
    cmd->add_option("--type", o->type,
                    "File type as llama-quantize names it: " + join(synth::mix_names()))
        ->required();
    cmd->add_option("-o,--output", o->out, "Output GGUF path")->required();
    cmd->add_option("--vocab", o->vocab,
                    "Vocabulary GGUF whose tokenizer.* keys to copy (default: a placeholder)");
    cmd->add_option("--seed", o->seed, "Random seed (same seed, same file)");
    cmd->add_option("--layers", o->layers, "Override the block count (quick experiments and tests)")
        ->check(CLI::Range(1, 4096));
    cmd->add_option("--std", o->stddev, "Standard deviation of the random weights")
        ->check(CLI::Range(1e-6, 10.0));
    cmd->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")
        ->check(CLI::Range(0, 1024));
    cmd->add_flag("--json", o->json, "Print a JSON summary");
    cmd->add_flag("-q,--quiet", o->quiet, "No progress on stderr");
    cmd->callback([o] {
        auto shape = synth::find_preset(o->preset);
        if (!shape)
            throw UsageError("unknown preset '" + o->preset +
                             "' (presets: " + join(synth::preset_names()) + ")");
        auto mix = synth::find_mix(o->type);
        if (!mix)
            throw UsageError("unknown type '" + o->type + "' (types: " + join(synth::mix_names()) +
                             ")");
        if (o->layers > 0) shape->n_layer = o->layers;
        synth::Options so;
        so.shape = *shape;
        so.mix = *mix;
        so.vocab_path = o->vocab;
        so.seed = o->seed;
        so.stddev = o->stddev;
        so.n_threads = o->threads;
        const auto t0 = std::chrono::steady_clock::now();
        if (!o->quiet) {
            so.on_tensor = [](size_t i, size_t n, const synth::TensorPlan&) {
                // One rewritten status line: a 7B model takes minutes on two cores.
                if (i + 1 == n || i % 8 == 0)
                    std::fprintf(stderr, "\rsynth: %zu/%zu tensors", i + 1, n);
                if (i + 1 == n) std::fprintf(stderr, "\n");
            };
        }
        const synth::Summary s = synth::write_model(so, o->out);
        const double ms = ms_since(t0);
        if (o->json) {
            nlohmann::json j = {{"path", o->out},
                                {"preset", shape->name},
                                {"type", mix->name},
                                {"parameters", s.n_params},
                                {"tensors", s.n_tensors},
                                {"data_bytes", s.data_bytes},
                                {"file_bytes", s.file_bytes},
                                {"vocab_size", s.n_vocab},
                                {"seconds", ms / 1000.0}};
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf(
                "%s: %s %s, %.3f B parameters, %zu tensors, %.1f MiB, vocabulary %d (%.1f s)\n",
                o->out.c_str(), shape->name.c_str(), mix->name.c_str(), s.n_params / 1e9,
                s.n_tensors, s.file_bytes / 1048576.0, s.n_vocab, ms / 1000.0);
        }
    });
}

}  // namespace lokal::cli
