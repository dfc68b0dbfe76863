// Hostile and malformed templates: every one must fail with lokal::tmpl::Error (never crash,
// hang, overflow the stack or exhaust memory), and errors must carry a line and column.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "template/chat_template.h"

namespace {

using namespace lokal::tmpl;
namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

const nlohmann::ordered_json& chat() {
    static const auto m = nlohmann::ordered_json::parse(
        R"([{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"}])");
    return m;
}

// Renders like the chat helper; returns the error (or nullopt when it rendered).
std::optional<Error> run(const std::string& src, const Limits& limits = {}) {
    ChatOptions opts;
    opts.limits = limits;
    opts.now = std::tm{};
    try {
        ChatTemplate(src).apply(chat(), true, "<s>", "</s>", nullptr, nullptr, opts);
    } catch (const Error& e) {
        return e;
    }
    return std::nullopt;
}

TEST(TemplateHostile, MalformedCorpusFailsCleanly) {
    const fs::path dir = fs::path(LOKAL_SOURCE_DIR) / "tests/template/malformed";
    Limits limits;  // the defaults, scaled down to keep the test fast
    limits.max_steps = 1'000'000;
    limits.max_output = size_t{16} << 20;
    size_t n = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".jinja") continue;
        ++n;
        const std::string src = read_file(entry.path());
        const auto t0 = std::chrono::steady_clock::now();
        const auto err = run(src, limits);
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        EXPECT_TRUE(err.has_value()) << entry.path().filename() << " rendered without error";
        if (err) {
            EXPECT_GT(err->line(), 0)
                << entry.path().filename() << ": no location in " << err->what();
            EXPECT_FALSE(err->message().empty()) << entry.path().filename();
        }
        EXPECT_LT(secs, 10.0) << entry.path().filename() << " took " << secs << " s";
    }
    EXPECT_GE(n, 50u);
}

TEST(TemplateHostile, ErrorKinds) {
    EXPECT_EQ(run("{% if %}")->kind(), ErrorKind::Syntax);
    EXPECT_EQ(run("{{ x | nope }}")->kind(), ErrorKind::Syntax);
    EXPECT_EQ(run("{{ raise_exception('no') }}")->kind(), ErrorKind::Raised);
    EXPECT_EQ(run("{{ raise_exception('no') }}")->message(), "no");
    EXPECT_EQ(run("{{ missing.attr }}")->kind(), ErrorKind::Undefined);
    EXPECT_EQ(run("{{ [].append(1) }}")->kind(), ErrorKind::Security);
    EXPECT_EQ(run("{{ 'a' + 1 }}")->kind(), ErrorKind::Type);
    EXPECT_EQ(run("{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}")->kind(), ErrorKind::Limit);
    EXPECT_EQ(run("{{ 'x' * 10000000000 }}")->kind(), ErrorKind::Limit);
}

TEST(TemplateHostile, ErrorLocations) {
    auto e = run("line one\n  {{ 1 +* 2 }}");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->line(), 2);
    EXPECT_EQ(e->column(), 9);
    EXPECT_NE(std::string(e->what()).find("line 2, column 9"), std::string::npos) << e->what();

    e =
        run("{% for m in messages %}\n{% if m.role == 'user' %}\n{{ m.content.nope.deeper }}\n{% "
            "endif %}{% endfor %}");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->line(), 3) << e->what();
    EXPECT_EQ(e->kind(), ErrorKind::Undefined);

    e = run("{% for x in [1] %}\n{% endif %}");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->line(), 2);
    EXPECT_NE(e->message().find("endif"), std::string::npos) << e->what();
}

TEST(TemplateHostile, LimitsAreConfigurable) {
    Limits small;
    small.max_output = 100;
    EXPECT_EQ(run("{% for i in range(200) %}x{% endfor %}", small)->kind(), ErrorKind::Limit);
    EXPECT_FALSE(run("{% for i in range(50) %}x{% endfor %}", small));

    Limits steps;
    steps.max_steps = 1000;
    EXPECT_EQ(run("{% for i in range(2000) %}{% endfor %}", steps)->kind(), ErrorKind::Limit);
    EXPECT_FALSE(run("{% for i in range(500) %}{% endfor %}", steps));

    Limits depth;
    depth.max_depth = 50;
    EXPECT_EQ(
        run("{% macro r(n) %}{% if n %}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(40) }}", depth)
            ->kind(),
        ErrorKind::Limit);
    // Recursion as deep as Python Jinja2 allows works with the default limits.
    EXPECT_FALSE(
        run("{% macro r(n) %}{% if n %}{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(150) }}"));
}

TEST(TemplateHostile, DeepValuesDoNotOverflowTheStack) {
    // 200k nested lists built at run time are destroyed without recursion.
    EXPECT_FALSE(
        run("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}"
            "{% endfor %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}"));
    // A chain of namespaces dropped mid-render.
    EXPECT_FALSE(
        run("{% set ns = namespace(head=namespace()) %}{% set root = ns.head %}"
            "{% for i in range(100000) %}{% set n = namespace(next=ns.head) %}"
            "{% set ns.head = n %}{% endfor %}{% set ns.head = none %}"));
    // Reference cycles (namespace containing itself, macros in scopes) are released.
    EXPECT_FALSE(
        run("{% set ns = namespace() %}{% set ns.me = ns %}{% macro m() %}{{ ns }}{% endmacro %}"
            "{% set ns.m = m %}"));
}

}  // namespace
