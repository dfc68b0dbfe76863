// The HTTP API against a live in-process server on a loopback port.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "server/server.h"
#include "shared_path.h"

namespace lokal::server {
namespace {

using json = nlohmann::json;

struct Live {
    explicit Live(ServerOptions o) : srv(std::move(o)) {
        port = srv.bind();
        thread = std::thread([this] { srv.run(); });
        for (int i = 0; i < 200 && !srv.running(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ~Live() {
        srv.stop();
        thread.join();
    }
    httplib::Client client() {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(60, 0);
        return c;
    }
    Server srv;
    int port = 0;
    std::thread thread;
};

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

std::vector<json> ndjson(const std::string& body) {
    std::vector<json> out;
    std::istringstream in(body);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(json::parse(line));
    return out;
}

std::vector<std::string> sse(const std::string& body) {
    std::vector<std::string> out;
    std::istringstream in(body);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
    return out;
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
                                      {"tools", {{{"type", "function"}}}}});
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("tools"), std::string::npos);
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
    EXPECT_EQ(c.Get("/no/such/route")->status, 404);
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

TEST(Http, ApiKeyGuardsEveryRouteButHealth) {
    ServerOptions o = base_options();
    o.api_key = "sekrit";
    Live l(o);
    auto c = l.client();
    EXPECT_EQ(c.Get("/health")->status, 200);
    EXPECT_EQ(c.Get("/api/tags")->status, 401);
    EXPECT_EQ(c.Get("/v1/models", {{"Authorization", "Bearer wrong"}})->status, 401);
    EXPECT_EQ(c.Get("/v1/models", {{"Authorization", "Bearer sekrit"}})->status, 200);
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
}

}  // namespace
}  // namespace lokal::server
