// Methods of str, dict, list and numbers callable from templates (x.strip(), d.items()...),
// with the ImmutableSandboxedEnvironment rule that mutating methods are unsafe.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "template/eval.h"
#include "template/pyformat.h"
#include "template/unicode.h"

namespace lokal::tmpl {

namespace {

using Method = Value (*)(Context&, const Value& self, CallArgs&);
using Cps = std::vector<uint32_t>;

const std::string& str_arg(const Value* v, const char* fn) {
    if (!v || !v->is_string())
        throw_type(std::string(fn) + "() argument must be str, not " +
                   (v ? type_name(*v) : "None"));
    return v->s();
}

int64_t int_arg(const Value* v, const char* fn, int64_t def) {
    if (!v || v->is_none()) return def;
    if (!v->is_integral())
        throw_type(std::string("'") + type_name(*v) +
                   "' object cannot be interpreted as an integer (" + fn + ")");
    return v->i();
}

// Python slice bounds for (start, end) arguments of find/count/startswith.
void bounds(const ArgReader& r, size_t i_start, size_t n, size_t& b, size_t& e) {
    auto norm = [&](const Value* v, int64_t def) -> size_t {
        int64_t x = int_arg(v, "slice", def);
        if (x < 0) x += static_cast<int64_t>(n);
        return static_cast<size_t>(std::clamp<int64_t>(x, 0, static_cast<int64_t>(n)));
    };
    b = norm(r.get(i_start), 0);
    e = norm(r.get(i_start + 1), static_cast<int64_t>(n));
}

size_t find_cps(const Cps& h, const Cps& nd, size_t b, size_t e, bool reverse) {
    if (e < b || nd.size() > e - b) return std::string::npos;
    if (!reverse) {
        for (size_t i = b; i + nd.size() <= e; ++i)
            if (std::equal(nd.begin(), nd.end(), h.begin() + static_cast<std::ptrdiff_t>(i)))
                return i;
    } else {
        for (size_t i = e - nd.size() + 1; i-- > b;)
            if (std::equal(nd.begin(), nd.end(), h.begin() + static_cast<std::ptrdiff_t>(i)))
                return i;
    }
    return std::string::npos;
}

Value str_of(const Value& self, std::string s) {
    return self.is_safe() ? Value::markup(std::move(s)) : Value(std::move(s));
}

Value strip_impl(const Value& self, CallArgs& a, const char* fn, bool l, bool r) {
    ArgReader ar(a, fn, {"chars"});
    const Value* c = ar.get(0);
    if (c && !c->is_none() && !c->is_string())
        throw_type(std::string(fn) + " arg must be None or str");
    const std::string* chars = (c && c->is_string()) ? &c->s() : nullptr;
    return str_of(self, uni::strip(self.s(), chars, l, r));
}

std::vector<std::string> split_ws(const std::string& s, int64_t maxsplit, bool from_right) {
    Cps c = uni::to_cps(s);
    std::vector<std::string> parts;
    if (!from_right) {
        size_t i = 0;
        const size_t n = c.size();
        while (true) {
            while (i < n && uni::is_space(c[i])) ++i;
            if (i >= n) break;
            if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
                parts.push_back(uni::from_cps(c.data() + i, n - i));
                break;
            }
            size_t j = i;
            while (j < n && !uni::is_space(c[j])) ++j;
            parts.push_back(uni::from_cps(c.data() + i, j - i));
            i = j;
        }
        return parts;
    }
    size_t e = c.size();
    while (true) {
        while (e > 0 && uni::is_space(c[e - 1])) --e;
        if (e == 0) break;
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
            parts.push_back(uni::from_cps(c.data(), e));
            break;
        }
        size_t b = e;
        while (b > 0 && !uni::is_space(c[b - 1])) --b;
        parts.push_back(uni::from_cps(c.data() + b, e - b));
        e = b;
    }
    std::reverse(parts.begin(), parts.end());
    return parts;
}

std::vector<std::string> split_sep(const std::string& s, const std::string& sep, int64_t maxsplit,
                                   bool from_right) {
    if (sep.empty()) throw_type("empty separator");
    std::vector<std::string> parts;
    if (!from_right) {
        size_t pos = 0;
        while (true) {
            if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) break;
            size_t k = s.find(sep, pos);
            if (k == std::string::npos) break;
            parts.push_back(s.substr(pos, k - pos));
            pos = k + sep.size();
        }
        parts.push_back(s.substr(pos));
        return parts;
    }
    size_t end = s.size();
    while (true) {
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) break;
        if (end < sep.size()) break;
        size_t k = s.rfind(sep, end - sep.size());
        if (k == std::string::npos) break;
        parts.push_back(s.substr(k + sep.size(), end - k - sep.size()));
        end = k;
    }
    parts.push_back(s.substr(0, end));
    std::reverse(parts.begin(), parts.end());
    return parts;
}

Value split_impl(const Value& self, CallArgs& a, const char* fn, bool from_right) {
    ArgReader r(a, fn, {"sep", "maxsplit"});
    const Value* sep = r.get(0);
    const int64_t maxsplit = int_arg(r.get(1), fn, -1);
    std::vector<std::string> parts =
        (!sep || sep->is_none()) ? split_ws(self.s(), maxsplit, from_right)
                                 : split_sep(self.s(), str_arg(sep, fn), maxsplit, from_right);
    std::vector<Value> out;
    out.reserve(parts.size());
    for (auto& p : parts) out.push_back(str_of(self, std::move(p)));
    return Value::list(std::move(out));
}

bool is_linebreak(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
           c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
}

Value find_impl(const Value& self, CallArgs& a, const char* fn, bool reverse, bool raise) {
    ArgReader r(a, fn, {"sub", "start", "end"});
    Cps h = uni::to_cps(self.s()), nd = uni::to_cps(str_arg(r.get(0), fn));
    size_t b, e;
    bounds(r, 1, h.size(), b, e);
    size_t k = find_cps(h, nd, b, e, reverse);
    if (k == std::string::npos) {
        if (raise) throw_type("substring not found");
        return Value(int64_t{-1});
    }
    return Value(static_cast<int64_t>(k));
}

Value fix_affix(const Value& self, CallArgs& a, const char* fn, bool ends) {
    ArgReader r(a, fn, {"prefix", "start", "end"});
    Cps h = uni::to_cps(self.s());
    size_t b, e;
    bounds(r, 1, h.size(), b, e);
    std::vector<Value> cands;
    const Value* p = r.get(0);
    if (p && p->is_list() && p->list_kind() == ListKind::Tuple)
        cands = p->arr().items;
    else if (p)
        cands.push_back(*p);
    for (const auto& c : cands) {
        Cps x = uni::to_cps(str_arg(&c, fn));
        if (e < b || x.size() > e - b) continue;
        const size_t at = ends ? e - x.size() : b;
        if (std::equal(x.begin(), x.end(), h.begin() + static_cast<std::ptrdiff_t>(at)))
            return Value(true);
    }
    if (!p) throw_type(std::string(fn) + "() takes at least 1 argument (0 given)");
    return Value(false);
}

template <bool (*Pred)(uint32_t)>
Value all_chars(const Value& self) {
    Cps c = uni::to_cps(self.s());
    if (c.empty()) return Value(false);
    return Value(std::all_of(c.begin(), c.end(), Pred));
}

bool ascii_pred(uint32_t c) {
    return c < 0x80;
}
bool printable_pred(uint32_t c) {
    return uni::is_printable(c) || c == ' ';
}

Value pad_impl(Context& ctx, const Value& self, CallArgs& a, const char* fn, int mode) {
    ArgReader r(a, fn, {"width", "fillchar"});
    const int64_t width = int_arg(r.get(0), fn, 0);
    std::string fill = " ";
    if (r.has(1)) {
        fill = str_arg(r.get(1), fn);
        if (self.is_safe() && !r.get(1)->is_safe()) fill = html_escape(fill);  // markupsafe
        if (uni::length(fill) != 1)
            throw_type("The fill character must be exactly one character long");
    }
    const int64_t len = static_cast<int64_t>(uni::length(self.s()));
    if (width <= len) return self;
    ctx.check_size(static_cast<size_t>(width) * fill.size());
    const int64_t pad = width - len;
    int64_t left = 0;
    if (mode == 0) left = pad / 2 + (pad & width & 1);  // center
    if (mode == 1) left = 0;                            // ljust
    if (mode == 2) left = pad;                          // rjust
    std::string out;
    for (int64_t i = 0; i < left; ++i) out += fill;
    out += self.s();
    for (int64_t i = 0; i < pad - left; ++i) out += fill;
    return str_of(self, std::move(out));
}

Value replace_impl(Context& ctx, const Value& self, const std::string& old, const std::string& nw,
                   int64_t count) {
    const std::string& s = self.s();
    std::string out;
    if (old.empty()) {
        Cps c = uni::to_cps(s);
        int64_t done = 0;
        for (size_t i = 0; i <= c.size(); ++i) {
            if (count < 0 || done < count) {
                out += nw;
                ++done;
            }
            if (i < c.size()) uni::append(out, c[i]);
            ctx.check_size(out.size());
        }
        return str_of(self, std::move(out));
    }
    size_t pos = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
        size_t k = s.find(old, pos);
        if (k == std::string::npos) break;
        out.append(s, pos, k - pos);
        out += nw;
        ctx.check_size(out.size());
        pos = k + old.size();
        ++done;
    }
    out.append(s, pos, std::string::npos);
    ctx.check_size(out.size());
    return str_of(self, std::move(out));
}

// Escapes a str argument of a Markup method (markupsafe's _simple_escaping_wrapper).
Value esc_arg(const Value& self, const Value& v) {
    if (self.is_safe() && v.is_string() && !v.is_safe()) return Value::markup(html_escape(v.s()));
    return v;
}

struct MethodEntry {
    const char* name;
    Method fn;
};

const MethodEntry kStrMethods[] = {
    {"upper",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader(a, "upper", {});
         return str_of(s, uni::upper(s.s()));
     }},
    {"lower",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader(a, "lower", {});
         return str_of(s, uni::lower(s.s()));
     }},
    {"casefold",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader(a, "casefold", {});
         return str_of(s, uni::lower(s.s()));
     }},
    {"title",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader(a, "title", {});
         return str_of(s, uni::title(s.s()));
     }},
    {"capitalize",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader(a, "capitalize", {});
         return str_of(s, uni::capitalize(s.s()));
     }},
    {"swapcase",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader(a, "swapcase", {});
         return str_of(s, uni::swapcase(s.s()));
     }},
    {"strip",
     [](Context&, const Value& s, CallArgs& a) { return strip_impl(s, a, "strip", true, true); }},
    {"lstrip",
     [](Context&, const Value& s, CallArgs& a) { return strip_impl(s, a, "lstrip", true, false); }},
    {"rstrip",
     [](Context&, const Value& s, CallArgs& a) { return strip_impl(s, a, "rstrip", false, true); }},
    {"split",
     [](Context&, const Value& s, CallArgs& a) { return split_impl(s, a, "split", false); }},
    {"rsplit",
     [](Context&, const Value& s, CallArgs& a) { return split_impl(s, a, "rsplit", true); }},
    {"splitlines",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader r(a, "splitlines", {"keepends"});
         const bool keep = int_arg(r.get(0), "splitlines", 0) != 0;
         Cps c = uni::to_cps(s.s());
         std::vector<Value> out;
         size_t i = 0;
         while (i < c.size()) {
             size_t j = i;
             while (j < c.size() && !is_linebreak(c[j])) ++j;
             size_t eol = j;
             if (j < c.size())
                 eol = (c[j] == '\r' && j + 1 < c.size() && c[j + 1] == '\n') ? j + 2 : j + 1;
             out.push_back(str_of(s, uni::from_cps(c.data() + i, (keep ? eol : j) - i)));
             i = eol;
         }
         return Value::list(std::move(out));
     }},
    {"startswith",
     [](Context&, const Value& s, CallArgs& a) { return fix_affix(s, a, "startswith", false); }},
    {"endswith",
     [](Context&, const Value& s, CallArgs& a) { return fix_affix(s, a, "endswith", true); }},
    {"find",
     [](Context&, const Value& s, CallArgs& a) { return find_impl(s, a, "find", false, false); }},
    {"rfind",
     [](Context&, const Value& s, CallArgs& a) { return find_impl(s, a, "rfind", true, false); }},
    {"index",
     [](Context&, const Value& s, CallArgs& a) { return find_impl(s, a, "index", false, true); }},
    {"rindex",
     [](Context&, const Value& s, CallArgs& a) { return find_impl(s, a, "rindex", true, true); }},
    {"count",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader r(a, "count", {"sub", "start", "end"});
         Cps h = uni::to_cps(s.s()), nd = uni::to_cps(str_arg(r.get(0), "count"));
         size_t b, e;
         bounds(r, 1, h.size(), b, e);
         if (e < b) return Value(int64_t{0});
         if (nd.empty()) return Value(static_cast<int64_t>(e - b + 1));
         int64_t n = 0;
         for (size_t k = find_cps(h, nd, b, e, false); k != std::string::npos;
              k = find_cps(h, nd, k + nd.size(), e, false))
             ++n;
         return Value(n);
     }},
    {"replace",
     [](Context& ctx, const Value& s, CallArgs& a) {
         ArgReader r(a, "replace", {"old", "new", "count"});
         Value o = r.get_or(0, Value()), n = esc_arg(s, r.get_or(1, Value()));
         return replace_impl(ctx, s, str_arg(&o, "replace"), str_arg(&n, "replace"),
                             int_arg(r.get(2), "replace", -1));
     }},
    {"join",
     [](Context& ctx, const Value& s, CallArgs& a) {
         ArgReader r(a, "join", {"iterable"});
         if (!r.has(0)) throw_type("join() takes exactly one argument (0 given)");
         std::string out;
         size_t i = 0;
         for (const auto& v : iterate(*r.get(0))) {
             if (!v.is_string() && !s.is_safe())
                 throw_type("sequence item " + std::to_string(i) + ": expected str instance, " +
                            type_name(v) + " found");
             if (i++) out += s.s();
             out += s.is_safe() && !v.is_safe() ? html_escape(to_str(v)) : v.s();
             ctx.check_size(out.size());
         }
         return str_of(s, std::move(out));
     }},
    {"format",
     [](Context& ctx, const Value& s, CallArgs& a) {
         auto kw = std::make_shared<Dict>();
         for (auto& [k, v] : a.kw) kw->set(Value(k), v);
         std::string out = str_format(s.s(), a.pos, *kw, s.is_safe());
         ctx.check_size(out.size());
         return str_of(s, std::move(out));
     }},
    {"format_map",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader r(a, "format_map", {"mapping"});
         if (!r.has(0) || !r.get(0)->is_mapping())
             throw_type("format_map() argument must be a mapping");
         return str_of(s, str_format(s.s(), {}, r.get(0)->dict(), s.is_safe()));
     }},
    {"center",
     [](Context& ctx, const Value& s, CallArgs& a) { return pad_impl(ctx, s, a, "center", 0); }},
    {"ljust",
     [](Context& ctx, const Value& s, CallArgs& a) { return pad_impl(ctx, s, a, "ljust", 1); }},
    {"rjust",
     [](Context& ctx, const Value& s, CallArgs& a) { return pad_impl(ctx, s, a, "rjust", 2); }},
    {"zfill",
     [](Context& ctx, const Value& s, CallArgs& a) {
         ArgReader r(a, "zfill", {"width"});
         const int64_t width = int_arg(r.get(0), "zfill", 0);
         const int64_t len = static_cast<int64_t>(uni::length(s.s()));
         if (width <= len) return s;
         ctx.check_size(static_cast<size_t>(width));
         std::string body = s.s(), sign;
         if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
             sign = body.substr(0, 1);
             body.erase(0, 1);
         }
         return str_of(s, sign + std::string(static_cast<size_t>(width - len), '0') + body);
     }},
    {"partition",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader r(a, "partition", {"sep"});
         const std::string& sep = str_arg(r.get(0), "partition");
         if (sep.empty()) throw_type("empty separator");
         size_t k = s.s().find(sep);
         if (k == std::string::npos) return Value::tuple({s, str_of(s, ""), str_of(s, "")});
         return Value::tuple({str_of(s, s.s().substr(0, k)), str_of(s, sep),
                              str_of(s, s.s().substr(k + sep.size()))});
     }},
    {"rpartition",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader r(a, "rpartition", {"sep"});
         const std::string& sep = str_arg(r.get(0), "rpartition");
         if (sep.empty()) throw_type("empty separator");
         size_t k = s.s().rfind(sep);
         if (k == std::string::npos) return Value::tuple({str_of(s, ""), str_of(s, ""), s});
         return Value::tuple({str_of(s, s.s().substr(0, k)), str_of(s, sep),
                              str_of(s, s.s().substr(k + sep.size()))});
     }},
    {"removeprefix",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader r(a, "removeprefix", {"prefix"});
         const std::string& p = str_arg(r.get(0), "removeprefix");
         if (s.s().compare(0, p.size(), p) == 0) return str_of(s, s.s().substr(p.size()));
         return s;
     }},
    {"removesuffix",
     [](Context&, const Value& s, CallArgs& a) {
         ArgReader r(a, "removesuffix", {"suffix"});
         const std::string& p = str_arg(r.get(0), "removesuffix");
         if (!p.empty() && s.s().size() >= p.size() &&
             s.s().compare(s.s().size() - p.size(), p.size(), p) == 0)
             return str_of(s, s.s().substr(0, s.s().size() - p.size()));
         return s;
     }},
    {"isdigit", [](Context&, const Value& s, CallArgs&) { return all_chars<uni::is_digit>(s); }},
    {"isdecimal", [](Context&, const Value& s, CallArgs&) { return all_chars<uni::is_digit>(s); }},
    {"isnumeric", [](Context&, const Value& s, CallArgs&) { return all_chars<uni::is_digit>(s); }},
    {"isalpha", [](Context&, const Value& s, CallArgs&) { return all_chars<uni::is_alpha>(s); }},
    {"isalnum", [](Context&, const Value& s, CallArgs&) { return all_chars<uni::is_alnum>(s); }},
    {"isspace", [](Context&, const Value& s, CallArgs&) { return all_chars<uni::is_space>(s); }},
    {"isascii",
     [](Context&, const Value& s, CallArgs&) {
         return Value(std::all_of(s.s().begin(), s.s().end(), [](char c) {
             return ascii_pred(static_cast<unsigned char>(c));
         }));
     }},
    {"isprintable",
     [](Context&, const Value& s, CallArgs&) {
         Cps c = uni::to_cps(s.s());
         return Value(std::all_of(c.begin(), c.end(), printable_pred));
     }},
    {"isupper",
     [](Context&, const Value& s, CallArgs&) {
         Cps c = uni::to_cps(s.s());
         bool cased = false;
         for (uint32_t x : c) {
             if (uni::is_lower(x)) return Value(false);
             cased = cased || uni::is_upper(x);
         }
         return Value(cased);
     }},
    {"islower",
     [](Context&, const Value& s, CallArgs&) {
         Cps c = uni::to_cps(s.s());
         bool cased = false;
         for (uint32_t x : c) {
             if (uni::is_upper(x)) return Value(false);
             cased = cased || uni::is_lower(x);
         }
         return Value(cased);
     }},
    {"istitle",
     [](Context&, const Value& s, CallArgs&) {
         Cps c = uni::to_cps(s.s());
         bool prev_cased = false, any = false;
         for (uint32_t x : c) {
             if (uni::is_upper(x)) {
                 if (prev_cased) return Value(false);
                 prev_cased = any = true;
             } else if (uni::is_lower(x)) {
                 if (!prev_cased) return Value(false);
                 prev_cased = any = true;
             } else {
                 prev_cased = false;
             }
         }
         return Value(any);
     }},
    {"isidentifier",
     [](Context&, const Value& s, CallArgs&) {
         Cps c = uni::to_cps(s.s());
         if (c.empty() || uni::is_digit(c[0])) return Value(false);
         return Value(std::all_of(c.begin(), c.end(), [](uint32_t x) { return uni::is_word(x); }));
     }},
};

const MethodEntry kDictMethods[] = {
    {"keys",
     [](Context&, const Value& d, CallArgs& a) {
         ArgReader(a, "keys", {});
         std::vector<Value> out;
         for (const auto& kv : d.dict().entries()) out.push_back(kv.first);
         return Value::list(std::move(out), ListKind::Keys);
     }},
    {"values",
     [](Context&, const Value& d, CallArgs& a) {
         ArgReader(a, "values", {});
         std::vector<Value> out;
         for (const auto& kv : d.dict().entries()) out.push_back(kv.second);
         return Value::list(std::move(out), ListKind::Values);
     }},
    {"items",
     [](Context&, const Value& d, CallArgs& a) {
         ArgReader(a, "items", {});
         std::vector<Value> out;
         for (const auto& kv : d.dict().entries())
             out.push_back(Value::tuple({kv.first, kv.second}));
         return Value::list(std::move(out), ListKind::Items);
     }},
    {"get",
     [](Context&, const Value& d, CallArgs& a) {
         ArgReader r(a, "get", {"key", "default"});
         if (!r.has(0)) throw_type("get expected at least 1 argument, got 0");
         const Value& k = *r.get(0);
         if (!is_hashable(k)) throw_type("unhashable type: '" + type_name(k) + "'");
         if (const Value* v = d.dict().find(k)) return *v;
         return r.get_or(1, Value::none());
     }},
    {"copy",
     [](Context&, const Value& d, CallArgs& a) {
         ArgReader(a, "copy", {});
         auto c = std::make_shared<Dict>();
         for (const auto& [k, v] : d.dict().entries()) c->set(k, v);
         return Value::dict(std::move(c));
     }},
};

const MethodEntry kListMethods[] = {
    {"index",
     [](Context&, const Value& l, CallArgs& a) {
         ArgReader r(a, "index", {"value", "start", "stop"});
         const auto& items = l.arr().items;
         size_t b, e;
         bounds(r, 1, items.size(), b, e);
         for (size_t i = b; i < e; ++i)
             if (py_equal(items[i], r.get_or(0, Value()))) return Value(static_cast<int64_t>(i));
         throw_type(repr(r.get_or(0, Value())) + " is not in list");
     }},
    {"count",
     [](Context&, const Value& l, CallArgs& a) {
         ArgReader r(a, "count", {"value"});
         int64_t n = 0;
         for (const auto& v : l.arr().items) n += py_equal(v, r.get_or(0, Value())) ? 1 : 0;
         return Value(n);
     }},
    {"copy",
     [](Context&, const Value& l, CallArgs& a) {
         ArgReader(a, "copy", {});
         return Value::list(l.arr().items);
     }},
};

const char* const kDictMutators[] = {"pop", "popitem", "setdefault", "update", "clear"};
const char* const kListMutators[] = {"append", "extend",  "insert", "pop",
                                     "remove", "reverse", "sort",   "clear"};

template <size_t N>
const MethodEntry* lookup(const MethodEntry (&table)[N], std::string_view name) {
    for (const auto& e : table)
        if (name == e.name) return &e;
    return nullptr;
}

template <size_t N>
bool listed(const char* const (&names)[N], std::string_view name) {
    for (const char* n : names)
        if (name == n) return true;
    return false;
}

Value bind(const Value& self, const MethodEntry* m) {
    const Method fn = m->fn;
    return Value::object(std::make_shared<NativeFunction>(
        m->name, [self, fn](Context& ctx, CallArgs& args) { return fn(ctx, self, args); }));
}

}  // namespace

Value get_method(const Value& obj, std::string_view name, bool* found) {
    *found = true;
    switch (obj.kind()) {
        case Value::Kind::String:
            if (const MethodEntry* m = lookup(kStrMethods, name)) return bind(obj, m);
            break;
        case Value::Kind::Dict:
            if (obj.is_namespace()) break;
            if (const MethodEntry* m = lookup(kDictMethods, name)) return bind(obj, m);
            if (listed(kDictMutators, name))
                return Value::unsafe("access to attribute '" + std::string(name) +
                                     "' of 'dict' object is unsafe.");
            break;
        case Value::Kind::List: {
            const ListKind k = obj.list_kind();
            if (k == ListKind::List || k == ListKind::Tuple || k == ListKind::Range) {
                if (const MethodEntry* m = lookup(kListMethods, name)) {
                    if (k == ListKind::List || std::strcmp(m->name, "copy") != 0)
                        return bind(obj, m);
                }
                if (k == ListKind::List && listed(kListMutators, name))
                    return Value::unsafe("access to attribute '" + std::string(name) +
                                         "' of 'list' object is unsafe.");
            }
            break;
        }
        case Value::Kind::Int:
        case Value::Kind::Bool:
        case Value::Kind::Float:
            if (name == "real") return obj.is_float() ? obj : Value(obj.i());
            if (name == "imag") return obj.is_float() ? Value(0.0) : Value(int64_t{0});
            if (name == "is_integer" && obj.is_float()) {
                const double d = obj.f();
                return make_function("is_integer", [d](Context&, CallArgs&) {
                    return Value(std::isfinite(d) &&
                                 d == static_cast<double>(static_cast<int64_t>(d)));
                });
            }
            break;
        default:
            break;
    }
    *found = false;
    return Value();
}

}  // namespace lokal::tmpl
