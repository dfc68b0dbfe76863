#include "server/tools.h"

#include <algorithm>

#include "server/server_impl.h"

namespace lokal::server {
namespace {

using ojson = nlohmann::ordered_json;

// A model's output is parsed as calls only this shallow (printing it back recurses).
constexpr int kMaxCallDepth = 64;
constexpr size_t kMaxTools = 128;  // as OpenAI

HttpError bad(const std::string& msg, const char* param) {
    return HttpError(400, msg, "invalid_request_error", param);
}

std::string trim(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return {};
    const size_t b = s.find_last_not_of(" \t\r\n");
    return s.substr(a, b - a + 1);
}

// {"name": .., "arguments" | "parameters": {..} (or a JSON string of one)} -> a call.
bool call_of(const ojson& j, ToolCall& out) {
    if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
    ojson args = ojson::object();
    for (const char* key : {"arguments", "parameters"}) {
        if (!j.contains(key)) continue;
        args = j[key];
        if (args.is_string()) {
            const std::string text = args.get<std::string>();
            if (!json_nesting_within(text, kMaxCallDepth)) return false;
            args = ojson::parse(text, nullptr, false);
        }
        break;
    }
    if (!args.is_object()) return false;
    out = {j["name"].get<std::string>(), std::move(args)};
    return true;
}

// Parses model output (bounded nesting), discarded when deeper or invalid.
ojson parse_output(const std::string& text) {
    if (!json_nesting_within(text, kMaxCallDepth)) return ojson(ojson::value_t::discarded);
    return ojson::parse(text, nullptr, false);
}

bool valid_name(const std::string& n) {
    if (n.empty() || n.size() > 64) return false;
    for (char c : n)
        if (!std::isalnum((unsigned char)c) && c != '_' && c != '-' && c != '.') return false;
    return true;
}

}  // namespace

std::pair<std::string, std::vector<ToolCall>> parse_calls(const std::string& text, ToolFormat f);

ToolFormat tool_format_of(const std::string& src) {
    if (src.find("<tool_call>") != std::string::npos) return ToolFormat::Hermes;
    if (src.find("[TOOL_CALLS]") != std::string::npos) return ToolFormat::Mistral;
    if (src.find("<|python_tag|>") != std::string::npos ||
        (src.find("<|start_header_id|>") != std::string::npos &&
         src.find("tools") != std::string::npos))
        return ToolFormat::Llama3;
    return ToolFormat::Hermes;
}

bool template_knows_tools(const std::string& src) {
    return src.find("tools") != std::string::npos;
}

std::unique_ptr<ToolSetup> tool_setup(const std::string& template_source,
                                      const std::string& raw_body, bool openai) {
    // The body already parsed once (within the depth limit); again, keeping key order.
    const ojson body = ojson::parse(raw_body, nullptr, false);
    if (!body.is_object()) return nullptr;
    auto it = body.find("tools");
    if (it == body.end() || it->is_null() || (it->is_array() && it->empty())) {
        if (openai && body.contains("tool_choice") && !body["tool_choice"].is_null() &&
            body["tool_choice"] != "none" && body["tool_choice"] != "auto")
            throw bad("'tool_choice' needs 'tools'", "tool_choice");
        return nullptr;
    }
    if (!it->is_array()) throw bad("'tools' must be a list", "tools");
    if (it->size() > kMaxTools)
        throw bad("at most " + std::to_string(kMaxTools) + " tools are allowed", "tools");
    auto setup = std::make_unique<ToolSetup>();
    setup->tools = ojson::array();
    std::vector<ToolSchema> fns;
    for (const auto& t : *it) {
        // OpenAI and Ollama: {"type": "function", "function": {"name", "description",
        // "parameters"}}.
        if (!t.is_object() || !t.contains("type") || t["type"] != "function" ||
            !t.contains("function") || !t["function"].is_object())
            throw bad("each tool must be {\"type\": \"function\", \"function\": {...}}", "tools");
        const ojson& f = t["function"];
        const std::string name = f.contains("name") && f["name"].is_string() ? f["name"] : "";
        if (!valid_name(name))
            throw bad("a function name must be 1 to 64 letters, digits, '_', '-' or '.'", "tools");
        for (const auto& other : fns)
            if (other.name == name) throw bad("function '" + name + "' is listed twice", "tools");
        std::string params;
        if (f.contains("parameters") && !f["parameters"].is_null()) {
            if (!f["parameters"].is_object())
                throw bad("function '" + name + "': 'parameters' must be a JSON schema object",
                          "tools");
            params = f["parameters"].dump();
        }
        fns.push_back({name, params});
        setup->names.push_back(name);
        setup->tools.push_back(t);
    }
    setup->format = tool_format_of(template_source);
    setup->template_knows_tools = template_knows_tools(template_source);

    // tool_choice (OpenAI): "auto" (default), "none", "required", or a named function.
    bool forced = false;
    if (openai && body.contains("tool_choice") && !body["tool_choice"].is_null()) {
        const ojson& c = body["tool_choice"];
        if (c == "none") return nullptr;
        if (c == "required") {
            forced = true;
        } else if (c.is_object()) {
            const std::string want = c.contains("function") && c["function"].is_object() &&
                                             c["function"].contains("name") &&
                                             c["function"]["name"].is_string()
                                         ? c["function"]["name"].get<std::string>()
                                         : "";
            auto f = std::find_if(fns.begin(), fns.end(),
                                  [&](const ToolSchema& s) { return s.name == want; });
            if (f == fns.end())
                throw bad("'tool_choice' names no function in 'tools'", "tool_choice");
            fns = {*f};
            forced = true;
        } else if (c != "auto") {
            throw bad(
                "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                "{\"type\": \"function\", \"function\": {\"name\": ...}}",
                "tool_choice");
        }
    }
    // Parameters schemas are compiled either way, so a bad one is a 400 even when the model
    // is free not to call.
    try {
        std::shared_ptr<const JsonSchema> schema;
        switch (setup->format) {
            case ToolFormat::Hermes:
                schema = tool_call_schema(fns, "arguments", "<tool_call>\n", "\n</tool_call>");
                break;
            case ToolFormat::Llama3:
                schema = tool_call_schema(fns, "parameters", "", "");
                break;
            case ToolFormat::Mistral:
                schema = tool_call_schema(fns, "arguments", "[", "]");
                break;
        }
        setup->calls = schema;
        setup->forced = forced;
    } catch (const JsonSchemaError& e) {
        throw bad(e.what(), "tools");
    }
    return setup;
}

std::string tool_system_note(const ToolSetup& t) {
    ojson fns = ojson::array();
    for (const auto& tool : t.tools) fns.push_back(tool["function"]);
    return "You can call functions. To call one, answer with only:\n<tool_call>\n"
           "{\"name\": <function name>, \"arguments\": <arguments as a JSON object>}\n"
           "</tool_call>\nThe functions, with their parameters as JSON schemas:\n<tools>\n" +
           to_text(fns) + "\n</tools>";
}

std::string hermes_calls_text(const ojson& tool_calls) {
    std::string out;
    for (const auto& c : tool_calls) {
        const ojson& f = c.contains("function") ? c["function"] : c;
        const std::string name =
            f.is_object() && f.contains("name") && f["name"].is_string() ? f["name"] : "";
        out += (out.empty() ? "" : "\n") + std::string("<tool_call>\n") +
               to_text(ojson{{"name", name},
                             {"arguments", f.contains("arguments") ? f["arguments"] : ojson()}}) +
               "\n</tool_call>";
    }
    return out;
}

std::pair<std::string, std::vector<ToolCall>> parse_tool_calls(
    const std::string& text, ToolFormat f, const std::vector<std::string>* names) {
    auto result = parse_calls(text, f);
    if (names)
        for (const ToolCall& c : result.second)
            if (std::find(names->begin(), names->end(), c.name) == names->end()) return {text, {}};
    return result;
}

std::pair<std::string, std::vector<ToolCall>> parse_calls(const std::string& text, ToolFormat f) {
    std::vector<ToolCall> calls;
    const std::string t = trim(text);
    if (f == ToolFormat::Hermes) {
        std::string content;
        size_t pos = 0;
        while (true) {
            const size_t open = text.find("<tool_call>", pos);
            if (open == std::string::npos) {
                content += text.substr(pos);
                break;
            }
            content += text.substr(pos, open - pos);
            const size_t body = open + 11;
            size_t close = text.find("</tool_call>", body);
            const std::string inner =
                text.substr(body, close == std::string::npos ? std::string::npos : close - body);
            ToolCall c;
            if (!call_of(parse_output(inner), c)) return {text, {}};
            calls.push_back(std::move(c));
            if (close == std::string::npos) break;
            pos = close + 12;
        }
        return {trim(content), std::move(calls)};
    }
    std::string s = t;
    for (const char* tag : {"<|python_tag|>", "[TOOL_CALLS]"})
        if (s.rfind(tag, 0) == 0) s = trim(s.substr(std::string(tag).size()));
    const ojson j = parse_output(s);
    ToolCall c;
    if (f == ToolFormat::Llama3 && call_of(j, c)) return {"", {std::move(c)}};
    if (f == ToolFormat::Mistral && j.is_array() && !j.empty()) {
        for (const auto& e : j) {
            if (!call_of(e, c)) return {text, {}};
            calls.push_back(std::move(c));
        }
        return {"", std::move(calls)};
    }
    return {text, {}};
}

void constrain_calls(const ToolSetup& t, SamplerParams& sp) {
    sp.json_schema = t.calls;
    if (t.forced) return;
    sp.json_trigger = t.format == ToolFormat::Hermes   ? "<tool_call>"
                      : t.format == ToolFormat::Llama3 ? "{"
                                                       : "[";
    sp.json_trigger_at_start = t.format != ToolFormat::Hermes;
}

std::string tool_stream_piece(const std::string& text, ToolFormat f, bool done, bool has_calls,
                              size_t& emitted) {
    const size_t from = emitted;
    emitted = std::max(emitted, done ? text.size() : tool_safe_prefix(text, f, emitted));
    std::string piece = text.substr(from, emitted - from);
    if (!done || !has_calls) return piece;
    // The held-back text held the calls: what it has besides them is content (the text
    // before them has streamed already).
    std::string around = parse_tool_calls(piece, f).first;
    return around == piece ? std::string() : around;
}

size_t tool_safe_prefix(const std::string& text, ToolFormat f, size_t from) {
    if (f == ToolFormat::Hermes) {
        static const std::string tag = "<tool_call>";
        const size_t at = text.find(tag, from >= tag.size() ? from - tag.size() : 0);
        if (at != std::string::npos) return at;
        // Hold back a tail that may be the start of the tag.
        for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n)
            if (text.compare(text.size() - n, n, tag, 0, n) == 0) return text.size() - n;
        return text.size();
    }
    const size_t first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return 0;  // only whitespace so far: wait
    const char c = text[first];
    return c == '{' || c == '[' || c == '<' ? 0 : text.size();
}

}  // namespace lokal::server
