// Names, digests and manifests: the validation every untrusted string goes through.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "store/manifest.h"
#include "store/name.h"
#include "store/util.h"

using namespace lokal::store;
using json = nlohmann::json;

namespace {
const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
}

TEST(StoreName, Defaults) {
    ModelName n = parse_name("tiny");
    EXPECT_EQ(n.host, "registry.ollama.ai");
    EXPECT_EQ(n.ns, "library");
    EXPECT_EQ(n.model, "tiny");
    EXPECT_EQ(n.tag, "latest");
    EXPECT_EQ(n.display(), "tiny:latest");
    EXPECT_EQ(n.full(), "registry.ollama.ai/library/tiny:latest");
    EXPECT_EQ(n.manifest_rel(), "registry.ollama.ai/library/tiny/latest");
}

TEST(StoreName, Forms) {
    ModelName a = parse_name("me/Tiny:Q4_K_M");
    EXPECT_EQ(a.ns, "me");
    EXPECT_EQ(a.model, "tiny");  // case-folded
    EXPECT_EQ(a.tag, "Q4_K_M");  // tags keep case
    EXPECT_EQ(a.display(), "me/tiny:Q4_K_M");
    ModelName b = parse_name("127.0.0.1:5000/tiny");
    EXPECT_EQ(b.host, "127.0.0.1:5000");
    EXPECT_EQ(b.ns, "library");
    EXPECT_EQ(b.tag, "latest");
    ModelName c = parse_name("localhost:5000/team/llama3.2:1b-instruct");
    EXPECT_EQ(c.host, "localhost:5000");
    EXPECT_EQ(c.ns, "team");
    EXPECT_EQ(c.model, "llama3.2");
    EXPECT_EQ(c.tag, "1b-instruct");
    EXPECT_EQ(c.display(), "localhost:5000/team/llama3.2:1b-instruct");
    EXPECT_EQ(parse_name(c.display()), c);
    ModelName d = parse_name("localhost/x");
    EXPECT_EQ(d.host, "localhost");
}

TEST(StoreName, RejectsTraversalAndJunk) {
    const char* bad[] = {
        "",
        "..",
        ".",
        "../x",
        "x/../y",
        "a/b/../c",
        "../../etc/passwd",
        "x:..",
        "x:../../etc",
        "x:.",
        "/abs",
        "x/",
        "/",
        "a//b",
        "a/b/c/d",
        "x:tag:more",
        "x\\..\\y",
        "x:tag/..",
        "-x",
        ".hidden",
        "x y",
        "x\ny",
        "x:",
        "host:99999/ns/m",
        "ho..st/ns/m",
        "a/b:c/d",
        "x:t\x01",
        "..:latest",
        "ns/..",
        "../ns/m",
        "h:1/../m",
        "x%2e%2e",
        "x@sha256:00",
    };
    for (const char* s : bad) {
        EXPECT_THROW(parse_name(s), Error) << "accepted " << s;
        EXPECT_FALSE(try_parse_name(s).has_value()) << s;
    }
    EXPECT_THROW(parse_name(std::string("x\0y", 3)), Error);
    EXPECT_THROW(parse_name(std::string(100, 'a')), Error);  // model part too long
    EXPECT_THROW(parse_name("x:" + std::string(100, 't')), Error);
    try {
        parse_name("../x");
        FAIL();
    } catch (const Error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("invalid model name"), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos);
    }
}

TEST(StoreDigest, Validation) {
    Digest d = parse_digest("sha256:" + kHex);
    EXPECT_EQ(d.hex, kHex);
    EXPECT_EQ(d.file_name(), "sha256-" + kHex);
    EXPECT_EQ(parse_digest("sha256-" + kHex, true).hex, kHex);
    const std::string bad[] = {
        "sha256-" + kHex,  // file form not accepted from the network
        "sha256:" + kHex.substr(1),
        "sha256:" + kHex + "0",
        "sha256:" + std::string(64, 'A'),
        "sha256:../../../../etc/passwd",
        "sha256:../" + kHex.substr(3),
        "sha256:" + kHex.substr(0, 60) + "/../",
        "sha512:" + kHex,
        "md5:abc",
        "",
        kHex,
        "sha256:" + kHex.substr(0, 63) + "g",
        "sha256:" + kHex.substr(0, 63) + std::string(1, '\0'),
    };
    for (const auto& s : bad) EXPECT_THROW(parse_digest(s), Error) << s;
}

TEST(StoreDigest, Sha256Known) {
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

namespace {
json layer(const std::string& mt, const std::string& digest, json size) {
    return {{"mediaType", mt}, {"digest", digest}, {"size", size}};
}
json good_manifest() {
    return {{"schemaVersion", 2},
            {"mediaType", media::kManifestV2},
            {"config", layer(media::kConfig, "sha256:" + kHex, 10)},
            {"layers", json::array({layer(media::kModel, "sha256:" + kHex, 1000),
                                    layer(media::kTemplate, "sha256:" + kHex, 5)})}};
}
}  // namespace

TEST(StoreManifest, RoundTrip) {
    Manifest m = Manifest::parse(good_manifest().dump());
    EXPECT_EQ(m.layers.size(), 2u);
    EXPECT_EQ(m.model().size, 1000u);
    EXPECT_EQ(m.total_size(), 1015u);
    Manifest m2 = Manifest::parse(m.to_json());
    EXPECT_EQ(m2.to_json(), m.to_json());
    // OCI manifests may leave mediaType out.
    json oci = good_manifest();
    oci.erase("mediaType");
    oci["config"]["mediaType"] = media::kConfigOci;
    EXPECT_EQ(Manifest::parse(oci.dump()).media_type, media::kManifestOci);
}

TEST(StoreManifest, RejectsHostile) {
    auto expect_bad = [](json j, const std::string& needle) {
        try {
            Manifest::parse(j.dump());
            ADD_FAILURE() << "accepted " << j.dump();
        } catch (const Error& e) {
            std::string msg = e.what();
            EXPECT_NE(msg.find(needle), std::string::npos) << msg;
            EXPECT_EQ(msg.find('\n'), std::string::npos);
        }
    };
    json j = good_manifest();
    j["layers"][0]["digest"] = "sha256:../../../../../../etc/passwd";
    expect_bad(j, "invalid digest");
    j = good_manifest();
    j["config"]["digest"] = "sha256:" + kHex.substr(0, 62) + "..";
    expect_bad(j, "invalid digest");
    j = good_manifest();
    j["layers"][0]["size"] = 1ull << 62;
    expect_bad(j, "exceeds the limit");
    j = good_manifest();
    j["layers"][1]["size"] = 1ull << 40;  // a template layer of a terabyte
    expect_bad(j, "exceeds the limit");
    j = good_manifest();
    j["layers"][0]["size"] = -1;
    expect_bad(j, "negative");
    j = good_manifest();
    j["layers"][0]["size"] = "12";
    expect_bad(j, "integer size");
    j = good_manifest();
    j["layers"][1]["mediaType"] = "application/vnd.evil.exec";
    expect_bad(j, "unknown media type");
    j = good_manifest();
    j["schemaVersion"] = 1;
    expect_bad(j, "schemaVersion");
    j = good_manifest();
    j["mediaType"] = "application/vnd.docker.distribution.manifest.list.v2+json";
    expect_bad(j, "unsupported manifest media type");
    j = good_manifest();
    j["layers"] = json::array({layer(media::kTemplate, "sha256:" + kHex, 5)});
    expect_bad(j, "exactly one model layer");
    j = good_manifest();
    j["layers"] = json::array();
    for (int i = 0; i < 300; ++i) j["layers"].push_back(layer(media::kModel, "sha256:" + kHex, 1));
    expect_bad(j, "too many layers");
    j = good_manifest();
    j.erase("config");
    expect_bad(j, "no config");
    EXPECT_THROW(Manifest::parse("not json"), Error);
    EXPECT_THROW(Manifest::parse("[]"), Error);
    EXPECT_THROW(Manifest::parse(std::string(5 << 20, ' ')), Error);
}
