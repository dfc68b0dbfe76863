// Dequantization of hand-built blocks. Expected values are either worked out by hand
// (literal numbers) or restated element by element from the published layout ("element i
// lives in byte ..., bits ..."), independent of the loop structure of the code under test.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "quant/fp16.h"
#include "quant/quant.h"
#include "test_util.h"

namespace lokal {
namespace {

constexpr int8_t kIQ4[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                             1,    13,   25,  38,  53,  69,  89,  113};

void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
    std::memcpy(&b[off], &v, 2);
}

std::vector<float> deq(TensorType t, const std::vector<uint8_t>& b, int64_t n) {
    std::vector<float> y((size_t)n);
    dequantize_row(t, b.data(), y.data(), n);
    return y;
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::vector<uint8_t> v(n);
    for (auto& x : v) x = (uint8_t)(rng() & 0xFF);
    return v;
}

TEST(DequantBlocks, FloatTypes) {
    std::vector<uint8_t> f16(4), bf16(4);
    put16(f16, 0, 0x3C00);   // 1.0
    put16(f16, 2, 0xC000);   // -2.0
    put16(bf16, 0, 0x3F80);  // 1.0
    put16(bf16, 2, 0xC040);  // -3.0
    auto a = deq(TensorType::F16, f16, 2);
    auto b = deq(TensorType::BF16, bf16, 2);
    EXPECT_EQ(a[0], 1.0f);
    EXPECT_EQ(a[1], -2.0f);
    EXPECT_EQ(b[0], 1.0f);
    EXPECT_EQ(b[1], -3.0f);
    float f[2] = {1.5f, -0.25f};
    float out[2];
    dequantize_row(TensorType::F32, f, out, 2);
    EXPECT_EQ(out[0], 1.5f);
    EXPECT_EQ(out[1], -0.25f);
}

TEST(DequantBlocks, Q4_0) {
    std::vector<uint8_t> b(18, 0x88);  // all nibbles 8 -> 0
    put16(b, 0, 0x3800);               // d = 0.5
    b[2 + 0] = 0x3C;                   // element 0: nibble 0xC, element 16: nibble 0x3
    auto y = deq(TensorType::Q4_0, b, 32);
    EXPECT_EQ(y[0], (12 - 8) * 0.5f);
    EXPECT_EQ(y[16], (3 - 8) * 0.5f);
    EXPECT_EQ(y[1], 0.0f);
    // Layout restated: element i = nibble (i / 16) of qs[i % 16].
    b = random_bytes(18, 1);
    put16(b, 0, 0x3400);  // 0.25
    y = deq(TensorType::Q4_0, b, 32);
    for (int i = 0; i < 32; ++i) {
        const int q = (b[2 + i % 16] >> (4 * (i / 16))) & 15;
        EXPECT_EQ(y[i], (q - 8) * 0.25f) << i;
    }
}

TEST(DequantBlocks, Q4_1) {
    std::vector<uint8_t> b(20, 0);
    put16(b, 0, 0x3800);  // d = 0.5
    put16(b, 2, 0xBC00);  // m = -1
    b[4 + 1] = 0xF0;
    auto y = deq(TensorType::Q4_1, b, 32);
    EXPECT_EQ(y[1], -1.0f);
    EXPECT_EQ(y[17], 15 * 0.5f - 1.0f);
    b = random_bytes(20, 2);
    put16(b, 0, 0x3800);
    put16(b, 2, 0xBC00);
    y = deq(TensorType::Q4_1, b, 32);
    for (int i = 0; i < 32; ++i) {
        const int q = (b[4 + i % 16] >> (4 * (i / 16))) & 15;
        EXPECT_EQ(y[i], q * 0.5f - 1.0f) << i;
    }
}

TEST(DequantBlocks, Q5_0) {
    std::vector<uint8_t> b(22, 0);
    put16(b, 0, 0x3C00);  // d = 1
    b[6 + 2] = 0x21;      // element 2 low bits 1, element 18 low bits 2
    b[2] = 0x04;          // qh bit 2 set (element 2), bit 18 clear
    auto y = deq(TensorType::Q5_0, b, 32);
    EXPECT_EQ(y[2], 1.0f);     // (1 | 16) - 16
    EXPECT_EQ(y[18], -14.0f);  // 2 - 16
    EXPECT_EQ(y[0], -16.0f);
    b = random_bytes(22, 3);
    put16(b, 0, 0x3800);
    y = deq(TensorType::Q5_0, b, 32);
    uint32_t qh;
    std::memcpy(&qh, &b[2], 4);
    for (int i = 0; i < 32; ++i) {
        const int q = ((b[6 + i % 16] >> (4 * (i / 16))) & 15) | (((qh >> i) & 1) << 4);
        EXPECT_EQ(y[i], (q - 16) * 0.5f) << i;
    }
}

TEST(DequantBlocks, Q5_1) {
    std::vector<uint8_t> b(24, 0);
    put16(b, 0, 0x3400);  // d = 0.25
    put16(b, 2, 0x3C00);  // m = 1
    b[8 + 0] = 0xFF;
    b[4 + 2] = 0x01;  // qh bit 16: element 16
    auto y = deq(TensorType::Q5_1, b, 32);
    EXPECT_EQ(y[0], 15 * 0.25f + 1.0f);
    EXPECT_EQ(y[16], 31 * 0.25f + 1.0f);
    b = random_bytes(24, 4);
    put16(b, 0, 0x3400);
    put16(b, 2, 0xC000);  // -2
    y = deq(TensorType::Q5_1, b, 32);
    uint32_t qh;
    std::memcpy(&qh, &b[4], 4);
    for (int i = 0; i < 32; ++i) {
        const int q = ((b[8 + i % 16] >> (4 * (i / 16))) & 15) | (((qh >> i) & 1) << 4);
        EXPECT_EQ(y[i], q * 0.25f - 2.0f) << i;
    }
}

TEST(DequantBlocks, Q8_0) {
    std::vector<uint8_t> b(34, 0);
    put16(b, 0, 0x3800);
    for (int i = 0; i < 32; ++i) b[2 + i] = (uint8_t)(int8_t)(i - 16);
    auto y = deq(TensorType::Q8_0, b, 32);
    EXPECT_EQ(y[5], -5.5f);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], (i - 16) * 0.5f);
}

// Q2_K bytes: scales[16] @0, qs[64] @16, d @80, dmin @82.
TEST(DequantBlocks, Q2_K) {
    std::vector<uint8_t> b(84, 0);
    put16(b, 80, 0x3C00);  // d = 1
    put16(b, 82, 0x3800);  // dmin = 0.5
    b[2] = 0x31;           // sub-block 2 (elements 32..47): sc 1, m 3
    b[16 + 0] = 0x0C;      // element 0 -> 0 (bits 0-1), element 32 -> 3 (bits 2-3)
    auto y = deq(TensorType::Q2_K, b, 256);
    EXPECT_EQ(y[32], 1.0f * 3 - 0.5f * 3);
    EXPECT_EQ(y[33], -1.5f);
    EXPECT_EQ(y[0], 0.0f);
    b = random_bytes(84, 5);
    put16(b, 80, 0x3800);
    put16(b, 82, 0x3400);
    y = deq(TensorType::Q2_K, b, 256);
    for (int i = 0; i < 256; ++i) {
        const int sc = b[i / 16] & 15, m = b[i / 16] >> 4;
        const int q = (b[16 + 32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        EXPECT_EQ(y[i], 0.5f * sc * q - 0.25f * m) << i;
    }
}

// Q3_K bytes: hmask[32] @0, qs[64] @32, scales[12] @96, d @108.
TEST(DequantBlocks, Q3_K) {
    std::vector<uint8_t> b(110, 0);
    put16(b, 108, 0x4000);  // d = 2
    b[96 + 0] = 0x05;       // scale 0 low nibble 5
    b[96 + 8] = 0x02;       // scale 0 high bits 2 -> (5 | 32) - 32 = 5
    b[32 + 0] = 0x09;       // element 0: low 2 bits 1; element 32: bits 2-3 = 2
    b[0] = 0x02;            // hmask[0] bit 1 -> element 32 high bit set; element 0 clear
    auto y = deq(TensorType::Q3_K, b, 256);
    EXPECT_EQ(y[0], 2.0f * 5 * (1 - 4));
    EXPECT_EQ(y[32], 2.0f * -32 * 2);  // scale 2 is all-zero bits -> -32
    b = random_bytes(110, 6);
    put16(b, 108, 0x3400);
    y = deq(TensorType::Q3_K, b, 256);
    for (int i = 0; i < 256; ++i) {
        const int sub = i / 16;
        const int low = sub < 8 ? (b[96 + sub] & 15) : (b[96 + sub - 8] >> 4);
        const int high = (b[96 + 8 + sub % 4] >> (2 * (sub / 4))) & 3;
        const int s = (low | (high << 4)) - 32;
        const int q2 = (b[32 + 32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
        const int hbit = (b[i % 32] >> (i / 32)) & 1;
        EXPECT_EQ(y[i], 0.25f * s * (q2 + 4 * hbit - 4)) << i;
    }
}

// 6-bit scale/min pair j of the Q4_K/Q5_K 12-byte field, restated.
void k4_scale(const uint8_t* s, int j, int* sc, int* m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Q4_K bytes: d @0, dmin @2, scales[12] @4, qs[128] @16.
TEST(DequantBlocks, Q4_K) {
    std::vector<uint8_t> b(144, 0);
    put16(b, 0, 0x3C00);
    put16(b, 2, 0x3C00);
    b[4 + 0] = 3;       // sub 0 scale
    b[4 + 4] = 2;       // sub 0 min
    b[16 + 0] = 0x05;   // element 0 nibble 5
    b[4 + 9] = 0x21;    // sub 5: low bits sc 1, m 2
    b[4 + 1] = 0x40;    // sc5 high bits 1 (sub 1 scale low 6 bits 0)
    b[4 + 5] = 0xC0;    // m5 high bits 3 (sub 1 min 0)
    b[16 + 64] = 0x70;  // element 160 (chunk 2, high nibble) = 7
    auto y = deq(TensorType::Q4_K, b, 256);
    EXPECT_EQ(y[0], 3.0f * 5 - 2.0f);
    EXPECT_EQ(y[160], 17.0f * 7 - 50.0f);
    EXPECT_EQ(y[32], 0.0f);  // sub 1: sc 0, m 0
    b = random_bytes(144, 7);
    put16(b, 0, 0x2C00);  // 1/16
    put16(b, 2, 0x2800);  // 1/32
    y = deq(TensorType::Q4_K, b, 256);
    for (int i = 0; i < 256; ++i) {
        int sc, m;
        k4_scale(&b[4], i / 32, &sc, &m);
        const int c = i / 64, r = i % 64;
        const int q = r < 32 ? (b[16 + 32 * c + r] & 15) : (b[16 + 32 * c + r - 32] >> 4);
        EXPECT_EQ(y[i], 0.0625f * sc * q - 0.03125f * m) << i;
    }
}

// Q5_K bytes: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48.
TEST(DequantBlocks, Q5_K) {
    std::vector<uint8_t> b(176, 0);
    put16(b, 0, 0x3C00);
    put16(b, 2, 0x3C00);
    b[4 + 9] = 0x21;
    b[4 + 1] = 0x40;
    b[4 + 5] = 0xC0;
    b[48 + 64] = 0x70;  // element 160 low bits 7
    b[16 + 0] = 0x20;   // qh[0] bit 5 = element 160's 5th bit
    auto y = deq(TensorType::Q5_K, b, 256);
    EXPECT_EQ(y[160], 17.0f * 23 - 50.0f);
    b = random_bytes(176, 8);
    put16(b, 0, 0x2C00);
    put16(b, 2, 0x2800);
    y = deq(TensorType::Q5_K, b, 256);
    for (int i = 0; i < 256; ++i) {
        int sc, m;
        k4_scale(&b[4], i / 32, &sc, &m);
        const int c = i / 64, r = i % 64;
        int q = r < 32 ? (b[48 + 32 * c + r] & 15) : (b[48 + 32 * c + r - 32] >> 4);
        q |= ((b[16 + i % 32] >> (i / 32)) & 1) << 4;
        EXPECT_EQ(y[i], 0.0625f * sc * q - 0.03125f * m) << i;
    }
}

// Q6_K bytes: ql[128] @0, qh[64] @128, scales[16] @192, d @208.
TEST(DequantBlocks, Q6_K) {
    std::vector<uint8_t> b(210, 0);
    put16(b, 208, 0x3800);  // d = 0.5
    b[192 + 0] = 3;
    b[0] = 0x0A;                  // element 0 low 4 bits 10
    b[128 + 0] = 0x02;            // element 0 high 2 bits 2 -> 42 - 32 = 10
    b[192 + 14] = (uint8_t)(-2);  // scale of elements 224..239
    b[96] = 0x10;                 // element 224: half 1, s 3, l 0 -> ql[64+32] high nibble 1
    auto y = deq(TensorType::Q6_K, b, 256);
    EXPECT_EQ(y[0], 0.5f * 3 * 10);
    EXPECT_EQ(y[224], 0.5f * -2 * -31);
    b = random_bytes(210, 9);
    put16(b, 208, 0x2C00);
    y = deq(TensorType::Q6_K, b, 256);
    for (int i = 0; i < 256; ++i) {
        const int h = i / 128, s = (i % 128) / 32, l = i % 32;
        const uint8_t lq = b[64 * h + l + (s & 1) * 32];
        const int low = s < 2 ? (lq & 15) : (lq >> 4);
        const int high = (b[128 + 32 * h + l] >> (2 * s)) & 3;
        const int q = (low | (high << 4)) - 32;
        EXPECT_EQ(y[i], 0.0625f * (float)(int8_t)b[192 + i / 16] * q) << i;
    }
}

TEST(DequantBlocks, IQ4_NL) {
    std::vector<uint8_t> b(18, 0x88);
    put16(b, 0, 0x3800);
    b[2 + 3] = 0x0F;
    auto y = deq(TensorType::IQ4_NL, b, 32);
    EXPECT_EQ(y[3], 0.5f * 113);
    EXPECT_EQ(y[19], 0.5f * -127);
    EXPECT_EQ(y[0], 0.5f * 1);
    b = random_bytes(18, 10);
    put16(b, 0, 0x3400);
    y = deq(TensorType::IQ4_NL, b, 32);
    for (int i = 0; i < 32; ++i) {
        EXPECT_EQ(y[i], 0.25f * kIQ4[(b[2 + i % 16] >> (4 * (i / 16))) & 15]) << i;
    }
}

// IQ4_XS bytes: d @0, scales_h @2 (u16), scales_l[4] @4, qs[128] @8.
TEST(DequantBlocks, IQ4_XS) {
    std::vector<uint8_t> b(136, 0);
    put16(b, 0, 0x3400);       // 0.25
    put16(b, 2, 0x0080);       // sub 3 high bits = 2
    b[4 + 1] = 0x50;           // sub 3 low bits = 5 -> ls 37
    b[8 + 16 * 3 + 1] = 0x80;  // element 3*32 + 17 -> index 8 (value 1)
    auto y = deq(TensorType::IQ4_XS, b, 256);
    EXPECT_EQ(y[113], 0.25f * 5 * 1);
    EXPECT_EQ(y[96], 0.25f * 5 * -127);
    EXPECT_EQ(y[0], 0.25f * -32 * -127);
    b = random_bytes(136, 11);
    put16(b, 0, 0x2C00);
    y = deq(TensorType::IQ4_XS, b, 256);
    uint16_t sh;
    std::memcpy(&sh, &b[2], 2);
    for (int i = 0; i < 256; ++i) {
        const int sub = i / 32, r = i % 32;
        const int ls = ((b[4 + sub / 2] >> (4 * (sub % 2))) & 15) | (((sh >> (2 * sub)) & 3) << 4);
        const int q = (b[8 + 16 * sub + r % 16] >> (4 * (r / 16))) & 15;
        EXPECT_EQ(y[i], 0.0625f * (float)(ls - 32) * kIQ4[q]) << i;
    }
}

TEST(DequantBlocks, MultiBlockRowsAreBlockwise) {
    // Dequantizing a 3-block row equals dequantizing each block alone.
    std::mt19937 rng(42);
    for (TensorType t : test::weight_types()) {
        const int bs = type_traits(t).block_size;
        const int64_t n = 3 * (bs == 1 ? 32 : bs);
        auto row = test::random_weight_row(rng, t, n);
        std::vector<float> whole((size_t)n), part((size_t)n);
        dequantize_row(t, row.data(), whole.data(), n);
        const int64_t chunk = n / 3;
        const size_t bytes = row_size(t, chunk);
        for (int k = 0; k < 3; ++k) {
            dequantize_row(t, row.data() + k * bytes, part.data() + k * chunk, chunk);
        }
        EXPECT_EQ(whole, part) << type_name(t);
    }
}

TEST(DequantBlocks, RejectsBadInput) {
    float y[32];
    uint8_t b[64] = {};
    EXPECT_THROW(dequantize_row(TensorType::Q4_0, b, y, 31), std::invalid_argument);
    EXPECT_THROW(dequantize_row(TensorType::IQ2_XXS, b, y, 256), std::invalid_argument);
}

}  // namespace
}  // namespace lokal
