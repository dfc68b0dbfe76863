// lokal: run open language models on your own machine.
#include <cstdio>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"

namespace lokal::cli {

int& exit_code() {
    static int code = 0;
    return code;
}

}  // namespace lokal::cli

int main(int argc, char** argv) {
    using namespace lokal::cli;
    CLI::App app{"lokal: run open large language models on your own machine", "lokal"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "lokal 0.1.0");
    app.footer("Run `lokal COMMAND --help` for a command's options.");
    register_run(app);
    register_tokenize(app);
    register_perplexity(app);
    register_info(app);
    register_store_commands(app);
    register_serve(app);
    register_quantize_commands(app);
    register_bench_commands(app);
    bool known = argc < 2 || argv[1][0] == '-';
    std::string names;
    for (const CLI::App* sub : app.get_subcommands({})) {
        names += (names.empty() ? "" : ", ") + sub->get_name();
        known = known || sub->check_name(argv[1]);
    }
    if (!known) {
        std::fprintf(stderr, "lokal: unknown command '%s' (commands: %s)\n", argv[1],
                     names.c_str());
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "lokal: %s (see --help)\n", one_line(e.what()).c_str());
        return 2;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "lokal: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "lokal: %s\n", one_line(e.what()).c_str());
        return 1;
    }
    return exit_code();
}
