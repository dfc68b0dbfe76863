// The quantization command family, registered together by register_quantize_commands.
#pragma once

#include <CLI/CLI.hpp>

namespace lokal::cli {

void register_quant_error(CLI::App& app);   // cmd_quant_error.cpp
void register_quant_report(CLI::App& app);  // cmd_quant_report.cpp

}  // namespace lokal::cli
