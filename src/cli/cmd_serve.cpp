// lokal serve: placeholder until the server lands (src/server).
#include "cli/commands.h"
#include "cli/common.h"

namespace lokal::cli {

void register_serve(CLI::App& app) {
    CLI::App* cmd = app.add_subcommand("serve", "Serve the Ollama- and OpenAI-compatible HTTP API (not yet available)");
    cmd->callback([] { throw UsageError("serve is not implemented yet"); });
}

}  // namespace lokal::cli
