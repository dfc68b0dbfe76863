// lokal bench / synth: placeholders until they land.
#include "cli/commands.h"

namespace lokal::cli {

void register_bench_commands(CLI::App&) {}

}  // namespace lokal::cli
