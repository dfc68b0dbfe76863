// Helpers shared by the quant tests: random rows and random-but-valid weight blocks.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "quant/fp16.h"
#include "quant/types.h"

namespace lokal::test {

// The weight types phase 1 covers.
inline const std::vector<TensorType>& weight_types() {
    static const std::vector<TensorType> v = {
        TensorType::F32,  TensorType::F16,    TensorType::BF16,  TensorType::Q4_0,
        TensorType::Q4_1, TensorType::Q5_0,   TensorType::Q5_1,  TensorType::Q8_0,
        TensorType::Q2_K, TensorType::Q3_K,   TensorType::Q4_K,  TensorType::Q5_K,
        TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS};
    return v;
}

inline std::vector<float> gaussian_row(std::mt19937& rng, int64_t n, float sigma = 1.0f) {
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// Student-t with `dof` degrees of freedom: heavy tails like real weight outliers.
inline std::vector<float> student_t_row(std::mt19937& rng, int64_t n, float dof = 3.0f) {
    std::student_t_distribution<float> dist(dof);
    std::vector<float> v((size_t)n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// Byte offsets of the fp16 scale fields inside one block (from the published layouts).
inline std::vector<int> fp16_field_offsets(TensorType t) {
    switch (t) {
        case TensorType::Q4_0:
        case TensorType::Q5_0:
        case TensorType::Q8_0:
        case TensorType::IQ4_NL:
        case TensorType::IQ4_XS:
            return {0};
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
            return {};
    }
}

// A row of n elements of `t` with random payload bits and sane random scales.
inline std::vector<uint8_t> random_weight_row(std::mt19937& rng, TensorType t, int64_t n) {
    const TypeTraits& tr = type_traits(t);
    std::vector<uint8_t> row(row_size(t, n));
    std::uniform_real_distribution<float> u(0.5f, 2.0f);
    if (t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16) {
        auto x = gaussian_row(rng, n);
        for (int64_t i = 0; i < n; ++i) {
            if (t == TensorType::F32) {
                std::memcpy(row.data() + 4 * i, &x[i], 4);
            } else {
                uint16_t h = t == TensorType::F16 ? fp32_to_fp16(x[i]) : fp32_to_bf16(x[i]);
                std::memcpy(row.data() + 2 * i, &h, 2);
            }
        }
        return row;
    }
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : row) b = (uint8_t)byte(rng);
    const auto offs = fp16_field_offsets(t);
    const int64_t nb = n / tr.block_size;
    for (int64_t b = 0; b < nb; ++b) {
        for (size_t k = 0; k < offs.size(); ++k) {
            float v = 0.01f * u(rng);
            if (k == 1 && (t == TensorType::Q4_1 || t == TensorType::Q5_1)) v = -0.1f * u(rng);
            const uint16_t h = fp32_to_fp16(v);
            std::memcpy(row.data() + b * tr.type_size + offs[k], &h, 2);
        }
    }
    return row;
}

}  // namespace lokal::test
