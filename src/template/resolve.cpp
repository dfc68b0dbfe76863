// Post-parse pass, doing what jinja's optimizer and code generator do at compile time:
//  - constant folding: an expression made only of constants (Node.as_const) is evaluated
//    once; its value replaces it when it has a "safe repr" (always for a whole {{ }} output).
//    This is observable: folded slices go through environment.getitem (errors become
//    undefined) and folded-away operands are never checked for unknown filters or tests;
//  - binding filter and test names (an unknown name is an error unless it sits inside an if
//    or inline-if, where jinja defers the failure to the moment it is used);
//  - recording which macros use caller, varargs and kwargs.
#include <algorithm>

#include "template/ast.h"
#include "template/builtins.h"
#include "template/eval.h"

namespace lokal::tmpl {

namespace {

// jinja/idtracking.py in short: the first reference to a name in a frame decides how the frame
// binds it. An assignment first binds it to the variable of an enclosing frame that refers to
// the same name, or else to undefined until assigned (Predeclared); a read first, or an
// assignment inside an if, means "look it up in the enclosing frames and the context".
class FrameScan {
  public:
    struct Result {
        std::vector<std::string> stored_first;  // candidates for Predeclared
        std::vector<std::string> refs;          // every name the frame itself refers to
    };

    static Result scan(const Body& body, const std::vector<std::string>& params) {
        FrameScan f;
        for (const auto& p : params) f.see(p, false);
        f.stmts(body, false);
        Result r;
        for (const auto& [name, stored] : f.first_) {
            r.refs.push_back(name);
            if (stored) r.stored_first.push_back(name);
        }
        return r;
    }

  private:
    void see(const std::string& n, bool store) {
        for (const auto& kv : first_)
            if (kv.first == n) return;
        first_.emplace_back(n, store);
    }

    void loads(const ExprPtr& e) {
        if (e) loads(*e);
    }
    void loads(const CallArgsExpr& a) {
        for (const auto& x : a.pos) loads(x);
        for (const auto& kv : a.kw) loads(kv.second);
        loads(a.dyn_pos);
        loads(a.dyn_kw);
    }
    void loads(const Expr& e) {
        switch (e.kind) {
            case ExprKind::Name:
                see(static_cast<const NameExpr&>(e).name, false);
                break;
            case ExprKind::Seq:
                for (const auto& i : static_cast<const SeqExpr&>(e).items) loads(i);
                break;
            case ExprKind::Dict:
                for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
                    loads(k);
                    loads(v);
                }
                break;
            case ExprKind::Getattr:
                loads(static_cast<const GetattrExpr&>(e).obj);
                break;
            case ExprKind::Getitem:
                loads(static_cast<const GetitemExpr&>(e).obj);
                loads(static_cast<const GetitemExpr&>(e).index);
                break;
            case ExprKind::Slice: {
                const auto& sl = static_cast<const SliceExpr&>(e);
                loads(sl.start);
                loads(sl.stop);
                loads(sl.step);
                break;
            }
            case ExprKind::Call:
                loads(static_cast<const CallExpr&>(e).callee);
                loads(static_cast<const CallExpr&>(e).args);
                break;
            case ExprKind::Filter:
                loads(static_cast<const FilterExpr&>(e).base);
                loads(static_cast<const FilterExpr&>(e).args);
                break;
            case ExprKind::Test:
                loads(static_cast<const TestExpr&>(e).base);
                loads(static_cast<const TestExpr&>(e).args);
                break;
            case ExprKind::Unary:
                loads(static_cast<const UnaryExpr&>(e).operand);
                break;
            case ExprKind::Binary:
                loads(static_cast<const BinaryExpr&>(e).left);
                loads(static_cast<const BinaryExpr&>(e).right);
                break;
            case ExprKind::Compare:
                loads(static_cast<const CompareExpr&>(e).first);
                for (const auto& op : static_cast<const CompareExpr&>(e).ops) loads(op.second);
                break;
            case ExprKind::Concat:
                for (const auto& p : static_cast<const ConcatExpr&>(e).parts) loads(p);
                break;
            case ExprKind::Cond: {
                const auto& c = static_cast<const CondExpr&>(e);
                loads(c.test);
                loads(c.then);
                loads(c.otherwise);
                break;
            }
            case ExprKind::Const:
                break;
        }
    }

    void target(const Target& t, bool conditional) {
        switch (t.kind) {
            case Target::Kind::Name:
                see(t.name, !conditional);
                break;
            case Target::Kind::NsAttr:
                see(t.name, false);
                break;
            case Target::Kind::Tuple:
                for (const auto& i : t.items) target(i, conditional);
                break;
        }
    }

    void stmts(const Body& body, bool conditional) {
        for (const auto& st : body) {
            switch (st->kind) {
                case StmtKind::Print:
                    loads(static_cast<const PrintStmt&>(*st).expr);
                    break;
                case StmtKind::If:
                    for (const auto& [test, b] : static_cast<const IfStmt&>(*st).branches) {
                        loads(test);
                        stmts(b, true);
                    }
                    stmts(static_cast<const IfStmt&>(*st).otherwise, true);
                    break;
                case StmtKind::For:
                    loads(static_cast<const ForStmt&>(*st).iter);
                    break;
                case StmtKind::Set: {
                    const auto& s = static_cast<const SetStmt&>(*st);
                    loads(s.value);
                    target(s.target, conditional);
                    break;
                }
                case StmtKind::SetBlock:
                    target(static_cast<const SetBlockStmt&>(*st).target, conditional);
                    break;
                case StmtKind::Macro:
                    see(static_cast<const MacroStmt&>(*st).def->name, !conditional);
                    break;
                case StmtKind::CallBlock: {
                    const auto& c = static_cast<const CallBlockStmt&>(*st);
                    loads(c.call->callee);
                    loads(c.call->args);
                    break;
                }
                case StmtKind::FilterBlock:
                    for (const auto& f : static_cast<const FilterBlockStmt&>(*st).filters)
                        loads(f->args);
                    break;
                case StmtKind::With:
                    for (const auto& v : static_cast<const WithStmt&>(*st).values) loads(v);
                    break;
                default:
                    break;
            }
        }
    }

    std::vector<std::pair<std::string, bool>> first_;  // name, assigned before any read
};

static void target_names(const Target& t, std::vector<std::string>& out) {
    if (t.kind == Target::Kind::Name) out.push_back(t.name);
    for (const auto& i : t.items) target_names(i, out);
}

class Resolver {
  public:
    // Enters a frame: computes its Predeclared names and makes its references visible to the
    // frames nested in it while `visit` runs.
    template <class F>
    void frame(const Body& b, const std::vector<std::string>& params, Predeclared& locals,
               F&& visit) {
        FrameScan::Result r = FrameScan::scan(b, params);
        locals.clear();
        for (const auto& n : r.stored_first) {
            bool outer = false;
            for (const auto& refs : frames_)
                outer = outer || std::find(refs.begin(), refs.end(), n) != refs.end();
            if (!outer) locals.push_back(n);
        }
        frames_.push_back(std::move(r.refs));
        visit();
        frames_.pop_back();
    }

    void body(Body& b, bool soft) {
        for (auto& s : b) stmt(*s, soft);
    }

  private:
    // ---- constant folding ------------------------------------------------------------------

    static constexpr size_t kMaxFoldedBytes = 64 * 1024;

    // Whether v fits in budget bytes (roughly).
    static bool small(const Value& v, size_t& budget) {
        const size_t cost = v.is_string() ? v.s().size() + 16 : 16;
        if (cost > budget) return false;
        budget -= cost;
        if (v.is_list()) {
            for (const auto& i : v.arr().items)
                if (!small(i, budget)) return false;
        } else if (v.is_dict()) {
            for (const auto& [k, x] : v.dict().entries())
                if (!small(k, budget) || !small(x, budget)) return false;
        }
        return true;
    }

    // compiler.has_safe_repr: values jinja can embed as constants in generated code.
    static bool safe_repr(const Value& v, int depth = 0) {
        if (depth > 64) return false;
        switch (v.kind()) {
            case Value::Kind::None:
            case Value::Kind::Bool:
            case Value::Kind::Int:
            case Value::Kind::Float:
            case Value::Kind::String:
                return true;
            case Value::Kind::List: {
                const ListKind k = v.list_kind();
                if (k == ListKind::Range) return true;
                if (k != ListKind::List && k != ListKind::Tuple) return false;
                for (const auto& i : v.arr().items)
                    if (!safe_repr(i, depth + 1)) return false;
                return true;
            }
            case Value::Kind::Dict:
                if (v.is_namespace()) return false;
                for (const auto& [k, x] : v.dict().entries())
                    if (!safe_repr(k, depth + 1) || !safe_repr(x, depth + 1)) return false;
                return true;
            default:
                return false;
        }
    }

    // Replaces e by its value when jinja's optimizer would (Node.as_const succeeds, lazily:
    // `true or x` is constant); output: e is a whole {{ }} expression.
    static bool fold(ExprPtr& e, bool output) {
        if (e->kind == ExprKind::Const || e->kind == ExprKind::Name) return false;
        Limits limits;
        limits.max_output = size_t{1} << 20;
        limits.max_items = size_t{1} << 16;
        limits.max_steps = 100000;
        Context ctx(limits);
        ctx.folding = true;
        Value v;
        try {
            v = eval(*e, ctx, std::make_shared<Scope>());
        } catch (const Error&) {
            return false;  // left for run time, which raises the same error
        }
        if (output)
            v = Value(to_str(v));
        else if (!safe_repr(v))
            return false;
        size_t budget = kMaxFoldedBytes;
        if (!small(v, budget)) return false;  // keep big values out of the syntax tree
        auto c = std::make_unique<ConstExpr>();
        c->line = e->line;
        c->col = e->col;
        c->value = std::move(v);
        e = std::move(c);
        return true;
    }

    // ---- name binding ----------------------------------------------------------------------

    void args(CallArgsExpr& a, bool soft) {
        for (auto& e : a.pos) expr(e, soft);
        for (auto& [k, e] : a.kw) expr(e, soft);
        expr(a.dyn_pos, soft);
        expr(a.dyn_kw, soft);
    }

    void filter(FilterExpr& f, bool soft) {
        expr(f.base, soft);
        args(f.args, soft);
        f.fn = find_filter(f.name);
        if (!f.fn && !soft)
            throw Error(ErrorKind::Syntax, "No filter named '" + f.name + "'.", f.line, f.col);
    }

    void expr(ExprPtr& ep, bool soft, bool output = false) {
        if (!ep || fold(ep, output)) return;
        Expr* e = ep.get();
        switch (e->kind) {
            case ExprKind::Name: {
                const std::string& n = static_cast<NameExpr*>(e)->name;
                for (MacroDef* m : macros_) {
                    if (n == "caller") m->uses_caller = true;
                    if (n == "varargs") m->uses_varargs = true;
                    if (n == "kwargs") m->uses_kwargs = true;
                }
                break;
            }
            case ExprKind::Seq:
                for (auto& c : static_cast<SeqExpr*>(e)->items) expr(c, soft);
                break;
            case ExprKind::Dict:
                for (auto& [k, v] : static_cast<DictExpr*>(e)->items) {
                    expr(k, soft);
                    expr(v, soft);
                }
                break;
            case ExprKind::Getattr:
                expr(static_cast<GetattrExpr*>(e)->obj, soft);
                break;
            case ExprKind::Getitem:
                expr(static_cast<GetitemExpr*>(e)->obj, soft);
                expr(static_cast<GetitemExpr*>(e)->index, soft);
                break;
            case ExprKind::Slice: {
                auto* s = static_cast<SliceExpr*>(e);
                expr(s->start, soft);
                expr(s->stop, soft);
                expr(s->step, soft);
                break;
            }
            case ExprKind::Call:
                expr(static_cast<CallExpr*>(e)->callee, soft);
                args(static_cast<CallExpr*>(e)->args, soft);
                break;
            case ExprKind::Filter:
                filter(*static_cast<FilterExpr*>(e), soft);
                break;
            case ExprKind::Test: {
                auto* t = static_cast<TestExpr*>(e);
                expr(t->base, soft);
                args(t->args, soft);
                t->fn = find_test(t->name);
                if (!t->fn && !soft)
                    throw Error(ErrorKind::Syntax, "No test named '" + t->name + "'.", t->line,
                                t->col);
                break;
            }
            case ExprKind::Unary:
                expr(static_cast<UnaryExpr*>(e)->operand, soft);
                break;
            case ExprKind::Binary:
                expr(static_cast<BinaryExpr*>(e)->left, soft);
                expr(static_cast<BinaryExpr*>(e)->right, soft);
                break;
            case ExprKind::Compare:
                expr(static_cast<CompareExpr*>(e)->first, soft);
                for (auto& [op, c] : static_cast<CompareExpr*>(e)->ops) expr(c, soft);
                break;
            case ExprKind::Concat:
                for (auto& c : static_cast<ConcatExpr*>(e)->parts) expr(c, soft);
                break;
            case ExprKind::Cond: {
                auto* c = static_cast<CondExpr*>(e);
                expr(c->test, true);
                expr(c->then, true);
                expr(c->otherwise, true);
                break;
            }
            case ExprKind::Const:
                break;
        }
    }

    void macro(MacroDef& def) {
        std::vector<std::string> params = def.params;
        for (const char* n : {"varargs", "kwargs", "caller"}) params.emplace_back(n);
        for (auto& d : def.defaults) expr(d, false);
        macros_.push_back(&def);
        frame(def.body, params, def.locals, [&] { body(def.body, false); });
        macros_.pop_back();
    }

    void stmt(Stmt& s, bool soft) {
        switch (s.kind) {
            case StmtKind::Print:
                expr(static_cast<PrintStmt&>(s).expr, soft, true);
                break;
            case StmtKind::If: {
                auto& i = static_cast<IfStmt&>(s);
                for (auto& [test, b] : i.branches) {
                    expr(test, true);
                    body(b, true);
                }
                body(i.otherwise, true);
                break;
            }
            case StmtKind::For: {
                auto& f = static_cast<ForStmt&>(s);
                std::vector<std::string> params{"loop"};
                target_names(f.target, params);
                expr(f.iter, soft);
                frame(f.body, params, f.body_locals, [&] {
                    expr(f.filter, false);
                    body(f.body, false);
                });
                frame(f.otherwise, {}, f.otherwise_locals, [&] { body(f.otherwise, false); });
                break;
            }
            case StmtKind::Set:
                expr(static_cast<SetStmt&>(s).value, soft);
                break;
            case StmtKind::SetBlock: {
                auto& b = static_cast<SetBlockStmt&>(s);
                for (auto& f : b.filters) filter(*f, soft);
                frame(b.body, {}, b.locals, [&] { body(b.body, false); });
                break;
            }
            case StmtKind::Macro:
                macro(*static_cast<MacroStmt&>(s).def);
                break;
            case StmtKind::CallBlock: {
                auto& c = static_cast<CallBlockStmt&>(s);
                expr(c.call->callee, soft);
                args(c.call->args, soft);
                macro(*c.caller);
                break;
            }
            case StmtKind::FilterBlock: {
                auto& b = static_cast<FilterBlockStmt&>(s);
                for (auto& f : b.filters) filter(*f, soft);
                frame(b.body, {}, b.locals, [&] { body(b.body, false); });
                break;
            }
            case StmtKind::With: {
                auto& w = static_cast<WithStmt&>(s);
                std::vector<std::string> params;
                for (const auto& t : w.targets) target_names(t, params);
                for (auto& v : w.values) expr(v, soft);
                frame(w.body, params, w.locals, [&] { body(w.body, false); });
                break;
            }
            case StmtKind::Block: {
                auto& b = static_cast<BlockStmt&>(s);
                frame(b.body, {}, b.locals, [&] { body(b.body, false); });
                break;
            }
            default:
                break;
        }
    }

    std::vector<MacroDef*> macros_;
    std::vector<std::vector<std::string>> frames_;  // references of the enclosing frames
};

}  // namespace

void resolve_program(Program& program) {
    Resolver r;
    r.frame(program.body, {}, program.locals, [&] { r.body(program.body, false); });
}

}  // namespace lokal::tmpl
