// libFuzzer target for the chat-template engine: parse the input as a template and render it
// with a fixed chat context. Any lokal::tmpl::Error is an accepted outcome; a crash, a hang, a
// sanitizer report or another exception type is a bug.
//
//   clang build:  ./build/bin/template_fuzz -max_len=4096 tests/template/malformed
//   ../shared/templates other builds: template_fuzz_smoke FILE_OR_DIR...   (replays inputs, used by
//   ctest)
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

#include "template/chat_template.h"

namespace {

const nlohmann::ordered_json& messages() {
    static const auto m = nlohmann::ordered_json::parse(R"([
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello! <b>цвят</b> 😀 \"quoted\" \n next"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_12345", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2.5, true, null]}}}]},
        {"role": "tool", "tool_call_id": "call_12345", "content": "{\"temp\": 21}"},
        {"role": "assistant", "content": "<think>x</think>It is 21C."},
        {"role": "user", "content": [{"type": "text", "text": "image?"}, {"type": "image"}]}
    ])");
    return m;
}

const nlohmann::ordered_json& tools() {
    static const auto t = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
        "days": {"type": "array", "items": {"type": "integer"}}}, "required": ["city"]}}}])");
    return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;
    const std::string source(reinterpret_cast<const char*>(data), size);
    lokal::tmpl::ChatOptions opts;
    std::tm now{};
    now.tm_year = 126;
    now.tm_mon = 10;
    now.tm_mday = 21;
    opts.now = now;
    opts.limits.max_output = 1 << 20;
    opts.limits.max_items = 1 << 16;
    opts.limits.max_steps = 200000;
    try {
        lokal::tmpl::ChatTemplate t(source);
        t.apply(messages(), true, "<s>", "</s>", tools(), nlohmann::ordered_json{{"extra", 1}},
                opts);
    } catch (const lokal::tmpl::Error&) {
    }
    return 0;
}

#ifdef LOKAL_FUZZ_STANDALONE
#include "standalone_main.h"
#endif
