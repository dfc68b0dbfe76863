#include "template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "template/unicode.h"

namespace lokal::tmpl {

// ---- deferred release --------------------------------------------------------------------

namespace {
thread_local std::vector<std::shared_ptr<void>> g_trash;
thread_local int g_release_depth = 0;
}  // namespace

ReleaseScope::ReleaseScope() {
    ++g_release_depth;
}

ReleaseScope::~ReleaseScope() {
    if (--g_release_depth != 0) return;
    ++g_release_depth;
    while (!g_trash.empty()) {
        std::shared_ptr<void> p = std::move(g_trash.back());
        g_trash.pop_back();
        p.reset();
    }
    --g_release_depth;
}

void defer_release(std::shared_ptr<void>&& p) {
    if (p) g_trash.push_back(std::move(p));
}

void Value::release_into_trash() {
    switch (kind_) {
        case Kind::List:
        case Kind::Dict:
        case Kind::Object:
        case Kind::Generator:
            defer_release(std::move(p_));
            break;
        default:
            break;
    }
}

Array::~Array() {
    ReleaseScope rs;
    for (auto& v : items) v.release_into_trash();
}

GenState::~GenState() {
    ReleaseScope rs;
    for (auto& v : items) v.release_into_trash();
}

Dict::~Dict() {
    clear();
}

void Dict::clear() {
    ReleaseScope rs;
    index_.clear();
    for (auto& [k, v] : entries_) {
        k.release_into_trash();
        v.release_into_trash();
    }
    entries_.clear();
    has_other_keys_ = false;
}

// ---- Value construction --------------------------------------------------------------------

Value::Value(std::string s) : kind_(Kind::String), i_(0) {
    p_ = std::make_shared<std::string>(std::move(s));
}

Value Value::undefined(std::string message) {
    Value v;
    if (!message.empty()) {
        auto info = std::make_shared<UndefInfo>();
        info->message = std::move(message);
        v.p_ = std::move(info);
    }
    return v;
}

Value Value::unsafe(std::string message) {
    Value v;
    auto info = std::make_shared<UndefInfo>();
    info->message = std::move(message);
    info->security = true;
    v.p_ = std::move(info);
    return v;
}

Value Value::markup(std::string s) {
    Value v(std::move(s));
    v.safe_ = true;
    return v;
}

Value Value::list(std::vector<Value> items, ListKind kind) {
    Value v;
    v.kind_ = Kind::List;
    auto a = std::make_shared<Array>();
    a->items = std::move(items);
    a->kind = kind;
    v.p_ = std::move(a);
    return v;
}

Value Value::range(int64_t start, int64_t stop, int64_t step) {
    std::vector<Value> items;
    for (int64_t x = start; step > 0 ? x < stop : x > stop; x += step) items.emplace_back(x);
    Value v = list(std::move(items), ListKind::Range);
    auto& a = const_cast<Array&>(v.arr());
    a.start = start;
    a.stop = stop;
    a.step = step;
    return v;
}

Value Value::dict(std::shared_ptr<Dict> d) {
    Value v;
    v.kind_ = Kind::Dict;
    v.p_ = std::move(d);
    return v;
}

Value Value::object(std::shared_ptr<Object> o) {
    Value v;
    v.kind_ = Kind::Object;
    v.p_ = std::move(o);
    return v;
}

Value Value::generator(std::vector<Value> items, std::string name) {
    Value v;
    v.kind_ = Kind::Generator;
    auto g = std::make_shared<GenState>();
    g->items = std::move(items);
    g->name = std::move(name);
    v.p_ = std::move(g);
    return v;
}

// ---- Object defaults -------------------------------------------------------------------------

std::string Object::repr() const {
    return "<" + type_name() + " object>";
}

Value Object::call(Context&, CallArgs&) {
    throw_type("'" + type_name() + "' object is not callable");
}

Value Object::attr(std::string_view name) {
    return Value::undefined("'" + type_name() + " object' has no attribute '" + std::string(name) +
                            "'");
}

// ---- Dict ------------------------------------------------------------------------------------

const Value* Dict::find(std::string_view key) const {
    if (!index_.empty()) {
        auto it = index_.find(key);
        return it == index_.end() ? nullptr : &entries_[it->second].second;
    }
    for (const auto& [k, v] : entries_)
        if (k.is_string() && k.s() == key) return &v;
    return nullptr;
}

const Value* Dict::find(const Value& key) const {
    if (key.is_string()) return find(std::string_view(key.s()));
    if (!has_other_keys_) return nullptr;
    for (const auto& [k, v] : entries_)
        if (!k.is_string() && py_equal(k, key)) return &v;
    return nullptr;
}

void Dict::set(Value key, Value value) {
    if (!is_hashable(key)) throw_type("unhashable type: '" + type_name(key) + "'");
    if (const Value* existing = find(key)) {
        *const_cast<Value*>(existing) = std::move(value);
        return;
    }
    if (!key.is_string()) has_other_keys_ = true;
    entries_.emplace_back(std::move(key), std::move(value));
    constexpr size_t kIndexFrom = 12;
    if (entries_.size() == kIndexFrom) {
        for (size_t i = 0; i < entries_.size(); ++i)
            if (entries_[i].first.is_string()) index_.emplace(entries_[i].first.s(), i);
    } else if (entries_.size() > kIndexFrom && entries_.back().first.is_string()) {
        index_.emplace(entries_.back().first.s(), entries_.size() - 1);
    }
}

// ---- formatting --------------------------------------------------------------------------

std::string format_float(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string sci(buf, res.ptr);
    std::string out;
    size_t pos = 0;
    if (sci[0] == '-') {
        out = "-";
        pos = 1;
    }
    const size_t epos = sci.find('e');
    std::string digits;
    for (size_t i = pos; i < epos; ++i)
        if (sci[i] != '.') digits += sci[i];
    const int exp = std::atoi(sci.c_str() + epos + 1);
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    const int decpt = exp + 1;
    const int n = static_cast<int>(digits.size());
    if (decpt > 16 || decpt < -3) {
        out += digits[0];
        if (n > 1) out += "." + digits.substr(1);
        char eb[16];
        std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        out += eb;
    } else if (decpt <= 0) {
        out += "0." + std::string(-decpt, '0') + digits;
    } else if (decpt >= n) {
        out += digits + std::string(decpt - n, '0') + ".0";
    } else {
        out += digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
    return out;
}

static void append_hex_escape(std::string& out, uint32_t c) {
    char buf[16];
    if (c >= 0x110000)  // a raw byte (surrogateescape)
        std::snprintf(buf, sizeof buf, "\\udc%02x", c - 0x110000);
    else if (c < 0x100)
        std::snprintf(buf, sizeof buf, "\\x%02x", c);
    else if (c < 0x10000)
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
    else
        std::snprintf(buf, sizeof buf, "\\U%08x", c);
    out += buf;
}

std::string quote_str(std::string_view s) {
    const bool has_single = s.find('\'') != std::string_view::npos;
    const bool has_double = s.find('"') != std::string_view::npos;
    const char q = (has_single && !has_double) ? '"' : '\'';
    std::string out;
    out.reserve(s.size() + 2);
    out += q;
    for (size_t i = 0; i < s.size();) {
        const uint32_t c = uni::decode(s, i);
        if (c == static_cast<uint32_t>(q) || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (!uni::is_printable(c)) {
            append_hex_escape(out, c);
        } else {
            uni::append(out, c);
        }
    }
    out += q;
    return out;
}

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&#34;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

std::string type_name(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::Undefined:
            return "Undefined";
        case Value::Kind::None:
            return "NoneType";
        case Value::Kind::Bool:
            return "bool";
        case Value::Kind::Int:
            return "int";
        case Value::Kind::Float:
            return "float";
        case Value::Kind::String:
            return v.is_safe() ? "Markup" : "str";
        case Value::Kind::List:
            switch (v.list_kind()) {
                case ListKind::List:
                    return "list";
                case ListKind::Tuple:
                    return "tuple";
                case ListKind::Keys:
                    return "dict_keys";
                case ListKind::Values:
                    return "dict_values";
                case ListKind::Items:
                    return "dict_items";
                case ListKind::Range:
                    return "range";
            }
            return "list";
        case Value::Kind::Dict:
            return v.is_namespace() ? "Namespace" : "dict";
        case Value::Kind::Object:
            return v.obj().type_name();
        case Value::Kind::Generator:
            return "generator";
    }
    return "object";
}

std::string object_type_repr(const Value& v) {
    if (v.is_none()) return "None";
    if (v.is_safe()) return "markupsafe.Markup object";
    if (v.is_namespace()) return "jinja2.utils.Namespace object";
    return type_name(v) + " object";
}

namespace {
// Containers being printed, to print a self-reference as Python does ([...], {...}).
using ReprStack = std::vector<const void*>;
struct ReprGuard {
    ReprGuard(ReprStack& s, const void* p) : stack(s) { stack.push_back(p); }
    ~ReprGuard() { stack.pop_back(); }
    ReprStack& stack;
};
}  // namespace

static void repr_into(std::string& out, const Value& v, int depth, ReprStack& seen);

static void repr_seq(std::string& out, const std::vector<Value>& items, int depth,
                     ReprStack& seen) {
    for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += ", ";
        repr_into(out, items[i], depth + 1, seen);
    }
}

static void repr_dict(std::string& out, const Dict& d, int depth, ReprStack& seen) {
    if (std::find(seen.begin(), seen.end(), &d) != seen.end()) {
        out += "{...}";
        return;
    }
    ReprGuard g(seen, &d);
    out += '{';
    bool first = true;
    for (const auto& [k, val] : d.entries()) {
        if (!first) out += ", ";
        first = false;
        repr_into(out, k, depth + 1, seen);
        out += ": ";
        repr_into(out, val, depth + 1, seen);
    }
    out += '}';
}

static void repr_into(std::string& out, const Value& v, int depth, ReprStack& seen) {
    if (depth > kMaxValueDepth) throw_limit("maximum recursion depth exceeded in repr");
    switch (v.kind()) {
        case Value::Kind::Undefined:
            out += "Undefined";
            return;
        case Value::Kind::String:
            if (v.is_safe()) {
                out += "Markup(" + quote_str(v.s()) + ")";
            } else {
                out += quote_str(v.s());
            }
            return;
        case Value::Kind::List: {
            const Array& a = v.arr();
            switch (a.kind) {
                case ListKind::List: {
                    if (std::find(seen.begin(), seen.end(), &a) != seen.end()) {
                        out += "[...]";
                        return;
                    }
                    ReprGuard g(seen, &a);
                    out += '[';
                    repr_seq(out, a.items, depth, seen);
                    out += ']';
                    return;
                }
                case ListKind::Tuple:
                    out += '(';
                    repr_seq(out, a.items, depth, seen);
                    if (a.items.size() == 1) out += ',';
                    out += ')';
                    return;
                case ListKind::Range:
                    out += "range(" + std::to_string(a.start) + ", " + std::to_string(a.stop);
                    if (a.step != 1) out += ", " + std::to_string(a.step);
                    out += ')';
                    return;
                default:
                    out += type_name(v) + "([";
                    repr_seq(out, a.items, depth, seen);
                    out += "])";
                    return;
            }
        }
        case Value::Kind::Dict:
            if (v.is_namespace()) {
                out += "<Namespace ";
                repr_dict(out, v.dict(), depth, seen);
                out += '>';
            } else {
                repr_dict(out, v.dict(), depth, seen);
            }
            return;
        default:
            out += to_str(v);
    }
}

std::string repr(const Value& v) {
    std::string out;
    ReprStack seen;
    repr_into(out, v, 0, seen);
    return out;
}

std::string to_str(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::Undefined:
            return "";
        case Value::Kind::None:
            return "None";
        case Value::Kind::Bool:
            return v.b() ? "True" : "False";
        case Value::Kind::Int:
            return std::to_string(v.i());
        case Value::Kind::Float:
            return format_float(v.f());
        case Value::Kind::String:
            return v.s();
        case Value::Kind::Object:
            return v.obj().repr();
        case Value::Kind::Generator:
            return "<" + v.gen().name + " at 0x0>";
        case Value::Kind::List:
        case Value::Kind::Dict:
            return repr(v);
    }
    return "";
}

// ---- comparisons -----------------------------------------------------------------------------

static bool equal_at(const Value& a, const Value& b, int depth);

static bool seq_equal(const std::vector<Value>& x, const std::vector<Value>& y, int depth) {
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i)
        if (!equal_at(x[i], y[i], depth + 1)) return false;
    return true;
}

static bool equal_at(const Value& a, const Value& b, int depth) {
    if (depth > kMaxValueDepth) throw_limit("maximum recursion depth exceeded in comparison");
    if (a.is_number() && b.is_number()) {
        if (a.is_integral() && b.is_integral()) return a.i() == b.i();
        return a.f() == b.f();
    }
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
        case Value::Kind::Undefined:
        case Value::Kind::None:
            return true;
        case Value::Kind::String:
            return a.s() == b.s();
        case Value::Kind::List: {
            auto ka = a.list_kind(), kb = b.list_kind();
            if (ka != kb) return false;
            return seq_equal(a.arr().items, b.arr().items, depth);
        }
        case Value::Kind::Dict: {
            if (a.is_namespace() || b.is_namespace()) return a.identity() == b.identity();
            const Dict& da = a.dict();
            const Dict& db = b.dict();
            if (da.size() != db.size()) return false;
            for (const auto& [k, v] : da.entries()) {
                const Value* o = db.find(k);
                if (!o || !equal_at(v, *o, depth + 1)) return false;
            }
            return true;
        }
        default:
            return a.identity() == b.identity();
    }
}

bool py_equal(const Value& a, const Value& b) {
    return equal_at(a, b, 0);
}

static int compare_at(const Value& a, const Value& b, int depth) {
    if (depth > kMaxValueDepth) throw_limit("maximum recursion depth exceeded in comparison");
    if (a.is_number() && b.is_number()) {
        if (a.is_integral() && b.is_integral()) return a.i() < b.i() ? -1 : (a.i() > b.i() ? 1 : 0);
        const double x = a.f(), y = b.f();
        return x < y ? -1 : (x > y ? 1 : 0);  // NaN compares equal-ish, like unordered
    }
    if (a.is_string() && b.is_string()) {
        int c = a.s().compare(b.s());
        return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    if (a.is_list() && b.is_list() && a.list_kind() == b.list_kind() &&
        (a.list_kind() == ListKind::List || a.list_kind() == ListKind::Tuple)) {
        const auto& x = a.arr().items;
        const auto& y = b.arr().items;
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (equal_at(x[i], y[i], depth + 1)) continue;
            return compare_at(x[i], y[i], depth + 1);
        }
        return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
    }
    if (a.is_undefined() || b.is_undefined()) undefined_error(a.is_undefined() ? a : b);
    throw_type("'<' not supported between instances of '" + type_name(a) + "' and '" +
               type_name(b) + "'");
}

int py_compare(const Value& a, const Value& b) {
    return compare_at(a, b, 0);
}

bool is_hashable(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::List:
            if (v.list_kind() == ListKind::Range) return true;
            if (v.list_kind() != ListKind::Tuple) return false;
            for (const auto& e : v.arr().items)
                if (!is_hashable(e)) return false;
            return true;
        case Value::Kind::Dict:
            return v.is_namespace();
        default:
            return true;
    }
}

bool truthy(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::Undefined:
        case Value::Kind::None:
            return false;
        case Value::Kind::Bool:
            return v.b();
        case Value::Kind::Int:
            return v.i() != 0;
        case Value::Kind::Float:
            return v.f() != 0.0;
        case Value::Kind::String:
            return !v.s().empty();
        case Value::Kind::List:
            return !v.arr().items.empty();
        case Value::Kind::Dict:
            return v.is_namespace() || v.dict().size() > 0;
        default:
            return true;
    }
}

std::vector<Value> iterate(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::Undefined:
            return {};
        case Value::Kind::List:
            return v.arr().items;
        case Value::Kind::String: {
            std::vector<Value> out;
            const std::string& s = v.s();
            for (size_t i = 0; i < s.size();) {
                size_t start = i;
                uni::decode(s, i);
                out.emplace_back(s.substr(start, i - start));
            }
            return out;
        }
        case Value::Kind::Dict:
            if (!v.is_namespace()) {
                std::vector<Value> out;
                out.reserve(v.dict().size());
                for (const auto& kv : v.dict().entries()) out.push_back(kv.first);
                return out;
            }
            break;
        case Value::Kind::Generator: {
            GenState& g = v.gen();
            if (!g.error.empty()) throw_type(g.error);
            std::vector<Value> out(g.items.begin() + static_cast<std::ptrdiff_t>(g.pos),
                                   g.items.end());
            g.pos = g.items.size();
            return out;
        }
        default:
            break;
    }
    throw_type("'" + type_name(v) + "' object is not iterable");
}

int64_t py_len(const Value& v) {
    switch (v.kind()) {
        case Value::Kind::Undefined:
            return 0;
        case Value::Kind::String:
            return static_cast<int64_t>(uni::length(v.s()));
        case Value::Kind::List:
            return static_cast<int64_t>(v.arr().items.size());
        case Value::Kind::Dict:
            if (!v.is_namespace()) return static_cast<int64_t>(v.dict().size());
            break;
        default:
            break;
    }
    throw_type("object of type '" + type_name(v) + "' has no len()");
}

std::string undefined_message(const Value& u) {
    const UndefInfo* info = u.undef();
    if (info && !info->message.empty()) return info->message;
    return "undefined value";
}

void undefined_error(const Value& u) {
    const UndefInfo* info = u.undef();
    throw Error(info && info->security ? ErrorKind::Security : ErrorKind::Undefined,
                undefined_message(u));
}

Value make_undefined(const Value& obj, const Value& name) {
    if (name.is_string())
        return Value::undefined("'" + object_type_repr(obj) + "' has no attribute " +
                                quote_str(name.s()));
    return Value::undefined(object_type_repr(obj) + " has no element " + repr(name));
}

// ---- JSON out ----------------------------------------------------------------------------

static nlohmann::ordered_json to_json_at(const Value& v, int depth) {
    if (depth > kMaxValueDepth) throw_limit("value nested too deeply");
    switch (v.kind()) {
        case Value::Kind::None:
            return nullptr;
        case Value::Kind::Bool:
            return v.b();
        case Value::Kind::Int:
            return v.i();
        case Value::Kind::Float:
            return v.f();
        case Value::Kind::String:
            return v.s();
        case Value::Kind::List:
            if (v.list_kind() == ListKind::List || v.list_kind() == ListKind::Tuple) {
                auto arr = nlohmann::ordered_json::array();
                for (const auto& e : v.arr().items) arr.push_back(to_json_at(e, depth + 1));
                return arr;
            }
            break;
        case Value::Kind::Dict:
            if (!v.is_namespace()) {
                auto obj = nlohmann::ordered_json::object();
                for (const auto& [k, e] : v.dict().entries())
                    obj[k.is_string() ? k.s() : to_str(k)] = to_json_at(e, depth + 1);
                return obj;
            }
            break;
        default:
            break;
    }
    throw_type("Object of type " + type_name(v) + " is not JSON serializable");
}

nlohmann::ordered_json to_json(const Value& v) {
    return to_json_at(v, 0);
}

}  // namespace lokal::tmpl
