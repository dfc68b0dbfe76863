// Render-time machinery: scopes, the per-render context with its limits, call arguments,
// and the interpreter entry points shared by the filter/test/method implementations.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "template/ast.h"
#include "template/value.h"

namespace lokal::tmpl {

struct Limits {
    size_t max_output = size_t{64} << 20;  // bytes of rendered output, and of any one string
    size_t max_items = size_t{1} << 22;    // elements of any one list / dict
    uint64_t max_steps = 5'000'000;        // loop iterations + macro calls + filter items
    int max_depth = 1000;                  // nesting of statement/expression evaluation
};

class Scope {
  public:
    explicit Scope(std::shared_ptr<Scope> parent = nullptr) : parent_(std::move(parent)) {}
    ~Scope();
    const Value* find(std::string_view name) const;  // this scope, then parents
    void set(std::string_view name, Value v);        // in this scope
    const std::shared_ptr<Scope>& parent() const { return parent_; }
    void clear();

  private:
    std::shared_ptr<Scope> parent_;
    std::vector<std::pair<std::string, Value>> vars_;
};
using ScopePtr = std::shared_ptr<Scope>;

struct CallArgs {
    std::vector<Value> pos;
    std::vector<std::pair<std::string, Value>> kw;
    const Value* kwarg(std::string_view name) const;
};

// Binds CallArgs to a fixed parameter list like a Python signature without *args/**kwargs.
class ArgReader {
  public:
    ArgReader(const CallArgs& args, std::string_view fn, std::initializer_list<const char*> params,
              size_t skip_pos = 0);
    const Value* get(size_t i) const { return i < bound_.size() ? bound_[i] : nullptr; }
    bool has(size_t i) const { return get(i) != nullptr; }
    Value get_or(size_t i, Value def) const {
        const Value* v = get(i);
        return v ? *v : std::move(def);
    }

  private:
    std::vector<const Value*> bound_;
};

class Context {
  public:
    explicit Context(const Limits& limits) : limits(limits) {}
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    void step(uint64_t n = 1) {
        steps += n;
        if (steps > limits.max_steps) throw_limit("template exceeded the iteration limit");
    }
    void check_size(size_t bytes) const {
        if (bytes > limits.max_output) throw_limit("template output or string too large");
    }
    void check_items(size_t n) const {
        if (n > limits.max_items) throw_limit("list too large");
    }
    // Objects and namespaces that may take part in reference cycles; cleared at the end.
    void track(const std::shared_ptr<Object>& o) { objects_.push_back(o); }
    void track(const std::shared_ptr<Dict>& d) { namespaces_.push_back(d); }

    Limits limits;
    uint64_t steps = 0;
    int depth = 0;
    bool folding = false;  // evaluating constants at parse time (jinja's optimizer)

  private:
    std::vector<std::weak_ptr<Object>> objects_;
    std::vector<std::weak_ptr<Dict>> namespaces_;
};

struct DepthGuard {
    explicit DepthGuard(Context& c) : ctx(c) {
        if (++ctx.depth > ctx.limits.max_depth) {
            --ctx.depth;
            throw_limit("maximum recursion depth exceeded");
        }
    }
    ~DepthGuard() { --ctx.depth; }
    Context& ctx;
};

// A built-in function or bound method.
class NativeFunction : public Object {
  public:
    using Fn = std::function<Value(Context&, CallArgs&)>;
    NativeFunction(std::string name, Fn fn, std::string type = "builtin_function_or_method")
        : name_(std::move(name)), type_(std::move(type)), fn_(std::move(fn)) {}
    std::string type_name() const override { return type_; }
    std::string repr() const override { return "<built-in function " + name_ + ">"; }
    bool callable() const override { return true; }
    Value call(Context& ctx, CallArgs& args) override { return fn_(ctx, args); }

  private:
    std::string name_, type_;
    Fn fn_;
};

Value make_function(std::string name, NativeFunction::Fn fn);

// Binds the names to undefined in scope (see Predeclared in ast.h).
void predeclare(Scope& scope, const Predeclared& names);

// ---- interpreter (eval.cpp) -----------------------------------------------------------------

Value eval(const Expr& e, Context& ctx, const ScopePtr& scope);
void render_body(const Body& body, Context& ctx, const ScopePtr& scope, std::string& out);
Value call_value(const Value& callee, CallArgs& args, Context& ctx);

// ---- operators and attribute access (operators.cpp) -----------------------------------------

Value binary_op(BinOp op, const Value& a, const Value& b, Context& ctx);
Value negate(const Value& v, bool neg);
bool contains(const Value& container, const Value& item);
Value get_attr(const Value& obj, std::string_view name);  // obj.name (sandboxed)
Value get_item(const Value& obj, const Value& key);       // obj[key] (sandboxed)
Value slice_value(const Value& obj, const Value& start, const Value& stop, const Value& step);
Value concat_strings(const Value& a, const Value& b, Context& ctx);  // '+' on str/Markup

// ---- methods of str, dict and list (methods.cpp) -------------------------------------------

// A bound method, an unsafe-access marker (sandbox) or undefined when obj has no such method.
Value get_method(const Value& obj, std::string_view name, bool* found);

// ---- filters and tests by name (filters.cpp / tests.cpp) -------------------------------------

Value apply_filter(Context& ctx, std::string_view name, const Value& v, CallArgs& args);
bool apply_test(Context& ctx, std::string_view name, const Value& v, CallArgs& args);
// environment.getitem over a dotted path, like jinja's make_attrgetter ("a.0.b").
Value get_path(const Value& obj, const Value& attribute);

}  // namespace lokal::tmpl
