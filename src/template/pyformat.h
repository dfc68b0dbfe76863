// Python's json.dumps, printf-style '%' formatting and str.format, over template values.
#pragma once
#include <optional>
#include <string>

#include "template/value.h"

namespace lokal::tmpl {

struct JsonDumpOptions {
    bool ensure_ascii = false;
    std::optional<std::string> indent;  // nullopt: single line
    std::optional<std::string> item_separator, key_separator;
    bool sort_keys = false;
};

std::string json_dumps(const Value& v, const JsonDumpOptions& opts);

// "fmt % args": args is a tuple (positional), a dict (mapping keys) or a single value.
std::string percent_format(const std::string& fmt, const Value& args);

// str.format(*pos, **kw) as jinja's sandboxed string.Formatter does it; escape_fields
// HTML-escapes every formatted field (Markup.format).
std::string str_format(const std::string& fmt, const std::vector<Value>& pos, const Dict& kw,
                       bool escape_fields = false);

// format(value, spec) as used by str.format for one field.
std::string format_spec(const Value& v, const std::string& spec);

}  // namespace lokal::tmpl
