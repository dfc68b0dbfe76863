// Image manifests: Docker Registry v2 schema 2 / OCI image manifest, with Ollama's layer
// media types. Manifests from the network are untrusted: parse() checks size, schema,
// media types, digests and sizes, and throws store::Error naming the first problem.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "store/util.h"

namespace lokal::store {

namespace media {
inline constexpr const char* kManifestV2 = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr const char* kManifestOci = "application/vnd.oci.image.manifest.v1+json";
inline constexpr const char* kConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr const char* kConfigOci = "application/vnd.oci.image.config.v1+json";
inline constexpr const char* kModel = "application/vnd.ollama.image.model";
inline constexpr const char* kAdapter = "application/vnd.ollama.image.adapter";
inline constexpr const char* kProjector = "application/vnd.ollama.image.projector";
inline constexpr const char* kTemplate = "application/vnd.ollama.image.template";
inline constexpr const char* kSystem = "application/vnd.ollama.image.system";
inline constexpr const char* kParams = "application/vnd.ollama.image.params";
inline constexpr const char* kLicense = "application/vnd.ollama.image.license";
inline constexpr const char* kMessages = "application/vnd.ollama.image.messages";
}  // namespace media

struct Layer {
    std::string media_type;
    Digest digest;
    uint64_t size = 0;
};

struct Manifest {
    std::string media_type = media::kManifestV2;
    Layer config;
    std::vector<Layer> layers;

    // Validate untrusted JSON; throws Error.
    static Manifest parse(std::string_view json);
    std::string to_json() const;

    const Layer* find(std::string_view media_type) const;  // first layer of that type
    std::vector<const Layer*> find_all(std::string_view media_type) const;
    const Layer& model() const;   // the model layer (parse() guarantees exactly one)
    uint64_t total_size() const;  // config + layers
};

inline constexpr size_t kMaxLayers = 256;

}  // namespace lokal::store
