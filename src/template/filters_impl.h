// Internal: helpers shared by the filter, test and global-function implementations.
#pragma once
#include <string>
#include <string_view>
#include <unordered_map>

#include "template/eval.h"

namespace lokal::tmpl {

using FilterTable = std::unordered_map<std::string_view, FilterFn>;
using TestTable = std::unordered_map<std::string_view, TestFn>;

void register_text_filters(FilterTable& t);      // filters.cpp
void register_sequence_filters(FilterTable& t);  // filters_seq.cpp

// jinja's soft_str: str(v) unless v is already a string (keeps Markup).
inline Value soft_str(const Value& v) {
    return v.is_string() ? v : Value(to_str(v));
}

// A hashable key for set/dict membership with Python equality (1 == 1.0 == True).
std::string hash_key(const Value& v);

// Python int(x) / float(x) conversions; false when they would raise.
bool py_to_int(const Value& v, int64_t base, int64_t& out);
bool py_to_float(const Value& v, double& out);

int64_t int_param(const Value* v, const char* what, int64_t def);

Value wordwrap_filter(Context& ctx, const Value& v, CallArgs& a);  // wordwrap.cpp

}  // namespace lokal::tmpl
