// The model registry's memory budget (--max-memory): what a loaded model counts, idle
// models unloaded least recently used first to make room, a busy server answered with
// "retry later", a model that can never fit refused up front; and the size parser.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "server/models.h"
#include "shared_path.h"

namespace lokal::server {
namespace {

constexpr const char* kA = "tiny-qwen2.Q8_0";
constexpr const char* kB = "tiny-qwen2.Q4_K_M";

ModelOptions options(uint64_t max_memory) {
    ModelOptions o;
    o.models_dir = test::shared_path("models");
    o.store_dir = "/nonexistent-lokal-store";
    o.n_ctx = 128;
    o.parallel = 2;
    o.n_threads = 1;
    o.max_loaded = 8;
    o.max_memory = max_memory;
    o.keep_alive = std::chrono::minutes(5);
    return o;
}

// What the registry counts for a model loaded alone: its weights and its whole KV pool.
uint64_t bytes_alone(const char* name) {
    ModelRegistry r(options(uint64_t(1) << 40));
    auto m = r.acquire(name);
    EXPECT_EQ(m->bytes, m->model->weight_bytes() + m->ctx->cache().storage.bytes());
    // The weights are most of the file (the rest is its header and vocabulary).
    const auto file =
        std::filesystem::file_size(test::shared_path(std::string("models/") + name + ".gguf"));
    EXPECT_GT(m->model->weight_bytes(), file / 2);
    EXPECT_LE(m->model->weight_bytes(), file);
    const uint64_t b = m->bytes;
    r.release(m, std::nullopt);
    return b;
}

std::vector<std::string> loaded_names(const ModelRegistry& r) {
    std::vector<std::string> out;
    for (auto& m : r.loaded()) out.push_back(m->name);
    return out;
}

TEST(ModelBudget, IdleModelsMakeRoomBusyOnesDoNot) {
    const uint64_t a = bytes_alone(kA), b = bytes_alone(kB);
    // Room for either model alone, not for both.
    ModelRegistry r(options(std::max(a, b) + std::min(a, b) / 2));
    auto ma = r.acquire(kA);
    try {
        r.acquire(kB);
        ADD_FAILURE() << "both models loaded within a budget for one";
    } catch (const ModelTooLarge& e) {
        EXPECT_TRUE(e.busy);
        EXPECT_NE(std::string(e.what()).find("retry"), std::string::npos) << e.what();
    }
    EXPECT_EQ(loaded_names(r), std::vector<std::string>{kA});
    r.release(ma, std::nullopt);
    // A is idle now: unloaded to make room for B.
    auto mb = r.acquire(kB);
    EXPECT_EQ(loaded_names(r), std::vector<std::string>{kB});
    r.release(mb, std::nullopt);
    // And back: B gives way to A.
    auto ma2 = r.acquire(kA);
    EXPECT_EQ(loaded_names(r), std::vector<std::string>{kA});
    r.release(ma2, std::nullopt);
}

TEST(ModelBudget, BothFitWhenTheBudgetAllows) {
    const uint64_t a = bytes_alone(kA), b = bytes_alone(kB);
    ModelRegistry r(options(a + b));
    auto ma = r.acquire(kA);
    auto mb = r.acquire(kB);
    EXPECT_EQ(loaded_names(r).size(), 2u);
    r.release(ma, std::nullopt);
    r.release(mb, std::nullopt);
}

TEST(ModelBudget, AModelThatCannotFitIsRefusedBeforeLoading) {
    const uint64_t a = bytes_alone(kA);
    ModelRegistry r(options(a / 2));
    try {
        r.acquire(kA);
        ADD_FAILURE() << "a model twice the budget was loaded";
    } catch (const ModelTooLarge& e) {
        EXPECT_FALSE(e.busy);
        const std::string msg = e.what();
        EXPECT_NE(msg.find("--max-memory"), std::string::npos) << msg;
        EXPECT_NE(msg.find("--cache-type q8_0"), std::string::npos) << msg;
    }
    EXPECT_TRUE(r.loaded().empty());
}

// A Q8_0 cache counts 34/64 of the f16 cache's bytes (tiny-qwen2's head size is 32).
TEST(ModelBudget, Q8_0CacheCountsLess) {
    ModelOptions o = options(uint64_t(1) << 40);
    ModelRegistry f16(o);
    o.kv_type = KvType::Q8_0;
    ModelRegistry q8(o);
    auto m16 = f16.acquire(kA);
    auto m8 = q8.acquire(kA);
    EXPECT_EQ(m8->ctx->cache().storage.type, KvType::Q8_0);
    EXPECT_EQ(m8->ctx->cache().storage.bytes() * 64, m16->ctx->cache().storage.bytes() * 34);
    EXPECT_LT(m8->bytes, m16->bytes);
    f16.release(m16, std::nullopt);
    q8.release(m8, std::nullopt);
}

TEST(ByteSize, Forms) {
    EXPECT_EQ(parse_byte_size("1048576"), 1048576u);
    EXPECT_EQ(parse_byte_size("8G"), 8ull << 30);
    EXPECT_EQ(parse_byte_size("8g"), 8ull << 30);
    EXPECT_EQ(parse_byte_size("512M"), 512ull << 20);
    EXPECT_EQ(parse_byte_size("512MiB"), 512ull << 20);
    EXPECT_EQ(parse_byte_size("2KB"), 2048u);
    EXPECT_EQ(parse_byte_size("1.5G"), 3ull << 29);
    EXPECT_EQ(parse_byte_size("1T"), 1ull << 40);
    EXPECT_EQ(parse_byte_size("100B"), 100u);
    for (const char* s : {"", "G", "-1G", "8X", "8GG", "1.2.3M", " 8G", "8 G", "1e3", "nan",
                          "99999999999999999999T"})
        EXPECT_FALSE(parse_byte_size(s).has_value()) << '"' << s << '"';
}

}  // namespace
}  // namespace lokal::server
