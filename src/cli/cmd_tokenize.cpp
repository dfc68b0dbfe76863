// lokal tokenize: print the token ids of a text as a JSON array on one line.
#include <iostream>
#include <iterator>

#include "cli/commands.h"
#include "cli/common.h"

#include <nlohmann/json.hpp>

namespace lokal::cli {

void register_tokenize(CLI::App& app) {
    struct Opts {
        std::string model, prompt, file, store;
        bool from_stdin = false, no_bos = false, no_parse_special = false, pieces = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
    cmd->add_option("-m,--model", o->model,
                    "GGUF file (a vocabulary-only file works) or stored model name")
        ->required();
    auto* p = cmd->add_option("-p,--prompt", o->prompt, "Text to tokenize");
    auto* f = cmd->add_option("-f,--file", o->file, "Read the text from a file");
    auto* s = cmd->add_flag("--stdin", o->from_stdin, "Read the text from standard input");
    p->excludes(f)->excludes(s);
    f->excludes(s);
    cmd->add_flag("--no-bos", o->no_bos, "Do not add the BOS token the vocabulary asks for");
    cmd->add_flag("--no-parse-special", o->no_parse_special,
                  "Treat special-token text as plain text");
    cmd->add_flag("--pieces", o->pieces, "Print [id, piece] pairs instead of ids");
    cmd->add_option("--store", o->store, "Model store directory (default $LOKAL_HOME or ~/.lokal)");
    cmd->callback([o, p, f, s] {
        if (!p->count() && !f->count() && !s->count())
            throw UsageError("tokenize needs -p TEXT, -f FILE or --stdin");
        std::string text = o->prompt;
        if (f->count()) text = read_text_file(o->file);
        if (o->from_stdin) text.assign(std::istreambuf_iterator<char>(std::cin), {});
        LoadedModel lm = load_model(o->model, o->store, /*vocab_only=*/true);
        const auto ids = lm.vocab->tokenize(text, !o->no_bos, !o->no_parse_special);
        std::string out = "[";
        for (size_t i = 0; i < ids.size(); ++i) {
            if (i) out += ", ";
            if (o->pieces) {
                nlohmann::json pair = {ids[i], lm.vocab->token_to_piece(ids[i], true)};
                out += pair.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            } else {
                out += std::to_string(ids[i]);
            }
        }
        out += "]\n";
        std::fwrite(out.data(), 1, out.size(), stdout);
    });
}

}  // namespace lokal::cli
