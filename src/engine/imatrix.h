// The importance matrix ("imatrix"): for every weight matrix, the mean squared activation
// each input channel (column) carried over a calibration text. The quantizer weights each
// column's rounding error by it, so weights that meet large activations are kept more
// precisely (the AWQ observation: a few channels carry most of the signal).
//
// File formats (docs/QUANTIZATION.md):
//   - lokal writes GGUF, the layout the reference engine adopted in 2025: general.type =
//     "imatrix", imatrix.datasets (string array), imatrix.chunk_count, imatrix.chunk_size
//     (u32), and per matrix NAME two F32 tensors: NAME.in_sum2 [n_cols, n_mat] (sum of x^2
//     per column) and NAME.counts [1, n_mat] (activation rows summed); n_mat is the number
//     of experts for a 3-D expert tensor, else 1. Mean = in_sum2 / counts.
//   - The reference's older binary .dat format is read, and written with --format dat:
//     int32 n_entries; per entry int32 name length, name bytes, int32 ncall, int32 nval,
//     nval float32 (mean * ncall); then int32 chunk count, int32 length + dataset name.
// Both readers treat the file as untrusted: every count and length is checked against the
// file size, values must be finite and non-negative.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/model.h"

namespace lokal {

struct ImatrixError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct ImatrixEntry {
    int64_t n_cols = 0;
    std::vector<double> sum2;    // [n_mat][n_cols]
    std::vector<double> counts;  // [n_mat]
    int64_t n_mat() const { return (int64_t)counts.size(); }
};

struct Imatrix {
    std::map<std::string, ImatrixEntry> entries;  // by weight tensor name
    std::vector<std::string> datasets;
    int chunk_count = 0;
    int chunk_size = 0;

    // Importance for the rows of weight tensor `name`, expert slice `mat` of a tensor with
    // n_mat slices of n_cols columns: n_cols means, or an empty vector when the matrix has
    // no entry or that slice saw no activations. Throws ImatrixError when the entry's shape
    // does not match the tensor.
    std::vector<float> importance(const std::string& name, int64_t n_cols, int64_t n_mat,
                                  int64_t mat) const;

    void save_gguf(const std::string& path) const;
    void save_dat(const std::string& path) const;
    // Reads either format (detected by the GGUF magic).
    static Imatrix load(const std::string& path);
};

struct ImatrixOptions {
    int n_ctx = 512;  // tokens per chunk (the first replaced by BOS, as for perplexity)
    int32_t bos = -1;
    int max_chunks = 0;                      // 0: all
    bool process_output = false;             // include output.weight (the reference skips it)
    std::string dataset;                     // recorded in the file
    std::function<void(int, int)> progress;  // (chunks done, total)
};

// Run the model over `tokens` in chunks and accumulate the squared input activations of
// every matrix multiplication in the layers. Throws ContextError when the text is shorter
// than one chunk.
Imatrix compute_imatrix(const Model& model, int n_threads, const std::vector<int32_t>& tokens,
                        const ImatrixOptions& opts);

}  // namespace lokal
