// The content-addressed model store.
//
//   <root>/blobs/sha256-<hex>            blobs, named by their SHA-256
//   <root>/blobs/sha256-<hex>-partial    a download in progress (resumable)
//   <root>/manifests/<host>/<ns>/<model>/<tag>   one manifest per name, as JSON
//   <root>/lock                          flock: shared while adding, exclusive for GC
//   <root>/locks/sha256-<hex>.lock       flock per blob download
//
// Writers hold the shared store lock; rm and prune (which delete blobs) hold it exclusively,
// so a blob being added is never collected. Every file enters through a temporary file,
// fsync and rename: readers see whole files or nothing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/manifest.h"
#include "store/name.h"
#include "store/util.h"

namespace lokal::store {

class Store {
  public:
    explicit Store(std::string root);  // created on first write
    const std::string& root() const { return root_; }

    std::string blobs_dir() const { return root_ + "/blobs"; }
    std::string manifests_dir() const { return root_ + "/manifests"; }
    std::string blob_path(const Digest& d) const { return blobs_dir() + "/" + d.file_name(); }
    std::string partial_path(const Digest& d) const { return blob_path(d) + "-partial"; }
    std::string manifest_path(const ModelName& n) const {
        return manifests_dir() + "/" + n.manifest_rel();
    }
    // Does the blob exist with exactly this size?
    bool has_blob(const Digest& d, uint64_t size) const;

    FileLock lock_shared() const;
    FileLock lock_exclusive() const;
    FileLock lock_blob(const Digest& d) const;
    void ensure_dirs() const;

    // Add content (caller holds the shared lock). Returns the layer with digest and size.
    Layer add_blob(std::string_view data, const std::string& media_type);
    Layer add_blob_file(const std::string& src, const std::string& media_type);
    // A blob whose bytes arrive in pieces (a file, an HTTP upload): read(sink) calls
    // sink(data, n) for each piece and returns false when the transfer failed. The bytes go
    // to a temporary file as they come (memory stays flat whatever the size), hashed on the
    // way; with `expected`, the blob is added only when it hashes to it. Throws Error.
    Layer add_blob_stream(
        const std::function<bool(const std::function<bool(const char*, size_t)>&)>& read,
        const Digest* expected, const std::string& media_type);
    // Move a fully written, fsynced file whose SHA-256 is `d` into blobs/ (the file is
    // consumed; an existing blob with that digest is kept).
    void commit_blob(const std::string& file, const Digest& d);
    // Read a small blob (template, system, params...) and check its digest.
    std::string read_blob_text(const Layer& l) const;

    // nullopt when there is no such manifest; Error when it exists but is invalid.
    std::optional<Manifest> read_manifest(const ModelName& n, std::string* raw = nullptr) const;
    // Validate and store a manifest; every blob it names must already be present.
    void write_manifest(const ModelName& n, std::string_view raw);

    struct Entry {
        ModelName name;
        std::string id;  // first 12 hex of the manifest's SHA-256
        uint64_t size = 0;
        std::filesystem::file_time_type modified;
    };
    std::vector<Entry> list() const;

    // Remove a name, then every blob no manifest references. Error when absent.
    void remove(const ModelName& n);
    void copy(const ModelName& src, const ModelName& dst);

    struct PruneResult {
        size_t blobs = 0, partials = 0;
        uint64_t bytes = 0;
    };
    // Delete unreferenced blobs, partial downloads and stray temporary files.
    PruneResult prune();

  private:
    PruneResult collect(bool partials);  // caller holds the exclusive lock
    std::string root_;
};

}  // namespace lokal::store
