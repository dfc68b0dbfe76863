// Dequantize every tensor of the reference-quantized tiny-k.<TYPE>.gguf files and compare
// with the same tensor of tiny-k.f32.gguf. A layout or scale-decoding mistake gives relative
// RMSE of order 1; correct decoding gives the quantization noise of the type, bounded below
// (measured values from the reference files, with ~30% headroom).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "shared_path.h"

namespace lokal {
namespace {

std::vector<float> dequantize_tensor(const gguf::TensorInfo& t) {
    std::vector<float> out((size_t)t.n_elements());
    const size_t rs = row_size(t.type, t.ne[0]);
    for (int64_t r = 0; r < t.n_rows(); ++r) {
        dequantize_row(t.type, t.data + r * rs, out.data() + r * t.ne[0], t.ne[0]);
    }
    return out;
}

// Upper bound on RMSE(dequantized - f32) / RMS(f32) per tensor type.
double rel_rmse_bound(TensorType t) {
    switch (t) {
        case TensorType::F32:
            return 0.0;
        case TensorType::F16:
            return 3e-4;  // measured 2.1e-4
        case TensorType::BF16:
            return 2.5e-3;  // 1.7e-3
        case TensorType::Q8_0:
            return 0.008;  // 0.0054
        case TensorType::Q6_K:
            return 0.025;  // 0.018
        case TensorType::Q5_K:
            return 0.05;  // 0.036
        case TensorType::Q5_0:
            return 0.06;  // 0.043
        case TensorType::Q5_1:
            return 0.055;  // 0.038
        case TensorType::Q4_K:
            return 0.10;  // 0.072
        case TensorType::Q4_0:
            return 0.12;  // 0.086
        case TensorType::Q4_1:
            return 0.11;  // 0.079
        case TensorType::IQ4_NL:
            return 0.10;  // 0.076
        case TensorType::IQ4_XS:
            return 0.10;  // 0.077
        case TensorType::Q3_K:
            return 0.20;  // 0.151
        case TensorType::Q2_K:
            return 0.40;  // 0.298
        default:
            return -1;
    }
}

class TinyKFile : public ::testing::TestWithParam<const char*> {};

TEST_P(TinyKFile, DequantizesCloseToF32) {
    const std::string path =
        test::shared_path(std::string("models/tiny-k.") + GetParam() + ".gguf");
    auto ref = gguf::File::open(test::shared_path("models/tiny-k.f32.gguf"));
    auto file = gguf::File::open(path);
    ASSERT_FALSE(file->tensors().empty());
    std::map<TensorType, int> seen;
    for (const auto& t : file->tensors()) {
        const gguf::TensorInfo* r = ref->find_tensor(t.name);
        ASSERT_NE(r, nullptr) << t.name;
        ASSERT_EQ(r->type, TensorType::F32) << t.name;
        ASSERT_EQ(r->n_elements(), t.n_elements()) << t.name;
        const double bound = rel_rmse_bound(t.type);
        ASSERT_GE(bound, 0.0) << "unexpected type " << type_name(t.type) << " in " << t.name;

        const auto got = dequantize_tensor(t);
        const auto want = dequantize_tensor(*r);
        double err = 0, ss = 0;
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_TRUE(std::isfinite(got[i])) << t.name << " [" << i << "]";
            const double e = (double)got[i] - want[i];
            err += e * e;
            ss += (double)want[i] * want[i];
        }
        const double rel = ss > 0 ? std::sqrt(err / ss) : std::sqrt(err);
        EXPECT_LE(rel, bound) << GetParam() << " " << t.name << " (" << type_name(t.type) << ")";
        ++seen[t.type];

        // Deterministic: a second pass gives the same bits.
        const auto again = dequantize_tensor(t);
        EXPECT_EQ(std::memcmp(got.data(), again.data(), got.size() * sizeof(float)), 0) << t.name;
    }
    // The file's namesake type must actually occur (the mix is not all F32).
    bool any_quant = false;
    for (const auto& [type, count] : seen) any_quant |= type != TensorType::F32 && count > 0;
    EXPECT_TRUE(any_quant);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, TinyKFile,
                         ::testing::Values("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                           "Q2_K", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K",
                                           "IQ4_NL", "IQ4_XS"),
                         [](const auto& info) { return std::string(info.param); });

// The vec_dot_ref of a real reference-quantized row with a quantized activation agrees with
// the float dot of the dequantized row, for every weight type found in the files.
TEST(TinyKFiles, VecDotOnRealRows) {
    std::map<TensorType, int> checked;
    for (const char* name : {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M",
                             "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16"}) {
        auto file =
            gguf::File::open(test::shared_path(std::string("models/tiny-k.") + name + ".gguf"));
        for (const auto& t : file->tensors()) {
            if (t.n_dims < 2 || checked[t.type] >= 3) continue;
            ++checked[t.type];
            const int64_t n = t.ne[0];
            std::vector<float> x((size_t)n);
            for (int64_t i = 0; i < n; ++i) x[i] = std::sin(0.37 * (double)i) + 0.1f;
            const TensorType at = type_traits(t.type).dot_type;
            std::vector<uint8_t> a(row_size(at, n));
            quantize_row_dot(at, x.data(), a.data(), n);
            std::vector<float> af((size_t)n), wf((size_t)n);
            if (at == TensorType::F32) {
                af = x;
            } else {
                dequantize_row(at, a.data(), af.data(), n);
            }
            const size_t rs = row_size(t.type, n);
            for (int64_t r = 0; r < std::min<int64_t>(t.n_rows(), 8); ++r) {
                dequantize_row(t.type, t.data + r * rs, wf.data(), n);
                double exact = 0, abs_sum = 0;
                for (int64_t i = 0; i < n; ++i) {
                    exact += (double)wf[i] * af[i];
                    abs_sum += std::fabs((double)wf[i] * af[i]);
                }
                const float got = vec_dot_ref(t.type, n, t.data + r * rs, a.data());
                const double tol = abs_sum * (at == TensorType::Q8_1 ? 2e-3 : 2e-5) + 1e-6;
                EXPECT_NEAR(got, exact, tol) << name << " " << t.name << " row " << r;
            }
        }
    }
    EXPECT_GE(checked.size(), 14u);
}

}  // namespace
}  // namespace lokal
