// String and scalar filters (jinja2/filters.py), the filter registry, and the tojson filter
// as Hugging Face defines it: json.dumps(x, ensure_ascii=False, indent, separators, sort_keys).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "template/builtins.h"
#include "template/filters_impl.h"
#include "template/pyformat.h"
#include "template/unicode.h"

namespace lokal::tmpl {

// ---- shared helpers --------------------------------------------------------------------------

std::string hash_key(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::String:
            return "s" + v.s();
        case Value::Kind::Bool:
        case Value::Kind::Int:
            return "i" + std::to_string(v.i());
        case Value::Kind::Float: {
            const double d = v.f();
            if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18)
                return "i" + std::to_string(static_cast<int64_t>(d));
            return "f" + format_float(d);
        }
        case Value::Kind::None:
            return "n";
        case Value::Kind::Undefined:
            return "u";
        case Value::Kind::List:
            if (v.list_kind() == ListKind::Tuple) {
                std::string k = "t(";
                for (const auto& e : v.arr().items) k += hash_key(e) + ",";
                return k + ")";
            }
            break;
        case Value::Kind::Object:
        case Value::Kind::Generator: {
            char buf[32];
            std::snprintf(buf, sizeof buf, "p%p", v.identity());
            return buf;
        }
        default:
            break;
    }
    throw_type("unhashable type: '" + type_name(v) + "'");
}

static bool parse_py_int(std::string_view text, int64_t base, int64_t& out) {
    std::string s = uni::strip(text, nullptr, true, true);
    size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    auto prefixed = [&](char p) {
        return i + 1 < s.size() && s[i] == '0' && (s[i + 1] | 0x20) == p;
    };
    if (base == 0) {
        base = prefixed('x') ? 16 : prefixed('o') ? 8 : prefixed('b') ? 2 : 10;
        if (base != 10) i += 2;
    } else if ((base == 16 && prefixed('x')) || (base == 8 && prefixed('o')) ||
               (base == 2 && prefixed('b'))) {
        i += 2;
    }
    if (base < 2 || base > 36 || i >= s.size()) return false;
    uint64_t v = 0;
    bool last_digit = false;
    while (i < s.size()) {
        const uint32_t c = uni::decode(s, i);
        if (c == '_') {
            if (!last_digit) return false;
            last_digit = false;
            continue;
        }
        int d = uni::digit_value(c);
        if (d < 0 && c < 0x80 && (c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            d = static_cast<int>((c | 0x20) - 'a' + 10);
        if (d < 0 || d >= base) return false;
        if (v > (static_cast<uint64_t>(INT64_MAX) - d) / base) return false;
        v = v * base + d;
        last_digit = true;
    }
    if (!last_digit) return false;
    out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
    return true;
}

static bool parse_py_float(std::string_view text, double& out) {
    std::string s = uni::strip(text, nullptr, true, true);
    std::string clean;
    size_t i = 0;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean += s[i++];
    std::string rest = s.substr(i);
    std::string low;
    for (char c : rest) low += static_cast<char>(c | 0x20);
    if (low == "inf" || low == "infinity" || low == "nan") {
        out = std::strtod((clean + low).c_str(), nullptr);
        return true;
    }
    bool digits = false, dot = false, exp = false, prev_digit = false;
    for (size_t k = 0; k < rest.size(); ++k) {
        const char c = rest[k];
        if (c >= '0' && c <= '9') {
            digits = prev_digit = true;
            clean += c;
        } else if (c == '_') {
            if (!prev_digit || k + 1 >= rest.size() || rest[k + 1] < '0' || rest[k + 1] > '9')
                return false;
            prev_digit = false;
        } else if (c == '.' && !dot && !exp) {
            dot = true;
            prev_digit = false;
            clean += c;
        } else if ((c == 'e' || c == 'E') && digits && !exp) {
            exp = true;
            prev_digit = false;
            clean += 'e';
            if (k + 1 < rest.size() && (rest[k + 1] == '+' || rest[k + 1] == '-'))
                clean += rest[++k];
            if (k + 1 >= rest.size()) return false;
        } else {
            return false;
        }
    }
    if (!digits) return false;
    out = std::strtod(clean.c_str(), nullptr);
    return true;
}

bool py_to_float(const Value& v, double& out) {
    if (v.is_number()) {
        out = v.f();
        return true;
    }
    if (v.is_string()) return parse_py_float(v.s(), out);
    if (v.is_undefined()) undefined_error(v);
    return false;
}

bool py_to_int(const Value& v, int64_t base, int64_t& out) {
    if (v.is_integral()) {
        out = v.i();
        return true;
    }
    if (v.is_undefined()) undefined_error(v);
    if (v.is_string() && parse_py_int(v.s(), base, out)) return true;
    double d;
    if (!py_to_float(v, d) || !std::isfinite(d) || std::fabs(d) >= 9.2e18) return false;
    out = static_cast<int64_t>(d);
    return true;
}

int64_t int_param(const Value* v, const char* what, int64_t def) {
    if (!v || v->is_none()) return def;
    if (!v->is_integral())
        throw_type("'" + type_name(*v) + "' object cannot be interpreted as an integer (" + what +
                   ")");
    return v->i();
}

Value get_path(const Value& obj, const Value& attribute) {
    if (attribute.is_none()) return obj;
    if (!attribute.is_string()) return get_item(obj, attribute);
    Value cur = obj;
    const std::string& a = attribute.s();
    size_t start = 0;
    while (true) {
        size_t dot = a.find('.', start);
        std::string part =
            a.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        const bool digits =
            !part.empty() && part.find_first_not_of("0123456789") == std::string::npos;
        cur =
            get_item(cur, digits && part.size() < 18 ? Value(static_cast<int64_t>(std::stoll(part)))
                                                     : Value(part));
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    return cur;
}

// ---- text filters --------------------------------------------------------------------------

namespace {

Value f_upper(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "upper", {});
    Value s = soft_str(v);
    return s.is_safe() ? Value::markup(uni::upper(s.s())) : Value(uni::upper(s.s()));
}

Value f_lower(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "lower", {});
    Value s = soft_str(v);
    return s.is_safe() ? Value::markup(uni::lower(s.s())) : Value(uni::lower(s.s()));
}

Value f_capitalize(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "capitalize", {});
    Value s = soft_str(v);
    return s.is_safe() ? Value::markup(uni::capitalize(s.s())) : Value(uni::capitalize(s.s()));
}

Value f_title(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "title", {});
    // Words start after runs of [-\s({[<]: first letter upper, the rest lower.
    auto cps = uni::to_cps(to_str(v));
    std::string out;
    bool word_start = true;
    for (uint32_t c : cps) {
        const bool sep =
            c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || uni::is_space(c);
        if (sep) {
            uni::append(out, c);
            word_start = true;
        } else if (word_start) {
            std::string ch;
            uni::append(ch, c);
            out += uni::upper(ch);  // str.upper of the first character (ß -> SS)
            word_start = false;
        } else {
            uni::append(out, uni::to_lower(c));
        }
    }
    return Value(std::move(out));
}

Value f_trim(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "trim", {"chars"});
    Value s = soft_str(v);
    const Value* c = r.get(0);
    const std::string* chars = (c && c->is_string()) ? &c->s() : nullptr;
    std::string out = uni::strip(s.s(), chars, true, true);
    return s.is_safe() ? Value::markup(std::move(out)) : Value(std::move(out));
}

Value f_replace(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "replace", {"old", "new", "count"});
    if (!r.has(0) || !r.has(1)) throw_type("replace() missing required arguments 'old' and 'new'");
    CallArgs inner;
    inner.pos = {Value(to_str(*r.get(0))), Value(to_str(*r.get(1)))};
    if (r.has(2) && !r.get(2)->is_none()) inner.pos.push_back(*r.get(2));
    bool found = false;
    Value m = get_method(Value(to_str(v)), "replace", &found);
    return call_value(m, inner, ctx);
}

Value f_string(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "string", {});
    return soft_str(v);
}

Value f_safe(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "safe", {});
    return v.is_safe() ? v : Value::markup(to_str(v));
}

Value f_escape(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "escape", {});
    return v.is_safe() ? v : Value::markup(html_escape(to_str(v)));
}

Value f_forceescape(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "forceescape", {});
    return Value::markup(html_escape(to_str(v)));
}

Value f_center(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "center", {"width"});
    CallArgs inner;
    inner.pos.push_back(r.get_or(0, Value(int64_t{80})));
    bool found = false;
    return call_value(get_method(soft_str(v), "center", &found), inner, ctx);
}

Value f_indent(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "indent", {"width", "first", "blank"});
    if (v.is_undefined()) undefined_error(v);
    if (!v.is_string())
        throw_type("unsupported operand type(s) for +=: '" + type_name(v) + "' and 'str'");
    const Value width = r.get_or(0, Value(int64_t{4}));
    std::string ind;
    if (width.is_string()) {
        ind = width.s();
    } else {
        const int64_t w = int_param(&width, "indent", 4);
        ctx.check_size(static_cast<size_t>(std::max<int64_t>(w, 0)));
        ind.assign(static_cast<size_t>(std::max<int64_t>(w, 0)), ' ');
    }
    const bool first = r.has(1) && truthy(*r.get(1));
    const bool blank = r.has(2) && truthy(*r.get(2));
    CallArgs none;
    bool found = false;
    Value lines_v = call_value(get_method(Value(v.s() + "\n"), "splitlines", &found), none, ctx);
    const auto& lines = lines_v.arr().items;
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
        const std::string& line = lines[i].s();
        if (i > 0) {
            out += '\n';
            if (blank || !line.empty()) out += ind;
        }
        out += line;
        ctx.check_size(out.size());
    }
    if (first) out = ind + out;
    return v.is_safe() ? Value::markup(std::move(out)) : Value(std::move(out));
}

Value f_truncate(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "truncate", {"length", "killwords", "end", "leeway"});
    const int64_t length = int_param(r.get(0), "truncate", 255);
    const bool killwords = r.has(1) && truthy(*r.get(1));
    const std::string end = r.has(2) ? to_str(*r.get(2)) : "...";
    const int64_t leeway = int_param(r.get(3), "truncate", 5);
    auto end_len = static_cast<int64_t>(uni::length(end));
    if (length < end_len)
        throw_type("expected length >= " + std::to_string(end_len) + ", got " +
                   std::to_string(length));
    if (leeway < 0) throw_type("expected leeway >= 0, got " + std::to_string(leeway));
    if (!v.is_string()) {  // jinja measures and slices the value itself
        if (py_len(v) <= length + leeway) return v;
        throw_type("can only concatenate " + type_name(v) + " (not \"str\") to " + type_name(v));
    }
    auto cps = uni::to_cps(v.s());
    if (static_cast<int64_t>(cps.size()) <= length + leeway) return v;
    std::string head = uni::from_cps(cps.data(), static_cast<size_t>(length - end_len));
    if (killwords) return Value(head + end);
    const size_t sp = head.rfind(' ');
    if (sp != std::string::npos) head.resize(sp);
    return Value(head + end);
}

Value f_wordcount(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "wordcount", {});
    int64_t n = 0;
    bool in_word = false;
    for (uint32_t c : uni::to_cps(to_str(v))) {
        const bool w = uni::is_word(c);
        if (w && !in_word) ++n;
        in_word = w;
    }
    return Value(n);
}

Value f_format(Context& ctx, const Value& v, CallArgs& a) {
    if (!a.pos.empty() && !a.kw.empty())
        throw_type("can't handle positional and keyword arguments at the same time");
    Value args;
    if (!a.kw.empty()) {
        auto d = std::make_shared<Dict>();
        for (auto& [k, x] : a.kw) d->set(Value(k), x);
        args = Value::dict(std::move(d));
    } else {
        args = Value::tuple(a.pos);
    }
    return binary_op(BinOp::Mod, soft_str(v), args, ctx);
}

Value f_int(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "int", {"default", "base"});
    int64_t out;
    if (py_to_int(v, int_param(r.get(1), "int", 10), out)) return Value(out);
    return r.get_or(0, Value(int64_t{0}));
}

Value f_float(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "float", {"default"});
    double d;
    if (py_to_float(v, d)) return Value(d);
    return r.get_or(0, Value(0.0));
}

Value f_abs(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "abs", {});
    if (v.is_integral()) {
        if (v.i() == INT64_MIN) throw_type("integer overflow");
        return Value(v.i() < 0 ? -v.i() : v.i());
    }
    if (v.is_float()) return Value(std::fabs(v.f()));
    throw_type("bad operand type for abs(): '" + type_name(v) + "'");
}

double round_half_even(double x, int64_t ndigits) {
    if (!std::isfinite(x)) return x;
    if (ndigits >= 0) {
        if (ndigits > 300) return x;
        char buf[512];
        std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(ndigits), x);
        return std::strtod(buf, nullptr);
    }
    if (ndigits < -308) return 0.0 * x;
    const double p = std::pow(10.0, static_cast<double>(-ndigits));
    return std::nearbyint(x / p) * p;
}

Value f_round(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "round", {"precision", "method"});
    const int64_t prec = int_param(r.get(0), "round", 0);
    const std::string method = r.has(1) ? to_str(*r.get(1)) : "common";
    if (method != "common" && method != "ceil" && method != "floor")
        throw_type("method must be common, ceil or floor");
    if (!v.is_number()) {
        if (v.is_undefined()) undefined_error(v);
        throw_type("type " + type_name(v) + " doesn't define __round__ method");
    }
    if (method == "common") {
        if (v.is_integral()) {
            if (prec >= 0) return Value(v.i());
            return Value(static_cast<int64_t>(round_half_even(static_cast<double>(v.i()), prec)));
        }
        return Value(round_half_even(v.f(), prec));
    }
    const double p = std::pow(10.0, static_cast<double>(prec));
    const double x = v.f() * p;
    return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / p);
}

Value f_tojson(Context& ctx, const Value& v, CallArgs& a) {
    ArgReader r(a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
    JsonDumpOptions o;
    o.ensure_ascii = r.has(0) && truthy(*r.get(0));
    if (const Value* ind = r.get(1); ind && !ind->is_none()) {
        if (ind->is_string()) {
            o.indent = ind->s();
        } else {
            const int64_t n = int_param(ind, "indent", 0);
            ctx.check_size(static_cast<size_t>(std::max<int64_t>(n, 0)));
            o.indent = std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
        }
    }
    if (const Value* sep = r.get(2); sep && !sep->is_none()) {
        std::vector<Value> parts = iterate(*sep);
        if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string())
            throw_type("separators must be a pair of strings");
        o.item_separator = parts[0].s();
        o.key_separator = parts[1].s();
    }
    o.sort_keys = r.has(3) && truthy(*r.get(3));
    std::string s = json_dumps(v, o);
    ctx.check_size(s.size());
    return Value(std::move(s));
}

Value f_filesizeformat(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "filesizeformat", {"binary"});
    const bool binary = r.has(0) && truthy(*r.get(0));
    double bytes;
    if (!py_to_float(v, bytes)) throw_type("could not convert to float");
    const double base = binary ? 1024 : 1000;
    static const char* kDec[] = {"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
    static const char* kBin[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
    if (bytes == 1) return Value("1 Byte");
    if (bytes < base) return Value(std::to_string(static_cast<int64_t>(bytes)) + " Bytes");
    double unit = base;
    char buf[64];
    for (int i = 0; i < 8; ++i) {
        unit *= base;
        if (bytes < unit || i == 7) {
            std::snprintf(buf, sizeof buf, "%.1f %s", base * bytes / unit,
                          binary ? kBin[i] : kDec[i]);
            break;
        }
    }
    return Value(buf);
}

// html.unescape for the common named entities and numeric references.
std::string html_unescape(const std::string& s) {
    static const std::pair<const char*, const char*> kNamed[] = {{"amp", "&"},
                                                                 {"lt", "<"},
                                                                 {"gt", ">"},
                                                                 {"quot", "\""},
                                                                 {"apos", "'"},
                                                                 {"nbsp", "\xC2\xA0"},
                                                                 {"copy", "\xC2\xA9"},
                                                                 {"reg", "\xC2\xAE"},
                                                                 {"raquo", "\xC2\xBB"},
                                                                 {"laquo", "\xC2\xAB"},
                                                                 {"hellip", "\xE2\x80\xA6"},
                                                                 {"mdash", "\xE2\x80\x94"},
                                                                 {"ndash", "\xE2\x80\x93"},
                                                                 {"euro", "\xE2\x82\xAC"}};
    std::string out;
    for (size_t i = 0; i < s.size();) {
        if (s[i] != '&') {
            out += s[i++];
            continue;
        }
        const size_t semi = s.find(';', i + 1);
        if (semi != std::string::npos && semi - i <= 10) {
            const std::string name = s.substr(i + 1, semi - i - 1);
            if (name.size() > 1 && name[0] == '#') {
                const bool hex = name[1] == 'x' || name[1] == 'X';
                const std::string digits = name.substr(hex ? 2 : 1);
                char* endp = nullptr;
                const long cp =
                    digits.empty() ? -1 : std::strtol(digits.c_str(), &endp, hex ? 16 : 10);
                if (endp && *endp == '\0' && cp > 0 && cp < 0x110000) {
                    uni::append(out, static_cast<uint32_t>(cp));
                    i = semi + 1;
                    continue;
                }
            }
            bool hit = false;
            for (const auto& [n, r] : kNamed) {
                if (name == n) {
                    out += r;
                    i = semi + 1;
                    hit = true;
                    break;
                }
            }
            if (hit) continue;
        }
        out += s[i++];
    }
    return out;
}

// markupsafe's Markup.striptags: drop comments, then tags, collapse whitespace, unescape.
Value f_striptags(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "striptags", {});
    std::string s = to_str(v);
    for (size_t start; (start = s.find("<!--")) != std::string::npos;) {
        const size_t end = s.find("-->", start);
        if (end == std::string::npos) break;
        s.erase(start, end + 3 - start);
    }
    for (size_t start; (start = s.find('<')) != std::string::npos;) {
        const size_t end = s.find('>', start);
        if (end == std::string::npos) break;
        s.erase(start, end + 1 - start);
    }
    std::string collapsed;
    bool space = false;
    for (uint32_t c : uni::to_cps(s)) {
        if (uni::is_space(c)) {
            space = true;
            continue;
        }
        if (space && !collapsed.empty()) collapsed += ' ';
        space = false;
        uni::append(collapsed, c);
    }
    return Value(html_unescape(collapsed));
}

std::string url_quote(const std::string& s, bool for_qs) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~' ||
            (!for_qs && c == '/')) {
            out += static_cast<char>(c);
        } else if (for_qs && c == ' ') {
            out += '+';
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}

Value f_urlencode(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "urlencode", {});
    const bool iterable = v.is_list() || v.is_dict() || v.is_generator() || v.is_undefined();
    if (v.is_string() || !iterable) return Value(url_quote(to_str(v), false));
    std::vector<std::pair<Value, Value>> pairs;
    if (v.is_mapping()) {
        for (const auto& kv : v.dict().entries()) pairs.push_back(kv);
    } else {
        for (const auto& item : iterate(v)) {
            auto kv = iterate(item);
            if (kv.size() != 2) throw_type("urlencode expects pairs");
            pairs.emplace_back(kv[0], kv[1]);
        }
    }
    std::string out;
    for (size_t i = 0; i < pairs.size(); ++i) {
        if (i) out += '&';
        out += url_quote(to_str(pairs[i].first), true) + "=" +
               url_quote(to_str(pairs[i].second), true);
    }
    return Value(std::move(out));
}

Value f_xmlattr(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "xmlattr", {"autospace"});
    if (!v.is_mapping()) throw_type("xmlattr expects a mapping");
    std::string out;
    for (const auto& [k, val] : v.dict().entries()) {
        if (val.is_none() || val.is_undefined()) continue;
        if (!k.is_string())
            throw_type("expected string or bytes-like object, got '" + type_name(k) + "'");
        const std::string key = k.s();
        for (char c : key)
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '/' ||
                c == '>' || c == '=')
                throw_type("Invalid character in attribute name: " + quote_str(key));
        if (!out.empty()) out += ' ';
        out +=
            html_escape(key) + "=\"" + (val.is_safe() ? val.s() : html_escape(to_str(val))) + "\"";
    }
    if (!out.empty() && (!r.has(0) || truthy(*r.get(0)))) out = " " + out;
    return Value(std::move(out));
}

Value f_pprint(Context&, const Value& v, CallArgs& a) {
    ArgReader(a, "pprint", {});
    return Value(repr(v));
}

Value f_default(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "default", {"default_value", "boolean"});
    const bool boolean = r.has(1) && truthy(*r.get(1));
    if (v.is_undefined() || (boolean && !truthy(v))) return r.get_or(0, Value(""));
    return v;
}

Value f_attr(Context&, const Value& v, CallArgs& a) {
    ArgReader r(a, "attr", {"name"});
    if (!r.has(0) || !r.get(0)->is_string()) throw_type("attribute name must be string");
    const std::string& name = r.get(0)->s();
    if (v.is_undefined()) undefined_error(v);
    if (v.is_object() || v.is_namespace()) return get_attr(v, name);
    bool found = false;
    Value m = get_method(v, name, &found);
    if (found) return m;
    return make_undefined(v, Value(name));
}

}  // namespace

void register_text_filters(FilterTable& t) {
    t["upper"] = f_upper;
    t["lower"] = f_lower;
    t["capitalize"] = f_capitalize;
    t["title"] = f_title;
    t["trim"] = f_trim;
    t["replace"] = f_replace;
    t["string"] = f_string;
    t["safe"] = f_safe;
    t["escape"] = f_escape;
    t["e"] = f_escape;
    t["forceescape"] = f_forceescape;
    t["center"] = f_center;
    t["indent"] = f_indent;
    t["truncate"] = f_truncate;
    t["wordcount"] = f_wordcount;
    t["wordwrap"] = wordwrap_filter;
    t["format"] = f_format;
    t["int"] = f_int;
    t["float"] = f_float;
    t["abs"] = f_abs;
    t["round"] = f_round;
    t["tojson"] = f_tojson;
    t["filesizeformat"] = f_filesizeformat;
    t["striptags"] = f_striptags;
    t["urlencode"] = f_urlencode;
    t["xmlattr"] = f_xmlattr;
    t["pprint"] = f_pprint;
    t["default"] = f_default;
    t["d"] = f_default;
    t["attr"] = f_attr;
}

static const FilterTable& filter_table() {
    static const FilterTable table = [] {
        FilterTable t;
        register_text_filters(t);
        register_sequence_filters(t);
        return t;
    }();
    return table;
}

FilterFn find_filter(std::string_view name) {
    const auto& t = filter_table();
    auto it = t.find(name);
    return it == t.end() ? nullptr : it->second;
}

Value apply_filter(Context& ctx, std::string_view name, const Value& v, CallArgs& args) {
    FilterFn fn = find_filter(name);
    if (!fn) throw Error(ErrorKind::Runtime, "No filter named '" + std::string(name) + "'.");
    return fn(ctx, v, args);
}

}  // namespace lokal::tmpl
