// The one exception type of the template engine.
#pragma once
#include <exception>
#include <string>

namespace lokal::tmpl {

enum class ErrorKind {
    Syntax,     // template does not parse (TemplateSyntaxError / TemplateAssertionError)
    Undefined,  // operation on an undefined value (UndefinedError)
    Type,       // wrong operand types, bad call arguments (TypeError, ValueError)
    Security,   // access the sandbox forbids (SecurityError)
    Raised,     // raise_exception() called by the template
    Limit,      // output, iteration, recursion or size limit reached
    Runtime,    // other runtime errors (TemplateRuntimeError, ZeroDivisionError...)
};

class Error : public std::exception {
  public:
    Error(ErrorKind kind, std::string message, int line = 0, int column = 0)
        : kind_(kind), message_(std::move(message)) {
        set_location(line, column);
    }

    ErrorKind kind() const { return kind_; }
    const std::string& message() const { return message_; }  // without the location
    int line() const { return line_; }                       // 1-based, 0 if unknown
    int column() const { return column_; }                   // 1-based, 0 if unknown
    bool has_location() const { return line_ > 0; }
    const char* what() const noexcept override { return what_.c_str(); }

    void set_location(int line, int column) {
        line_ = line;
        column_ = column;
        what_ = line > 0 ? "line " + std::to_string(line) + ", column " + std::to_string(column) +
                               ": " + message_
                         : message_;
    }

  private:
    ErrorKind kind_;
    std::string message_;
    std::string what_;
    int line_ = 0;
    int column_ = 0;
};

[[noreturn]] inline void throw_type(std::string msg) {
    throw Error(ErrorKind::Type, std::move(msg));
}
[[noreturn]] inline void throw_runtime(std::string msg) {
    throw Error(ErrorKind::Runtime, std::move(msg));
}
[[noreturn]] inline void throw_limit(std::string msg) {
    throw Error(ErrorKind::Limit, std::move(msg));
}

}  // namespace lokal::tmpl
