// On-disk block layouts of the GGUF quantized types (identical to ggml's block_* structs,
// byte for byte), plus the small decoding helpers several files share.
//
// All structs are packed (alignment 1): a row is a plain sequence of blocks that may start at
// any byte offset inside a mapped file, and the static_asserts pin every size to the format.
// Scales stored as IEEE half are kept as raw uint16_t bits (see quant/fp16.h).
//
// Element order inside a block is *not* always sequential; each struct comment spells out
// where element i of the block lives.
#pragma once

#include <cstdint>
#include <cstring>

#include "quant/types.h"

namespace lokal {

inline constexpr int QK4_0 = 32;
inline constexpr int QK4_1 = 32;
inline constexpr int QK5_0 = 32;
inline constexpr int QK5_1 = 32;
inline constexpr int QK8_0 = 32;
inline constexpr int QK8_1 = 32;
inline constexpr int QK4_NL = 32;
inline constexpr int K_SCALE_SIZE = 12;

#pragma pack(push, 1)

// x[i] = d * (q[i] - 8). qs[j] holds element j in its low nibble and element j+16 in its
// high nibble.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// x[i] = d * q[i] + m, nibbles as in Q4_0.
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[QK4_1 / 2];
};
static_assert(sizeof(BlockQ4_1) == 20);

// x[i] = d * (q[i] - 16), q 5 bits: low 4 bits as the Q4_0 nibbles, bit 4 of element i is
// bit i of the little-endian uint32 qh.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22);

// x[i] = d * q[i] + m, q as in Q5_0.
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24);

// x[i] = d * qs[i].
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Activation format for Q4_1/Q5_1: x[i] = d * qs[i]; s = d * sum(qs) (fp16) lets the dot
// product apply the weight block's min with one multiply.
struct BlockQ8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[QK8_1];
};
static_assert(sizeof(BlockQ8_1) == 36);

// 16 sub-blocks of 16: x = d*sc*q - dmin*m with q 2 bits, scales[j] = sc (low nibble) |
// m (high nibble) for sub-block j. qs: for each 128-element half h (32 bytes each), byte l
// holds elements h*128 + l + 32*s in bits 2s..2s+1 (s = 0..3).
struct BlockQ2_K {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d;
    uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4), q 3 bits. Low 2 bits in qs as in Q2_K;
// the high bit of element i is bit (i / 32) of hmask[i % 32] (set means +4, so clear means
// subtract 4 from the 2-bit value). The 16 6-bit scales are packed in 12 bytes:
// low nibbles of scales 0..7 in scales[0..7] bits 0-3, of 8..15 in scales[0..7] bits 4-7;
// the 2 high bits of scale j sit in scales[8 + j%4] at bits 2*(j/4).
struct BlockQ3_K {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// 8 sub-blocks of 32: x = d*sc*q - dmin*m, q 4 bits, sc/m 6 bits packed in 12 bytes (see
// get_scale_min_k4). qs: for each 64-element chunk c (32 bytes), byte l holds element
// 64c + l (low nibble) and 64c + 32 + l (high nibble).
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// As Q4_K with a 5th bit: for chunk c, bit 2c of qh[l] is bit 4 of element 64c + l and
// bit 2c+1 that of element 64c + 32 + l.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q 6 bits. For each 128-element half h
// (ql 64 bytes, qh 32 bytes): for l < 32, element h*128 + l + 32*s takes its low 4 bits from
// ql[l] (s=0, low nibble), ql[l+32] (s=1, low), ql[l] (s=2, high), ql[l+32] (s=3, high) and
// its high 2 bits from qh[l] bits 2s..2s+1.
struct BlockQ6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// Activation format for the K-quants and IQ4_XS: x[i] = d * qs[i] with a float d, and
// bsums[j] = sum of qs[16j .. 16j+15] so that the weight mins cost one multiply per 16.
struct BlockQ8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
};
static_assert(sizeof(BlockQ8_K) == 292);

// x[i] = d * kvalues_iq4nl[q[i]], nibbles as in Q4_0.
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[QK4_NL / 2];
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// 8 sub-blocks of 32: x = d * (ls - 32) * kvalues_iq4nl[q]. ls is 6 bits: low 4 bits in
// scales_l[j/2] (nibble j%2), high 2 bits at bits 2j..2j+1 of scales_h. Sub-block j's 16
// qs bytes hold element l (low nibble) and l+16 (high nibble), as IQ4_NL blocks.
struct BlockIQ4_XS {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

#pragma pack(pop)

// The 16 non-uniform levels of IQ4_NL / IQ4_XS (fit to a Gaussian-ish weight distribution).
inline constexpr int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                             1,    13,   25,  38,  53,  69,  89,  113};

// Q4_K/Q5_K scale and min of sub-block j (0..7) from the 12 packed bytes q:
// j < 4: sc = q[j] & 63, m = q[j+4] & 63;
// j >= 4: low 4 bits in q[j+4] (sc low nibble, m high nibble), high 2 bits are the top
// bits of q[j-4] (sc) and q[j] (m).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// The 16 signed Q3_K sub-block scales (already minus 32) from the 12 packed bytes.
inline void unpack_q3_k_scales(const uint8_t* packed, int8_t out[16]) {
    for (int j = 0; j < 16; ++j) {
        const int low = j < 8 ? (packed[j] & 0xF) : (packed[j - 8] >> 4);
        const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((low | (high << 4)) - 32);
    }
}

inline uint32_t load_u32_le(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);  // x86-64 and every target we build for are little-endian
    return v;
}

}  // namespace lokal
