#include "store/util.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

namespace lokal::store {

namespace fs = std::filesystem;

std::string show_str(std::string_view s) {
    std::string out = "'";
    size_t n = 0;
    for (unsigned char c : s) {
        if (++n > 80) {
            out += "...";
            break;
        }
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
            char buf[8];
            snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += (char)c;
        }
    }
    return out + "'";
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_) throw Error("sha256: out of memory");
    reset();
}
Sha256::~Sha256() {
    EVP_MD_CTX_free(ctx_);
}
void Sha256::reset() {
    if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) throw Error("sha256: init failed");
}
void Sha256::update(const void* data, size_t n) {
    if (n && EVP_DigestUpdate(ctx_, data, n) != 1) throw Error("sha256: update failed");
}
std::string Sha256::hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_, md, &len) != 1) throw Error("sha256: final failed");
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out += digits[md[i] >> 4];
        out += digits[md[i] & 15];
    }
    return out;
}

std::string sha256_hex(std::string_view data) {
    Sha256 h;
    h.update(data.data(), data.size());
    return h.hex();
}

std::string sha256_file(const std::string& path, uint64_t* size_out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error("cannot open " + path + ": " + strerror(errno));
    Sha256 h;
    std::vector<char> buf(1 << 20);
    uint64_t total = 0;
    for (;;) {
        ssize_t r = ::read(fd, buf.data(), buf.size());
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            ::close(fd);
            throw Error("cannot read " + path + ": " + strerror(e));
        }
        if (r == 0) break;
        h.update(buf.data(), (size_t)r);
        total += (uint64_t)r;
    }
    ::close(fd);
    if (size_out) *size_out = total;
    return h.hex();
}

bool is_hex64(std::string_view s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

std::optional<Digest> try_parse_digest(std::string_view s, bool allow_file_form) {
    if (s.size() != 71) return std::nullopt;
    if (s.substr(0, 7) == "sha256:" || (allow_file_form && s.substr(0, 7) == "sha256-")) {
        std::string_view hex = s.substr(7);
        if (is_hex64(hex)) return Digest{std::string(hex)};
    }
    return std::nullopt;
}

Digest parse_digest(std::string_view s, bool allow_file_form) {
    if (auto d = try_parse_digest(s, allow_file_form)) return *d;
    std::string why;
    if (s.substr(0, 7) != "sha256:" && !(allow_file_form && s.substr(0, 7) == "sha256-"))
        why = "only sha256:<64 hex> digests are accepted";
    else if (s.size() != 71)
        why = "expected 64 hex digits";
    else
        why = "not lowercase hex";
    throw Error("invalid digest " + show_str(s) + ": " + why);
}

bool is_valid_utf8(std::string_view s) {
    size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return false;
        uint32_t cp = len == 1 ? c : c & (0x7f >> len);
        for (int k = 1; k < len; ++k) {
            unsigned char cc = (unsigned char)s[i + k];
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += len;
    }
    return true;
}

FileLock::FileLock(const std::string& path, bool exclusive) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error("cannot open lock file " + path + ": " + strerror(errno));
    while (::flock(fd_, exclusive ? LOCK_EX : LOCK_SH) != 0) {
        if (errno == EINTR) continue;
        int e = errno;
        ::close(fd_);
        fd_ = -1;
        throw Error("cannot lock " + path + ": " + strerror(e));
    }
}
FileLock::~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

void fsync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

void make_dirs(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error("cannot create directory " + dir + ": " + ec.message());
}

std::string temp_path_for(const std::string& path) {
    static std::atomic<uint64_t> counter{0};
    static const uint64_t salt = std::random_device{}();
    char buf[64];
    snprintf(buf, sizeof buf, ".tmp-%d-%llx-%llu", (int)getpid(), (unsigned long long)salt,
             (unsigned long long)counter++);
    return path + buf;
}

void write_all(int fd, const void* data, size_t n, const std::string& what) {
    const char* p = static_cast<const char*>(data);
    while (n) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw Error("cannot write " + what + ": " + strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

void write_file_atomic(const std::string& path, std::string_view data) {
    fs::path p(path);
    make_dirs(p.parent_path().string());
    std::string tmp = temp_path_for(path);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw Error("cannot create " + tmp + ": " + strerror(errno));
    try {
        write_all(fd, data.data(), data.size(), path);
        if (::fsync(fd) != 0) throw Error("cannot fsync " + path + ": " + strerror(errno));
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot rename into " + path + ": " + strerror(e));
    }
    fsync_dir(p.parent_path().string());
}

std::string read_file(const std::string& path, uint64_t max_bytes) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error("cannot open " + path + ": " + strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error("not a regular file: " + path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        ::close(fd);
        throw Error(path + " is too large (" + std::to_string(st.st_size) + " bytes, limit " +
                    std::to_string(max_bytes) + ")");
    }
    std::string out;
    out.resize((size_t)st.st_size);
    size_t got = 0;
    while (got < out.size()) {
        ssize_t r = ::read(fd, out.data() + got, out.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    ::close(fd);
    out.resize(got);
    return out;
}

}  // namespace lokal::store
