// OpenAI API: /v1/chat/completions, /v1/completions, /v1/embeddings.
#include <chrono>
#include <cstring>

#include "server/server_impl.h"
#include "server/tools.h"

namespace lokal::server {

namespace {

const char* finish_reason(const std::string& f) {
    return f == "length" || f == "context" ? "length" : "stop";
}

double ranged(const json& b, const char* key, double lo, double hi, double def) {
    auto v = get_number(b, key);
    if (!v) return def;
    if (*v < lo || *v > hi)
        throw HttpError(400,
                        std::string("'") + key + "' must be between " + std::to_string(lo) +
                            " and " + std::to_string(hi),
                        "invalid_request_error", key);
    return *v;
}

// The sampling fields both completion endpoints share.
SeqRequest make_request(const ServedModel& m, const json& b) {
    SeqRequest r;
    SamplerParams& sp = r.sampling;
    // OpenAI semantics: no top-k / min-p filtering unless asked.
    sp.top_k = 0;
    sp.min_p = 0;
    sp.temperature = (float)ranged(b, "temperature", 0, 2, 1.0);
    sp.top_p = (float)ranged(b, "top_p", 0, 1, 1.0);
    sp.presence_penalty = (float)ranged(b, "presence_penalty", -2, 2, 0);
    sp.frequency_penalty = (float)ranged(b, "frequency_penalty", -2, 2, 0);
    sp.penalty_last_n = -1;
    auto seed = get_int(b, "seed");
    sp.seed = seed ? (uint64_t)*seed : random_seed();
    if (auto v = get_int(b, "max_completion_tokens"))
        r.n_predict = clamp_int(*v);
    else if (auto v2 = get_int(b, "max_tokens"))
        r.n_predict = clamp_int(*v2);
    // max_tokens 0 only scores an echoed prompt (legacy completions with echo).
    const bool scoring = get_bool(b, "echo").value_or(false) && b.contains("prompt");
    if (r.n_predict < -1 || (r.n_predict == 0 && !scoring))
        if (b.contains("max_tokens") || b.contains("max_completion_tokens"))
            throw HttpError(400,
                            scoring ? "'max_tokens' must be at least 0"
                                    : "'max_tokens' must be at least 1 (0 only with 'echo')",
                            "invalid_request_error", "max_tokens");
    r.stop = get_string_list(b, "stop");
    if (r.stop.size() > 4)
        throw HttpError(400, "at most 4 stop sequences are allowed", "invalid_request_error",
                        "stop");
    if (m.config)
        for (auto& s : m.config->parameters.stop) r.stop.push_back(s);
    if (auto it = b.find("logit_bias"); it != b.end() && !it->is_null()) {
        if (!it->is_object())
            throw HttpError(400, "'logit_bias' must be an object", "invalid_request_error",
                            "logit_bias");
        for (auto& [k, v] : it->items()) {
            int32_t id = -1;
            try {
                size_t used = 0;
                id = std::stoi(k, &used);
                if (used != k.size()) id = -1;
            } catch (...) {
            }
            if (id < 0 || id >= m.vocab->n_tokens() || !v.is_number() || v.get<double>() < -100 ||
                v.get<double>() > 100)
                throw HttpError(
                    400, "'logit_bias' maps token ids of this model to numbers in [-100, 100]",
                    "invalid_request_error", "logit_bias");
            sp.logit_bias.push_back({id, v.get<float>()});
        }
    }
    return r;
}

// Several prompts in one completion request (as lm-evaluation-harness batches them), and
// the choices of all of them together.
constexpr size_t kMaxPrompts = 64, kMaxChoices = 128;

int choices_n(const json& b) {
    const int64_t n = get_int(b, "n").value_or(1);
    if (n < 1 || n > 16)
        throw HttpError(400, "'n' must be between 1 and 16", "invalid_request_error", "n");
    return (int)n;
}

json bytes_of(const std::string& s) {
    json a = json::array();
    for (unsigned char c : s) a.push_back(c);
    return a;
}

struct Choice {
    std::string text;
    std::string finish;
    json logprobs_chat = json::array();
    json lp_tokens = json::array(), lp_values = json::array(), lp_top = json::array(),
         lp_offsets = json::array();
    int prompt_tokens = 0, completion_tokens = 0, cached = 0;
    bool started = false;
    size_t emitted = 0;  // bytes of text streamed as content (tools hold back possible calls)
};

struct Job {
    // echo (completions): each prompt's text and tokens, put before its choices' own;
    // choice i answers prompt i / n.
    bool echo = false;
    std::vector<std::string> echo_texts;
    std::vector<std::vector<int32_t>> echo_tokens;
    int n = 1;  // choices per prompt
    std::string id;
    int64_t created = unix_now();
    std::string model;
    bool chat = true;
    int top_logprobs = -1;
    bool include_usage = false;
    std::vector<Choice> choices;
    bool tools = false;  // parse tool calls out of the text
    ToolFormat tool_format = ToolFormat::Hermes;
    bool parallel_tool_calls = true;
    std::vector<std::string> tool_names;

    // The message of a finished choice: content and, when the text holds calls, tool_calls.
    json message(Choice& ch) const {
        json msg = {{"role", "assistant"}, {"content", ch.text}};
        if (!tools) return msg;
        auto [content, calls] = parse_tool_calls(ch.text, tool_format, &tool_names);
        if (calls.empty()) return msg;
        if (!parallel_tool_calls) calls.resize(1);
        msg["content"] = content.empty() ? json() : json(content);
        msg["tool_calls"] = json::array();
        for (auto& c : calls)
            msg["tool_calls"].push_back(
                {{"id", random_id("call_")},
                 {"type", "function"},
                 {"function", {{"name", c.name}, {"arguments", to_text(c.arguments)}}}});
        if (ch.finish == "stop") ch.finish = "tool_calls";
        return msg;
    }

    json usage() const {
        int p = 0, c = 0, cached = 0;
        for (auto& ch : choices) c += ch.completion_tokens;
        // Each prompt counts once, however many choices it has.
        for (size_t i = 0; i < choices.size(); i += (size_t)n)
            p += choices[i].prompt_tokens, cached += choices[i].cached;
        return {{"prompt_tokens", p},
                {"completion_tokens", c},
                {"total_tokens", p + c},
                {"prompt_tokens_details", {{"cached_tokens", cached}}}};
    }
};

// Logprob entries for one token event, in both response shapes.
void add_logprobs(Job& job, Choice& ch, const ServedModel& m, const SeqEvent& ev, json* chunk_lp) {
    if (job.top_logprobs < 0 || ev.token < 0) return;
    const std::string tok = m.vocab->token_to_piece(ev.token, true);
    if (job.chat) {
        json top = json::array();
        for (auto& t : ev.top) {
            const std::string s = m.vocab->token_to_piece(t.token, true);
            top.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_of(s)}});
        }
        json e = {{"token", tok},
                  {"logprob", ev.logprob},
                  {"bytes", bytes_of(tok)},
                  {"top_logprobs", top}};
        ch.logprobs_chat.push_back(e);
        if (chunk_lp) *chunk_lp = {{"content", json::array({e})}};
    } else {
        json top = json::object();
        for (auto& t : ev.top) top[m.vocab->token_to_piece(t.token, true)] = t.logprob;
        ch.lp_offsets.push_back(ch.text.size());
        ch.lp_tokens.push_back(tok);
        ch.lp_values.push_back(ev.logprob);
        ch.lp_top.push_back(top);
        if (chunk_lp)
            *chunk_lp = {{"tokens", {tok}},
                         {"token_logprobs", {ev.logprob}},
                         {"top_logprobs", {top}},
                         {"text_offset", {ch.text.size()}}};
    }
}

// groups: one per prompt, each of job->n choices sharing that prompt.
void run(Server::Impl& s, const httplib::Request& req, httplib::Response& res, const json& body,
         std::shared_ptr<RequestGuard> guard, std::vector<std::vector<SeqRequest>> groups,
         std::shared_ptr<Job> job) {
    const bool stream = get_bool(body, "stream").value_or(false);
    if (auto it = body.find("stream_options"); it != body.end() && it->is_object())
        job->include_usage = get_bool(*it, "include_usage").value_or(false);
    for (auto& g : groups) {
        // Into the guard as they are queued: a later group finding the queue full cancels
        // the earlier ones with the request.
        auto hs = submit_group(s, *guard->model, std::move(g));
        guard->handles.insert(guard->handles.end(), hs.begin(), hs.end());
    }
    job->choices.resize(guard->handles.size());
    const ServedModel* m = guard->model.get();
    const std::string object = job->chat ? "chat.completion.chunk" : "text_completion";
    auto chunk = [job, object](json choice) {
        return "data: " +
               to_text(json{{"id", job->id},
                            {"object", object},
                            {"created", job->created},
                            {"model", job->model},
                            {"system_fingerprint", "lokal"},
                            {"choices", json::array({choice})}}) +
               "\n\n";
    };
    auto on_event = [job, m, stream, chunk](size_t i, SeqEvent& ev) -> std::string {
        Choice& ch = job->choices[i];
        std::string out;
        if (job->echo && !ch.started && !(ev.done && ev.finish_reason == "error")) {
            const std::string& echo_text = job->echo_texts[i / (size_t)job->n];
            const std::vector<int32_t>& echo_tokens = job->echo_tokens[i / (size_t)job->n];
            // The prompt first: its text, and with logprobs each of its tokens (the first has
            // none: nothing comes before it), as the legacy completions API echoes it.
            // The prompt's entries come first: the choice has none yet.
            json lp_prompt;
            if (job->top_logprobs >= 0) {
                size_t offset = 0;
                for (size_t k = 0; k < echo_tokens.size(); ++k) {
                    json value, top;
                    if (k > 0 && k - 1 < ev.prompt_logprobs.size()) {
                        const PromptLogprob& p = ev.prompt_logprobs[k - 1];
                        value = p.logprob;
                        top = json::object();
                        for (auto& t : p.top)
                            top[m->vocab->token_to_piece(t.token, true)] = t.logprob;
                    }
                    ch.lp_tokens.push_back(m->vocab->token_to_piece(echo_tokens[k], true));
                    ch.lp_values.push_back(value);
                    ch.lp_top.push_back(top);
                    // Offsets into the echoed text, where control tokens (BOS) take no bytes.
                    ch.lp_offsets.push_back(std::min(offset, echo_text.size()));
                    offset += m->vocab->token_to_piece(echo_tokens[k]).size();
                }
                lp_prompt = {{"tokens", ch.lp_tokens},
                             {"token_logprobs", ch.lp_values},
                             {"top_logprobs", ch.lp_top},
                             {"text_offset", ch.lp_offsets}};
            }
            ch.text = echo_text;
            if (stream)
                out += chunk({{"index", i},
                              {"text", echo_text},
                              {"logprobs", lp_prompt.is_null() ? json() : lp_prompt},
                              {"finish_reason", nullptr}});
        }
        json lp;
        add_logprobs(*job, ch, *m, ev, stream ? &lp : nullptr);
        if (stream && ev.done && ev.finish_reason == "error")
            return "data: " +
                   to_text(json{{"error", {{"message", ev.error}, {"type", "server_error"}}}}) +
                   "\n\n";
        if (stream && job->chat && !ch.started)
            out += chunk({{"index", i},
                          {"delta", {{"role", "assistant"}, {"content", ""}}},
                          {"logprobs", nullptr},
                          {"finish_reason", nullptr}});
        ch.started = true;
        ch.text += ev.text;
        if (ev.done) {
            ch.finish = finish_reason(ev.finish_reason);
            ch.prompt_tokens = ev.prompt_tokens;
            ch.completion_tokens = ev.completion_tokens;
            ch.cached = ev.cached_tokens;
        }
        if (!stream) return out;
        // With tools, text that may be a call is held back until the choice is done.
        std::string piece = ev.text;
        if (job->tools) {
            const json msg = ev.done ? job->message(ch) : json();
            const bool has_calls = msg.contains("tool_calls");
            piece = tool_stream_piece(ch.text, job->tool_format, ev.done, has_calls, ch.emitted);
            if (has_calls) {
                json calls = msg["tool_calls"];
                for (size_t k = 0; k < calls.size(); ++k) calls[k]["index"] = k;
                out += chunk({{"index", i},
                              {"delta", {{"tool_calls", calls}}},
                              {"logprobs", nullptr},
                              {"finish_reason", nullptr}});
            }
        }
        if (!piece.empty() || !lp.is_null()) {
            json c = {
                {"index", i}, {"logprobs", lp.is_null() ? json() : lp}, {"finish_reason", nullptr}};
            if (job->chat)
                c["delta"] = {{"content", piece}};
            else
                c["text"] = piece;
            out += chunk(c);
        }
        if (ev.done && ev.finish_reason != "cancelled") {
            json c = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", ch.finish}};
            if (job->chat)
                c["delta"] = json::object();
            else
                c["text"] = "";
            out += chunk(c);
        }
        return out;
    };
    auto at_end = [job, stream]() -> std::string {
        if (stream) {
            std::string out;
            if (job->include_usage)
                out += "data: " +
                       to_text(json{{"id", job->id},
                                    {"object", "chat.completion.chunk"},
                                    {"created", job->created},
                                    {"model", job->model},
                                    {"choices", json::array()},
                                    {"usage", job->usage()}}) +
                       "\n\n";
            return out + "data: [DONE]\n\n";
        }
        json choices = json::array();
        for (size_t i = 0; i < job->choices.size(); ++i) {
            const Choice& ch = job->choices[i];
            json c = {{"index", i}};
            if (job->chat) {
                c["message"] = job->message(job->choices[i]);
                c["finish_reason"] = ch.finish;
                c["logprobs"] =
                    job->top_logprobs >= 0 ? json{{"content", ch.logprobs_chat}} : json();
            } else {
                c["finish_reason"] = ch.finish;
                c["text"] = ch.text;
                c["logprobs"] = job->top_logprobs >= 0 ? json{{"tokens", ch.lp_tokens},
                                                              {"token_logprobs", ch.lp_values},
                                                              {"top_logprobs", ch.lp_top},
                                                              {"text_offset", ch.lp_offsets}}
                                                       : json();
            }
            choices.push_back(c);
        }
        return to_text(json{{"id", job->id},
                            {"object", job->chat ? "chat.completion" : "text_completion"},
                            {"created", job->created},
                            {"model", job->model},
                            {"system_fingerprint", "lokal"},
                            {"choices", choices},
                            {"usage", job->usage()}});
    };
    respond(s, req, res, stream, stream ? "text/event-stream" : "application/json", guard, on_event,
            at_end);
}

// The OpenAI clients ask for base64 by default: little-endian float32 bytes.
std::string base64_floats(const std::vector<float>& v) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string bytes(v.size() * 4, '\0');
    std::memcpy(bytes.data(), v.data(), bytes.size());
    std::string out;
    for (size_t i = 0; i < bytes.size(); i += 3) {
        const size_t n = std::min<size_t>(3, bytes.size() - i);
        uint32_t x = 0;
        for (size_t k = 0; k < 3; ++k) x = x << 8 | (k < n ? (uint8_t)bytes[i + k] : 0);
        for (size_t k = 0; k < 4; ++k) out += k <= n ? tbl[(x >> (18 - 6 * k)) & 63] : '=';
    }
    return out;
}

}  // namespace

void register_openai(Server::Impl& s) {
    s.post("/v1/chat/completions",
           guarded(s, Api::OpenAI, [&s](const httplib::Request& req, httplib::Response& res) {
               const json body = parse_body(req, s.opts.max_json_depth);
               reject_fields(body, {"functions", "function_call", "audio", "prediction"});
               if (!body.contains("messages"))
                   throw HttpError(400, "field 'messages' is required", "invalid_request_error",
                                   "messages");
               const int n = choices_n(body);
               auto job = std::make_shared<Job>();
               job->id = random_id("chatcmpl-");
               if (get_bool(body, "logprobs").value_or(false)) {
                   job->top_logprobs = clamp_int(get_int(body, "top_logprobs").value_or(0));
                   if (job->top_logprobs < 0 || job->top_logprobs > 20)
                       throw HttpError(400, "'top_logprobs' must be between 0 and 20",
                                       "invalid_request_error", "top_logprobs");
               }
               auto guard = std::make_shared<RequestGuard>(
                   RequestGuard{s, acquire_model(s, body), std::nullopt, {}});
               const ServedModel& m = *guard->model;
               job->model = m.name;
               const auto tools = tool_setup(m.chat_template, req.body, true);
               const std::vector<int32_t> prompt = chat_prompt(m, body["messages"], tools.get());
               check_prompt_fits(m, prompt.size());
               const auto schema = output_schema(req, body, Api::OpenAI);
               if (tools && tools->forced && schema)
                   throw HttpError(400,
                                   "'response_format' and a forced 'tool_choice' exclude "
                                   "each other",
                                   "invalid_request_error", "tool_choice");
               // With a response_format the answer is that document, not read as calls.
               if (tools && !schema) {
                   job->tools = true;
                   job->tool_names = tools->names;
                   job->tool_format = tools->format;
                   job->parallel_tool_calls = get_bool(body, "parallel_tool_calls").value_or(true);
               }
               std::vector<SeqRequest> reqs;
               for (int i = 0; i < n; ++i) {
                   SeqRequest r = make_request(m, body);
                   r.prompt = prompt;
                   r.sampling.json_schema = schema;
                   if (job->tools) constrain_calls(*tools, r.sampling);
                   r.top_logprobs = job->top_logprobs;
                   r.sampling.seed += (uint64_t)i;  // n choices from one seed differ but reproduce
                   reqs.push_back(std::move(r));
               }
               std::vector<std::vector<SeqRequest>> groups;
               groups.push_back(std::move(reqs));
               job->n = (int)groups[0].size();
               run(s, req, res, body, guard, std::move(groups), job);
           }));
    s.post("/v1/completions",
           guarded(s, Api::OpenAI, [&s](const httplib::Request& req, httplib::Response& res) {
               const json body = parse_body(req, s.opts.max_json_depth);
               reject_fields(body, {"tools"});
               const std::string suffix = get_string(body, "suffix").value_or("");
               const bool echo = get_bool(body, "echo").value_or(false);
               if (echo && !suffix.empty())
                   throw HttpError(400, "'echo' cannot be combined with 'suffix'",
                                   "invalid_request_error", "echo");
               if (get_int(body, "best_of").value_or(1) != 1)
                   throw HttpError(400, "'best_of' other than 1 is not implemented by lokal yet",
                                   "invalid_request_error", "best_of");
               const int n = choices_n(body);
               auto job = std::make_shared<Job>();
               job->id = random_id("cmpl-");
               job->chat = false;
               if (auto lp = get_int(body, "logprobs")) {
                   if (*lp < 0 || *lp > 20)
                       throw HttpError(400, "'logprobs' must be between 0 and 20",
                                       "invalid_request_error", "logprobs");
                   job->top_logprobs = (int)*lp;
               }
               auto guard = std::make_shared<RequestGuard>(
                   RequestGuard{s, acquire_model(s, body), std::nullopt, {}});
               const ServedModel& m = *guard->model;
               job->model = m.name;
               // One prompt (text or token ids), or several: a list of texts or of token
               // id lists. Choice i answers prompt i / n.
               auto it = body.find("prompt");
               if (it == body.end() || it->is_null())
                   throw HttpError(400, "field 'prompt' is required", "invalid_request_error",
                                   "prompt");
               auto token_ids = [&](const json& list) {
                   std::vector<int32_t> ids;
                   for (auto& t : list) {
                       if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
                           t.get<int64_t>() >= m.vocab->n_tokens())
                           throw HttpError(400, "'prompt' holds an invalid token id",
                                           "invalid_request_error", "prompt");
                       ids.push_back(t.get<int32_t>());
                   }
                   return ids;
               };
               std::vector<std::vector<int32_t>> prompts;
               std::vector<std::string> texts;  // as sent (echo); empty for token ids
               const bool is_ids = it->is_array() && !it->empty() && (*it)[0].is_number_integer();
               if (it->is_string()) {
                   texts.push_back(it->get<std::string>());
               } else if (is_ids) {
                   prompts.push_back(token_ids(*it));
               } else if (it->is_array() && !it->empty() && it->size() <= kMaxPrompts) {
                   for (auto& p : *it) {
                       if (p.is_string())
                           texts.push_back(p.get<std::string>());
                       else if (p.is_array() && !p.empty() && texts.empty())
                           prompts.push_back(token_ids(p));
                       else
                           throw HttpError(400,
                                           "'prompt' must be a string, a list of token ids, or a "
                                           "list of either (not mixed, not empty)",
                                           "invalid_request_error", "prompt");
                   }
                   if (!texts.empty() && !prompts.empty())
                       throw HttpError(400, "'prompt' mixes texts and token id lists",
                                       "invalid_request_error", "prompt");
               } else {
                   throw HttpError(400,
                                   "'prompt' must be a string, a list of token ids, or a list of "
                                   "1 to " +
                                       std::to_string(kMaxPrompts) + " strings or token id lists",
                                   "invalid_request_error", "prompt");
               }
               if (!suffix.empty() && (!prompts.empty() || texts.size() != 1))
                   throw HttpError(400, "'suffix' needs 'prompt' as one text",
                                   "invalid_request_error", "suffix");
               // With a suffix: code completion between the prompt and it.
               for (const std::string& t : texts)
                   prompts.push_back(suffix.empty() ? text_prompt(m, t) : fim_prompt(m, t, suffix));
               if (prompts.size() * (size_t)n > kMaxChoices)
                   throw HttpError(
                       400,
                       "at most " + std::to_string(kMaxChoices) + " choices in all (prompts x n)",
                       "invalid_request_error", "n");
               for (auto& p : prompts) check_prompt_fits(m, p.size());
               job->n = n;
               if (echo) {
                   job->echo = true;
                   job->echo_tokens = prompts;
                   for (size_t k = 0; k < prompts.size(); ++k) {
                       std::string text;
                       if (k < texts.size())
                           text = texts[k];
                       else
                           for (int32_t t : prompts[k]) text += m.vocab->token_to_piece(t);
                       job->echo_texts.push_back(std::move(text));
                   }
               }
               std::vector<std::vector<SeqRequest>> groups;
               for (auto& p : prompts) {
                   std::vector<SeqRequest> reqs;
                   for (int i = 0; i < n; ++i) {
                       SeqRequest r = make_request(m, body);
                       r.prompt = p;
                       r.top_logprobs = job->top_logprobs;
                       r.prompt_logprobs = echo && job->top_logprobs >= 0;
                       r.sampling.seed += (uint64_t)i;
                       reqs.push_back(std::move(r));
                   }
                   groups.push_back(std::move(reqs));
               }
               run(s, req, res, body, guard, std::move(groups), job);
           }));
    s.post("/v1/embeddings",
           guarded(s, Api::OpenAI, [&s](const httplib::Request& req, httplib::Response& res) {
               const json body = parse_body(req, s.opts.max_json_depth);
               const std::string format = get_string(body, "encoding_format").value_or("float");
               if (format != "float" && format != "base64")
                   throw HttpError(400, "'encoding_format' must be \"float\" or \"base64\"",
                                   "invalid_request_error", "encoding_format");
               if (!body.contains("input"))
                   throw HttpError(400, "field 'input' is required", "invalid_request_error",
                                   "input");
               auto guard = std::make_shared<RequestGuard>(
                   RequestGuard{s, acquire_model(s, body), std::nullopt, {}});
               const ServedModel& m = *guard->model;
               const int dims = embedding_dimensions(body, m.model->hp.dim);
               std::vector<std::vector<int32_t>> prompts;
               const json& in = body["input"];
               if (in.is_array() && !in.empty() && in[0].is_number_integer()) {
                   prompts.push_back(in.get<std::vector<int32_t>>());
               } else {
                   for (auto& t : get_string_list(body, "input"))
                       prompts.push_back(text_prompt(m, t));
               }
               std::vector<SeqRequest> reqs;
               for (auto& p : prompts) {
                   check_prompt_fits(m, p.size(), true);
                   SeqRequest r;
                   r.embed = true;
                   r.prompt = p;
                   reqs.push_back(std::move(r));
               }
               for (auto& r : reqs)
                   guard->handles.push_back(submit(s, *guard->model, std::move(r)));
               std::vector<std::vector<float>> out(reqs.size());
               int tokens = 0;
               respond(
                   s, req, res, false, "application/json", guard,
                   [&](size_t i, SeqEvent& ev) {
                       if (ev.done) out[i] = ev.embedding, tokens += ev.prompt_tokens;
                       return std::string();
                   },
                   [&]() -> std::string {
                       for (auto& e : out) shorten_embedding(e, dims);
                       json data = json::array();
                       for (size_t i = 0; i < out.size(); ++i)
                           data.push_back(
                               {{"object", "embedding"},
                                {"index", i},
                                {"embedding",
                                 format == "base64" ? json(base64_floats(out[i])) : json(out[i])}});
                       return to_text(
                           json{{"object", "list"},
                                {"data", data},
                                {"model", m.name},
                                {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}});
                   });
           }));
}

}  // namespace lokal::server
