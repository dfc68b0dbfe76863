// The KL-divergence base file: stored log-probabilities are accurate enough that the KLD
// they give matches the exact one, and a corrupt file is refused, never trusted.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "engine/kl_divergence.h"

namespace lokal {
namespace {

std::vector<float> random_logits(std::mt19937& rng, int n, float scale) {
    std::normal_distribution<float> d(0, scale);
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = d(rng);
    return v;
}

double exact_kld(const std::vector<float>& p_logits, const std::vector<float>& q_logits) {
    auto lsm = [](const std::vector<float>& l) {
        double mx = *std::max_element(l.begin(), l.end()), s = 0;
        for (float x : l) s += std::exp(x - mx);
        std::vector<double> out;
        for (float x : l) out.push_back(x - mx - std::log(s));
        return out;
    };
    const auto p = lsm(p_logits), q = lsm(q_logits);
    double k = 0;
    for (size_t i = 0; i < p.size(); ++i) k += std::exp(p[i]) * (p[i] - q[i]);
    return k;
}

std::string temp_path(const char* name) {
    return (std::filesystem::temp_directory_path() /
            (std::string("lokal_kld_") + std::to_string(getpid()) + name))
        .string();
}

TEST(Kld, StoredBaseGivesTheExactDivergence) {
    std::mt19937 rng(7);
    const int nv = 1000;
    KldBase base = KldBase::in_memory(nv, 64);
    std::vector<std::vector<float>> p, q;
    double exact = 0;
    for (int i = 0; i < 50; ++i) {
        p.push_back(random_logits(rng, nv, 3.0f));
        q.push_back(p.back());
        std::normal_distribution<float> noise(0, 0.05f);
        for (auto& x : q.back()) x += noise(rng);
        base.add(p.back().data(), i % nv);
        exact += exact_kld(p.back(), q.back());
    }
    base.nll_mean = 1.0;
    KldComparer same(base), other(base);
    for (int i = 0; i < 50; ++i) {
        same.add(p[(size_t)i].data(), i % nv);
        other.add(q[(size_t)i].data(), i % nv);
    }
    EXPECT_LT(same.result().kld_mean, 1e-7);
    EXPECT_DOUBLE_EQ(same.result().top1_agreement, 1.0);
    const KldResult r = other.result();
    EXPECT_NEAR(r.kld_mean, exact / 50, 1e-3 * exact / 50);
    EXPECT_GE(r.kld_p99, r.kld_median);
    EXPECT_GE(r.kld_max, r.kld_p99);
}

TEST(Kld, ComparerRefusesAnotherText) {
    KldBase base = KldBase::in_memory(8, 4);
    std::vector<float> l(8, 0.0f);
    base.add(l.data(), 3);
    KldComparer c(base);
    EXPECT_THROW(c.add(l.data(), 4), KldError);
    KldComparer d(base);
    d.add(l.data(), 3);
    EXPECT_THROW(d.add(l.data(), 3), KldError);  // more rows than the base has
}

TEST(Kld, FileRoundTripAndCorruptionChecks) {
    const std::string path = temp_path("a.kld");
    std::mt19937 rng(1);
    std::vector<std::vector<float>> rows;
    {
        KldBaseWriter w(path, 16, 8);
        for (int i = 0; i < 5; ++i) {
            rows.push_back(random_logits(rng, 16, 2.0f));
            w.add(rows.back().data(), i);
        }
        w.finish(2.5);
    }
    const KldBase b = KldBase::load(path);
    EXPECT_EQ(b.n_vocab, 16);
    EXPECT_EQ(b.n_ctx, 8);
    EXPECT_EQ(b.n_positions, 5u);
    EXPECT_DOUBLE_EQ(b.nll_mean, 2.5);
    KldComparer c(b);
    for (int i = 0; i < 5; ++i) c.add(rows[(size_t)i].data(), i);
    EXPECT_LT(c.result().kld_mean, 1e-7);

    std::string bytes;
    {
        std::ifstream in(path, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    auto expect_refused = [&](std::string data, const char* what) {
        std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
        EXPECT_THROW(KldBase::load(path), KldError) << what;
    };
    expect_refused(bytes.substr(0, bytes.size() - 1), "truncated");
    expect_refused(bytes + "x", "trailing byte");
    std::string b2 = bytes;
    b2[0] = 'X';
    expect_refused(b2, "magic");
    b2 = bytes;
    b2[12] = 0x7f, b2[13] = 0x7f, b2[14] = 0x7f;  // vocabulary size
    expect_refused(b2, "vocabulary");
    b2 = bytes;
    b2[24] = (char)0xff, b2[31] = 0x7f;  // position count
    expect_refused(b2, "count");
    b2 = bytes;
    b2[48] = 99;  // first record's next token beyond the vocabulary
    expect_refused(b2, "token");
    b2 = bytes;
    const float nan = NAN;
    std::memcpy(&b2[48 + 12], &nan, 4);  // step
    expect_refused(b2, "nan step");
    std::remove(path.c_str());
    EXPECT_THROW(KldBase::load(path), KldError);
}

}  // namespace
}  // namespace lokal
