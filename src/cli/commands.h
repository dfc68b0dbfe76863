// Every `lokal` subcommand registers itself on the CLI11 app through one of these.
// Each returns nothing; the subcommand's callback runs the command and sets the exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace lokal::cli {

// The process exit code the chosen subcommand asks for (set by its callback).
int& exit_code();

void register_run(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_info(CLI::App& app);
void register_store_commands(CLI::App& app);
void register_serve(CLI::App& app);              // the Ollama/OpenAI-compatible server
void register_quantize_commands(CLI::App& app);  // quantize, imatrix, quant-report, quant-error
void register_bench_commands(
    CLI::App& app);  // bench, synth  // pull, push, create, convert, list, show, rm, cp, prune

}  // namespace lokal::cli
