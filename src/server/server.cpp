#include "server/server.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>

#include "server/server_impl.h"

namespace lokal::server {

namespace {

bool is_loopback(const std::string& host) {
    return host == "127.0.0.1" || host == "localhost" || host == "::1" ||
           host.rfind("127.", 0) == 0;
}

// Host header without the port ("[::1]:8080" -> "::1").
std::string host_name(const std::string& h) {
    if (!h.empty() && h[0] == '[') {
        const size_t e = h.find(']');
        return e == std::string::npos ? h : h.substr(1, e - 1);
    }
    const size_t c = h.rfind(':');
    return c == std::string::npos ? h : h.substr(0, c);
}

bool is_ip_literal(const std::string& h) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

// Without configured origins, browsers pages served from this machine may call the API
// (as Ollama does); other sites may not. The chat page's own origin is allowed when its
// host is an IP address or an --allowed-host: a DNS-rebinding page always comes with a
// host name of the attacker's, so it cannot pass for same-origin.
bool origin_allowed(const ServerOptions& o, const std::string& origin, const std::string& host) {
    const std::string h = host_name(host);
    if (!host.empty() && (origin == "http://" + host || origin == "https://" + host) &&
        (is_ip_literal(h) ||
         std::find(o.allowed_hosts.begin(), o.allowed_hosts.end(), h) != o.allowed_hosts.end()))
        return true;
    if (o.cors_origins.empty()) {
        for (const char* p : {"http://localhost", "https://localhost", "http://127.0.0.1",
                              "https://127.0.0.1", "http://[::1]", "https://[::1]"}) {
            const std::string pre = p;
            if (origin == pre || (origin.rfind(pre, 0) == 0 && origin.size() > pre.size() &&
                                  origin[pre.size()] == ':'))
                return true;
        }
        return false;
    }
    for (auto& a : o.cors_origins)
        if (a == "*" || a == origin) return true;
    return false;
}

json model_details(const ServedModel* m, const std::string& path) {
    json d = {{"format", "gguf"},     {"family", "llama"},        {"families", {"llama"}},
              {"parameter_size", ""}, {"quantization_level", ""}, {"parent_model", ""}};
    if (m) {
        d["family"] = m->model->hp.arch;
        d["families"] = {m->model->hp.arch};
        const double p = (double)m->model->n_params();
        char buf[32];
        if (p >= 1e9)
            std::snprintf(buf, sizeof buf, "%.1fB", p / 1e9);
        else if (p >= 1e6)
            std::snprintf(buf, sizeof buf, "%.1fM", p / 1e6);
        else
            std::snprintf(buf, sizeof buf, "%.0fK", p / 1e3);
        d["parameter_size"] = buf;
    }
    (void)path;
    return d;
}

std::string iso_time(std::filesystem::file_time_type t) {
    const auto sys = std::chrono::file_clock::to_sys(t);
    const std::time_t tt = std::chrono::system_clock::to_time_t(sys);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace

Server::Impl::Impl(ServerOptions o) : opts(std::move(o)), registry(opts.models) {}

void Server::Impl::setup() {
    // Enough for every request the scheduler may hold (running and queued) plus as many
    // again of idle keep-alive clients, streams being written and quick GETs. Idle threads
    // cost little (stacks are touched only as deep as they go).
    const size_t threads =
        opts.http_threads > 0
            ? (size_t)opts.http_threads
            : (size_t)std::max(128, 2 * (opts.models.max_queue + opts.models.parallel) + 16);
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(opts.max_body_bytes);
    http.set_read_timeout(30, 0);
    http.set_write_timeout(30, 0);
    http.set_keep_alive_max_count(1000);
    // Answers go out in several small writes (headers, then body or stream chunks); with
    // Nagle's algorithm each one after the first waits for the client's delayed ACK, 40 ms
    // on Linux. Accepted sockets inherit this from the listening one.
    http.set_tcp_nodelay(true);

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        auto deny = [&](int status, const std::string& msg) {
            res.status = status;
            res.set_content(to_text(json{{"error", msg}}), "application/json");
            std::lock_guard lk(metrics.mu);
            ++metrics.requests[{this->route_label(req.path), status}];
            return httplib::Server::HandlerResponse::Handled;
        };
        // DNS rebinding: a page on evil.com resolving to 127.0.0.1 sends Host: evil.com.
        if (is_loopback(opts.host)) {
            const std::string h = host_name(req.get_header_value("Host"));
            const bool ok = h.empty() || is_loopback(h) ||
                            std::find(opts.allowed_hosts.begin(), opts.allowed_hosts.end(), h) !=
                                opts.allowed_hosts.end();
            if (!ok)
                return deny(403,
                            "host '" + h +
                                "' is not allowed (DNS rebinding protection; see --allowed-host)");
        }
        const std::string origin = req.get_header_value("Origin");
        if (!origin.empty()) {
            if (!origin_allowed(opts, origin, req.get_header_value("Host")))
                return deny(403, "origin '" + origin + "' is not allowed (see --cors-origin)");
            res.set_header("Access-Control-Allow-Origin", origin);
            res.set_header("Vary", "Origin");
            if (req.method == "OPTIONS") {
                res.status = 204;
                res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE, HEAD, OPTIONS");
                res.set_header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, User-Agent, Accept, X-Stainless-Lang, "
                    "X-Stainless-Package-Version, X-Stainless-OS, X-Stainless-Arch, "
                    "X-Stainless-Runtime, "
                    "X-Stainless-Runtime-Version, X-Stainless-Retry-Count, X-Stainless-Timeout");
                res.set_header("Access-Control-Max-Age", "600");
                return httplib::Server::HandlerResponse::Handled;
            }
        }
        // The chat page's static files carry no data; the page sends the key on its calls.
        const bool page = req.method == "GET" &&
                          ((req.path == "/" && req.get_header_value("Accept").find("text/html") !=
                                                   std::string::npos) ||
                           req.path == "/chat.js");
        if (!opts.api_key.empty() && req.path != "/health" && !page) {
            const std::string auth = req.get_header_value("Authorization");
            if (auth != "Bearer " + opts.api_key) {
                res.set_header("WWW-Authenticate", "Bearer");
                return deny(401, "missing or wrong API key (send 'Authorization: Bearer KEY')");
            }
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        std::string msg = res.status == 404   ? "no route " + req.method + " " + req.path
                          : res.status == 413 ? "the request body is too large"
                                              : "request failed";
        res.set_content(to_text(json{{"error", msg}}), "application/json");
    });

    get("/health", [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(
            to_text(json{{"status", "ok"}, {"models_loaded", registry.loaded().size()}}),
            "application/json");
    });
    // Browsers (Accept: text/html) get the chat page; API clients and health checks that
    // probe "/" keep Ollama's plain answer.
    auto page_headers = [](httplib::Response& res) {
        res.set_header("Content-Security-Policy",
                       "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
                       "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                       "frame-ancestors 'none'");
        res.set_header("X-Content-Type-Options", "nosniff");
        res.set_header("Cache-Control", "no-cache");
    };
    get("/", [page_headers](const httplib::Request& req, httplib::Response& res) {
        if (req.get_header_value("Accept").find("text/html") != std::string::npos) {
            page_headers(res);
            res.set_content(kChatPageHtml, "text/html; charset=utf-8");
        } else {
            res.set_content("Ollama is running", "text/plain");
        }
    });
    get("/chat.js", [page_headers](const httplib::Request&, httplib::Response& res) {
        page_headers(res);
        res.set_content(kChatPageJs, "text/javascript; charset=utf-8");
    });
    get("/api/version", [](const httplib::Request&, httplib::Response& res) {
        res.set_content(to_text(json{{"version", "0.5.0"}, {"lokal", "0.1.0"}}),
                        "application/json");
    });

    get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        std::string out;
        out +=
            "# HELP lokal_requests_total HTTP requests by path and status.\n# TYPE "
            "lokal_requests_total counter\n";
        {
            std::lock_guard lk(metrics.mu);
            for (auto& [k, v] : metrics.requests)
                out += "lokal_requests_total{path=\"" + k.first + "\",status=\"" +
                       std::to_string(k.second) + "\"} " + std::to_string(v) + "\n";
        }
        auto counter = [&](const char* name, const char* help, uint64_t v) {
            out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" +
                   name + " " + std::to_string(v) + "\n";
        };
        counter("lokal_prompt_tokens_total", "Prompt tokens submitted.", metrics.tokens_in);
        counter("lokal_generated_tokens_total", "Tokens generated.", metrics.tokens_out);
        counter("lokal_requests_cancelled_total", "Sequences cancelled (client gone or timed out).",
                metrics.cancelled);
        counter("lokal_requests_rejected_total", "Requests refused with 503 (queue full).",
                metrics.rejected);
        const char* gauges[][2] = {
            {"lokal_queue_length", "Requests waiting."},
            {"lokal_running_sequences", "Sequences being stepped."},
            {"lokal_kv_blocks_total", "KV blocks in the pool."},
            {"lokal_kv_blocks_used", "KV blocks in use (sequences and prefix cache)."},
            {"lokal_kv_blocks_cached", "KV blocks held by the prefix cache."},
            {"lokal_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache."},
            {"lokal_preemptions_total", "Sequences preempted for lack of KV blocks."},
            {"lokal_draft_tokens_total",
             "Speculative tokens checked (prompt lookup or draft model)."},
            {"lokal_draft_tokens_accepted_total", "Speculative tokens the model kept."},
            {"lokal_steps_aborted_total",
             "Decode steps stopped between layers for an arriving request (rerun after it)."}};
        auto models = registry.loaded();
        for (size_t g = 0; g < std::size(gauges); ++g) {
            out += std::string("# HELP ") + gauges[g][0] + " " + gauges[g][1] + "\n# TYPE " +
                   gauges[g][0] + (g >= 5 ? " counter\n" : " gauge\n");
            for (auto& m : models) {
                const auto st = m->sched->stats();
                const int64_t vals[] = {st.waiting,      st.running,        st.kv_blocks,
                                        st.kv_used,      st.kv_cached,      st.prefix_hit_tokens,
                                        st.preemptions,  st.draft_proposed, st.draft_accepted,
                                        st.aborted_steps};
                out += std::string(gauges[g][0]) + "{model=\"" + m->name + "\"} " +
                       std::to_string(vals[g]) + "\n";
            }
        }
        // Memory: the budget and what each loaded model counts against it (weights + KV
        // pool), labelled with its KV cache type.
        out +=
            "# HELP lokal_memory_budget_bytes Memory for loaded models (--max-memory).\n"
            "# TYPE lokal_memory_budget_bytes gauge\nlokal_memory_budget_bytes " +
            std::to_string(registry.memory_budget()) + "\n";
        out +=
            "# HELP lokal_model_memory_bytes Weights and KV pool of a loaded model.\n"
            "# TYPE lokal_model_memory_bytes gauge\n";
        for (auto& m : models)
            out += "lokal_model_memory_bytes{model=\"" + m->name + "\",kv_type=\"" +
                   kv_type_name(m->ctx->cache().storage.type) + "\"} " + std::to_string(m->bytes) +
                   "\n";
        metrics.ttft.render(out, "lokal_time_to_first_token_seconds",
                            "Time from request to its first token.");
        metrics.itl.render(out, "lokal_inter_token_latency_seconds",
                           "Time between consecutive tokens of a request.");
        res.set_content(out, "text/plain; version=0.0.4");
    });

    get("/api/tags",
        guarded(*this, Api::Ollama, [this](const httplib::Request&, httplib::Response& res) {
            json models = json::array();
            for (auto& e : registry.available())
                models.push_back({{"name", e.name},
                                  {"model", e.name},
                                  {"modified_at", iso_time(e.modified)},
                                  {"size", e.size},
                                  {"digest", ""},
                                  {"details", model_details(nullptr, e.path)}});
            res.set_content(to_text(json{{"models", models}}), "application/json");
        }));
    get("/api/ps",
        guarded(*this, Api::Ollama, [this](const httplib::Request&, httplib::Response& res) {
            json models = json::array();
            for (auto& m : registry.loaded()) {
                std::string expires = "0001-01-01T00:00:00Z";
                if (m->expires) {
                    const auto sys =
                        std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            *m->expires - Clock::now());
                    const std::time_t tt = std::chrono::system_clock::to_time_t(sys);
                    std::tm tm{};
                    gmtime_r(&tt, &tm);
                    char buf[40];
                    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
                    expires = buf;
                }
                models.push_back({{"name", m->name},
                                  {"model", m->name},
                                  {"size", m->bytes},  // what counts against --max-memory
                                  {"size_vram", 0},
                                  {"digest", ""},
                                  {"expires_at", expires},
                                  {"context_length", m->ctx->n_ctx()},
                                  {"details", model_details(m.get(), m->path)}});
            }
            res.set_content(to_text(json{{"models", models}}), "application/json");
        }));
    post("/api/show",
         guarded(*this, Api::Ollama, [this](const httplib::Request& req, httplib::Response& res) {
             json body = parse_body(req, opts.max_json_depth);
             if (!body.contains("model") && body.contains("name")) body["model"] = body["name"];
             auto m = acquire_model(*this, body);
             json info = {{"general.architecture", m->model->hp.arch},
                          {"general.parameter_count", m->model->n_params()},
                          {m->model->hp.arch + ".context_length", m->model->hp.n_ctx_train},
                          {m->model->hp.arch + ".embedding_length", m->model->hp.dim},
                          {m->model->hp.arch + ".block_count", m->model->hp.n_layer},
                          {m->model->hp.arch + ".attention.head_count", m->model->hp.n_head},
                          {m->model->hp.arch + ".attention.head_count_kv", m->model->hp.n_kv_head},
                          {"tokenizer.ggml.model", m->vocab->model_type()}};
             std::string params;
             if (m->config)
                 for (auto& s : m->config->parameters.stop) params += "stop \"" + s + "\"\n";
             json out = {{"modelfile", "FROM " + m->path + "\n"},
                         {"parameters", params},
                         {"template", m->chat_template},
                         {"details", model_details(m.get(), m->path)},
                         {"model_info", info},
                         {"capabilities", {"completion", "embedding"}},
                         {"modified_at", rfc3339_now()}};
             if (m->config && m->config->system) out["system"] = *m->config->system;
             registry.release(m, std::nullopt);
             res.set_content(to_text(out), "application/json");
         }));
    auto list_openai = [this](const httplib::Request&, httplib::Response& res) {
        json data = json::array();
        for (auto& e : registry.available())
            data.push_back({{"id", e.name},
                            {"object", "model"},
                            {"created", unix_now()},
                            {"owned_by", "lokal"}});
        res.set_content(to_text(json{{"object", "list"}, {"data", data}}), "application/json");
    };
    get("/v1/models", guarded(*this, Api::OpenAI, list_openai));
    get(R"(/v1/models/(.+))",
        guarded(*this, Api::OpenAI,
                [this](const httplib::Request& req, httplib::Response& res) {
                    const std::string id = req.matches[1];
                    for (auto& e : registry.available())
                        if (e.name == id) {
                            res.set_content(to_text(json{{"id", e.name},
                                                         {"object", "model"},
                                                         {"created", unix_now()},
                                                         {"owned_by", "lokal"}}),
                                            "application/json");
                            return;
                        }
                    throw HttpError(404, "model '" + id + "' not found", "not_found_error",
                                    "model");
                }),
        "/v1/models/{id}");
    register_store(*this);
    register_ollama(*this);
    register_openai(*this);
}

Server::Server(ServerOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {
    impl_->setup();
}

Server::~Server() {
    stop();
}

int Server::bind() {
    auto& o = impl_->opts;
    int port;
    if (o.port == 0) {
        port = impl_->http.bind_to_any_port(o.host);
    } else {
        port = impl_->http.bind_to_port(o.host, o.port) ? o.port : -1;
    }
    if (port < 0)
        throw std::runtime_error("cannot listen on " + o.host + ":" + std::to_string(o.port));
    // cpp-httplib 0.11 listens with a backlog of 5: a burst of new clients (64 connecting
    // at once) overflows it, and the kernel drops their handshakes until they time out.
    // listen() again on the bound socket only resizes the queue.
    ::listen(impl_->http.listener(), SOMAXCONN);
    if (!o.default_model.empty()) {
        impl_->registry.allow_path(o.default_model);
        auto m = impl_->registry.acquire(o.default_model);
        impl_->registry.release(m,
                                std::chrono::milliseconds(-1));  // the default model stays loaded
    }
    return port;
}

void Server::run() {
    impl_->running = true;
    impl_->http.listen_after_bind();
    impl_->running = false;
}

void Server::stop() {
    if (impl_) impl_->http.stop();
}

bool Server::running() const {
    return impl_->http.is_running();
}

ModelRegistry& Server::models() {
    return impl_->registry;
}

}  // namespace lokal::server
