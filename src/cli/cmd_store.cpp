// Model store commands: pull, push, create, convert, list, show, rm, cp, prune.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "gguf/gguf.h"
#include "store/convert.h"
#include "store/create.h"
#include "store/registry.h"
#include "store/resolve.h"

namespace lokal::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace lokal::store;

// Bytes, rate and ETA on stderr: redrawn in place on a terminal, one final line otherwise.
class ProgressBar {
  public:
    explicit ProgressBar(std::string label) : label_(std::move(label)), tty_(isatty(2)) {}
    bool update(uint64_t done, uint64_t total) {
        std::lock_guard<std::mutex> g(mu_);
        auto now = std::chrono::steady_clock::now();
        done_ = done;
        total_ = total;
        if (tty_ && now - last_draw_ > std::chrono::milliseconds(100)) {
            draw(now, false);
            last_draw_ = now;
        }
        return true;
    }
    void finish() {
        std::lock_guard<std::mutex> g(mu_);
        if (total_ || done_) draw(std::chrono::steady_clock::now(), true);
    }

  private:
    void draw(std::chrono::steady_clock::time_point now, bool final) {
        double secs = std::chrono::duration<double>(now - start_).count();
        double rate = secs > 0 ? (double)done_ / secs : 0;
        int pct = total_ ? (int)(100.0 * (double)done_ / (double)total_) : 0;
        const int width = 25;
        int fill = total_ ? (int)((double)width * (double)done_ / (double)total_) : 0;
        std::string bar(std::min(fill, width), '#');
        bar.resize(width, ' ');
        std::string eta = "--:--";
        if (rate > 0 && total_ > done_) {
            long s = (long)((double)(total_ - done_) / rate);
            char b[32];
            snprintf(b, sizeof b, "%ld:%02ld", s / 60, s % 60);
            eta = b;
        }
        std::fprintf(stderr, "%s%s %3d%% [%s] %s/%s  %s/s  ETA %s%s", tty_ ? "\r\033[K" : "",
                     label_.c_str(), pct, bar.c_str(), human_bytes(done_).c_str(),
                     human_bytes(total_).c_str(), human_bytes((uint64_t)rate).c_str(),
                     final ? "0:00" : eta.c_str(), final ? "\n" : "");
        std::fflush(stderr);
    }
    std::string label_;
    bool tty_;
    std::mutex mu_;
    uint64_t done_ = 0, total_ = 0;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_draw_{};
};

// Run a command body: store errors become one line on stderr and exit code 1.
void guarded(const std::function<void()>& body) {
    try {
        body();
        exit_code() = 0;
    } catch (const store::Error& e) {
        std::fprintf(stderr, "lokal: %s\n", e.what());
        exit_code() = 1;
    } catch (const gguf::Error& e) {
        std::fprintf(stderr, "lokal: %s\n", e.what());
        exit_code() = 1;
    }
}

std::string store_dir(const std::string& opt) {
    return opt.empty() ? default_store_dir() : opt;
}

void status_line(const std::string& s) {
    // On a terminal, clear a progress bar being drawn on this line first.
    std::fprintf(stderr, "%s%s\n", isatty(2) ? "\r\033[K" : "", s.c_str());
}

std::string ago(fs::file_time_type t) {
    auto secs =
        std::chrono::duration_cast<std::chrono::seconds>(fs::file_time_type::clock::now() - t)
            .count();
    if (secs < 60) return "just now";
    if (secs < 3600) return std::to_string(secs / 60) + " minutes ago";
    if (secs < 86400) return std::to_string(secs / 3600) + " hours ago";
    return std::to_string(secs / 86400) + " days ago";
}

struct NetOpts {
    bool insecure = false;
    int parallel = 4;
    long timeout = 30;
};

void add_net_options(CLI::App* cmd, NetOpts& n) {
    cmd->add_flag("--insecure", n.insecure,
                  "Allow plain http:// registries and skip TLS verification");
    cmd->add_option("--parallel", n.parallel, "Blobs transferred at once")
        ->check(CLI::Range(1, 16));
    cmd->add_option("--timeout", n.timeout, "Seconds without data before a transfer is abandoned")
        ->check(CLI::Range(1, 3600));
}

RegistryOptions registry_options(const NetOpts& n, ProgressBar& bar) {
    RegistryOptions o;
    o.insecure = n.insecure;
    o.parallel = n.parallel;
    o.http.stall_timeout_s = n.timeout;
    o.progress = [&bar](uint64_t d, uint64_t t) { return bar.update(d, t); };
    o.status = status_line;
    return o;
}

void register_pull_push(CLI::App& app) {
    struct Opts {
        std::string name, store, sha256, as;
        NetOpts net;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* pull_cmd =
        app.add_subcommand("pull", "Download a model from a registry, or a GGUF file by URL");
    pull_cmd
        ->add_option("name", o->name,
                     "NAME ([host[:port]/][namespace/]model[:tag]) or an http(s) URL")
        ->required();
    pull_cmd->add_option("--sha256", o->sha256, "Expected SHA-256 of a file pulled by URL");
    pull_cmd->add_option("--name", o->as, "Store name for a file pulled by URL");
    pull_cmd->add_option("--store", o->store,
                         "Model store directory (default $LOKAL_HOME or ~/.lokal)");
    add_net_options(pull_cmd, o->net);
    pull_cmd->callback([o] {
        guarded([&] {
            Store s(store_dir(o->store));
            ProgressBar bar("pulling");
            RegistryOptions ro = registry_options(o->net, bar);
            if (is_url(o->name)) {
                std::optional<ModelName> as;
                if (!o->as.empty()) as = parse_name(o->as);
                ModelName n = pull_url(s, o->name, o->sha256, as, ro);
                bar.finish();
                std::fprintf(stderr, "success: %s\n", n.display().c_str());
            } else {
                if (!o->sha256.empty() || !o->as.empty())
                    throw store::Error("--sha256 and --name apply to URL pulls only");
                ModelName n = parse_name(o->name);
                pull(s, n, ro);
                bar.finish();
                std::fprintf(stderr, "success: %s\n", n.display().c_str());
            }
        });
    });

    auto p = std::make_shared<Opts>();
    CLI::App* push_cmd = app.add_subcommand("push", "Upload a model to a Docker Registry v2");
    push_cmd->add_option("name", p->name, "host[:port]/namespace/model[:tag]")->required();
    push_cmd->add_option("--store", p->store, "Model store directory");
    add_net_options(push_cmd, p->net);
    push_cmd->callback([p] {
        guarded([&] {
            Store s(store_dir(p->store));
            ProgressBar bar("pushing");
            ModelName n = parse_name(p->name);
            push(s, n, registry_options(p->net, bar));
            bar.finish();
            std::fprintf(stderr, "success: %s\n", n.display().c_str());
        });
    });
}

void register_create_convert(CLI::App& app) {
    struct Opts {
        std::string name, file = "Modelfile", store, type = "f16";
    };
    auto o = std::make_shared<Opts>();
    CLI::App* create = app.add_subcommand("create", "Create a model from a Modelfile");
    create->add_option("name", o->name, "Model name")->required();
    create->add_option("-f,--file", o->file, "Modelfile (default ./Modelfile)");
    create->add_option("--type", o->type,
                       "Type for a FROM Hugging Face folder: f32, f16, bf16, q8_0");
    create->add_option("--store", o->store, "Model store directory");
    create->callback([o] {
        guarded([&] {
            ModelName n = parse_name(o->name);
            std::string text = read_file(o->file, 16u << 20);
            Modelfile mf = parse_modelfile(text);
            Store s(store_dir(o->store));
            CreateOptions co;
            co.base_dir = fs::absolute(o->file).parent_path().string();
            co.convert_type = o->type;
            co.status = status_line;
            create_model(s, n, mf, co);
            std::fprintf(stderr, "success: %s\n", n.display().c_str());
        });
    });

    struct ConvOpts {
        std::string dir, out, type = "f16";
    };
    auto c = std::make_shared<ConvOpts>();
    CLI::App* conv =
        app.add_subcommand("convert", "Convert a Hugging Face checkpoint (llama, qwen2) to GGUF");
    conv->add_option("dir", c->dir, "Folder with config.json, *.safetensors, tokenizer.json")
        ->required();
    conv->add_option("-o,--output", c->out, "Output GGUF file")->required();
    conv->add_option("--type", c->type, "Weight type: f32, f16, bf16, q8_0");
    conv->callback([c] {
        guarded([&] {
            ConvertOptions co;
            co.type = parse_convert_type(c->type);
            co.status = status_line;
            convert_hf_to_gguf(c->dir, c->out, co);
        });
    });
}

void register_list_show(CLI::App& app) {
    struct ListOpts {
        std::string store;
        bool json = false;
    };
    auto l = std::make_shared<ListOpts>();
    CLI::App* list = app.add_subcommand("list", "List stored models")->alias("ls");
    list->add_option("--store", l->store, "Model store directory");
    list->add_flag("--json", l->json, "Print JSON");
    list->callback([l] {
        guarded([&] {
            Store s(store_dir(l->store));
            auto entries = s.list();
            if (l->json) {
                json arr = json::array();
                for (const auto& e : entries)
                    arr.push_back({{"name", e.name.display()}, {"id", e.id}, {"size", e.size}});
                std::printf("%s\n", arr.dump(2).c_str());
                return;
            }
            std::printf("%-40s %-14s %-10s %s\n", "NAME", "ID", "SIZE", "MODIFIED");
            for (const auto& e : entries)
                std::printf("%-40s %-14s %-10s %s\n", e.name.display().c_str(), e.id.c_str(),
                            human_bytes(e.size).c_str(), ago(e.modified).c_str());
        });
    });

    struct ShowOpts {
        std::string name, store;
        bool modelfile = false, parameters = false, tmpl = false, system = false, license = false,
             json = false;
    };
    auto o = std::make_shared<ShowOpts>();
    CLI::App* show = app.add_subcommand("show", "Show a stored model's details");
    show->add_option("name", o->name, "Model name")->required();
    show->add_option("--store", o->store, "Model store directory");
    show->add_flag("--modelfile", o->modelfile, "Print a Modelfile that recreates it");
    show->add_flag("--parameters", o->parameters, "Print its PARAMETER defaults");
    show->add_flag("--template", o->tmpl, "Print its chat template");
    show->add_flag("--system", o->system, "Print its system prompt");
    show->add_flag("--license", o->license, "Print its license");
    show->add_flag("--json", o->json, "Print JSON");
    show->callback([o] {
        guarded([&] {
            auto cfg = load_model_config(o->name, store_dir(o->store));
            if (!cfg) throw store::Error("model " + o->name + " not found");
            std::string gguf_template;
            if (auto f = gguf::File::open(cfg->model_path))
                gguf_template = std::string(f->get_string("tokenizer.chat_template").value_or(""));
            std::string tmpl = cfg->chat_template.value_or(gguf_template);
            std::string params = modelfile_for(*cfg);
            std::string param_lines;
            for (size_t pos = 0; pos < params.size();) {
                size_t e = params.find('\n', pos);
                std::string line = params.substr(pos, e - pos);
                if (line.starts_with("PARAMETER ")) param_lines += line.substr(10) + "\n";
                pos = e == std::string::npos ? params.size() : e + 1;
            }
            if (o->modelfile) return (void)std::printf("%s", params.c_str());
            if (o->parameters) return (void)std::printf("%s", param_lines.c_str());
            if (o->tmpl) return (void)std::printf("%s\n", tmpl.c_str());
            if (o->system) return (void)std::printf("%s\n", cfg->system.value_or("").c_str());
            if (o->license) {
                for (const auto& lic : cfg->licenses) std::printf("%s\n", lic.c_str());
                return;
            }
            ModelInfo info = inspect_gguf(cfg->model_path);
            if (o->json) {
                json j = {{"name", cfg->name},
                          {"path", cfg->model_path},
                          {"architecture", info.architecture},
                          {"parameters", info.parameters},
                          {"parameter_size", info.parameter_size},
                          {"quantization", info.quantization},
                          {"context_length", info.context_length},
                          {"embedding_length", info.embedding_length},
                          {"block_count", info.block_count},
                          {"vocab_size", info.vocab_size},
                          {"template", tmpl},
                          {"system", cfg->system.value_or("")},
                          {"parameters_text", param_lines},
                          {"license", cfg->licenses}};
                std::printf("%s\n", j.dump(2).c_str());
                return;
            }
            std::printf("  Model\n");
            std::printf("    %-20s %s\n", "architecture", info.architecture.c_str());
            std::printf("    %-20s %s\n", "parameters", info.parameter_size.c_str());
            std::printf("    %-20s %llu\n", "context length",
                        (unsigned long long)info.context_length);
            std::printf("    %-20s %llu\n", "embedding length",
                        (unsigned long long)info.embedding_length);
            std::printf("    %-20s %s\n", "quantization", info.quantization.c_str());
            if (!param_lines.empty()) std::printf("\n  Parameters\n    %s", param_lines.c_str());
            if (cfg->system) std::printf("\n  System\n    %s\n", cfg->system->c_str());
            for (const auto& lic : cfg->licenses)
                std::printf("\n  License\n    %s\n", lic.substr(0, lic.find('\n')).c_str());
        });
    });
}

void register_rm_cp_prune(CLI::App& app) {
    struct Opts {
        std::vector<std::string> names;
        std::string store;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* rm = app.add_subcommand("rm", "Remove stored models (and blobs no other model uses)");
    rm->add_option("names", o->names, "Model names")->required();
    rm->add_option("--store", o->store, "Model store directory");
    rm->callback([o] {
        guarded([&] {
            Store s(store_dir(o->store));
            std::vector<ModelName> names;
            for (const auto& n : o->names) names.push_back(parse_name(n));  // validate all first
            for (const auto& n : names) {
                s.remove(n);
                std::fprintf(stderr, "deleted '%s'\n", n.display().c_str());
            }
        });
    });

    struct CpOpts {
        std::string src, dst, store;
    };
    auto c = std::make_shared<CpOpts>();
    CLI::App* cp = app.add_subcommand("cp", "Copy a stored model to a new name");
    cp->add_option("source", c->src, "Existing model")->required();
    cp->add_option("destination", c->dst, "New name")->required();
    cp->add_option("--store", c->store, "Model store directory");
    cp->callback([c] {
        guarded([&] {
            Store s(store_dir(c->store));
            ModelName a = parse_name(c->src), b = parse_name(c->dst);
            s.copy(a, b);
            std::fprintf(stderr, "copied '%s' to '%s'\n", a.display().c_str(), b.display().c_str());
        });
    });

    auto p = std::make_shared<std::string>();
    CLI::App* prune =
        app.add_subcommand("prune", "Delete unreferenced blobs and partial downloads");
    prune->add_option("--store", *p, "Model store directory");
    prune->callback([p] {
        guarded([&] {
            Store s(store_dir(*p));
            auto r = s.prune();
            std::fprintf(stderr, "removed %zu blobs and %zu partial files, %s freed\n", r.blobs,
                         r.partials, human_bytes(r.bytes).c_str());
        });
    });
}

}  // namespace

void register_store_commands(CLI::App& app) {
    register_pull_push(app);
    register_create_convert(app);
    register_list_show(app);
    register_rm_cp_prune(app);
}

}  // namespace lokal::cli
