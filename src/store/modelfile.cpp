#include "store/modelfile.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "store/util.h"

namespace lokal::store {

namespace {

enum class Kind { Float, Int, UInt, String };

struct ParamSpec {
    const char* name;
    Kind kind;
};

const ParamSpec kParams[] = {
    {"temperature", Kind::Float},
    {"top_k", Kind::Int},
    {"top_p", Kind::Float},
    {"min_p", Kind::Float},
    {"repeat_penalty", Kind::Float},
    {"repeat_last_n", Kind::Int},
    {"presence_penalty", Kind::Float},
    {"frequency_penalty", Kind::Float},
    {"seed", Kind::UInt},
    {"num_ctx", Kind::Int},
    {"num_predict", Kind::Int},
    {"stop", Kind::String},
};

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    return out;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

class Parser {
  public:
    explicit Parser(std::string_view t) : t_(t) {}

    Modelfile run() {
        Modelfile mf;
        bool have_from = false;
        while (skip_blank_lines()) {
            size_t line = line_;
            std::string word = lower(read_word());
            skip_spaces();
            auto fail = [&](const std::string& why) {
                throw Error("Modelfile line " + std::to_string(line) + ": " + why);
            };
            if (word == "from") {
                if (have_from) fail("more than one FROM");
                mf.from = read_value(line);
                have_from = true;
            } else if (word == "parameter") {
                std::string name = lower(read_word());
                skip_spaces();
                if (name.empty()) fail("PARAMETER needs a name and a value");
                mf.parameters.emplace_back(name, read_value(line));
            } else if (word == "system") {
                mf.system = read_value(line, true);
            } else if (word == "template") {
                mf.chat_template = read_value(line, true);
            } else if (word == "license") {
                mf.licenses.push_back(read_value(line, true));
            } else if (word == "adapter") {
                mf.adapter = read_value(line);
            } else if (word == "message") {
                std::string role = lower(read_word());
                skip_spaces();
                if (role != "system" && role != "user" && role != "assistant")
                    fail("MESSAGE role must be system, user or assistant, not " + show_str(role));
                mf.messages.emplace_back(role, read_value(line, true));
            } else {
                fail("unknown instruction " + show_str(word));
            }
            // Nothing but spaces may follow a value on its line.
            skip_spaces();
            if (pos_ < t_.size() && t_[pos_] != '\n') fail("unexpected text after the value");
        }
        if (!have_from) throw Error("Modelfile: no FROM instruction");
        if (mf.from.empty()) throw Error("Modelfile: FROM is empty");
        parameters_to_json(mf.parameters);  // validates
        return mf;
    }

  private:
    // Skip empty and comment lines; false at end of text.
    bool skip_blank_lines() {
        for (;;) {
            skip_spaces();
            if (pos_ >= t_.size()) return false;
            if (t_[pos_] == '\n') {
                ++pos_;
                ++line_;
                continue;
            }
            if (t_[pos_] == '#') {
                while (pos_ < t_.size() && t_[pos_] != '\n') ++pos_;
                continue;
            }
            return true;
        }
    }
    void skip_spaces() {
        while (pos_ < t_.size() && is_space(t_[pos_])) ++pos_;
    }
    std::string read_word() {
        size_t s = pos_;
        while (pos_ < t_.size() && !is_space(t_[pos_]) && t_[pos_] != '\n') ++pos_;
        return std::string(t_.substr(s, pos_ - s));
    }
    std::string read_value(size_t line, bool allow_empty = false) {
        auto fail = [&](const std::string& why) {
            throw Error("Modelfile line " + std::to_string(line) + ": " + why);
        };
        std::string out;
        if (t_.substr(pos_, 3) == "\"\"\"") {
            size_t end = t_.find("\"\"\"", pos_ + 3);
            if (end == std::string_view::npos) fail("unterminated \"\"\" block");
            out = std::string(t_.substr(pos_ + 3, end - pos_ - 3));
            for (size_t i = pos_; i < end; ++i)
                if (t_[i] == '\n') ++line_;
            pos_ = end + 3;
        } else if (pos_ < t_.size() && t_[pos_] == '"') {
            ++pos_;
            for (;;) {
                if (pos_ >= t_.size() || t_[pos_] == '\n') fail("unterminated quoted string");
                char c = t_[pos_++];
                if (c == '"') break;
                if (c == '\\' && pos_ < t_.size() && (t_[pos_] == '"' || t_[pos_] == '\\'))
                    c = t_[pos_++];
                out += c;
            }
        } else {
            size_t s = pos_;
            while (pos_ < t_.size() && t_[pos_] != '\n') ++pos_;
            out = std::string(t_.substr(s, pos_ - s));
            while (!out.empty() && is_space(out.back())) out.pop_back();
            if (out.empty() && !allow_empty) fail("missing value");
        }
        if (out.find('\0') != std::string::npos) fail("NUL byte in value");
        if (!is_valid_utf8(out)) fail("value is not valid UTF-8");
        return out;
    }

    std::string_view t_;
    size_t pos_ = 0;
    size_t line_ = 1;
};

}  // namespace

Modelfile parse_modelfile(std::string_view text) {
    if (text.size() > (16u << 20)) throw Error("Modelfile: larger than 16 MiB");
    return Parser(text).run();
}

const std::vector<std::string>& known_parameters() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (const auto& p : kParams) v.push_back(p.name);
        return v;
    }();
    return names;
}

nlohmann::json parameters_to_json(const std::vector<std::pair<std::string, std::string>>& ps) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& param : ps) {
        // Plain references, not a structured binding: clang before 16 cannot capture one.
        const std::string& name = param.first;
        const std::string& value = param.second;
        const ParamSpec* spec = nullptr;
        for (const auto& p : kParams)
            if (name == p.name) spec = &p;
        if (!spec) throw Error("unknown parameter " + show_str(name));
        auto bad = [&](const char* what) {
            throw Error("parameter " + name + ": " + show_str(value) + " is not " + what);
        };
        const char* s = value.c_str();
        char* end = nullptr;
        errno = 0;
        switch (spec->kind) {
            case Kind::Float: {
                double v = std::strtod(s, &end);
                if (end == s || *end || errno || !std::isfinite(v)) bad("a number");
                j[name] = v;
                break;
            }
            case Kind::Int: {
                long long v = std::strtoll(s, &end, 10);
                if (end == s || *end || errno || v < INT32_MIN || v > INT32_MAX) bad("an integer");
                j[name] = v;
                break;
            }
            case Kind::UInt: {
                if (value.empty() || value[0] == '-') bad("a non-negative integer");
                unsigned long long v = std::strtoull(s, &end, 10);
                if (end == s || *end || errno) bad("a non-negative integer");
                j[name] = v;
                break;
            }
            case Kind::String:
                if (value.empty()) bad("a non-empty string");
                if (!j.contains(name)) j[name] = nlohmann::json::array();
                j[name].push_back(value);
                break;
        }
    }
    return j;
}

}  // namespace lokal::store
