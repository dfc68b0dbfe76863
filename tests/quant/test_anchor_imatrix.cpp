// The importance (imatrix) quantization path against the reference quantizer itself: the
// anchor build of llama.cpp in ../shared/anchor computes an imatrix for tiny-k.f32.gguf on
// text/stories.txt and quantizes the model with it; quantize_row with the same importance
// must produce the same bytes for every row. Skipped where the anchor cannot run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "quant/quantize.h"
#include "shared_path.h"

namespace lokal {
namespace {

namespace fs = std::filesystem;

// The anchor's (February 2025) imatrix file: int32 count, then per entry: int32 name length,
// name, int32 ncall, int32 nval, nval floats (sums scaled by ncall); trailing fields ignored.
// The quantizer divides the values by ncall, as done here.
std::map<std::string, std::vector<float>> read_imatrix(const std::string& path) {
    std::map<std::string, std::vector<float>> out;
    std::ifstream in(path, std::ios::binary);
    int32_t n = 0;
    if (!in.read(reinterpret_cast<char*>(&n), 4) || n < 0 || n > 100000) return {};
    for (int32_t k = 0; k < n; ++k) {
        int32_t len = 0, ncall = 0, nval = 0;
        if (!in.read(reinterpret_cast<char*>(&len), 4) || len <= 0 || len > 4096) return {};
        std::string name((size_t)len, '\0');
        in.read(name.data(), len);
        in.read(reinterpret_cast<char*>(&ncall), 4);
        in.read(reinterpret_cast<char*>(&nval), 4);
        if (!in || nval <= 0 || nval > (1 << 24)) return {};
        std::vector<float> v((size_t)nval);
        if (!in.read(reinterpret_cast<char*>(v.data()), 4 * (std::streamsize)nval)) return {};
        if (ncall > 0) {
            for (float& x : v) x /= (float)ncall;
        }
        out[name] = std::move(v);
    }
    return out;
}

int run(const std::string& cmd) {
    return std::system(cmd.c_str());
}

TEST(AnchorImatrix, QuantizeRowMatchesLlamaQuantize) {
    const std::string anchor = test::shared_path("anchor");
    const std::string imatrix_bin = anchor + "/llama-imatrix",
                      quant_bin = anchor + "/llama-quantize";
    if (access(imatrix_bin.c_str(), X_OK) != 0 || access(quant_bin.c_str(), X_OK) != 0) {
        GTEST_SKIP() << "no anchor build at " << anchor;
    }
    char tmpl[] = "/tmp/lokal_quant_anchor_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    struct Cleanup {
        std::string d;
        ~Cleanup() {
            std::error_code ec;
            fs::remove_all(d, ec);
        }
    } cleanup{dir};

    const std::string f32 = test::shared_path("models/tiny-k.f32.gguf");
    const std::string env = "LD_LIBRARY_PATH='" + anchor + "' ";
    const std::string imx = dir + "/imatrix.dat";
    if (run(env + "'" + imatrix_bin + "' -m '" + f32 + "' -f '" +
            test::shared_path("text/stories.txt") + "' -c 128 -t 2 -o '" + imx + "' > '" + dir +
            "/imatrix.log' 2>&1") != 0) {
        GTEST_SKIP() << "the anchor's llama-imatrix does not run here";
    }
    const auto importance = read_imatrix(imx);
    ASSERT_FALSE(importance.empty());

    auto ref = gguf::File::open(f32);
    for (const char* type : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
                             "IQ4_NL", "IQ4_XS"}) {
        const std::string out = dir + "/tk." + type + ".gguf";
        ASSERT_EQ(run(env + "'" + quant_bin + "' --imatrix '" + imx + "' --pure '" + f32 + "' '" +
                      out + "' " + type + " 2 > '" + dir + "/quantize.log' 2>&1"),
                  0)
            << type;
        auto file = gguf::File::open(out);
        int tensors_with_importance = 0;
        for (const auto& t : file->tensors()) {
            if (t.type == TensorType::F32) continue;
            const gguf::TensorInfo* r = ref->find_tensor(t.name);
            ASSERT_NE(r, nullptr);
            const int64_t n = t.ne[0];
            auto it = importance.find(t.name);
            const float* w = nullptr;
            if (it != importance.end()) {
                ASSERT_EQ((int64_t)it->second.size(), n) << t.name;
                w = it->second.data();
                ++tensors_with_importance;
            }
            const size_t rs = row_size(t.type, n);
            std::vector<uint8_t> q(rs);
            int mismatches = 0;
            for (int64_t row = 0; row < t.n_rows(); ++row) {
                quantize_row(t.type, reinterpret_cast<const float*>(r->data) + row * n, q.data(), n,
                             w);
                mismatches += std::memcmp(q.data(), t.data + row * rs, rs) != 0;
            }
            EXPECT_EQ(mismatches, 0) << type << " " << t.name << (w ? " (imatrix)" : "");
        }
        EXPECT_GT(tensors_with_importance, 0) << type;
    }
}

}  // namespace
}  // namespace lokal
