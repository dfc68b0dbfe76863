// lokal's Jinja2 template engine: public API.
//
//   auto t = lokal::tmpl::Template::parse(source);   // throws lokal::tmpl::Error
//   std::string s = t.render(context_json);            // throws lokal::tmpl::Error
//
// Semantics follow Python Jinja2 3.1 in an ImmutableSandboxedEnvironment with
// trim_blocks / lstrip_blocks on (as Hugging Face renders chat templates) and the
// loopcontrols extension. A parsed Template is immutable: copies share the syntax tree and
// may be rendered concurrently from several threads.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "template/ast.h"
#include "template/error.h"
#include "template/eval.h"
#include "template/value.h"

namespace lokal::tmpl {

struct RenderOptions {
    Limits limits;
    // Extra globals (functions made with make_function, or plain values); the context wins
    // over them, they win over jinja's defaults (range, dict, namespace, cycler, joiner).
    std::vector<std::pair<std::string, Value>> globals;
};

class Template {
  public:
    static Template parse(std::string_view source, const ParseOptions& options = {});

    // The context must be a JSON object. Use nlohmann::ordered_json to keep key order:
    // Python dicts are insertion ordered and tojson / iteration reflect it.
    std::string render(const nlohmann::json& context) const;
    std::string render(const nlohmann::ordered_json& context) const;
    std::string render(const Value& context, const RenderOptions& options) const;

  private:
    std::shared_ptr<const Program> program_;
};

}  // namespace lokal::tmpl
