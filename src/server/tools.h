// Tool (function) calling for /v1/chat/completions and /api/chat.
//
// The functions go to the chat template as `tools` (OpenAI's shape); the model answers with
// calls in its family's syntax, which are parsed out of the generated text:
//   Hermes / Qwen 2.5 (templates that write <tool_call>):  <tool_call>\n{"name": ..,
//       "arguments": {..}}\n</tool_call>, possibly several, possibly after some text;
//   Llama 3.x (<|python_tag|> / ipython templates):  {"name": .., "parameters": {..}};
//   Mistral ([TOOL_CALLS] templates):  [{"name": .., "arguments": {..}}, ..].
// A template that does not know tools gets them in a system message with the Hermes syntax.
// tool_choice "required" or a named function constrains sampling to one call of the
// allowed functions whose arguments follow their parameters schema (json_matcher.h);
// "auto" leaves the choice to the model but constrains each call it starts; "none" leaves
// the tools out.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/json_schema.h"
#include "engine/sampler.h"

namespace lokal::server {

enum class ToolFormat { Hermes, Llama3, Mistral };

struct ToolCall {
    std::string name;
    nlohmann::ordered_json arguments;  // an object, keys in the order the model wrote them
};

struct ToolSetup {
    nlohmann::ordered_json tools;    // for the template: [{"type": "function", "function": {..}}]
    std::vector<std::string> names;  // the functions: a parsed call naming another is text
    ToolFormat format = ToolFormat::Hermes;
    bool template_knows_tools = false;        // else describe them in a system message
    std::shared_ptr<const JsonSchema> calls;  // one call of an allowed function
    bool forced = false;                      // tool_choice required / a named function
};

// Sets the sampler's constraint for the calls: from the first token when forced, else
// lazily from where the model begins a call (SamplerParams::json_trigger), so the calls it
// makes on its own are valid too.
void constrain_calls(const ToolSetup& t, SamplerParams& sp);

// How a chat template's model writes calls, and whether the template renders `tools`.
ToolFormat tool_format_of(const std::string& template_source);
bool template_knows_tools(const std::string& template_source);

// From a request body ("tools", and for OpenAI "tool_choice"); null when there are none or
// tool_choice is "none". Throws a 400 (HttpError) naming what is wrong. raw_body: the
// request as sent, so that parameter schemas keep their property order.
std::unique_ptr<ToolSetup> tool_setup(const std::string& template_source,
                                      const std::string& raw_body, bool openai);

// The system text that describes the tools to a template that does not know them.
std::string tool_system_note(const ToolSetup& t);
// An assistant message's earlier calls as that note asks the model to write them.
std::string hermes_calls_text(const nlohmann::ordered_json& tool_calls);

// Generated text -> (content, calls). Text that does not parse as calls, or a call of a
// function not in `names` (when given), stays content.
std::pair<std::string, std::vector<ToolCall>> parse_tool_calls(
    const std::string& text, ToolFormat f, const std::vector<std::string>* names = nullptr);
// How much of a growing answer can be streamed as content: the text before anything that
// may turn out to be a call. from: bytes already streamed (the search resumes there).
size_t tool_safe_prefix(const std::string& text, ToolFormat f, size_t from = 0);
// The next piece of content to stream of a growing answer (emitted: bytes of it streamed
// so far, advanced): text that cannot be part of a call; when done, the rest, or when the
// answer held calls (has_calls), only the text around them.
std::string tool_stream_piece(const std::string& text, ToolFormat f, bool done, bool has_calls,
                              size_t& emitted);

}  // namespace lokal::server
