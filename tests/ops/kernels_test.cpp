// Kernel paths against each other and against the quant layer's reference:
//  - the scalar (canonical) table agrees with vec_dot_ref within rounding, per type;
//  - every SIMD table this machine runs gives bit-identical vec_dot/GEMM outputs and
//    activation conversions to the scalar table (odd row counts, tails, 1..N tokens);
//  - matmul is batch invariant and thread-count invariant, bit for bit.
#include <gtest/gtest.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops/cpu_features.h"
#include "ops/gemm_common.h"
#include "ops/kernels.h"
#include "ops/matmul.h"
#include "quant/fp16.h"
#include "quant/quant.h"
#include "quant/quantize.h"

namespace lokal {
namespace {

const std::vector<TensorType>& all_types() {
    static const std::vector<TensorType> v = {
        TensorType::F32,  TensorType::F16,    TensorType::BF16,  TensorType::Q4_0,
        TensorType::Q4_1, TensorType::Q5_0,   TensorType::Q5_1,  TensorType::Q8_0,
        TensorType::Q2_K, TensorType::Q3_K,   TensorType::Q4_K,  TensorType::Q5_K,
        TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS};
    return v;
}

std::vector<float> gaussian(std::mt19937& rng, size_t n, float sigma = 1.0f) {
    std::normal_distribution<float> d(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// Byte offsets of the fp16 scale fields in a block (they must stay finite in random blocks).
std::vector<int> half_fields(TensorType t) {
    switch (t) {
        case TensorType::Q4_1:
        case TensorType::Q5_1:
        case TensorType::Q4_K:
        case TensorType::Q5_K:
            return {0, 2};
        case TensorType::Q2_K:
            return {80, 82};
        case TensorType::Q3_K:
            return {108};
        case TensorType::Q6_K:
            return {208};
        default:
            return {0};
    }
}

// n_rows rows of type t. Random bytes (every bit pattern of the packed fields) with finite
// scales, or, with `realistic`, gaussian weights through the quantizer.
std::vector<uint8_t> make_rows(TensorType t, int64_t n_rows, int64_t n, std::mt19937& rng,
                               bool realistic) {
    const size_t rb = row_size(t, n);
    std::vector<uint8_t> out(rb * (size_t)n_rows);
    if (realistic || t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16) {
        for (int64_t r = 0; r < n_rows; ++r) {
            const auto x = gaussian(rng, (size_t)n);
            quantize_row(t, x.data(), out.data() + rb * (size_t)r, n, nullptr);
        }
        return out;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : out) b = (uint8_t)byte(rng);
    std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
    const TypeTraits& tr = type_traits(t);
    const int64_t nb = (int64_t)out.size() / tr.type_size;
    for (int64_t b = 0; b < nb; ++b)
        for (int off : half_fields(t)) {
            const uint16_t h = fp32_to_fp16(scale(rng));
            std::memcpy(out.data() + b * tr.type_size + off, &h, 2);
        }
    return out;
}

std::vector<uint8_t> make_acts(TensorType t, int64_t n_tok, int64_t n, std::mt19937& rng,
                               std::vector<float>* floats = nullptr) {
    const TensorType dot = type_traits(t).dot_type;
    const size_t rb = row_size(dot, n);
    std::vector<uint8_t> out(rb * (size_t)n_tok);
    for (int64_t i = 0; i < n_tok; ++i) {
        const auto x = gaussian(rng, (size_t)n);
        if (floats) floats->insert(floats->end(), x.begin(), x.end());
        quantize_row_dot(dot, x.data(), out.data() + rb * (size_t)i, n);
    }
    return out;
}

std::vector<int64_t> lengths_for(TensorType t) {
    const int bs = type_traits(t).block_size;
    // 4100: a row long enough that the BF16 GEMM splits 37 tokens into blocks (256 KiB).
    if (bs == 1) return {1, 7, 16, 33, 100, 256, 1000, 4100};
    if (bs == 32) return {32, 96, 256, 1056, 2304};
    return {256, 768, 1280, 2304};
}

// Uint bits of a float, for exact comparisons that also distinguish -0 and NaN payloads.
uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

std::vector<const KernelTable*> simd_tables() {
    std::vector<const KernelTable*> v;
    for (const char* isa : {"avx2", "avx512", "amx"})
        if (const KernelTable* t = kernels_for(isa)) v.push_back(t);
    // BF16 weights as a CPU without AVX512_BF16 computes them (fmas in the same order).
    if (kernels_for("avx512")) v.push_back(&avx512_kernels_without_bf16_dot());
    return v;
}

TEST(CpuFeatures, DetectsConsistentLevels) {
    const CpuFeatures& f = cpu_features();
    if (f.has_avx512_path()) {
        EXPECT_TRUE(f.has_avx2_path());
    }
    EXPECT_FALSE(f.describe().empty());
    const std::string isa = kernels().isa;
    EXPECT_TRUE(isa == "scalar" || isa == "avx2" || isa == "avx512" || isa == "amx") << isa;
    const char* want = std::getenv("LOKAL_ISA");
    if (want && std::string(want) == "avx2" && f.has_avx2_path()) {
        EXPECT_EQ(isa, "avx2");
    }
    if (want && std::string(want) == "scalar") {
        EXPECT_EQ(isa, "scalar");
    }
    std::printf("cpu: %s; kernels: %s\n", f.describe().c_str(), kernels().isa);
}

// The canonical arithmetic agrees with the reference dot products within float rounding.
TEST(Kernels, CanonicalMatchesReferenceWithinRounding) {
    std::mt19937 rng(11);
    for (TensorType t : all_types()) {
        for (int64_t n : lengths_for(t)) {
            const auto w = make_rows(t, 4, n, rng, true);
            std::vector<float> xf;
            const auto a = make_acts(t, 1, n, rng, &xf);
            std::vector<float> wf((size_t)n);
            for (int r = 0; r < 4; ++r) {
                const uint8_t* wr = w.data() + (size_t)r * row_size(t, n);
                dequantize_row(t, wr, wf.data(), n);
                double mag = 0;
                for (int64_t i = 0; i < n; ++i) mag += std::fabs((double)wf[i] * xf[i]);
                const float ref = reference_kernels().vec_dot[(int)t](n, wr, a.data());
                const float can = scalar_kernels().vec_dot[(int)t](n, wr, a.data());
                EXPECT_NEAR(can, ref, 2e-5 * mag + 1e-6) << type_name(t) << " n=" << n;
            }
        }
    }
}

// Runs a table's GEMM on rows [0, n_rows) the way matmul does (side data, row groups).
// packed: the weights are in the row-interleaved layout (gemm::pack_rows).
std::vector<float> run_gemm(const KernelTable& kt, TensorType t, const std::vector<uint8_t>& w,
                            int64_t n_rows, const std::vector<uint8_t>& act, int64_t n_tok,
                            int64_t n, bool packed = false) {
    gemm::GemmArgs a;
    a.type = t;
    a.n = n;
    a.w = w.data();
    a.packed = packed;
    a.w_stride = row_size(t, n);
    a.n_rows = n_rows;
    a.act = act.data();
    a.act_stride = row_size(type_traits(t).dot_type, n);
    std::vector<uint32_t> side;
    if (gemm::is_gemm_quant(t)) {
        const size_t sw = gemm::side_words(t, n);
        side.resize(sw * (size_t)n_tok);
        for (int64_t i = 0; i < n_tok; ++i)
            gemm::prepare_side(t, act.data() + a.act_stride * (size_t)i, n,
                               side.data() + sw * (size_t)i);
        a.side = side.data();
        a.side_stride = sw;
    }
    a.n_tokens = n_tok;
    std::vector<float> y((size_t)(n_rows * n_tok), NAN);
    a.y = y.data();
    a.ldy = n_rows;
    void* scratch = std::aligned_alloc(64, gemm::scratch_bytes(n_tok));
    // Decode through a pairing table, as matmul splits it: the first half of the full packed
    // row groups paired with the second, in two calls, then the rest one group at a time.
    const int64_t pairs = (n_rows - n_rows % 8) / kt.row_group / 2;
    if (packed && n_tok == 1 && kt.pairs_decode[(int)t] && pairs > 0) {
        gemm::GemmArgs pa = a;
        pa.pair_rows = pairs * kt.row_group;
        kt.gemm[(int)t](pa, 0, pairs / 2 * kt.row_group, scratch);
        kt.gemm[(int)t](pa, pairs / 2 * kt.row_group, pairs * kt.row_group, scratch);
        kt.gemm[(int)t](a, 2 * pa.pair_rows, n_rows, scratch);
        std::free(scratch);
        return y;
    }
    // Split at a row-group boundary, as matmul's work split does.
    const int64_t mid = std::min(n_rows, (int64_t)kt.row_group * ((n_rows / 2) / kt.row_group));
    if (mid > 0) kt.gemm[(int)t](a, 0, mid, scratch);
    if (mid < n_rows) kt.gemm[(int)t](a, mid, n_rows, scratch);
    std::free(scratch);
    return y;
}

TEST(Kernels, SimdGemmBitIdenticalToScalar) {
    const auto tables = simd_tables();
    if (tables.empty()) GTEST_SKIP() << "no SIMD path on this CPU";
    std::mt19937 rng(12);
    for (TensorType t : all_types()) {
        for (int64_t n : lengths_for(t)) {
            for (bool realistic : {false, true}) {
                // 37 tokens: 2 AMX tiles of 16 + a tail; 1: the decode tiles.
                const int64_t n_rows = 19, n_tok = realistic ? 37 : 1;
                const auto w = make_rows(t, n_rows, n, rng, realistic);
                const auto a = make_acts(t, n_tok, n, rng);
                const auto ref = run_gemm(scalar_kernels(), t, w, n_rows, a, n_tok, n);
                for (const KernelTable* kt : tables) {
                    const auto y = run_gemm(*kt, t, w, n_rows, a, n_tok, n);
                    for (size_t i = 0; i < y.size(); ++i)
                        ASSERT_EQ(bits_of(y[i]), bits_of(ref[i]))
                            << kt->isa << " " << type_name(t) << " n=" << n << " out " << i << ": "
                            << y[i] << " vs " << ref[i];
                    // vec_dot is the same arithmetic.
                    const size_t ar = row_size(type_traits(t).dot_type, n);
                    const int64_t tok = n_tok > 1 ? 1 : 0;
                    for (int64_t r = 0; r < 3; ++r)
                        ASSERT_EQ(bits_of(kt->vec_dot[(int)t](n, w.data() + r * row_size(t, n),
                                                              a.data() + ar * tok)),
                                  bits_of(ref[(size_t)(tok * n_rows + r)]))
                            << kt->isa << " vec_dot " << type_name(t);
                }
            }
        }
    }
}

// BF16 weights follow the pair order of the AVX-512 BF16 dot product (gemm_common.h): per lane
// the odd element of a pair, then the even one, denormal inputs read as zero, denormal results
// flushed. Hand-worked cases where another order or IEEE denormals give a different answer,
// on every table.
std::vector<uint16_t> bf16_bits(const std::vector<float>& v) {
    std::vector<uint16_t> out;
    for (float f : v) {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        EXPECT_EQ(u & 0xFFFF, 0u) << f << " is not a bf16 value";
        out.push_back((uint16_t)(u >> 16));
    }
    return out;
}

float bf16_dot(const KernelTable& kt, const std::vector<uint16_t>& w,
               const std::vector<uint16_t>& x) {
    return kt.vec_dot[(int)TensorType::BF16]((int64_t)w.size(), w.data(), x.data());
}

TEST(Kernels, Bf16DotFollowsThePairOrder) {
    std::vector<const KernelTable*> tables = simd_tables();
    tables.push_back(&scalar_kernels());
    const float tiny = std::ldexp(1.0f, -24);
    for (const KernelTable* kt : tables) {
        // Lane 0 holds elements 1, 0, 33, 32 in that order: 2^-24 + 2^-24 = 2^-23 first, then
        // 1 + 2^-23 is exact. Elements k mod 16 in order (the F16 lanes) would put 2^-24 and
        // 1 in different lanes and round 1 + 2^-24 to 1 at the end.
        std::vector<float> w(34, 0.0f), x(34, 1.0f);
        w[0] = w[1] = tiny;
        w[33] = 1.0f;
        EXPECT_EQ(bf16_dot(*kt, bf16_bits(w), bf16_bits(x)), 1.0f + 2 * tiny) << kt->isa;
        // An odd length: the last lane's odd element is past the end.
        EXPECT_EQ(bf16_dot(*kt, bf16_bits({1, 2, 3}), bf16_bits({4, 5, 6})), 32.0f) << kt->isa;
        // A denormal weight (bf16 0x0001, 2^-133) reads as zero: 0, not 2^-133 * 2^100.
        const std::vector<uint16_t> dw = {0x0001, 0}, dx = bf16_bits({std::ldexp(1.0f, 100), 0});
        EXPECT_EQ(bf16_dot(*kt, dw, dx), 0.0f) << kt->isa;
        // A product below the normal range is flushed: 2^-70 * 2^-60 = 2^-130 gives 0.
        EXPECT_EQ(bf16_dot(*kt, bf16_bits({std::ldexp(1.0f, -70), 0}),
                           bf16_bits({std::ldexp(1.0f, -60), 0})),
                  0.0f)
            << kt->isa;
        // So is a sum in the reduction tree: lanes 0 and 8 (elements 1 and 17) hold 1.5 * 2^-126
        // and -2^-126, whose sum 2^-127 is denormal.
        std::vector<float> rw(18, 0.0f), rx(18, 1.0f);
        rw[1] = 1.5f * std::ldexp(1.0f, -126);
        rw[17] = -std::ldexp(1.0f, -126);
#if defined(__x86_64__)
        const unsigned mxcsr = _mm_getcsr();
#endif
        EXPECT_EQ(bf16_dot(*kt, bf16_bits(rw), bf16_bits(rx)), 0.0f) << kt->isa;
#if defined(__x86_64__)
        EXPECT_EQ(_mm_getcsr(), mxcsr) << kt->isa << " must restore MXCSR";
#endif
    }
}

#if defined(__x86_64__)
// The scalar definition of the BF16 order against the instruction itself, where the CPU has it:
// random rows with values across the whole exponent range, denormals and zeros, odd lengths.
[[gnu::target("avx512f,avx512bw,avx512bf16")]] float bf16_dot_instruction(int64_t n,
                                                                          const uint16_t* w,
                                                                          const uint16_t* x) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 32) {
        const int left = (int)std::min<int64_t>(32, n - k);
        const __mmask32 em = left == 32 ? ~0u : (1u << left) - 1;
        const __mmask16 lanes = (__mmask16)((1u << ((left + 1) / 2)) - 1);
        const __m512i wv = _mm512_maskz_loadu_epi16(em, w + k);
        const __m512i xv = _mm512_maskz_loadu_epi16(em, x + k);
        acc = _mm512_mask_dpbf16_ps(acc, lanes, (__m512bh)wv, (__m512bh)xv);
    }
    // The canonical reduction tree, its sums flushed like the instruction's.
    auto ftz = [](float v) { return std::fabs(v) < 0x1p-126f ? std::copysign(0.0f, v) : v; };
    float l[16];
    _mm512_storeu_ps(l, acc);
    for (int i = 0; i < 8; ++i) l[i] = ftz(l[i] + l[i + 8]);
    for (int i = 0; i < 4; ++i) l[i] = ftz(l[i] + l[i + 4]);
    for (int i = 0; i < 2; ++i) l[i] = ftz(l[i] + l[i + 2]);
    return ftz(l[0] + l[1]);
}

TEST(Kernels, Bf16DotMatchesTheHardwareInstruction) {
    if (!cpu_features().avx512bf16) GTEST_SKIP() << "no AVX512_BF16 on this CPU";
    std::mt19937 rng(31);
    auto value = [&](bool wide) -> uint16_t {
        const uint32_t r = rng();
        const uint16_t sign = (uint16_t)(r & 0x8000), mant = (uint16_t)((r >> 1) & 0x7F);
        switch (r % 16) {
            case 0:
                return sign;  // signed zero
            case 1:
                return (uint16_t)(sign | mant | 1);  // denormal
            default: {
                const int e = wide ? 1 + (int)(r >> 8) % 254 : 127 + (int)((r >> 8) % 9) - 4;
                return (uint16_t)(sign | (e << 7) | mant);
            }
        }
    };
    int compared = 0;
    for (int64_t n : {1, 2, 7, 31, 32, 33, 100, 1000}) {
        for (int rep = 0; rep < 50; ++rep) {
            const bool wide = rep % 2 == 1;
            std::vector<uint16_t> w((size_t)n), x((size_t)n);
            for (auto& v : w) v = value(wide);
            for (auto& v : x) v = value(wide);
            const float hw = bf16_dot_instruction(n, w.data(), x.data());
            for (const KernelTable* kt : {&scalar_kernels(), &avx512_kernels_without_bf16_dot()}) {
                const float got = bf16_dot(*kt, w, x);
                if (std::isnan(hw)) {
                    ASSERT_TRUE(std::isnan(got)) << kt->isa << " n=" << n;
                } else {
                    ASSERT_EQ(bits_of(got), bits_of(hw))
                        << kt->isa << " n=" << n << " rep " << rep << ": " << got << " vs " << hw;
                }
                ++compared;
            }
        }
    }
    EXPECT_EQ(compared, 8 * 50 * 2);
}
#endif  // __x86_64__

// Row-interleaved weights: packing is a permutation of the bytes (undone exactly), partial
// last groups stay row-major, and every table that reads packed weights gives the scalar
// table's bits on them, for decode (1 token) and batches.
TEST(Kernels, PackedWeightsBitIdenticalToScalar) {
    std::mt19937 rng(21);
    int tested = 0;
    for (const KernelTable* kt : simd_tables()) {
        if (!kt->reads_packed) continue;
        for (TensorType t : all_types()) {
            if (!gemm::is_gemm_quant(t)) continue;
            ASSERT_EQ(gemm::pack_layout(t).block_bytes, type_traits(t).type_size) << type_name(t);
            for (int64_t n : lengths_for(t)) {
                for (int64_t n_rows : {8, 19, 24, 32, 40, 72, 104}) {
                    const auto w = make_rows(t, n_rows, n, rng, true);
                    auto p = w;
                    gemm::pack_rows(t, n, n_rows, p.data(), kt->pack_interleave);
                    if (n_rows >= 8) {
                        ASSERT_NE(p, w) << type_name(t);
                    }
                    const size_t full = (size_t)(n_rows - n_rows % 8) * row_size(t, n);
                    ASSERT_TRUE(std::equal(w.begin() + (ptrdiff_t)full, w.end(),
                                           p.begin() + (ptrdiff_t)full))
                        << "tail rows must stay row-major";
                    auto back = p;
                    gemm::unpack_rows(t, n, n_rows, back.data(), kt->pack_interleave);
                    ASSERT_EQ(back, w) << type_name(t) << " pack/unpack round trip";
                    for (int64_t n_tok : {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 33}) {
                        const auto a = make_acts(t, n_tok, n, rng);
                        const auto ref = run_gemm(scalar_kernels(), t, w, n_rows, a, n_tok, n);
                        const auto y = run_gemm(*kt, t, p, n_rows, a, n_tok, n, true);
                        for (size_t i = 0; i < y.size(); ++i)
                            ASSERT_EQ(bits_of(y[i]), bits_of(ref[i]))
                                << kt->isa << " packed " << type_name(t) << " n=" << n
                                << " rows=" << n_rows << " tok=" << n_tok << " out " << i;
                    }
                    ++tested;
                }
            }
        }
    }
    if (tested == 0) GTEST_SKIP() << "no kernel table here reads packed weights";
}

// Long batches go over their tokens in blocks of at most 256 KiB of activations
// (gemm_isa.h, split_token_blocks): at 2048 columns 112-128 tokens a block, so 250 tokens are
// two or three blocks and a remainder on the panel path, 240 a remainder of 16 on the
// few-token path. Every token must still get the scalar table's bits, packed or not.
TEST(Kernels, TokenBlocksOfLongBatchesBitIdenticalToScalar) {
    const auto tables = simd_tables();
    if (tables.empty()) GTEST_SKIP() << "no SIMD path on this CPU";
    std::mt19937 rng(22);
    const int64_t n = 2048, n_rows = 24;
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K}) {
        const auto w = make_rows(t, n_rows, n, rng, true);
        for (int64_t n_tok : {240, 250}) {
            ASSERT_GT((size_t)n_tok * row_size(type_traits(t).dot_type, n), size_t{256} << 10);
            const auto a = make_acts(t, n_tok, n, rng);
            const auto ref = run_gemm(scalar_kernels(), t, w, n_rows, a, n_tok, n);
            for (const KernelTable* kt : tables)
                for (bool packed : {false, true}) {
                    if (packed && !kt->reads_packed) continue;
                    auto wp = w;
                    if (packed) gemm::pack_rows(t, n, n_rows, wp.data(), kt->pack_interleave);
                    const auto y = run_gemm(*kt, t, wp, n_rows, a, n_tok, n, packed);
                    for (size_t i = 0; i < y.size(); ++i)
                        ASSERT_EQ(bits_of(y[i]), bits_of(ref[i]))
                            << kt->isa << (packed ? " packed " : " ") << type_name(t)
                            << " tok=" << n_tok << " out " << i;
                }
        }
    }
}

// Interleave 2 (the AVX-512 table's 16-row units) is interleave 1's 8-row runs reordered:
// in each full unit, run (block b, group j) sits at (2 b + j) * run bytes; 8-row groups past
// the last full unit keep interleave 1's layout. Checked against the layout's description,
// not against the packer itself.
TEST(Kernels, PackInterleaveTwoReordersEightRowRuns) {
    std::mt19937 rng(22);
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K}) {
        const int64_t n = 512, n_rows = 43;  // two units, one 8-row group, 3 row-major rows
        const auto w = make_rows(t, n_rows, n, rng, true);
        auto p1 = w, p2 = w;
        gemm::pack_rows(t, n, n_rows, p1.data(), 1);
        gemm::pack_rows(t, n, n_rows, p2.data(), 2);
        const size_t rb = row_size(t, n), run = (size_t)gemm::kPackRows * type_traits(t).type_size;
        const int64_t nb = n / type_traits(t).block_size;
        for (int64_t u = 0; u < 2; ++u)
            for (int64_t b = 0; b < nb; ++b)
                for (int64_t j = 0; j < 2; ++j) {
                    const uint8_t* want = p1.data() + (size_t)(16 * u + 8 * j) * rb + b * run;
                    const uint8_t* got =
                        p2.data() + (size_t)(16 * u) * rb + (size_t)(2 * b + j) * run;
                    ASSERT_EQ(std::memcmp(want, got, run), 0)
                        << type_name(t) << " unit " << u << " block " << b << " group " << j;
                }
        ASSERT_TRUE(std::equal(p1.begin() + (ptrdiff_t)(32 * rb), p1.end(),
                               p2.begin() + (ptrdiff_t)(32 * rb)))
            << type_name(t) << ": the group after the units and the tail";
        auto back = p2;
        gemm::unpack_rows(t, n, n_rows, back.data(), 2);
        ASSERT_EQ(back, w) << type_name(t);
    }
}

// unpack_row reads any single row of a packed matrix back as the row-major original: rows in
// full units, in 8-row groups after them, in the row-major tail; interleave 1, 2 and 3; every
// packable type.
TEST(Kernels, UnpackRowReadsSingleRowsOfPackedMatrices) {
    std::mt19937 rng(23);
    for (TensorType t :
         {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0,
          TensorType::IQ4_NL, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K,
          TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_XS}) {
        const int64_t n = 512;
        const size_t rb = row_size(t, n);
        for (int64_t n_rows : {5, 8, 43, 64}) {
            const auto w = make_rows(t, n_rows, n, rng, true);
            for (int il : {1, 2, 3}) {
                auto p = w;
                gemm::pack_rows(t, n, n_rows, p.data(), il);
                std::vector<uint8_t> row(rb);
                for (int64_t r = 0; r < n_rows; ++r) {
                    gemm::unpack_row(t, n, n_rows, p.data(), il, r, row.data());
                    ASSERT_EQ(std::memcmp(row.data(), w.data() + r * rb, rb), 0)
                        << type_name(t) << " rows " << n_rows << " interleave " << il << " row "
                        << r;
                }
                EXPECT_THROW(gemm::unpack_row(t, n, n_rows, p.data(), il, n_rows, row.data()),
                             std::out_of_range);
            }
        }
    }
}

TEST(Kernels, SimdActivationConversionBitIdentical) {
    std::mt19937 rng(13);
    for (const KernelTable* kt : simd_tables()) {
        for (TensorType d : {TensorType::F16, TensorType::BF16, TensorType::Q8_0, TensorType::Q8_1,
                             TensorType::Q8_K, TensorType::F32}) {
            for (int64_t n : {256, 512, 4096}) {
                for (int variant = 0; variant < 4; ++variant) {
                    auto x = gaussian(rng, (size_t)n, variant == 1 ? 1e-3f : 3.0f);
                    if (variant == 2)  // a zero block and exact ties at .5 steps
                        for (int64_t i = 0; i < n; ++i)
                            x[i] = i < 256 ? 0.0f : (float)((i % 9) - 4) * 0.5f;
                    if (variant == 3)  // largest magnitude appears with both signs
                        for (int64_t i = 0; i < n; i += 37) x[i] = (i / 37) % 2 ? 7.0f : -7.0f;
                    const size_t rb = row_size(d, n);
                    std::vector<uint8_t> want(rb), got(rb, 0xAB);
                    quantize_row_dot(d, x.data(), want.data(), n);
                    kt->quantize[(int)d](x.data(), got.data(), n);
                    ASSERT_EQ(got, want)
                        << kt->isa << " " << type_name(d) << " n=" << n << " v" << variant;
                }
            }
        }
    }
}

// matmul: each token's outputs are the same bits alone or in any batch, with any thread
// count, and equal to the scalar definition.
TEST(Matmul, BatchAndThreadInvariantForEveryType) {
    std::mt19937 rng(14);
    const int64_t n_rows = 37;
    std::vector<ThreadPool*> pools;
    for (int th = 1; th <= 4; ++th) pools.push_back(new ThreadPool(th));
    for (TensorType t : all_types()) {
        const int64_t n = type_traits(t).block_size == 1 ? 200 : 2304;
        const auto wbytes = make_rows(t, n_rows, n, rng, true);
        MatView w{t, n, n_rows, row_size(t, n), wbytes.data()};
        const int64_t max_tok = 17;
        std::vector<float> x;
        for (int64_t i = 0; i < max_tok; ++i) {
            const auto r = gaussian(rng, (size_t)n);
            x.insert(x.end(), r.begin(), r.end());
        }
        // Alone, one thread: the reference bits for every token.
        std::vector<float> alone((size_t)(max_tok * n_rows));
        MatmulScratch s;
        for (int64_t i = 0; i < max_tok; ++i)
            matmul(*pools[0], w, x.data() + i * n, n, 1, alone.data() + i * n_rows, n_rows, s);
        // The scalar definition (activations converted as matmul does).
        for (int64_t i = 0; i < max_tok; ++i) {
            std::vector<uint8_t> a(row_size(type_traits(t).dot_type, n));
            quantize_row_dot(type_traits(t).dot_type, x.data() + i * n, a.data(), n);
            for (int64_t r = 0; r < n_rows; ++r)
                ASSERT_EQ(bits_of(alone[(size_t)(i * n_rows + r)]),
                          bits_of(scalar_kernels().vec_dot[(int)t](n, w.row(r), a.data())))
                    << type_name(t) << " token " << i << " row " << r;
        }
        for (ThreadPool* pool : pools) {
            for (int64_t batch = 1; batch <= max_tok; ++batch) {
                // Tokens [off, off + batch) of the set, so each appears at varying positions.
                const int64_t off = (batch * 5) % (max_tok - batch + 1);
                std::vector<float> y((size_t)(batch * n_rows));
                matmul(*pool, w, x.data() + off * n, n, batch, y.data(), n_rows, s);
                for (int64_t i = 0; i < batch; ++i)
                    for (int64_t r = 0; r < n_rows; ++r)
                        ASSERT_EQ(bits_of(y[(size_t)(i * n_rows + r)]),
                                  bits_of(alone[(size_t)((off + i) * n_rows + r)]))
                            << type_name(t) << " threads " << pool->n_threads() << " batch "
                            << batch << " token " << i << " row " << r;
            }
        }
    }
    for (ThreadPool* p : pools) delete p;
}

TEST(Matmul, MultiEqualsSeparateCalls) {
    std::mt19937 rng(15);
    const int64_t n = 512, n_tok = 5;
    ThreadPool pool(3);
    const auto x = gaussian(rng, (size_t)(n * n_tok));
    const TensorType types[3] = {TensorType::Q4_K, TensorType::Q6_K, TensorType::Q8_0};
    const int64_t rows[3] = {48, 16, 23};
    std::vector<std::vector<uint8_t>> wb;
    std::vector<MatmulOut> outs;
    std::vector<std::vector<float>> ys(3);
    for (int i = 0; i < 3; ++i) {
        wb.push_back(make_rows(types[i], rows[i], n, rng, true));
        ys[(size_t)i].resize((size_t)(rows[i] * n_tok));
    }
    for (int i = 0; i < 3; ++i)
        outs.push_back({MatView{types[i], n, rows[i], row_size(types[i], n), wb[(size_t)i].data()},
                        ys[(size_t)i].data(), rows[i]});
    MatmulScratch s;
    matmul_multi(pool, outs.data(), 3, x.data(), n, n_tok, s);
    for (int i = 0; i < 3; ++i) {
        std::vector<float> y((size_t)(rows[i] * n_tok));
        matmul(pool, outs[(size_t)i].w, x.data(), n, n_tok, y.data(), rows[i], s);
        EXPECT_EQ(y, ys[(size_t)i]) << type_name(types[i]);
    }
}

// Activations converted row by row by their producer (as the forward pass's RMSNorm and
// SwiGLU do, rows split across threads in any order) give the bits of matmul_multi's own
// conversion, for weights needing Q8_0, Q8_1, Q8_K and f32 inputs at once; and a converted
// call with another shape than the one planned is refused.
TEST(Matmul, ConvertedByProducerEqualsMatmulMulti) {
    std::mt19937 rng(16);
    const int64_t n = 512;
    ThreadPool pool(3);
    const TensorType types[4] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q4_K,
                                 TensorType::F16};
    const int64_t rows[4] = {32, 16, 40, 8};
    std::vector<std::vector<uint8_t>> wb;
    for (int i = 0; i < 4; ++i) wb.push_back(make_rows(types[i], rows[i], n, rng, true));
    for (int64_t n_tok : {1, 3, 8, 17}) {
        const auto x = gaussian(rng, (size_t)(n * n_tok));
        std::vector<std::vector<float>> want(4), got(4);
        std::vector<MatmulOut> a, b;
        for (int i = 0; i < 4; ++i) {
            want[(size_t)i].assign((size_t)(rows[i] * n_tok), 0.0f);
            got[(size_t)i].assign((size_t)(rows[i] * n_tok), -1.0f);
            const MatView w{types[i], n, rows[i], row_size(types[i], n), wb[(size_t)i].data()};
            a.push_back({w, want[(size_t)i].data(), rows[i]});
            b.push_back({w, got[(size_t)i].data(), rows[i]});
        }
        MatmulScratch s;
        matmul_multi(pool, a.data(), 4, x.data(), n, n_tok, s);
        matmul_convert_begin(b.data(), 4, n_tok, s);
        pool.parallel_tasks(n_tok, [&](int64_t t, int) {
            const int64_t r = n_tok - 1 - t;  // rows in reverse, on whichever thread
            matmul_convert_row(s, r, x.data() + r * n);
        });
        matmul_multi_converted(pool, b.data(), 4, x.data(), n, n_tok, s);
        for (int i = 0; i < 4; ++i)
            EXPECT_EQ(got[(size_t)i], want[(size_t)i]) << type_name(types[i]) << " " << n_tok;
        EXPECT_THROW(matmul_multi_converted(pool, b.data(), 4, x.data(), n, n_tok + 1, s),
                     std::logic_error);
    }
}

// A residual on an output: residual += y for every output row and token, the bits of
// matmul then a separate add (packed Q4_0 with a partial row group, Q6_K and f32 weights,
// three threads), y itself as without the residual; outputs without one leave it alone.
TEST(Matmul, ResidualAddEqualsMatmulThenAdd) {
    std::mt19937 rng(17);
    const int64_t n = 512;
    ThreadPool pool(3);
    const TensorType types[3] = {TensorType::Q4_0, TensorType::Q6_K, TensorType::F32};
    const int64_t rows[3] = {56, 24, 8};
    for (int i = 0; i < 3; ++i) {
        auto wb = make_rows(types[i], rows[i], n, rng, true);
        MatView w{types[i], n, rows[i], row_size(types[i], n), wb.data()};
        if (matmul_can_pack(types[i])) {
            matmul_pack(types[i], n, rows[i], wb.data());
            w.packed = true;
        }
        for (int64_t n_tok : {1, 5, 8}) {
            const auto x = gaussian(rng, (size_t)(n * n_tok));
            const auto base = gaussian(rng, (size_t)(rows[i] * n_tok));
            std::vector<float> y_plain((size_t)(rows[i] * n_tok)), y((size_t)(rows[i] * n_tok));
            MatmulScratch s;
            matmul(pool, w, x.data(), n, n_tok, y_plain.data(), rows[i], s);
            std::vector<float> want = base;
            for (size_t k = 0; k < want.size(); ++k) want[k] += y_plain[k];
            std::vector<float> res = base;
            const MatmulOut out{w, y.data(), rows[i], res.data()};
            matmul_multi(pool, &out, 1, x.data(), n, n_tok, s);
            EXPECT_EQ(y, y_plain) << type_name(types[i]) << " " << n_tok;
            for (size_t k = 0; k < want.size(); ++k)
                ASSERT_EQ(bits_of(res[k]), bits_of(want[k]))
                    << type_name(types[i]) << " " << n_tok << " at " << k;
        }
    }
}

// One-token matmuls of packed weights through the table in use: where it decodes in pairs
// of far-apart row groups (kernels.h, pairs_decode), a thread's work units stand for two
// groups each, and units split between threads and outputs in every way. Every row must
// still get the scalar table's bits, its residual added once, at 1-4 threads, alone or in
// a matmul_multi with other shapes.
TEST(Matmul, PackedDecodeBitIdenticalToScalarAtAnyThreadCount) {
    std::mt19937 rng(18);
    const int64_t n = 512;
    std::vector<std::unique_ptr<ThreadPool>> pools;
    for (int th = 1; th <= 4; ++th) pools.push_back(std::make_unique<ThreadPool>(th));
    for (TensorType t : all_types()) {
        if (!matmul_can_pack(t)) continue;
        const int64_t rows[3] = {200, 40, 24};  // 12 full groups + 8 rows, 2 + 8, 1 + 8
        std::vector<std::vector<uint8_t>> plain, packed;
        std::vector<MatView> views;
        for (int64_t r : rows) {
            plain.push_back(make_rows(t, r, n, rng, true));
            packed.push_back(plain.back());
            matmul_pack(t, n, r, packed.back().data());
            views.push_back(MatView{t, n, r, row_size(t, n), packed.back().data()});
            views.back().packed = true;
        }
        const auto x = gaussian(rng, (size_t)n);
        std::vector<uint8_t> act(row_size(type_traits(t).dot_type, n));
        quantize_row_dot(type_traits(t).dot_type, x.data(), act.data(), n);
        for (auto& pool : pools) {
            std::vector<std::vector<float>> ys(3), res(3);
            std::vector<MatmulOut> outs;
            for (int i = 0; i < 3; ++i) {
                ys[(size_t)i].assign((size_t)rows[i], NAN);
                res[(size_t)i].assign((size_t)rows[i], 1.0f);
                outs.push_back(
                    {views[(size_t)i], ys[(size_t)i].data(), rows[i], res[(size_t)i].data()});
            }
            MatmulScratch s;
            matmul_multi(*pool, outs.data(), 3, x.data(), n, 1, s);
            for (int i = 0; i < 3; ++i)
                for (int64_t r = 0; r < rows[i]; ++r) {
                    const float want = scalar_kernels().vec_dot[(int)t](
                        n, plain[(size_t)i].data() + (size_t)r * row_size(t, n), act.data());
                    ASSERT_EQ(bits_of(ys[(size_t)i][(size_t)r]), bits_of(want))
                        << type_name(t) << " threads " << pool->n_threads() << " rows " << rows[i]
                        << " row " << r;
                    ASSERT_EQ(bits_of(res[(size_t)i][(size_t)r]), bits_of(1.0f + want))
                        << type_name(t) << " residual, row " << r;
                }
        }
    }
}

}  // namespace
}  // namespace lokal
