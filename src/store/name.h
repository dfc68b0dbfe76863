// Model names like Ollama's: [host[:port]/][namespace/]model[:tag].
//
// Names come from users, Modelfiles and the network; parse_name() validates every part
// against a strict character set before any part becomes a path component, so no name can
// leave the manifests/ directory ("..", "/", "\", NUL and the like are refused).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lokal::store {

inline constexpr const char* kDefaultHost = "registry.ollama.ai";
inline constexpr const char* kDefaultNamespace = "library";
inline constexpr const char* kDefaultTag = "latest";

struct ModelName {
    std::string host = kDefaultHost;     // may carry ":port"
    std::string ns = kDefaultNamespace;  // namespace
    std::string model;
    std::string tag = kDefaultTag;

    // "host/ns/model:tag" always in full.
    std::string full() const;
    // Short form: the default host and namespace are left out ("tiny:latest").
    std::string display() const;
    // "ns/model": the repository path on a registry.
    std::string repository() const { return ns + "/" + model; }
    // Relative path of the manifest under manifests/: host/ns/model/tag.
    std::string manifest_rel() const;
    bool operator==(const ModelName&) const = default;
};

// Parse and validate; throws store::Error naming the problem. Host, namespace and model
// are case-insensitive (folded to lowercase); the tag keeps its case.
ModelName parse_name(std::string_view s);
std::optional<ModelName> try_parse_name(std::string_view s);

}  // namespace lokal::store
