// The local store: create from a Modelfile, list, show, cp, rm, prune, name resolution.
#include <gtest/gtest.h>

#include <thread>

#include "helpers.h"
#include "store/create.h"
#include "store/modelfile.h"
#include "store/resolve.h"
#include "store/store.h"

using namespace lokal::store;
using namespace lokal::test;

namespace {

void create(Store& s, const std::string& name, const std::string& modelfile,
            const std::string& base_dir = ".") {
    CreateOptions o;
    o.base_dir = base_dir;
    create_model(s, parse_name(name), parse_modelfile(modelfile), o);
}

size_t count_blobs(const std::string& root) {
    size_t n = 0;
    for (auto& e : fs::directory_iterator(root + "/blobs"))
        if (try_parse_digest(e.path().filename().string(), true)) ++n;
    return n;
}

}  // namespace

TEST(StoreModelfile, Parses) {
    Modelfile mf = parse_modelfile(R"(# comment
FROM ./model.gguf
parameter temperature 0.5
PARAMETER stop "<|end|>"
PARAMETER stop "say \"bye\""
PARAMETER num_ctx 256
SYSTEM """You are
a tiny model."""
TEMPLATE {{ .Prompt }}
MESSAGE user Hi there
MESSAGE assistant "Hello!"
LICENSE """MIT"""
)");
    EXPECT_EQ(mf.from, "./model.gguf");
    ASSERT_EQ(mf.parameters.size(), 4u);
    EXPECT_EQ(mf.parameters[2].second, "say \"bye\"");
    EXPECT_EQ(*mf.system, "You are\na tiny model.");
    EXPECT_EQ(*mf.chat_template, "{{ .Prompt }}");
    ASSERT_EQ(mf.messages.size(), 2u);
    EXPECT_EQ(mf.messages[1].second, "Hello!");
    EXPECT_EQ(mf.licenses.at(0), "MIT");
    auto j = parameters_to_json(mf.parameters);
    EXPECT_DOUBLE_EQ(j["temperature"].get<double>(), 0.5);
    EXPECT_EQ(j["stop"].size(), 2u);
    EXPECT_EQ(j["num_ctx"].get<int>(), 256);
}

TEST(StoreModelfile, RejectsBadInput) {
    const char* bad[] = {
        "",                                   // no FROM
        "PARAMETER temperature 1",            // no FROM
        "FROM a\nFROM b",                     // two FROMs
        "FROM x\nBOGUS thing",                // unknown instruction
        "FROM x\nPARAMETER temperature hot",  // not a number
        "FROM x\nPARAMETER top_k 1.5",        // not an integer
        "FROM x\nPARAMETER seed -1",          // negative seed
        "FROM x\nPARAMETER nonsense 1",       // unknown parameter
        "FROM x\nPARAMETER temperature",      // missing value
        "FROM x\nSYSTEM \"\"\"unterminated",  // open block
        "FROM x\nSYSTEM \"open",              // open quote
        "FROM x\nMESSAGE wizard hi",          // bad role
        "FROM x\nSYSTEM \"a\" trailing",      // junk after a value
        "FROM x\nSYSTEM \"\xff\xfe\"",        // invalid UTF-8
        "FROM x\nPARAMETER temperature nan",
    };
    for (const char* s : bad) EXPECT_THROW(parse_modelfile(s), Error) << s;
    try {
        parse_modelfile("FROM x\n\nBOGUS y");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
    }
}

TEST(Store, CreateListShowResolve) {
    TempDir dir;
    Store s(dir.sub("store"));
    fs::create_directories(dir.sub("work"));
    fs::copy_file(model_path("stories260K.gguf"), dir.sub("work/m.gguf"));
    create(s, "tiny", R"(FROM ./m.gguf
PARAMETER temperature 0.25
PARAMETER top_k 7
PARAMETER seed 42
PARAMETER stop "<end>"
SYSTEM You tell stories.
TEMPLATE """{% for m in messages %}{{ m.content }}{% endfor %}"""
MESSAGE user Once
LICENSE MIT
)",
           dir.sub("work"));
    auto list = s.list();
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].name.display(), "tiny:latest");
    EXPECT_EQ(list[0].id.size(), 12u);
    EXPECT_GT(list[0].size, fs::file_size(model_path("stories260K.gguf")));

    auto path = resolve_model("tiny", s.root());
    ASSERT_TRUE(path.has_value());
    EXPECT_EQ(read_text(*path), read_text(model_path("stories260K.gguf")));
    EXPECT_EQ(resolve_model("tiny:latest", s.root()), path);
    EXPECT_EQ(resolve_model("registry.ollama.ai/library/tiny:latest", s.root()), path);
    EXPECT_FALSE(resolve_model("other", s.root()).has_value());
    EXPECT_FALSE(resolve_model("../etc/passwd", s.root()).has_value());
    EXPECT_FALSE(resolve_model(model_path("stories260K.gguf"), s.root()).has_value());

    auto cfg = load_model_config("tiny", s.root());
    ASSERT_TRUE(cfg.has_value());
    EXPECT_EQ(cfg->model_path, *path);
    EXPECT_FLOAT_EQ(*cfg->parameters.temperature, 0.25f);
    EXPECT_EQ(*cfg->parameters.top_k, 7);
    EXPECT_EQ(*cfg->parameters.seed, 42u);
    EXPECT_FALSE(cfg->parameters.top_p.has_value());
    ASSERT_EQ(cfg->parameters.stop.size(), 1u);
    EXPECT_EQ(*cfg->system, "You tell stories.");
    EXPECT_EQ(*cfg->chat_template, "{% for m in messages %}{{ m.content }}{% endfor %}");
    ASSERT_EQ(cfg->messages.size(), 1u);
    EXPECT_EQ(cfg->messages[0].role, "user");
    EXPECT_EQ(cfg->licenses.at(0), "MIT");
    std::string mf = modelfile_for(*cfg);
    EXPECT_NE(mf.find("PARAMETER top_k 7"), std::string::npos) << mf;
    Modelfile back = parse_modelfile(mf);  // show --modelfile output parses again
    EXPECT_EQ(back.parameters.size(), 4u);

    ModelInfo info = inspect_gguf(*path);
    EXPECT_EQ(info.architecture, "llama");
    EXPECT_EQ(info.embedding_length, 64u);
    EXPECT_EQ(info.block_count, 5u);
    EXPECT_GT(info.parameters, 200000u);
    EXPECT_FALSE(info.quantization.empty());

    // A derived model: FROM a stored name, overriding one parameter and the system prompt.
    create(s, "tiny:warm", "FROM tiny\nPARAMETER temperature 1.5\nSYSTEM Be warm.");
    auto warm = load_model_config("tiny:warm", s.root());
    ASSERT_TRUE(warm);
    EXPECT_EQ(warm->model_path, *path);  // same blob, stored once
    EXPECT_FLOAT_EQ(*warm->parameters.temperature, 1.5f);
    EXPECT_EQ(*warm->parameters.top_k, 7);  // inherited
    EXPECT_EQ(*warm->system, "Be warm.");
    EXPECT_EQ(*warm->chat_template, *cfg->chat_template);
    EXPECT_EQ(s.list().size(), 2u);
}

TEST(Store, CopyRemovePrune) {
    TempDir dir;
    Store s(dir.sub("store"));
    create(s, "a", "FROM " + model_path("stories260K.gguf"));
    create(s, "b", "FROM " + model_path("TinyStories-656K.Q8_0.gguf") + "\nSYSTEM hi");
    s.copy(parse_name("a"), parse_name("me/a-copy:v1"));
    EXPECT_EQ(s.list().size(), 3u);
    EXPECT_EQ(resolve_model("a", s.root()), resolve_model("me/a-copy:v1", s.root()));
    size_t blobs = count_blobs(s.root());
    EXPECT_EQ(blobs, 5u);  // 2 models + 2 configs + 1 system (a and its copy share)

    s.remove(parse_name("a"));  // the copy still references the blobs
    EXPECT_EQ(count_blobs(s.root()), blobs);
    EXPECT_TRUE(resolve_model("me/a-copy:v1", s.root()));
    s.remove(parse_name("me/a-copy:v1"));
    EXPECT_EQ(count_blobs(s.root()), 3u);
    EXPECT_FALSE(fs::exists(s.manifests_dir() + "/registry.ollama.ai/me"));
    EXPECT_THROW(s.remove(parse_name("a")), Error);
    EXPECT_THROW(s.copy(parse_name("nope"), parse_name("x")), Error);

    // Orphans and partial downloads go with prune; referenced blobs stay.
    write_text(s.blobs_dir() + "/sha256-" + std::string(64, 'a'), "orphan");
    write_text(s.blobs_dir() + "/sha256-" + std::string(64, 'b') + "-partial", "part");
    write_text(s.blobs_dir() + "/import.tmp-1-2-3", "tmp");
    write_text(s.blobs_dir() + "/not-a-blob", "keep");  // unknown files are left alone
    auto r = s.prune();
    EXPECT_EQ(r.blobs, 1u);
    EXPECT_EQ(r.partials, 2u);
    EXPECT_EQ(count_blobs(s.root()), 3u);
    EXPECT_TRUE(fs::exists(s.blobs_dir() + "/not-a-blob"));
    EXPECT_TRUE(load_model_config("b", s.root()));
}

TEST(Store, BadCreateLeavesStoreUnchanged) {
    TempDir dir;
    Store s(dir.sub("store"));
    create(s, "good", "FROM " + model_path("stories260K.gguf"));
    auto before = snapshot(s.root());
    write_text(dir.sub("notgguf.bin"), std::string(4096, 'x'));
    write_text(dir.sub("trunc.gguf"), read_text(model_path("stories260K.gguf")).substr(0, 5000));
    const std::string bad[] = {
        "FROM " + dir.sub("notgguf.bin"),
        "FROM " + dir.sub("trunc.gguf"),
        "FROM " + dir.sub("missing.gguf"),
        "FROM no-such-model",
        "FROM ../../etc/passwd",
        "FROM " + dir.path(),  // a folder that is no HF checkpoint
    };
    for (const auto& m : bad) {
        EXPECT_THROW(create(s, "bad", m, dir.path()), Error) << m;
        EXPECT_EQ(snapshot(s.root()), before) << m;
    }
    EXPECT_THROW(create(s, "../evil", "FROM good"), Error);
    EXPECT_EQ(s.list().size(), 1u);
}

TEST(Store, CorruptManifestIsAClearError) {
    TempDir dir;
    Store s(dir.sub("store"));
    create(s, "m", "FROM " + model_path("stories260K.gguf"));
    std::string mpath = s.manifest_path(parse_name("m"));
    std::string text = read_text(mpath);
    auto pos = text.find("sha256:");
    std::string evil = text;
    evil.replace(pos, 71, "sha256:../../../../../../../../etc/passwd" + std::string(30, 'a'));
    write_text(mpath, evil);
    EXPECT_THROW(resolve_model("m", s.root()), Error);
    EXPECT_THROW(load_model_config("m", s.root()), Error);
    // Garbage collection refuses to run while a manifest is unreadable.
    create(s, "other", "FROM " + model_path("TinyStories-656K.Q8_0.gguf"));
    size_t blobs = count_blobs(s.root());
    s.remove(parse_name("other"));
    EXPECT_EQ(count_blobs(s.root()), blobs);
    write_text(mpath, text);
    EXPECT_TRUE(resolve_model("m", s.root()));
}

TEST(Store, ConcurrentCreateAndRemove) {
    TempDir dir;
    Store s(dir.sub("store"));
    std::vector<std::thread> ts;
    std::atomic<int> errors{0};
    for (int i = 0; i < 4; ++i)
        ts.emplace_back([&, i] {
            try {
                Store local(s.root());
                create(local, "c" + std::to_string(i), "FROM " + model_path("stories260K.gguf"));
                if (i % 2) local.remove(parse_name("c" + std::to_string(i)));
            } catch (const std::exception& e) {
                ++errors;
                ADD_FAILURE() << e.what();
            }
        });
    for (auto& t : ts) t.join();
    EXPECT_EQ(errors, 0);
    EXPECT_EQ(s.list().size(), 2u);
    EXPECT_TRUE(resolve_model("c0", s.root()));
    EXPECT_TRUE(resolve_model("c2", s.root()));
    EXPECT_EQ(count_blobs(s.root()), 2u);  // one model blob + one config blob
}

TEST(Store, DefaultDir) {
    const char* old = getenv("LOKAL_HOME");
    setenv("LOKAL_HOME", "/tmp/some-lokal-home", 1);
    EXPECT_EQ(default_store_dir(), "/tmp/some-lokal-home");
    unsetenv("LOKAL_HOME");
    EXPECT_TRUE(default_store_dir().ends_with("/.lokal"));
    if (old) setenv("LOKAL_HOME", old, 1);
}
