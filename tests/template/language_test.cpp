// The language corpus: ~400 small templates (literals, operators, filters, tests, statements,
// whitespace control, scoping, Markup, errors) with outputs recorded from Python Jinja2 by
// gen_cases.py. Every output must match byte for byte and every Jinja error must raise.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "template/jinja.h"

namespace {

using namespace lokal::tmpl;

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::string visible(std::string_view s) {
    std::string out;
    for (char c : s) out += c == '\n' ? std::string("\\n") : std::string(1, c);
    return out;
}

TEST(TemplateLanguage, MatchesJinja2Corpus) {
    const std::string path = std::string(LOKAL_SOURCE_DIR) + "/tests/template/jinja_cases.json";
    const auto doc = nlohmann::ordered_json::parse(read_file(path));
    const Value context = from_json(doc.at("context"));
    RenderOptions opts;
    opts.globals.emplace_back(
        "raise_exception", make_function("raise_exception", [](Context&, CallArgs& a) -> Value {
            throw Error(ErrorKind::Raised, a.pos.empty() ? "" : to_str(a.pos[0]));
        }));
    size_t passed = 0;
    const auto& cases = doc.at("cases");
    for (const auto& c : cases) {
        const std::string src = c.at("template").get<std::string>();
        std::string got, error;
        bool threw = false;
        try {
            got = Template::parse(src).render(context, opts);
        } catch (const Error& e) {
            threw = true;
            error = e.what();
        }
        if (c.contains("error")) {
            if (threw) {
                ++passed;
            } else {
                ADD_FAILURE() << "template: " << visible(src) << "\n  expected error ("
                              << c.at("error").get<std::string>() << "), got: " << visible(got);
            }
            continue;
        }
        const std::string want = c.at("expected").get<std::string>();
        if (threw) {
            ADD_FAILURE() << "template: " << visible(src) << "\n  unexpected error: " << error
                          << "\n  expected: " << visible(want);
        } else if (got != want) {
            size_t i = 0;
            while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
            ADD_FAILURE() << "template: " << visible(src) << "\n  differs at byte " << i
                          << "\n  expected: " << visible(want) << "\n  got:      " << visible(got);
        } else {
            ++passed;
        }
    }
    std::cout << "[ jinja_cases.json ] " << passed << " / " << cases.size() << " cases match\n";
    EXPECT_EQ(passed, cases.size());
}

}  // namespace
