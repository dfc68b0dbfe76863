// lokal_store_cli: the store subcommands alone, for tests that drive the command line
// without the engine (the real `lokal` binary registers the same commands).
#include <cstdio>

#include "cli/commands.h"

namespace lokal::cli {
int& exit_code() {
    static int code = 0;
    return code;
}
}  // namespace lokal::cli

int main(int argc, char** argv) {
    CLI::App app{"lokal store commands", "lokal"};
    app.require_subcommand(1);
    lokal::cli::register_store_commands(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        std::fprintf(stderr, "lokal: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lokal: %s\n", e.what());
        return 1;
    }
    return lokal::cli::exit_code();
}
