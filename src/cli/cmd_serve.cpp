// lokal serve: the Ollama- and OpenAI-compatible HTTP server (src/server).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "server/server.h"

namespace lokal::cli {

void register_serve(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("serve", "Serve the Ollama- and OpenAI-compatible HTTP API");
    auto o = std::make_shared<server::ServerOptions>();
    auto keep_alive = std::make_shared<std::string>("5m");
    auto store = std::make_shared<std::string>();
    cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
    cmd->add_option("--port", o->port, "Port to listen on (0: any free port)")
        ->capture_default_str();
    cmd->add_option("-m,--model", o->default_model,
                    "Model loaded at start and used when a request names none");
    cmd->add_option("--models-dir", o->models.models_dir,
                    "Directory of GGUF files served by file name (without .gguf)");
    cmd->add_option("--store", *store, "Model store directory (default: $LOKAL_HOME or ~/.lokal)");
    cmd->add_option("--parallel", o->models.parallel, "Sequences stepped together per model")
        ->capture_default_str();
    cmd->add_option("-c,--ctx-size", o->models.n_ctx,
                    "Context size per sequence (0: the model's, at most 4096)");
    cmd->add_option("-t,--threads", o->models.n_threads, "Threads (0: physical cores)");
    cmd->add_option("-b,--batch-size", o->models.n_batch, "Tokens per scheduler step")
        ->capture_default_str();
    add_cache_type_option(cmd, &o->models.kv_type);
    cmd->add_option("--max-queue", o->models.max_queue, "Waiting requests per model before 503")
        ->capture_default_str();
    cmd->add_option("--max-models", o->models.max_loaded, "Models kept loaded at once")
        ->capture_default_str();
    cmd->add_option_function<std::string>(
           "--max-memory",
           [o](const std::string& s) { o->models.max_memory = *server::parse_byte_size(s); },
           "Memory for loaded models' weights and KV caches, e.g. 8G; idle models are unloaded "
           "(least recently used first) to make room (default: 90% of physical memory)")
        ->check(
            [](const std::string& s) {
                const auto b = server::parse_byte_size(s);
                return b && *b > 0 ? std::string()
                                   : "'" + s + "' is not a size (examples: 8G, 512M, 1.5GiB)";
            },
            "SIZE");
    cmd->add_flag("!--no-prefix-cache", o->models.prefix_cache, "Disable KV prefix caching");
    cmd->add_flag("!--no-prefill-first", o->models.prefill_first,
                  "Always step decoding sequences with prompts (default: a step that can finish "
                  "a new prompt runs it alone, for a faster first token)");
    cmd->add_flag("!--no-step-abort", o->models.abort_for_arrivals,
                  "Never stop a decode step for an arriving request (default: a step of decoding "
                  "sequences stops between layers and reruns after the newcomer's prompt)");
    cmd->add_option("--lookup", o->models.lookup_draft,
                    "Speculative decoding: check up to N tokens copied from earlier in each "
                    "request's prompt and output per step (prompt lookup; the output is the same, "
                    "faster when answers repeat their input; 0: off)")
        ->capture_default_str()
        ->check(CLI::Range(0, 64));
    cmd->add_option("--model-draft", o->models.draft_model,
                    "Speculative decoding with a small model of the same vocabulary drafting for "
                    "the -m model (a GGUF file or a store name; the output is the same, faster "
                    "when its drafts are right)");
    cmd->add_option("--draft-max,--draft", o->models.draft.n_max,
                    "Draft model: tokens drafted per step at most")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    cmd->add_option("--draft-p-min", o->models.draft.p_min,
                    "Draft model: stop a draft where its top probability falls below this (0: "
                    "never)")
        ->capture_default_str()
        ->check(CLI::Range(0.0, 1.0));
    cmd->add_option("--draft-max-running", o->models.draft_max_running,
                    "Speculate only while at most this many sequences decode (a full batch has "
                    "no compute to spare)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1024));
    cmd->add_option("--keep-alive", *keep_alive,
                    "How long an idle model stays loaded (e.g. 5m, 0, -1 = forever)")
        ->capture_default_str();
    cmd->add_option("--api-key", o->api_key,
                    "Require 'Authorization: Bearer KEY' on every route but /health");
    cmd->add_option("--cors-origin", o->cors_origins,
                    "Allowed browser Origin (repeatable, * for any)");
    cmd->add_option("--allowed-host", o->allowed_hosts,
                    "Extra Host header names accepted on loopback (repeatable)");
    cmd->add_option("--max-body", o->max_body_bytes, "Request body size limit in bytes")
        ->capture_default_str();
    cmd->add_option("--request-timeout", o->request_timeout_s,
                    "Seconds before a request is cancelled")
        ->capture_default_str();
    cmd->callback([o, keep_alive, store] {
        auto ka = server::parse_duration(*keep_alive);
        if (!ka) throw UsageError("--keep-alive: '" + *keep_alive + "' is not a duration");
        o->models.keep_alive = *ka;
        o->models.store_dir = *store;
        if (!o->models.draft_model.empty()) {
            if (o->models.lookup_draft > 0)
                throw UsageError("--lookup and --model-draft are two kinds of drafts: choose one");
            if (o->default_model.empty())
                throw UsageError("--model-draft drafts for the model loaded at start: give it -m");
            o->models.draft_for = o->default_model;
        }
        if (o->api_key.empty())
            if (const char* k = std::getenv("LOKAL_API_KEY")) o->api_key = k;
        // Block SIGTERM/SIGINT before any thread starts so only the waiter below sees them:
        // it stops the server, which lets in-flight requests finish, then we exit 0.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, nullptr);
        server::Server srv(*o);
        int port = 0;
        try {
            port = srv.bind();
        } catch (const std::exception& e) {
            throw UsageError(e.what());
        }
        std::fprintf(stderr, "lokal serve: listening on http://%s:%d (memory budget %.2f GiB)\n",
                     o->host.c_str(), port, srv.models().memory_budget() / 1073741824.0);
        std::thread waiter([&srv, set] {
            int sig = 0;
            sigwait(&set, &sig);
            if (sig == 0) return;
            std::fprintf(stderr, "lokal serve: signal %d, draining in-flight requests\n", sig);
            srv.stop();
        });
        srv.run();
        // Wake the waiter if run() ended for another reason.
        pthread_kill(waiter.native_handle(), SIGTERM);
        waiter.join();
        std::fprintf(stderr, "lokal serve: stopped\n");
        exit_code() = 0;
    });
}

}  // namespace lokal::cli
