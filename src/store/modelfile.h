// Ollama's Modelfile: FROM, PARAMETER, SYSTEM, TEMPLATE, MESSAGE, LICENSE, ADAPTER.
//
//   FROM ./model.gguf            # a GGUF path, a stored model name, or an HF folder
//   PARAMETER temperature 0.7
//   PARAMETER stop "<|end|>"
//   SYSTEM """You are terse."""
//   TEMPLATE """{{ messages }}"""  # Jinja chat template, overrides the GGUF's
//   MESSAGE user Hello
//   LICENSE """MIT"""
//
// Instructions are case-insensitive; '#' starts a comment line; values are a bare rest of
// line, a "quoted string" (with \" and \\ escapes) or a """multi-line block""". The text
// is untrusted: parse errors name the line.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace lokal::store {

struct Modelfile {
    std::string from;
    std::vector<std::pair<std::string, std::string>> parameters;  // name, raw value
    std::optional<std::string> system;
    std::optional<std::string> chat_template;
    std::vector<std::pair<std::string, std::string>> messages;  // role, content
    std::vector<std::string> licenses;
    std::optional<std::string> adapter;
};

Modelfile parse_modelfile(std::string_view text);

// Validate PARAMETER values and build Ollama's params JSON ({"temperature":0.7,"stop":[..]}).
// Unknown names and values of the wrong type throw store::Error.
nlohmann::json parameters_to_json(const std::vector<std::pair<std::string, std::string>>& p);

// The parameter names lokal understands.
const std::vector<std::string>& known_parameters();

}  // namespace lokal::store
