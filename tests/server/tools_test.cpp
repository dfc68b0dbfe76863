// Tool calling glue: which syntax each shipped chat template's model uses, parsing calls
// out of generated text in each syntax (hand-written model outputs), and how much of a
// growing answer may be streamed before it could turn out to be a call.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "server/tools.h"
#include "shared_path.h"

namespace lokal::server {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;  // ToolCall::arguments keeps the model's key order

std::string template_text(const std::string& name) {
    std::ifstream in(test::shared_path("templates/" + name + ".jinja"));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST(Tools, FormatOfShippedTemplates) {
    const std::pair<const char*, ToolFormat> cases[] = {
        {"Qwen-Qwen2.5-7B-Instruct", ToolFormat::Hermes},
        {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", ToolFormat::Hermes},
        {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", ToolFormat::Hermes},
        {"meta-llama-Llama-3.1-8B-Instruct", ToolFormat::Llama3},
        {"meta-llama-Llama-3.2-3B-Instruct", ToolFormat::Llama3},
        {"meta-llama-Llama-3.3-70B-Instruct", ToolFormat::Llama3},
        {"mistralai-Mistral-Nemo-Instruct-2407", ToolFormat::Mistral},
    };
    for (auto [name, format] : cases) {
        SCOPED_TRACE(name);
        const std::string src = template_text(name);
        ASSERT_FALSE(src.empty());
        EXPECT_EQ(tool_format_of(src), format);
        EXPECT_TRUE(template_knows_tools(src));
    }
    EXPECT_FALSE(template_knows_tools(template_text("google-gemma-2-2b-it")));
}

TEST(Tools, ParseEachSyntax) {
    auto [content, calls] = parse_tool_calls(
        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
        "\"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": "
        "1}\"}\n</tool_call>",
        ToolFormat::Hermes);
    EXPECT_EQ(content, "Let me check.");
    ASSERT_EQ(calls.size(), 2u);
    EXPECT_EQ(calls[0].name, "get_weather");
    EXPECT_EQ(calls[0].arguments, ordered_json({{"city", "Paris"}}));
    EXPECT_EQ(calls[1].name, "add");
    EXPECT_EQ(calls[1].arguments, ordered_json({{"a", 1}}));  // arguments given as a JSON string
    // An unterminated last call (cut by the token limit) still parses when its JSON does.
    auto cut =
        parse_tool_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}", ToolFormat::Hermes);
    EXPECT_EQ(cut.second.size(), 1u);
    // Anything that is not a call stays text, whole.
    for (const char* text : {"<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call>",
                             "<tool_call>{not json}</tool_call>", "plain answer",
                             "<tool_call>\n{\"arguments\": {}}\n</tool_call>"}) {
        auto [c, k] = parse_tool_calls(text, ToolFormat::Hermes);
        EXPECT_TRUE(k.empty()) << text;
        EXPECT_EQ(c, text);
    }

    auto llama = parse_tool_calls(" {\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}",
                                  ToolFormat::Llama3);
    ASSERT_EQ(llama.second.size(), 1u);
    EXPECT_EQ(llama.second[0].arguments, ordered_json({{"a", 1}, {"b", 2}}));
    EXPECT_EQ(llama.first, "");
    EXPECT_TRUE(parse_tool_calls("{\"answer\": 42}", ToolFormat::Llama3).second.empty());

    auto mistral = parse_tool_calls(
        "[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"x\": true}}]",
        ToolFormat::Mistral);
    ASSERT_EQ(mistral.second.size(), 2u);
    EXPECT_EQ(mistral.second[1].arguments, ordered_json({{"x", true}}));
    EXPECT_TRUE(parse_tool_calls("[1, 2]", ToolFormat::Mistral).second.empty());
}

TEST(Tools, StreamedTextStopsBeforeAPossibleCall) {
    EXPECT_EQ(tool_safe_prefix("Hello there", ToolFormat::Hermes), 11u);
    EXPECT_EQ(tool_safe_prefix("Hello <tool", ToolFormat::Hermes), 6u);  // may become the tag
    EXPECT_EQ(tool_safe_prefix("a < b", ToolFormat::Hermes), 5u);        // cannot any more
    EXPECT_EQ(tool_safe_prefix("ok <tool_call>\n{\"na", ToolFormat::Hermes), 3u);
    EXPECT_EQ(tool_safe_prefix("  ", ToolFormat::Llama3), 0u);
    EXPECT_EQ(tool_safe_prefix(" {\"name\"", ToolFormat::Llama3), 0u);
    EXPECT_EQ(tool_safe_prefix(" Sure", ToolFormat::Llama3), 5u);
    EXPECT_EQ(tool_safe_prefix("[{", ToolFormat::Mistral), 0u);
}

TEST(Tools, SetupReadsToolsAndChoice) {
    const std::string qwen = template_text("Qwen-Qwen2.5-7B-Instruct");
    const std::string body = R"({"tools": [{"type": "function", "function": {"name": "f",
        "parameters": {"type": "object", "properties": {"z": {"type": "integer"},
        "a": {"type": "integer"}}, "required": ["z", "a"]}}}], "tool_choice": "required"})";
    auto t = tool_setup(qwen, body, true);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->format, ToolFormat::Hermes);
    EXPECT_TRUE(t->template_knows_tools);
    ASSERT_TRUE(t->forced);
    // The template sees the tools with their parameters in the order they were sent.
    const std::string dumped = t->tools.dump();
    EXPECT_LT(dumped.find("\"z\""), dumped.find("\"a\""));
    EXPECT_FALSE(tool_setup(qwen, R"({"tools": []})", true));
    EXPECT_FALSE(tool_setup(qwen, R"({"tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "none"})",
                            true));
    auto ollama = tool_setup(qwen, R"({"tools": [{"type": "function", "function":
        {"name": "f"}}]})",
                             false);
    ASSERT_TRUE(ollama);
    EXPECT_FALSE(ollama->forced);  // Ollama has no tool_choice: the model decides
}

}  // namespace
}  // namespace lokal::server
