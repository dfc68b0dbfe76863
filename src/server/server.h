// `lokal serve`: the Ollama- and OpenAI-compatible HTTP server (cpp-httplib).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server/models.h"

namespace lokal::server {

struct ServerOptions {
    std::string host = "127.0.0.1";
    int port = 11434;                        // 0: any free port (see Server::bind)
    std::string api_key;                     // non-empty: Bearer auth on every route but /health
    std::vector<std::string> cors_origins;   // allowed Origin values ("*": any)
    std::vector<std::string> allowed_hosts;  // extra Host names accepted when bound to loopback
    size_t max_body_bytes = 8u << 20;
    int max_json_depth = 64;
    int request_timeout_s = 600;  // a request is cancelled after this long
    // HTTP worker threads (0: auto). cpp-httplib gives each open connection a thread, and an
    // idle keep-alive connection keeps it for its keep-alive time: fewer threads than
    // concurrent keep-alive clients leaves the extra clients waiting.
    int http_threads = 0;
    std::string default_model;  // loaded at start and used when a request names none
    ModelOptions models;
};

class Server {
  public:
    explicit Server(ServerOptions opts);
    ~Server();
    // Binds the listening socket and returns the port (useful with port 0). Throws on failure.
    int bind();
    // Serves until stop(); returns after in-flight requests finished.
    void run();
    void stop();
    bool running() const;
    ModelRegistry& models();

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace lokal::server
