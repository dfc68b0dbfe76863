#include "engine/json_schema.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

namespace lokal {
namespace {

using ojson = nlohmann::ordered_json;
using Kind = JsonSchema::Kind;

// Keywords that constrain values in ways the matcher does not enforce: refused by name.
const std::set<std::string> kUnsupported = {"pattern",
                                            "minimum",
                                            "maximum",
                                            "exclusiveMinimum",
                                            "exclusiveMaximum",
                                            "multipleOf",
                                            "minProperties",
                                            "maxProperties",
                                            "uniqueItems",
                                            "contains",
                                            "minContains",
                                            "maxContains",
                                            "prefixItems",
                                            "patternProperties",
                                            "propertyNames",
                                            "dependentRequired",
                                            "dependentSchemas",
                                            "dependencies",
                                            "if",
                                            "then",
                                            "else",
                                            "not",
                                            "unevaluatedItems",
                                            "unevaluatedProperties",
                                            "additionalItems",
                                            "contentEncoding",
                                            "contentMediaType",
                                            "$dynamicRef",
                                            "$recursiveRef"};

}  // namespace

bool json_nesting_within(std::string_view text, int max_depth) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth) return false;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return true;
}

namespace {

constexpr int32_t kNoValue = 1 << 20;  // min_depth of a node no value can complete

// After compiling: single-alternative AnyOf nodes (refs) are looked through, AnyOf members
// that are AnyOf are inlined (so expanding a value start is one level, however the refs
// were written), and each node's min_depth is computed. Throws when the root allows no
// value within the nesting limit.
void finalize(JsonSchema& s) {
    const size_t n = s.nodes.size();
    // Where a chain of single-alternative AnyOf nodes ends (-1: a cycle of them).
    auto resolve = [&](int32_t i) {
        for (size_t steps = 0; i >= 0 && steps <= n; ++steps) {
            const JsonSchema::Node& node = s.nodes[(size_t)i];
            if (node.kind != Kind::AnyOf || node.alternatives.size() != 1) return i;
            i = node.alternatives[0];
        }
        return int32_t{-1};
    };
    // A cycle of refs allows no value: it points at a node that never completes (an AnyOf
    // without alternatives) instead of an index the matcher could not read.
    int32_t never = -1;
    auto fix = [&](int32_t& i) {
        if (i < 0) return;
        i = resolve(i);
        if (i >= 0) return;
        if (never < 0) {
            s.nodes.emplace_back();
            s.nodes.back().kind = Kind::AnyOf;
            never = (int32_t)s.nodes.size() - 1;
        }
        i = never;
    };
    for (size_t i = 0; i < n; ++i) {
        JsonSchema::Node& node = s.nodes[i];
        for (auto& p : node.props) fix(p.node);
        fix(node.additional);
        fix(node.items);
        fix(node.key_node);
        if (node.kind == Kind::Sequence)
            for (int32_t& a : node.alternatives) fix(a);
    }
    // Inline nested AnyOf members (depth first, each node once per expansion).
    for (size_t i = 0; i < n; ++i) {
        if (s.nodes[i].kind != Kind::AnyOf) continue;
        std::vector<int32_t> flat,
            stack(s.nodes[i].alternatives.rbegin(), s.nodes[i].alternatives.rend());
        std::vector<uint8_t> seen(n, 0);
        seen[i] = 1;
        while (!stack.empty()) {
            const int32_t a = resolve(stack.back());
            stack.pop_back();
            if (a < 0 || seen[(size_t)a]) continue;
            seen[(size_t)a] = 1;
            if (s.nodes[(size_t)a].kind == Kind::AnyOf) {
                const auto& alts = s.nodes[(size_t)a].alternatives;
                stack.insert(stack.end(), alts.rbegin(), alts.rend());
            } else {
                flat.push_back(a);
            }
        }
        s.nodes[i].alternatives = std::move(flat);
    }
    s.root = resolve(s.root);
    // min_depth by fixed point (recursive schemas converge from "no value").
    for (auto& node : s.nodes) node.min_depth = kNoValue;
    auto md = [&](int32_t i) { return i < 0 ? kNoValue : s.nodes[(size_t)i].min_depth; };
    for (bool changed = true; changed;) {
        changed = false;
        for (auto& node : s.nodes) {
            int32_t d = 1;
            switch (node.kind) {
                case Kind::Literal:
                    d = node.literals.empty() ? kNoValue : 1;
                    break;
                case Kind::String:
                case Kind::Number:
                case Kind::Integer:
                    break;
                case Kind::Array:
                    if (node.min_items > 0) d = 1 + md(node.items);
                    break;
                case Kind::Object:
                    for (const auto& p : node.props)
                        if (p.required) d = std::max(d, 1 + md(p.node));
                    break;
                case Kind::Sequence:
                    for (int32_t a : node.alternatives) d = std::max(d, 1 + md(a));
                    break;
                case Kind::AnyOf:
                    d = kNoValue;
                    for (int32_t a : node.alternatives) d = std::min(d, md(a));
                    break;
            }
            d = std::min(d, kNoValue);
            if (d < node.min_depth) {
                node.min_depth = d;
                changed = true;
            }
        }
    }
    if (s.root < 0 || md(s.root) > kJsonSchemaMaxDepth)
        throw JsonSchemaError(
            "the JSON schema allows no value within " + std::to_string(kJsonSchemaMaxDepth) +
            " levels of nesting (a $ref cycle, or a required property that recurses forever?)");
}

class Compiler {
  public:
    explicit Compiler(ojson doc) : doc_(std::move(doc)) {}

    JsonSchema run() {
        s_.root = compile(doc_, 0);
        return take();
    }

    // The always-available pieces of "any value".
    int32_t any_value() {
        if (any_ >= 0) return any_;
        any_ = add(Kind::AnyOf);
        const int32_t obj = add(Kind::Object);
        s_.nodes[(size_t)obj].additional = any_;
        const int32_t arr = add(Kind::Array);
        s_.nodes[(size_t)arr].items = any_;
        const int32_t lit = add(Kind::Literal);
        s_.nodes[(size_t)lit].literals = {"false", "null", "true"};
        s_.nodes[(size_t)any_].alternatives = {obj, arr, plain_string(), add(Kind::Number), lit};
        return any_;
    }
    int32_t any_object() {
        const int32_t obj = add(Kind::Object);
        const int32_t value = any_value();
        s_.nodes[(size_t)obj].additional = value;
        return obj;
    }
    JsonSchema take() {
        s_.plain_string = plain_string();
        finalize(s_);
        return std::move(s_);
    }
    JsonSchema& schema() { return s_; }

  private:
    [[noreturn]] static void fail(const std::string& msg) { throw JsonSchemaError(msg); }

    int32_t add(Kind k) {
        if (s_.nodes.size() >= (size_t)kJsonSchemaMaxNodes)
            fail("JSON schema too large (more than " + std::to_string(kJsonSchemaMaxNodes) +
                 " nodes)");
        s_.nodes.emplace_back();
        s_.nodes.back().kind = k;
        return (int32_t)s_.nodes.size() - 1;
    }
    int32_t plain_string() {
        if (string_ < 0) string_ = add(Kind::String);
        return string_;
    }
    int32_t literal(std::vector<std::string> values) {
        std::sort(values.begin(), values.end());
        values.erase(std::unique(values.begin(), values.end()), values.end());
        const int32_t n = add(Kind::Literal);
        s_.nodes[(size_t)n].literals = std::move(values);
        return n;
    }
    int32_t any_of(std::vector<int32_t> alts) {
        const int32_t n = add(Kind::AnyOf);
        s_.nodes[(size_t)n].alternatives = std::move(alts);
        return n;
    }

    static int64_t count_of(const ojson& s, const char* key) {
        auto it = s.find(key);
        if (it == s.end()) return -1;
        const double v = it->is_number() ? it->get<double>() : -1.0;
        if (!(v >= 0 && v <= 1e9 && v == (double)(int64_t)v))
            fail(std::string("JSON schema '") + key + "' must be an integer from 0 to 1000000000");
        return (int64_t)v;
    }

    // Whether a const/enum value is of one of the types a "type" keyword names.
    static bool of_type(const ojson& v, const ojson& type) {
        auto one = [&](const ojson& t) {
            if (!t.is_string()) return false;
            const std::string n = t.get<std::string>();
            return (n == "null" && v.is_null()) || (n == "boolean" && v.is_boolean()) ||
                   (n == "integer" && v.is_number_integer()) || (n == "number" && v.is_number()) ||
                   (n == "string" && v.is_string()) || (n == "object" && v.is_object()) ||
                   (n == "array" && v.is_array());
        };
        if (type.is_array()) {
            for (const auto& t : type)
                if (one(t)) return true;
            return false;
        }
        return one(type);
    }

    // "#/$defs/Name" (a JSON pointer into the document).
    int32_t ref(const std::string& r, int depth) {
        if (auto it = refs_.find(r); it != refs_.end()) return it->second;
        if (r.empty() || r[0] != '#') fail("JSON schema $ref '" + r + "': only local refs (#/...)");
        const ojson* target = nullptr;
        try {
            target = &doc_.at(ojson::json_pointer(r.substr(1)));
        } catch (const std::exception&) {
            fail("JSON schema $ref '" + r + "' does not resolve");
        }
        // The node exists before its target is compiled, so recursion finds it.
        const int32_t n = add(Kind::AnyOf);
        refs_[r] = n;
        const int32_t t = compile(*target, depth + 1);
        if (t == n) fail("JSON schema $ref '" + r + "' refers to itself");
        s_.nodes[(size_t)n].alternatives = {t};
        return n;
    }

    int32_t compile(const ojson& s, int depth) {
        if (depth > kJsonSchemaMaxDepth) fail("JSON schema nested too deeply");
        if (s.is_boolean()) {
            if (!s.get<bool>()) fail("JSON schema 'false' allows no value");
            return any_value();
        }
        if (!s.is_object())
            fail("JSON schema must be an object, got " + std::string(s.type_name()));
        for (auto it = s.begin(); it != s.end(); ++it)
            if (kUnsupported.count(it.key()))
                fail("JSON schema keyword '" + it.key() + "' is not supported by lokal");

        // Keywords that constrain values; beside $ref, const/enum, anyOf/oneOf and allOf
        // lokal applies only that one, so any other is refused rather than ignored ("type"
        // beside const/enum is checked against the values instead).
        static const char* const kConstraining[] = {
            "type",      "properties", "required", "additionalProperties",
            "items",     "minItems",   "maxItems", "minLength",
            "maxLength", "enum",       "const",    "anyOf",
            "oneOf",     "allOf",      "$ref"};
        auto only = [&](const char* keyword, std::initializer_list<const char*> also) {
            for (const char* k : kConstraining) {
                if (!s.contains(k) || std::string(k) == keyword) continue;
                bool ok = false;
                for (const char* a : also) ok = ok || std::string(k) == a;
                if (!ok)
                    fail(std::string("JSON schema: '") + k + "' beside '" + keyword +
                         "' is not supported");
            }
        };
        if (auto it = s.find("$ref"); it != s.end()) {
            if (!it->is_string()) fail("JSON schema '$ref' must be a string");
            only("$ref", {});
            if (s.contains("nullable"))
                fail("JSON schema: 'nullable' beside '$ref' is not supported");
            return ref(it->get<std::string>(), depth);
        }
        int32_t node = -1;
        if (s.contains("const") || s.contains("enum")) {
            const char* kw = s.contains("const") ? "const" : "enum";
            only(kw, {"type"});
            std::vector<const ojson*> values;
            if (s.contains("const")) {
                values.push_back(&s["const"]);
            } else {
                const ojson& e = s["enum"];
                if (!e.is_array() || e.empty())
                    fail("JSON schema 'enum' must be a non-empty array");
                for (const auto& v : e) values.push_back(&v);
            }
            std::vector<std::string> texts;
            for (const ojson* v : values) {
                if (s.contains("type") && !of_type(*v, s["type"]))
                    fail(std::string("JSON schema: a value of '") + kw + "' is not of its 'type'");
                texts.push_back(v->dump());
            }
            node = literal(std::move(texts));
        } else if (s.contains("anyOf") || s.contains("oneOf")) {
            only(s.contains("anyOf") ? "anyOf" : "oneOf", {});
            const ojson& alts = s.contains("anyOf") ? s["anyOf"] : s["oneOf"];
            if (!alts.is_array() || alts.empty())
                fail("JSON schema 'anyOf'/'oneOf' must be a non-empty array");
            std::vector<int32_t> v;
            for (const auto& a : alts) v.push_back(compile(a, depth + 1));
            node = any_of(std::move(v));
        } else if (auto a = s.find("allOf"); a != s.end()) {
            only("allOf", {});
            if (!a->is_array() || a->size() != 1)
                fail("JSON schema 'allOf' is supported with exactly one member");
            node = compile((*a)[0], depth + 1);
        } else {
            node = typed(s, depth);
        }
        if (auto nb = s.find("nullable"); nb != s.end() && nb->is_boolean() && nb->get<bool>())
            node = any_of({node, literal({"null"})});
        return node;
    }

    int32_t typed(const ojson& s, int depth) {
        std::vector<std::string> types;
        if (auto t = s.find("type"); t != s.end()) {
            if (t->is_string()) {
                types.push_back(t->get<std::string>());
            } else if (t->is_array() && !t->empty()) {
                for (const auto& x : *t) {
                    if (!x.is_string()) fail("JSON schema 'type' entries must be strings");
                    types.push_back(x.get<std::string>());
                }
            } else {
                fail("JSON schema 'type' must be a string or a non-empty array of strings");
            }
        } else if (s.contains("properties") || s.contains("additionalProperties") ||
                   s.contains("required")) {
            types = {"object"};
        } else if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) {
            types = {"array"};
        } else if (s.contains("minLength") || s.contains("maxLength")) {
            types = {"string"};
        } else {
            return any_value();
        }
        std::vector<int32_t> alts;
        for (const std::string& t : types) alts.push_back(one_type(s, t, depth));
        return alts.size() == 1 ? alts[0] : any_of(std::move(alts));
    }

    int32_t one_type(const ojson& s, const std::string& t, int depth) {
        if (t == "null") return literal({"null"});
        if (t == "boolean") return literal({"false", "true"});
        if (t == "number") return add(Kind::Number);
        if (t == "integer") return add(Kind::Integer);
        if (t == "string") {
            const int64_t lo = count_of(s, "minLength"), hi = count_of(s, "maxLength");
            if (lo < 0 && hi < 0) return plain_string();
            if (hi >= 0 && lo > hi) fail("JSON schema minLength > maxLength");
            const int32_t n = add(Kind::String);
            s_.nodes[(size_t)n].min_length = std::max<int64_t>(lo, 0);
            s_.nodes[(size_t)n].max_length = hi;
            return n;
        }
        if (t == "array") {
            const int64_t lo = count_of(s, "minItems"), hi = count_of(s, "maxItems");
            if (hi >= 0 && lo > hi) fail("JSON schema minItems > maxItems");
            int32_t items;
            if (auto it = s.find("items"); it != s.end()) {
                if (it->is_array())
                    fail("JSON schema 'items' as an array (tuples) is not supported");
                items = compile(*it, depth + 1);
            } else {
                items = any_value();
            }
            const int32_t n = add(Kind::Array);
            JsonSchema::Node& a = s_.nodes[(size_t)n];
            a.items = items;
            a.min_items = std::max<int64_t>(lo, 0);
            a.max_items = hi;
            return n;
        }
        if (t == "object") return object(s, depth);
        fail("JSON schema type '" + t + "' is unknown");
    }

    int32_t object(const ojson& s, int depth) {
        std::vector<JsonSchema::Property> props;
        std::map<std::string, size_t> names;  // property name -> index in props
        if (auto p = s.find("properties"); p != s.end()) {
            if (!p->is_object()) fail("JSON schema 'properties' must be an object");
            for (auto it = p->begin(); it != p->end(); ++it) {
                JsonSchema::Property prop;
                prop.key = ojson(it.key()).dump();
                prop.node = compile(it.value(), depth + 1);
                if (++n_props_ > kJsonSchemaMaxNodes)
                    fail("JSON schema too large (more than " + std::to_string(kJsonSchemaMaxNodes) +
                         " properties)");
                names.emplace(it.key(), props.size());
                props.push_back(std::move(prop));
            }
        }
        if (auto r = s.find("required"); r != s.end()) {
            if (!r->is_array()) fail("JSON schema 'required' must be an array");
            for (const auto& name : *r) {
                if (!name.is_string()) fail("JSON schema 'required' entries must be strings");
                const std::string key = name.get<std::string>();
                auto at = names.find(key);
                if (at == names.end())
                    fail("JSON schema: required property '" + key + "' is not in 'properties'");
                props[at->second].required = true;
            }
        }
        int32_t additional = -1;
        if (auto a = s.find("additionalProperties"); a != s.end()) {
            if (a->is_boolean())
                additional = a->get<bool>() ? any_value() : -1;
            else
                additional = compile(*a, depth + 1);
        } else if (props.empty()) {
            additional = any_value();
        }
        const int32_t n = add(Kind::Object);
        if (additional >= 0 && !props.empty()) {
            const int32_t key = add(Kind::String);
            s_.nodes[(size_t)key].exclude_keys_of = n;
            s_.nodes[(size_t)n].key_node = key;
        }
        s_.nodes[(size_t)n].props = std::move(props);
        s_.nodes[(size_t)n].additional = additional;
        return n;
    }

    ojson doc_;
    JsonSchema s_;
    std::map<std::string, int32_t> refs_;
    int32_t any_ = -1, string_ = -1;
    int n_props_ = 0;
};

}  // namespace

std::shared_ptr<const JsonSchema> compile_json_schema(std::string_view schema_json) {
    // Nesting is checked before parsing: the parser and the document's destructor recurse.
    if (!json_nesting_within(schema_json, 4 * kJsonSchemaMaxDepth))
        throw JsonSchemaError("JSON schema nested too deeply");
    ojson doc;
    try {
        doc = ojson::parse(schema_json.begin(), schema_json.end(), nullptr, true, false);
    } catch (const std::exception& e) {
        throw JsonSchemaError(std::string("JSON schema is not valid JSON: ") + e.what());
    }
    return std::make_shared<const JsonSchema>(Compiler(std::move(doc)).run());
}

std::shared_ptr<const JsonSchema> tool_call_schema(const std::vector<ToolSchema>& functions,
                                                   const std::string& args_key,
                                                   const std::string& prefix,
                                                   const std::string& suffix) {
    if (functions.empty()) throw JsonSchemaError("no functions to call");
    JsonSchema out;
    std::vector<int32_t> calls;
    auto add = [&](JsonSchema::Node n) {
        out.nodes.push_back(std::move(n));
        return (int32_t)out.nodes.size() - 1;
    };
    for (const ToolSchema& f : functions) {
        // The parameters are their own document (their "#..." refs resolve inside them);
        // the call around them, {"name": NAME, args_key: PARAMETERS}, is built here.
        std::shared_ptr<const JsonSchema> params;
        try {
            params =
                compile_json_schema(f.parameters.empty() ? R"({"type": "object"})" : f.parameters);
        } catch (const JsonSchemaError& e) {
            throw JsonSchemaError("function '" + f.name + "': " + e.what());
        }
        if (params->nodes[(size_t)params->root].kind != Kind::Object)
            throw JsonSchemaError("function '" + f.name +
                                  "': parameters must describe an object (\"type\": \"object\")");
        const int32_t base = (int32_t)out.nodes.size();
        if (out.nodes.size() + params->nodes.size() + 2 > (size_t)kJsonSchemaMaxNodes)
            throw JsonSchemaError("tool schemas too large");
        auto shift = [base](int32_t i) { return i < 0 ? i : i + base; };
        for (JsonSchema::Node n : params->nodes) {
            for (auto& p : n.props) p.node = shift(p.node);
            n.additional = shift(n.additional);
            n.items = shift(n.items);
            n.key_node = shift(n.key_node);
            n.exclude_keys_of = shift(n.exclude_keys_of);
            for (int32_t& a : n.alternatives) a = shift(a);
            out.nodes.push_back(std::move(n));
        }
        if (out.plain_string < 0) out.plain_string = shift(params->plain_string);
        JsonSchema::Node name;
        name.kind = Kind::Literal;
        name.literals = {ojson(f.name).dump()};
        const int32_t name_node = add(std::move(name));
        JsonSchema::Node call;
        call.kind = Kind::Object;
        call.props = {{ojson("name").dump(), name_node, true},
                      {ojson(args_key).dump(), shift(params->root), true}};
        calls.push_back(add(std::move(call)));
    }
    JsonSchema::Node seq;
    seq.kind = Kind::Sequence;
    for (const std::string* raw : {&prefix, (const std::string*)nullptr, &suffix}) {
        JsonSchema::Node n;
        if (!raw) {
            n.kind = Kind::AnyOf;
            n.alternatives = calls;
        } else if (raw->empty()) {
            continue;
        } else {
            n.kind = Kind::Literal;
            n.literals = {*raw};
        }
        seq.alternatives.push_back(add(std::move(n)));
    }
    out.root = add(std::move(seq));
    finalize(out);
    return std::make_shared<const JsonSchema>(std::move(out));
}

std::shared_ptr<const JsonSchema> json_object_schema() {
    Compiler c{ojson::object()};
    c.schema().root = c.any_object();
    return std::make_shared<const JsonSchema>(c.take());
}

}  // namespace lokal
