// Python operator semantics (+ - * / // % **, in, unary minus), Markup escaping rules, and
// jinja's sandboxed attribute / item access.
#include <cmath>

#include "template/eval.h"
#include "template/pyformat.h"
#include "template/unicode.h"

namespace lokal::tmpl {

namespace {

[[noreturn]] void unsupported(const char* op, const Value& a, const Value& b) {
    throw_type(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) +
               "' and '" + type_name(b) + "'");
}

[[noreturn]] void overflow() {
    throw_type("integer overflow (values beyond 64 bits are not supported)");
}

Value checked(bool overflowed, const int64_t& r) {
    if (overflowed) overflow();
    return Value(r);
}

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

int64_t py_mod(int64_t a, int64_t b) {
    int64_t r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}

double py_fmod(double a, double b) {
    double r = std::fmod(a, b);
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    if (r == 0) r = std::copysign(0.0, b);
    return r;
}

Value repeat(const Value& seq, int64_t count, Context& ctx) {
    if (count < 0) count = 0;
    if (seq.is_string()) {
        const std::string& s = seq.s();
        if (!s.empty() && static_cast<uint64_t>(count) > ctx.limits.max_output / s.size())
            throw_limit("template output or string too large");
        std::string out;
        out.reserve(s.size() * static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) out += s;
        return seq.is_safe() ? Value::markup(std::move(out)) : Value(std::move(out));
    }
    const auto& items = seq.arr().items;
    if (!items.empty() && static_cast<uint64_t>(count) > ctx.limits.max_items / items.size())
        throw_limit("list too large");
    std::vector<Value> out;
    out.reserve(items.size() * static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) out.insert(out.end(), items.begin(), items.end());
    ctx.step(out.size() / 16);
    return Value::list(std::move(out),
                       seq.list_kind() == ListKind::Tuple ? ListKind::Tuple : ListKind::List);
}

bool is_plain_seq(const Value& v) {
    return v.is_list() && (v.list_kind() == ListKind::List || v.list_kind() == ListKind::Tuple);
}

// Arguments of Markup % args are escaped like markupsafe's _MarkupEscapeHelper.
Value escape_format_args(const Value& args) {
    auto esc = [](const Value& v) -> Value {
        if (v.is_number() || v.is_safe()) return v;
        return Value::markup(html_escape(to_str(v)));
    };
    if (args.is_list() && args.list_kind() == ListKind::Tuple) {
        std::vector<Value> items;
        for (const auto& v : args.arr().items) items.push_back(esc(v));
        return Value::tuple(std::move(items));
    }
    if (args.is_mapping()) {
        auto d = std::make_shared<Dict>();
        for (const auto& [k, v] : args.dict().entries()) d->set(k, esc(v));
        return Value::dict(std::move(d));
    }
    if (args.is_list()) return args;  // subscriptable: used as a mapping by markupsafe
    return esc(args);
}

}  // namespace

Value concat_strings(const Value& a, const Value& b, Context& ctx) {
    std::string out;
    const bool safe = a.is_safe() || b.is_safe();
    const std::string left = (safe && !a.is_safe()) ? html_escape(a.s()) : a.s();
    const std::string right = (safe && !b.is_safe()) ? html_escape(b.s()) : b.s();
    ctx.check_size(left.size() + right.size());
    out.reserve(left.size() + right.size());
    out += left;
    out += right;
    return safe ? Value::markup(std::move(out)) : Value(std::move(out));
}

Value binary_op(BinOp op, const Value& a, const Value& b, Context& ctx) {
    if (a.is_undefined()) undefined_error(a);
    // str % Undefined formats it (Undefined has __getitem__, so it acts as a mapping).
    if (b.is_undefined() && !(op == BinOp::Mod && a.is_string())) undefined_error(b);
    const bool nums = a.is_number() && b.is_number();
    const bool ints = a.is_integral() && b.is_integral();
    int64_t r = 0;
    switch (op) {
        case BinOp::Add:
            if (ints) {
                const bool o = __builtin_add_overflow(a.i(), b.i(), &r);
                return checked(o, r);
            }
            if (nums) return Value(a.f() + b.f());
            if (a.is_string() && b.is_string()) return concat_strings(a, b, ctx);
            if (is_plain_seq(a) && is_plain_seq(b) && a.list_kind() == b.list_kind()) {
                const auto& x = a.arr().items;
                const auto& y = b.arr().items;
                ctx.check_items(x.size() + y.size());
                ctx.step((x.size() + y.size()) / 16);
                std::vector<Value> out;
                out.reserve(x.size() + y.size());
                out.insert(out.end(), x.begin(), x.end());
                out.insert(out.end(), y.begin(), y.end());
                return Value::list(std::move(out), a.list_kind());
            }
            if (a.is_string() || is_plain_seq(a))
                throw_type("can only concatenate " + type_name(a) + " (not \"" + type_name(b) +
                           "\") to " + type_name(a));
            unsupported("+", a, b);
        case BinOp::Sub:
            if (ints) {
                const bool o = __builtin_sub_overflow(a.i(), b.i(), &r);
                return checked(o, r);
            }
            if (nums) return Value(a.f() - b.f());
            unsupported("-", a, b);
        case BinOp::Mul:
            if (ints) {
                const bool o = __builtin_mul_overflow(a.i(), b.i(), &r);
                return checked(o, r);
            }
            if (nums) return Value(a.f() * b.f());
            if ((a.is_string() || is_plain_seq(a)) && b.is_integral()) return repeat(a, b.i(), ctx);
            if ((b.is_string() || is_plain_seq(b)) && a.is_integral()) return repeat(b, a.i(), ctx);
            if (a.is_string() || b.is_string() || is_plain_seq(a) || is_plain_seq(b))
                throw_type("can't multiply sequence by non-int of type '" +
                           type_name(a.is_number() ? a : b) + "'");
            unsupported("*", a, b);
        case BinOp::Div:
            if (!nums) unsupported("/", a, b);
            if (b.f() == 0) throw Error(ErrorKind::Runtime, "division by zero");
            return Value(a.f() / b.f());
        case BinOp::FloorDiv:
            if (!nums) unsupported("//", a, b);
            if (b.f() == 0) throw Error(ErrorKind::Runtime, "integer division or modulo by zero");
            if (ints) {
                if (a.i() == INT64_MIN && b.i() == -1) overflow();
                return Value(floor_div(a.i(), b.i()));
            }
            return Value(std::floor(a.f() / b.f()));
        case BinOp::Mod:
            if (a.is_string()) {
                if (a.is_safe()) return Value::markup(percent_format(a.s(), escape_format_args(b)));
                std::string s = percent_format(a.s(), b);
                ctx.check_size(s.size());
                return Value(std::move(s));
            }
            if (!nums) unsupported("%", a, b);
            if (b.f() == 0) throw Error(ErrorKind::Runtime, "integer division or modulo by zero");
            if (ints) {
                if (b.i() == -1) return Value(int64_t{0});
                return Value(py_mod(a.i(), b.i()));
            }
            return Value(py_fmod(a.f(), b.f()));
        case BinOp::Pow:
            if (!nums) unsupported("** or pow()", a, b);
            if (ints && b.i() >= 0) {
                int64_t base = a.i(), e = b.i(), res = 1;
                while (e > 0) {
                    if (e & 1) {
                        if (__builtin_mul_overflow(res, base, &res)) overflow();
                    }
                    e >>= 1;
                    if (e > 0 && __builtin_mul_overflow(base, base, &base)) overflow();
                }
                return Value(res);
            }
            if (a.f() == 0 && b.f() < 0)
                throw Error(ErrorKind::Runtime, "0.0 cannot be raised to a negative power");
            if (a.f() < 0 && b.f() != std::floor(b.f()))
                throw_type(
                    "negative number cannot be raised to a fractional power (complex result)");
            return Value(std::pow(a.f(), b.f()));
        case BinOp::And:
        case BinOp::Or:
            break;
    }
    return Value();
}

Value negate(const Value& v, bool neg) {
    if (v.is_undefined()) undefined_error(v);
    if (v.is_integral()) {
        if (!neg) return Value(v.i());
        if (v.i() == INT64_MIN) overflow();
        return Value(-v.i());
    }
    if (v.is_float()) return Value(neg ? -v.f() : v.f());
    throw_type(std::string("bad operand type for unary ") + (neg ? "-" : "+") + ": '" +
               type_name(v) + "'");
}

bool contains(const Value& c, const Value& item) {
    switch (c.kind()) {
        case Value::Kind::String:
            if (!item.is_string())
                throw_type("'in <string>' requires string as left operand, not " + type_name(item));
            return c.s().find(item.s()) != std::string::npos;
        case Value::Kind::List:
            for (const auto& v : c.arr().items)
                if (py_equal(v, item)) return true;
            return false;
        case Value::Kind::Dict:
            if (c.is_namespace()) break;
            if (!is_hashable(item)) throw_type("unhashable type: '" + type_name(item) + "'");
            return c.dict().find(item) != nullptr;
        case Value::Kind::Undefined:
            return false;
        case Value::Kind::Generator: {
            GenState& g = c.gen();
            if (!g.error.empty()) throw_type(g.error);
            while (g.pos < g.items.size())
                if (py_equal(g.items[g.pos++], item)) return true;
            return false;
        }
        default:
            break;
    }
    throw_type("argument of type '" + type_name(c) + "' is not iterable");
}

static bool is_dunder(std::string_view n) {
    return n.size() > 4 && n.substr(0, 2) == "__" && n.substr(n.size() - 2) == "__";
}

static Value unsafe_attr(const Value& obj, std::string_view name) {
    return Value::unsafe("access to attribute '" + std::string(name) + "' of '" + type_name(obj) +
                         "' object is unsafe.");
}

// Special methods jinja's Undefined class has (the sandbox then hides them).
static bool undefined_has(std::string_view n) {
    static const char* const kNames[] = {
        "__class__",   "__init__",         "__new__",    "__len__",    "__iter__",   "__str__",
        "__repr__",    "__eq__",           "__ne__",     "__hash__",   "__bool__",   "__call__",
        "__getitem__", "__add__",          "__radd__",   "__sub__",    "__mul__",    "__lt__",
        "__le__",      "__gt__",           "__ge__",     "__doc__",    "__module__", "__slots__",
        "__getattr__", "__format__",       "__reduce__", "__sizeof__", "__dir__",    "__setattr__",
        "__delattr__", "__getattribute__", "__aiter__"};
    for (const char* k : kNames)
        if (n == k) return true;
    return false;
}

Value get_attr(const Value& obj, std::string_view name) {
    if (obj.is_undefined() && !(is_dunder(name) && undefined_has(name))) undefined_error(obj);
    if (is_dunder(name)) return unsafe_attr(obj, name);
    if (obj.is_namespace()) {
        if (const Value* v = obj.dict().find(name)) return *v;
        return make_undefined(obj, Value(name));
    }
    if (obj.is_object()) return obj.obj().attr(name);
    if (obj.is_list() && obj.arr().fields) {
        const auto& f = *obj.arr().fields;
        for (size_t i = 0; i < f.size() && i < obj.arr().items.size(); ++i)
            if (f[i] == name) return obj.arr().items[i];
    }
    bool found = false;
    Value m = get_method(obj, name, &found);
    if (found) return m;
    if (obj.is_mapping()) {
        if (const Value* v = obj.dict().find(name)) return *v;
    }
    return make_undefined(obj, Value(name));
}

static Value index_of(const std::vector<Value>& items, int64_t i) {
    const auto n = static_cast<int64_t>(items.size());
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value();
    return items[static_cast<size_t>(i)];
}

Value get_item(const Value& obj, const Value& key) {
    if (obj.is_undefined()) undefined_error(obj);
    switch (obj.kind()) {
        case Value::Kind::Dict:
            if (obj.is_namespace()) break;
            if (is_hashable(key))
                if (const Value* v = obj.dict().find(key)) return *v;
            break;
        case Value::Kind::List:
            if (key.is_integral() &&
                (obj.list_kind() == ListKind::List || obj.list_kind() == ListKind::Tuple ||
                 obj.list_kind() == ListKind::Range)) {
                Value v = index_of(obj.arr().items, key.i());
                if (!v.is_undefined()) return v;
            }
            break;
        case Value::Kind::String:
            if (key.is_integral()) {
                auto cps = uni::to_cps(obj.s());
                int64_t i = key.i();
                const auto n = static_cast<int64_t>(cps.size());
                if (i < 0) i += n;
                if (i >= 0 && i < n) {
                    std::string ch = uni::from_cps(&cps[static_cast<size_t>(i)], 1);
                    return obj.is_safe() ? Value::markup(std::move(ch)) : Value(std::move(ch));
                }
            }
            break;
        default:
            break;
    }
    if (key.is_string()) {
        if (is_dunder(key.s())) return unsafe_attr(obj, key.s());
        if (obj.is_list() && obj.arr().fields) {
            const auto& f = *obj.arr().fields;
            for (size_t i = 0; i < f.size() && i < obj.arr().items.size(); ++i)
                if (f[i] == key.s()) return obj.arr().items[i];
        }
        if (obj.is_namespace()) {
            if (const Value* v = obj.dict().find(std::string_view(key.s()))) return *v;
        } else if (obj.is_object()) {
            return obj.obj().attr(key.s());
        } else {
            bool found = false;
            Value m = get_method(obj, key.s(), &found);
            if (found) return m;
        }
    }
    return make_undefined(obj, key);
}

Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step) {
    // jinja compiles slices to a plain Python subscript: errors are raised, not undefined.
    const bool is_str = obj.is_string();
    const bool sliceable = is_str || (obj.is_list() && (obj.list_kind() == ListKind::List ||
                                                        obj.list_kind() == ListKind::Tuple ||
                                                        obj.list_kind() == ListKind::Range));
    if (!sliceable) {
        if (obj.is_mapping()) throw_type("unhashable type: 'slice'");
        throw_type("'" + type_name(obj) + "' object is not subscriptable");
    }
    auto idx_ok = [](const Value& v) { return v.is_none() || v.is_integral(); };
    if (!idx_ok(start) || !idx_ok(stop) || !idx_ok(step))
        throw_type("slice indices must be integers or None or have an __index__ method");
    const int64_t st = step.is_none() ? 1 : step.i();
    if (st == 0) throw Error(ErrorKind::Runtime, "slice step cannot be zero");
    std::vector<uint32_t> cps;
    if (is_str) cps = uni::to_cps(obj.s());
    const auto n = static_cast<int64_t>(is_str ? cps.size() : obj.arr().items.size());
    auto norm = [&](const Value& v, int64_t def) -> int64_t {
        if (v.is_none()) return def;
        int64_t i = v.i();
        if (i < 0) {
            i += n;
            if (i < 0) i = st < 0 ? -1 : 0;
        } else if (i >= n) {
            i = st < 0 ? n - 1 : n;
        }
        return i;
    };
    const int64_t b = norm(start, st > 0 ? 0 : n - 1);
    const int64_t e = norm(stop, st > 0 ? n : -1);
    std::vector<size_t> picks;
    for (int64_t i = b; st > 0 ? i < e : i > e; i += st) picks.push_back(static_cast<size_t>(i));
    if (is_str) {
        std::string out;
        for (size_t i : picks) uni::append(out, cps[i]);
        return obj.is_safe() ? Value::markup(std::move(out)) : Value(std::move(out));
    }
    if (obj.list_kind() == ListKind::Range) {  // a slice of a range is a range
        const Array& r = obj.arr();
        int64_t nb, ne, ns;
        if (__builtin_mul_overflow(b, r.step, &nb) || __builtin_add_overflow(nb, r.start, &nb) ||
            __builtin_mul_overflow(e, r.step, &ne) || __builtin_add_overflow(ne, r.start, &ne) ||
            __builtin_mul_overflow(r.step, st, &ns))
            overflow();
        return Value::range(nb, ne, ns);
    }
    std::vector<Value> items;
    items.reserve(picks.size());
    for (size_t i : picks) items.push_back(obj.arr().items[i]);
    return Value::list(std::move(items),
                       obj.list_kind() == ListKind::Tuple ? ListKind::Tuple : ListKind::List);
}

}  // namespace lokal::tmpl
