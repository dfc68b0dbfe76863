// lokal quantize / imatrix / quant-report / quant-error: placeholders until they land.
#include "cli/commands.h"

namespace lokal::cli {

void register_quantize_commands(CLI::App&) {}

}  // namespace lokal::cli
