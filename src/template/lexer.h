// Tokenizer reproducing Jinja2's lexer: data, {{ }}, {% %}, {# #}, raw blocks, whitespace
// control with '-' and '+', trim_blocks and lstrip_blocks.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lokal::tmpl {

struct LexOptions {
    bool trim_blocks = true;
    bool lstrip_blocks = true;
};

enum class Tok : uint8_t {
    Data,
    VarBegin,
    VarEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Int,
    Float,
    Op,
    Eof
};

enum class Op : uint8_t {
    Add,
    Sub,
    Div,
    FloorDiv,
    Mul,
    Mod,
    Pow,
    Tilde,
    LBracket,
    RBracket,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Assign,
    Dot,
    Colon,
    Pipe,
    Comma,
    Semicolon,
};

struct Token {
    Tok type = Tok::Eof;
    Op op = Op::Add;
    std::string text;  // data, name, unescaped string, or operator spelling
    int64_t ival = 0;
    double fval = 0;
    int line = 1;
    int col = 1;
};

const char* op_spelling(Op op);
std::string describe(const Token& t);  // for error messages, like jinja's describe_token

// Throws Error(ErrorKind::Syntax) with the line and column of the problem.
std::vector<Token> tokenize(std::string_view source, const LexOptions& opts = {});

}  // namespace lokal::tmpl
