#include "template/lexer.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "template/error.h"
#include "template/unicode.h"

namespace lokal::tmpl {

namespace {

struct OpSpelling {
    const char* text;
    Op op;
};

// Longest first, as jinja sorts its operator regex.
constexpr OpSpelling kOps[] = {
    {"//", Op::FloorDiv}, {"**", Op::Pow},      {"==", Op::Eq},    {"!=", Op::Ne},
    {">=", Op::Ge},       {"<=", Op::Le},       {"+", Op::Add},    {"-", Op::Sub},
    {"/", Op::Div},       {"*", Op::Mul},       {"%", Op::Mod},    {"~", Op::Tilde},
    {"[", Op::LBracket},  {"]", Op::RBracket},  {"(", Op::LParen}, {")", Op::RParen},
    {"{", Op::LBrace},    {"}", Op::RBrace},    {">", Op::Gt},     {"<", Op::Lt},
    {"=", Op::Assign},    {".", Op::Dot},       {":", Op::Colon},  {"|", Op::Pipe},
    {",", Op::Comma},     {";", Op::Semicolon},
};

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           static_cast<unsigned char>(c) >= 0x80;
}
bool is_name_char(char c) {
    return is_name_start(c) || is_digit(c);
}

class Lexer {
  public:
    Lexer(std::string_view source, const LexOptions& opts) : opts_(opts) {
        // Normalize newlines like jinja (\r\n and \r become \n) and drop one trailing newline
        // (keep_trailing_newline is false).
        src_.reserve(source.size());
        for (size_t i = 0; i < source.size(); ++i) {
            if (source[i] == '\r') {
                src_ += '\n';
                if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
            } else {
                src_ += source[i];
            }
        }
        if (!src_.empty() && src_.back() == '\n') src_.pop_back();
        line_starts_.push_back(0);
        for (size_t i = 0; i < src_.size(); ++i)
            if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }

    std::vector<Token> run() {
        const size_t n = src_.size();
        while (pos_ < n) {
            size_t k = find_tag_start(pos_);
            if (k == std::string::npos) {
                emit_data(pos_, src_.substr(pos_));
                pos_ = n;
                break;
            }
            const char kind = src_[k + 1];
            size_t after = k + 2;
            char sign = 0;
            if (after < n && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
            size_t raw_end = 0;
            const bool raw = kind == '%' && match_raw_begin(k, raw_end);
            std::string text = src_.substr(pos_, k - pos_);
            strip_text(text, sign, kind == '{');
            emit_data(pos_, std::move(text));
            line_starting_ = false;
            if (raw) {
                lex_raw(raw_end);
            } else if (kind == '#') {
                lex_comment(k, after);
            } else {
                push(kind == '{' ? Tok::VarBegin : Tok::BlockBegin, k);
                pos_ = after;
                lex_tag(kind == '{');
            }
        }
        Token eof;
        eof.type = Tok::Eof;
        locate(eof, src_.size());
        toks_.push_back(std::move(eof));
        return std::move(toks_);
    }

  private:
    [[noreturn]] void fail(const std::string& msg, size_t at) {
        int line = 0, col = 0;
        position(at, line, col);
        throw Error(ErrorKind::Syntax, msg, line, col);
    }

    void position(size_t at, int& line, int& col) const {
        auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), at);
        const size_t li = static_cast<size_t>(it - line_starts_.begin()) - 1;
        line = static_cast<int>(li + 1);
        col = static_cast<int>(at - line_starts_[li] + 1);
    }

    void locate(Token& t, size_t at) const { position(at, t.line, t.col); }

    Token& push(Tok type, size_t at) {
        Token t;
        t.type = type;
        locate(t, at);
        toks_.push_back(std::move(t));
        return toks_.back();
    }

    void emit_data(size_t at, std::string text) {
        if (text.empty()) return;
        push(Tok::Data, at).text = std::move(text);
    }

    size_t find_tag_start(size_t from) const {
        for (size_t k = src_.find('{', from); k != std::string::npos; k = src_.find('{', k + 1)) {
            if (k + 1 < src_.size() &&
                (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#'))
                return k;
        }
        return std::string::npos;
    }

    // Python's regex \s (Unicode whitespace) starting at byte i; returns the byte length.
    size_t space_len(size_t i) const {
        size_t j = i;
        const uint32_t c = uni::decode(src_, j);
        return uni::is_space(c) ? j - i : 0;
    }
    size_t skip_spaces(size_t i) const {
        while (i < src_.size()) {
            size_t l = space_len(i);
            if (!l) break;
            i += l;
        }
        return i;
    }
    static bool all_space(std::string_view s) {
        if (s.empty()) return false;
        for (size_t i = 0; i < s.size();)
            if (!uni::is_space(uni::decode(s, i))) return false;
        return true;
    }

    static std::string rstrip(const std::string& s) {
        auto cps = uni::to_cps(s);
        size_t e = cps.size();
        while (e > 0 && uni::is_space(cps[e - 1])) --e;
        return uni::from_cps(cps.data(), e);
    }

    // The whitespace control jinja applies to the data before a tag.
    void strip_text(std::string& text, char sign, bool variable) const {
        if (sign == '-') {
            text = rstrip(text);
        } else if (sign != '+' && opts_.lstrip_blocks && !variable) {
            const size_t nl = text.rfind('\n');
            const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
            if ((l_pos > 0 || line_starting_) && all_space(std::string_view(text).substr(l_pos)))
                text.resize(l_pos);
        }
    }

    bool starts(size_t at, std::string_view s) const { return src_.compare(at, s.size(), s) == 0; }

    // {%[-+]?\s*raw\s*(-%}\s*|%})
    bool match_raw_begin(size_t k, size_t& end) const {
        size_t i = k + 2;
        if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) ++i;
        i = skip_spaces(i);
        if (!starts(i, "raw")) return false;
        i = skip_spaces(i + 3);
        if (starts(i, "-%}")) {
            end = skip_spaces(i + 3);
            return true;
        }
        if (starts(i, "%}")) {
            end = i + 2;
            return true;
        }
        return false;
    }

    // Sets line_starting_ from the last character of a match ending at `end`.
    void set_line_starting(size_t match_begin, size_t end) {
        line_starting_ = end > match_begin && src_[end - 1] == '\n';
    }

    void lex_raw(size_t body_start) {
        set_line_starting(body_start - 1, body_start);
        if (body_start >= src_.size()) {  // nothing after {% raw %}: jinja ends quietly
            pos_ = body_start;
            return;
        }
        const size_t n = src_.size();
        for (size_t k = src_.find("{%", body_start); k != std::string::npos;
             k = src_.find("{%", k + 1)) {
            size_t i = k + 2;
            char sign = 0;
            if (i < n && (src_[i] == '-' || src_[i] == '+')) sign = src_[i++];
            i = skip_spaces(i);
            if (!starts(i, "endraw")) continue;
            i = skip_spaces(i + 6);
            size_t end;
            if (starts(i, "+%}")) {
                end = i + 3;
            } else if (starts(i, "-%}")) {
                end = skip_spaces(i + 3);
            } else if (starts(i, "%}")) {
                end = i + 2;
                if (opts_.trim_blocks && end < n && src_[end] == '\n') ++end;
            } else {
                continue;
            }
            std::string text = src_.substr(body_start, k - body_start);
            strip_text(text, sign, false);
            emit_data(body_start, std::move(text));
            set_line_starting(body_start, end);
            pos_ = end;
            return;
        }
        fail("Missing end of raw directive", body_start);
    }

    void lex_comment(size_t k, size_t content) {
        if (content >= src_.size()) {  // jinja ends quietly on "{#" at the very end
            pos_ = content;
            return;
        }
        const size_t q = src_.find("#}", content);
        if (q == std::string::npos) fail("Missing end of comment tag", k);
        size_t end = q + 2;
        const char before = q > content ? src_[q - 1] : 0;
        if (before == '-') {
            end = skip_spaces(end);
        } else if (before != '+' && opts_.trim_blocks && end < src_.size() && src_[end] == '\n') {
            ++end;
        }
        set_line_starting(content, end);
        pos_ = end;
    }

    void lex_tag(bool variable) {
        const size_t n = src_.size();
        std::vector<char> balance;
        while (pos_ < n) {
            const size_t start = pos_;
            if (balance.empty()) {
                size_t end = 0;
                if (variable) {
                    if (starts(pos_, "-}}"))
                        end = skip_spaces(pos_ + 3);
                    else if (starts(pos_, "}}"))
                        end = pos_ + 2;
                } else {
                    if (starts(pos_, "+%}")) {
                        end = pos_ + 3;
                    } else if (starts(pos_, "-%}")) {
                        end = skip_spaces(pos_ + 3);
                    } else if (starts(pos_, "%}")) {
                        end = pos_ + 2;
                        if (opts_.trim_blocks && end < n && src_[end] == '\n') ++end;
                    }
                }
                if (end) {
                    push(variable ? Tok::VarEnd : Tok::BlockEnd, start);
                    set_line_starting(start, end);
                    pos_ = end;
                    return;
                }
            }
            if (size_t l = space_len(pos_)) {
                pos_ = skip_spaces(pos_ + l);
                continue;
            }
            if (lex_number()) continue;
            const char c = src_[pos_];
            if (is_name_start(c)) {
                size_t e = pos_ + 1;
                while (e < n && is_name_char(src_[e])) ++e;
                push(Tok::Name, start).text = src_.substr(pos_, e - pos_);
                pos_ = e;
                continue;
            }
            if (c == '\'' || c == '"') {
                size_t e = pos_ + 1;
                while (e < n && src_[e] != c) e += (src_[e] == '\\') ? 2 : 1;
                if (e < n) {
                    push(Tok::String, start).text = unescape(pos_ + 1, e);
                    pos_ = e + 1;
                    continue;
                }
            }
            bool matched = false;
            for (const auto& o : kOps) {
                if (!starts(pos_, o.text)) continue;
                Token& t = push(Tok::Op, start);
                t.op = o.op;
                t.text = o.text;
                pos_ += std::char_traits<char>::length(o.text);
                matched = true;
                if (o.op == Op::LBrace) balance.push_back('}');
                if (o.op == Op::LParen) balance.push_back(')');
                if (o.op == Op::LBracket) balance.push_back(']');
                if (o.op == Op::RBrace || o.op == Op::RParen || o.op == Op::RBracket) {
                    const char got = o.text[0];
                    if (balance.empty()) fail(std::string("unexpected '") + got + "'", start);
                    if (balance.back() != got)
                        fail(std::string("unexpected '") + got + "', expected '" + balance.back() +
                                 "'",
                             start);
                    balance.pop_back();
                }
                break;
            }
            if (!matched) {
                size_t j = pos_;
                std::string ch;
                uni::append(ch, uni::decode(src_, j));
                fail("unexpected char " + quote(ch) + " at " + std::to_string(pos_), pos_);
            }
        }
        // End of input inside a tag: the parser reports the unexpected end.
    }

    static std::string quote(const std::string& s) { return "'" + s + "'"; }

    // digits with single underscores between them
    size_t scan_digits(size_t i, bool (*ok)(char)) const {
        const size_t n = src_.size();
        if (i >= n || !ok(src_[i])) return 0;
        size_t e = i + 1;
        while (e < n) {
            if (ok(src_[e])) {
                ++e;
            } else if (src_[e] == '_' && e + 1 < n && ok(src_[e + 1])) {
                e += 2;
            } else {
                break;
            }
        }
        return e - i;
    }

    bool lex_number() {
        const size_t n = src_.size();
        const size_t s = pos_;
        if (!is_digit(src_[s])) return false;
        auto dig = [](char c) { return c >= '0' && c <= '9'; };
        // float: (?<!\.) digits ( (\.digits)? e[+-]?digits | \.digits )
        if (s == 0 || src_[s - 1] != '.') {
            size_t i = s + scan_digits(s, dig);
            size_t frac = 0;
            if (i < n && src_[i] == '.') frac = scan_digits(i + 1, dig);
            size_t e = frac ? i + 1 + frac : i;
            size_t exp_end = 0;
            if (e < n && (src_[e] == 'e' || src_[e] == 'E')) {
                size_t j = e + 1;
                if (j < n && (src_[j] == '+' || src_[j] == '-')) ++j;
                if (size_t d = scan_digits(j, dig)) exp_end = j + d;
            }
            if (exp_end || frac) {
                const size_t end = exp_end ? exp_end : e;
                std::string txt;
                for (size_t k = s; k < end; ++k)
                    if (src_[k] != '_') txt += src_[k];
                Token& t = push(Tok::Float, s);
                t.fval = std::strtod(txt.c_str(), nullptr);
                t.text = txt;
                pos_ = end;
                return true;
            }
        }
        // integer: 0b.. 0o.. 0x.. | [1-9](_?\d)* | 0(_?0)*
        int base = 10;
        size_t body = s, len = 0;
        if (src_[s] == '0' && s + 1 < n &&
            std::string_view("bBoOxX").find(src_[s + 1]) != std::string_view::npos) {
            const char p = static_cast<char>(src_[s + 1] | 0x20);
            base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
            auto ok = base == 2   ? +[](char c) { return c == '0' || c == '1'; }
                      : base == 8 ? +[](char c) { return c >= '0' && c <= '7'; }
                                  : +[](char c) {
                                        return std::isxdigit(static_cast<unsigned char>(c)) != 0;
                                    };
            size_t i = s + 2;
            if (i < n && src_[i] == '_') ++i;
            len = scan_digits(i, ok);
            if (len) {
                body = i;
            } else {
                base = 10;
            }
        }
        if (base == 10) {
            if (src_[s] == '0') {
                size_t e = s + 1;
                while (e < n &&
                       (src_[e] == '0' || (src_[e] == '_' && e + 1 < n && src_[e + 1] == '0')))
                    e += src_[e] == '_' ? 2 : 1;
                len = e - s;
            } else {
                len = scan_digits(s, dig);
            }
        }
        uint64_t v = 0;
        for (size_t k = body; k < body + len; ++k) {
            if (src_[k] == '_') continue;
            const int d = std::isdigit(static_cast<unsigned char>(src_[k]))
                              ? src_[k] - '0'
                              : (src_[k] | 0x20) - 'a' + 10;
            if (v > (static_cast<uint64_t>(INT64_MAX) - d) / base)
                fail("integer literal too large", s);
            v = v * base + d;
        }
        Token& t = push(Tok::Int, s);
        t.ival = static_cast<int64_t>(v);
        t.text = src_.substr(s, body + len - s);
        pos_ = body + len;
        return true;
    }

    // Python's unicode-escape decoding of a string literal's body (src_[b, e)).
    std::string unescape(size_t b, size_t e) {
        std::string out;
        auto hex = [&](size_t at, int count, uint32_t& cp) {
            cp = 0;
            if (at + count > e) return false;
            for (int k = 0; k < count; ++k) {
                const char c = src_[at + k];
                if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
                cp =
                    cp * 16 +
                    (std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (c | 0x20) - 'a' + 10);
            }
            return true;
        };
        for (size_t i = b; i < e;) {
            if (src_[i] != '\\') {
                size_t j = i;
                uni::decode(src_, j);
                out.append(src_, i, j - i);
                i = j;
                continue;
            }
            if (i + 1 >= e) fail("\\ at end of string", i);
            const char c = src_[i + 1];
            i += 2;
            switch (c) {
                case '\n':
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '\'':
                    out += '\'';
                    break;
                case '"':
                    out += '"';
                    break;
                case 'a':
                    out += '\a';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'v':
                    out += '\v';
                    break;
                case 'x':
                case 'u':
                case 'U': {
                    const int count = c == 'x' ? 2 : c == 'u' ? 4 : 8;
                    uint32_t cp;
                    if (!hex(i, count, cp))
                        fail(std::string("truncated \\") + c + std::string(count, 'X') + " escape",
                             i);
                    if (cp > 0x10FFFF) fail("illegal Unicode character", i);
                    uni::append(out, cp);
                    i += count;
                    break;
                }
                case 'N':
                    fail("\\N{...} escapes are not supported", i);
                default:
                    if (c >= '0' && c <= '7') {
                        uint32_t cp = c - '0';
                        for (int k = 0; k < 2 && i < e && src_[i] >= '0' && src_[i] <= '7'; ++k)
                            cp = cp * 8 + (src_[i++] - '0');
                        uni::append(out, cp);
                    } else if (static_cast<unsigned char>(c) >= 0x80) {
                        // Jinja backslash-replaces non-ASCII first: "\é" becomes "\\xe9".
                        size_t j = i - 1;
                        const uint32_t cp = uni::decode(src_, j);
                        char buf[16];
                        if (cp >= 0x110000 || cp < 0x100)
                            std::snprintf(buf, sizeof buf, "\\x%02x",
                                          cp >= 0x110000 ? cp - 0x110000 : cp);
                        else if (cp < 0x10000)
                            std::snprintf(buf, sizeof buf, "\\u%04x", cp);
                        else
                            std::snprintf(buf, sizeof buf, "\\U%08x", cp);
                        out += buf;
                        i = j;
                    } else {
                        out += '\\';
                        out += c;
                    }
            }
        }
        return out;
    }

    std::string src_;
    LexOptions opts_;
    std::vector<size_t> line_starts_;
    std::vector<Token> toks_;
    size_t pos_ = 0;
    bool line_starting_ = true;
};

}  // namespace

const char* op_spelling(Op op) {
    for (const auto& o : kOps)
        if (o.op == op) return o.text;
    return "?";
}

std::string describe(const Token& t) {
    switch (t.type) {
        case Tok::Data:
            return "template data / text";
        case Tok::VarBegin:
            return "begin of print statement";
        case Tok::VarEnd:
            return "end of print statement";
        case Tok::BlockBegin:
            return "begin of statement block";
        case Tok::BlockEnd:
            return "end of statement block";
        case Tok::Name:
            return t.text;
        case Tok::String:
            return "string";
        case Tok::Int:
            return "integer";
        case Tok::Float:
            return "float";
        case Tok::Op:
            return op_spelling(t.op);
        case Tok::Eof:
            return "end of template";
    }
    return "token";
}

std::vector<Token> tokenize(std::string_view source, const LexOptions& opts) {
    return Lexer(source, opts).run();
}

}  // namespace lokal::tmpl
