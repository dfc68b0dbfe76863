// JSON Schema compiled into the node graph that constrained sampling walks (json_matcher.h):
// Ollama's "format" (a schema, or "json" for any object) and OpenAI's response_format.
//
// Supported: type (one or a list), properties, required, additionalProperties (false, true
// or a schema), items, minItems, maxItems, minLength, maxLength, enum, const, anyOf, oneOf
// (as anyOf), allOf with one member, nullable, local $ref (#/$defs/..., #/definitions/...,
// recursion included). Annotations are ignored (title, description, default, examples,
// format, $schema, $id, $comment, ...). A keyword that would constrain the output in a way
// lokal does not enforce (pattern, minimum, multipleOf, ...) is an error naming it, never
// silently dropped.
//
// Output shape, as llama.cpp's and Ollama's grammars: properties in the schema's order,
// required ones always, optional ones possibly skipped; additional properties (where
// allowed) after the listed ones; no additionalProperties keyword means none, except on an
// object schema that lists no properties at all (then any keys are allowed).
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace lokal {

struct JsonSchemaError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct JsonSchema {
    enum class Kind : uint8_t { Object, Array, String, Number, Integer, Literal, AnyOf, Sequence };
    struct Property {
        std::string key;  // the key as JSON text, quotes included: "\"name\""
        int32_t node = -1;
        bool required = false;
    };
    struct Node {
        Kind kind = Kind::Literal;
        // Object: listed properties in order; the schema of any other key (-1: none).
        std::vector<Property> props;
        int32_t additional = -1;
        // Array
        int32_t items = -1;
        int64_t min_items = 0, max_items = -1;  // -1: no limit
        int32_t key_node = -1;  // Object with listed and additional properties: the String
                                // node of additional keys (they may not repeat a listed one)
        // String, in code points
        int64_t min_length = 0, max_length = -1;
        int32_t exclude_keys_of = -1;  // String as an additional key: the Object node
        // Literal: the allowed values as compact JSON texts (or raw text, in a Sequence),
        // sorted and unique
        std::vector<std::string> literals;
        // AnyOf: the alternatives; Sequence: the parts, one after the other (node indices).
        // After compiling, no alternative is itself an AnyOf.
        std::vector<int32_t> alternatives;
        // Frames needed to complete a value of this node (itself included); more than
        // kJsonSchemaMaxDepth: none can be completed.
        int32_t min_depth = 0;
    };
    std::vector<Node> nodes;
    int32_t root = 0;
    int32_t plain_string = -1;  // an unconstrained string (keys of additional properties)
};

// Limits on hostile schemas.
constexpr int kJsonSchemaMaxNodes = 4096;
constexpr int kJsonSchemaMaxDepth = 64;

// Whether JSON text nests no deeper than max_depth, checked without parsing (for text from
// outside before nlohmann parses it: copying or printing a deeper document recurses that
// deep).
bool json_nesting_within(std::string_view text, int max_depth);

// schema_json: a JSON Schema as text. Throws JsonSchemaError with a one-line message.
std::shared_ptr<const JsonSchema> compile_json_schema(std::string_view schema_json);
// Any JSON object (Ollama "format": "json", OpenAI {"type": "json_object"}).
std::shared_ptr<const JsonSchema> json_object_schema();

// A tool call as a model family writes it: `prefix`, then one object
// {"name": NAME, args_key: ARGUMENTS} for one of the functions, then `suffix` (prefix and
// suffix are raw text, e.g. "<tool_call>\n" and "\n</tool_call>"). Each function's
// parameters schema (JSON text; "" for any object) is compiled on its own, so its local
// $refs resolve within it. Throws JsonSchemaError naming the function.
struct ToolSchema {
    std::string name;
    std::string parameters;
};
std::shared_ptr<const JsonSchema> tool_call_schema(const std::vector<ToolSchema>& functions,
                                                   const std::string& args_key,
                                                   const std::string& prefix,
                                                   const std::string& suffix);

}  // namespace lokal
