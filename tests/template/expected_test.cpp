// Every rendering recorded in ../shared/templates/expected.json (Python Jinja2 with the
// Hugging Face chat-template settings) must be reproduced byte for byte, errors included.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "shared_path.h"
#include "template/chat_template.h"

namespace {

using nlohmann::ordered_json;

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string escape_for_message(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else
            out += c;
    }
    return out;
}

// Describes the first difference: byte offset, line/column and both sides around it.
std::string diff_message(const std::string& want, const std::string& got) {
    size_t i = 0;
    while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
    size_t line = 1, col = 1;
    for (size_t k = 0; k < i; ++k) {
        if (want[k] == '\n') {
            ++line;
            col = 1;
        } else {
            ++col;
        }
    }
    const size_t from = i > 40 ? i - 40 : 0;
    std::ostringstream m;
    m << "first difference at byte " << i << " (line " << line << ", column " << col
      << "); expected size " << want.size() << ", got " << got.size() << "\n  expected: ..."
      << escape_for_message(want.substr(from, 100)) << "\n  got:      ..."
      << escape_for_message(got.substr(from, 100));
    return m.str();
}

std::tm test_date() {
    std::tm t{};
    t.tm_year = 2026 - 1900;
    t.tm_mon = 10;
    t.tm_mday = 21;
    return t;
}

TEST(TemplateExpected, AllRecordedRenderingsMatch) {
    const std::string dir = lokal::test::shared_path("templates/");
    const std::string text = read_file(dir + "expected.json");
    ASSERT_FALSE(text.empty()) << "cannot read " << dir << "expected.json";
    const ordered_json doc = ordered_json::parse(text);
    const auto& cases = doc.at("cases");
    ASSERT_EQ(cases.size(), 204u);

    std::map<std::string, std::unique_ptr<lokal::tmpl::ChatTemplate>> parsed;
    lokal::tmpl::ChatOptions opts;
    opts.now = test_date();
    size_t passed = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const auto& c = cases[i];
        const std::string name = c.at("template").get<std::string>();
        const std::string label = "case " + std::to_string(i) + " (" + name + ", " +
                                  c.at("conversation").get<std::string>() +
                                  (c.contains("tools") ? ", tools" : "") +
                                  (c.at("add_generation_prompt").get<bool>() ? ", gen" : "") + ")";
        const bool want_error = c.value("error", false);
        std::string got;
        bool threw = false;
        std::string error;
        try {
            auto& t = parsed[name];
            if (!t) t = std::make_unique<lokal::tmpl::ChatTemplate>(read_file(dir + name));
            got = t->apply(
                c.at("messages"), c.at("add_generation_prompt").get<bool>(),
                c.at("bos_token").get<std::string>(), c.at("eos_token").get<std::string>(),
                c.contains("tools") ? c.at("tools") : ordered_json(nullptr), nullptr, opts);
        } catch (const lokal::tmpl::Error& e) {
            threw = true;
            error = e.what();
        }
        if (want_error) {
            EXPECT_TRUE(threw) << label << ": expected an error, rendered:\n" << got;
            passed += threw ? 1 : 0;
            continue;
        }
        if (threw) {
            ADD_FAILURE() << label << ": unexpected error: " << error;
            continue;
        }
        const std::string want = c.at("expected").get<std::string>();
        if (got == want) {
            ++passed;
        } else {
            ADD_FAILURE() << label << ": " << diff_message(want, got);
        }
    }
    std::cout << "[ expected.json ] " << passed << " / " << cases.size() << " cases match\n";
    EXPECT_EQ(passed, cases.size());
}

}  // namespace
