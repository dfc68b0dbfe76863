// lokal quant-report: quantize a model to each type and measure what each costs: file
// size, bits per weight, PPL, ΔPPL, mean KL-divergence against the input model, top-1
// agreement and generation speed. Writes report.md, report.csv and report.png (quality
// against size) to the output folder.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/plot_png.h"
#include "cli/quant_commands.h"
#include "cli/quantize_model.h"
#include "engine/context.h"
#include "engine/kl_divergence.h"
#include "engine/perplexity.h"

namespace lokal::cli {
namespace {

struct Row {
    std::string type;
    uint64_t bytes = 0;
    double bpw = 0, ppl = 0, dppl_pct = 0, kld = 0, kld_p99 = 0, top1 = 1, tok_s = 0;
};

// Greedy generation speed: one token per forward pass, as a chat would run.
double generation_speed(const Model& model, int threads, int32_t bos, int n_gen) {
    ContextParams cp;
    cp.n_ctx = n_gen + 2;
    cp.n_threads = threads;
    Context ctx(model, cp);
    // Best of three runs: on a shared machine one descheduled thread can stall a token.
    double best = 0;
    for (int run = 0; run < 3; ++run) {
        const int32_t seq = ctx.cache().create_sequence();
        std::vector<float> logits;
        int32_t tok = bos >= 0 ? bos : 0;
        ctx.eval(seq, std::span<const int32_t>(&tok, 1), false, logits);
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < n_gen; ++i) {
            tok = (int32_t)(std::max_element(logits.begin(), logits.end()) - logits.begin());
            ctx.eval(seq, std::span<const int32_t>(&tok, 1), false, logits);
        }
        best = std::max(best, n_gen / (ms_since(t0) / 1000.0));
        ctx.cache().free_sequence(seq);
    }
    return best;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');)
        if (!item.empty()) out.push_back(item);
    return out;
}

}  // namespace

void register_quant_report(CLI::App& app) {
    struct Opts {
        std::string model, file, dir = "quant-report", imatrix, store;
        std::string types =
            "F16,Q8_0,Q6_K,Q5_K_M,Q5_K_S,Q5_1,Q5_0,Q4_K_M,Q4_K_S,Q4_1,Q4_0,IQ4_NL,IQ4_XS,Q3_K_L,Q3_"
            "K_M,Q3_K_S,Q2_K";
        int ctx = 128, threads = 0, n_gen = 32;
        bool keep = false, json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "quant-report", "Quantize a model to each type and tabulate size against quality");
    cmd->add_option("-m,--model", o->model, "GGUF file (F32/F16/BF16) or stored model name")
        ->required();
    cmd->add_option("-f,--file", o->file, "Text to measure perplexity and KL-divergence on")
        ->required();
    cmd->add_option("--types", o->types, "Types, comma-separated")->capture_default_str();
    cmd->add_option("-o,--output-dir", o->dir, "Folder for report.md, report.csv, report.png")
        ->capture_default_str();
    cmd->add_option("--imatrix", o->imatrix, "Quantize with this importance matrix");
    cmd->add_option("-c,--ctx-size", o->ctx, "Perplexity chunk size")
        ->capture_default_str()
        ->check(CLI::Range(4, 1 << 20));
    cmd->add_option("-n,--gen-tokens", o->n_gen, "Tokens generated for the speed column")
        ->capture_default_str()
        ->check(CLI::Range(1, 4096));
    cmd->add_option("-t,--threads", o->threads, "Threads (default: physical cores)")
        ->check(CLI::Range(0, 1024));
    cmd->add_flag("--keep", o->keep, "Keep the quantized models in the output folder");
    cmd->add_flag("--json", o->json, "Print the rows as JSON instead of the Markdown table");
    cmd->add_option("--store", o->store, "Model store directory");
    cmd->callback([o] {
        std::vector<const QuantPreset*> presets;
        for (const std::string& t : split(o->types)) {
            const QuantPreset* p = find_preset(t);
            if (!p)
                throw UsageError("unknown quantization type '" + t + "' (valid: " + preset_names() +
                                 ")");
            presets.push_back(p);
        }
        if (presets.empty()) throw UsageError("--types is empty");
        const std::string text = read_text_file(o->file);
        LoadedModel lm = load_model(o->model, o->store);
        std::error_code ec;
        std::filesystem::create_directories(o->dir, ec);
        if (ec) throw UsageError("cannot create '" + o->dir + "': " + ec.message());
        Imatrix im;
        if (!o->imatrix.empty()) im = Imatrix::load(o->imatrix);

        const auto tokens = lm.vocab->tokenize(text, true, false);
        const int32_t bos = lm.vocab->add_bos() ? lm.vocab->bos() : -1;
        PerplexityOptions po;
        po.n_ctx = o->ctx;
        po.bos = bos;
        KldBase base = KldBase::in_memory(lm.model->hp.n_vocab, o->ctx);
        po.on_scored = [&](const float* l, int32_t next) { base.add(l, next); };
        std::fprintf(stderr, "quant-report: base model %s\n", lm.path.c_str());
        const PerplexityResult br = perplexity(*lm.model, o->threads, tokens, po);
        base.nll_mean = br.nll_mean;

        std::vector<Row> rows;
        Row b;
        b.type = "base";
        b.bytes = lm.model->file->file_size();
        b.bpw = 8.0 * (double)lm.model->weight_bytes() /
                (double)std::max<uint64_t>(1, lm.model->n_params());
        b.ppl = br.ppl;
        b.tok_s = generation_speed(*lm.model, o->threads, bos, o->n_gen);
        rows.push_back(b);

        const std::string stem = std::filesystem::path(lm.path).stem().string();
        for (const QuantPreset* p : presets) {
            const std::string out =
                (std::filesystem::path(o->dir) / (stem + "." + p->name + ".gguf")).string();
            std::fprintf(stderr, "quant-report: %s\n", p->name);
            QuantizeJob job;
            job.input = lm.path;
            job.output = out;
            job.preset = p;
            job.threads = o->threads;
            if (!o->imatrix.empty()) job.imatrix = &im, job.imatrix_path = o->imatrix;
            const QuantizeSummary s = quantize_model(job);
            auto qm = Model::load(out);
            KldComparer cmp(base);
            PerplexityOptions qo = po;
            qo.on_scored = [&](const float* l, int32_t next) { cmp.add(l, next); };
            perplexity(*qm, o->threads, tokens, qo);
            const KldResult k = cmp.result();
            Row r;
            r.type = p->name;
            r.bytes = s.output_bytes;
            r.bpw = s.bits_per_weight;
            r.ppl = k.ppl;
            r.dppl_pct = k.delta_ppl_pct;
            r.kld = k.kld_mean;
            r.kld_p99 = k.kld_p99;
            r.top1 = k.top1_agreement;
            r.tok_s = generation_speed(*qm, o->threads, bos, o->n_gen);
            rows.push_back(r);
            qm.reset();
            if (!o->keep) std::filesystem::remove(out, ec);
        }

        const std::filesystem::path dir(o->dir);
        std::ostringstream md, csv;
        md << "| type | size MiB | bits/weight | PPL | ΔPPL % | mean KLD | p99 KLD | top-1 agree % "
              "| gen tok/s |\n"
           << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        csv << "type,file_bytes,bits_per_weight,ppl,delta_ppl_pct,kld_mean,kld_p99,top1_agreement,"
               "gen_tok_s\n";
        char line[512];
        for (const Row& r : rows) {
            std::snprintf(line, sizeof line,
                          "| %s | %.3f | %.2f | %.4f | %+.2f | %.6f | %.5f | %.2f | %.1f |\n",
                          r.type.c_str(), r.bytes / 1048576.0, r.bpw, r.ppl, r.dppl_pct, r.kld,
                          r.kld_p99, 100 * r.top1, r.tok_s);
            md << line;
            std::snprintf(line, sizeof line, "%s,%llu,%.4f,%.6f,%.4f,%.8f,%.8f,%.6f,%.2f\n",
                          r.type.c_str(), (unsigned long long)r.bytes, r.bpw, r.ppl, r.dppl_pct,
                          r.kld, r.kld_p99, r.top1, r.tok_s);
            csv << line;
        }
        std::ofstream(dir / "report.md")
            << "Model: `" << stem << "`, text: `"
            << std::filesystem::path(o->file).filename().string() << "`, context " << o->ctx
            << (o->imatrix.empty() ? "" : ", with imatrix") << "\n\n"
            << md.str();
        std::ofstream(dir / "report.csv") << csv.str();
        PlotSpec plot;
        plot.title = "QUALITY VS SIZE: " + stem;
        plot.x_label = "BITS PER WEIGHT";
        plot.y_label = "MEAN KL-DIVERGENCE VS BASE (LOG)";
        plot.log_y = true;
        for (const Row& r : rows)
            // 16-bit types would stretch the axis past everything worth comparing.
            if (r.type != "base" && r.type != "F16" && r.type != "BF16") plot.points.push_back({r.bpw, r.kld, r.type});
        write_plot_png(plot, (dir / "report.png").string());

        if (o->json) {
            nlohmann::json j = nlohmann::json::array();
            for (const Row& r : rows)
                j.push_back({{"type", r.type},
                             {"file_bytes", r.bytes},
                             {"bits_per_weight", r.bpw},
                             {"ppl", r.ppl},
                             {"delta_ppl_pct", r.dppl_pct},
                             {"kld_mean", r.kld},
                             {"kld_p99", r.kld_p99},
                             {"top1_agreement", r.top1},
                             {"gen_tok_s", r.tok_s}});
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf("%s", md.str().c_str());
            std::printf("\nwrote %s, %s, %s\n", (dir / "report.md").c_str(),
                        (dir / "report.csv").c_str(), (dir / "report.png").c_str());
        }
    });
}

}  // namespace lokal::cli
