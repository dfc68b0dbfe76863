// Rendering of a model's tokenizer.chat_template the way Hugging Face transformers does:
// context {messages, add_generation_prompt, bos_token, eos_token[, tools], **extra} and the
// globals raise_exception(msg) and strftime_now(format).
#pragma once
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "template/jinja.h"

namespace lokal::tmpl {

struct ChatOptions {
    std::optional<std::tm> now;  // the time strftime_now formats; default: local time
    Limits limits;
};

class ChatTemplate {
  public:
    explicit ChatTemplate(std::string_view source);  // throws Error on syntax errors

    // tools: null (not passed to the template) or a list; extra: null or an object whose
    // entries are added to (and override) the context.
    std::string apply(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                      const std::string& bos_token, const std::string& eos_token,
                      const nlohmann::ordered_json& tools = nullptr,
                      const nlohmann::ordered_json& extra = nullptr,
                      const ChatOptions& options = {}) const;

    const Template& tmpl() const { return tmpl_; }

  private:
    Template tmpl_;
};

// One-shot helpers (parse + render). nlohmann::json objects have sorted keys; pass
// ordered_json to keep the order of tool definitions as the caller wrote them.
std::string apply_chat_template(const std::string& source, const nlohmann::json& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token, const nlohmann::json& tools = nullptr,
                                const nlohmann::json& extra = {}, const ChatOptions& options = {});
std::string apply_chat_template(const std::string& source, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token,
                                const nlohmann::ordered_json& tools = nullptr,
                                const nlohmann::ordered_json& extra = {},
                                const ChatOptions& options = {});

}  // namespace lokal::tmpl
