#include "template/builtins.h"
#include "template/jinja.h"

namespace lokal::tmpl {

Template Template::parse(std::string_view source, const ParseOptions& options) {
    Template t;
    t.program_ = parse_program(source, options);
    return t;
}

std::string Template::render(const nlohmann::json& context) const {
    return render(from_json(context), RenderOptions{});
}

std::string Template::render(const nlohmann::ordered_json& context) const {
    return render(from_json(context), RenderOptions{});
}

std::string Template::render(const Value& context, const RenderOptions& options) const {
    if (!program_) throw Error(ErrorKind::Runtime, "render() on an empty Template");
    if (!context.is_mapping() && !context.is_none())
        throw Error(ErrorKind::Type, "the template context must be a mapping");
    std::string out;
    // Declared first so it is destroyed last: it breaks the reference cycles of macros,
    // loops and namespaces once the scopes are gone.
    Context ctx(options.limits);
    auto globals = std::make_shared<Scope>();
    install_default_globals(*globals);
    for (const auto& [name, value] : options.globals) globals->set(name, value);
    auto top = std::make_shared<Scope>(globals);
    if (context.is_mapping()) {
        for (const auto& [k, v] : context.dict().entries()) {
            if (!k.is_string()) throw Error(ErrorKind::Type, "context keys must be strings");
            top->set(k.s(), v);
        }
    }
    predeclare(*top, program_->locals);
    render_body(program_->body, ctx, top, out);
    return out;
}

}  // namespace lokal::tmpl
