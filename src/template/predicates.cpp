// The tests of jinja2/tests.py: `x is defined`, `x is divisibleby 3`, `x is equalto y`...
#include <cmath>

#include "template/builtins.h"
#include "template/filters_impl.h"
#include "template/unicode.h"

namespace lokal::tmpl {

namespace {

const Value& arg1(CallArgs& a, const char* name, const char* test) {
    ArgReader r(a, test, {name});
    if (!r.has(0)) throw_type(std::string(test) + "() missing required argument '" + name + "'");
    return *r.get(0);
}

void no_args(CallArgs& a, const char* test) {
    ArgReader(a, test, {});
}

Value mod2(Context& ctx, const Value& v, const Value& m) {
    return binary_op(BinOp::Mod, v, m, ctx);
}

bool t_odd(Context& c, const Value& v, CallArgs& a) {
    no_args(a, "odd");
    return py_equal(mod2(c, v, Value(int64_t{2})), Value(int64_t{1}));
}
bool t_even(Context& c, const Value& v, CallArgs& a) {
    no_args(a, "even");
    return py_equal(mod2(c, v, Value(int64_t{2})), Value(int64_t{0}));
}
bool t_divisibleby(Context& c, const Value& v, CallArgs& a) {
    return py_equal(mod2(c, v, arg1(a, "num", "divisibleby")), Value(int64_t{0}));
}
bool t_defined(Context&, const Value& v, CallArgs& a) {
    no_args(a, "defined");
    return !v.is_undefined();
}
bool t_undefined(Context&, const Value& v, CallArgs& a) {
    no_args(a, "undefined");
    return v.is_undefined();
}
bool t_filter(Context&, const Value& v, CallArgs& a) {
    no_args(a, "filter");
    return v.is_string() && find_filter(v.s()) != nullptr;
}
bool t_test(Context&, const Value& v, CallArgs& a) {
    no_args(a, "test");
    return v.is_string() && find_test(v.s()) != nullptr;
}
bool t_none(Context&, const Value& v, CallArgs& a) {
    no_args(a, "none");
    return v.is_none();
}
bool t_boolean(Context&, const Value& v, CallArgs& a) {
    no_args(a, "boolean");
    return v.is_bool();
}
bool t_false(Context&, const Value& v, CallArgs& a) {
    no_args(a, "false");
    return v.is_bool() && !v.b();
}
bool t_true(Context&, const Value& v, CallArgs& a) {
    no_args(a, "true");
    return v.is_bool() && v.b();
}
bool t_integer(Context&, const Value& v, CallArgs& a) {
    no_args(a, "integer");
    return v.is_int();
}
bool t_float(Context&, const Value& v, CallArgs& a) {
    no_args(a, "float");
    return v.is_float();
}
bool t_lower(Context&, const Value& v, CallArgs& a) {
    no_args(a, "lower");
    bool cased = false;
    for (uint32_t c : uni::to_cps(to_str(v))) {
        if (uni::is_upper(c)) return false;
        cased = cased || uni::is_lower(c);
    }
    return cased;
}
bool t_upper(Context&, const Value& v, CallArgs& a) {
    no_args(a, "upper");
    bool cased = false;
    for (uint32_t c : uni::to_cps(to_str(v))) {
        if (uni::is_lower(c)) return false;
        cased = cased || uni::is_upper(c);
    }
    return cased;
}
bool t_string(Context&, const Value& v, CallArgs& a) {
    no_args(a, "string");
    return v.is_string();
}
bool t_mapping(Context&, const Value& v, CallArgs& a) {
    no_args(a, "mapping");
    return v.is_mapping();
}
bool t_number(Context&, const Value& v, CallArgs& a) {
    no_args(a, "number");
    return v.is_number();
}
bool t_sequence(Context&, const Value& v, CallArgs& a) {
    no_args(a, "sequence");
    switch (v.kind()) {
        case Value::Kind::String:
        case Value::Kind::Undefined:
            return true;
        case Value::Kind::List: {
            const ListKind k = v.list_kind();
            return k == ListKind::List || k == ListKind::Tuple || k == ListKind::Range;
        }
        case Value::Kind::Dict:
            return v.is_mapping();
        default:
            return false;
    }
}
bool t_iterable(Context&, const Value& v, CallArgs& a) {
    no_args(a, "iterable");
    switch (v.kind()) {
        case Value::Kind::String:
        case Value::Kind::Undefined:
        case Value::Kind::List:
        case Value::Kind::Generator:
            return true;
        case Value::Kind::Dict:
            return v.is_mapping();
        case Value::Kind::Object:
            return v.obj().type_name() == "LoopContext";
        default:
            return false;
    }
}
bool t_callable(Context&, const Value& v, CallArgs& a) {
    no_args(a, "callable");
    return v.is_callable() || v.is_undefined();  // jinja's Undefined defines __call__
}
bool t_sameas(Context&, const Value& v, CallArgs& a) {
    const Value& o = arg1(a, "other", "sameas");
    if (v.kind() != o.kind()) return false;
    switch (v.kind()) {
        case Value::Kind::None:
            return true;
        case Value::Kind::Bool:
            return v.b() == o.b();
        case Value::Kind::Int:
            return v.i() == o.i() && v.i() >= -5 && v.i() <= 256;
        case Value::Kind::Float:
            return false;
        case Value::Kind::Undefined:
            return v.undef() == o.undef();
        default:
            return v.identity() == o.identity();
    }
}
bool t_escaped(Context&, const Value& v, CallArgs& a) {
    no_args(a, "escaped");
    return v.is_safe();
}
bool t_in(Context&, const Value& v, CallArgs& a) {
    return contains(arg1(a, "seq", "in"), v);
}
bool t_eq(Context&, const Value& v, CallArgs& a) {
    return py_equal(v, arg1(a, "b", "eq"));
}
bool t_ne(Context&, const Value& v, CallArgs& a) {
    return !py_equal(v, arg1(a, "b", "ne"));
}
bool t_gt(Context&, const Value& v, CallArgs& a) {
    return py_compare(v, arg1(a, "b", "gt")) > 0;
}
bool t_ge(Context&, const Value& v, CallArgs& a) {
    return py_compare(v, arg1(a, "b", "ge")) >= 0;
}
bool t_lt(Context&, const Value& v, CallArgs& a) {
    return py_compare(v, arg1(a, "b", "lt")) < 0;
}
bool t_le(Context&, const Value& v, CallArgs& a) {
    return py_compare(v, arg1(a, "b", "le")) <= 0;
}

const TestTable& test_table() {
    static const TestTable table = {
        {"odd", t_odd},
        {"even", t_even},
        {"divisibleby", t_divisibleby},
        {"defined", t_defined},
        {"undefined", t_undefined},
        {"filter", t_filter},
        {"test", t_test},
        {"none", t_none},
        {"boolean", t_boolean},
        {"false", t_false},
        {"true", t_true},
        {"integer", t_integer},
        {"float", t_float},
        {"lower", t_lower},
        {"upper", t_upper},
        {"string", t_string},
        {"mapping", t_mapping},
        {"number", t_number},
        {"sequence", t_sequence},
        {"iterable", t_iterable},
        {"callable", t_callable},
        {"sameas", t_sameas},
        {"escaped", t_escaped},
        {"in", t_in},
        {"==", t_eq},
        {"eq", t_eq},
        {"equalto", t_eq},
        {"!=", t_ne},
        {"ne", t_ne},
        {">", t_gt},
        {"gt", t_gt},
        {"greaterthan", t_gt},
        {">=", t_ge},
        {"ge", t_ge},
        {"<", t_lt},
        {"lt", t_lt},
        {"lessthan", t_lt},
        {"<=", t_le},
        {"le", t_le},
    };
    return table;
}

}  // namespace

TestFn find_test(std::string_view name) {
    const auto& t = test_table();
    auto it = t.find(name);
    return it == t.end() ? nullptr : it->second;
}

bool apply_test(Context& ctx, std::string_view name, const Value& v, CallArgs& args) {
    TestFn fn = find_test(name);
    if (!fn) throw Error(ErrorKind::Runtime, "No test named '" + std::string(name) + "'.");
    return fn(ctx, v, args);
}

}  // namespace lokal::tmpl
