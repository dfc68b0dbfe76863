// The dynamic value of the template engine, modelled on the Python objects Jinja2 sees:
// undefined, None, bool, int, float, str (optionally Markup), list/tuple (and read-only
// views), dict (insertion ordered, any hashable key; also jinja's namespace), native
// objects (functions, macros, loop contexts) and one-shot generators.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "template/error.h"

namespace lokal::tmpl {

class Context;
struct CallArgs;
class Value;

enum class ListKind : uint8_t { List, Tuple, Keys, Values, Items, Range };

struct Array;
class Dict;
class Object;
struct GenState;
struct UndefInfo;

class Value {
  public:
    enum class Kind : uint8_t {
        Undefined,
        None,
        Bool,
        Int,
        Float,
        String,
        List,
        Dict,
        Object,
        Generator
    };

    Value() : i_(0) {}
    Value(std::nullptr_t) : kind_(Kind::None), i_(0) {}
    Value(bool b) : kind_(Kind::Bool), b_(b) {}
    Value(int v) : kind_(Kind::Int), i_(v) {}
    Value(int64_t v) : kind_(Kind::Int), i_(v) {}
    Value(double v) : kind_(Kind::Float), f_(v) {}
    Value(std::string s);
    Value(std::string_view s) : Value(std::string(s)) {}
    Value(const char* s) : Value(std::string(s)) {}
    Value(const Value&) = default;
    Value(Value&&) noexcept = default;
    Value& operator=(const Value&) = default;
    Value& operator=(Value&&) noexcept = default;

    static Value none() { return Value(nullptr); }
    static Value undefined(std::string message = {});
    static Value unsafe(std::string message);  // sandbox-blocked attribute
    static Value markup(std::string s);
    static Value list(std::vector<Value> items, ListKind kind = ListKind::List);
    static Value tuple(std::vector<Value> items) { return list(std::move(items), ListKind::Tuple); }
    static Value range(int64_t start, int64_t stop, int64_t step);
    static Value dict(std::shared_ptr<Dict> d);
    static Value object(std::shared_ptr<Object> o);
    static Value generator(std::vector<Value> items, std::string name);

    Kind kind() const { return kind_; }
    bool is_undefined() const { return kind_ == Kind::Undefined; }
    bool is_none() const { return kind_ == Kind::None; }
    bool is_bool() const { return kind_ == Kind::Bool; }
    bool is_int() const { return kind_ == Kind::Int; }
    bool is_float() const { return kind_ == Kind::Float; }
    bool is_integral() const { return kind_ == Kind::Int || kind_ == Kind::Bool; }
    bool is_number() const { return is_integral() || kind_ == Kind::Float; }
    bool is_string() const { return kind_ == Kind::String; }
    bool is_list() const { return kind_ == Kind::List; }
    bool is_dict() const { return kind_ == Kind::Dict; }
    bool is_mapping() const;
    bool is_namespace() const;
    bool is_object() const { return kind_ == Kind::Object; }
    bool is_generator() const { return kind_ == Kind::Generator; }
    bool is_callable() const;
    bool is_safe() const { return safe_; }  // a Markup string

    bool b() const { return b_; }
    int64_t i() const { return kind_ == Kind::Bool ? (b_ ? 1 : 0) : i_; }
    double f() const { return kind_ == Kind::Float ? f_ : static_cast<double>(i()); }
    const std::string& s() const { return *static_cast<const std::string*>(p_.get()); }
    const Array& arr() const { return *static_cast<const Array*>(p_.get()); }
    ListKind list_kind() const;
    Dict& dict() const { return *static_cast<Dict*>(p_.get()); }
    Object& obj() const { return *static_cast<Object*>(p_.get()); }
    GenState& gen() const { return *static_cast<GenState*>(p_.get()); }
    const UndefInfo* undef() const { return static_cast<const UndefInfo*>(p_.get()); }
    const void* identity() const { return p_.get(); }
    std::shared_ptr<Object> obj_ptr() const { return std::static_pointer_cast<Object>(p_); }
    std::shared_ptr<Dict> dict_ptr() const { return std::static_pointer_cast<Dict>(p_); }

    // Moves a container payload to the deferred-release list (see ReleaseScope).
    void release_into_trash();

  private:
    Kind kind_ = Kind::Undefined;
    bool safe_ = false;
    union {
        bool b_;
        int64_t i_;
        double f_;
    };
    std::shared_ptr<void> p_;
};

struct Array {
    std::vector<Value> items;
    ListKind kind = ListKind::List;
    int64_t start = 0, stop = 0, step = 1;                   // the arguments of a range
    std::shared_ptr<const std::vector<std::string>> fields;  // namedtuple field names
    ~Array();
};

class Dict {
  public:
    ~Dict();
    const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }
    size_t size() const { return entries_.size(); }
    const Value* find(std::string_view key) const;
    const Value* find(const Value& key) const;  // Python dict lookup: 1 == 1.0 == True
    void set(Value key, Value value);           // throws Type for unhashable keys
    void clear();

    bool is_namespace = false;

  private:
    std::vector<std::pair<Value, Value>> entries_;
    std::unordered_map<std::string_view, size_t> index_;  // string keys, built when large
    bool has_other_keys_ = false;
};

// Functions, macros, loop contexts, cyclers: anything with behaviour.
class Object {
  public:
    virtual ~Object() = default;
    virtual std::string type_name() const = 0;  // Python class name, for messages
    virtual std::string repr() const;
    virtual bool callable() const { return false; }
    virtual Value call(Context& ctx, CallArgs& args);
    virtual Value attr(std::string_view name);  // undefined when missing
    virtual void clear() {}                     // breaks reference cycles at render end
};

struct GenState {
    std::vector<Value> items;
    size_t pos = 0;
    std::string name;   // e.g. "generator object do_map", for repr
    std::string error;  // raised (TypeError) when iterated: jinja filters fail lazily
    ~GenState();
};

struct UndefInfo {
    std::string message;  // empty: plain jinja Undefined without a hint
    bool security = false;
};

inline ListKind Value::list_kind() const {
    return arr().kind;
}
inline bool Value::is_mapping() const {
    return kind_ == Kind::Dict && !dict().is_namespace;
}
inline bool Value::is_namespace() const {
    return kind_ == Kind::Dict && dict().is_namespace;
}
inline bool Value::is_callable() const {
    return kind_ == Kind::Object && obj().callable();
}

// Containers release their children through a thread-local list drained by the outermost
// ReleaseScope, so destroying a deeply nested value never recurses deeply.
struct ReleaseScope {
    ReleaseScope();
    ~ReleaseScope();
};
void defer_release(std::shared_ptr<void>&& p);

// ---- Python semantics ------------------------------------------------------------------

constexpr int kMaxValueDepth = 512;  // nesting depth for repr, ==, tojson

bool truthy(const Value& v);
std::string to_str(const Value& v);  // str(v); undefined -> ""
std::string repr(const Value& v);    // repr(v)
std::string type_name(const Value& v);
std::string object_type_repr(const Value& v);  // "dict object", "None", ...
bool py_equal(const Value& a, const Value& b);
int py_compare(const Value& a, const Value& b);  // <0, 0, >0; throws Type if unorderable
std::vector<Value> iterate(const Value& v);      // throws Type if not iterable
int64_t py_len(const Value& v);                  // throws Type if no len()
bool is_hashable(const Value& v);

std::string format_float(double d);  // Python float repr
std::string quote_str(std::string_view s);
std::string html_escape(std::string_view s);
[[noreturn]] void undefined_error(const Value& undef);
std::string undefined_message(const Value& undef);
Value make_undefined(const Value& obj, const Value& name);  // "'X object' has no attribute"

// ---- JSON ----------------------------------------------------------------------------------

template <class Json>
Value from_json(const Json& j, int depth = 0) {
    if (depth > kMaxValueDepth) throw_limit("JSON input nested too deeply");
    switch (j.type()) {
        case nlohmann::json::value_t::null:
        case nlohmann::json::value_t::discarded:
            return Value::none();
        case nlohmann::json::value_t::boolean:
            return Value(j.template get<bool>());
        case nlohmann::json::value_t::number_integer:
            return Value(j.template get<int64_t>());
        case nlohmann::json::value_t::number_unsigned: {
            auto u = j.template get<uint64_t>();
            if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
            return Value(static_cast<int64_t>(u));
        }
        case nlohmann::json::value_t::number_float:
            return Value(j.template get<double>());
        case nlohmann::json::value_t::string:
            return Value(j.template get_ref<const std::string&>());
        case nlohmann::json::value_t::array: {
            std::vector<Value> items;
            items.reserve(j.size());
            for (const auto& e : j) items.push_back(from_json(e, depth + 1));
            return Value::list(std::move(items));
        }
        case nlohmann::json::value_t::object: {
            auto d = std::make_shared<Dict>();
            for (auto it = j.begin(); it != j.end(); ++it)
                d->set(Value(it.key()), from_json(it.value(), depth + 1));
            return Value::dict(std::move(d));
        }
        case nlohmann::json::value_t::binary:
            break;
    }
    return Value::none();
}

nlohmann::ordered_json to_json(const Value& v);  // throws Type for non-JSON values

}  // namespace lokal::tmpl
