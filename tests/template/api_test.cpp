// Public API: Template parse/render, the chat helper, Value <-> JSON, Python-style printing,
// parse options and concurrent rendering of one parsed template.
#include <gtest/gtest.h>

#include <thread>

#include "template/chat_template.h"

namespace {

using namespace lokal::tmpl;
using nlohmann::json;
using nlohmann::ordered_json;

std::string render(std::string_view src, const ordered_json& ctx = ordered_json::object()) {
    return Template::parse(src).render(ctx);
}

TEST(TemplateApi, RendersJsonContexts) {
    EXPECT_EQ(render("Hello {{ name }}!", {{"name", "World"}}), "Hello World!");
    // nlohmann::json sorts keys; ordered_json keeps insertion order like a Python dict.
    const json sorted = {{"b", 1}, {"a", 2}};
    const ordered_json ordered = {{"b", 1}, {"a", 2}};
    EXPECT_EQ(Template::parse("{{ d|tojson }}").render(json{{"d", sorted}}),
              "{\"a\": 2, \"b\": 1}");
    EXPECT_EQ(Template::parse("{{ d|tojson }}").render(ordered_json{{"d", ordered}}),
              "{\"b\": 1, \"a\": 2}");
    EXPECT_EQ(render("{{ x }}"), "");  // undefined prints nothing
}

TEST(TemplateApi, PythonStylePrinting) {
    const ordered_json ctx = {
        {"v", {{"s", "it's"}, {"f", 1.0}, {"n", nullptr}, {"b", true}, {"l", {1, 2.5, "x"}}}}};
    EXPECT_EQ(render("{{ v }}", ctx),
              "{'s': \"it's\", 'f': 1.0, 'n': None, 'b': True, 'l': [1, 2.5, 'x']}");
    EXPECT_EQ(render("{{ 1e16 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 3.0 }} {{ -0.0 }} {{ 10 / 4 }}"),
              "1e+16 1e-05 0.30000000000000004 3.0 -0.0 2.5");
    EXPECT_EQ(render("{{ (1,) }}{{ ('a', none) }}{{ {} }}{{ [] }}"), "(1,)('a', None){}[]");
}

TEST(TemplateApi, ValueJsonRoundTrip) {
    const ordered_json j = ordered_json::parse(
        R"({"z": [1, -2, 3.5, "s", null, true, {"k": []}], "a": {}, "u": "цвят"})");
    const Value v = from_json(j);
    ASSERT_TRUE(v.is_mapping());
    EXPECT_EQ(v.dict().entries().front().first.s(), "z");
    EXPECT_EQ(to_json(v), j);
    EXPECT_EQ(repr(v), "{'z': [1, -2, 3.5, 's', None, True, {'k': []}], 'a': {}, 'u': 'цвят'}");
    EXPECT_TRUE(py_equal(Value(int64_t{1}), Value(1.0)));
    EXPECT_TRUE(py_equal(Value(true), Value(int64_t{1})));
    EXPECT_FALSE(py_equal(Value::list({Value(1)}), Value::tuple({Value(1)})));
    EXPECT_THROW(to_json(Value()), Error);
}

TEST(TemplateApi, ParseOnceRenderManyAndConcurrently) {
    const Template t = Template::parse(
        "{% for m in messages %}{{ m.role }}:{{ m.content|trim }}{% if not loop.last %}|{% endif %}"
        "{% endfor %}{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "{% endfor %}#{{ ns.n }}");
    const Template copy = t;  // shares the immutable syntax tree
    std::vector<std::string> outputs(8);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < outputs.size(); ++i) {
        threads.emplace_back([&, i] {
            ordered_json msgs = ordered_json::array();
            for (size_t k = 0; k <= i; ++k)
                msgs.push_back({{"role", "user"}, {"content", " m" + std::to_string(k) + " "}});
            for (int rep = 0; rep < 200; ++rep)
                outputs[i] = (i % 2 ? copy : t).render(ordered_json{{"messages", msgs}});
        });
    }
    for (auto& th : threads) th.join();
    for (size_t i = 0; i < outputs.size(); ++i) {
        std::string want;
        for (size_t k = 0; k <= i; ++k)
            want += (k ? "|" : "") + std::string("user:m") + std::to_string(k);
        EXPECT_EQ(outputs[i], want + "#" + std::to_string(i + 1));
    }
}

TEST(TemplateApi, ParseOptions) {
    const std::string src = "  {% if true %}\n  x\n  {% endif %}\n";
    EXPECT_EQ(Template::parse(src).render(json::object()), "  x\n");
    ParseOptions plain;
    plain.trim_blocks = false;
    plain.lstrip_blocks = false;
    EXPECT_EQ(Template::parse(src, plain).render(json::object()), "  \n  x\n  ");
}

TEST(TemplateApi, ChatHelper) {
    const std::string src =
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
        "{% if tools is defined %}T{{ tools|length }}{% endif %}{% if add_generation_prompt "
        "%}[assistant]{% endif %}"
        "{{ eos_token }}|{{ strftime_now('%Y-%m-%d %a') }}|{{ custom }}";
    const json msgs = json::array({{{"role", "user"}, {"content", "hi"}}});
    ChatOptions opts;
    std::tm day{};
    day.tm_year = 2026 - 1900;
    day.tm_mon = 10;
    day.tm_mday = 21;
    opts.now = day;
    EXPECT_EQ(
        apply_chat_template(src, msgs, true, "<s>", "</s>", nullptr, json{{"custom", 7}}, opts),
        "<s>[user]hi[assistant]</s>|2026-11-21 Sat|7");
    EXPECT_EQ(apply_chat_template(src, msgs, false, "", "", json::array({1, 2}), {}, opts),
              "[user]hiT2|2026-11-21 Sat|");
    // Without a fixed date strftime_now formats the local time.
    EXPECT_EQ(apply_chat_template("{{ strftime_now('%Y')|length }}", msgs, false, "", ""), "4");
    EXPECT_THROW(apply_chat_template("{{ raise_exception('bad') }}", msgs, false, "", ""), Error);

    const ChatTemplate ct("{{ messages|length }}{{ add_generation_prompt }}");
    EXPECT_EQ(ct.apply(ordered_json::array({1, 2, 3}), false, "", ""), "3False");
}

TEST(TemplateApi, CustomGlobals) {
    RenderOptions opts;
    opts.globals.emplace_back("twice", make_function("twice", [](Context& ctx, CallArgs& a) {
                                  return binary_op(BinOp::Mul, a.pos.at(0), Value(int64_t{2}), ctx);
                              }));
    opts.globals.emplace_back("version", Value("1.2"));
    const Value ctx = from_json(ordered_json{{"version", "ctx wins"}});
    EXPECT_EQ(Template::parse("{{ twice(21) }} {{ twice('ab') }} {{ version }}").render(ctx, opts),
              "42 abab ctx wins");
}

}  // namespace
