// Syntax tree of a parsed template. Immutable after parsing; rendering only reads it.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace lokal::tmpl {

class Context;

using FilterFn = Value (*)(Context& ctx, const Value& input, CallArgs& args);
using TestFn = bool (*)(Context& ctx, const Value& input, CallArgs& args);

struct Node {
    int line = 0;
    int col = 0;
};

// ---- expressions ---------------------------------------------------------------------------

enum class ExprKind : uint8_t {
    Const,
    Name,
    Seq,
    Dict,
    Getattr,
    Getitem,
    Slice,
    Call,
    Filter,
    Test,
    Unary,
    Binary,
    Compare,
    Concat,
    Cond,
};

struct Expr : Node {
    explicit Expr(ExprKind k) : kind(k) {}
    virtual ~Expr() = default;
    ExprKind kind;
    int depth = 1;  // height of the subtree, bounded by the parser
};
using ExprPtr = std::unique_ptr<Expr>;

struct ConstExpr : Expr {
    ConstExpr() : Expr(ExprKind::Const) {}
    Value value;
};

struct NameExpr : Expr {
    NameExpr() : Expr(ExprKind::Name) {}
    std::string name;
};

struct SeqExpr : Expr {  // list or tuple literal
    SeqExpr() : Expr(ExprKind::Seq) {}
    std::vector<ExprPtr> items;
    bool tuple = false;
};

struct DictExpr : Expr {
    DictExpr() : Expr(ExprKind::Dict) {}
    std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

struct GetattrExpr : Expr {
    GetattrExpr() : Expr(ExprKind::Getattr) {}
    ExprPtr obj;
    std::string attr;
};

struct GetitemExpr : Expr {
    GetitemExpr() : Expr(ExprKind::Getitem) {}
    ExprPtr obj;
    ExprPtr index;
};

struct SliceExpr : Expr {
    SliceExpr() : Expr(ExprKind::Slice) {}
    ExprPtr start, stop, step;  // each may be null
};

struct CallArgsExpr {
    std::vector<ExprPtr> pos;
    std::vector<std::pair<std::string, ExprPtr>> kw;
    ExprPtr dyn_pos, dyn_kw;  // *args, **kwargs
};

struct CallExpr : Expr {
    CallExpr() : Expr(ExprKind::Call) {}
    ExprPtr callee;
    CallArgsExpr args;
};

struct FilterExpr : Expr {
    FilterExpr() : Expr(ExprKind::Filter) {}
    ExprPtr base;  // null inside {% filter %} and {% set x | f %}
    std::string name;
    CallArgsExpr args;
    FilterFn fn = nullptr;  // null: unknown filter tolerated in a conditional, fails when used
};

struct TestExpr : Expr {
    TestExpr() : Expr(ExprKind::Test) {}
    ExprPtr base;
    std::string name;
    CallArgsExpr args;
    TestFn fn = nullptr;
};

enum class UnaryOp : uint8_t { Neg, Pos, Not };

struct UnaryExpr : Expr {
    UnaryExpr() : Expr(ExprKind::Unary) {}
    UnaryOp op = UnaryOp::Not;
    ExprPtr operand;
};

enum class BinOp : uint8_t { Add, Sub, Mul, Div, FloorDiv, Mod, Pow, And, Or };

struct BinaryExpr : Expr {
    BinaryExpr() : Expr(ExprKind::Binary) {}
    BinOp op = BinOp::Add;
    ExprPtr left, right;
};

enum class CmpOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

struct CompareExpr : Expr {
    CompareExpr() : Expr(ExprKind::Compare) {}
    ExprPtr first;
    std::vector<std::pair<CmpOp, ExprPtr>> ops;
};

struct ConcatExpr : Expr {
    ConcatExpr() : Expr(ExprKind::Concat) {}
    std::vector<ExprPtr> parts;
};

struct CondExpr : Expr {
    CondExpr() : Expr(ExprKind::Cond) {}
    ExprPtr test, then, otherwise;  // otherwise may be null
};

// ---- statements ----------------------------------------------------------------------------

enum class StmtKind : uint8_t {
    Text,
    Print,
    If,
    For,
    Set,
    SetBlock,
    Macro,
    CallBlock,
    FilterBlock,
    With,
    Break,
    Continue,
    Block,
    Unsupported,
};

// Names a frame (template, loop body, macro...) assigns before reading them. jinja binds such
// a name to undefined when the frame starts, so code nested in the frame that runs before
// the assignment sees undefined rather than an outer or context value.
using Predeclared = std::vector<std::string>;

struct Stmt : Node {
    explicit Stmt(StmtKind k) : kind(k) {}
    virtual ~Stmt() = default;
    StmtKind kind;
};
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// An assignment target: a name, a namespace attribute (ns.attr) or a tuple of targets.
struct Target {
    enum class Kind : uint8_t { Name, NsAttr, Tuple } kind = Kind::Name;
    std::string name;
    std::string attr;
    std::vector<Target> items;
    int line = 0, col = 0;
};

struct TextStmt : Stmt {
    TextStmt() : Stmt(StmtKind::Text) {}
    std::string text;
};

struct PrintStmt : Stmt {
    PrintStmt() : Stmt(StmtKind::Print) {}
    ExprPtr expr;
};

struct IfStmt : Stmt {
    IfStmt() : Stmt(StmtKind::If) {}
    std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif...
    Body otherwise;
};

struct ForStmt : Stmt {
    ForStmt() : Stmt(StmtKind::For) {}
    Target target;
    ExprPtr iter;
    ExprPtr filter;  // may be null
    Body body, otherwise;
    bool recursive = false;
    Predeclared body_locals, otherwise_locals;
};

struct SetStmt : Stmt {
    SetStmt() : Stmt(StmtKind::Set) {}
    Target target;
    ExprPtr value;
};

struct SetBlockStmt : Stmt {
    SetBlockStmt() : Stmt(StmtKind::SetBlock) {}
    Target target;
    std::vector<std::unique_ptr<FilterExpr>> filters;
    Body body;
    Predeclared locals;
};

struct MacroDef {
    std::string name;
    std::vector<std::string> params;
    std::vector<ExprPtr> defaults;  // for the last defaults.size() params
    Body body;
    bool uses_caller = false, uses_varargs = false, uses_kwargs = false;
    int line = 0;
    Predeclared locals;
};

struct MacroStmt : Stmt {
    MacroStmt() : Stmt(StmtKind::Macro) {}
    std::unique_ptr<MacroDef> def;
};

struct CallBlockStmt : Stmt {
    CallBlockStmt() : Stmt(StmtKind::CallBlock) {}
    std::unique_ptr<CallExpr> call;
    std::unique_ptr<MacroDef> caller;  // the block body, callable as caller(...)
};

struct FilterBlockStmt : Stmt {
    FilterBlockStmt() : Stmt(StmtKind::FilterBlock) {}
    std::vector<std::unique_ptr<FilterExpr>> filters;
    Body body;
    Predeclared locals;
};

struct WithStmt : Stmt {
    WithStmt() : Stmt(StmtKind::With) {}
    std::vector<Target> targets;
    std::vector<ExprPtr> values;
    Body body;
    Predeclared locals;
};

struct BlockStmt : Stmt {
    BlockStmt() : Stmt(StmtKind::Block) {}
    std::string name;
    Body body;
    Predeclared locals;
};

struct UnsupportedStmt : Stmt {  // extends / include / import: no loader, fails when run
    UnsupportedStmt() : Stmt(StmtKind::Unsupported) {}
    std::string what;
};

struct Program {
    Body body;
    Predeclared locals;
};

struct ParseOptions {
    bool trim_blocks = true;
    bool lstrip_blocks = true;
};

// Throws Error(ErrorKind::Syntax).
std::unique_ptr<Program> parse_program(std::string_view source, const ParseOptions& opts);

// Binds filters and tests, checks unknown names (resolve.cpp); called by parse_program.
void resolve_program(Program& program);

}  // namespace lokal::tmpl
