// lokal quantize: convert a GGUF model to a quantization preset; lokal imatrix: collect the
// importance matrix the quantizer can weight its rounding error with. quant-error and
// quant-report live in their own files and are registered from here.
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/quant_commands.h"
#include "cli/quantize_model.h"
#include "engine/context.h"
#include "engine/imatrix.h"

namespace lokal::cli {
namespace {

void register_quantize(CLI::App& app) {
    struct Opts {
        std::string input, output, type, imatrix;
        int threads = 0;
        bool json = false, quiet = false;
    };
    auto o = std::make_shared<Opts>();
    std::string types_help = "Type: one of";
    for (const QuantPreset& p : quant_presets())
        types_help += std::string("\n  ") + p.name + " - " + p.blurb;
    CLI::App* cmd = app.add_subcommand(
        "quantize", "Quantize a GGUF model (F32/F16/BF16 input) to a smaller type");
    cmd->add_option("input", o->input, "Input GGUF file")->required();
    cmd->add_option("output", o->output, "Output GGUF file")->required();
    cmd->add_option("type", o->type, types_help)->required();
    cmd->add_option("--imatrix", o->imatrix,
                    "Importance matrix from `lokal imatrix` (or the reference's .dat)");
    cmd->add_option("-t,--threads", o->threads, "Threads (default: all hardware threads)")
        ->check(CLI::Range(0, 1024));
    cmd->add_flag("--json", o->json, "Print the summary as one JSON object");
    cmd->add_flag("-q,--quiet", o->quiet, "No progress bar");
    cmd->footer(
        "The output has the same tensor types as the reference quantizer (llama-quantize) writes "
        "for TYPE.");
    cmd->callback([o] {
        const QuantPreset* preset = find_preset(o->type);
        if (!preset)
            throw UsageError("unknown quantization type '" + o->type +
                             "' (valid: " + preset_names() + ")");
        std::error_code ec;
        if (!std::filesystem::is_regular_file(o->input, ec))
            throw UsageError("cannot read '" + o->input + "': no such file");
        if (std::filesystem::exists(o->output, ec) &&
            std::filesystem::equivalent(o->input, o->output, ec))
            throw UsageError("the output would overwrite the input");
        Imatrix im;
        QuantizeJob job;
        if (!o->imatrix.empty()) {
            im = Imatrix::load(o->imatrix);
            job.imatrix = &im;
            job.imatrix_path = o->imatrix;
        }
        job.input = o->input;
        job.output = o->output;
        job.preset = preset;
        job.threads = o->threads;
        job.progress = !o->quiet && !o->json;
        job.warn = [](const std::string& m) { std::fprintf(stderr, "warning: %s\n", m.c_str()); };
        const QuantizeSummary s = quantize_model(job);
        if (job.imatrix && s.n_with_importance == 0)
            std::fprintf(stderr,
                         "warning: the imatrix has no entry for any tensor of this model\n");
        if (o->json) {
            nlohmann::json j = {{"type", preset->name},
                                {"file_type", preset->file_type},
                                {"input_bytes", s.input_bytes},
                                {"output_bytes", s.output_bytes},
                                {"parameters", s.n_elements},
                                {"bits_per_weight", s.bits_per_weight},
                                {"seconds", s.seconds},
                                {"tensors", s.n_tensors},
                                {"converted", s.n_converted},
                                {"fallbacks", s.n_fallback},
                                {"with_importance", s.n_with_importance},
                                {"tensor_types", s.types}};
            std::printf("%s\n", j.dump().c_str());
            return;
        }
        std::string types;
        for (const auto& [name, n] : s.types)
            types += (types.empty() ? "" : ", ") + std::to_string(n) + " " + name;
        std::printf("%s: %.2f MiB -> %.2f MiB (%.2f bits per weight) in %.2f s\n", preset->name,
                    s.input_bytes / 1048576.0, s.output_bytes / 1048576.0, s.bits_per_weight,
                    s.seconds);
        std::printf(
            "tensors: %s%s\n", types.c_str(),
            s.n_fallback
                ? (" (" + std::to_string(s.n_fallback) + " fell back, see warnings)").c_str()
                : "");
        if (job.imatrix) std::printf("importance-weighted: %d tensors\n", s.n_with_importance);
    });
}

void register_imatrix(CLI::App& app) {
    struct Opts {
        std::string model, file, output, format, store;
        int ctx = 512, threads = 0, chunks = 0;
        bool process_output = false, json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("imatrix",
                                       "Collect the importance matrix (mean squared activation per "
                                       "input channel of every matmul)");
    cmd->add_option("-m,--model", o->model, "GGUF file or stored model name")->required();
    cmd->add_option("-f,--file", o->file, "Calibration text")->required();
    cmd->add_option("-o,--output", o->output, "Output file")->required();
    cmd->add_option(
           "--format", o->format,
           "gguf (default) or dat (the reference engine's older format; default for *.dat)")
        ->check(CLI::IsMember({"gguf", "dat"}));
    cmd->add_option("-c,--ctx-size", o->ctx, "Tokens per chunk")
        ->capture_default_str()
        ->check(CLI::Range(2, 1 << 20));
    cmd->add_option("--chunks", o->chunks, "Process at most N chunks (0: all)")
        ->check(CLI::Range(0, 1 << 30));
    cmd->add_flag("--process-output", o->process_output,
                  "Also collect output.weight (the reference skips it)");
    cmd->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")
        ->check(CLI::Range(0, 1024));
    cmd->add_flag("--json", o->json, "Print a JSON summary");
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->callback([o] {
        const std::string text = read_text_file(o->file);
        LoadedModel lm = load_model(o->model, o->store);
        const auto tokens = lm.vocab->tokenize(text, true, false);
        ImatrixOptions io;
        io.n_ctx = o->ctx;
        io.bos = lm.vocab->add_bos() ? lm.vocab->bos() : -1;
        io.max_chunks = o->chunks;
        io.process_output = o->process_output;
        io.dataset = std::filesystem::path(o->file).filename().string();
        if (!o->json)
            io.progress = [](int done, int total) {
                std::fprintf(stderr, "\rimatrix: chunk %d/%d", done, total);
                if (done == total) std::fprintf(stderr, "\n");
            };
        const auto t0 = std::chrono::steady_clock::now();
        const Imatrix im = compute_imatrix(*lm.model, o->threads, tokens, io);
        std::string format = o->format;
        if (format.empty())
            format = std::filesystem::path(o->output).extension() == ".dat" ? "dat" : "gguf";
        if (format == "dat")
            im.save_dat(o->output);
        else
            im.save_gguf(o->output);
        const double secs = ms_since(t0) / 1000.0;
        if (o->json) {
            nlohmann::json j = {{"output", o->output},          {"format", format},
                                {"entries", im.entries.size()}, {"chunks", im.chunk_count},
                                {"chunk_size", im.chunk_size},  {"seconds", secs}};
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf("imatrix: %zu matrices over %d chunks of %d tokens in %.2f s -> %s (%s)\n",
                        im.entries.size(), im.chunk_count, im.chunk_size, secs, o->output.c_str(),
                        format.c_str());
        }
    });
}

}  // namespace

void register_quantize_commands(CLI::App& app) {
    register_quantize(app);
    register_imatrix(app);
    register_quant_error(app);
    register_quant_report(app);
}

}  // namespace lokal::cli
