// libFuzzer target for structured output: the JSON Schema compiler (the schema comes from HTTP
// requests: Ollama's "format", OpenAI's response_format) and the byte-level matcher that
// follows generated text against the compiled schema.
//
// Input: a schema text, a NUL byte, then a candidate document (no NUL: all schema, no
// document). An input starting with 'J' uses the any-object schema (json_object_schema(),
// "format": "json") instead of compiling; its document is what follows the first NUL (or
// the 'J' when there is none). An input starting with 'T' is a tool call
// (tool_call_schema()): the next byte picks the wrapper (Hermes "<tool_call>\n"..
// "\n</tool_call>", Llama 3 none, Mistral "[".."]"), then up to four functions'
// parameters schemas separated by \x01 (functions f0, f1, ...; an empty one: any object),
// then NUL and the document. The document is fed in chunks of varying sizes (chosen by a
// hash of the input); a refused chunk is skipped and the next one tried.
// JsonSchemaError is the accepted outcome of a bad schema; a crash, a sanitizer report, a
// hang, any other exception type or a broken invariant (abort, with a message) is a bug:
//  - accepts(x) == feed(x); a refused feed() changes nothing;
//  - feeding a chunk at once and byte by byte agree (answers compared on probe strings);
//  - finished() is true exactly when no byte can follow;
//  - the text so far can always end or go on (no dead end from which the sampler could
//    only break the format), from the very first byte on;
//  - whenever can_end(): the text is JSON (nlohmann::json::accept) and its value conforms
//    to the compiled schema (an independent checker over JsonSchema's nodes below); with
//    the any-object schema it is an object; a tool call is its wrapper around JSON that
//    conforms to one of the calls.
//
//   libFuzzer (clang): fuzz/build_libfuzzer.sh, then
//                      build-fuzz/bin/json_schema_fuzz -max_len=4096 -timeout=10
//                          /tmp/schema-corpus tests/engine/malformed_schemas
//   other builds:      json_schema_fuzz_smoke FILE_OR_DIR... [--mutate SECONDS]
//                      (fuzz/standalone_main.h; the json_schema_fuzz_smoke test)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "engine/json_matcher.h"
#include "engine/json_schema.h"

namespace {

using lokal::JsonMatcher;
using lokal::JsonSchema;
using ojson = nlohmann::ordered_json;
using Kind = JsonSchema::Kind;

[[noreturn]] void broken(const char* what, std::string_view text) {
    const size_t shown = std::min<size_t>(text.size(), 400);
    std::fprintf(stderr, "json_schema_fuzz: invariant broken: %s\n  text (%zu bytes)%s: ", what,
                 text.size(), shown < text.size() ? ", the last 400" : "");
    for (unsigned char c : text.substr(text.size() - shown)) {
        if (c >= 0x20 && c < 0x7f && c != '\\')
            std::fputc(c, stderr);
        else
            std::fprintf(stderr, "\\x%02x", c);
    }
    std::fputc('\n', stderr);
    std::abort();
}

// splitmix64 over a seed taken from the input: chunk sizes and probe choices.
struct Rng {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
};

const std::string_view kProbes[] = {
    "\"",     "{",    "}",     "[",     "]",    ",",        ":",    " ",    "\n",
    "\n  \t", "0",    "1",     "-",     ".",    "e",        "E+",   "t",    "n",
    "f",      "a",    "\\",    "\\u00", "\\n",  "\xc3\xa9", "\x80", "\xed", "\"a\"",
    "null",   "true", "1.5e3", "\"\":", "\"\"", "{}",       "[]",   "\x1f", "\xf4\x8f"};

// Two matchers that should be in the same state answer alike.
void same_answers(const JsonMatcher& a, const JsonMatcher& b, Rng& rng, std::string_view rest,
                  const char* what, std::string_view text) {
    if (a.can_end() != b.can_end()) broken(what, text);
    constexpr size_t n = sizeof kProbes / sizeof *kProbes;
    for (int k = 0; k < 2; ++k) {
        const std::string_view p = kProbes[rng.next() % n];
        if (a.accepts(p) != b.accepts(p)) broken(what, text);
    }
    for (size_t len : {size_t{1}, size_t{8}}) {
        const std::string_view p = rest.substr(0, len);
        if (!p.empty() && a.accepts(p) != b.accepts(p)) broken(what, text);
    }
}

// The nodes reachable from `node` through anyOf nodes only (what a value there may be).
void concrete(const JsonSchema& s, int32_t node, std::vector<int32_t>& out) {
    std::vector<char> seen(s.nodes.size(), 0);
    std::vector<int32_t> todo{node};
    while (!todo.empty()) {
        const int32_t n = todo.back();
        todo.pop_back();
        if (n < 0 || (size_t)n >= s.nodes.size()) std::abort();  // a dangling node index
        if (seen[(size_t)n]) continue;
        seen[(size_t)n] = 1;
        if (s.nodes[(size_t)n].kind == Kind::AnyOf)
            todo.insert(todo.end(), s.nodes[(size_t)n].alternatives.begin(),
                        s.nodes[(size_t)n].alternatives.end());
        else
            out.push_back(n);
    }
}

int64_t code_points(const std::string& utf8) {
    int64_t n = 0;
    for (unsigned char c : utf8) n += (c & 0xC0) != 0x80;
    return n;
}

// Whether a parsed value has the shape the compiled schema describes (JSON Schema meaning,
// on the value a client parses, independent of the matcher's automaton).
bool conforms(const JsonSchema& s, int32_t node, const ojson& v, int depth) {
    if (depth > 4 * JsonMatcher::kMaxDepth) return false;
    std::vector<int32_t> kinds;
    concrete(s, node, kinds);
    for (int32_t k : kinds) {
        const JsonSchema::Node& n = s.nodes[(size_t)k];
        bool ok = false;
        switch (n.kind) {
            case Kind::Object: {
                if (!v.is_object()) break;
                ok = true;
                std::set<std::string> present;
                for (auto it = v.begin(); ok && it != v.end(); ++it) {
                    const std::string key = ojson(it.key()).dump();
                    present.insert(key);
                    auto p =
                        std::find_if(n.props.begin(), n.props.end(),
                                     [&](const JsonSchema::Property& q) { return q.key == key; });
                    if (p != n.props.end())
                        ok = conforms(s, p->node, it.value(), depth + 1);
                    else
                        ok = n.additional >= 0 && conforms(s, n.additional, it.value(), depth + 1);
                }
                for (const auto& p : n.props)
                    if (p.required && !present.count(p.key)) ok = false;
                break;
            }
            case Kind::Array: {
                if (!v.is_array()) break;
                const int64_t size = (int64_t)v.size();
                ok = size >= n.min_items && (n.max_items < 0 || size <= n.max_items);
                for (size_t i = 0; ok && i < v.size(); ++i)
                    ok = conforms(s, n.items, v[i], depth + 1);
                break;
            }
            case Kind::String: {
                if (!v.is_string()) break;
                const int64_t len = code_points(v.get_ref<const std::string&>());
                ok = len >= n.min_length && (n.max_length < 0 || len <= n.max_length);
                break;
            }
            case Kind::Number:
                ok = v.is_number();
                break;
            case Kind::Integer:
                ok = v.is_number_integer();
                break;
            case Kind::Literal:
                ok = std::binary_search(n.literals.begin(), n.literals.end(), v.dump());
                break;
            default:  // AnyOf: expanded by concrete(); Sequence: tool calls, checked apart
                break;
        }
        if (ok) return true;
    }
    return false;
}

struct ToolWrapper {
    const char* args_key;
    const char* prefix;
    const char* suffix;
};
const ToolWrapper kToolWrappers[] = {{"arguments", "<tool_call>\n", "\n</tool_call>"},
                                     {"parameters", "", ""},
                                     {"arguments", "[", "]"}};

// The text is complete by the matcher: it must be JSON of the schema's shape (for a tool
// call: the wrapper around JSON of one call's shape).
void check_complete(const JsonSchema& s, bool any_object, const ToolWrapper* tool,
                    const std::string& text) {
    std::string_view json_text = text;
    int32_t node = s.root;
    if (tool) {
        const std::string_view pre = tool->prefix, suf = tool->suffix;
        if (text.size() < pre.size() + suf.size() || !json_text.starts_with(pre) ||
            !json_text.ends_with(suf))
            broken("can_end() on a tool call without its wrapper", text);
        json_text = json_text.substr(pre.size(), text.size() - pre.size() - suf.size());
        node = -1;  // the part of the root sequence that is the calls
        const JsonSchema::Node& root = s.nodes[(size_t)s.root];
        if (root.kind != Kind::Sequence)
            broken("a tool-call schema whose root is no sequence", text);
        for (int32_t p : root.alternatives)
            if (s.nodes[(size_t)p].kind != Kind::Literal) node = p;
        if (node < 0) broken("a tool-call schema without calls", text);
    }
    if (!nlohmann::json::accept(json_text)) broken("can_end() on a text that is not JSON", text);
    const ojson v = ojson::parse(json_text, nullptr, false);
    if (v.is_discarded()) broken("can_end() on a text that does not parse", text);
    if (any_object && !v.is_object()) broken("the any-object schema ended a non-object", text);
    if (!conforms(s, node, v, 0)) broken("can_end() on a value the schema does not allow", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1 || size > 64 * 1024) return 0;
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const size_t nul = in.find('\0');
    const bool any_object = in[0] == 'J';
    const ToolWrapper* tool =
        in[0] == 'T' && size >= 2 ? &kToolWrappers[data[1] % std::size(kToolWrappers)] : nullptr;
    std::string_view doc = nul == std::string_view::npos ? std::string_view{} : in.substr(nul + 1);
    if (any_object && nul == std::string_view::npos) doc = in.substr(1);

    std::shared_ptr<const JsonSchema> schema;
    try {
        if (any_object) {
            schema = lokal::json_object_schema();
        } else if (tool) {
            std::vector<lokal::ToolSchema> fns;
            std::string_view params = in.substr(0, nul).substr(std::min<size_t>(2, nul));
            for (size_t k = 0; k < 4; ++k) {
                const size_t cut = params.find('\x01');
                fns.push_back({"f" + std::to_string(k), std::string(params.substr(0, cut))});
                if (cut == std::string_view::npos) break;
                params.remove_prefix(cut + 1);
            }
            schema = lokal::tool_call_schema(fns, tool->args_key, tool->prefix, tool->suffix);
        } else {
            schema = lokal::compile_json_schema(in.substr(0, nul));
        }
    } catch (const lokal::JsonSchemaError&) {
        return 0;
    }
    if (!schema || schema->nodes.empty() || schema->root < 0 ||
        (size_t)schema->root >= schema->nodes.size())
        broken("compile_json_schema() returned no usable schema", {});

    uint64_t seed = 1469598103934665603ull;  // FNV-1a of the input
    for (unsigned char c : in) seed = (seed ^ c) * 1099511628211ull;
    Rng rng{seed};

    JsonMatcher m(schema);       // fed in chunks
    JsonMatcher shadow(schema);  // fed the same accepted bytes one by one
    std::string text;            // the accepted chunks
    if (!m.can_end() && m.finished())
        broken("the schema compiled, but no text can start (nothing may ever be generated)", text);

    for (size_t i = 0; i < doc.size();) {
        const uint64_t r = rng.next();
        size_t len = (r & 7) == 0 ? 1 + (r >> 8) % 64 : 1 + (r >> 8) % 6;
        len = std::min(len, doc.size() - i);
        const std::string_view chunk = doc.substr(i, len);
        i += len;
        const std::string_view rest = doc.substr(i);

        const JsonMatcher before = m;
        const bool accepted = m.accepts(chunk);
        const bool fed = m.feed(chunk);
        if (accepted != fed) broken("accepts() and feed() disagree on a chunk", text);
        if (fed) {
            text += chunk;
            for (char c : chunk)
                if (!shadow.feed(std::string_view(&c, 1)))
                    broken("a chunk fed at once is accepted, byte by byte it is not", text);
        } else {
            JsonMatcher t = shadow;
            bool all = true;
            for (char c : chunk) all = all && t.feed(std::string_view(&c, 1));
            if (all) broken("a chunk fed at once is refused, byte by byte it is accepted", text);
            same_answers(m, before, rng, chunk, "a refused feed() changed the matcher", text);
        }
        if (!fed || (r >> 40) % 4 == 0 || i == doc.size())
            same_answers(m, shadow, rng, rest, "chunked and byte-by-byte feeding disagree", text);
        if (m.can_end()) check_complete(*schema, any_object, tool, text);
    }

    // finished() means exactly that no byte can follow; then the text must be complete.
    bool any_byte = false;
    for (int c = 0; c < 256 && !any_byte; ++c) {
        const char ch = (char)c;
        any_byte = m.accepts(std::string_view(&ch, 1));
    }
    if (m.finished() == any_byte) broken("finished() disagrees with accepts() of every byte", text);
    if (!any_byte && !m.can_end())
        broken("dead end: the text so far can neither end nor go on", text);
    // A fresh matcher reads the accepted text the same way in one go.
    JsonMatcher fresh(schema);
    if (!fresh.feed(text) || fresh.can_end() != m.can_end())
        broken("a fresh matcher fed the accepted text in one go disagrees", text);
    return 0;
}

#ifdef LOKAL_FUZZ_STANDALONE
#include "standalone_main.h"
#endif
