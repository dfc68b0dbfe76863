// Internal helpers shared by the quantizers (activation and weight). Not part of the API.
//
// The scale searches follow the established reference quantizers step for step (same
// candidate scales, same float operation order), so that rows quantized here are
// bit-identical to the reference engine's output for the same input and importance.
#pragma once

#include <cstdint>
#include <cstring>

namespace lokal::quant_detail {

// Round to nearest, ties to even, by the float magic-number trick the reference quantizers
// use (1.5 * 2^23 shifts the integer into the low mantissa bits). Valid for |f| <= 2^22;
// matching this exactly matters for bit-identical quantization at .5 ties.
inline int nearest_int(float fval) {
    const float val = fval + 12582912.f;
    int i;
    std::memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

// Groups whose max |x| is below this are stored as all-zero.
inline constexpr float kGroupMaxEps = 1e-15f;

// Symmetric signed quantization of n values to L[i] in [0, 2*nmax) (value L - nmax), returning
// the scale. rmse_type selects the error weights when qw is null: 0 = plain absmax rounding,
// 1 = x^2, 2 = 1, 3 = |x|, 4 = sqrt|x|; negative = one refinement step only. With qw, qw
// weights the squared error. Tries 18 scales around nmax/max and keeps the best weighted fit.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw);

// As make_qx_quants(rmse_type 1) but with coordinate-descent refinement of single levels;
// L in [0, 2*nmax). Used by the Q3_K reference quantizer.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse);

// Asymmetric quantization x ~ scale * L - min, L in [0, nmax], min >= 0 returned in *the_min.
// Searches nstep+1 scales (rmin + rdelta*is + nmax)/(max - min), fitting scale and min by
// weighted least squares for each; error is weighted |diff| (use_mad) or diff^2.
// qkx2 requires weights; qkx3 falls back to x^2 weights when weights is null.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);

// Non-negative values (sub-block scales or mins) to L in [0, nmax] with weighted refinement;
// returns the super-block scale.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights);

// Index of the entry of the sorted table val[0..n) nearest to x (ties to the upper entry).
int best_index_int8(int n, const int8_t* val, float x);

// ---- per-type row quantizers (n a multiple of the block size; qw null = no importance) ----

void quantize_q4_0(const float* x, void* y, int64_t n, const float* qw);
void quantize_q4_1(const float* x, void* y, int64_t n, const float* qw);
void quantize_q5_0(const float* x, void* y, int64_t n, const float* qw);
void quantize_q5_1(const float* x, void* y, int64_t n, const float* qw);
void quantize_q8_0(const float* x, void* y, int64_t n);
void quantize_q2_k(const float* x, void* y, int64_t n, const float* qw);
void quantize_q3_k(const float* x, void* y, int64_t n, const float* qw);
void quantize_q4_k(const float* x, void* y, int64_t n, const float* qw);
void quantize_q5_k(const float* x, void* y, int64_t n, const float* qw);
void quantize_q6_k(const float* x, void* y, int64_t n, const float* qw);
void quantize_iq4_nl(const float* x, void* y, int64_t n, const float* qw);
void quantize_iq4_xs(const float* x, void* y, int64_t n, const float* qw);

}  // namespace lokal::quant_detail
