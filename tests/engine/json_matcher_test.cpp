// Structured output: JSON schemas compile or fail with a message naming the problem; the
// matcher accepts exactly the texts a schema allows (hand-written documents, each checked
// prefix by prefix); the trie walk that finds allowed tokens agrees with testing every
// token on its own; generation under a schema gives JSON that a separate parser reads and
// that has the schema's shape.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "engine/context.h"
#include "engine/generate.h"
#include "engine/json_matcher.h"
#include "engine/json_schema.h"
#include "engine/sampler.h"
#include "shared_path.h"
#include "tokenizer/token_trie.h"
#include "tokenizer/vocab.h"

namespace lokal {
namespace {

using nlohmann::json;

// Every proper prefix is accepted and incomplete; the whole text is accepted and complete.
void expect_valid(const std::shared_ptr<const JsonSchema>& s, const std::string& text) {
    SCOPED_TRACE(text);
    for (size_t n = 0; n < text.size(); ++n) {
        JsonMatcher m(s);
        ASSERT_TRUE(m.feed(text.substr(0, n))) << "prefix of " << n << " bytes refused";
        // A number (or number literal) at the root may end after any digit.
        if (!text.empty() && text[0] != '-' && !isdigit((unsigned char)text[0])) {
            EXPECT_FALSE(m.can_end()) << "complete after " << n << " bytes";
        }
    }
    JsonMatcher m(s);
    ASSERT_TRUE(m.feed(text));
    EXPECT_TRUE(m.can_end());
}

// Some prefix is refused (the text is never complete).
void expect_invalid(const std::shared_ptr<const JsonSchema>& s, const std::string& text) {
    JsonMatcher m(s);
    EXPECT_FALSE(m.feed(text) && m.can_end()) << text;
}

TEST(JsonSchema, ErrorsNameTheProblem) {
    const std::pair<const char*, const char*> cases[] = {
        {R"({"type": "string", "pattern": "^a"})", "pattern"},
        {R"({"type": "integer", "minimum": 3})", "minimum"},
        {R"({"type": "object", "properties": {"a": {"not": {}}}})", "not"},
        {R"({"type": "strin"})", "strin"},
        {R"({"type": "object", "properties": {}, "required": ["x"]})", "'x'"},
        {R"({"type": "array", "minItems": 3, "maxItems": 2})", "minItems > maxItems"},
        {R"({"type": "array", "minItems": -1})", "minItems"},
        {R"({"type": "array", "minItems": 1.5})", "minItems"},
        {R"({"$ref": "#/$defs/missing"})", "does not resolve"},
        {R"({"$ref": "http://example.com/s.json"})", "local"},
        {R"({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})", "itself"},
        {R"({"allOf": [{"type": "string"}, {"maxLength": 3}]})", "allOf"},
        {R"({"enum": []})", "enum"},
        {"false", "allows no value"},
        {"42", "must be an object"},
        {R"({"type": "string")", "not valid JSON"},
    };
    for (auto [schema, needle] : cases) {
        SCOPED_TRACE(schema);
        try {
            compile_json_schema(schema);
            ADD_FAILURE() << "compiled";
        } catch (const JsonSchemaError& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    }
    // Hostile nesting is refused before parsing.
    EXPECT_THROW(compile_json_schema(std::string(100000, '[') + std::string(100000, ']')),
                 JsonSchemaError);
    std::string deep = "true";
    for (int i = 0; i < 100; ++i) deep = R"({"type":"array","items":)" + deep + "}";
    EXPECT_THROW(compile_json_schema(deep), JsonSchemaError);
}

TEST(JsonMatcher, AnyObject) {
    const auto s = json_object_schema();
    for (const char* ok :
         {R"({})", R"({"a": 1})",
          "{\n  \"a\": [1, -2.5e+3, 0, \"x\\n\\u00e9\", true, null, {\"b\": {}}]\n}",
          R"({"k":"é€😀","":[[],[[]]]})"})
        expect_valid(s, ok);
    const char* bad[] = {"[1]",
                         "1",
                         "\"a\"",
                         R"({"a":})",
                         R"({"a" 1})",
                         "{'a':1}",
                         "{} ",
                         R"({"a":01})",
                         R"({"a":1.})",
                         R"({"a":-})",
                         R"({"a":.5})",
                         R"({"a":1e})",
                         R"({"a":tru})",
                         R"({"a":True})",
                         R"({"a":[1,]})",
                         R"({"a":1,})",
                         R"({,})",
                         "{\"a\":\"\x01\"}",
                         "{\"a\":\"\xC0\x80\"}",
                         "{\"a\":\"\xED\xA0\x80\"}",
                         "{\"a\":\"\\x\"}",
                         R"({"a":"\u12G4"})",
                         "{\"a\":\"\x80\"}",
                         R"({"a":1}})",
                         R"({"a":[1})"};
    for (const char* b : bad) expect_invalid(s, b);
    // Whitespace: a space, or a newline and an indent of at most kMaxIndent; none may
    // follow the root value.
    const std::string indent(JsonMatcher::kMaxIndent, ' ');
    expect_valid(s, "{\n" + indent + "\"a\": [\n\t\t1 ,\n2\n]\n}");
    expect_valid(s, "{ \"a\" : 1 }");
    expect_invalid(s, "{\n" + indent + " }");
    expect_invalid(s, "{  }");
    expect_invalid(s, "{\n\n}");
    expect_invalid(s, "{ \n}");
    expect_invalid(s, "{\t}");
    expect_invalid(s, " {}");
    JsonMatcher m(s);
    ASSERT_TRUE(m.feed("{\"a\": 1"));
    EXPECT_FALSE(m.finished());
    ASSERT_TRUE(m.feed("}"));
    EXPECT_TRUE(m.finished());
    EXPECT_FALSE(m.accepts(" "));
    // A refused feed changes nothing.
    JsonMatcher r(s);
    ASSERT_TRUE(r.feed("{\"a\""));
    EXPECT_FALSE(r.feed(":}"));
    EXPECT_TRUE(r.feed(": 2}"));
}

TEST(JsonMatcher, PropertiesInOrderRequiredAndTypes) {
    const auto s = compile_json_schema(R"({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 4},
            "age": {"type": "integer"},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "pet": {"type": ["string", "null"]}
        },
        "required": ["name", "age"]
    })");
    for (const char* ok : {R"({"name":"Bo","age":3})", R"({"name":"Bo","age":-3,"score":2.5E-2})",
                           R"({"name":"Bo","age":1234567890123456,"score":-0.125})",
                           R"({"name":"Bo","age":3,"tags":["a","b"]})",
                           R"({ "name" : "éèêë" , "age" : 0 , "pet" : null })",
                           R"({"name":"Bo","age":3,"tags":[],"pet":"cat"})"})
        expect_valid(s, ok);
    for (const char* bad :
         {R"({"age":3,"name":"Bo"})",                  // order
          R"({"name":"Bo"})",                          // age missing
          R"({"name":"","age":3})",                    // minLength
          R"({"name":"Bobby","age":3})",               // maxLength
          R"({"name":"Bo","age":3.5})",                // integer
          R"({"name":"Bo","age":1e3})",                // integer
          R"({"name":"Bo","age":12345678901234567})",  // 17 digits
          R"({"name":"Bo","age":3,"tags":["a","b","c"]})",
          R"({"name":"Bo","age":3,"x":1})",  // no additional properties
          R"({"name":"Bo","age":3,"pet":3})", R"({"name":"Bo","age":3,"score":2,"score":3})",
          R"({"name":"Bo","name":"Al","age":3})"})
        expect_invalid(s, bad);
}

TEST(JsonMatcher, EnumsConstAnyOfNullable) {
    const auto e = compile_json_schema(R"({"enum": ["red", "green", 1, 12, {"a": [true]}]})");
    for (const char* ok : {R"("red")", R"("green")", "1", "12", R"({"a":[true]})"})
        expect_valid(e, ok);
    for (const char* bad : {R"("blue")", R"("re")", "2", "123", "1.0", R"({"a": [true]})"})
        expect_invalid(e, bad);
    const auto c = compile_json_schema(R"({"type": "object", "properties":
        {"v": {"const": "x"}, "n": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
         "o": {"type": "string", "nullable": true}}, "required": ["v", "n", "o"]})");
    expect_valid(c, R"({"v":"x","n":5,"o":null})");
    expect_valid(c, R"({"v":"x","n":false,"o":"s"})");
    expect_invalid(c, R"({"v":"y","n":5,"o":null})");
    expect_invalid(c, R"({"v":"x","n":"5","o":null})");
    expect_invalid(c, R"({"v":"x","n":5,"o":3})");
}

TEST(JsonMatcher, RecursiveRefsAndAdditionalProperties) {
    const auto tree = compile_json_schema(R"({
        "$defs": {"node": {"type": "object", "properties": {
            "v": {"type": "integer"},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["v"]}},
        "$ref": "#/$defs/node"})");
    expect_valid(tree, R"({"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]})");
    expect_invalid(tree, R"({"v":1,"kids":[{"w":2}]})");
    const auto extra = compile_json_schema(R"({"type": "object", "properties": {"id": {"type":
        "integer"}}, "required": ["id"], "additionalProperties": {"type": "string"}})");
    expect_valid(extra, R"({"id":1,"a":"x","b":"y"})");
    expect_invalid(extra, R"({"id":1,"a":2})");
    expect_invalid(extra, R"({"a":"x","id":1})");  // listed properties first
    const auto open = compile_json_schema(R"({"type": "object"})");
    expect_valid(open, R"({"anything":[1,{"goes":null}]})");
    // Nesting deeper than the matcher's stack limit is refused, not followed.
    std::string deep;
    for (int i = 0; i < JsonMatcher::kMaxDepth + 1; ++i) deep += "{\"a\":";
    JsonMatcher m(json_object_schema());
    EXPECT_FALSE(m.feed(deep + "1"));
}

// Tool calls: raw text around one call object of one of the functions, each function's
// parameters compiled on its own ($refs resolve inside them).
TEST(JsonMatcher, ToolCallSchema) {
    const std::vector<ToolSchema> fns = {
        {"get_weather", R"({"type": "object", "properties": {"location": {"type": "string"},
            "unit": {"enum": ["c", "f"]}}, "required": ["location"]})"},
        {"add", R"({"type": "object", "properties": {"a": {"$ref": "#/$defs/n"},
            "b": {"$ref": "#/$defs/n"}}, "required": ["a", "b"], "$defs": {"n": {"type": "integer"}}})"},
        {"ping", ""}};
    const auto hermes = tool_call_schema(fns, "arguments", "<tool_call>\n", "\n</tool_call>");
    for (const char* ok :
         {"<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"location\":\"Paris\"}}\n</"
          "tool_call>",
          "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": -2}}\n</tool_call>",
          "<tool_call>\n{\"name\":\"ping\",\"arguments\":{}}\n</tool_call>",
          "<tool_call>\n "
          "{\"name\":\"get_weather\",\"arguments\":{\"location\":\"x\",\"unit\":\"f\"}} "
          "\n</tool_call>"})
        expect_valid(hermes, ok);
    for (const char* bad :
         {"{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}",  // no wrapper
          "<tool_call>\n{\"name\":\"sub\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_call>",
          "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1.5,\"b\":2}}\n</tool_call>",
          "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1}}\n</tool_call>",
          "<tool_call>\n{\"arguments\":{\"a\":1,\"b\":2},\"name\":\"add\"}\n</tool_call>",
          "<tool_call>\n{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}\n</tool_cal",
          "Sure! <tool_call>\n{\"name\":\"ping\",\"arguments\":{}}\n</tool_call>"})
        expect_invalid(hermes, bad);
    // Llama 3 style: the object alone, arguments under "parameters".
    const auto llama = tool_call_schema(fns, "parameters", "", "");
    expect_valid(llama, R"({"name": "add", "parameters": {"a": 3, "b": 4}})");
    expect_invalid(llama, R"({"name": "add", "arguments": {"a": 3, "b": 4}})");
    try {
        tool_call_schema({{"bad", R"({"type": "string", "pattern": "x"})"}}, "arguments", "", "");
        ADD_FAILURE() << "compiled";
    } catch (const JsonSchemaError& e) {
        EXPECT_NE(std::string(e.what()).find("'bad'"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("pattern"), std::string::npos) << e.what();
    }
    EXPECT_THROW(tool_call_schema({}, "arguments", "", ""), JsonSchemaError);
}

// What the schema fuzzer found (tests/engine/malformed_schemas): each case as a rule.
TEST(JsonMatcher, FuzzFindingsStayFixed) {
    // Numbers a JSON parser can read: exponents of at most two digits.
    const auto num = compile_json_schema(R"({"type": "number"})");
    expect_valid(num, "1e99");
    expect_valid(num, "-2.5E-07");
    expect_invalid(num, "1e999");
    // Surrogate escapes come in pairs, and a pair is one code point.
    const auto one = compile_json_schema(R"({"type": "string", "maxLength": 1, "minLength": 1})");
    expect_valid(one, R"("\ud83d\ude00")");
    expect_valid(one, R"("\u00e9")");
    for (const char* bad : {R"("\ud800")", R"("\ude00")", R"("\ud83d\u0041")", R"("ab")"})
        expect_invalid(one, bad);
    // An additional key may not repeat a listed one.
    const auto extra = compile_json_schema(R"({"type": "object", "properties": {"a": {"type":
        "integer"}}, "additionalProperties": true})");
    expect_valid(extra, R"({"a":1,"ab":"x"})");
    expect_valid(extra, R"({"b":"x"})");
    for (const char* bad : {R"({"a":"x"})", R"({"a":1,"a":2})"}) expect_invalid(extra, bad);
    // Schemas that allow nothing are errors; $ref chains and fan-outs compile small.
    EXPECT_THROW(compile_json_schema(R"({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref":
        "#/$defs/a"}}, "$ref": "#/$defs/a"})"),
                 JsonSchemaError);
    EXPECT_THROW(compile_json_schema(R"({"$defs": {"n": {"type": "object", "properties":
        {"next": {"$ref": "#/$defs/n"}}, "required": ["next"]}}, "$ref": "#/$defs/n"})"),
                 JsonSchemaError);
    std::string chain = R"({"$defs": {"d0": {"type": "integer"})";
    for (int i = 1; i < 48; ++i)
        chain += ", \"d" + std::to_string(i) + "\": {\"$ref\": \"#/$defs/d" +
                 std::to_string(i - 1) + "\"}";
    chain += R"(}, "$ref": "#/$defs/d47"})";
    expect_valid(compile_json_schema(chain), "42");
    const auto fan = compile_json_schema(R"({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"},
        {"$ref": "#/$defs/a"}, {"$ref": "#/$defs/a"}, {"type": "array", "items": {"$ref":
        "#/$defs/a"}}, {"type": "null"}]}}, "$ref": "#/$defs/a"})");
    expect_valid(fan, "[[null,[]],null]");
    // At the nesting limit nothing is begun that cannot be finished: no dead ends.
    const auto deep = compile_json_schema(R"({"$defs": {"o": {"type": "object", "properties":
        {"c": {"$ref": "#/$defs/o"}}}}, "$ref": "#/$defs/o"})");
    JsonMatcher m(deep);
    int levels = 0;
    while (m.feed("{\"c\":")) ++levels;
    EXPECT_LT(levels, JsonMatcher::kMaxDepth);
    EXPECT_TRUE(m.feed("{}"));
    for (int i = 0; i < levels; ++i) ASSERT_TRUE(m.feed("}"));
    EXPECT_TRUE(m.can_end());
}

// What a review of the matcher found: each case as a rule.
TEST(JsonMatcher, ReviewFindingsStayFixed) {
    // A $ref cycle below the root allows no value there, and nothing reads past the nodes.
    const auto cyc = compile_json_schema(R"({"type": "object", "properties": {"x": {"$ref":
        "#/$defs/a"}, "y": {"type": "array", "items": {"$ref": "#/$defs/a"}}},
        "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}})");
    expect_valid(cyc, R"({"y":[]})");
    expect_invalid(cyc, R"({"x":1})");
    expect_invalid(cyc, R"({"y":[1]})");
    // Keywords beside $ref / const / enum / anyOf are refused, not ignored; "type" beside
    // enum/const must fit the values.
    for (const char* bad :
         {R"({"enum": ["a", "bbbb"], "maxLength": 2})", R"({"const": "x", "type": "integer"})",
          R"({"anyOf": [{"type": "array"}], "maxItems": 1})",
          R"({"$defs": {"a": {"type": "string"}}, "$ref": "#/$defs/a", "maxLength": 1})",
          R"({"allOf": [{"type": "string"}], "minLength": 3})"})
        EXPECT_THROW(compile_json_schema(bad), JsonSchemaError) << bad;
    for (const char* ok : {R"({"type": "string", "enum": ["a", "b"]})",
                           R"({"type": ["integer", "null"], "enum": [1, null]})",
                           R"({"anyOf": [{"type": "string"}], "title": "T", "default": null})"})
        EXPECT_NO_THROW(compile_json_schema(ok)) << ok;
    // Tool parameters are their own document: "#" is the parameters, not the call.
    const auto tree = tool_call_schema({{"node", R"({"type": "object", "properties": {"label":
        {"type": "string"}, "child": {"$ref": "#"}}})"}},
                                       "arguments", "", "");
    expect_valid(tree, R"({"name":"node","arguments":{"label":"a","child":{"label":"b"}}})");
    expect_invalid(tree, R"({"name":"node","arguments":{"child":{"name":"x","arguments":{}}}})");
    EXPECT_THROW(tool_call_schema({{"s", R"({"type": "string"})"}}, "arguments", "", ""),
                 JsonSchemaError);
    // An additional key may not spell a listed key with escapes.
    const auto extra = compile_json_schema(R"({"type": "object", "properties": {"age": {"type":
        "integer"}}, "additionalProperties": {"type": "string"}})");
    expect_invalid(extra, R"({"age":5,"\u0061ge":"x"})");
    expect_valid(extra, R"({"age":5,"x\u0061":"x"})");
    // No ',' after which no key can fit (near the nesting limit).
    const auto n = compile_json_schema(R"({"$defs": {"n": {"type": "object", "properties":
        {"v": {"type": "integer"}, "c": {"type": "array", "minItems": 1, "items": {"$ref":
        "#/$defs/n"}}}}}, "$ref": "#/$defs/n"})");
    JsonMatcher m(n);
    int levels = 0;
    while (m.feed("{\"c\":[")) ++levels;
    ASSERT_TRUE(m.feed("{\"v\":1"));
    if (!m.accepts(",")) {
        EXPECT_TRUE(m.accepts("}"));
    } else {
        EXPECT_TRUE(m.accepts(",\""));
    }
}

struct Loaded {
    std::unique_ptr<Model> model;
    std::unique_ptr<Vocab> vocab;
};
Loaded load(const char* name) {
    Loaded l;
    l.model = Model::load(test::shared_path(std::string("models/") + name));
    l.vocab = Vocab::from_gguf(*l.model->file);
    return l;
}

// The trie walk finds exactly the tokens that, tested one by one, can be appended.
TEST(JsonMatcher, AllowedTokensMatchesTestingEachToken) {
    const auto s = compile_json_schema(R"({"type": "object", "properties": {
        "name": {"type": "string"}, "n": {"type": "number"},
        "e": {"enum": ["alpha", "beta"]}}, "required": ["name", "n", "e"]})");
    const std::string doc = R"({"name": "a b\"c", "n": -12.5e3, "e": "beta"})";
    for (const char* model : {"stories260K.gguf", "tiny-qwen2.Q8_0.gguf"}) {
        SCOPED_TRACE(model);
        Loaded l = load(model);
        const TokenTrie& trie = l.vocab->token_trie();
        ASSERT_GT(trie.tokens().size(), 100u);
        for (size_t n = 0; n <= doc.size(); ++n) {
            JsonMatcher m(s);
            ASSERT_TRUE(m.feed(doc.substr(0, n)));
            std::vector<uint8_t> allowed;
            ASSERT_TRUE(m.allowed_tokens(trie, allowed));
            ASSERT_EQ(allowed.size(), (size_t)l.vocab->n_tokens());
            int n_allowed = 0;
            for (int32_t t = 0; t < l.vocab->n_tokens(); ++t) {
                bool expect;
                if (l.vocab->is_eog(t)) {
                    expect = n == doc.size();  // only the complete document may end
                } else {
                    const std::string piece = l.vocab->token_to_piece(t);
                    const auto type = l.vocab->type(t);
                    const bool text = type == Vocab::kNormal || type == Vocab::kByte ||
                                      type == Vocab::kUserDefined;
                    expect = text && !piece.empty() && m.accepts(piece);
                }
                ASSERT_EQ(allowed[(size_t)t] != 0, expect)
                    << "after " << n << " bytes, token " << t;
                n_allowed += expect;
            }
            EXPECT_GT(n_allowed, 0) << "after " << n << " bytes";
        }
    }
}

// A state so costly that the allowed-token walk gives up (many deep ways of reading): the
// sampler then takes the most likely tokens that fit, one check each, and stays valid.
TEST(JsonMatcher, CostlyStatesFallBackToCheckingTokens) {
    std::string alts;
    for (int i = 1; i <= 32; ++i)
        alts += std::string(i > 1 ? "," : "") + R"({"type": "string", "maxLength": )" +
                std::to_string(100 + i) + "}";
    std::string schema = R"({"anyOf": [)" + alts + "]}";
    for (int i = 0; i < 56; ++i)
        schema = R"({"type": "array", "minItems": 1, "items": )" + schema + "}";
    const auto s = compile_json_schema(schema);
    const std::string prefix = std::string(56, '[') + "\"abc";
    Loaded l = load("tiny-qwen2.Q8_0.gguf");
    JsonMatcher m(s);
    ASSERT_TRUE(m.feed(prefix));
    std::vector<uint8_t> allowed;
    EXPECT_FALSE(m.allowed_tokens(l.vocab->token_trie(), allowed));
    SamplerParams sp;
    sp.temperature = 0;
    sp.json_schema = s;
    Sampler sampler(sp, l.vocab->n_tokens(), l.vocab.get());
    // The token whose bytes are exactly `piece` (byte-level BPE spells "\n" differently).
    auto token_of = [&](const std::string& piece) {
        for (int32_t t = 0; t < l.vocab->n_tokens(); ++t)
            if (!l.vocab->is_control(t) && l.vocab->token_to_piece(t) == piece) return t;
        return int32_t{-1};
    };
    const int32_t newline = token_of("\n");
    ASSERT_GE(newline, 0);
    std::string out;
    for (int step = 0; step < 200 && out.size() < prefix.size(); ++step) {
        // Scripted: the prefix byte by byte, then a newline (never fits inside a string).
        std::vector<float> logits((size_t)l.vocab->n_tokens(), 0.0f);
        for (int32_t t = 0; t < l.vocab->n_tokens(); ++t) logits[(size_t)t] = -0.001f * (float)t;
        const std::string want = out.size() < prefix.size() ? prefix.substr(out.size(), 1) : "\n";
        const int32_t tok = token_of(want);
        ASSERT_GE(tok, 0) << want;
        logits[(size_t)tok] += 100;
        const int32_t got = sampler.sample(logits.data());
        ASSERT_FALSE(l.vocab->is_eog(got));
        out += l.vocab->token_to_piece(got);
    }
    ASSERT_EQ(out, prefix);
    std::vector<float> logits((size_t)l.vocab->n_tokens(), 0.0f);
    logits[(size_t)newline] = 100;
    const int32_t next = sampler.sample(logits.data());
    EXPECT_NE(l.vocab->token_to_piece(next), "\n");
    EXPECT_TRUE(l.vocab->is_eog(next) || m.accepts(l.vocab->token_to_piece(next)))
        << l.vocab->token_to_piece(next);
}

// A lazy constraint (tool calls in "auto" mode) leaves the text alone until the trigger,
// then keeps the call valid. The "model" here prefers, at each step, the byte token of the
// next character of a scripted answer (whose call has an argument outside its enum), else
// lower token ids; greedy sampling.
TEST(JsonMatcher, LazyTriggerConstrainsOnlyTheCall) {
    Loaded l = load("stories260K.gguf");
    const Vocab& v = *l.vocab;
    std::map<char, int32_t> byte_token;
    for (int32_t t = 0; t < v.n_tokens(); ++t) {
        const std::string p = v.token_to_piece(t);
        if (p.size() == 1 && !v.is_control(t) && !byte_token.count(p[0])) byte_token[p[0]] = t;
    }
    auto run = [&](const std::string& script, const std::string& trigger, bool at_start,
                   std::shared_ptr<const JsonSchema> schema) {
        SamplerParams sp;
        sp.temperature = 0;
        sp.json_schema = std::move(schema);
        sp.json_trigger = trigger;
        sp.json_trigger_at_start = at_start;
        Sampler sampler(sp, v.n_tokens(), &v);
        std::string out;
        for (int step = 0; step < 400; ++step) {
            std::vector<float> logits((size_t)v.n_tokens());
            for (int32_t t = 0; t < v.n_tokens(); ++t) logits[(size_t)t] = -0.001f * (float)t;
            if (script.compare(0, out.size(), out) == 0 && out.size() < script.size())
                logits[(size_t)byte_token.at(script[out.size()])] += 10;
            else
                logits[(size_t)v.eos()] += 10;
            const int32_t tok = sampler.sample(logits.data());
            if (v.is_eog(tok)) break;
            out += v.token_to_piece(tok);
        }
        return out;
    };
    const auto schema =
        tool_call_schema({{"f", R"({"type": "object", "properties": {"u": {"enum": ["c", "f"]}},
                  "required": ["u"], "additionalProperties": false})"}},
                         "arguments", "<tool_call>\n", "\n</tool_call>");
    const std::string script =
        "Sure. <tool_call>\n{\"name\": \"f\", \"arguments\": {\"u\": \"x\"}}\n</tool_call>";
    const std::string out = run(script, "<tool_call>", false, schema);
    const std::string head = "Sure. <tool_call>\n";
    ASSERT_EQ(out.substr(0, head.size()), head) << out;
    const size_t close = out.find("</tool_call>");
    ASSERT_NE(close, std::string::npos) << out;
    json call;
    ASSERT_NO_THROW(call = json::parse(out.substr(head.size(), close - head.size()))) << out;
    EXPECT_EQ(call["name"], "f");
    EXPECT_TRUE(call["arguments"]["u"] == "c" || call["arguments"]["u"] == "f") << out;
    // Without the trigger nothing is constrained: the script comes out as written.
    const std::string plain = "No call: {\"u\": \"x\"} <tool_";
    EXPECT_EQ(run(plain, "<tool_call>", false, schema), plain);
    // A trigger at the start only: text that starts otherwise stays free.
    const auto llama =
        tool_call_schema({{"f", R"({"type": "object", "properties": {"u": {"enum": ["c", "f"]}},
                  "required": ["u"], "additionalProperties": false})"}},
                         "parameters", "", "");
    EXPECT_EQ(run("Hi {\"name\": 3}", "{", true, llama), "Hi {\"name\": 3}");
    const std::string started = run("{\"name\": 3}", "{", true, llama);
    EXPECT_TRUE(json::accept(started)) << started;
    EXPECT_EQ(json::parse(started)["name"], "f") << started;
}

// Generating under a schema, at a high temperature from a model that knows nothing of JSON,
// ends in a document a separate parser reads, with the schema's keys and types.
TEST(JsonMatcher, GenerationFollowsTheSchema) {
    const char* schema = R"({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 8},
        "count": {"type": "integer"},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
        "required": ["name", "count", "ok", "tags"], "additionalProperties": false})";
    for (const char* model : {"stories260K.gguf", "tiny-qwen2.Q8_0.gguf"}) {
        Loaded l = load(model);
        ContextParams cp;
        cp.n_ctx = 1024;
        Context ctx(*l.model, cp);
        for (uint64_t seed : {1, 2, 3}) {
            SCOPED_TRACE(std::string(model) + " seed " + std::to_string(seed));
            GenerateOptions o;
            o.n_predict = 900;
            o.sampling.temperature = 1.5f;
            o.sampling.top_k = 40;
            o.sampling.top_p = 1.0f;
            o.sampling.min_p = 0;
            o.sampling.seed = seed;
            o.sampling.json_schema = compile_json_schema(schema);
            const int32_t seq = ctx.cache().create_sequence();
            const auto prompt = l.vocab->tokenize("Once upon a time", true, false);
            const GenerateResult r =
                generate(ctx, *l.vocab, seq, prompt, o, [](const std::string&) { return true; });
            ctx.cache().free_sequence(seq);
            EXPECT_EQ(r.stop_reason, "eog");
            json j;
            ASSERT_NO_THROW(j = json::parse(r.text)) << r.text;
            ASSERT_TRUE(j.is_object()) << r.text;
            EXPECT_EQ(j.size(), 4u) << r.text;
            ASSERT_TRUE(j["name"].is_string()) << r.text;
            EXPECT_TRUE(j["count"].is_number_integer()) << r.text;
            EXPECT_TRUE(j["ok"].is_boolean()) << r.text;
            ASSERT_TRUE(j["tags"].is_array()) << r.text;
            EXPECT_LE(j["tags"].size(), 3u);
            for (const auto& t : j["tags"]) EXPECT_TRUE(t == "a" || t == "b") << r.text;
        }
    }
}

}  // namespace
}  // namespace lokal
