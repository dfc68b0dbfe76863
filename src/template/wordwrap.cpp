// The wordwrap filter: Python's textwrap.wrap (expand_tabs=False, replace_whitespace=False)
// applied to each line of the input, as jinja's do_wordwrap does.
#include <algorithm>

#include "template/filters_impl.h"
#include "template/unicode.h"

namespace lokal::tmpl {

namespace {

using Cps = std::vector<uint32_t>;

bool ws(uint32_t c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}  // textwrap's _whitespace
bool word(uint32_t c) {
    return uni::is_word(c);
}
bool letter(uint32_t c) {
    return word(c) && !uni::is_digit(c);
}  // [^\d\W]
bool word_punct(uint32_t c) {
    return word(c) || c == '!' || c == '"' || c == '\'' || c == '&' || c == '.' || c == ',' ||
           c == '?';
}

// -{2,} at i followed by a word character.
bool em_dash_at(const Cps& c, size_t i) {
    size_t j = i;
    while (j < c.size() && c[j] == '-') ++j;
    return j - i >= 2 && j < c.size() && word(c[j]);
}

// textwrap's wordsep_re (break_on_hyphens) or wordsep_simple_re.
std::vector<Cps> split_chunks(const Cps& c, bool hyphens) {
    std::vector<Cps> out;
    const size_t n = c.size();
    auto at = [&](size_t i) { return i < n ? c[i] : 0u; };
    size_t pos = 0;
    while (pos < n) {
        size_t end = pos;
        if (ws(c[pos])) {
            while (end < n && ws(c[end])) ++end;
        } else if (!hyphens) {
            while (end < n && !ws(c[end])) ++end;
        } else if (pos > 0 && word_punct(c[pos - 1]) && em_dash_at(c, pos)) {
            while (end < n && c[end] == '-') ++end;
        } else {
            for (size_t e = pos + 1;; ++e) {
                const bool hyphen_split =
                    e < n && c[e] == '-' &&
                    ((e >= 2 && letter(c[e - 2]) && letter(c[e - 1])) ||
                     (e >= 3 && letter(c[e - 3]) && c[e - 2] == '-' && letter(c[e - 1]))) &&
                    letter(at(e + 1)) &&
                    (letter(at(e + 2)) || (at(e + 2) == '-' && letter(at(e + 3))));
                if (hyphen_split) {
                    end = e + 1;
                    break;
                }
                if (e >= n || ws(c[e]) || (word_punct(c[e - 1]) && em_dash_at(c, e))) {
                    end = e;
                    break;
                }
            }
        }
        out.emplace_back(c.begin() + static_cast<std::ptrdiff_t>(pos),
                         c.begin() + static_cast<std::ptrdiff_t>(end));
        pos = end;
    }
    return out;
}

bool blank(const Cps& chunk) {
    for (uint32_t x : chunk)
        if (!uni::is_space(x)) return false;
    return true;
}

// textwrap.TextWrapper._wrap_chunks without indents or max_lines.
std::vector<Cps> wrap_chunks(std::vector<Cps> chunks, size_t width, bool break_long, bool hyphens) {
    std::vector<Cps> lines;
    std::reverse(chunks.begin(), chunks.end());
    while (!chunks.empty()) {
        std::vector<Cps> line;
        size_t len = 0;
        if (blank(chunks.back()) && !lines.empty()) chunks.pop_back();
        while (!chunks.empty() && len + chunks.back().size() <= width) {
            len += chunks.back().size();
            line.push_back(std::move(chunks.back()));
            chunks.pop_back();
        }
        if (!chunks.empty() && chunks.back().size() > width) {
            const size_t space_left = width - len;
            if (break_long) {
                Cps& chunk = chunks.back();
                size_t end = space_left;
                if (hyphens && chunk.size() > space_left) {
                    size_t hyphen = std::string::npos;
                    for (size_t k = space_left; k-- > 0;)
                        if (chunk[k] == '-') {
                            hyphen = k;
                            break;
                        }
                    bool other = false;
                    for (size_t k = 0; hyphen != std::string::npos && k < hyphen; ++k)
                        other = other || chunk[k] != '-';
                    if (hyphen != std::string::npos && hyphen > 0 && other) end = hyphen + 1;
                }
                line.emplace_back(chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(end));
                chunk.erase(chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(end));
            } else if (line.empty()) {
                line.push_back(std::move(chunks.back()));
                chunks.pop_back();
            }
        }
        if (!line.empty() && blank(line.back())) line.pop_back();
        if (!line.empty()) {
            Cps joined;
            for (const auto& part : line) joined.insert(joined.end(), part.begin(), part.end());
            lines.push_back(std::move(joined));
        }
    }
    return lines;
}

}  // namespace

Value wordwrap_filter(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "wordwrap", {"width", "break_long_words", "wrapstring", "break_on_hyphens"});
    if (v.is_undefined()) undefined_error(v);
    if (!v.is_string()) throw_type("'" + type_name(v) + "' object has no attribute 'splitlines'");
    const int64_t width = int_param(r.get(0), "wordwrap", 79);
    const bool break_long = !r.has(1) || truthy(*r.get(1));
    const std::string wrap = r.has(2) && !r.get(2)->is_none() ? to_str(*r.get(2)) : "\n";
    const bool hyphens = !r.has(3) || truthy(*r.get(3));
    CallArgs none;
    bool found = false;
    const Value paragraphs = call_value(get_method(v, "splitlines", &found), none, ctx);
    std::string out;
    bool first_para = true;
    for (const auto& para : paragraphs.arr().items) {
        if (width <= 0) throw_type("invalid width " + std::to_string(width) + " (must be > 0)");
        if (!first_para) out += wrap;
        first_para = false;
        bool first_line = true;
        for (const auto& line : wrap_chunks(split_chunks(uni::to_cps(para.s()), hyphens),
                                            static_cast<size_t>(width), break_long, hyphens)) {
            if (!first_line) out += wrap;
            first_line = false;
            out += uni::from_cps(line);
        }
        ctx.check_size(out.size());
    }
    return Value(std::move(out));
}

}  // namespace lokal::tmpl
