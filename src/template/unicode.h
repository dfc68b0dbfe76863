// UTF-8 and Unicode helpers with Python str semantics (code points, isspace, case mapping).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lokal::tmpl::uni {

// Decodes one code point at s[i] and advances i. A byte that does not start a valid
// sequence decodes to 0x110000 + byte (like Python's surrogateescape) and round-trips.
uint32_t decode(std::string_view s, size_t& i);
void append(std::string& out, uint32_t cp);
std::vector<uint32_t> to_cps(std::string_view s);
std::string from_cps(const uint32_t* cps, size_t n);
inline std::string from_cps(const std::vector<uint32_t>& v) {
    return from_cps(v.data(), v.size());
}
size_t length(std::string_view s);  // number of code points

bool is_space(uint32_t cp);  // Python str.isspace
bool is_digit(uint32_t cp);  // decimal digits (ASCII and common scripts)
bool is_alpha(uint32_t cp);
inline bool is_alnum(uint32_t cp) {
    return is_alpha(cp) || is_digit(cp);
}
bool is_word(uint32_t cp);       // regex \w
bool is_printable(uint32_t cp);  // Python str.isprintable (approximation outside the BMP)
bool is_upper(uint32_t cp);
bool is_lower(uint32_t cp);
inline bool is_cased(uint32_t cp) {
    return is_upper(cp) || is_lower(cp);
}
uint32_t to_upper(uint32_t cp);
uint32_t to_title(uint32_t cp);  // titlecase (differs from upper for digraphs like ǆ -> ǅ)
int digit_value(uint32_t cp);    // 0-9 for decimal digits, -1 otherwise
uint32_t to_lower(uint32_t cp);

std::string upper(std::string_view s);  // full mapping for ß -> SS
std::string lower(std::string_view s);
std::string capitalize(std::string_view s);
std::string title(std::string_view s);  // Python str.title
std::string swapcase(std::string_view s);

// Python str.strip family; chars == nullptr strips whitespace.
std::string strip(std::string_view s, const std::string* chars, bool left, bool right);

}  // namespace lokal::tmpl::uni
