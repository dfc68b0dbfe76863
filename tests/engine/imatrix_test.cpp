// The importance matrix: collection over a real model, both file formats, and the checks
// on files that don't fit the model or are corrupt.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/imatrix.h"
#include "shared_path.h"
#include "tokenizer/vocab.h"

namespace lokal {
namespace {

std::string temp_path(const char* name) {
    return (std::filesystem::temp_directory_path() /
            (std::string("lokal_imx_") + std::to_string(getpid()) + name))
        .string();
}

TEST(Imatrix, CollectsEveryLayerMatmulOfStories260K) {
    auto model = Model::load(test::shared_path("models/stories260K.gguf"));
    std::vector<int32_t> tokens;
    for (int i = 0; i < 200; ++i) tokens.push_back(1 + (i * 37) % 500);
    ImatrixOptions o;
    o.n_ctx = 64;
    o.bos = 1;
    const Imatrix im = compute_imatrix(*model, 2, tokens, o);
    EXPECT_EQ(im.chunk_count, 3);
    EXPECT_EQ(im.entries.size(), 5u * 7);  // q, k, v, output, gate, up, down per layer
    const ImatrixEntry& e = im.entries.at("blk.0.ffn_down.weight");
    EXPECT_EQ(e.n_cols, 172);
    ASSERT_EQ(e.n_mat(), 1);
    EXPECT_EQ(e.counts[0], 3 * 64);
    EXPECT_EQ(im.entries.count("output.weight"), 0u);
    const auto w = im.importance("blk.0.attn_q.weight", 64, 1, 0);
    ASSERT_EQ(w.size(), 64u);
    for (float v : w) EXPECT_GT(v, 0.0f);
    EXPECT_TRUE(im.importance("no.such.weight", 64, 1, 0).empty());
    EXPECT_THROW(im.importance("blk.0.attn_q.weight", 128, 1, 0), ImatrixError);

    o.process_output = true;
    o.max_chunks = 1;
    EXPECT_EQ(compute_imatrix(*model, 2, tokens, o).entries.count("output.weight"), 1u);
}

TEST(Imatrix, BothFormatsRoundTrip) {
    Imatrix im;
    im.chunk_count = 4;
    im.chunk_size = 32;
    im.datasets = {"calib.txt"};
    ImatrixEntry dense;
    dense.n_cols = 3;
    dense.sum2 = {4, 8, 12};
    dense.counts = {4};
    im.entries["blk.0.attn_q.weight"] = dense;
    ImatrixEntry experts;  // two experts, the second never routed to
    experts.n_cols = 2;
    experts.sum2 = {2, 6, 0, 0};
    experts.counts = {2, 0};
    im.entries["blk.0.ffn_up_exps.weight"] = experts;
    const std::string g = temp_path("a.gguf"), d = temp_path("a.dat");
    im.save_gguf(g);
    im.save_dat(d);
    for (const std::string& path : {g, d}) {
        const Imatrix r = Imatrix::load(path);
        EXPECT_EQ(r.chunk_count, 4) << path;
        EXPECT_EQ(r.datasets, im.datasets) << path;
        EXPECT_EQ(r.importance("blk.0.attn_q.weight", 3, 1, 0), (std::vector<float>{1, 2, 3}))
            << path;
        EXPECT_EQ(r.importance("blk.0.ffn_up_exps.weight", 2, 2, 0), (std::vector<float>{1, 3}))
            << path;
        EXPECT_TRUE(r.importance("blk.0.ffn_up_exps.weight", 2, 2, 1).empty()) << path;
    }
    std::remove(g.c_str());
    std::remove(d.c_str());
}

TEST(Imatrix, CorruptDatFilesAreRefused) {
    const std::string p = temp_path("bad.dat");
    auto refused = [&](const std::string& bytes) {
        std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
        EXPECT_THROW(Imatrix::load(p), ImatrixError);
    };
    auto i32 = [](int32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
    refused("");
    refused(i32(1000000));            // more entries than the file could hold
    refused(i32(1) + i32(-5) + "x");  // negative name length
    refused(i32(1) + i32(4) + "name" + i32(1) + i32(100) + "");  // values past the end
    const float neg = -1.0f;
    refused(i32(1) + i32(4) + "name" + i32(1) + i32(1) +
            std::string(reinterpret_cast<const char*>(&neg), 4));
    std::remove(p.c_str());
    EXPECT_THROW(Imatrix::load(p), ImatrixError);  // missing file
}

}  // namespace
}  // namespace lokal
