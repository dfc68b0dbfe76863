// Recursive-descent parser following jinja2/parser.py (break/continue outside loops are
// rejected here; filter and test names are checked by resolve.cpp).
#include <algorithm>
#include <functional>

#include "template/ast.h"
#include "template/lexer.h"

namespace lokal::tmpl {

namespace {

constexpr int kMaxNesting = 100;    // statement and parenthesis nesting
constexpr int kMaxExprDepth = 256;  // height of an expression tree (filter chains, a+b+c...)

using EndRules = std::vector<std::string>;

class Parser {
  public:
    explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

    std::unique_ptr<Program> parse() {
        auto prog = std::make_unique<Program>();
        prog->body = subparse({});
        return prog;
    }

  private:
    // ---- token stream --------------------------------------------------------------------
    const Token& cur() const { return t_[i_]; }
    const Token& look() const { return t_[std::min(i_ + 1, t_.size() - 1)]; }
    void next() {
        if (i_ + 1 < t_.size()) ++i_;
    }
    bool is_name(std::string_view s) const { return cur().type == Tok::Name && cur().text == s; }
    bool is_op(Op op) const { return cur().type == Tok::Op && cur().op == op; }
    bool skip_name(std::string_view s) {
        if (!is_name(s)) return false;
        next();
        return true;
    }
    bool skip_op(Op op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }

    [[noreturn]] void fail(const std::string& msg) const { fail_at(msg, cur()); }
    [[noreturn]] static void fail_at(const std::string& msg, const Token& t) {
        throw Error(ErrorKind::Syntax, msg, t.line, t.col);
    }
    [[noreturn]] void fail_expected(const std::string& what) const {
        if (cur().type == Tok::Eof) fail("unexpected end of template, expected '" + what + "'.");
        fail("expected token '" + what + "', got '" + describe(cur()) + "'");
    }
    void expect_op(Op op) {
        if (!skip_op(op)) fail_expected(op_spelling(op));
    }
    void expect(Tok type, const char* what) {
        if (cur().type != type) fail_expected(what);
        next();
    }
    std::string expect_name() {
        if (cur().type != Tok::Name) fail_expected("name");
        std::string s = cur().text;
        next();
        return s;
    }
    void expect_keyword(std::string_view kw) {
        if (!skip_name(kw)) fail_expected(std::string(kw));
    }

    struct Nest {
        explicit Nest(Parser* p) : p_(p) {
            if (++p_->nesting_ > kMaxNesting) p_->fail("template nested too deeply");
        }
        ~Nest() { --p_->nesting_; }
        Parser* p_;
    };

    template <class T>
    std::unique_ptr<T> node(const Token& at) {
        auto n = std::make_unique<T>();
        n->line = at.line;
        n->col = at.col;
        return n;
    }

    // Records the height of a finished expression node and enforces the limit.
    template <class T>
    std::unique_ptr<T> done(std::unique_ptr<T> e) {
        int d = 0;
        auto see = [&](const ExprPtr& c) {
            if (c) d = std::max(d, c->depth);
        };
        auto see_args = [&](const CallArgsExpr& a) {
            for (auto& x : a.pos) see(x);
            for (auto& x : a.kw) see(x.second);
            see(a.dyn_pos);
            see(a.dyn_kw);
        };
        Expr* x = e.get();
        switch (x->kind) {
            case ExprKind::Seq:
                for (auto& c : static_cast<SeqExpr*>(x)->items) see(c);
                break;
            case ExprKind::Dict:
                for (auto& [k, v] : static_cast<DictExpr*>(x)->items) {
                    see(k);
                    see(v);
                }
                break;
            case ExprKind::Getattr:
                see(static_cast<GetattrExpr*>(x)->obj);
                break;
            case ExprKind::Getitem:
                see(static_cast<GetitemExpr*>(x)->obj);
                see(static_cast<GetitemExpr*>(x)->index);
                break;
            case ExprKind::Slice: {
                auto* s = static_cast<SliceExpr*>(x);
                see(s->start);
                see(s->stop);
                see(s->step);
                break;
            }
            case ExprKind::Call:
                see(static_cast<CallExpr*>(x)->callee);
                see_args(static_cast<CallExpr*>(x)->args);
                break;
            case ExprKind::Filter:
                see(static_cast<FilterExpr*>(x)->base);
                see_args(static_cast<FilterExpr*>(x)->args);
                break;
            case ExprKind::Test:
                see(static_cast<TestExpr*>(x)->base);
                see_args(static_cast<TestExpr*>(x)->args);
                break;
            case ExprKind::Unary:
                see(static_cast<UnaryExpr*>(x)->operand);
                break;
            case ExprKind::Binary:
                see(static_cast<BinaryExpr*>(x)->left);
                see(static_cast<BinaryExpr*>(x)->right);
                break;
            case ExprKind::Compare:
                see(static_cast<CompareExpr*>(x)->first);
                for (auto& [op, c] : static_cast<CompareExpr*>(x)->ops) see(c);
                break;
            case ExprKind::Concat:
                for (auto& c : static_cast<ConcatExpr*>(x)->parts) see(c);
                break;
            case ExprKind::Cond: {
                auto* c = static_cast<CondExpr*>(x);
                see(c->test);
                see(c->then);
                see(c->otherwise);
                break;
            }
            default:
                break;
        }
        e->depth = d + 1;
        if (e->depth > kMaxExprDepth)
            throw Error(ErrorKind::Syntax, "expression nested too deeply", e->line, e->col);
        return e;
    }

    // ---- statements ------------------------------------------------------------------------

    static bool in_rules(const EndRules& rules, const Token& t) {
        return t.type == Tok::Name && std::find(rules.begin(), rules.end(), t.text) != rules.end();
    }

    Body subparse(const EndRules& end) {
        Body body;
        if (!end.empty()) end_stack_.push_back(end);
        while (cur().type != Tok::Eof) {
            const Token& t = cur();
            if (t.type == Tok::Data) {
                auto s = node<TextStmt>(t);
                s->text = t.text;
                body.push_back(std::move(s));
                next();
            } else if (t.type == Tok::VarBegin) {
                next();
                auto s = node<PrintStmt>(cur());
                s->expr = parse_tuple(true, {}, false);
                expect(Tok::VarEnd, "end of print statement");
                body.push_back(std::move(s));
            } else if (t.type == Tok::BlockBegin) {
                next();
                if (!end.empty() && in_rules(end, cur())) {
                    end_stack_.pop_back();
                    return body;
                }
                parse_statement(body);
                expect(Tok::BlockEnd, "end of statement block");
            } else {
                fail("unexpected '" + describe(t) + "'");
            }
        }
        if (!end.empty()) end_stack_.pop_back();
        return body;
    }

    static std::string join_rules(const EndRules& r) {
        std::string s;
        for (size_t i = 0; i < r.size(); ++i) s += (i ? " or '" : "'") + r[i] + "'";
        return s;
    }

    [[noreturn]] void fail_tag(const std::string* name, const EndRules* extra) {
        std::vector<EndRules> stack = end_stack_;
        if (extra) stack.push_back(*extra);
        std::string msg =
            name ? "Encountered unknown tag '" + *name + "'." : "Unexpected end of template.";
        if (!stack.empty()) {
            bool expected = false;
            for (const auto& r : stack)
                if (name && std::find(r.begin(), r.end(), *name) != r.end()) expected = true;
            if (expected)
                msg +=
                    " You probably made a nesting mistake. Jinja is expecting this tag, but "
                    "currently looking for " +
                    join_rules(stack.back()) + ".";
            else
                msg +=
                    " Jinja was looking for the following tags: " + join_rules(stack.back()) + ".";
        }
        if (!tag_stack_.empty())
            msg += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
        fail(msg);
    }

    Body parse_statements(const EndRules& end, bool drop_needle) {
        skip_op(Op::Colon);
        expect(Tok::BlockEnd, "end of statement block");
        Body body = subparse(end);
        if (cur().type == Tok::Eof) fail_tag(nullptr, &end);
        if (drop_needle) next();
        return body;
    }

    void parse_statement(Body& out) {
        Nest nest(this);
        const Token tok = cur();
        if (tok.type != Tok::Name) fail("tag name expected");
        const std::string& n = tok.text;
        static const char* kTags[] = {
            "for",   "if",    "set",      "macro",   "call",    "filter", "with", "block",
            "print", "break", "continue", "extends", "include", "import", "from", "autoescape"};
        if (std::find_if(std::begin(kTags), std::end(kTags),
                         [&](const char* k) { return n == k; }) == std::end(kTags))
            fail_tag(&n, nullptr);
        tag_stack_.push_back(n);
        struct Pop {
            std::vector<std::string>& s;
            ~Pop() { s.pop_back(); }
        } pop{tag_stack_};
        if (n == "for") return out.push_back(parse_for());
        if (n == "if") return out.push_back(parse_if());
        if (n == "set") return out.push_back(parse_set());
        if (n == "macro") return out.push_back(parse_macro());
        if (n == "call") return out.push_back(parse_call_block());
        if (n == "filter") return out.push_back(parse_filter_block());
        if (n == "with") return out.push_back(parse_with());
        if (n == "block") return out.push_back(parse_block());
        if (n == "print") {
            next();
            bool first = true;
            while (cur().type != Tok::BlockEnd) {
                if (!first) expect_op(Op::Comma);
                first = false;
                auto s = node<PrintStmt>(cur());
                s->expr = parse_expression(true);
                out.push_back(std::move(s));
            }
            return;
        }
        if (n == "break" || n == "continue") {
            if (loop_depth_ == 0) fail("'" + n + "' outside loop");
            next();
            out.push_back(
                std::make_unique<Stmt>(n == "break" ? StmtKind::Break : StmtKind::Continue));
            out.back()->line = tok.line;
            out.back()->col = tok.col;
            return;
        }
        // extends / include / import / from / autoescape: parsed, fail when rendered
        auto s = node<UnsupportedStmt>(tok);
        s->what = n;
        next();
        while (cur().type != Tok::BlockEnd && cur().type != Tok::Eof) next();
        if (n == "autoescape") parse_statements({"endautoescape"}, true);
        out.push_back(std::move(s));
    }

    StmtPtr parse_for() {
        auto s = node<ForStmt>(cur());
        next();
        s->target = parse_assign_target(true, {"in"}, false);
        expect_keyword("in");
        s->iter = parse_tuple(false, {"recursive"}, false);
        if (skip_name("if")) s->filter = parse_expression(true);
        s->recursive = skip_name("recursive");
        ++loop_depth_;
        s->body = parse_statements({"endfor", "else"}, false);
        --loop_depth_;
        if (cur().text == "endfor") {
            next();
        } else {
            next();
            s->otherwise = parse_statements({"endfor"}, true);
        }
        return s;
    }

    StmtPtr parse_if() {
        auto s = node<IfStmt>(cur());
        next();
        while (true) {
            ExprPtr test = parse_tuple(false, {}, false);
            Body body = parse_statements({"elif", "else", "endif"}, false);
            s->branches.emplace_back(std::move(test), std::move(body));
            const std::string tag = cur().text;
            next();
            if (tag == "elif") continue;
            if (tag == "else") s->otherwise = parse_statements({"endif"}, true);
            break;
        }
        return s;
    }

    StmtPtr parse_set() {
        const Token at = cur();
        next();
        Target target = parse_assign_target(true, {}, true);
        if (skip_op(Op::Assign)) {
            auto s = node<SetStmt>(at);
            s->target = std::move(target);
            s->value = parse_tuple(true, {}, false);
            return s;
        }
        auto s = node<SetBlockStmt>(at);
        s->target = std::move(target);
        s->filters = parse_filter_chain(false);
        s->body = parse_statements({"endset"}, true);
        return s;
    }

    std::unique_ptr<MacroDef> parse_signature(std::string name, int line) {
        auto def = std::make_unique<MacroDef>();
        def->name = std::move(name);
        def->line = line;
        expect_op(Op::LParen);
        while (!is_op(Op::RParen)) {
            if (!def->params.empty()) expect_op(Op::Comma);
            std::string p = expect_name();
            check_assignable_name(p);
            if (skip_op(Op::Assign))
                def->defaults.push_back(parse_expression(true));
            else if (!def->defaults.empty())
                fail("non-default argument follows default argument");
            def->params.push_back(std::move(p));
        }
        expect_op(Op::RParen);
        return def;
    }

    Body parse_function_body(const EndRules& end) {
        const int saved = loop_depth_;
        loop_depth_ = 0;
        Body b = parse_statements(end, true);
        loop_depth_ = saved;
        return b;
    }

    StmtPtr parse_macro() {
        auto s = node<MacroStmt>(cur());
        next();
        std::string name = expect_name();
        check_assignable_name(name);
        s->def = parse_signature(std::move(name), s->line);
        s->def->body = parse_function_body({"endmacro"});
        return s;
    }

    StmtPtr parse_call_block() {
        auto s = node<CallBlockStmt>(cur());
        next();
        if (is_op(Op::LParen)) {
            s->caller = parse_signature("caller", s->line);
        } else {
            s->caller = std::make_unique<MacroDef>();
            s->caller->name = "caller";
            s->caller->line = s->line;
        }
        ExprPtr call = parse_expression(true);
        if (call->kind != ExprKind::Call) fail_at("expected call", t_[i_ > 0 ? i_ - 1 : 0]);
        s->call.reset(static_cast<CallExpr*>(call.release()));
        s->caller->body = parse_function_body({"endcall"});
        return s;
    }

    StmtPtr parse_filter_block() {
        auto s = node<FilterBlockStmt>(cur());
        next();
        s->filters = parse_filter_chain(true);
        s->body = parse_statements({"endfilter"}, true);
        return s;
    }

    StmtPtr parse_with() {
        auto s = node<WithStmt>(cur());
        next();
        while (cur().type != Tok::BlockEnd) {
            if (!s->targets.empty()) expect_op(Op::Comma);
            s->targets.push_back(parse_assign_target(true, {}, false));
            expect_op(Op::Assign);
            s->values.push_back(parse_expression(true));
        }
        s->body = parse_statements({"endwith"}, true);
        return s;
    }

    StmtPtr parse_block() {
        auto s = node<BlockStmt>(cur());
        next();
        const Token name_tok = cur();
        s->name = expect_name();
        if (std::find(block_names_.begin(), block_names_.end(), s->name) != block_names_.end())
            fail_at("block '" + s->name + "' defined twice", name_tok);
        block_names_.push_back(s->name);
        skip_name("scoped");
        skip_name("required");
        if (is_op(Op::Sub))
            fail(
                "Block names in Jinja have to be valid Python identifiers and may not contain "
                "hyphens, use an underscore instead.");
        s->body = parse_statements({"endblock"}, true);
        skip_name(s->name);
        return s;
    }

    // ---- assignment targets ----------------------------------------------------------------

    void check_assignable_name(const std::string& n) const {
        static const char* kConst[] = {"true", "false", "none", "True", "False", "None"};
        for (const char* c : kConst)
            if (n == c) fail("can't assign to 'const'");
    }

    Target target_from(ExprPtr e) {
        Target t;
        t.line = e->line;
        t.col = e->col;
        if (e->kind == ExprKind::Name) {
            t.kind = Target::Kind::Name;
            t.name = static_cast<NameExpr*>(e.get())->name;
            return t;
        }
        if (e->kind == ExprKind::Seq && static_cast<SeqExpr*>(e.get())->tuple) {
            t.kind = Target::Kind::Tuple;
            for (auto& item : static_cast<SeqExpr*>(e.get())->items)
                t.items.push_back(target_from(std::move(item)));
            return t;
        }
        const char* what = "expression";
        switch (e->kind) {
            case ExprKind::Const:
                what = "const";
                break;
            case ExprKind::Seq:
                what = "list";
                break;
            case ExprKind::Dict:
                what = "dict";
                break;
            case ExprKind::Getattr:
                what = "getattr";
                break;
            case ExprKind::Getitem:
                what = "getitem";
                break;
            case ExprKind::Call:
                what = "call";
                break;
            case ExprKind::Filter:
                what = "filter";
                break;
            default:
                break;
        }
        throw Error(ErrorKind::Syntax, std::string("can't assign to '") + what + "'", e->line,
                    e->col);
    }

    Target parse_target_item(bool with_namespace) {
        if (with_namespace && cur().type == Tok::Name && look().type == Tok::Op &&
            look().op == Op::Dot) {
            Target t;
            t.kind = Target::Kind::NsAttr;
            t.line = cur().line;
            t.col = cur().col;
            t.name = cur().text;
            next();
            next();
            t.attr = expect_name();
            return t;
        }
        return target_from(parse_primary());
    }

    Target parse_assign_target(bool with_tuple, const EndRules& extra, bool with_namespace) {
        if (!with_tuple) return parse_target_item(with_namespace);
        const Token at = cur();
        std::vector<Target> items;
        bool is_tuple = false;
        while (true) {
            if (!items.empty()) expect_op(Op::Comma);
            if (is_tuple_end(extra)) break;
            items.push_back(parse_target_item(with_namespace));
            if (is_op(Op::Comma))
                is_tuple = true;
            else
                break;
        }
        if (!is_tuple) {
            if (items.empty()) fail("Expected an expression, got '" + describe(cur()) + "'");
            return std::move(items[0]);
        }
        Target t;
        t.kind = Target::Kind::Tuple;
        t.items = std::move(items);
        t.line = at.line;
        t.col = at.col;
        return t;
    }

    // ---- expressions -----------------------------------------------------------------------

    bool is_tuple_end(const EndRules& extra) const {
        const Token& t = cur();
        if (t.type == Tok::VarEnd || t.type == Tok::BlockEnd ||
            (t.type == Tok::Op && t.op == Op::RParen))
            return true;
        return in_rules(extra, t);
    }

    ExprPtr parse_tuple(bool with_condexpr, const EndRules& extra, bool explicit_parens) {
        const Token at = cur();
        std::vector<ExprPtr> items;
        bool is_tuple = false;
        while (true) {
            if (!items.empty()) expect_op(Op::Comma);
            if (is_tuple_end(extra)) break;
            items.push_back(parse_expression(with_condexpr));
            if (is_op(Op::Comma))
                is_tuple = true;
            else
                break;
        }
        if (!is_tuple) {
            if (!items.empty()) return std::move(items[0]);
            if (!explicit_parens) {
                if (cur().type == Tok::Eof) fail("unexpected end of template");
                fail("Expected an expression, got '" + describe(cur()) + "'");
            }
        }
        auto s = node<SeqExpr>(at);
        s->tuple = true;
        s->items = std::move(items);
        return done(std::move(s));
    }

    ExprPtr parse_expression(bool with_condexpr) {
        Nest nest(this);
        return with_condexpr ? parse_condexpr() : parse_or();
    }

    ExprPtr parse_condexpr() {
        ExprPtr e1 = parse_or();
        while (is_name("if")) {
            const Token at = cur();
            next();
            auto c = node<CondExpr>(at);
            c->test = parse_or();
            if (skip_name("else")) c->otherwise = parse_condexpr();
            c->then = std::move(e1);
            e1 = done(std::move(c));
        }
        return e1;
    }

    ExprPtr binary(BinOp op, ExprPtr l, ExprPtr r, const Token& at) {
        auto b = node<BinaryExpr>(at);
        b->op = op;
        b->left = std::move(l);
        b->right = std::move(r);
        return done(std::move(b));
    }

    ExprPtr parse_or() {
        ExprPtr left = parse_and();
        while (is_name("or")) {
            const Token at = cur();
            next();
            left = binary(BinOp::Or, std::move(left), parse_and(), at);
        }
        return left;
    }

    ExprPtr parse_and() {
        ExprPtr left = parse_not();
        while (is_name("and")) {
            const Token at = cur();
            next();
            left = binary(BinOp::And, std::move(left), parse_not(), at);
        }
        return left;
    }

    ExprPtr parse_not() {
        if (is_name("not")) {
            Nest nest(this);
            auto u = node<UnaryExpr>(cur());
            next();
            u->op = UnaryOp::Not;
            u->operand = parse_not();
            return done(std::move(u));
        }
        return parse_compare();
    }

    ExprPtr parse_compare() {
        const Token at = cur();
        ExprPtr first = parse_math1();
        std::vector<std::pair<CmpOp, ExprPtr>> ops;
        while (true) {
            const Token& t = cur();
            CmpOp op;
            if (t.type == Tok::Op && t.op == Op::Eq)
                op = CmpOp::Eq;
            else if (t.type == Tok::Op && t.op == Op::Ne)
                op = CmpOp::Ne;
            else if (t.type == Tok::Op && t.op == Op::Lt)
                op = CmpOp::Lt;
            else if (t.type == Tok::Op && t.op == Op::Le)
                op = CmpOp::Le;
            else if (t.type == Tok::Op && t.op == Op::Gt)
                op = CmpOp::Gt;
            else if (t.type == Tok::Op && t.op == Op::Ge)
                op = CmpOp::Ge;
            else if (is_name("in"))
                op = CmpOp::In;
            else if (is_name("not") && look().type == Tok::Name && look().text == "in") {
                next();
                op = CmpOp::NotIn;
            } else {
                break;
            }
            next();
            ops.emplace_back(op, parse_math1());
        }
        if (ops.empty()) return first;
        auto c = node<CompareExpr>(at);
        c->first = std::move(first);
        c->ops = std::move(ops);
        return done(std::move(c));
    }

    ExprPtr parse_math1() {
        ExprPtr left = parse_concat();
        while (is_op(Op::Add) || is_op(Op::Sub)) {
            const Token at = cur();
            const BinOp op = cur().op == Op::Add ? BinOp::Add : BinOp::Sub;
            next();
            left = binary(op, std::move(left), parse_concat(), at);
        }
        return left;
    }

    ExprPtr parse_concat() {
        const Token at = cur();
        ExprPtr first = parse_math2();
        if (!is_op(Op::Tilde)) return first;
        auto c = node<ConcatExpr>(at);
        c->parts.push_back(std::move(first));
        while (skip_op(Op::Tilde)) c->parts.push_back(parse_math2());
        return done(std::move(c));
    }

    ExprPtr parse_math2() {
        ExprPtr left = parse_pow();
        while (is_op(Op::Mul) || is_op(Op::Div) || is_op(Op::FloorDiv) || is_op(Op::Mod)) {
            const Token at = cur();
            const Op o = cur().op;
            const BinOp op = o == Op::Mul        ? BinOp::Mul
                             : o == Op::Div      ? BinOp::Div
                             : o == Op::FloorDiv ? BinOp::FloorDiv
                                                 : BinOp::Mod;
            next();
            left = binary(op, std::move(left), parse_pow(), at);
        }
        return left;
    }

    ExprPtr parse_pow() {
        ExprPtr left = parse_unary(true);
        while (is_op(Op::Pow)) {
            const Token at = cur();
            next();
            left = binary(BinOp::Pow, std::move(left), parse_unary(true), at);
        }
        return left;
    }

    ExprPtr parse_unary(bool with_filter) {
        ExprPtr n;
        if (is_op(Op::Sub) || is_op(Op::Add)) {
            Nest nest(this);
            auto u = node<UnaryExpr>(cur());
            u->op = is_op(Op::Sub) ? UnaryOp::Neg : UnaryOp::Pos;
            next();
            u->operand = parse_unary(false);
            n = done(std::move(u));
        } else {
            n = parse_primary();
        }
        n = parse_postfix(std::move(n));
        if (with_filter) n = parse_filter_expr(std::move(n));
        return n;
    }

    ExprPtr parse_primary() {
        const Token t = cur();
        switch (t.type) {
            case Tok::Name: {
                next();
                auto c = node<ConstExpr>(t);
                if (t.text == "true" || t.text == "True")
                    c->value = Value(true);
                else if (t.text == "false" || t.text == "False")
                    c->value = Value(false);
                else if (t.text == "none" || t.text == "None")
                    c->value = Value::none();
                else {
                    auto n = node<NameExpr>(t);
                    n->name = t.text;
                    return n;
                }
                return c;
            }
            case Tok::String: {
                std::string s;
                while (cur().type == Tok::String) {
                    s += cur().text;
                    next();
                }
                auto c = node<ConstExpr>(t);
                c->value = Value(std::move(s));
                return c;
            }
            case Tok::Int:
            case Tok::Float: {
                next();
                auto c = node<ConstExpr>(t);
                c->value = t.type == Tok::Int ? Value(t.ival) : Value(t.fval);
                return c;
            }
            case Tok::Op:
                if (t.op == Op::LParen) {
                    next();
                    ExprPtr e = parse_tuple(true, {}, true);
                    expect_op(Op::RParen);
                    return e;
                }
                if (t.op == Op::LBracket) return parse_list();
                if (t.op == Op::LBrace) return parse_dict();
                break;
            default:
                break;
        }
        if (t.type == Tok::Eof) fail("unexpected end of template");
        fail("unexpected '" + describe(t) + "'");
    }

    ExprPtr parse_list() {
        auto l = node<SeqExpr>(cur());
        expect_op(Op::LBracket);
        while (!is_op(Op::RBracket)) {
            if (!l->items.empty()) expect_op(Op::Comma);
            if (is_op(Op::RBracket)) break;
            l->items.push_back(parse_expression(true));
        }
        expect_op(Op::RBracket);
        return done(std::move(l));
    }

    ExprPtr parse_dict() {
        auto d = node<DictExpr>(cur());
        expect_op(Op::LBrace);
        while (!is_op(Op::RBrace)) {
            if (!d->items.empty()) expect_op(Op::Comma);
            if (is_op(Op::RBrace)) break;
            ExprPtr k = parse_expression(true);
            expect_op(Op::Colon);
            ExprPtr v = parse_expression(true);
            d->items.emplace_back(std::move(k), std::move(v));
        }
        expect_op(Op::RBrace);
        return done(std::move(d));
    }

    ExprPtr parse_postfix(ExprPtr n) {
        while (true) {
            if (is_op(Op::Dot) || is_op(Op::LBracket))
                n = parse_subscript(std::move(n));
            else if (is_op(Op::LParen))
                n = parse_call(std::move(n));
            else
                break;
        }
        return n;
    }

    ExprPtr parse_filter_expr(ExprPtr n) {
        while (true) {
            if (is_op(Op::Pipe))
                n = parse_filter(std::move(n));
            else if (is_name("is"))
                n = parse_test(std::move(n));
            else if (is_op(Op::LParen))
                n = parse_call(std::move(n));
            else
                break;
        }
        return n;
    }

    ExprPtr parse_subscript(ExprPtr obj) {
        const Token tok = cur();
        next();
        if (tok.op == Op::Dot) {
            const Token a = cur();
            next();
            if (a.type == Tok::Name) {
                auto g = node<GetattrExpr>(tok);
                g->obj = std::move(obj);
                g->attr = a.text;
                return done(std::move(g));
            }
            if (a.type != Tok::Int) fail_at("expected name or number", a);
            auto g = node<GetitemExpr>(tok);
            g->obj = std::move(obj);
            auto c = node<ConstExpr>(a);
            c->value = Value(a.ival);
            g->index = std::move(c);
            return done(std::move(g));
        }
        std::vector<ExprPtr> args;
        while (!is_op(Op::RBracket)) {
            if (!args.empty()) expect_op(Op::Comma);
            args.push_back(parse_subscribed());
        }
        expect_op(Op::RBracket);
        auto g = node<GetitemExpr>(tok);
        g->obj = std::move(obj);
        if (args.size() == 1) {
            g->index = std::move(args[0]);
        } else {
            auto t = node<SeqExpr>(tok);
            t->tuple = true;
            t->items = std::move(args);
            g->index = done(std::move(t));
        }
        return done(std::move(g));
    }

    ExprPtr parse_subscribed() {
        const Token at = cur();
        std::vector<ExprPtr> parts;
        if (is_op(Op::Colon)) {
            next();
            parts.emplace_back();
        } else {
            ExprPtr e = parse_expression(true);
            if (!is_op(Op::Colon)) return e;
            next();
            parts.push_back(std::move(e));
        }
        if (is_op(Op::Colon) || is_op(Op::RBracket) || is_op(Op::Comma))
            parts.emplace_back();
        else
            parts.push_back(parse_expression(true));
        if (is_op(Op::Colon)) {
            next();
            if (is_op(Op::RBracket) || is_op(Op::Comma))
                parts.emplace_back();
            else
                parts.push_back(parse_expression(true));
        } else {
            parts.emplace_back();
        }
        auto s = node<SliceExpr>(at);
        s->start = std::move(parts[0]);
        s->stop = std::move(parts[1]);
        s->step = std::move(parts[2]);
        return done(std::move(s));
    }

    CallArgsExpr parse_call_args() {
        const Token open = cur();
        expect_op(Op::LParen);
        CallArgsExpr a;
        bool need_comma = false;
        auto ensure = [&](bool ok) {
            if (!ok) fail_at("invalid syntax for function call expression", open);
        };
        while (!is_op(Op::RParen)) {
            if (need_comma) {
                expect_op(Op::Comma);
                if (is_op(Op::RParen)) break;
            }
            if (is_op(Op::Mul)) {
                ensure(!a.dyn_pos && !a.dyn_kw);
                next();
                a.dyn_pos = parse_expression(true);
            } else if (is_op(Op::Pow)) {
                ensure(!a.dyn_kw);
                next();
                a.dyn_kw = parse_expression(true);
            } else if (cur().type == Tok::Name && look().type == Tok::Op &&
                       look().op == Op::Assign) {
                ensure(!a.dyn_kw);
                std::string key = cur().text;
                next();
                next();
                a.kw.emplace_back(std::move(key), parse_expression(true));
            } else {
                ensure(!a.dyn_pos && !a.dyn_kw && a.kw.empty());
                a.pos.push_back(parse_expression(true));
            }
            need_comma = true;
        }
        expect_op(Op::RParen);
        return a;
    }

    ExprPtr parse_call(ExprPtr callee) {
        auto c = node<CallExpr>(cur());
        c->args = parse_call_args();
        c->callee = std::move(callee);
        return done(std::move(c));
    }

    std::string dotted_name() {
        std::string name = expect_name();
        while (is_op(Op::Dot)) {
            next();
            name += "." + expect_name();
        }
        return name;
    }

    ExprPtr parse_filter(ExprPtr base) {
        while (is_op(Op::Pipe)) {
            next();
            auto f = node<FilterExpr>(cur());
            f->name = dotted_name();
            if (is_op(Op::LParen)) f->args = parse_call_args();
            f->base = std::move(base);
            base = done(std::move(f));
        }
        return base;
    }

    // The filters of {% filter a|b %} and {% set x | a | b %}: applied in order to the body.
    std::vector<std::unique_ptr<FilterExpr>> parse_filter_chain(bool start_inline) {
        std::vector<std::unique_ptr<FilterExpr>> out;
        while (is_op(Op::Pipe) || start_inline) {
            if (!start_inline) next();
            start_inline = false;
            auto f = node<FilterExpr>(cur());
            f->name = dotted_name();
            if (is_op(Op::LParen)) f->args = parse_call_args();
            out.push_back(done(std::move(f)));
        }
        return out;
    }

    ExprPtr parse_test(ExprPtr base) {
        const Token at = cur();
        next();
        const bool negated = skip_name("not");
        auto t = node<TestExpr>(at);
        t->name = dotted_name();
        const Token& c = cur();
        if (is_op(Op::LParen)) {
            t->args = parse_call_args();
        } else if ((c.type == Tok::Name || c.type == Tok::String || c.type == Tok::Int ||
                    c.type == Tok::Float || is_op(Op::LBracket) || is_op(Op::LBrace)) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
            if (is_name("is")) fail("You cannot chain multiple tests with is");
            t->args.pos.push_back(parse_postfix(parse_primary()));
        }
        t->base = std::move(base);
        ExprPtr e = done(std::move(t));
        if (!negated) return e;
        auto u = node<UnaryExpr>(at);
        u->op = UnaryOp::Not;
        u->operand = std::move(e);
        return done(std::move(u));
    }

    std::vector<Token> t_;
    size_t i_ = 0;
    int nesting_ = 0;
    int loop_depth_ = 0;
    std::vector<EndRules> end_stack_;
    std::vector<std::string> tag_stack_;
    std::vector<std::string> block_names_;
};

}  // namespace

std::unique_ptr<Program> parse_program(std::string_view source, const ParseOptions& opts) {
    Parser p(tokenize(source, LexOptions{opts.trim_blocks, opts.lstrip_blocks}));
    auto prog = p.parse();
    resolve_program(*prog);
    return prog;
}

}  // namespace lokal::tmpl
