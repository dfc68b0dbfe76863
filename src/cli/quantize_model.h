// Quantize a GGUF model file to a preset (used by `lokal quantize` and `lokal quant-report`).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/imatrix.h"
#include "quant/mix.h"

namespace lokal::cli {

struct QuantizeJob {
    std::string input, output;
    const QuantPreset* preset = nullptr;
    const Imatrix* imatrix = nullptr;
    std::string imatrix_path;                      // recorded in the output's metadata
    int threads = 0;                               // 0: hardware threads
    bool progress = false;                         // progress bar on stderr
    std::function<void(const std::string&)> warn;  // one-line warnings (fallbacks, requantizing)
};

struct QuantizeSummary {
    uint64_t input_bytes = 0, output_bytes = 0;  // file sizes
    uint64_t n_elements = 0;                     // all tensors
    uint64_t tensor_bytes = 0;                   // tensor data in the output
    double bits_per_weight = 0;                  // 8 * tensor_bytes / n_elements
    double seconds = 0;
    int n_tensors = 0, n_converted = 0, n_fallback = 0, n_with_importance = 0;
    std::map<std::string, int> types;  // output type name -> tensors
};

// Throws UsageError / gguf::Error / ImatrixError with one line.
QuantizeSummary quantize_model(const QuantizeJob& job);

}  // namespace lokal::cli
