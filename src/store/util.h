// Store building blocks: the error type, SHA-256 (OpenSSL EVP), digests, file locks and
// crash-safe file writes (temporary file, fsync, rename, fsync of the directory).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace lokal::store {

// Every store failure: one line naming the problem.
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Quote an untrusted string for an error message: control bytes escaped, at most 80 chars.
std::string show_str(std::string_view s);

class Sha256 {
  public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(const void* data, size_t n);
    void reset();
    std::string hex();  // finishes; the object must be reset() before reuse

  private:
    EVP_MD_CTX* ctx_;
};

std::string sha256_hex(std::string_view data);
// Hash a whole file; throws Error when unreadable. *size_out gets its size.
std::string sha256_file(const std::string& path, uint64_t* size_out = nullptr);

// A content digest: always sha256, 64 lowercase hex digits. The only way to build a blob
// file name, so a digest from the network can never name a path outside blobs/.
struct Digest {
    std::string hex;
    std::string str() const { return "sha256:" + hex; }        // "sha256:<hex>"
    std::string file_name() const { return "sha256-" + hex; }  // blob file name
    bool operator==(const Digest&) const = default;
    bool operator<(const Digest& o) const { return hex < o.hex; }
};

// Parse "sha256:<64 lowercase hex>" (or the file form "sha256-<hex>" when allow_file_form).
// Throws Error naming the problem.
Digest parse_digest(std::string_view s, bool allow_file_form = false);
std::optional<Digest> try_parse_digest(std::string_view s, bool allow_file_form = false);
bool is_hex64(std::string_view s);

// Is s valid UTF-8 (no overlongs, no surrogates)?
bool is_valid_utf8(std::string_view s);

// flock(2) on a lock file (created if missing); released by the destructor.
class FileLock {
  public:
    FileLock(const std::string& path, bool exclusive);
    ~FileLock();
    FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

  private:
    int fd_ = -1;
};

// Write `data` to `path` through a temporary file in the same directory, fsync, rename and
// fsync the directory. Throws Error.
void write_file_atomic(const std::string& path, std::string_view data);
// Read a whole file of at most max_bytes; throws Error when larger or unreadable.
std::string read_file(const std::string& path, uint64_t max_bytes);
void fsync_dir(const std::string& dir);
void make_dirs(const std::string& dir);  // mkdir -p; throws Error
// A unique temporary path beside `path` (same directory, so rename is atomic).
std::string temp_path_for(const std::string& path);
// Full write with EINTR handling; throws Error with errno text (ENOSPC reads "No space left").
void write_all(int fd, const void* data, size_t n, const std::string& what);

inline constexpr uint64_t kMaxManifestBytes = 4ull << 20;    // 4 MiB
inline constexpr uint64_t kMaxBlobBytes = 1ull << 40;        // 1 TiB
inline constexpr uint64_t kMaxSmallLayerBytes = 8ull << 20;  // template/system/params/...

}  // namespace lokal::store
