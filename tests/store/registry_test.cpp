// Push and pull against a real Docker Registry v2 (CNCF Distribution), direct URL pulls
// from its blob URLs (a real server with Range support), interruption and resume, and a
// blob corrupted in the registry's own storage.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

#include "helpers.h"
#include "registry_fixture.h"
#include "store/create.h"
#include "store/registry.h"
#include "store/resolve.h"

using namespace lokal::store;
using namespace lokal::test;

namespace {

class RealRegistry : public ::testing::Test {
  protected:
    static void SetUpTestSuite() { reg_ = std::make_unique<RegistryProcess>(); }
    static void TearDownTestSuite() { reg_.reset(); }
    void SetUp() override {
        ASSERT_TRUE(reg_->ok()) << "cannot start " << registry_binary()
                                << " (install Debian's docker-registry package)";
    }
    RegistryOptions opts() const {
        RegistryOptions o;
        o.insecure = true;
        o.http.stall_timeout_s = 5;
        return o;
    }
    // A model in a fresh local store, pushed as host/library/<repo>:<tag>.
    ModelName push_model(Store& s, const std::string& repo, const std::string& gguf,
                         const std::string& extra = "") {
        ModelName n = parse_name(reg_->host() + "/library/" + repo);
        create_model(s, n, parse_modelfile("FROM " + model_path(gguf) + "\n" + extra));
        push(s, n, opts());
        return n;
    }
    static std::unique_ptr<RegistryProcess> reg_;
};
std::unique_ptr<RegistryProcess> RealRegistry::reg_;

}  // namespace

TEST_F(RealRegistry, PushPullRoundTrip) {
    TempDir a, b;
    Store src(a.sub("s")), dst(b.sub("s"));
    ModelName n = push_model(src, "tiny", "stories260K.gguf",
                             "PARAMETER temperature 0.3\nSYSTEM Tell a story.\nLICENSE MIT");
    push(src, n, opts());  // again: every blob already there (HEAD), manifest rewritten
    uint64_t last_done = 0, last_total = 0;
    auto o = opts();
    o.progress = [&](uint64_t d, uint64_t t) {
        last_done = d;
        last_total = t;
        return true;
    };
    pull(dst, n, o);
    EXPECT_EQ(last_done, last_total);
    EXPECT_GT(last_total, 1000000u);
    std::string raw_a, raw_b;
    src.read_manifest(n, &raw_a);
    dst.read_manifest(n, &raw_b);
    EXPECT_EQ(raw_a, raw_b);
    auto cfg = load_model_config(n.display(), dst.root());
    ASSERT_TRUE(cfg);
    EXPECT_EQ(read_text(cfg->model_path), read_text(model_path("stories260K.gguf")));
    EXPECT_FLOAT_EQ(*cfg->parameters.temperature, 0.3f);
    EXPECT_EQ(*cfg->system, "Tell a story.");
    EXPECT_EQ(snapshot(a.sub("s")), snapshot(b.sub("s")));
    // Pulling again is a no-op that still succeeds.
    pull(dst, n, opts());
    EXPECT_EQ(snapshot(a.sub("s")), snapshot(b.sub("s")));
}

TEST_F(RealRegistry, MissingModelAndTag) {
    TempDir d;
    Store s(d.sub("s"));
    try {
        pull(s, parse_name(reg_->host() + "/library/no-such-model"), opts());
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not found"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(snapshot(s.root()).empty());
    EXPECT_THROW(push(s, parse_name(reg_->host() + "/library/absent"), opts()), Error);
}

TEST_F(RealRegistry, CorruptBlobInRegistryIsRefused) {
    TempDir a, b;
    Store src(a.sub("s")), dst(b.sub("s"));
    ModelName n = push_model(src, "corrupt", "TinyStories-656K.Q8_0.gguf");
    auto m = src.read_manifest(n);
    std::string data_path = reg_->blob_data(m->model().digest.hex);
    std::string bytes = read_text(data_path);
    ASSERT_EQ(bytes.size(), m->model().size);
    bytes[bytes.size() / 2] ^= 0x5a;  // same size, one byte flipped
    fs::permissions(data_path, fs::perms::owner_write, fs::perm_options::add);
    write_text(data_path, bytes);
    auto before = snapshot(dst.root());
    try {
        pull(dst, n, opts());
        FAIL() << "corrupt blob accepted";
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("failed verification"), std::string::npos) << msg;
        EXPECT_NE(msg.find(m->model().digest.str()), std::string::npos) << msg;
    }
    EXPECT_EQ(snapshot(dst.root()), before);
    EXPECT_FALSE(fs::exists(dst.partial_path(m->model().digest)));
    EXPECT_FALSE(resolve_model(n.display(), dst.root()));
    // Repaired on the registry: the pull now succeeds.
    bytes[bytes.size() / 2] ^= 0x5a;
    write_text(data_path, bytes);
    pull(dst, n, opts());
    EXPECT_TRUE(resolve_model(n.display(), dst.root()));
}

TEST_F(RealRegistry, InterruptedPullResumes) {
    TempDir a, b;
    Store src(a.sub("s")), dst(b.sub("s"));
    ModelName n = push_model(src, "resume", "stories260K.gguf");
    auto m = src.read_manifest(n);
    const uint64_t size = m->model().size;
    auto o = opts();
    o.parallel = 1;
    o.progress = [&](uint64_t d, uint64_t) { return d < size / 2; };  // "killed" half way
    EXPECT_THROW(pull(dst, n, o), Error);
    EXPECT_FALSE(resolve_model(n.display(), dst.root()));
    uint64_t partial = fs::file_size(dst.partial_path(m->model().digest));
    EXPECT_GT(partial, 0u);
    EXPECT_LT(partial, size);
    // The second pull starts where the first stopped: with one blob at a time (config
    // first), no progress report falls between the config and config + partial bytes.
    std::vector<uint64_t> reports;
    o.progress = [&](uint64_t d, uint64_t) {
        reports.push_back(d);
        return true;
    };
    pull(dst, n, o);
    for (uint64_t r : reports)
        EXPECT_FALSE(r > m->config.size && r < m->config.size + partial) << r;
    EXPECT_EQ(read_text(*resolve_model(n.display(), dst.root())),
              read_text(model_path("stories260K.gguf")));
    EXPECT_FALSE(fs::exists(dst.partial_path(m->model().digest)));
}

TEST_F(RealRegistry, DirectUrlPull) {
    TempDir a, b;
    Store src(a.sub("s")), dst(b.sub("s"));
    ModelName n = push_model(src, "direct", "TinyStories-656K.f16.gguf");
    auto m = src.read_manifest(n);
    std::string url =
        "http://" + reg_->host() + "/v2/library/direct/blobs/" + m->model().digest.str();
    auto before = snapshot(dst.root());
    // Wrong checksum: refused, store unchanged.
    try {
        pull_url(dst, url, std::string(64, '0'), std::nullopt, opts());
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("failed verification"), std::string::npos) << e.what();
    }
    EXPECT_EQ(snapshot(dst.root()), before);
    // Not a GGUF (the config blob): refused.
    std::string cfg_url =
        "http://" + reg_->host() + "/v2/library/direct/blobs/" + m->config.digest.str();
    EXPECT_THROW(pull_url(dst, cfg_url, "", parse_name("cfg"), opts()), Error);
    EXPECT_EQ(snapshot(dst.root()), before);
    // Plain http needs --insecure.
    EXPECT_THROW(pull_url(dst, url, "", parse_name("x"), RegistryOptions{}), Error);
    // Interrupted, then resumed and verified.
    auto o = opts();
    o.progress = [&](uint64_t d, uint64_t) { return d < m->model().size / 3; };
    EXPECT_THROW(pull_url(dst, url, m->model().digest.hex, parse_name("direct-tiny"), o), Error);
    EXPECT_EQ(snapshot(dst.root()), before);
    o.progress = {};
    ModelName got = pull_url(dst, url, m->model().digest.hex, parse_name("direct-tiny"), o);
    EXPECT_EQ(got.display(), "direct-tiny:latest");
    EXPECT_EQ(read_text(*resolve_model("direct-tiny", dst.root())),
              read_text(model_path("TinyStories-656K.f16.gguf")));
}

TEST(StoreUrl, NameFromUrl) {
    EXPECT_EQ(name_from_url(
                  "https://huggingface.co/x/y/resolve/main/TinyStories-656K.f16.gguf?download=1")
                  .display(),
              "tinystories-656k.f16:latest");
    EXPECT_EQ(name_from_url("https://h/a/My Model (1).gguf").model, "my-model--1-");
    EXPECT_THROW(name_from_url("https://h/"), Error);
    EXPECT_THROW(name_from_url("https://h/..gguf"), Error);
}

TEST_F(RealRegistry, ConcurrentPullsOfOneModel) {
    TempDir a, b;
    Store src(a.sub("s"));
    ModelName n = push_model(src, "concurrent", "TinyStories-656K.f16.gguf");
    std::vector<std::thread> ts;
    std::atomic<int> errors{0};
    for (int i = 0; i < 3; ++i)
        ts.emplace_back([&] {
            try {
                Store dst(b.sub("s"));
                pull(dst, n, opts());
            } catch (const std::exception& e) {
                ++errors;
                ADD_FAILURE() << e.what();
            }
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(errors, 0);
    EXPECT_EQ(snapshot(a.sub("s")), snapshot(b.sub("s")));
    for (auto& e : fs::directory_iterator(b.sub("s/blobs")))
        EXPECT_FALSE(e.path().string().ends_with("-partial")) << e.path();
}
