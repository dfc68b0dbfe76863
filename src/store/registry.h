// Pull and push models over the Docker Registry HTTP API v2 (the protocol of Ollama's
// registry, CNCF Distribution and every OCI registry), and pull single GGUF files by URL.
//
// Pull: manifest (bounded, validated, Docker-Content-Digest checked), then every blob into
// blobs/sha256-<hex>-partial with HTTP Range resume, several blobs at once; each blob's
// size and SHA-256 are verified before anything is committed, then blobs and manifest are
// renamed into place. A failed pull leaves the store's models and blobs unchanged (verified
// partial files stay for the next attempt to resume; `prune` removes them).
// Auth: on 401 with `WWW-Authenticate: Bearer realm=..,service=..,scope=..` a token is
// fetched from the realm (with Basic credentials from LOKAL_REGISTRY_USER and
// LOKAL_REGISTRY_PASSWORD when set) and the request retried; `Basic` challenges use the
// same credentials.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "store/http.h"
#include "store/store.h"

namespace lokal::store {

struct RegistryOptions {
    HttpOptions http;
    bool insecure = false;  // plain http:// and no TLS verification
    int parallel = 4;       // blobs transferred at once
    ProgressFn progress;    // aggregated bytes over all blobs; false cancels
    std::function<void(const std::string&)> status;
    std::string username, password;  // default: LOKAL_REGISTRY_USER / LOKAL_REGISTRY_PASSWORD
};

void pull(Store& store, const ModelName& name, const RegistryOptions& opts = {});
void push(Store& store, const ModelName& name, const RegistryOptions& opts = {});

// Pull one GGUF file from an http(s) URL into the store under `name` (default: derived
// from the file name). `sha256_hex`, when not empty, must match. Returns the stored name.
ModelName pull_url(Store& store, const std::string& url, const std::string& sha256_hex,
                   const std::optional<ModelName>& name, const RegistryOptions& opts = {});

// The model name a URL's file name suggests ("…/TinyStories-656K.f16.gguf?x" →
// "tinystories-656k.f16:latest"). Throws store::Error when none can be made.
ModelName name_from_url(const std::string& url);

bool is_url(const std::string& s);

}  // namespace lokal::store
