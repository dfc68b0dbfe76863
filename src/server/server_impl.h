// Internals shared by the server's route files: errors, JSON helpers, metrics, prompt
// building and the loop that drives scheduler handles into a response.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "server/models.h"
#include "server/server.h"

namespace lokal::server {

using json = nlohmann::json;

// A request the server refuses; the route's API decides the body shape.
struct HttpError : std::runtime_error {
    HttpError(int s, const std::string& msg, std::string t = "invalid_request_error",
              std::string p = {})
        : std::runtime_error(msg), status(s), type(std::move(t)), param(std::move(p)) {}
    int status;
    std::string type, param;
    int retry_after = 0;  // seconds, for 503
};

enum class Api { Ollama, OpenAI };

// Fixed-bucket latency histogram in seconds (Prometheus text format).
class Histogram {
  public:
    explicit Histogram(std::vector<double> bounds)
        : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}
    void observe(double v);
    void render(std::string& out, const std::string& name, const std::string& help) const;

  private:
    std::vector<double> bounds_;
    mutable std::mutex mu_;
    std::vector<uint64_t> counts_;
    double sum_ = 0;
    uint64_t n_ = 0;
};

struct Metrics {
    std::mutex mu;
    std::map<std::pair<std::string, int>, uint64_t> requests;  // (route, status) -> count
    std::atomic<uint64_t> tokens_in{0}, tokens_out{0}, cancelled{0}, rejected{0};
    Histogram ttft{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};
    Histogram itl{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
};

// httplib's server with its listening socket reachable (to deepen the accept backlog).
struct HttpServer : httplib::Server {
    socket_t listener() const { return svr_sock_; }
};

struct Server::Impl {
    ServerOptions opts;
    ModelRegistry registry;
    HttpServer http;
    Metrics metrics;
    std::atomic<bool> running{false};

    explicit Impl(ServerOptions o);
    void setup();
    // Routes with a request body: the body is read here, chunked or not, up to --max-body
    // (httplib 0.11 caps only Content-Length bodies and would buffer a chunked one whole).
    void post(const std::string& pattern, httplib::Server::Handler h);
    void del(const std::string& pattern, httplib::Server::Handler h);
};

// Body as JSON: 400 for malformed JSON, a non-object, or nesting deeper than max_depth.
json parse_body(const httplib::Request& req, int max_depth);

// Typed field access: absent or null gives nullopt; a wrong type is a 400 naming the field.
std::optional<std::string> get_string(const json& j, const char* key);
std::optional<double> get_number(const json& j, const char* key);
std::optional<int64_t> get_int(const json& j, const char* key);
std::optional<bool> get_bool(const json& j, const char* key);
// A string or a list of strings.
std::vector<std::string> get_string_list(const json& j, const char* key);

// Reject fields lokal does not implement rather than ignoring them.
void reject_fields(const json& j, std::initializer_list<const char*> keys);

// The model for a request, loaded on demand (404 when unknown).
std::shared_ptr<ServedModel> acquire_model(Server::Impl& s, const json& body);

// Chat messages -> prompt tokens through the model's template.
std::vector<int32_t> chat_prompt(const ServedModel& m, const json& messages);
// Plain text -> tokens (BOS as the vocabulary asks, special tokens parsed).
std::vector<int32_t> text_prompt(const ServedModel& m, const std::string& text);
// 400 when the prompt cannot fit the context, with the numbers.
void check_prompt_fits(const ServedModel& m, size_t n_tokens, bool embed = false);

// Submit one request; 503 (with Retry-After) when the queue is full.
std::shared_ptr<SeqHandle> submit(Server::Impl& s, ServedModel& m, SeqRequest req);
// Submit choices of one prompt (OpenAI n > 1): prefilled once, KV blocks shared.
std::vector<std::shared_ptr<SeqHandle>> submit_group(Server::Impl& s, ServedModel& m,
                                                     std::vector<SeqRequest> reqs);

// Is the client of a request still there? (See peer.cpp for why this looks at sockets.)
class PeerWatch {
  public:
    explicit PeerWatch(const httplib::Request& req);
    // True once the client closed or reset its connection. Cheap after the first call.
    bool gone();

  private:
    int find() const;
    std::string remote_addr_, local_addr_;
    int remote_port_, local_port_;
    int fd_ = -2;  // -2: not looked up yet, -1: not found
};

// Feed events of all handles to on_event(index, event) until every handle is done, the
// deadline passes, on_event returns false or `peer` reports the client gone; unfinished
// handles are cancelled (freed at the scheduler's next step). Records time-to-first-token
// and inter-token latency. Returns false when the client went away.
bool drive(Server::Impl& s, std::vector<std::shared_ptr<SeqHandle>>& handles,
           const std::function<bool(size_t, SeqEvent&)>& on_event, PeerWatch* peer = nullptr);

// Releases the model (with its keep_alive) and cancels unfinished handles when the
// response is done with them, including when a stream's client went away.
struct RequestGuard {
    Server::Impl& s;
    std::shared_ptr<ServedModel> model;
    std::optional<std::chrono::milliseconds> keep_alive;
    std::vector<std::shared_ptr<SeqHandle>> handles;
    ~RequestGuard();
};

// Streams (chunked, content_type) or waits for the end. on_event returns the text to
// write for an event (streaming) and may accumulate state; at_end returns the last chunk
// (streaming) or the whole body (not streaming). Not streaming, an event with
// finish_reason "error" becomes a 500, and a client that hangs up a 499 (logged only).
void respond(Server::Impl& s, const httplib::Request& req, httplib::Response& res, bool stream,
             const char* content_type, std::shared_ptr<RequestGuard> guard,
             std::function<std::string(size_t, SeqEvent&)> on_event,
             std::function<std::string()> at_end);

// Write an error response in the API's shape.
void send_error(httplib::Response& res, Api api, const HttpError& e);

// Wrap a route so HttpError and other exceptions become proper error responses.
httplib::Server::Handler guarded(
    Server::Impl& s, Api api, std::function<void(const httplib::Request&, httplib::Response&)> fn);

void register_ollama(Server::Impl& s);
void register_openai(Server::Impl& s);
extern const char* const kChatPageHtml;  // GET / for browsers (chat_page.cpp)
extern const char* const kChatPageJs;    // GET /chat.js
void register_store(Server::Impl& s);    // pull, push, create, copy, delete, blobs

int64_t unix_now();
std::string rfc3339_now();
std::string random_id(const char* prefix);
uint64_t random_seed();

}  // namespace lokal::server
