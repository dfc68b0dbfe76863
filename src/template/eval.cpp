#include "template/eval.h"

#include <algorithm>

#include "template/builtins.h"

namespace lokal::tmpl {

// ---- scopes, arguments, context --------------------------------------------------------------

Scope::~Scope() {
    clear();
}

void Scope::clear() {
    ReleaseScope rs;
    for (auto& kv : vars_) kv.second.release_into_trash();
    vars_.clear();
    defer_release(std::move(parent_));
}

const Value* Scope::find(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent_.get())
        for (const auto& kv : s->vars_)
            if (kv.first == name) return &kv.second;
    return nullptr;
}

void Scope::set(std::string_view name, Value v) {
    for (auto& kv : vars_) {
        if (kv.first == name) {
            kv.second = std::move(v);
            return;
        }
    }
    vars_.emplace_back(std::string(name), std::move(v));
}

const Value* CallArgs::kwarg(std::string_view name) const {
    for (const auto& kv : kw)
        if (kv.first == name) return &kv.second;
    return nullptr;
}

ArgReader::ArgReader(const CallArgs& args, std::string_view fn,
                     std::initializer_list<const char*> params, size_t skip_pos) {
    const size_t n = params.size();
    bound_.assign(n, nullptr);
    const size_t npos = args.pos.size() - std::min(skip_pos, args.pos.size());
    if (npos > n)
        throw_type(std::string(fn) + "() takes at most " + std::to_string(n) + " argument" +
                   (n == 1 ? "" : "s") + " (" + std::to_string(npos) + " given)");
    for (size_t i = 0; i < npos; ++i) bound_[i] = &args.pos[skip_pos + i];
    for (const auto& [k, v] : args.kw) {
        size_t idx = 0;
        for (const char* p : params) {
            if (k == p) break;
            ++idx;
        }
        if (idx == n)
            throw_type(std::string(fn) + "() got an unexpected keyword argument '" + k + "'");
        if (bound_[idx])
            throw_type(std::string(fn) + "() got multiple values for argument '" + k + "'");
        bound_[idx] = &v;
    }
}

Context::~Context() {
    ReleaseScope rs;
    std::vector<std::shared_ptr<Dict>> dicts;
    std::vector<std::shared_ptr<Object>> objs;
    for (auto& w : namespaces_)
        if (auto p = w.lock()) dicts.push_back(std::move(p));
    for (auto& w : objects_)
        if (auto p = w.lock()) objs.push_back(std::move(p));
    for (auto& d : dicts) d->clear();
    for (auto& o : objs) o->clear();
}

void predeclare(Scope& scope, const Predeclared& names) {
    for (const auto& n : names) scope.set(n, Value::undefined("'" + n + "' is undefined"));
}

Value make_function(std::string name, NativeFunction::Fn fn) {
    return Value::object(std::make_shared<NativeFunction>(std::move(name), std::move(fn)));
}

namespace {

enum class Flow { Normal, Break, Continue };

Flow exec_body(const Body& body, Context& ctx, const ScopePtr& scope, std::string& out);

void annotate(Error& e, const Node& n) {
    if (!e.has_location() && n.line > 0) e.set_location(n.line, n.col);
}

void append_out(std::string& out, std::string_view s, Context& ctx) {
    out.append(s);
    ctx.check_size(out.size());
}

// ---- assignment ----------------------------------------------------------------------------

void assign(const Target& t, const Value& v, const ScopePtr& scope) {
    switch (t.kind) {
        case Target::Kind::Name:
            scope->set(t.name, v);
            return;
        case Target::Kind::NsAttr: {
            const Value* ns = scope->find(t.name);
            if (!ns || !ns->is_namespace())
                throw Error(ErrorKind::Runtime, "cannot assign attribute on non-namespace object",
                            t.line, t.col);
            ns->dict().set(Value(t.attr), v);
            return;
        }
        case Target::Kind::Tuple: {
            std::vector<Value> items = iterate(v);
            if (items.size() < t.items.size())
                throw_type("not enough values to unpack (expected " +
                           std::to_string(t.items.size()) + ", got " +
                           std::to_string(items.size()) + ")");
            if (items.size() > t.items.size())
                throw_type("too many values to unpack (expected " + std::to_string(t.items.size()) +
                           ")");
            for (size_t i = 0; i < items.size(); ++i) assign(t.items[i], items[i], scope);
            return;
        }
    }
}

// ---- macros --------------------------------------------------------------------------------

class MacroObject : public Object {
  public:
    MacroObject(const MacroDef* def, ScopePtr closure) : def_(def), closure_(std::move(closure)) {}
    std::string type_name() const override { return "Macro"; }
    std::string repr() const override { return "<Macro '" + def_->name + "'>"; }
    bool callable() const override { return true; }
    void clear() override { defer_release(std::move(closure_)); }

    Value attr(std::string_view name) override {
        if (name == "name") return Value(def_->name);
        if (name == "arguments") {
            std::vector<Value> a(def_->params.begin(), def_->params.end());
            return Value::tuple(std::move(a));
        }
        if (name == "catch_kwargs") return Value(def_->uses_kwargs);
        if (name == "catch_varargs") return Value(def_->uses_varargs);
        if (name == "caller") return Value(def_->uses_caller);
        return Object::attr(name);
    }

    Value call(Context& ctx, CallArgs& args) override {
        ctx.step();
        const MacroDef& d = *def_;
        auto scope = std::make_shared<Scope>(closure_);
        predeclare(*scope, d.locals);
        const size_t n = d.params.size();
        const size_t npos = args.pos.size();
        if (npos > n && !d.uses_varargs)
            throw_type("macro '" + d.name + "' takes not more than " + std::to_string(n) +
                       " argument(s)");
        std::vector<bool> filled(n, false);
        for (size_t i = 0; i < std::min(npos, n); ++i) {
            scope->set(d.params[i], args.pos[i]);
            filled[i] = true;
        }
        auto kwargs = std::make_shared<Dict>();
        Value caller = Value::undefined("No caller defined");
        for (auto& [k, v] : args.kw) {
            auto it = std::find(d.params.begin(), d.params.end(), k);
            if (it != d.params.end()) {
                const size_t idx = static_cast<size_t>(it - d.params.begin());
                if (filled[idx])
                    throw_type("macro '" + d.name + "' got multiple values for argument '" + k +
                               "'");
                scope->set(k, v);
                filled[idx] = true;
            } else if (k == "caller" && d.uses_caller) {
                caller = v;
            } else if (d.uses_kwargs) {
                kwargs->set(Value(k), v);
            } else {
                throw_type("macro '" + d.name + "' takes no keyword argument '" + k + "'");
            }
        }
        const size_t first_default = n - d.defaults.size();
        for (size_t i = 0; i < n; ++i) {
            if (filled[i]) continue;
            if (i >= first_default)
                scope->set(d.params[i], eval(*d.defaults[i - first_default], ctx, scope));
            else
                scope->set(d.params[i],
                           Value::undefined("parameter '" + d.params[i] + "' was not provided"));
        }
        if (d.uses_varargs) {
            std::vector<Value> rest;
            for (size_t i = n; i < npos; ++i) rest.push_back(args.pos[i]);
            scope->set("varargs", Value::tuple(std::move(rest)));
        }
        if (d.uses_kwargs) scope->set("kwargs", Value::dict(kwargs));
        if (d.uses_caller) scope->set("caller", caller);
        std::string out;
        exec_body(d.body, ctx, scope, out);
        return Value(std::move(out));
    }

  private:
    const MacroDef* def_;
    ScopePtr closure_;
};

Value make_macro(const MacroDef* def, const ScopePtr& closure, Context& ctx) {
    auto m = std::make_shared<MacroObject>(def, closure);
    ctx.track(m);
    return Value::object(m);
}

// ---- loops ---------------------------------------------------------------------------------

void run_loop(const ForStmt& s, const Value& iterable, int depth0, Context& ctx,
              const ScopePtr& scope, std::string& out);

class LoopObject : public Object, public std::enable_shared_from_this<LoopObject> {
  public:
    LoopObject(std::vector<Value> items, int depth0, const ForStmt* stmt, ScopePtr scope)
        : items_(std::move(items)), depth0_(depth0), stmt_(stmt), scope_(std::move(scope)) {}

    std::string type_name() const override { return "LoopContext"; }
    std::string repr() const override {
        return "<LoopContext " + std::to_string(index0 + 1) + "/" + std::to_string(items_.size()) +
               ">";
    }
    bool callable() const override { return true; }
    void clear() override {
        ReleaseScope rs;
        for (auto& v : items_) v.release_into_trash();
        items_.clear();
        last_changed_.release_into_trash();
        defer_release(std::move(scope_));
    }

    Value call(Context& ctx, CallArgs& args) override {
        if (!stmt_->recursive)
            throw_type(
                "Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.");
        ArgReader r(args, "loop", {"iterable"});
        if (!r.has(0)) throw_type("loop() missing required argument 'iterable'");
        std::string out;
        run_loop(*stmt_, *r.get(0), depth0_ + 1, ctx, scope_, out);
        return Value(std::move(out));
    }

    Value attr(std::string_view name) override {
        const auto len = static_cast<int64_t>(items_.size());
        const auto i = static_cast<int64_t>(index0);
        if (name == "index") return Value(i + 1);
        if (name == "index0") return Value(i);
        if (name == "revindex") return Value(len - i);
        if (name == "revindex0") return Value(len - i - 1);
        if (name == "first") return Value(i == 0);
        if (name == "last") return Value(i == len - 1);
        if (name == "length") return Value(len);
        if (name == "depth") return Value(static_cast<int64_t>(depth0_ + 1));
        if (name == "depth0") return Value(static_cast<int64_t>(depth0_));
        if (name == "previtem")
            return i > 0 ? items_[index0 - 1] : Value::undefined("there is no previous item");
        if (name == "nextitem")
            return i + 1 < len ? items_[index0 + 1] : Value::undefined("there is no next item");
        if (name == "cycle") {
            auto self = shared_from_this();
            return make_function("cycle", [self](Context&, CallArgs& a) -> Value {
                if (a.pos.empty()) throw_type("no items for cycling given");
                return a.pos[self->index0 % a.pos.size()];
            });
        }
        if (name == "changed") {
            auto self = shared_from_this();
            return make_function("changed", [self](Context&, CallArgs& a) -> Value {
                Value cur = Value::list(a.pos);
                if (!self->has_last_ || !py_equal(cur, self->last_changed_)) {
                    self->last_changed_ = std::move(cur);
                    self->has_last_ = true;
                    return Value(true);
                }
                return Value(false);
            });
        }
        return Object::attr(name);
    }

    size_t index0 = 0;

  private:
    std::vector<Value> items_;
    int depth0_;
    const ForStmt* stmt_;
    ScopePtr scope_;
    Value last_changed_;
    bool has_last_ = false;
};

void run_loop(const ForStmt& s, const Value& iterable, int depth0, Context& ctx,
              const ScopePtr& scope, std::string& out) {
    std::vector<Value> items = iterate(iterable);
    if (s.filter) {
        std::vector<Value> kept;
        for (auto& item : items) {
            ctx.step();
            auto fs = std::make_shared<Scope>(scope);
            assign(s.target, item, fs);
            if (truthy(eval(*s.filter, ctx, fs))) kept.push_back(std::move(item));
        }
        items = std::move(kept);
    }
    if (items.empty()) {
        auto es = std::make_shared<Scope>(scope);
        predeclare(*es, s.otherwise_locals);
        exec_body(s.otherwise, ctx, es, out);
        return;
    }
    const size_t n = items.size();
    auto loop = std::make_shared<LoopObject>(items, depth0, &s, s.recursive ? scope : nullptr);
    if (s.recursive) ctx.track(loop);
    const Value loopv = Value::object(loop);
    for (size_t i = 0; i < n; ++i) {
        ctx.step();
        loop->index0 = i;
        auto it = std::make_shared<Scope>(scope);
        predeclare(*it, s.body_locals);
        assign(s.target, items[i], it);
        it->set("loop", loopv);
        if (exec_body(s.body, ctx, it, out) == Flow::Break) break;
    }
}

// ---- expressions ---------------------------------------------------------------------------

CallArgs eval_args(const CallArgsExpr& a, Context& ctx, const ScopePtr& scope) {
    CallArgs out;
    out.pos.reserve(a.pos.size());
    for (const auto& e : a.pos) out.pos.push_back(eval(*e, ctx, scope));
    if (a.dyn_pos) {
        for (auto& v : iterate(eval(*a.dyn_pos, ctx, scope))) out.pos.push_back(std::move(v));
    }
    for (const auto& [k, e] : a.kw) out.kw.emplace_back(k, eval(*e, ctx, scope));
    if (a.dyn_kw) {
        Value m = eval(*a.dyn_kw, ctx, scope);
        if (!m.is_mapping()) throw_type("argument after ** must be a mapping, not " + type_name(m));
        for (const auto& [k, v] : m.dict().entries()) {
            if (!k.is_string()) throw_type("keywords must be strings");
            if (out.kwarg(k.s()))
                throw_type("got multiple values for keyword argument '" + k.s() + "'");
            out.kw.emplace_back(k.s(), v);
        }
    }
    return out;
}

// Filters jinja's optimizer may evaluate: not the ones that need the render context.
FilterFn foldable_filter(const std::string& name) {
    static const char* const kContextFilters[] = {"map",        "select",     "reject",
                                                  "selectattr", "rejectattr", "random"};
    for (const char* n : kContextFilters)
        if (name == n) return nullptr;
    return find_filter(name);
}

bool compare(CmpOp op, const Value& a, const Value& b) {
    switch (op) {
        case CmpOp::Eq:
            return py_equal(a, b);
        case CmpOp::Ne:
            return !py_equal(a, b);
        case CmpOp::Lt:
            return py_compare(a, b) < 0;
        case CmpOp::Le:
            return py_compare(a, b) <= 0;
        case CmpOp::Gt:
            return py_compare(a, b) > 0;
        case CmpOp::Ge:
            return py_compare(a, b) >= 0;
        case CmpOp::In:
            return contains(b, a);
        case CmpOp::NotIn:
            return !contains(b, a);
    }
    return false;
}

Value eval_inner(const Expr& e, Context& ctx, const ScopePtr& scope) {
    switch (e.kind) {
        case ExprKind::Const:
            return static_cast<const ConstExpr&>(e).value;
        case ExprKind::Name: {
            const auto& n = static_cast<const NameExpr&>(e).name;
            if (ctx.folding) throw Error(ErrorKind::Runtime, "not a constant");
            if (const Value* v = scope->find(n)) return *v;
            return Value::undefined("'" + n + "' is undefined");
        }
        case ExprKind::Seq: {
            const auto& s = static_cast<const SeqExpr&>(e);
            std::vector<Value> items;
            items.reserve(s.items.size());
            for (const auto& i : s.items) items.push_back(eval(*i, ctx, scope));
            return s.tuple ? Value::tuple(std::move(items)) : Value::list(std::move(items));
        }
        case ExprKind::Dict: {
            auto d = std::make_shared<Dict>();
            for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
                Value key = eval(*k, ctx, scope);
                d->set(std::move(key), eval(*v, ctx, scope));
            }
            return Value::dict(std::move(d));
        }
        case ExprKind::Getattr: {
            const auto& g = static_cast<const GetattrExpr&>(e);
            return get_attr(eval(*g.obj, ctx, scope), g.attr);
        }
        case ExprKind::Getitem: {
            const auto& g = static_cast<const GetitemExpr&>(e);
            Value obj = eval(*g.obj, ctx, scope);
            if (g.index->kind == ExprKind::Slice) {
                const auto& s = static_cast<const SliceExpr&>(*g.index);
                auto part = [&](const ExprPtr& p) {
                    return p ? eval(*p, ctx, scope) : Value::none();
                };
                Value a = part(s.start), b = part(s.stop), c = part(s.step);
                if (obj.is_undefined()) undefined_error(obj);
                if (ctx.folding) {  // jinja folds constants through environment.getitem
                    try {
                        return slice_value(obj, a, b, c);
                    } catch (const Error& e) {
                        if (e.kind() != ErrorKind::Type) throw;
                        return make_undefined(obj, Value("slice"));
                    }
                }
                return slice_value(obj, a, b, c);
            }
            return get_item(obj, eval(*g.index, ctx, scope));
        }
        case ExprKind::Slice:
            return Value::undefined("slice outside a subscript");
        case ExprKind::Call: {
            const auto& c = static_cast<const CallExpr&>(e);
            if (ctx.folding) throw Error(ErrorKind::Runtime, "not a constant");
            Value callee = eval(*c.callee, ctx, scope);
            CallArgs args = eval_args(c.args, ctx, scope);
            return call_value(callee, args, ctx);
        }
        case ExprKind::Filter: {
            const auto& f = static_cast<const FilterExpr&>(e);
            const FilterFn fn = f.fn || !ctx.folding ? f.fn : foldable_filter(f.name);
            if (!fn) throw Error(ErrorKind::Runtime, "No filter named '" + f.name + "'.");
            CallArgs args = eval_args(f.args, ctx, scope);
            Value input = f.base ? eval(*f.base, ctx, scope) : Value();
            return fn(ctx, input, args);
        }
        case ExprKind::Test: {
            const auto& t = static_cast<const TestExpr&>(e);
            const TestFn fn = t.fn || !ctx.folding ? t.fn : find_test(t.name);
            if (!fn) throw Error(ErrorKind::Runtime, "No test named '" + t.name + "'.");
            CallArgs args = eval_args(t.args, ctx, scope);
            Value input = eval(*t.base, ctx, scope);
            return Value(fn(ctx, input, args));
        }
        case ExprKind::Unary: {
            const auto& u = static_cast<const UnaryExpr&>(e);
            Value v = eval(*u.operand, ctx, scope);
            if (u.op == UnaryOp::Not) return Value(!truthy(v));
            return negate(v, u.op == UnaryOp::Neg);
        }
        case ExprKind::Binary: {
            const auto& b = static_cast<const BinaryExpr&>(e);
            Value l = eval(*b.left, ctx, scope);
            if (b.op == BinOp::And) return truthy(l) ? eval(*b.right, ctx, scope) : l;
            if (b.op == BinOp::Or) return truthy(l) ? l : eval(*b.right, ctx, scope);
            return binary_op(b.op, l, eval(*b.right, ctx, scope), ctx);
        }
        case ExprKind::Compare: {
            const auto& c = static_cast<const CompareExpr&>(e);
            Value a = eval(*c.first, ctx, scope);
            for (const auto& [op, expr] : c.ops) {
                Value b = eval(*expr, ctx, scope);
                if (!compare(op, a, b)) return Value(false);
                a = std::move(b);
            }
            return Value(true);
        }
        case ExprKind::Concat: {
            std::string s;
            for (const auto& p : static_cast<const ConcatExpr&>(e).parts) {
                s += to_str(eval(*p, ctx, scope));
                ctx.check_size(s.size());
            }
            return Value(std::move(s));
        }
        case ExprKind::Cond: {
            const auto& c = static_cast<const CondExpr&>(e);
            if (truthy(eval(*c.test, ctx, scope))) return eval(*c.then, ctx, scope);
            if (c.otherwise) return eval(*c.otherwise, ctx, scope);
            return Value::undefined("the inline if-expression on line " + std::to_string(c.line) +
                                    " evaluated to false and no else section was defined.");
        }
    }
    return Value();
}

// ---- statements ----------------------------------------------------------------------------

std::string run_filters(const std::vector<std::unique_ptr<FilterExpr>>& filters, Value v,
                        Context& ctx, const ScopePtr& scope) {
    for (const auto& f : filters) {
        CallArgs args = eval_args(f->args, ctx, scope);
        if (!f->fn)
            throw Error(ErrorKind::Runtime, "No filter named '" + f->name + "'.", f->line, f->col);
        v = f->fn(ctx, v, args);
    }
    return to_str(v);
}

Flow exec_stmt(const Stmt& st, Context& ctx, const ScopePtr& scope, std::string& out) {
    switch (st.kind) {
        case StmtKind::Text:
            append_out(out, static_cast<const TextStmt&>(st).text, ctx);
            break;
        case StmtKind::Print: {
            Value v = eval(*static_cast<const PrintStmt&>(st).expr, ctx, scope);
            if (v.is_string())
                append_out(out, v.s(), ctx);
            else
                append_out(out, to_str(v), ctx);
            break;
        }
        case StmtKind::If: {
            const auto& s = static_cast<const IfStmt&>(st);
            for (const auto& [test, body] : s.branches)
                if (truthy(eval(*test, ctx, scope))) return exec_body(body, ctx, scope, out);
            return exec_body(s.otherwise, ctx, scope, out);
        }
        case StmtKind::For: {
            const auto& s = static_cast<const ForStmt&>(st);
            run_loop(s, eval(*s.iter, ctx, scope), 0, ctx, scope, out);
            break;
        }
        case StmtKind::Set: {
            const auto& s = static_cast<const SetStmt&>(st);
            assign(s.target, eval(*s.value, ctx, scope), scope);
            break;
        }
        case StmtKind::SetBlock: {
            const auto& s = static_cast<const SetBlockStmt&>(st);
            std::string buf;
            auto inner = std::make_shared<Scope>(scope);
            predeclare(*inner, s.locals);
            exec_body(s.body, ctx, inner, buf);
            assign(s.target, Value(run_filters(s.filters, Value(std::move(buf)), ctx, scope)),
                   scope);
            break;
        }
        case StmtKind::Macro: {
            const auto& def = *static_cast<const MacroStmt&>(st).def;
            scope->set(def.name, make_macro(&def, scope, ctx));
            break;
        }
        case StmtKind::CallBlock: {
            const auto& s = static_cast<const CallBlockStmt&>(st);
            Value callee = eval(*s.call->callee, ctx, scope);
            CallArgs args = eval_args(s.call->args, ctx, scope);
            args.kw.emplace_back("caller", make_macro(s.caller.get(), scope, ctx));
            Value r = call_value(callee, args, ctx);
            append_out(out, to_str(r), ctx);
            break;
        }
        case StmtKind::FilterBlock: {
            const auto& s = static_cast<const FilterBlockStmt&>(st);
            std::string buf;
            auto inner = std::make_shared<Scope>(scope);
            predeclare(*inner, s.locals);
            exec_body(s.body, ctx, inner, buf);
            append_out(out, run_filters(s.filters, Value(std::move(buf)), ctx, scope), ctx);
            break;
        }
        case StmtKind::With: {
            const auto& s = static_cast<const WithStmt&>(st);
            auto inner = std::make_shared<Scope>(scope);
            predeclare(*inner, s.locals);
            for (size_t i = 0; i < s.targets.size(); ++i)
                assign(s.targets[i], eval(*s.values[i], ctx, scope), inner);
            return exec_body(s.body, ctx, inner, out);
        }
        case StmtKind::Break:
            return Flow::Break;
        case StmtKind::Continue:
            return Flow::Continue;
        case StmtKind::Block: {
            const auto& b = static_cast<const BlockStmt&>(st);
            auto inner = std::make_shared<Scope>(scope);
            predeclare(*inner, b.locals);
            exec_body(b.body, ctx, inner, out);
            break;
        }
        case StmtKind::Unsupported:
            throw Error(ErrorKind::Runtime,
                        "'" + static_cast<const UnsupportedStmt&>(st).what +
                            "' is not supported: templates are rendered standalone");
    }
    return Flow::Normal;
}

Flow exec_body(const Body& body, Context& ctx, const ScopePtr& scope, std::string& out) {
    DepthGuard guard(ctx);
    for (const auto& st : body) {
        Flow f;
        try {
            f = exec_stmt(*st, ctx, scope, out);
        } catch (Error& e) {
            annotate(e, *st);
            throw;
        }
        if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
}

}  // namespace

Value eval(const Expr& e, Context& ctx, const ScopePtr& scope) {
    DepthGuard guard(ctx);
    try {
        return eval_inner(e, ctx, scope);
    } catch (Error& err) {
        annotate(err, e);
        throw;
    }
}

void render_body(const Body& body, Context& ctx, const ScopePtr& scope, std::string& out) {
    exec_body(body, ctx, scope, out);
}

Value call_value(const Value& callee, CallArgs& args, Context& ctx) {
    if (callee.is_undefined()) undefined_error(callee);
    if (callee.is_callable()) return callee.obj().call(ctx, args);
    throw_type("'" + type_name(callee) + "' object is not callable");
}

}  // namespace lokal::tmpl
