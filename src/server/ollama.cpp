// Ollama API: /api/generate, /api/chat, /api/embed, /api/embeddings.
#include <chrono>

#include "server/server_impl.h"
#include "server/tools.h"

namespace lokal::server {

namespace {

using std::chrono::milliseconds;

// Modelfile PARAMETERs first, then the request's options on top.
SeqRequest make_request(const ServedModel& m, const json& body) {
    SeqRequest r;
    SamplerParams& sp = r.sampling;
    sp.seed = random_seed();
    if (m.config) {
        const auto& p = m.config->parameters;
        if (p.temperature) sp.temperature = *p.temperature;
        if (p.top_p) sp.top_p = *p.top_p;
        if (p.min_p) sp.min_p = *p.min_p;
        if (p.top_k) sp.top_k = *p.top_k;
        if (p.repeat_penalty) sp.repeat_penalty = *p.repeat_penalty;
        if (p.presence_penalty) sp.presence_penalty = *p.presence_penalty;
        if (p.frequency_penalty) sp.frequency_penalty = *p.frequency_penalty;
        if (p.repeat_last_n) sp.penalty_last_n = *p.repeat_last_n;
        if (p.seed) sp.seed = *p.seed;
        if (p.num_predict) r.n_predict = *p.num_predict;
        r.stop = p.stop;
    }
    auto it = body.find("options");
    if (it == body.end() || it->is_null()) return r;
    if (!it->is_object()) throw HttpError(400, "field 'options' must be an object");
    const json& o = *it;
    if (auto v = get_float(o, "temperature")) sp.temperature = *v;
    if (auto v = get_float(o, "top_p")) sp.top_p = *v;
    if (auto v = get_float(o, "min_p")) sp.min_p = *v;
    if (auto v = get_int(o, "top_k")) sp.top_k = clamp_int(*v);
    if (auto v = get_float(o, "repeat_penalty")) sp.repeat_penalty = *v;
    if (auto v = get_float(o, "presence_penalty")) sp.presence_penalty = *v;
    if (auto v = get_float(o, "frequency_penalty")) sp.frequency_penalty = *v;
    if (auto v = get_int(o, "repeat_last_n")) sp.penalty_last_n = clamp_int(*v);
    if (auto v = get_int(o, "seed"); v && *v >= 0) sp.seed = (uint64_t)*v;
    if (auto v = get_int(o, "num_predict")) r.n_predict = *v < 0 ? -1 : clamp_int(*v);
    if (o.contains("stop")) r.stop = get_string_list(o, "stop");
    if (auto v = get_int(o, "num_ctx"); v && *v > m.ctx->n_ctx())
        throw HttpError(400, "options.num_ctx " + std::to_string(*v) +
                                 " exceeds the server's context of " +
                                 std::to_string(m.ctx->n_ctx()) +
                                 " for this model (start lokal serve with --ctx-size)");
    return r;
}

std::optional<milliseconds> keep_alive_of(const json& body) {
    auto it = body.find("keep_alive");
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (it->is_number()) {
        if (auto d = duration_of_ms(it->get<double>() * 1000)) return d;
    } else if (it->is_string()) {
        if (auto d = parse_duration(it->get<std::string>())) return d;
    }
    throw HttpError(400,
                    "field 'keep_alive' must be a duration such as \"5m\" or a number of seconds");
}

const char* done_reason(const std::string& finish) {
    if (finish == "length" || finish == "context") return "length";
    return "stop";
}

int64_t ns(double ms) {
    return (int64_t)(ms * 1e6);
}

// State shared by a generate/chat response: the text so far and the final stats.
struct GenState {
    std::string text;
    size_t emitted = 0;  // bytes streamed (tools hold back what may be a call)
    bool tools = false;
    ToolFormat tool_format = ToolFormat::Hermes;
    std::vector<std::string> tool_names;
    SeqEvent last;
    std::vector<int32_t> tokens;
    Clock::time_point t0 = Clock::now();
    double load_ms = 0;
};

json final_fields(const GenState& st) {
    const double total_ms = std::chrono::duration<double, std::milli>(Clock::now() - st.t0).count();
    return {{"done", true},
            {"done_reason", done_reason(st.last.finish_reason)},
            {"total_duration", ns(total_ms + st.load_ms)},
            {"load_duration", ns(st.load_ms)},
            {"prompt_eval_count", st.last.prompt_tokens},
            {"prompt_eval_duration", ns(st.last.prompt_ms)},
            {"eval_count", st.last.completion_tokens},
            {"eval_duration", ns(st.last.eval_ms)}};
}

// generate and chat differ only in the prompt and in how a piece of text is wrapped.
void run_generation(Server::Impl& s, const httplib::Request& req, httplib::Response& res,
                    const json& body, std::shared_ptr<ServedModel> m, double load_ms,
                    std::vector<int32_t> prompt, bool chat, const ToolSetup* tools = nullptr) {
    auto st = std::make_shared<GenState>();
    auto guard = std::make_shared<RequestGuard>(RequestGuard{s, m, std::nullopt, {}});
    guard->keep_alive = keep_alive_of(body);
    check_prompt_fits(*m, prompt.size());
    SeqRequest r = make_request(*m, body);
    r.prompt = prompt;
    r.sampling.json_schema = output_schema(req, body, Api::Ollama);
    if (tools && !r.sampling.json_schema) {  // with a format, the answer is not parsed
        st->tools = true;
        st->tool_format = tools->format;
        st->tool_names = tools->names;
        constrain_calls(*tools, r.sampling);
    }
    const bool stream = get_bool(body, "stream").value_or(true);
    guard->handles.push_back(submit(s, *m, std::move(r)));
    st->load_ms = load_ms;
    st->tokens = prompt;
    const std::string name = m->name;
    auto wrap = [chat](const std::string& text) {
        return chat ? json{{"message", {{"role", "assistant"}, {"content", text}}}}
                    : json{{"response", text}};
    };
    // The calls in a finished answer (Ollama's shape: arguments as an object) and the
    // content around them.
    auto calls_of = [st](std::string& content) {
        json calls = json::array();
        if (!st->tools) return calls;
        auto [text, parsed] = parse_tool_calls(st->text, st->tool_format, &st->tool_names);
        if (parsed.empty()) return calls;
        content = text;
        for (auto& c : parsed)
            calls.push_back(
                {{"function", {{"name", c.name}, {"arguments", json::parse(c.arguments.dump())}}}});
        return calls;
    };
    auto on_event = [st, stream, name, wrap, calls_of](size_t, SeqEvent& ev) -> std::string {
        if (ev.token >= 0) st->tokens.push_back(ev.token);
        st->text += ev.text;
        if (ev.done) st->last = ev;
        if (!stream) return {};
        if (ev.done && ev.finish_reason == "error")
            return to_text(json{{"error", ev.error}}) + "\n";
        std::string piece = ev.text, out;
        if (st->tools) {
            // Text that may be a call waits until the answer is done.
            std::string content;
            const json calls = ev.done ? calls_of(content) : json::array();
            piece =
                tool_stream_piece(st->text, st->tool_format, ev.done, !calls.empty(), st->emitted);
            if (!calls.empty()) {
                json j = {{"model", name}, {"created_at", rfc3339_now()}};
                j.update(wrap(""));
                j["message"]["tool_calls"] = calls;
                j["done"] = false;
                out = to_text(j) + "\n";
            }
        }
        if (piece.empty()) return out;
        json j = {{"model", name}, {"created_at", rfc3339_now()}};
        j.update(wrap(piece));
        j["done"] = false;
        return to_text(j) + "\n" + out;
    };
    auto at_end = [st, stream, name, wrap, chat, calls_of]() -> std::string {
        if (st->last.finish_reason == "error" || st->last.finish_reason == "cancelled") return {};
        json j = {{"model", name}, {"created_at", rfc3339_now()}};
        std::string content = st->text;
        const json calls = stream ? json::array() : calls_of(content);
        j.update(wrap(stream ? std::string() : content));
        if (!calls.empty()) j["message"]["tool_calls"] = calls;
        j.update(final_fields(*st));
        if (!chat) j["context"] = st->tokens;
        return to_text(j) + (stream ? "\n" : "");
    };
    respond(s, req, res, stream, stream ? "application/x-ndjson" : "application/json", guard,
            on_event, at_end);
}

// An empty prompt loads (or, with keep_alive 0, unloads) the model.
bool load_only(Server::Impl& s, httplib::Response& res, const json& body,
               const std::shared_ptr<ServedModel>& m, bool chat) {
    const auto ka = keep_alive_of(body);
    const bool unload = ka && ka->count() == 0;
    s.registry.release(m, ka);
    if (unload) s.registry.unload(m->name);
    json j = {{"model", m->name},
              {"created_at", rfc3339_now()},
              {"done", true},
              {"done_reason", unload ? "unload" : "load"}};
    if (chat)
        j["message"] = {{"role", "assistant"}, {"content", ""}};
    else
        j["response"] = "";
    res.set_content(to_text(j), "application/json");
    return true;
}

std::pair<std::shared_ptr<ServedModel>, double> model_for(Server::Impl& s, const json& body) {
    const auto t0 = Clock::now();
    const bool was_loaded = [&] {
        const std::string name = get_string(body, "model").value_or(s.opts.default_model);
        for (auto& m : s.registry.loaded())
            if (m->name == name) return true;
        return false;
    }();
    auto m = acquire_model(s, body);
    return {
        m, was_loaded ? 0.0 : std::chrono::duration<double, std::milli>(Clock::now() - t0).count()};
}

// Releases the model on the error paths before a RequestGuard owns it.
struct Hold {
    Server::Impl& s;
    std::shared_ptr<ServedModel> m;
    ~Hold() {
        if (m) s.registry.release(m, std::nullopt);
    }
    std::shared_ptr<ServedModel> take() { return std::exchange(m, nullptr); }
};

void embed(Server::Impl& s, const httplib::Request& req, httplib::Response& res, const json& body,
           bool legacy) {
    if (legacy) reject_fields(body, {"dimensions"});  // /api/embeddings never had it
    auto [model, load_ms] = model_for(s, body);
    Hold hold{s, model};
    const int dims = legacy ? 0 : embedding_dimensions(body, model->model->hp.dim);
    std::vector<std::string> inputs;
    if (legacy) {
        inputs.push_back(get_string(body, "prompt").value_or(""));
    } else {
        if (!body.contains("input"))
            throw HttpError(400, "field 'input' is required", "invalid_request_error", "input");
        inputs = get_string_list(body, "input");
    }
    const bool truncate = get_bool(body, "truncate").value_or(false);
    std::vector<SeqRequest> reqs;
    for (auto& in : inputs) {
        SeqRequest r;
        r.embed = true;
        r.prompt = text_prompt(*model, in);
        if (truncate && r.prompt.size() > (size_t)model->ctx->n_ctx())
            r.prompt.resize((size_t)model->ctx->n_ctx());
        check_prompt_fits(*model, r.prompt.size(), true);
        reqs.push_back(std::move(r));
    }
    const auto ka = keep_alive_of(body);
    auto guard = std::make_shared<RequestGuard>(RequestGuard{s, hold.take(), ka, {}});
    for (auto& r : reqs) guard->handles.push_back(submit(s, *guard->model, std::move(r)));
    std::vector<std::vector<float>> out(reqs.size());
    int tokens = 0;
    const auto t0 = Clock::now();
    respond(
        s, req, res, false, "application/json", guard,
        [&](size_t i, SeqEvent& ev) {
            if (ev.done) out[i] = ev.embedding, tokens += ev.prompt_tokens;
            return std::string();
        },
        // load_ms by copy: clang before 16 cannot capture a structured binding by reference.
        [&, load_ms = load_ms]() -> std::string {
            if (legacy)
                return to_text(json{{"embedding", out.empty() ? std::vector<float>() : out[0]}});
            for (auto& e : out) shorten_embedding(e, dims);
            const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
            return to_text(json{{"model", guard->model->name},
                                {"embeddings", out},
                                {"total_duration", ns(ms + load_ms)},
                                {"load_duration", ns(load_ms)},
                                {"prompt_eval_count", tokens}});
        });
}

}  // namespace

void register_ollama(Server::Impl& s) {
    s.post("/api/generate",
           guarded(s, Api::Ollama, [&s](const httplib::Request& req, httplib::Response& res) {
               const json body = parse_body(req, s.opts.max_json_depth);
               reject_fields(body, {"images", "template", "tools"});
               auto [model, load_ms] = model_for(s, body);
               Hold hold{s, model};
               const std::string prompt = get_string(body, "prompt").value_or("");
               std::vector<int32_t> ctx_tokens;
               if (auto it = body.find("context"); it != body.end() && !it->is_null()) {
                   if (!it->is_array())
                       throw HttpError(400, "field 'context' must be a list of token ids");
                   for (auto& t : *it) {
                       if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
                           t.get<int64_t>() >= model->vocab->n_tokens())
                           throw HttpError(400, "field 'context' holds an invalid token id");
                       ctx_tokens.push_back(t.get<int32_t>());
                   }
               }
               // Code completion between prompt and suffix (the model's template is not used,
               // as Ollama's code-model templates bypass the chat format for it).
               const std::string suffix = get_string(body, "suffix").value_or("");
               if (prompt.empty() && ctx_tokens.empty() && suffix.empty()) {
                   load_only(s, res, body, hold.take(), false);
                   return;
               }
               std::vector<int32_t> tokens;
               if (!suffix.empty()) {
                   if (!ctx_tokens.empty())
                       throw HttpError(400, "'context' cannot be combined with 'suffix'",
                                       "invalid_request_error", "context");
                   tokens = fim_prompt(*model, prompt, suffix);
               } else if (get_bool(body, "raw").value_or(false)) {
                   tokens = ctx_tokens.empty() ? text_prompt(*model, prompt)
                                               : model->vocab->tokenize(prompt, false, true);
               } else {
                   json messages = json::array();
                   if (auto sys = get_string(body, "system"))
                       messages.push_back({{"role", "system"}, {"content", *sys}});
                   messages.push_back({{"role", "user"}, {"content", prompt}});
                   tokens = chat_prompt(*model, messages);
               }
               tokens.insert(tokens.begin(), ctx_tokens.begin(), ctx_tokens.end());
               run_generation(s, req, res, body, hold.take(), load_ms, std::move(tokens), false);
           }));
    s.post("/api/chat",
           guarded(s, Api::Ollama, [&s](const httplib::Request& req, httplib::Response& res) {
               const json body = parse_body(req, s.opts.max_json_depth);
               auto [model, load_ms] = model_for(s, body);
               Hold hold{s, model};
               auto it = body.find("messages");
               if (it == body.end() || it->is_null() || (it->is_array() && it->empty())) {
                   load_only(s, res, body, hold.take(), true);
                   return;
               }
               const auto tools = tool_setup(model->chat_template, req.body, false);
               std::vector<int32_t> tokens = chat_prompt(*model, *it, tools.get());
               run_generation(s, req, res, body, hold.take(), load_ms, std::move(tokens), true,
                              tools.get());
           }));
    s.post("/api/embed",
           guarded(s, Api::Ollama, [&s](const httplib::Request& req, httplib::Response& res) {
               embed(s, req, res, parse_body(req, s.opts.max_json_depth), false);
           }));
    s.post("/api/embeddings",
           guarded(s, Api::Ollama, [&s](const httplib::Request& req, httplib::Response& res) {
               embed(s, req, res, parse_body(req, s.opts.max_json_depth), true);
           }));
}

}  // namespace lokal::server
