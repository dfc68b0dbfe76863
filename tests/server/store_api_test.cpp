// Ollama's model-management API (/api/create, copy, push, pull, delete, blobs) against a
// live server with its own store, pushing to and pulling from a real docker-registry on
// loopback (the store tests' fixture).
#include <gtest/gtest.h>

#include <memory>

#include "live_server.h"
#include "shared_path.h"
#include "store/registry_fixture.h"
#include "store/util.h"

namespace lokal::server {
namespace {

using json = nlohmann::json;
using test::Live;
using test::ndjson;

class StoreApi : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        reg_ = std::make_unique<test::RegistryProcess>();
        dir_ = std::make_unique<test::TempDir>();
        ServerOptions o;
        o.port = 0;
        o.models.models_dir = test::shared_path("models");
        o.models.store_dir = dir_->sub("store");
        o.models.n_ctx = 128;
        o.models.n_threads = 1;
        live_ = std::make_unique<Live>(o);
    }
    static void TearDownTestSuite() {
        live_.reset();
        dir_.reset();
        reg_.reset();
    }
    static httplib::Result post(const std::string& path, const json& body) {
        return live_->client().Post(path.c_str(), body.dump(), "application/json");
    }
    static httplib::Result del(const json& body) {
        return live_->client().Delete("/api/delete", body.dump(), "application/json");
    }
    static bool listed(const std::string& name) {
        auto tags = json::parse(live_->client().Get("/api/tags")->body);
        for (auto& m : tags["models"])
            if (m["name"] == name) return true;
        return false;
    }
    static std::string generate(const std::string& model) {
        auto r = post("/api/generate", {{"model", model},
                                        {"prompt", "Once"},
                                        {"raw", true},
                                        {"stream", false},
                                        {"options", {{"num_predict", 4}, {"temperature", 0}}}});
        return r ? std::to_string(r->status) + " " + r->body : "no answer";
    }
    static std::unique_ptr<test::RegistryProcess> reg_;
    static std::unique_ptr<test::TempDir> dir_;
    static std::unique_ptr<Live> live_;
};
std::unique_ptr<test::RegistryProcess> StoreApi::reg_;
std::unique_ptr<test::TempDir> StoreApi::dir_;
std::unique_ptr<Live> StoreApi::live_;

TEST_F(StoreApi, CreateShowCopyDelete) {
    auto r = post("/api/create", {{"model", "tiny"},
                                  {"from", "stories260K"},
                                  {"system", "Tell a story."},
                                  {"parameters", {{"temperature", 0.25}, {"stop", {"THE END"}}}},
                                  {"stream", false}});
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["status"], "success");
    EXPECT_TRUE(listed("tiny:latest"));
    r = post("/api/show", {{"model", "tiny"}});
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["system"], "Tell a story.");
    EXPECT_EQ(generate("tiny").substr(0, 3), "200");

    // Streamed: progress lines, then success.
    r = post("/api/create", {{"model", "tiny2"}, {"from", "tiny"}, {"template", "{{ x }}"}});
    ASSERT_EQ(r->status, 200);
    auto lines = ndjson(r->body);
    ASSERT_GE(lines.size(), 2u);
    EXPECT_EQ(lines.back()["status"], "success");

    // The older form: a Modelfile, relative paths from --models-dir.
    r = post("/api/create", {{"name", "tiny3"},
                             {"modelfile", "FROM stories260K.gguf\nPARAMETER top_k 5\n"},
                             {"stream", false}});
    EXPECT_EQ(r->status, 200) << r->body;

    r = post("/api/copy", {{"source", "tiny"}, {"destination", "tiny-copy:v2"}});
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_TRUE(listed("tiny-copy:v2"));
    r = del({{"model", "tiny-copy:v2"}});
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_FALSE(listed("tiny-copy:v2"));
    EXPECT_EQ(del({{"name", "tiny-copy:v2"}})->status, 404);  // ollama-js sends "name"
    EXPECT_TRUE(listed("tiny:latest"));  // its blobs were shared, and are still there
    EXPECT_EQ(generate("tiny").substr(0, 3), "200");

    // Deleting a loaded model unloads it; the next request finds it gone.
    EXPECT_EQ(del({{"model", "tiny2"}})->status, 200);
    EXPECT_EQ(del({{"model", "tiny3"}})->status, 200);
}

TEST_F(StoreApi, RefusalsKeepTheirStatus) {
    EXPECT_EQ(post("/api/create", {{"model", "x"}, {"from", "no-such-model"}})->status, 404);
    EXPECT_EQ(post("/api/create", {{"model", "x"}})->status, 400);
    EXPECT_EQ(post("/api/create", {{"model", "../evil"}, {"from", "stories260K"}})->status, 400);
    auto r = post("/api/create",
                  {{"model", "x"}, {"from", "stories260K"}, {"parameters", {{"bogus", 1}}}});
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("bogus"), std::string::npos);
    EXPECT_EQ(post("/api/create", {{"model", "x"}, {"from", "stories260K"}, {"quantize", "q4_0"}})
                  ->status,
              400);
    r = post("/api/create",
             {{"model", "x"}, {"modelfile", "FROM stories260K\nADAPTER /etc/passwd\n"}});
    EXPECT_EQ(r->status, 400);  // pushed to a registry, any server file would leave with it
    EXPECT_NE(r->body.find("ADAPTER"), std::string::npos);
    EXPECT_EQ(post("/api/create", {{"model", "x"}, {"modelfile", "FROM /etc\n"}})->status, 404);
    EXPECT_EQ(post("/api/copy", {{"source", "nope"}, {"destination", "x"}})->status, 404);
    EXPECT_EQ(del({{"model", "nope"}})->status, 404);
    EXPECT_EQ(post("/api/push", {{"model", "nope"}})->status, 404);
    EXPECT_EQ(post("/api/pull", {{"model", "bad name!"}})->status, 400);
    EXPECT_FALSE(listed("x:latest"));
}

TEST_F(StoreApi, BlobsThenCreateFromFiles) {
    // A file no other test imports, so its blob is not there yet.
    const std::string gguf = test::read_text(test::model_path("TinyStories-656K.Q8_0.gguf"));
    const std::string digest = "sha256:" + store::sha256_hex(gguf);
    auto c = live_->client();
    EXPECT_EQ(c.Head(("/api/blobs/" + digest).c_str())->status, 404);
    EXPECT_EQ(c.Post(("/api/blobs/" + digest).c_str(), "not the model", "application/octet-stream")
                  ->status,
              400);
    EXPECT_EQ(c.Head("/api/blobs/sha256:xyz")->status, 400);
    // Chunked, as Ollama's CLI uploads files: streamed to disk in pieces, hash checked.
    auto chunked = [&](const std::string& body) {
        return c.Post(("/api/blobs/" + digest).c_str(),
                      [&body](size_t offset, httplib::DataSink& sink) {
                          if (offset < body.size())
                              sink.write(body.data() + offset,
                                         std::min<size_t>(7000, body.size() - offset));
                          else
                              sink.done();
                          return true;
                      },
                      "application/octet-stream");
    };
    EXPECT_EQ(chunked(gguf.substr(0, gguf.size() / 2))->status, 400);
    EXPECT_EQ(c.Head(("/api/blobs/" + digest).c_str())->status, 404);
    auto r = chunked(gguf);
    ASSERT_EQ(r->status, 201) << r->body;
    EXPECT_EQ(c.Head(("/api/blobs/" + digest).c_str())->status, 200);
    r = c.Post(("/api/blobs/" + digest).c_str(), gguf, "application/octet-stream");
    ASSERT_EQ(r->status, 201) << r->body;  // already there: fine
    r = post("/api/create",
             {{"model", "fromblob"}, {"files", {{"m.gguf", digest}}}, {"stream", false}});
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(generate("fromblob").substr(0, 3), "200");
    EXPECT_EQ(del({{"model", "fromblob"}})->status, 200);
}

TEST_F(StoreApi, PushAndPullThroughARealRegistry) {
    ASSERT_TRUE(reg_->ok()) << "cannot start " << test::registry_binary()
                            << " (install Debian's docker-registry package)";
    const std::string remote = reg_->host() + "/team/tiny:v1";
    ASSERT_EQ(post("/api/create", {{"model", "pushme"}, {"from", "stories260K"}, {"stream", false}})
                  ->status,
              200);
    ASSERT_EQ(post("/api/copy", {{"source", "pushme"}, {"destination", remote}})->status, 200);

    // Without insecure, plain http is refused: an error line after the stream started.
    auto r = post("/api/push", {{"model", remote}});
    ASSERT_EQ(r->status, 200);
    EXPECT_TRUE(ndjson(r->body).back().contains("error")) << r->body;

    r = post("/api/push", {{"model", remote}, {"insecure", true}});
    ASSERT_EQ(r->status, 200);
    auto lines = ndjson(r->body);
    EXPECT_EQ(lines.back()["status"], "success") << r->body;
    bool progress = false;
    for (auto& l : lines) progress |= l.contains("total") && l["total"].get<uint64_t>() > 1000000;
    EXPECT_TRUE(progress) << r->body;

    // Gone locally, then pulled back (streamed) and usable under its registry name.
    ASSERT_EQ(del({{"model", remote}})->status, 200);
    EXPECT_NE(generate(remote).substr(0, 3), "200");
    r = post("/api/pull", {{"model", remote}, {"insecure", true}});
    ASSERT_EQ(r->status, 200);
    lines = ndjson(r->body);
    EXPECT_EQ(lines.front()["status"], "pulling manifest");
    EXPECT_EQ(lines.back()["status"], "success") << r->body;
    EXPECT_TRUE(listed(remote));
    EXPECT_EQ(generate(remote).substr(0, 3), "200");

    // Not streaming: one answer; a model the registry lacks is a 404.
    r = post("/api/pull", {{"model", remote}, {"insecure", true}, {"stream", false}});
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body)["status"], "success");
    r = post("/api/pull",
             {{"name", reg_->host() + "/team/absent:v1"}, {"insecure", true}, {"stream", false}});
    EXPECT_EQ(r->status, 404) << r->body;
    r = post("/api/pull", {{"model", reg_->host() + "/team/absent:v1"}, {"insecure", true}});
    EXPECT_TRUE(ndjson(r->body).back().contains("error")) << r->body;
}

}  // namespace
}  // namespace lokal::server
