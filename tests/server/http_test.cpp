// The HTTP API against a live in-process server on a loopback port.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/context.h"
#include "fim_vocab.h"
#include "live_server.h"
#include "model/synth.h"
#include "server/server.h"
#include "shared_path.h"
#include "tokenizer/vocab.h"

namespace lokal::server {
namespace {

using json = nlohmann::json;
using test::Live;
using test::ndjson;
using test::sse;

ServerOptions base_options() {
    ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.models.models_dir = test::shared_path("models");
    o.models.store_dir = "/nonexistent-lokal-store";
    o.models.n_ctx = 128;
    o.models.parallel = 4;
    o.models.n_threads = 2;
    o.default_model = "stories260K";
    return o;
}

Live& live() {
    static Live l(base_options());
    return l;
}

httplib::Result post(const std::string& path, const json& body, httplib::Headers h = {}) {
    return live().client().Post(path.c_str(), h, body.dump(), "application/json");
}

// A second server with room for structured answers (JSON may be pretty-printed, and this
// model's tokens are short).
Live& live_roomy() {
    static Live l([] {
        ServerOptions o = base_options();
        o.models.n_ctx = 1024;
        return o;
    }());
    return l;
}
httplib::Result post_roomy(const std::string& path, const json& body) {
    return live_roomy().client().Post(path.c_str(), body.dump(), "application/json");
}

TEST(Http, HealthVersionTagsAndHead) {
    auto c = live().client();
    auto r = c.Get("/health");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(c.Get("/api/version")->status, 200);
    EXPECT_EQ(c.Head("/")->status, 200);
    auto tags = json::parse(c.Get("/api/tags")->body);
    bool found = false;
    for (auto& m : tags["models"]) found |= m["name"] == "stories260K";
    EXPECT_TRUE(found) << tags.dump();
    auto models = json::parse(c.Get("/v1/models")->body);
    EXPECT_EQ(models["object"], "list");
    EXPECT_FALSE(models["data"].empty());
    auto ps = json::parse(c.Get("/api/ps")->body);
    EXPECT_EQ(ps["models"][0]["name"], "stories260K");
}

TEST(Http, OllamaGenerateAndChat) {
    json body = {{"model", "stories260K"},
                 {"prompt", "Once upon a time"},
                 {"raw", true},
                 {"stream", false},
                 {"options", {{"temperature", 0}, {"num_predict", 12}}}};
    auto r = post("/api/generate", body);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    EXPECT_TRUE(j["done"].get<bool>());
    EXPECT_EQ(j["eval_count"], 12);
    EXPECT_EQ(j["done_reason"], "length");
    EXPECT_FALSE(j["response"].get<std::string>().empty());
    EXPECT_GT(j["prompt_eval_count"].get<int>(), 0);
    EXPECT_TRUE(j["context"].is_array());

    // Streaming (the default) gives the same text in NDJSON pieces.
    body.erase("stream");
    r = post("/api/generate", body);
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/x-ndjson");
    auto lines = ndjson(r->body);
    ASSERT_GE(lines.size(), 2u);
    std::string text;
    for (auto& l : lines) text += l["response"].get<std::string>();
    EXPECT_EQ(text, j["response"]);
    EXPECT_TRUE(lines.back()["done"].get<bool>());
    EXPECT_EQ(lines.back()["eval_count"], 12);

    json chat = {{"model", "stories260K"},
                 {"messages", {{{"role", "user"}, {"content", "Hello"}}}},
                 {"options", {{"num_predict", 8}, {"seed", 3}}}};
    r = post("/api/chat", chat);
    ASSERT_EQ(r->status, 200) << r->body;
    lines = ndjson(r->body);
    EXPECT_EQ(lines.back()["message"]["role"], "assistant");
    EXPECT_TRUE(lines.back()["done"].get<bool>());

    // Empty prompt: load only.
    r = post("/api/generate", {{"model", "stories260K"}});
    EXPECT_EQ(json::parse(r->body)["done_reason"], "load");
}

TEST(Http, OpenAIChatCompletionsAndStreaming) {
    json body = {{"model", "stories260K"},
                 {"messages", {{{"role", "user"}, {"content", "Tell a story"}}}},
                 {"max_tokens", 10},
                 {"temperature", 0}};
    auto r = post("/v1/chat/completions", body);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["completion_tokens"], 10);
    const std::string full = j["choices"][0]["message"]["content"];

    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    r = post("/v1/chat/completions", body);
    ASSERT_EQ(r->status, 200);
    auto events = sse(r->body);
    ASSERT_GE(events.size(), 3u);
    EXPECT_EQ(events.back(), "[DONE]");
    std::string text;
    bool usage = false, finish = false;
    for (size_t i = 0; i + 1 < events.size(); ++i) {
        json e = json::parse(events[i]);
        if (e.contains("usage")) usage = e["usage"]["completion_tokens"] == 10;
        for (auto& c : e["choices"]) {
            if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
            finish |= c["finish_reason"] == "length";
        }
    }
    EXPECT_EQ(text, full);
    EXPECT_TRUE(usage);
    EXPECT_TRUE(finish);
}

TEST(Http, OpenAICompletionsLogprobsAndN) {
    json body = {{"model", "stories260K"},
                 {"prompt", "The dog"},
                 {"max_tokens", 5},
                 {"logprobs", 3},
                 {"n", 2},
                 {"seed", 11},
                 {"temperature", 1.0}};
    auto r = post("/v1/completions", body);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    ASSERT_EQ(j["choices"].size(), 2u);
    auto& lp = j["choices"][0]["logprobs"];
    EXPECT_EQ(lp["tokens"].size(), 5u);
    EXPECT_EQ(lp["top_logprobs"][0].size(), 3u);
    EXPECT_LE(lp["token_logprobs"][0].get<double>(), 0.0);
    EXPECT_EQ(j["usage"]["completion_tokens"], 10);
    // Same seed, same output.
    json j2 = json::parse(post("/v1/completions", body)->body);
    EXPECT_EQ(j["choices"][0]["text"], j2["choices"][0]["text"]);

    json chat = {{"model", "stories260K"},
                 {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                 {"max_tokens", 3},
                 {"logprobs", true},
                 {"top_logprobs", 2}};
    j = json::parse(post("/v1/chat/completions", chat)->body);
    ASSERT_EQ(j["choices"][0]["logprobs"]["content"].size(), 3u);
    EXPECT_EQ(j["choices"][0]["logprobs"]["content"][0]["top_logprobs"].size(), 2u);
}

// echo + logprobs + max_tokens 0 (how lm-evaluation-harness scores text through an
// OpenAI-compatible server): every prompt token's log-probability given the ones before it,
// checked against a log-softmax of a separate Context's logits; then echo with generation,
// streamed, with n = 2, and the refusals.
TEST(Http, EchoScoresThePrompt) {
    auto model = Model::load(test::shared_path("models/stories260K.gguf"));
    auto vocab = Vocab::from_gguf(*model->file);
    const std::vector<int32_t> ids =
        vocab->tokenize("Once upon a time there was a cat", true, true);
    std::vector<double> want(ids.size(), 0.0);
    std::vector<std::vector<std::pair<std::string, double>>> want_top(ids.size());  // 2 best
    {
        ContextParams cp;
        cp.n_ctx = 64;
        Context ctx(*model, cp);
        std::vector<float> logits;
        ctx.eval(ctx.cache().create_sequence(), ids, true, logits);
        const int nv = model->hp.n_vocab;
        for (size_t k = 1; k < ids.size(); ++k) {
            const float* l = logits.data() + (k - 1) * nv;
            double mx = l[0], sum = 0;
            for (int v = 0; v < nv; ++v) mx = std::max(mx, (double)l[v]);
            for (int v = 0; v < nv; ++v) sum += std::exp((double)l[v] - mx);
            want[k] = (double)l[ids[k]] - mx - std::log(sum);
            std::vector<int32_t> order((size_t)nv);
            for (int v = 0; v < nv; ++v) order[(size_t)v] = v;
            std::sort(order.begin(), order.end(),
                      [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
            for (int r = 0; r < 2; ++r)
                want_top[k].push_back({vocab->token_to_piece(order[(size_t)r]),
                                       (double)l[order[(size_t)r]] - mx - std::log(sum)});
        }
    }
    std::string text;
    for (int32_t t : ids) text += vocab->token_to_piece(t);

    json req = {{"model", "stories260K"}, {"prompt", ids},   {"echo", true},
                {"logprobs", 2},          {"max_tokens", 0}, {"temperature", 0}};
    auto r = post("/v1/completions", req);
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    json c = j["choices"][0];
    EXPECT_EQ(c["text"], text);
    EXPECT_EQ(c["finish_reason"], "length");
    EXPECT_EQ(j["usage"]["completion_tokens"], 0);
    ASSERT_EQ(c["logprobs"]["tokens"].size(), ids.size());
    EXPECT_TRUE(c["logprobs"]["token_logprobs"][0].is_null());
    EXPECT_TRUE(c["logprobs"]["top_logprobs"][0].is_null());
    for (size_t k = 1; k < ids.size(); ++k) {
        EXPECT_NEAR(c["logprobs"]["token_logprobs"][k].get<double>(), want[k], 1e-4) << k;
        const json& top = c["logprobs"]["top_logprobs"][k];
        ASSERT_EQ(top.size(), 2u);
        double best = -1e30;
        for (auto& [tok, lp] : top.items()) best = std::max(best, lp.get<double>());
        EXPECT_GE(best + 1e-6, c["logprobs"]["token_logprobs"][k].get<double>());
        for (const auto& [piece, lp] : want_top[k]) {  // the two most likely, as a full sort says
            ASSERT_TRUE(top.contains(piece)) << k << " '" << piece << "'";
            EXPECT_NEAR(top[piece].get<double>(), lp, 1e-4) << k;
        }
    }

    // With generation: the prompt's entries, then the generated tokens'; n = 2 both scored.
    req["max_tokens"] = 3;
    req["n"] = 2;
    r = post("/v1/completions", req);
    ASSERT_EQ(r->status, 200) << r->body;
    j = json::parse(r->body);
    ASSERT_EQ(j["choices"].size(), 2u);
    for (const json& ch : j["choices"]) {
        EXPECT_EQ(ch["logprobs"]["tokens"].size(), ids.size() + 3);
        EXPECT_EQ(ch["text"].get<std::string>().rfind(text, 0), 0u);
        EXPECT_NEAR(ch["logprobs"]["token_logprobs"][ids.size() - 1].get<double>(),
                    want[ids.size() - 1], 1e-4);
    }

    // Streamed, a text prompt: the first chunk is the prompt as sent.
    r = post("/v1/completions", {{"model", "stories260K"},
                                 {"prompt", "Once upon a time"},
                                 {"echo", true},
                                 {"max_tokens", 2},
                                 {"stream", true}});
    ASSERT_EQ(r->status, 200) << r->body;
    const auto events = sse(r->body);
    ASSERT_GE(events.size(), 2u);
    EXPECT_EQ(json::parse(events[0])["choices"][0]["text"], "Once upon a time");

    // max_tokens 0 is for scoring an echoed prompt only; echo and suffix do not mix.
    r = post("/v1/completions", {{"model", "stories260K"}, {"prompt", "a"}, {"max_tokens", 0}});
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("max_tokens"), std::string::npos);
    r = post("/v1/completions",
             {{"model", "stories260K"}, {"prompt", "a"}, {"echo", true}, {"suffix", "b"}});
    EXPECT_EQ(r->status, 400);
}

// Several prompts in one completion request: choice i answers prompt i / n, each prompt's
// greedy text is what it gives alone, usage counts each prompt once; echo + logprobs work
// per prompt (lm-evaluation-harness sends its batches so).
TEST(Http, SeveralPromptsInOneCompletion) {
    const std::vector<std::string> texts = {"Once upon a time", "Lily went to", "The sun"};
    std::vector<std::string> alone;
    int prompt_tokens = 0;
    for (const std::string& t : texts) {
        auto r =
            post("/v1/completions",
                 {{"model", "stories260K"}, {"prompt", t}, {"max_tokens", 6}, {"temperature", 0}});
        ASSERT_EQ(r->status, 200) << r->body;
        const json j = json::parse(r->body);
        alone.push_back(j["choices"][0]["text"]);
        prompt_tokens += j["usage"]["prompt_tokens"].get<int>();
    }
    auto r = post("/v1/completions", {{"model", "stories260K"},
                                      {"prompt", texts},
                                      {"max_tokens", 6},
                                      {"temperature", 0},
                                      {"n", 2}});
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    ASSERT_EQ(j["choices"].size(), 6u);
    for (size_t i = 0; i < 6; ++i) {
        EXPECT_EQ(j["choices"][i]["index"], i);
        EXPECT_EQ(j["choices"][i]["text"], alone[i / 2]) << i;
    }
    EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_tokens);
    EXPECT_EQ(j["usage"]["completion_tokens"], 6 * 6);

    // Token id lists, echoed and scored.
    auto vocab_file = gguf::File::open(test::shared_path("models/stories260K.gguf"));
    auto vocab = Vocab::from_gguf(*vocab_file);
    const json ids = {vocab->tokenize(texts[0], true, true), vocab->tokenize(texts[1], true, true)};
    r = post("/v1/completions", {{"model", "stories260K"},
                                 {"prompt", ids},
                                 {"echo", true},
                                 {"logprobs", 1},
                                 {"max_tokens", 0}});
    ASSERT_EQ(r->status, 200) << r->body;
    j = json::parse(r->body);
    ASSERT_EQ(j["choices"].size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(j["choices"][i]["logprobs"]["tokens"].size(), ids[i].size());
        EXPECT_TRUE(j["choices"][i]["logprobs"]["token_logprobs"][0].is_null());
        EXPECT_TRUE(j["choices"][i]["logprobs"]["token_logprobs"][1].is_number());
    }

    for (const json& bad : {json::array(), json{"a", {1, 2}}, json{{1, 2}, "a"},
                            json{json::array()}, json{{1, 2}, {-1}}})
        EXPECT_EQ(post("/v1/completions", {{"model", "stories260K"}, {"prompt", bad}})->status, 400)
            << bad;
    // A suffix goes with one text only; all choices together are bounded.
    EXPECT_EQ(
        post("/v1/completions", {{"model", "stories260K"}, {"prompt", {"a", "b"}}, {"suffix", "c"}})
            ->status,
        400);
    EXPECT_EQ(
        post("/v1/completions",
             {{"model", "stories260K"}, {"prompt", std::vector<std::string>(64, "a")}, {"n", 3}})
            ->status,
        400);
}

TEST(Http, Embeddings) {
    auto r = post("/api/embed", {{"model", "stories260K"}, {"input", {"a cat", "a dog"}}});
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    ASSERT_EQ(j["embeddings"].size(), 2u);
    EXPECT_EQ(j["embeddings"][0].size(), 64u);
    r = post("/v1/embeddings", {{"model", "stories260K"}, {"input", "a cat"}});
    ASSERT_EQ(r->status, 200) << r->body;
    j = json::parse(r->body);
    EXPECT_EQ(j["data"][0]["embedding"].size(), 64u);
    r = post("/api/embeddings", {{"model", "stories260K"}, {"prompt", "a cat"}});
    EXPECT_EQ(json::parse(r->body)["embedding"].size(), 64u);

    // `dimensions`: the first n values of the full embedding, L2-normalized again.
    const std::vector<float> full = j["data"][0]["embedding"];
    for (const char* path : {"/api/embed", "/v1/embeddings"}) {
        r = post(path, {{"model", "stories260K"}, {"input", "a cat"}, {"dimensions", 16}});
        ASSERT_EQ(r->status, 200) << r->body;
        j = json::parse(r->body);
        const std::vector<float> got =
            std::string(path) == "/api/embed" ? j["embeddings"][0] : j["data"][0]["embedding"];
        ASSERT_EQ(got.size(), 16u) << path;
        double norm = 0;
        for (int i = 0; i < 16; ++i) norm += (double)full[i] * full[i];
        for (int i = 0; i < 16; ++i)
            EXPECT_NEAR(got[i], full[i] / std::sqrt(norm), 1e-6) << path << " " << i;
        for (const json& bad : {json(0), json(65), json("16"), json(-3)}) {
            r = post(path, {{"model", "stories260K"}, {"input", "a cat"}, {"dimensions", bad}});
            EXPECT_EQ(r->status, 400) << path << " " << bad;
            EXPECT_NE(r->body.find("dimensions"), std::string::npos) << r->body;
        }
    }
    // The legacy endpoint never had the field: refused, not ignored.
    r = post("/api/embeddings", {{"model", "stories260K"}, {"prompt", "a cat"}, {"dimensions", 8}});
    EXPECT_EQ(r->status, 400);
}

TEST(Http, ErrorsAreJsonWithTheRightStatus) {
    auto c = live().client();
    auto r = c.Post("/api/chat", "{not json", "application/json");
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE(json::parse(r->body).contains("error"));
    r = c.Post("/v1/chat/completions", "[1,2]", "application/json");
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE(json::parse(r->body)["error"].contains("message"));
    r = c.Post("/v1/chat/completions", std::string(100, '[') + std::string(100, ']'),
               "application/json");
    EXPECT_EQ(r->status, 400);

    r = post("/v1/chat/completions",
             {{"model", "stories260K"}, {"messages", json::array()}, {"temperature", "hot"}});
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(json::parse(r->body)["error"]["param"], "temperature");
    r = post("/v1/chat/completions", {{"model", "stories260K"},
                                      {"messages", {{{"role", "user"}, {"content", "x"}}}},
                                      {"functions", {{{"name", "f"}}}}});
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("functions"), std::string::npos);
    r = post("/v1/chat/completions", {{"model", "stories260K"},
                                      {"messages", {{{"role", "user"}, {"content", "x"}}}},
                                      {"response_format", {{"type", "json_schema"}}}});
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("response_format"), std::string::npos);
    r = post("/api/generate", {{"model", "no-such-model"}, {"prompt", "x"}});
    EXPECT_EQ(r->status, 404);

    std::string long_prompt;
    for (int i = 0; i < 200; ++i) long_prompt += "once upon a time ";
    r = post("/v1/completions", {{"model", "stories260K"}, {"prompt", long_prompt}});
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(json::parse(r->body)["error"]["message"].get<std::string>().find("context"),
              std::string::npos);

    r = c.Post("/api/generate", std::string(9u << 20, ' '), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    // Chunked bodies are read like any other, under the same cap: a small one is handled
    // (here: a wrong type, 400), one past --max-body is cut off with 413 (or the connection
    // is dropped while the client is still sending), and the server carries on.
    auto chunked = [&](size_t total) {
        httplib::Client cc = live().client();
        return cc.Post(
            "/api/generate",
            [total](size_t offset, httplib::DataSink& sink) {
                static const std::string piece = "{\"model\": 1}" + std::string(64 * 1024, ' ');
                if (offset >= total) {
                    sink.done();
                    return true;
                }
                const size_t n = offset == 0 ? 12 : std::min(piece.size() - 12, total - offset);
                return sink.write(offset == 0 ? piece.data() : piece.data() + 12, n);
            },
            "application/json");
    };
    r = chunked(12);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("model"), std::string::npos) << r->body;
    r = chunked(9u << 20);
    if (r) {
        EXPECT_EQ(r->status, 413);
    }
    EXPECT_EQ(c.Get("/health")->status, 200);
    EXPECT_EQ(c.Get("/no/such/route")->status, 404);
}

// Found by fuzz/http_fuzz.cpp: a model name is never a path into the server's files (it had
// opened /etc/passwd as a GGUF and echoed its first bytes), and request bytes that are not
// UTF-8 come back in a 400 (dumping them into the error message had thrown: a 500).
// Structured output: Ollama "format" and OpenAI "response_format" make even this tiny model
// (which knows nothing of JSON) answer with JSON of the requested shape, keys in the
// schema's order (not the alphabetical order of a plain JSON parse); bad schemas are 400s.
TEST(Http, StructuredOutput) {
    // "b" before "a": the output must keep this order.
    const std::string schema_text =
        R"({"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "boolean"},
            "c": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2}},
            "required": ["b", "a", "c"], "additionalProperties": false})";
    auto check = [](const std::string& text) {
        SCOPED_TRACE(text);
        json j;
        ASSERT_NO_THROW(j = json::parse(text));
        ASSERT_TRUE(j.is_object());
        EXPECT_EQ(j.size(), 3u);
        EXPECT_TRUE(j["b"].is_number_integer());
        EXPECT_TRUE(j["a"].is_boolean());
        ASSERT_TRUE(j["c"].is_array());
        EXPECT_LE(j["c"].size(), 2u);
        for (auto& v : j["c"]) EXPECT_TRUE(v == "x" || v == "y");
        EXPECT_LT(text.find("\"b\""), text.find("\"a\""));
    };
    // Raw bodies, so that the schema's key order reaches the server as written.
    auto c = live().client();
    for (int seed : {1, 2, 3}) {
        const std::string gen = R"({"model": "stories260K", "prompt": "Once", "stream": false,
            "options": {"temperature": 1.0, "seed": )" +
                                std::to_string(seed) + R"(, "num_predict": 100}, "format": )" +
                                schema_text + "}";
        auto r = c.Post("/api/generate", gen, "application/json");
        ASSERT_EQ(r->status, 200) << r->body;
        json j = json::parse(r->body);
        EXPECT_EQ(j["done_reason"], "stop");
        check(j["response"]);
    }
    // Chat, streamed: the pieces join into the document.
    const std::string chat = R"({"model": "stories260K", "messages": [{"role": "user",
        "content": "Hi"}], "options": {"seed": 7, "num_predict": 100}, "format": )" +
                             schema_text + "}";
    auto r = c.Post("/api/chat", chat, "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    std::string text;
    for (auto& l : ndjson(r->body)) text += l["message"]["content"].get<std::string>();
    check(text);
    // "json": any object.
    r = post("/api/generate", {{"model", "stories260K"},
                               {"prompt", "Once"},
                               {"stream", false},
                               {"format", "json"},
                               {"options", {{"temperature", 0}, {"num_predict", 100}}}});
    ASSERT_EQ(r->status, 200) << r->body;
    json j = json::parse(r->body);
    const std::string any = j["response"];
    if (j["done_reason"] == "stop") {
        EXPECT_TRUE(json::accept(any)) << any;
        EXPECT_TRUE(json::parse(any).is_object()) << any;
    } else {
        EXPECT_EQ(any.substr(0, 1), "{") << any;
    }

    // OpenAI: json_schema, two choices sharing the prompt, and json_object.
    const std::string oa = R"({"model": "stories260K", "messages": [{"role": "user",
        "content": "Hi"}], "seed": 5, "n": 2, "max_tokens": 100, "response_format":
        {"type": "json_schema", "json_schema": {"name": "t", "strict": true, "schema": )" +
                           schema_text + "}}}";
    r = c.Post("/v1/chat/completions", oa, "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    j = json::parse(r->body);
    ASSERT_EQ(j["choices"].size(), 2u);
    for (auto& ch : j["choices"]) {
        EXPECT_EQ(ch["finish_reason"], "stop");
        check(ch["message"]["content"]);
    }
    r = post("/v1/chat/completions", {{"model", "stories260K"},
                                      {"messages", {{{"role", "user"}, {"content", "x"}}}},
                                      {"max_tokens", 100},
                                      {"response_format", {{"type", "json_object"}}}});
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(
        json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>().substr(0, 1),
        "{");

    // Refusals name the field and the problem.
    const std::pair<json, std::string> bad[] = {
        {{{"format", "xml"}}, "format"},
        {{{"format", 3}}, "format"},
        {{{"format", {{"type", "string"}, {"pattern", "^a"}}}}, "pattern"},
        {{{"format", {{"type", "object"}, {"required", {"zz"}}}}}, "zz"},
    };
    for (const auto& [extra, needle] : bad) {
        json body = {{"model", "stories260K"}, {"prompt", "x"}, {"stream", false}};
        body.update(extra);
        r = post("/api/generate", body);
        EXPECT_EQ(r->status, 400) << body.dump();
        EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find(needle), std::string::npos)
            << r->body;
    }
    for (const json& rf :
         {json{{"type", "yaml"}}, json{{"type", "json_schema"}},
          json{{"type", "json_schema"}, {"json_schema", {{"schema", 1}}}},
          json{{"type", "json_schema"}, {"json_schema", {{"schema", {{"minimum", 1}}}}}},
          json("json")}) {
        r = post("/v1/chat/completions", {{"model", "stories260K"},
                                          {"messages", {{{"role", "user"}, {"content", "x"}}}},
                                          {"response_format", rf}});
        EXPECT_EQ(r->status, 400) << rf.dump();
        EXPECT_EQ(json::parse(r->body)["error"]["param"], "response_format") << r->body;
    }
}

// Tools: a forced tool_choice makes even this tiny model (no chat template: the tools are
// described in a system message) answer with a call of an allowed function whose
// arguments follow its parameters schema; results go back in tool messages.
TEST(Http, ToolCalls) {
    const json tools = json::parse(R"([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
         "parameters": {"type": "object", "properties": {"city": {"type": "string",
            "maxLength": 10}, "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}}},
        {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
         "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
         "required": ["a", "b"]}}}])");
    const json messages = {{{"role", "user"}, {"content", "Weather in Paris?"}}};
    auto check_call = [](const json& call) -> std::string {
        SCOPED_TRACE(call.dump());
        EXPECT_EQ(call["type"], "function");
        EXPECT_EQ(call["id"].get<std::string>().rfind("call_", 0), 0u);
        const std::string name = call["function"]["name"];
        const json args = json::parse(call["function"]["arguments"].get<std::string>());
        if (name == "get_weather") {
            EXPECT_TRUE(args["city"].is_string());
            EXPECT_TRUE(args["unit"] == "c" || args["unit"] == "f");
        } else {
            EXPECT_EQ(name, "add");
            EXPECT_TRUE(args["a"].is_number_integer());
            EXPECT_TRUE(args["b"].is_number_integer());
        }
        return name;
    };
    for (int seed : {1, 2}) {
        auto r = post_roomy("/v1/chat/completions", {{"model", "stories260K"},
                                                     {"messages", messages},
                                                     {"tools", tools},
                                                     {"tool_choice", "required"},
                                                     {"seed", seed},
                                                     {"max_tokens", 400}});
        ASSERT_EQ(r->status, 200) << r->body;
        const json ch = json::parse(r->body)["choices"][0];
        EXPECT_EQ(ch["finish_reason"], "tool_calls") << r->body;
        EXPECT_TRUE(ch["message"]["content"].is_null()) << r->body;
        ASSERT_EQ(ch["message"]["tool_calls"].size(), 1u) << r->body;
        check_call(ch["message"]["tool_calls"][0]);
    }
    // A named function, streamed: the call comes as one tool_calls delta.
    auto r = post_roomy("/v1/chat/completions",
                        {{"model", "stories260K"},
                         {"messages", messages},
                         {"tools", tools},
                         {"tool_choice", {{"type", "function"}, {"function", {{"name", "add"}}}}},
                         {"stream", true},
                         {"max_tokens", 400}});
    ASSERT_EQ(r->status, 200) << r->body;
    int calls = 0;
    std::string finish;
    for (const std::string& line : sse(r->body)) {
        if (line == "[DONE]") continue;
        json e = json::parse(line);
        for (auto& c : e["choices"]) {
            if (c["delta"].contains("tool_calls")) {
                ++calls;
                EXPECT_EQ(c["delta"]["tool_calls"][0]["index"], 0);
                EXPECT_EQ(check_call(c["delta"]["tool_calls"][0]), "add");
            }
            if (c["finish_reason"].is_string()) finish = c["finish_reason"];
        }
    }
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(finish, "tool_calls");

    // "auto" (the model may answer in text) and a conversation carrying an earlier call and
    // its result; "none" leaves the tools out of the prompt.
    json history = messages;
    history.push_back(
        {{"role", "assistant"},
         {"content", nullptr},
         {"tool_calls",
          {{{"id", "call_1"},
            {"type", "function"},
            {"function",
             {{"name", "get_weather"}, {"arguments", R"({"city":"Paris","unit":"c"})"}}}}}}});
    history.push_back({{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "21 C"}});
    r = post_roomy(
        "/v1/chat/completions",
        {{"model", "stories260K"}, {"messages", history}, {"tools", tools}, {"max_tokens", 4}});
    ASSERT_EQ(r->status, 200) << r->body;
    const int with_tools = json::parse(r->body)["usage"]["prompt_tokens"];
    r = post_roomy("/v1/chat/completions", {{"model", "stories260K"},
                                            {"messages", history},
                                            {"tools", tools},
                                            {"tool_choice", "none"},
                                            {"max_tokens", 4}});
    ASSERT_EQ(r->status, 200) << r->body;
    // The tools (described in a system message: this model has no template) cost tokens.
    EXPECT_GT(with_tools, json::parse(r->body)["usage"]["prompt_tokens"].get<int>() + 100);
    // Ollama: tools accepted on /api/chat and described to the model.
    r = post_roomy("/api/chat", {{"model", "stories260K"},
                                 {"messages", history},
                                 {"tools", tools},
                                 {"stream", false},
                                 {"options", {{"num_predict", 4}}}});
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["prompt_eval_count"], with_tools) << r->body;

    // Refusals name the field.
    const std::pair<json, std::string> bad[] = {
        {{{"tools", tools}, {"tool_choice", {{"type", "function"}, {"function", {{"name", "x"}}}}}},
         "tool_choice"},
        {{{"tools", tools}, {"tool_choice", "always"}}, "tool_choice"},
        {{{"tool_choice", "required"}}, "tool_choice"},
        {{{"tools", {{{"type", "function"}}}}}, "tools"},
        {{{"tools", {{{"type", 1}, {"function", json::object()}}}}}, "tools"},
        {{{"tools", json::array({{{"type", "function"}, {"function", {{"name", 5}}}}})}}, "tools"},
        {{{"messages",
           {{{"role", "assistant"},
             {"tool_calls",
              {{{"function",
                 {{"name", "f"},
                  {"arguments", std::string(100, '[') + std::string(100, ']')}}}}}}}}}},
         "messages"},
        {{{"tools", {{{"type", "retrieval"}}}}}, "tools"},
        {{{"tools", {{{"type", "function"}, {"function", {{"name", "bad name!"}}}}}}}, "tools"},
        {{{"tools",
           {{{"type", "function"},
             {"function",
              {{"name", "f"}, {"parameters", {{"type", "string"}, {"pattern", "a"}}}}}}}}},
         "tools"},
        {{{"tools", tools},
          {"tool_choice", "required"},
          {"response_format", {{"type", "json_object"}}}},
         "tool_choice"},
    };
    for (const auto& [extra, param] : bad) {
        json body = {{"model", "stories260K"}, {"messages", messages}};
        body.update(extra);
        r = post_roomy("/v1/chat/completions", body);
        EXPECT_EQ(r->status, 400) << body.dump();
        EXPECT_EQ(json::parse(r->body)["error"]["param"], param) << r->body;
    }
    // Odd shapes in earlier calls are not server errors.
    r = post_roomy("/v1/chat/completions",
                   {{"model", "stories260K"},
                    {"tools", tools},
                    {"max_tokens", 2},
                    {"messages",
                     {{{"role", "assistant"}, {"tool_calls", {{{"function", 5}}, {{"name", 7}}}}},
                      {{"role", "user"}, {"content", "x"}}}}});
    EXPECT_EQ(r->status, 200) << r->body;
    // With a response_format the answer is that format, never read as a call.
    r = post_roomy("/v1/chat/completions",
                   {{"model", "stories260K"},
                    {"messages", messages},
                    {"tools", tools},
                    {"max_tokens", 300},
                    {"seed", 3},
                    {"response_format",
                     {{"type", "json_schema"},
                      {"json_schema",
                       {{"name", "c"},
                        {"schema",
                         {{"type", "object"},
                          {"properties",
                           {{"name", {{"const", "add"}}},
                            {"parameters", {{"type", "object"}, {"properties", json::object()}}}}},
                          {"required", {"name", "parameters"}},
                          {"additionalProperties", false}}}}}}}});
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_FALSE(json::parse(r->body)["choices"][0]["message"].contains("tool_calls")) << r->body;
}

TEST(Http, ModelNamesAreNotServerPathsAndBadUtf8IsA400) {
    auto c = live().client();
    for (const std::string name :
         {"../../../../etc/passwd", "/etc/passwd", "../models/stories260K", "./stories260K"}) {
        auto r = post("/v1/chat/completions",
                      {{"model", name}, {"messages", {{{"role", "user"}, {"content", "x"}}}}});
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 404) << name << ": " << r->body;
        EXPECT_EQ(r->body.find("root"), std::string::npos) << r->body;
        r = post("/api/create", {{"model", "copy"}, {"from", name}});
        EXPECT_EQ(r->status, 404) << name << ": " << r->body;
    }
    // The models dir still serves its files by name.
    auto ok = post("/api/show", {{"model", "stories260K"}});
    EXPECT_EQ(ok->status, 200);

    auto r = c.Post("/api/generate", "{\"model\": \"stories260K\", \"prompt\": \"\xff\xfe\"}",
                    "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE(json::parse(r->body).contains("error")) << r->body;
}

// Found while fuzzing: /metrics labelled requests by their raw path, so clients chose label
// values (unbounded counters, and quotes or newlines written into the exposition text).
TEST(Http, MetricsLabelRoutesNotRawPaths) {
    auto c = live().client();
    // Refused before routing (a foreign Host), so counted under the path it names.
    EXPECT_EQ(c.Get("/x%22%7D%201%0Afake_metric%201", {{"Host", "evil.example"}})->status, 403);
    EXPECT_EQ(c.Get("/api/blobs/sha256:" + std::string(64, '7'))->status, 404);
    const std::string m = c.Get("/metrics")->body;
    EXPECT_EQ(m.find("fake_metric"), std::string::npos);
    EXPECT_EQ(m.find("sha256:7777"), std::string::npos);
    EXPECT_NE(m.find("path=\"/api/blobs/{digest}\",status=\"404\""), std::string::npos) << m;
    for (std::istringstream in(m); !in.eof();) {
        std::string line;
        std::getline(in, line);
        if (line.rfind("lokal_requests_total{", 0) == 0) {
            const std::string path = line.substr(27, line.find('"', 27) - 27);
            EXPECT_TRUE(path == "other" || path[0] == '/') << line;
        }
    }
}

TEST(Http, HostCheckAndCors) {
    auto c = live().client();
    auto r = c.Get("/api/version", {{"Host", "evil.example"}});
    EXPECT_EQ(r->status, 403);
    r = c.Get("/api/version", {{"Origin", "https://evil.example"}});
    EXPECT_EQ(r->status, 403);
    r = c.Get("/api/version", {{"Origin", "http://localhost:3000"}});
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Access-Control-Allow-Origin"), "http://localhost:3000");
    r = c.Options("/v1/chat/completions",
                  {{"Origin", "http://localhost:3000"}, {"Access-Control-Request-Method", "POST"}});
    EXPECT_EQ(r->status, 204);
}

// A code model for fill-in-the-middle: the tiny Llama shape with random weights and a
// vocabulary that has FIM markers (tests/fim_vocab.h), written once into a temporary
// models dir as coder.gguf.
const std::string& fim_models_dir() {
    static const std::string dir = [] {
        const std::string d = std::filesystem::temp_directory_path() /
                              ("lokal_fim_models_" + std::to_string(getpid()));
        std::filesystem::create_directories(d);
        test::write_fim_vocab(d + "/vocab.gguf.tmp");
        synth::Options so;
        so.shape = *synth::find_preset("tiny");
        so.mix = *synth::find_mix("Q8_0");
        so.vocab_path = d + "/vocab.gguf.tmp";
        so.n_threads = 2;
        synth::write_model(so, d + "/coder.gguf");
        std::filesystem::remove(d + "/vocab.gguf.tmp");
        std::atexit([] { std::filesystem::remove_all(fim_models_dir()); });
        return d;
    }();
    return dir;
}

// `suffix` in both APIs: the prompt is the model's prefix-suffix-middle prompt (its token
// count is what Vocab::fill_in_middle gives, checked against the tokenizer test's layout),
// models without FIM markers and wrong combinations are 400s naming the field.
TEST(Http, SuffixFillsInTheMiddle) {
    ServerOptions o = base_options();
    o.models.models_dir = fim_models_dir();
    o.default_model.clear();
    Live l(o);
    auto file = gguf::File::open(fim_models_dir() + "/coder.gguf");
    auto vocab = Vocab::from_gguf(*file);
    ASSERT_TRUE(vocab->has_fim());
    const std::string prefix = "def add(a, b):\n    return ", suffix = "\n\nprint(add(1, 2))\n";
    const size_t want = 3 + vocab->tokenize(prefix, false, false).size() +
                        vocab->tokenize(suffix, false, false).size();
    auto r = l.client().Post("/api/generate",
                             json{{"model", "coder"},
                                  {"prompt", prefix},
                                  {"suffix", suffix},
                                  {"stream", false},
                                  {"options", {{"num_predict", 4}, {"temperature", 0}}}}
                                 .dump(),
                             "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["prompt_eval_count"], want) << r->body;
    r = l.client().Post("/v1/completions",
                        json{{"model", "coder"},
                             {"prompt", prefix},
                             {"suffix", suffix},
                             {"max_tokens", 4},
                             {"temperature", 0}}
                            .dump(),
                        "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["usage"]["prompt_tokens"], want) << r->body;
    // An empty suffix is no suffix (Ollama's behaviour): the plain prompt.
    r = l.client().Post(
        "/v1/completions",
        json{{"model", "coder"}, {"prompt", prefix}, {"suffix", ""}, {"max_tokens", 1}}.dump(),
        "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["usage"]["prompt_tokens"],
              vocab->tokenize(prefix, true, true).size());

    auto bad = [&](const char* path, const json& body, const std::string& field) {
        auto b = l.client().Post(path, body.dump(), "application/json");
        ASSERT_TRUE(b);
        EXPECT_EQ(b->status, 400) << path << " " << body.dump() << " " << b->body;
        EXPECT_NE(b->body.find(field), std::string::npos) << b->body;
    };
    // stories260K's vocabulary has no FIM markers.
    o.models.models_dir = test::shared_path("models");
    Live plain(o);
    auto p = plain.client().Post(
        "/api/generate", json{{"model", "stories260K"}, {"prompt", "a"}, {"suffix", "b"}}.dump(),
        "application/json");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->status, 400);
    EXPECT_NE(p->body.find("insertion"), std::string::npos) << p->body;
    bad("/api/generate", {{"model", "coder"}, {"prompt", "a"}, {"suffix", 7}}, "suffix");
    bad("/api/generate",
        {{"model", "coder"}, {"prompt", "a"}, {"suffix", "b"}, {"context", {1, 2}}}, "context");
    bad("/v1/completions", {{"model", "coder"}, {"prompt", {1, 2, 3}}, {"suffix", "b"}}, "suffix");
}

TEST(Http, ApiKeyGuardsEveryRouteButHealth) {
    ServerOptions o = base_options();
    o.api_key = "sekrit";
    Live l(o);
    auto c = l.client();
    EXPECT_EQ(c.Get("/health")->status, 200);
    EXPECT_EQ(c.Get("/api/tags")->status, 401);
    EXPECT_EQ(c.Get("/v1/models", {{"Authorization", "Bearer wrong"}})->status, 401);
    EXPECT_EQ(c.Get("/v1/models", {{"Authorization", "Bearer sekrit"}})->status, 200);
    // The chat page's static files load without the key (a browser cannot send it on
    // navigation); the page then sends it on its API calls. GET / for API clients is guarded.
    EXPECT_EQ(c.Get("/", {{"Accept", "text/html"}})->status, 200);
    EXPECT_EQ(c.Get("/chat.js")->status, 200);
    EXPECT_EQ(c.Get("/")->status, 401);
}

TEST(Http, FullQueueIs503WithRetryAfter) {
    ServerOptions o = base_options();
    o.models.max_queue = 0;  // every request finds the queue full
    Live l(o);
    auto r =
        l.client().Post("/v1/completions", json{{"model", "stories260K"}, {"prompt", "x"}}.dump(),
                        "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(r->get_header_value("Retry-After"), "1");
    auto m = l.client().Get("/metrics");
    EXPECT_NE(m->body.find("lokal_requests_rejected_total 1"), std::string::npos) << m->body;
}

// A model larger than the whole memory budget: 507 with a JSON error that says what to
// change, in both APIs (the registry's policy itself: tests/server/models_test.cpp).
TEST(Http, ModelOverTheMemoryBudgetIs507) {
    ServerOptions o = base_options();
    o.default_model.clear();
    o.models.max_memory = 64 * 1024;  // stories260K's weights alone are ~1 MB
    Live l(o);
    for (const char* path : {"/api/generate", "/v1/completions"}) {
        auto r = l.client().Post(path, json{{"model", "stories260K"}, {"prompt", "x"}}.dump(),
                                 "application/json");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 507) << path;
        EXPECT_TRUE(r->get_header_value("Retry-After").empty());
        const json j = json::parse(r->body);
        const std::string msg = j["error"].is_string() ? j["error"].get<std::string>()
                                                       : j["error"]["message"].get<std::string>();
        EXPECT_NE(msg.find("--max-memory"), std::string::npos) << r->body;
    }
    EXPECT_EQ(json::parse(l.client().Get("/api/ps")->body)["models"].size(), 0u);
}

// A speculating server `l` answers `body` (a greedy /v1/completions request) with the text
// the shared server without drafts gives, streamed and not; returns its draft counters
// (proposed, accepted) for `model` from /metrics.
std::pair<double, double> expect_answers_of_plain_server(Live& l, const json& body,
                                                         const std::string& model) {
    auto plain = post("/v1/completions", body);
    auto spec = l.client().Post("/v1/completions", body.dump(), "application/json");
    if (!plain || !spec) {
        ADD_FAILURE() << "no answer";
        return {0, 0};
    }
    EXPECT_EQ(plain->status, 200) << plain->body;
    EXPECT_EQ(spec->status, 200) << spec->body;
    const json want = json::parse(plain->body)["choices"][0]["text"];
    EXPECT_EQ(json::parse(spec->body)["choices"][0]["text"], want);
    json streamed = body;
    streamed["stream"] = true;
    auto st = l.client().Post("/v1/completions", streamed.dump(), "application/json");
    std::string text;
    if (st)
        for (const std::string& d : sse(st->body))
            if (d != "[DONE]") text += json::parse(d)["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(text, want);
    return {test::metric(l, "lokal_draft_tokens_total{model=\"" + model + "\"}"),
            test::metric(l, "lokal_draft_tokens_accepted_total{model=\"" + model + "\"}")};
}

TEST(Http, LookupDraftsKeepTheAnswer) {
    ServerOptions o = base_options();
    o.models.lookup_draft = 6;
    Live l(o);
    const json body = {{"model", "stories260K"},
                       {"prompt", "Once upon a time"},
                       {"max_tokens", 80},
                       {"temperature", 0},
                       {"logit_bias", {{"2", -100}}}};  // no end of text: 80 tokens
    const auto [proposed, accepted] = expect_answers_of_plain_server(l, body, "stories260K");
    EXPECT_GT(accepted, 0);
    EXPECT_LE(accepted, proposed);
    EXPECT_EQ(test::metric(live(), "lokal_draft_tokens_total{model=\"stories260K\"}"), 0);
}

// serve --model-draft: tiny-k's Q4_0 copy drafts for its Q8_0 original; the answers are the
// ones without drafts, streamed or not, and the drafts show in /metrics. A draft model of
// another vocabulary is refused at start, saying why.
TEST(Http, DraftModelKeepsTheAnswer) {
    ServerOptions o = base_options();
    o.default_model = "tiny-k.Q8_0";
    o.models.draft_model = test::shared_path("models/tiny-k.Q4_0.gguf");
    o.models.draft_for = o.default_model;
    o.models.draft.p_min = 0;
    Live l(o);
    const json body = {{"model", "tiny-k.Q8_0"},
                       {"prompt", "A cat"},
                       {"max_tokens", 48},
                       {"temperature", 0},
                       {"logit_bias", {{"2", -100}}}};
    const auto [proposed, accepted] = expect_answers_of_plain_server(l, body, "tiny-k.Q8_0");
    EXPECT_GT(accepted, 0);
    EXPECT_LT(accepted, proposed);

    ServerOptions bad = o;
    bad.models.draft_model = test::shared_path("models/tiny-qwen2.Q8_0.gguf");
    server::Server srv(bad);
    try {
        srv.bind();
        ADD_FAILURE() << "a draft model of another vocabulary was accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("--model-draft: the draft model's tokenizer"),
                  std::string::npos)
            << e.what();
    }
}

TEST(Http, ConcurrentStreamsAndMetrics) {
    std::vector<std::thread> ts;
    std::atomic<int> ok{0};
    for (int i = 0; i < 8; ++i)
        ts.emplace_back([&, i] {
            auto r = post("/api/generate", {{"model", "stories260K"},
                                            {"prompt", "Lily " + std::to_string(i)},
                                            {"raw", true},
                                            {"options", {{"num_predict", 20}}}});
            if (r && r->status == 200 && ndjson(r->body).back()["done"].get<bool>()) ++ok;
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(ok, 8);
    auto m = live().client().Get("/metrics");
    EXPECT_NE(m->body.find("lokal_time_to_first_token_seconds_bucket"), std::string::npos);
    EXPECT_NE(m->body.find("lokal_kv_blocks_total{model=\"stories260K\"}"), std::string::npos);
    // Memory: the model's figure is the one /api/ps shows, under the budget.
    const double bytes =
        test::metric(live(), "lokal_model_memory_bytes{model=\"stories260K\",kv_type=\"f16\"}");
    EXPECT_GT(bytes, 0);
    EXPECT_GT(test::metric(live(), "lokal_memory_budget_bytes"), bytes);
    for (const json& pm : json::parse(live().client().Get("/api/ps")->body)["models"]) {
        if (pm["name"] == "stories260K") {
            EXPECT_EQ(pm["size"].get<double>(), bytes);
        }
    }
}

TEST(Http, ChatPageForBrowsersPlainAnswerForClients) {
    auto c = live().client();
    auto r = c.Get("/", {{"Accept", "text/html,application/xhtml+xml,*/*;q=0.8"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
    EXPECT_NE(r->body.find("<select id=\"model\">"), std::string::npos);
    EXPECT_NE(r->get_header_value("Content-Security-Policy").find("script-src 'self'"),
              std::string::npos);
    r = c.Get("/chat.js");
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find("/api/chat"), std::string::npos);
    r = c.Get("/");  // no Accept: html, as Ollama clients and health probes ask
    EXPECT_EQ(r->body, "Ollama is running");
}

// The page's own origin: allowed for an IP-literal Host, refused for a host name (a
// DNS-rebinding page) unless --allowed-host names it.
TEST(Http, SameOriginNeedsAnIpHostOrAnAllowedName) {
    ServerOptions o = base_options();
    o.cors_origins = {"https://app.example"};  // the localhost defaults are off
    o.host = "127.0.0.1";
    o.allowed_hosts = {"lokal.lan"};
    Live l(o);
    const std::string self = "127.0.0.1:" + std::to_string(l.port);
    auto c = l.client();
    EXPECT_EQ(c.Get("/api/version", {{"Host", self}, {"Origin", "http://" + self}})->status, 200);
    EXPECT_EQ(
        c.Get("/api/version", {{"Host", "lokal.lan:1"}, {"Origin", "http://lokal.lan:1"}})->status,
        200);
    EXPECT_EQ(
        c.Get("/api/version", {{"Host", "localhost:1"}, {"Origin", "http://localhost:1"}})->status,
        403);
}

// Raw socket: send a request, never read the answer.
int send_and_leave_open(int port, const std::string& path, const json& body) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, (sockaddr*)&a, sizeof a) != 0) return -1;
    const std::string b = body.dump();
    const std::string req = "POST " + path +
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: " +
                            std::to_string(b.size()) + "\r\n\r\n" + b;
    if (::write(fd, req.data(), req.size()) != (ssize_t)req.size()) return -1;
    return fd;
}

// A non-streaming client that hangs up mid-generation: its sequence is freed within a
// few scheduler steps, not after the thousands of tokens it asked for.
TEST(Http, ClientThatHangsUpFreesItsSequence) {
    ServerOptions o = base_options();
    o.models.n_ctx = 16384;
    o.models.parallel = 1;
    o.models.prefix_cache = false;  // so "KV blocks used" falls to zero
    Live l(o);
    const std::string running = "lokal_running_sequences{model=\"stories260K\"}";
    const std::string used = "lokal_kv_blocks_used{model=\"stories260K\"}";
    const double cancelled0 = test::metric(l, "lokal_requests_cancelled_total");
    // EOS (id 2) can never be sampled: only 16000 tokens would end this request.
    const json body = {{"model", "stories260K"},
                       {"prompt", "Once upon a time"},
                       {"max_tokens", 16000},
                       {"temperature", 0},
                       {"logit_bias", {{"2", -100}}}};
    for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
        json b = body;
        if (std::string(path) == "/v1/chat/completions") {
            b.erase("prompt");
            b["messages"] = {{{"role", "user"}, {"content", "Once upon a time"}}};
        }
        const int fd = send_and_leave_open(l.port, path, b);
        ASSERT_GE(fd, 0);
        for (int i = 0; i < 500 && test::metric(l, running) != 1; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        ASSERT_EQ(test::metric(l, running), 1) << "the request ended before the hang-up";
        EXPECT_GT(test::metric(l, used), 0);
        ::close(fd);
        const auto t0 = std::chrono::steady_clock::now();
        while (test::metric(l, running) != 0 &&
               std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        EXPECT_LT(secs, 2.0) << path;
        EXPECT_EQ(test::metric(l, used), 0) << path;
    }
    EXPECT_EQ(test::metric(l, "lokal_requests_cancelled_total"), cancelled0 + 2);
    auto m = l.client().Get("/metrics");
    EXPECT_NE(m->body.find("status=\"499\""), std::string::npos);
}

}  // namespace
}  // namespace lokal::server
