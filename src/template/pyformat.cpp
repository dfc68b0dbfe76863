#include "template/pyformat.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "template/eval.h"
#include "template/unicode.h"

namespace lokal::tmpl {

// ---- json.dumps --------------------------------------------------------------------------

static void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
    out += '"';
    for (size_t i = 0; i < s.size();) {
        const size_t start = i;
        const uint32_t c = uni::decode(s, i);
        char buf[16];
        switch (c) {
            case '"':
                out += "\\\"";
                continue;
            case '\\':
                out += "\\\\";
                continue;
            case '\n':
                out += "\\n";
                continue;
            case '\r':
                out += "\\r";
                continue;
            case '\t':
                out += "\\t";
                continue;
            case '\b':
                out += "\\b";
                continue;
            case '\f':
                out += "\\f";
                continue;
            default:
                break;
        }
        if (c < 0x20 || (ensure_ascii && c >= 0x7F && c < 0x110000)) {
            if (c >= 0x10000) {
                const uint32_t v = c - 0x10000;
                std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10),
                              0xDC00 + (v & 0x3FF));
            } else {
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
            }
            out += buf;
        } else {
            out.append(s.substr(start, i - start));
        }
    }
    out += '"';
}

static std::string json_float(double d) {
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
    return format_float(d);
}

namespace {
struct JsonWriter {
    const JsonDumpOptions& o;
    std::string item_sep, key_sep;
    std::string out;

    void newline(int level) {
        out += '\n';
        for (int i = 0; i < level; ++i) out += *o.indent;
    }

    std::string key_string(const Value& k) {
        switch (k.kind()) {
            case Value::Kind::String:
                return k.s();
            case Value::Kind::Int:
                return std::to_string(k.i());
            case Value::Kind::Float:
                return json_float(k.f());
            case Value::Kind::Bool:
                return k.b() ? "true" : "false";
            case Value::Kind::None:
                return "null";
            default:
                throw_type("keys must be str, int, float, bool or None, not " + type_name(k));
        }
    }

    void write(const Value& v, int level) {
        if (level > kMaxValueDepth) throw_limit("value nested too deeply for tojson");
        switch (v.kind()) {
            case Value::Kind::None:
                out += "null";
                return;
            case Value::Kind::Bool:
                out += v.b() ? "true" : "false";
                return;
            case Value::Kind::Int:
                out += std::to_string(v.i());
                return;
            case Value::Kind::Float:
                out += json_float(v.f());
                return;
            case Value::Kind::String:
                json_string(out, v.s(), o.ensure_ascii);
                return;
            case Value::Kind::List:
                if (v.list_kind() == ListKind::List || v.list_kind() == ListKind::Tuple) {
                    const auto& items = v.arr().items;
                    if (items.empty()) {
                        out += "[]";
                        return;
                    }
                    out += '[';
                    for (size_t i = 0; i < items.size(); ++i) {
                        if (i) out += item_sep;
                        if (o.indent) newline(level + 1);
                        write(items[i], level + 1);
                    }
                    if (o.indent) newline(level);
                    out += ']';
                    return;
                }
                break;
            case Value::Kind::Dict:
                if (!v.is_namespace()) {
                    std::vector<const std::pair<Value, Value>*> entries;
                    for (const auto& kv : v.dict().entries()) entries.push_back(&kv);
                    if (entries.empty()) {
                        out += "{}";
                        return;
                    }
                    if (o.sort_keys)
                        std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) {
                            return py_compare(a->first, b->first) < 0;
                        });
                    out += '{';
                    for (size_t i = 0; i < entries.size(); ++i) {
                        if (i) out += item_sep;
                        if (o.indent) newline(level + 1);
                        json_string(out, key_string(entries[i]->first), o.ensure_ascii);
                        out += key_sep;
                        write(entries[i]->second, level + 1);
                    }
                    if (o.indent) newline(level);
                    out += '}';
                    return;
                }
                break;
            default:
                break;
        }
        throw_type("Object of type " + type_name(v) + " is not JSON serializable");
    }
};
}  // namespace

std::string json_dumps(const Value& v, const JsonDumpOptions& opts) {
    JsonWriter w{opts,
                 opts.item_separator.value_or(opts.indent ? "," : ", "),
                 opts.key_separator.value_or(": "),
                 {}};
    w.write(v, 0);
    return std::move(w.out);
}

// ---- shared number formatting ------------------------------------------------------------

static std::string group_digits(const std::string& digits, char sep, int every) {
    std::string out;
    const int n = static_cast<int>(digits.size());
    for (int i = 0; i < n; ++i) {
        if (i && (n - i) % every == 0) out += sep;
        out += digits[i];
    }
    return out;
}

static std::string int_digits(uint64_t mag, int base, bool upper) {
    if (mag == 0) return "0";
    const char* d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    std::string s;
    while (mag) {
        s += d[mag % base];
        mag /= base;
    }
    std::reverse(s.begin(), s.end());
    return s;
}

static uint64_t magnitude(int64_t v) {
    return v < 0 ? static_cast<uint64_t>(-(v + 1)) + 1 : static_cast<uint64_t>(v);
}

static std::string c_float(double d, char conv, int prec, bool alt) {
    char fmt[16];
    std::snprintf(fmt, sizeof fmt, "%%%s.%d%c", alt ? "#" : "", prec, conv);
    char buf[512];
    int n = std::snprintf(buf, sizeof buf, fmt, std::fabs(d));
    if (n < 0) return "";
    if (n >= static_cast<int>(sizeof buf)) {
        std::string big(static_cast<size_t>(n) + 1, '\0');
        std::snprintf(big.data(), big.size(), fmt, std::fabs(d));
        big.resize(static_cast<size_t>(n));
        return big;
    }
    return std::string(buf, static_cast<size_t>(n));
}

static int64_t int_arg(const Value& v, char conv) {
    if (v.is_integral()) return v.i();
    if (v.is_float() && (conv == 'd' || conv == 'i' || conv == 'u')) {
        if (!std::isfinite(v.f())) throw_type("cannot convert float to integer");
        return static_cast<int64_t>(v.f());
    }
    throw_type(std::string("%") + conv + " format: " +
               (conv == 'x' || conv == 'X' || conv == 'o' ? "an integer" : "a real number") +
               " is required, not " + type_name(v));
}

// ---- printf-style --------------------------------------------------------------------------

std::string percent_format(const std::string& fmt, const Value& args) {
    std::vector<Value> pos;
    const Dict* mapping = nullptr;
    bool single = false;
    if (args.is_list() && args.list_kind() == ListKind::Tuple) {
        pos = args.arr().items;
    } else {
        pos.push_back(args);
        single = true;
        if (args.is_mapping()) mapping = &args.dict();
    }
    size_t argi = 0;
    std::string out;
    const size_t n = fmt.size();
    for (size_t i = 0; i < n; ++i) {
        if (fmt[i] != '%') {
            out += fmt[i];
            continue;
        }
        if (++i >= n) throw Error(ErrorKind::Type, "incomplete format");
        const Value* arg = nullptr;
        if (fmt[i] == '(') {
            if (!mapping) throw_type("format requires a mapping");
            int depth = 1;
            size_t k = i + 1;
            for (; k < n && depth; ++k) {
                if (fmt[k] == '(') ++depth;
                if (fmt[k] == ')') --depth;
            }
            if (depth) throw Error(ErrorKind::Type, "incomplete format key");
            std::string key = fmt.substr(i + 1, k - i - 2);
            arg = mapping->find(std::string_view(key));
            if (!arg) throw Error(ErrorKind::Type, "KeyError: " + quote_str(key));
            i = k;
        }
        bool left = false, zero = false, plus = false, space = false, alt = false;
        for (; i < n; ++i) {
            char c = fmt[i];
            if (c == '-')
                left = true;
            else if (c == '0')
                zero = true;
            else if (c == '+')
                plus = true;
            else if (c == ' ')
                space = true;
            else if (c == '#')
                alt = true;
            else
                break;
        }
        auto next_arg = [&]() -> const Value& {
            if (argi >= pos.size()) throw_type("not enough arguments for format string");
            return pos[argi++];
        };
        auto read_num = [&](int& target) {
            if (i < n && fmt[i] == '*') {
                const Value& w = next_arg();
                if (!w.is_integral()) throw_type("* wants int");
                target = static_cast<int>(std::clamp<int64_t>(w.i(), -100000, 100000));
                ++i;
                return;
            }
            int v = -1;
            while (i < n && fmt[i] >= '0' && fmt[i] <= '9') {
                v = (v < 0 ? 0 : v) * 10 + (fmt[i] - '0');
                if (v > 100000) throw_limit("format width too large");
                ++i;
            }
            target = v;
        };
        int width = -1, prec = -1;
        read_num(width);
        if (width < -1) {
            left = true;
            width = -width;
        }
        if (i < n && fmt[i] == '.') {
            ++i;
            read_num(prec);
            if (prec < 0) prec = 0;
        }
        while (i < n && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
        if (i >= n) throw Error(ErrorKind::Type, "incomplete format");
        const char conv = fmt[i];
        if (conv == '%') {
            out += '%';
            continue;
        }
        const Value& v = arg ? *arg : (mapping && single ? args : next_arg());
        std::string body, sign, prefix;
        bool numeric = true;
        switch (conv) {
            case 's':
            case 'r':
            case 'a': {
                body = conv == 's' ? to_str(v) : repr(v);
                if (prec >= 0) {
                    auto cps = uni::to_cps(body);
                    if (cps.size() > static_cast<size_t>(prec))
                        body = uni::from_cps(cps.data(), prec);
                }
                numeric = false;
                break;
            }
            case 'c': {
                if (v.is_string() && uni::length(v.s()) == 1) {
                    body = v.s();
                } else if (v.is_integral() && v.i() >= 0 && v.i() < 0x110000) {
                    uni::append(body, static_cast<uint32_t>(v.i()));
                } else {
                    throw_type("%c requires int or char");
                }
                numeric = false;
                break;
            }
            case 'd':
            case 'i':
            case 'u':
            case 'o':
            case 'x':
            case 'X': {
                const int64_t x = int_arg(v, conv);
                const int base = (conv == 'o') ? 8 : (conv == 'x' || conv == 'X') ? 16 : 10;
                body = int_digits(magnitude(x), base, conv == 'X');
                if (prec > static_cast<int>(body.size())) body.insert(0, prec - body.size(), '0');
                if (alt && base == 8) prefix = "0o";
                if (alt && base == 16) prefix = conv == 'X' ? "0X" : "0x";
                sign = x < 0 ? "-" : plus ? "+" : space ? " " : "";
                break;
            }
            case 'e':
            case 'E':
            case 'f':
            case 'F':
            case 'g':
            case 'G': {
                if (!v.is_number()) throw_type("must be real number, not " + type_name(v));
                const double d = v.f();
                body = c_float(d, conv, prec < 0 ? 6 : prec, alt);
                sign = std::signbit(d) && !std::isnan(d) ? "-" : plus ? "+" : space ? " " : "";
                break;
            }
            default:
                throw Error(ErrorKind::Type,
                            std::string("unsupported format character '") + conv + "'");
        }
        std::string s = sign + prefix + body;
        const int len = static_cast<int>(uni::length(s));
        if (width > len) {
            const size_t pad = static_cast<size_t>(width - len);
            if (left)
                s += std::string(pad, ' ');
            else if (zero && numeric)
                s = sign + prefix + std::string(pad, '0') + body;
            else
                s.insert(0, pad, ' ');
        }
        out += s;
    }
    // Like CPython, a single argument with __getitem__ (list, dict) is exempt from the check.
    const bool subscriptable = single && (args.is_dict() || args.is_list() || args.is_undefined());
    if (!mapping && !subscriptable && argi < pos.size())
        throw_type("not all arguments converted during string formatting");
    return out;
}

// ---- format mini-language ----------------------------------------------------------------

std::string format_spec(const Value& v, const std::string& spec) {
    if (spec.empty()) return to_str(v);
    size_t i = 0;
    const auto cps = uni::to_cps(spec);
    uint32_t fill = ' ';
    char align = 0;
    auto is_align = [](uint32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
    if (cps.size() >= 2 && is_align(cps[1])) {
        fill = cps[0];
        align = static_cast<char>(cps[1]);
        i = 2;
    } else if (!cps.empty() && is_align(cps[0])) {
        align = static_cast<char>(cps[0]);
        i = 1;
    }
    char sign = 0;
    if (i < cps.size() && (cps[i] == '+' || cps[i] == '-' || cps[i] == ' '))
        sign = static_cast<char>(cps[i++]);
    bool alt = false;
    if (i < cps.size() && cps[i] == '#') {
        alt = true;
        ++i;
    }
    if (i < cps.size() && cps[i] == '0') {
        if (!align) {
            fill = '0';
            align = '=';
        }
        ++i;
    }
    int width = 0;
    while (i < cps.size() && cps[i] >= '0' && cps[i] <= '9') {
        width = width * 10 + static_cast<int>(cps[i++] - '0');
        if (width > 100000) throw_limit("format width too large");
    }
    char grouping = 0;
    if (i < cps.size() && (cps[i] == ',' || cps[i] == '_')) grouping = static_cast<char>(cps[i++]);
    int prec = -1;
    if (i < cps.size() && cps[i] == '.') {
        ++i;
        prec = 0;
        if (i >= cps.size() || cps[i] < '0' || cps[i] > '9')
            throw Error(ErrorKind::Type, "Format specifier missing precision");
        while (i < cps.size() && cps[i] >= '0' && cps[i] <= '9') {
            prec = prec * 10 + static_cast<int>(cps[i++] - '0');
            if (prec > 1000) throw_limit("format precision too large");
        }
    }
    char type = 0;
    if (i < cps.size()) type = static_cast<char>(cps[i++]);
    if (i != cps.size()) throw Error(ErrorKind::Type, "Invalid format specifier");

    std::string body, sgn;
    bool numeric = false;
    if (v.is_string() || (!v.is_number())) {
        if (!v.is_string()) {
            throw_type("unsupported format string passed to " + type_name(v) + ".__format__");
        }
        if (type && type != 's')
            throw_type(std::string("Unknown format code '") + type + "' for object of type 'str'");
        if (sign) throw Error(ErrorKind::Type, "Sign not allowed in string format specifier");
        body = v.s();
        if (prec >= 0) {
            auto b = uni::to_cps(body);
            if (b.size() > static_cast<size_t>(prec)) body = uni::from_cps(b.data(), prec);
        }
        if (!align) align = '<';
    } else {
        numeric = true;
        if (!align) align = '>';
        const bool as_int =
            v.is_integral() &&
            (type == 0 || std::string_view("dbcoxXn").find(type) != std::string_view::npos);
        if (as_int) {
            const int64_t x = v.i();
            int base = 10;
            std::string prefix;
            if (type == 'b') base = 2, prefix = "0b";
            if (type == 'o') base = 8, prefix = "0o";
            if (type == 'x') base = 16, prefix = "0x";
            if (type == 'X') base = 16, prefix = "0X";
            if (type == 'c') {
                uni::append(body, static_cast<uint32_t>(x));
            } else {
                body = int_digits(magnitude(x), base, type == 'X');
                if (grouping) body = group_digits(body, grouping, base == 10 ? 3 : 4);
                if (alt) body = prefix + body;
            }
            sgn = x < 0 ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
        } else {
            const double d = v.f();
            sgn = std::signbit(d) && !std::isnan(d) ? "-"
                  : sign == '+'                     ? "+"
                  : sign == ' '                     ? " "
                                                    : "";
            if (type == 0 && prec < 0) {
                body = format_float(std::fabs(d));
            } else if (type == '%') {
                body = c_float(d * 100, 'f', prec < 0 ? 6 : prec, alt) + "%";
            } else {
                char conv = type ? type : 'g';
                if (conv == 'n') conv = 'g';
                if (std::string_view("eEfFgG").find(conv) == std::string_view::npos)
                    throw_type(std::string("Unknown format code '") + type +
                               "' for object of type 'float'");
                body = c_float(d, conv, prec < 0 ? 6 : prec, alt);
                if (type == 0 && body.find_first_of(".einf") == std::string::npos) body += ".0";
            }
            if (grouping) {
                size_t end = body.find_first_not_of("0123456789");
                if (end == std::string::npos) end = body.size();
                body = group_digits(body.substr(0, end), grouping, 3) + body.substr(end);
            }
        }
    }
    const int len = static_cast<int>(uni::length(sgn) + uni::length(body));
    std::string fill_s;
    uni::append(fill_s, fill);
    auto rep = [&](int k) {
        std::string s;
        for (int j = 0; j < k; ++j) s += fill_s;
        return s;
    };
    if (width <= len) return sgn + body;
    const int pad = width - len;
    switch (align) {
        case '<':
            return sgn + body + rep(pad);
        case '^':
            return rep(pad / 2) + sgn + body + rep(pad - pad / 2);
        case '=':
            return numeric ? sgn + rep(pad) + body : rep(pad) + body;
        default:
            return rep(pad) + sgn + body;
    }
}

// ---- str.format ----------------------------------------------------------------------------

std::string str_format(const std::string& fmt, const std::vector<Value>& pos, const Dict& kw,
                       bool escape_fields) {
    std::string out;
    int auto_idx = 0;
    bool used_auto = false, used_manual = false;

    auto resolve = [&](const std::string& field) -> Value {
        size_t k = 0;
        while (k < field.size() && field[k] != '.' && field[k] != '[') ++k;
        std::string head = field.substr(0, k);
        Value cur;
        if (head.empty() && k < field.size()) throw Error(ErrorKind::Type, "KeyError: ''");
        if (head.empty()) {
            if (used_manual)
                throw Error(ErrorKind::Type,
                            "cannot switch from manual field specification to automatic field "
                            "numbering");
            used_auto = true;
            if (auto_idx >= static_cast<int>(pos.size()))
                throw Error(ErrorKind::Type, "Replacement index " + std::to_string(auto_idx) +
                                                 " out of range for positional args tuple");
            cur = pos[auto_idx++];
        } else if (std::all_of(head.begin(), head.end(),
                               [](char c) { return c >= '0' && c <= '9'; })) {
            if (used_auto)
                throw Error(ErrorKind::Type,
                            "cannot switch from automatic field numbering to manual field "
                            "specification");
            used_manual = true;
            size_t idx = head.size() > 6 ? SIZE_MAX : std::stoul(head);
            if (idx >= pos.size())
                throw Error(ErrorKind::Type, "Replacement index " + head +
                                                 " out of range for positional args tuple");
            cur = pos[idx];
        } else {
            const Value* v = kw.find(std::string_view(head));
            if (!v) throw Error(ErrorKind::Type, "KeyError: " + quote_str(head));
            cur = *v;
        }
        while (k < field.size()) {
            // jinja's SandboxedFormatter resolves fields with the sandboxed getattr/getitem:
            // missing or unsafe attributes become undefined (printed as '').
            if (field[k] == '.') {
                size_t e = k + 1;
                while (e < field.size() && field[e] != '.' && field[e] != '[') ++e;
                if (e == k + 1) throw Error(ErrorKind::Type, "Empty attribute in format string");
                cur = get_attr(cur, std::string_view(field).substr(k + 1, e - k - 1));
                k = e;
            } else if (field[k] == '[') {
                size_t e = field.find(']', k);
                if (e == std::string::npos)
                    throw Error(ErrorKind::Type, "Missing ']' in format string");
                const std::string key = field.substr(k + 1, e - k - 1);
                if (key.empty()) throw Error(ErrorKind::Type, "Empty attribute in format string");
                const bool digits =
                    key.size() < 18 && std::all_of(key.begin(), key.end(),
                                                   [](char c) { return c >= '0' && c <= '9'; });
                cur = get_item(cur,
                               digits ? Value(static_cast<int64_t>(std::stoll(key))) : Value(key));
                k = e + 1;
            } else {
                throw Error(ErrorKind::Type,
                            "Only '.' or '[' may follow ']' in format field specifier");
            }
        }
        return cur;
    };

    const size_t n = fmt.size();
    for (size_t i = 0; i < n; ++i) {
        const char c = fmt[i];
        if (c == '}') {
            if (i + 1 < n && fmt[i + 1] == '}') {
                out += '}';
                ++i;
                continue;
            }
            throw Error(ErrorKind::Type, "Single '}' encountered in format string");
        }
        if (c != '{') {
            out += c;
            continue;
        }
        if (i + 1 < n && fmt[i + 1] == '{') {
            out += '{';
            ++i;
            continue;
        }
        // find the matching '}': braces nest (format specs may hold fields), and a '}'
        // inside [...] of the field name belongs to the key.
        size_t j = i + 1;
        int depth = 1;
        bool in_key = false;
        for (; j < n; ++j) {
            if (in_key) {
                in_key = fmt[j] != ']';
                continue;
            }
            if (fmt[j] == '[' && depth == 1) in_key = true;
            if (fmt[j] == '{') ++depth;
            if (fmt[j] == '}' && --depth == 0) break;
        }
        if (j >= n) throw Error(ErrorKind::Type, "expected '}' before end of string");
        std::string inner = fmt.substr(i + 1, j - i - 1);
        i = j;
        std::string field = inner, conv, spec;
        size_t colon = std::string::npos, bang = std::string::npos;
        int br = 0;
        for (size_t k = 0; k < inner.size(); ++k) {
            if (inner[k] == '[') ++br;
            if (inner[k] == ']') --br;
            if (br == 0 && inner[k] == '!' && bang == std::string::npos &&
                colon == std::string::npos)
                bang = k;
            if (br == 0 && inner[k] == ':' && colon == std::string::npos) {
                colon = k;
                break;
            }
        }
        if (colon != std::string::npos) {
            spec = inner.substr(colon + 1);
            field = inner.substr(0, colon);
        }
        if (bang != std::string::npos) {
            conv = field.substr(bang + 1);
            field = field.substr(0, bang);
        }
        Value v = resolve(field);
        if (!conv.empty()) {
            if (conv == "r" || conv == "a")
                v = Value(repr(v));
            else if (conv == "s")
                v = Value(to_str(v));
            else
                throw Error(ErrorKind::Type, "Unknown conversion specifier " + conv);
        }
        if (spec.find('{') != std::string::npos) spec = str_format(spec, pos, kw);
        if (escape_fields && v.is_safe()) {
            if (!spec.empty())
                throw Error(ErrorKind::Type, "Unsupported format specification for Markup.");
            out += v.s();
        } else if (escape_fields) {
            out += html_escape(format_spec(v, spec));
        } else {
            out += format_spec(v, spec);
        }
        if (out.size() > (size_t{1} << 28)) throw_limit("formatted string too large");
    }
    return out;
}

}  // namespace lokal::tmpl
