// libFuzzer target for the HTTP API: each input is one request, sent over loopback to an
// in-process `lokal serve` (stories260K from ../shared/models, a 128-token context, a scratch
// model store), so the JSON decoding, field validation, prompt building, templates, options,
// store routes and response writers all see hostile input.
//
// Input format (also the format of the corpus in tests/server/malformed):
//     METHOD /path?query          the request line
//     Name: value                 header lines, until an empty line
//                                 (empty line)
//     body bytes                  everything after it
// Inputs without the empty line are all request line and headers, with an empty body.
//
// What counts as a bug (abort, so libFuzzer keeps the input):
//   - the server stops answering (/health fails after a request);
//   - a 5xx other than 503 (bad input must be a 4xx; 503 is the documented full-queue answer);
//   - an error status whose body is not a JSON object with "error";
//   - a 200 stream (NDJSON or SSE) with a line that is not JSON;
//   - a sanitizer report or a crash in the server (same process).
// /api/pull and /api/push are skipped: they reach out to registries.
//
//   clang build:   fuzz/build_libfuzzer.sh && build-fuzz/bin/http_fuzz -max_len=4096
//                  -timeout=30 /tmp/http-corpus tests/server/malformed
//   other builds:  http_fuzz_smoke FILE_OR_DIR... [--mutate SECONDS]  (fuzz/standalone_main.h;
//                  the server_fuzz_smoke test)
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "server/server.h"
#include "shared_path.h"  // tests/: $LOKAL_SHARED, else ../shared beside the checkout

namespace {

using json = nlohmann::json;

struct LiveServer {
    LiveServer() {
        char tmpl[] = "/tmp/lokal-http-fuzz-XXXXXX";
        if (!mkdtemp(tmpl)) std::abort();
        store = tmpl;
        lokal::server::ServerOptions o;
        o.host = "127.0.0.1";
        o.port = 0;
        o.models.models_dir = lokal::test::shared_path("models");
        o.models.store_dir = store;
        o.models.n_ctx = 128;
        o.models.parallel = 2;
        o.models.n_threads = 1;
        o.models.max_queue = 8;
        o.models.max_loaded = 2;
        o.request_timeout_s = 20;
        o.default_model = "stories260K";
        srv = std::make_unique<lokal::server::Server>(o);
        port = srv->bind();
        thread = std::thread([this] { srv->run(); });
        for (int i = 0; i < 400 && !srv->running(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ~LiveServer() {
        srv->stop();
        thread.join();
        std::error_code ec;
        std::filesystem::remove_all(store, ec);
    }
    std::unique_ptr<lokal::server::Server> srv;
    std::string store;
    int port = 0;
    std::thread thread;
};

LiveServer& live() {
    static LiveServer s;
    return s;
}

[[noreturn]] void fail(const std::string& what, const httplib::Request& req,
                       const std::string& body) {
    std::fprintf(stderr, "http_fuzz: %s\n  request: %s %s\n  response body: %.400s\n", what.c_str(),
                 req.method.c_str(), req.path.c_str(), body.c_str());
    std::abort();
}

bool is_error_object(const std::string& body) {
    try {
        const json j = json::parse(body);
        return j.is_object() && j.contains("error");
    } catch (const json::exception&) {
        return false;
    }
}

bool parses(const std::string& s) {
    return json::accept(s);
}

// Splits the input into a request; false if it is not one the harness sends.
bool make_request(const std::string& in, httplib::Request& req) {
    const size_t head_end = in.find("\n\n");
    const std::string head = in.substr(0, head_end);
    if (head_end != std::string::npos) req.body = in.substr(head_end + 2);
    std::istringstream lines(head);
    std::string line;
    if (!std::getline(lines, line)) return false;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || sp == 0) return false;
    req.method = line.substr(0, sp);
    req.path = line.substr(sp + 1);
    if (req.path.empty() || req.path[0] != '/') return false;
    // The client writes these verbatim into the request line: keep it one line.
    for (char c : req.method + req.path)
        if (c == '\r' || c == '\n' || c == '\0') return false;
    // Methods the API routes. Others (the fuzzer likes HTTP/2's "PRI") only hold the
    // connection until the server's 30 s read timeout: slow, and bounded by design.
    static const char* const kMethods[] = {"GET",   "HEAD",   "POST",   "PUT",
                                           "PATCH", "DELETE", "OPTIONS"};
    if (std::none_of(std::begin(kMethods), std::end(kMethods),
                     [&](const char* m) { return req.method == m; }))
        return false;
    const std::string decoded = httplib::detail::decode_url(req.path, false);
    if (decoded.find("pull") != std::string::npos || decoded.find("push") != std::string::npos)
        return false;
    while (std::getline(lines, line)) {
        const size_t colon = line.find(':');
        if (colon == std::string::npos || colon == 0) continue;
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value[0] == ' ') value.erase(0, 1);
        const std::string name = line.substr(0, colon);
        bool ok = true;
        for (char c : name + value)
            if (c == '\r' || c == '\0') ok = false;
        // The client frames the body itself: a forged length only makes the server wait for
        // bytes that never come (until its read timeout), which is slow, not a finding.
        std::string lower = name;
        for (char& c : lower) c = (char)std::tolower((unsigned char)c);
        if (lower == "content-length" || lower == "transfer-encoding") ok = false;
        if (ok) req.headers.emplace(name, value);
    }
    return true;
}

void check_stream(const httplib::Request& req, const httplib::Response& res) {
    const std::string type = res.get_header_value("Content-Type");
    const bool ndjson = type.find("ndjson") != std::string::npos;
    const bool sse = type.find("event-stream") != std::string::npos;
    if (!ndjson && !sse) return;
    std::istringstream in(res.body);
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        if (sse) {
            if (line.rfind("data: ", 0) != 0) continue;
            line = line.substr(6);
            if (line == "[DONE]") continue;
        }
        if (!parses(line)) fail("a stream line is not JSON: " + line, req, res.body);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;
    httplib::Request req;
    if (!make_request(std::string(reinterpret_cast<const char*>(data), size), req)) return 0;
    LiveServer& s = live();
    httplib::Client c("127.0.0.1", s.port);
    c.set_read_timeout(60, 0);
    c.set_connection_timeout(5, 0);
    auto r = c.send(req);
    if (!r) {
        // The client may refuse or garble what it was given; the server must still be there.
        httplib::Client h("127.0.0.1", s.port);
        h.set_read_timeout(60, 0);
        auto health = h.Get("/health");
        if (!health || health->status != 200) fail("the server stopped answering", req, "");
        return 0;
    }
    const int st = r->status;
    if (st >= 500 && st != 503) fail("status " + std::to_string(st), req, r->body);
    if (st >= 400 && req.method != "HEAD" && !is_error_object(r->body))
        fail("error status " + std::to_string(st) + " without a JSON error body", req, r->body);
    if (st == 200) check_stream(req, *r);
    return 0;
}

#ifdef LOKAL_FUZZ_STANDALONE
#include "standalone_main.h"
#endif
