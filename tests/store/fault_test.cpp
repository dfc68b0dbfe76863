// Hostile and broken servers: a fake registry on loopback that stalls, loops redirects,
// lies about sizes and digests, demands bearer tokens, or gets killed mid-download.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "fake_server.h"
#include "helpers.h"
#include "store/create.h"
#include "store/registry.h"
#include "store/resolve.h"

using namespace lokal::store;
using namespace lokal::test;
using json = nlohmann::json;

namespace {

// Serves one model (built from a GGUF in a scratch store) as library/m:latest.
class FakeRegistry {
  public:
    explicit FakeRegistry(const std::string& gguf = "stories260K.gguf") {
        Store s(dir_.sub("s"));
        ModelName n = parse_name("m");
        create_model(s, n, parse_modelfile("FROM " + model_path(gguf) + "\nSYSTEM hi"));
        s.read_manifest(n, &manifest);
        Manifest m = Manifest::parse(manifest);
        model_hex = m.model().digest.hex;
        model_size = m.model().size;
        blobs[m.config.digest.hex] = read_text(s.blob_path(m.config.digest));
        for (const auto& l : m.layers) blobs[l.digest.hex] = read_text(s.blob_path(l.digest));
        server = std::make_unique<FakeServer>([this](const Request& r, int fd) { handle(r, fd); });
    }
    ModelName name() const { return parse_name(server->host() + "/library/m"); }

    std::string manifest;
    std::map<std::string, std::string> blobs;
    std::string model_hex;
    uint64_t model_size = 0;
    // Knobs.
    std::string token;          // require "Bearer <token>"
    std::string token_given;    // what /token hands out (default: token)
    std::string digest_header;  // Docker-Content-Digest override
    size_t chunk = 0;           // throttle: bytes per chunk ...
    int chunk_ms = 0;           // ... and pause between chunks
    bool ignore_range = false;
    std::function<bool(const Request&, int)> override;  // true: handled
    std::unique_ptr<FakeServer> server;

  private:
    void handle(const Request& r, int fd) {
        if (override && override(r, fd)) return;
        if (r.path == "/token") {
            FakeServer::respond(fd, 200,
                                json{{"token", token_given.empty() ? token : token_given}}.dump());
            return;
        }
        if (!token.empty() && r.header("authorization") != "Bearer " + token) {
            FakeServer::respond(fd, 401, R"({"errors":[{"code":"UNAUTHORIZED","message":"auth"}]})",
                                {"WWW-Authenticate: Bearer realm=\"" + server->url() +
                                 "/token\",service=\"fake\",scope=\"repository:library/m:pull\""});
            return;
        }
        if (r.path == "/v2/library/m/manifests/latest") {
            std::string dh =
                digest_header.empty() ? "sha256:" + sha256_hex(manifest) : digest_header;
            FakeServer::respond(fd, 200, manifest,
                                {std::string("Content-Type: ") + media::kManifestV2,
                                 "Docker-Content-Digest: " + dh});
            return;
        }
        const std::string prefix = "/v2/library/m/blobs/sha256:";
        if (r.path.starts_with(prefix) && blobs.count(r.path.substr(prefix.size()))) {
            const std::string& b = blobs[r.path.substr(prefix.size())];
            size_t start = 0;
            std::string range = r.header("range");
            if (!range.empty() && !ignore_range) start = std::stoul(range.substr(6));
            std::vector<std::string> hs;
            int status = 200;
            if (start > 0) {
                status = 206;
                hs.push_back("Content-Range: bytes " + std::to_string(start) + "-" +
                             std::to_string(b.size() - 1) + "/" + std::to_string(b.size()));
            }
            if (!FakeServer::send_all(fd, FakeServer::head(status, "OK", hs, b.size() - start)))
                return;
            size_t step = chunk ? chunk : b.size();
            for (size_t off = start; off < b.size() && !server->stopping(); off += step) {
                if (!FakeServer::send_all(fd, b.substr(off, step))) return;
                if (chunk_ms) server->wait(chunk_ms);
            }
            return;
        }
        FakeServer::respond(fd, 404, R"({"errors":[{"code":"NOT_FOUND","message":"no"}]})");
    }
    TempDir dir_;
};

RegistryOptions fast_opts() {
    RegistryOptions o;
    o.insecure = true;
    o.http.stall_timeout_s = 1;
    o.http.connect_timeout_s = 2;
    return o;
}

// Pull must fail with `needle` in its one-line message and leave the store unchanged.
void expect_pull_fails(FakeRegistry& reg, const std::string& needle,
                       RegistryOptions o = fast_opts()) {
    TempDir d;
    Store s(d.sub("s"));
    auto before = snapshot(s.root());
    try {
        pull(s, reg.name(), o);
        ADD_FAILURE() << "pull succeeded, expected: " << needle;
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find(needle), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    EXPECT_EQ(snapshot(s.root()), before);
    EXPECT_FALSE(resolve_model(reg.name().display(), s.root()));
}

std::string tweak_manifest(const std::string& raw, const std::function<void(json&)>& f) {
    json j = json::parse(raw);
    f(j);
    return j.dump();
}

}  // namespace

TEST(StoreFault, PullFromFakeRegistry) {
    FakeRegistry reg;
    TempDir d;
    Store s(d.sub("s"));
    pull(s, reg.name(), fast_opts());
    EXPECT_EQ(read_text(*resolve_model(reg.name().display(), s.root())),
              read_text(model_path("stories260K.gguf")));
}

TEST(StoreFault, BearerTokenAuth) {
    FakeRegistry reg;
    reg.token = "tok-123";
    TempDir d;
    Store s(d.sub("s"));
    pull(s, reg.name(), fast_opts());
    EXPECT_TRUE(resolve_model(reg.name().display(), s.root()));
    int token_requests = 0;
    for (const auto& r : reg.server->requests())
        if (r.path == "/token") {
            ++token_requests;
            EXPECT_NE(r.query.find("service=fake"), std::string::npos) << r.query;
            EXPECT_NE(r.query.find("scope=repository%3Alibrary%2Fm%3Apull"), std::string::npos)
                << r.query;
        }
    EXPECT_EQ(token_requests, 1);
    // A token the registry keeps refusing: a clear error, no endless loop.
    FakeRegistry bad;
    bad.token = "right";
    bad.token_given = "wrong";
    expect_pull_fails(bad, "401");
}

TEST(StoreFault, RedirectLoop) {
    FakeRegistry reg;
    reg.override = [&](const Request& r, int fd) {
        if (r.path != "/v2/library/m/manifests/latest") return false;
        FakeServer::respond(fd, 302, "", {"Location: " + r.path});
        return true;
    };
    expect_pull_fails(reg, "too many redirects");
}

TEST(StoreFault, StallBeforeHeaders) {
    FakeRegistry reg;
    reg.override = [&](const Request& r, int) {
        if (r.path != "/v2/library/m/manifests/latest") return false;
        reg.server->wait(20000);
        return true;
    };
    auto t0 = std::chrono::steady_clock::now();
    expect_pull_fails(reg, "stalled");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(StoreFault, StallMidBlob) {
    FakeRegistry reg;
    reg.override = [&](const Request& r, int fd) {
        if (r.path != "/v2/library/m/blobs/sha256:" + reg.model_hex) return false;
        const std::string& b = reg.blobs[reg.model_hex];
        FakeServer::send_all(fd,
                             FakeServer::head(200, "OK", {}, b.size()) + b.substr(0, b.size() / 2));
        reg.server->wait(20000);
        return true;
    };
    auto t0 = std::chrono::steady_clock::now();
    expect_pull_fails(reg, "stalled");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(StoreFault, HugeManifestResponse) {
    FakeRegistry reg;
    reg.manifest =
        tweak_manifest(reg.manifest, [](json& j) { j["padding"] = std::string(5 << 20, 'x'); });
    expect_pull_fails(reg, "larger than");
}

TEST(StoreFault, HugeLayerSize) {
    FakeRegistry reg;
    reg.manifest = tweak_manifest(reg.manifest, [](json& j) {
        for (auto& l : j["layers"]) l["size"] = 1ull << 50;
    });
    expect_pull_fails(reg, "exceeds the limit");
}

TEST(StoreFault, ManifestDigestMismatch) {
    FakeRegistry reg;
    reg.digest_header = "sha256:" + std::string(64, 'e');
    expect_pull_fails(reg, "manifest digest mismatch");
    reg.digest_header = "sha256:../../../etc/passwd";
    expect_pull_fails(reg, "invalid digest");
}

TEST(StoreFault, TraversalDigestInManifest) {
    for (std::string evil : std::vector<std::string>{
             "sha256:../../../../../../../../../../tmp/lokal-evil-blob",
             "sha256:" + std::string(62, 'a') + "/.", "sha256-" + std::string(64, 'a'),
             "sha256:" + std::string(64, 'A')}) {
        FakeRegistry reg;
        reg.manifest =
            tweak_manifest(reg.manifest, [&](json& j) { j["layers"][0]["digest"] = evil; });
        expect_pull_fails(reg, "invalid digest");
    }
    EXPECT_FALSE(fs::exists("/tmp/lokal-evil-blob"));
}

TEST(StoreFault, UnknownMediaType) {
    FakeRegistry reg;
    reg.manifest = tweak_manifest(reg.manifest, [](json& j) {
        j["layers"].push_back(
            {{"mediaType", "application/x-sh"}, {"digest", j["layers"][0]["digest"]}, {"size", 1}});
    });
    expect_pull_fails(reg, "unknown media type");
}

TEST(StoreFault, BlobLargerThanDeclared) {
    FakeRegistry reg;
    reg.blobs[reg.model_hex] += std::string(100, 'x');
    expect_pull_fails(reg, "more than the declared");
}

TEST(StoreFault, BlobShorterThanDeclared) {
    FakeRegistry reg;
    reg.blobs[reg.model_hex].resize(reg.model_size - 100);
    expect_pull_fails(reg, "transfer ended");
}

TEST(StoreFault, BlobContentMismatch) {
    FakeRegistry reg;
    reg.blobs[reg.model_hex][1000] ^= 1;
    expect_pull_fails(reg, "failed verification");
}

TEST(StoreFault, ServerIgnoringRangeRestarts) {
    FakeRegistry reg;
    reg.ignore_range = true;
    TempDir d;
    Store s(d.sub("s"));
    auto o = fast_opts();
    o.progress = [&](uint64_t done, uint64_t) { return done < reg.model_size / 2; };
    EXPECT_THROW(pull(s, reg.name(), o), Error);
    o.progress = {};
    pull(s, reg.name(), o);
    EXPECT_EQ(read_text(*resolve_model(reg.name().display(), s.root())),
              read_text(model_path("stories260K.gguf")));
}

TEST(StoreFault, KilledMidDownloadThenResumed) {
    FakeRegistry reg;
    reg.chunk = 16 << 10;
    reg.chunk_ms = 20;  // about 0.8 MB/s: the child is still downloading when killed
    TempDir d;
    Store s(d.sub("s"));
    s.ensure_dirs();
    Digest model{reg.model_hex};
    pid_t pid = fork();
    if (pid == 0) {
        try {
            auto o = fast_opts();
            o.parallel = 1;
            o.http.stall_timeout_s = 30;  // it is meant to be killed, not to give up
            pull(s, reg.name(), o);
        } catch (...) {
        }
        _exit(0);
    }
    uint64_t partial = 0;
    // Up to 60 s: on a loaded 2-core machine the child may take a while to start downloading.
    for (int i = 0; i < 6000 && partial < (200u << 10); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::error_code ec;
        const uint64_t size = fs::file_size(s.partial_path(model), ec);
        partial = ec ? 0 : size;  // on error file_size returns -1, which would end the wait
    }
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the child finished before it was killed";
    std::error_code size_ec;
    partial = fs::file_size(s.partial_path(model), size_ec);
    ASSERT_FALSE(size_ec) << "no partial download after the kill: " << size_ec.message();
    ASSERT_GE(partial, 200u << 10);
    ASSERT_LT(partial, reg.model_size);
    EXPECT_FALSE(resolve_model(reg.name().display(), s.root()));
    reg.chunk = 0;
    reg.chunk_ms = 0;
    pull(s, reg.name(), fast_opts());
    EXPECT_EQ(read_text(*resolve_model(reg.name().display(), s.root())),
              read_text(model_path("stories260K.gguf")));
    // The last request for the model blob asked for the rest only.
    std::string range;
    for (const auto& r : reg.server->requests())
        if (r.path.ends_with(reg.model_hex)) range = r.header("range");
    ASSERT_FALSE(range.empty());
    EXPECT_GE(std::stoull(range.substr(6)), partial);
}

TEST(StoreFault, DiskFullWhilePulling) {
    FakeRegistry reg;
    TempDir d;
    Store s(d.sub("s"));
    s.ensure_dirs();
    auto before = snapshot(s.root());
    pid_t pid = fork();
    if (pid == 0) {  // a file size limit stands in for a full disk: writes fail with EFBIG
        signal(SIGXFSZ, SIG_IGN);
        rlimit rl{256 << 10, 256 << 10};
        setrlimit(RLIMIT_FSIZE, &rl);
        try {
            auto o = fast_opts();
            o.parallel = 1;
            pull(s, reg.name(), o);
        } catch (const Error& e) {
            std::string msg = e.what();
            _exit(msg.find("cannot write") != std::string::npos ? 10 : 11);
        } catch (...) {
            _exit(12);
        }
        _exit(13);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 10);
    EXPECT_EQ(snapshot(s.root()), before);  // no half blob taken for whole
    EXPECT_FALSE(resolve_model(reg.name().display(), s.root()));
    pull(s, reg.name(), fast_opts());  // space again: resumes and completes
    EXPECT_TRUE(resolve_model(reg.name().display(), s.root()));
}
