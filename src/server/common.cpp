#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <random>

#include "server/server_impl.h"
#include "server/tools.h"
#include "template/chat_template.h"

namespace lokal::server {

void Histogram::observe(double v) {
    std::lock_guard lk(mu_);
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    ++counts_[i];
    sum_ += v;
    ++n_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
    std::lock_guard lk(mu_);
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
    uint64_t cum = 0;
    char buf[64];
    for (size_t i = 0; i < bounds_.size(); ++i) {
        cum += counts_[i];
        std::snprintf(buf, sizeof buf, "%g", bounds_[i]);
        out += name + "_bucket{le=\"" + buf + "\"} " + std::to_string(cum) + "\n";
    }
    out += name + "_bucket{le=\"+Inf\"} " + std::to_string(n_) + "\n";
    std::snprintf(buf, sizeof buf, "%.6f", sum_);
    out += name + "_sum " + buf + "\n" + name + "_count " + std::to_string(n_) + "\n";
}

json parse_body(const httplib::Request& req, int max_depth) {
    json j;
    try {
        // The callback sees the nesting depth while parsing, so a deeply nested body is
        // refused before it costs memory or stack.
        j = json::parse(req.body, [max_depth](int depth, json::parse_event_t, json&) {
            if (depth > max_depth) throw HttpError(400, "the JSON body is nested too deeply");
            return true;
        });
    } catch (const HttpError&) {
        throw;
    } catch (const json::exception& e) {
        throw HttpError(400, std::string("malformed JSON body: ") + e.what());
    }
    if (!j.is_object()) throw HttpError(400, "the request body must be a JSON object");
    return j;
}

static const json* field(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
}

static HttpError type_error(const char* key, const char* want) {
    return HttpError(400, std::string("field '") + key + "' must be " + want,
                     "invalid_request_error", key);
}

std::optional<std::string> get_string(const json& j, const char* key) {
    const json* v = field(j, key);
    if (!v) return std::nullopt;
    if (!v->is_string()) throw type_error(key, "a string");
    return v->get<std::string>();
}

std::optional<double> get_number(const json& j, const char* key) {
    const json* v = field(j, key);
    if (!v) return std::nullopt;
    if (!v->is_number()) throw type_error(key, "a number");
    return v->get<double>();
}

std::optional<int64_t> get_int(const json& j, const char* key) {
    const json* v = field(j, key);
    if (!v) return std::nullopt;
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
        std::abs(v->get<double>()) < 1e15)
        return (int64_t)v->get<double>();
    throw type_error(key, "an integer");
}

std::optional<float> get_float(const json& j, const char* key) {
    auto v = get_number(j, key);
    if (!v) return std::nullopt;
    // A double past float's range converts to nothing meaningful (undefined behaviour).
    if (!(std::abs(*v) <= 3.0e38)) throw type_error(key, "a number within float range");
    return (float)*v;
}

int clamp_int(int64_t v) {
    return (int)std::clamp<int64_t>(v, INT_MIN, INT_MAX);
}

std::optional<bool> get_bool(const json& j, const char* key) {
    const json* v = field(j, key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) throw type_error(key, "a boolean");
    return v->get<bool>();
}

std::vector<std::string> get_string_list(const json& j, const char* key) {
    const json* v = field(j, key);
    if (!v) return {};
    if (v->is_string()) return {v->get<std::string>()};
    if (!v->is_array()) throw type_error(key, "a string or a list of strings");
    std::vector<std::string> out;
    for (auto& e : *v) {
        if (!e.is_string()) throw type_error(key, "a string or a list of strings");
        out.push_back(e.get<std::string>());
    }
    return out;
}

void reject_fields(const json& j, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        auto it = j.find(k);
        if (it == j.end() || it->is_null()) continue;
        if (it->is_array() && it->empty()) continue;  // an empty tools list asks for nothing
        throw HttpError(400, std::string("'") + k + "' is not implemented by lokal yet",
                        "invalid_request_error", k);
    }
}

std::shared_ptr<const JsonSchema> output_schema(const httplib::Request& req, const json& body,
                                                Api api) {
    using ojson = nlohmann::ordered_json;
    const char* field = api == Api::Ollama ? "format" : "response_format";
    auto it = body.find(field);
    if (it == body.end() || it->is_null()) return nullptr;
    auto bad = [&](const std::string& msg) {
        return HttpError(400, msg, "invalid_request_error", field);
    };
    // The path to the schema inside the body, or the whole-object mode.
    ojson::json_pointer where;
    if (api == Api::Ollama) {
        if (it->is_string()) {
            const std::string mode = it->get<std::string>();
            if (mode.empty()) return nullptr;
            if (mode == "json") return json_object_schema();
            throw bad("'format' must be \"json\" or a JSON schema object, got \"" + mode + "\"");
        }
        if (!it->is_object()) throw bad("'format' must be \"json\" or a JSON schema object");
        where = ojson::json_pointer("/format");
    } else {
        std::string type;
        if (it->is_object())
            if (auto t = it->find("type"); t != it->end() && t->is_string()) type = *t;
        if (type == "text") return nullptr;
        if (type == "json_object") return json_object_schema();
        if (type != "json_schema")
            throw bad(
                "'response_format.type' must be \"text\", \"json_object\" or "
                "\"json_schema\"");
        auto js = it->find("json_schema");
        const bool has_schema = js != it->end() && js->is_object() && js->contains("schema") &&
                                js->find("schema")->is_object();
        if (!has_schema)
            throw bad("'response_format.json_schema.schema' must be a JSON schema object");
        where = ojson::json_pointer("/response_format/json_schema/schema");
    }
    try {
        // parse_body already parsed this body within the depth limit.
        const ojson ordered = ojson::parse(req.body);
        return compile_json_schema(ordered.at(where).dump());
    } catch (const JsonSchemaError& e) {
        throw bad(e.what());
    }
}

std::shared_ptr<ServedModel> acquire_model(Server::Impl& s, const json& body) {
    std::string name = get_string(body, "model").value_or("");
    if (name.empty()) name = s.opts.default_model;
    if (name.empty())
        throw HttpError(400, "field 'model' is required", "invalid_request_error", "model");
    try {
        return s.registry.acquire(name);
    } catch (const ModelNotFound& e) {
        throw HttpError(404, e.what(), "not_found_error", "model");
    } catch (const ModelTooLarge& e) {
        // Busy: 503, retry when the models holding the memory are idle (then unloadable).
        // Never fits with this server's settings: 507 Insufficient Storage, not retryable.
        HttpError err(e.busy ? 503 : 507, e.what(), "server_error", "model");
        err.retry_after = e.busy ? 5 : 0;
        throw err;
    } catch (const HttpError&) {
        throw;
    } catch (const std::exception& e) {
        throw HttpError(500, "cannot load model '" + name + "': " + e.what(), "server_error");
    }
}

std::vector<int32_t> chat_prompt(const ServedModel& m, const json& messages,
                                 const ToolSetup* tools) {
    if (!messages.is_array())
        throw HttpError(400, "field 'messages' must be a list", "invalid_request_error",
                        "messages");
    nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
    if (m.config && m.config->system) {
        bool has_system = false;
        for (auto& msg : messages) has_system |= get_string(msg, "role").value_or("") == "system";
        if (!has_system) msgs.push_back({{"role", "system"}, {"content", *m.config->system}});
    }
    if (m.config)
        for (auto& cm : m.config->messages)
            msgs.push_back({{"role", cm.role}, {"content", cm.content}});
    for (auto& msg : messages) {
        if (!msg.is_object())
            throw HttpError(400, "each message must be an object", "invalid_request_error",
                            "messages");
        const std::string role = get_string(msg, "role").value_or("");
        if (role.empty())
            throw HttpError(400, "each message needs a 'role'", "invalid_request_error",
                            "messages");
        reject_fields(msg, {"images"});
        std::string content;
        auto c = msg.find("content");
        if (c != msg.end() && c->is_string()) {
            content = c->get<std::string>();
        } else if (c != msg.end() && c->is_array()) {
            // OpenAI content parts: text parts are joined; other kinds are refused.
            for (auto& part : *c) {
                if (!part.is_object() || get_string(part, "type").value_or("") != "text" ||
                    !part.contains("text") || !part["text"].is_string())
                    throw HttpError(400, "only text content parts are implemented",
                                    "invalid_request_error", "messages");
                content += part["text"].get<std::string>();
            }
        } else if (c != msg.end() && !c->is_null()) {
            throw HttpError(400, "message 'content' must be a string or a list of parts",
                            "invalid_request_error", "messages");
        }
        nlohmann::ordered_json out = {{"role", role}, {"content", content}};
        // Earlier calls and their results, for templates that render them; arguments as
        // objects (OpenAI sends a JSON string).
        if (auto tc = msg.find("tool_calls"); tc != msg.end() && !tc->is_null()) {
            if (!tc->is_array())
                throw HttpError(400, "'tool_calls' must be a list", "invalid_request_error",
                                "messages");
            // Ordered, so that the arguments reach the template in the model's own order
            // (the prompt then matches what it wrote, and prefix caching holds).
            nlohmann::ordered_json calls = nlohmann::ordered_json::parse(tc->dump());
            for (auto& c : calls) {
                if (!c.is_object()) throw HttpError(400, "each tool call must be an object");
                auto& f = c.contains("function") ? c["function"] : c;
                if (f.is_object() && f.contains("arguments") && f["arguments"].is_string()) {
                    const std::string text = f["arguments"].get<std::string>();
                    if (!json_nesting_within(text, 64))
                        throw HttpError(400, "tool call arguments nested too deeply",
                                        "invalid_request_error", "messages");
                    auto parsed = nlohmann::ordered_json::parse(text, nullptr, false);
                    if (!parsed.is_discarded()) f["arguments"] = std::move(parsed);
                }
            }
            if (tools && !tools->template_knows_tools)
                out["content"] = content + (content.empty() ? "" : "\n") + hermes_calls_text(calls);
            else
                out["tool_calls"] = std::move(calls);
        }
        for (const char* key : {"tool_call_id", "name"})
            if (auto v = msg.find(key); v != msg.end() && v->is_string()) out[key] = *v;
        msgs.push_back(std::move(out));
    }
    if (tools && !tools->template_knows_tools) {
        const std::string note = tool_system_note(*tools);
        if (!msgs.empty() && msgs[0]["role"] == "system")
            msgs[0]["content"] = msgs[0]["content"].get<std::string>() + "\n\n" + note;
        else
            msgs.insert(msgs.begin(),
                        nlohmann::ordered_json{{"role", "system"}, {"content", note}});
    }
    std::string rendered;
    try {
        rendered = tmpl::apply_chat_template(
            m.chat_template, msgs, true, m.token_text(m.vocab->bos()), m.token_text(m.vocab->eos()),
            tools && tools->template_knows_tools ? tools->tools : nlohmann::ordered_json(nullptr));
    } catch (const std::exception& e) {
        throw HttpError(400, std::string("the chat template failed: ") + e.what());
    }
    // Shipped templates write BOS themselves; the default template does not.
    return m.vocab->tokenize(rendered, m.default_template, true);
}

std::vector<int32_t> text_prompt(const ServedModel& m, const std::string& text) {
    return m.vocab->tokenize(text, true, true);
}

int embedding_dimensions(const json& body, int n_embd) {
    const auto d = get_int(body, "dimensions");
    if (!d) return 0;
    if (*d < 1 || *d > n_embd)
        throw HttpError(400,
                        "'dimensions' must be between 1 and " + std::to_string(n_embd) +
                            " (this model's embedding length)",
                        "invalid_request_error", "dimensions");
    return (int)*d;
}

void shorten_embedding(std::vector<float>& e, int dims) {
    if (dims <= 0 || (size_t)dims >= e.size()) return;
    e.resize((size_t)dims);
    double sum = 0;
    for (float x : e) sum += (double)x * x;
    if (sum > 0)
        for (float& x : e) x = (float)(x / std::sqrt(sum));
}

std::vector<int32_t> fim_prompt(const ServedModel& m, const std::string& prefix,
                                const std::string& suffix) {
    std::vector<int32_t> tokens = m.vocab->fill_in_middle(prefix, suffix);
    if (tokens.empty())
        throw HttpError(400,
                        "model '" + m.name +
                            "' does not support insertion: its vocabulary has no "
                            "fill-in-the-middle tokens (use a code model, or send no 'suffix')",
                        "invalid_request_error", "suffix");
    return tokens;
}

void check_prompt_fits(const ServedModel& m, size_t n, bool embed) {
    const size_t limit = (size_t)m.ctx->n_ctx() - (embed ? 0 : 1);
    if (n > limit)
        throw HttpError(400,
                        "the prompt has " + std::to_string(n) +
                            " tokens but the context of model '" + m.name + "' holds " +
                            std::to_string(m.ctx->n_ctx()) +
                            (embed ? "" : " (one position must stay free for the reply)") +
                            "; shorten the prompt or raise --ctx-size",
                        "invalid_request_error", "prompt");
}

static HttpError busy(Server::Impl& s) {
    ++s.metrics.rejected;
    HttpError e(503, "the server is busy: the wait queue is full; retry later", "server_busy");
    e.retry_after = 1;
    return e;
}

std::shared_ptr<SeqHandle> submit(Server::Impl& s, ServedModel& m, SeqRequest req) {
    const size_t n = req.prompt.size();
    auto h = m.sched->submit(std::move(req));
    if (!h) throw busy(s);
    s.metrics.tokens_in += n;
    return h;
}

std::vector<std::shared_ptr<SeqHandle>> submit_group(Server::Impl& s, ServedModel& m,
                                                     std::vector<SeqRequest> reqs) {
    const size_t n = reqs.empty() ? 0 : reqs[0].prompt.size();
    auto hs = m.sched->submit_group(std::move(reqs));
    if (hs.empty()) throw busy(s);
    s.metrics.tokens_in += n;  // computed once for the whole group
    return hs;
}

bool drive(Server::Impl& s, std::vector<std::shared_ptr<SeqHandle>>& handles,
           const std::function<bool(size_t, SeqEvent&)>& on_event, PeerWatch* peer) {
    using namespace std::chrono;
    const auto start = steady_clock::now();
    const auto deadline = start + seconds(s.opts.request_timeout_s);
    std::vector<bool> done(handles.size(), false);
    std::vector<steady_clock::time_point> last(handles.size(), start);
    std::vector<bool> first(handles.size(), true);
    size_t left = handles.size();
    const auto wait = handles.size() == 1 ? milliseconds(50) : milliseconds(2);
    // The socket is looked at every 50 ms, and first only after 50 ms: short requests,
    // most of them, never pay for finding it.
    auto next_check = start + milliseconds(50);
    bool alive = true;
    auto client_gone = [&](steady_clock::time_point now) {
        if (!peer || now < next_check) return false;
        next_check = now + milliseconds(50);
        return peer->gone();
    };
    bool timed_out = false;
    SeqEvent ev;
    while (left > 0 && alive && !timed_out) {
        const auto now = steady_clock::now();
        if (now > deadline) break;
        if (client_gone(now)) {
            alive = false;
            break;
        }
        for (size_t i = 0; i < handles.size() && alive && !timed_out; ++i) {
            if (done[i]) continue;
            while (alive && handles[i]->next(ev, wait)) {
                const auto t = steady_clock::now();
                // Events can come back to back for as long as the generation runs, so the
                // deadline and the client are checked here too, not only between waits.
                if (t > deadline) {
                    timed_out = true;
                    break;
                }
                if (client_gone(t)) {
                    alive = false;
                    break;
                }
                if (ev.token >= 0) {
                    ++s.metrics.tokens_out;
                    const double dt = duration<double>(t - last[i]).count();
                    (first[i] ? s.metrics.ttft : s.metrics.itl).observe(dt);
                    first[i] = false;
                    last[i] = t;
                }
                const bool fin = ev.done;
                if (fin && ev.finish_reason == "cancelled") ++s.metrics.cancelled;
                alive = on_event(i, ev);
                if (fin) {
                    done[i] = true;
                    --left;
                    break;
                }
            }
        }
    }
    for (size_t i = 0; i < handles.size(); ++i)
        if (!done[i]) {
            handles[i]->cancel();
            ++s.metrics.cancelled;
        }
    return alive;
}

RequestGuard::~RequestGuard() {
    for (auto& h : handles) h->cancel();  // a no-op for finished ones
    if (model) s.registry.release(model, keep_alive);
}

void respond(Server::Impl& s, const httplib::Request& req, httplib::Response& res, bool stream,
             const char* content_type, std::shared_ptr<RequestGuard> guard,
             std::function<std::string(size_t, SeqEvent&)> on_event,
             std::function<std::string()> at_end) {
    auto peer = std::make_shared<PeerWatch>(req);
    if (!stream) {
        std::string error;
        const bool alive = drive(
            s, guard->handles,
            [&](size_t i, SeqEvent& ev) {
                if (ev.finish_reason == "error") error = ev.error;
                on_event(i, ev);
                return true;
            },
            peer.get());
        // nginx's "client closed request": nobody reads it, but the log and metrics say it.
        if (!alive) throw HttpError(499, "the client closed the connection", "client_gone");
        if (!error.empty()) throw HttpError(500, error, "server_error");
        res.set_content(at_end(), content_type);
        return;
    }
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    // A stream notices a closed connection at its next write, but a long prefill or text
    // held back (stop strings, partial UTF-8) writes nothing for a while: watch it too.
    res.set_chunked_content_provider(
        content_type, [&s, guard, on_event, at_end, peer](size_t, httplib::DataSink& sink) {
            bool ok = true;
            const bool alive = drive(
                s, guard->handles,
                [&](size_t i, SeqEvent& ev) {
                    const std::string chunk = on_event(i, ev);
                    if (!chunk.empty()) ok = sink.write(chunk.data(), chunk.size());
                    return ok;  // a failed write: the client went away; drive cancels the rest
                },
                peer.get());
            if (!alive || !ok) return false;
            const std::string last = at_end();
            if (!last.empty()) sink.write(last.data(), last.size());
            sink.done();
            return true;
        });
}

void send_error(httplib::Response& res, Api api, const HttpError& e) {
    res.status = e.status;
    if (e.retry_after > 0) res.set_header("Retry-After", std::to_string(e.retry_after));
    json body;
    if (api == Api::OpenAI) {
        body = {{"error",
                 {{"message", e.what()},
                  {"type", e.type},
                  {"param", e.param.empty() ? json() : json(e.param)},
                  {"code", e.status == 404 ? json("model_not_found") : json()}}}};
    } else {
        body = {{"error", e.what()}};
    }
    res.set_content(to_text(body), "application/json");
}

namespace {

httplib::Server::HandlerWithContentReader with_body(Server::Impl& s, httplib::Server::Handler h) {
    return [&s, h = std::move(h)](const httplib::Request& req, httplib::Response& res,
                                  const httplib::ContentReader& reader) {
        std::string body;
        bool too_big = false;
        const bool ok = reader([&](const char* data, size_t n) {
            if (body.size() + n > s.opts.max_body_bytes) {
                too_big = true;
                return false;
            }
            body.append(data, n);
            return true;
        });
        if (!ok) {
            // The rest of the body is unread: the connection cannot carry another request.
            res.set_header("Connection", "close");
            too_big |= res.status == 413;  // a Content-Length over the cap, refused by httplib
            res.status = too_big ? 413 : 400;
            res.set_content(
                to_text(json{{"error", too_big ? "the request body is too large (see --max-body)"
                                               : "the request body could not be read"}}),
                "application/json");
            std::lock_guard lk(s.metrics.mu);
            ++s.metrics.requests[{s.route_label(req.path), res.status}];
            return;
        }
        httplib::Request with = req;  // handlers and their streams copy what they keep
        with.body = std::move(body);
        h(with, res);
    };
}

}  // namespace

void Server::Impl::post(const std::string& pattern, httplib::Server::Handler h) {
    add_route(pattern, nullptr);
    http.Post(pattern, with_body(*this, std::move(h)));
}

void Server::Impl::del(const std::string& pattern, httplib::Server::Handler h) {
    add_route(pattern, nullptr);
    http.Delete(pattern, with_body(*this, std::move(h)));
}

void Server::Impl::get(const std::string& pattern, httplib::Server::Handler h, const char* label) {
    add_route(pattern, label);
    http.Get(pattern, std::move(h));
}

httplib::Server::Handler guarded(
    Server::Impl& s, Api api, std::function<void(const httplib::Request&, httplib::Response&)> fn) {
    return [&s, api, fn = std::move(fn)](const httplib::Request& req, httplib::Response& res) {
        const auto t0 = std::chrono::steady_clock::now();
        try {
            fn(req, res);
            if (res.status == -1) res.status = 200;
        } catch (const HttpError& e) {
            send_error(res, api, e);
        } catch (const std::exception& e) {
            send_error(res, api, HttpError(500, e.what(), "server_error"));
        }
        {
            std::lock_guard lk(s.metrics.mu);
            ++s.metrics.requests[{s.route_label(req.path), res.status}];
        }
        // One structured line per request (streams log when their headers go out). Built as
        // JSON, not printf'd: the path is the client's text, quotes and newlines included.
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        const std::string line = to_text(nlohmann::ordered_json{{"method", req.method},
                                                                {"path", req.path},
                                                                {"status", res.status},
                                                                {"ms", std::round(ms * 10) / 10}}) +
                                 "\n";
        std::fputs(line.c_str(), stderr);
    };
}

void Server::Impl::add_route(const std::string& pattern, const char* label) {
    const size_t group = pattern.find('(');
    if (group == std::string::npos)
        exact_routes_.push_back(pattern);
    else  // counted under its literal prefix
        prefix_routes_.emplace_back(pattern.substr(0, group), label ? label : pattern);
}

std::string Server::Impl::route_label(const std::string& path) const {
    for (const std::string& r : exact_routes_)
        if (path == r) return path;
    for (const auto& [prefix, label] : prefix_routes_)
        if (path.rfind(prefix, 0) == 0) return label;
    return "other";
}

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string rfc3339_now() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    const long us =
        (long)(std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch())
                   .count() %
               1000000);
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us);
    return buf;
}

uint64_t random_seed() {
    static std::mutex mu;
    static std::mt19937_64 rng{std::random_device{}()};
    std::lock_guard lk(mu);
    return rng();
}

std::string random_id(const char* prefix) {
    static const char* hex = "0123456789abcdef";
    uint64_t r = random_seed();
    std::string s = prefix;
    for (int i = 0; i < 16; ++i, r >>= 4) s += hex[r & 15];
    return s;
}

}  // namespace lokal::server
