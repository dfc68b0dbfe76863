#include "store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

namespace lokal::store {

namespace fs = std::filesystem;

Store::Store(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
    if (root_.empty()) throw Error("empty store directory");
}

void Store::ensure_dirs() const {
    make_dirs(blobs_dir());
    make_dirs(manifests_dir());
    make_dirs(root_ + "/locks");
}

bool Store::has_blob(const Digest& d, uint64_t size) const {
    struct stat st {};
    return ::stat(blob_path(d).c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
           (uint64_t)st.st_size == size;
}

FileLock Store::lock_shared() const {
    ensure_dirs();
    return FileLock(root_ + "/lock", false);
}
FileLock Store::lock_exclusive() const {
    ensure_dirs();
    return FileLock(root_ + "/lock", true);
}
FileLock Store::lock_blob(const Digest& d) const {
    return FileLock(root_ + "/locks/" + d.file_name() + ".lock", true);
}

Layer Store::add_blob(std::string_view data, const std::string& media_type) {
    ensure_dirs();
    Layer l{media_type, Digest{sha256_hex(data)}, data.size()};
    if (!has_blob(l.digest, l.size)) write_file_atomic(blob_path(l.digest), data);
    return l;
}

Layer Store::add_blob_file(const std::string& src, const std::string& media_type) {
    int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) throw Error("cannot open " + src + ": " + strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{in};
    return add_blob_stream(
        [&](const std::function<bool(const char*, size_t)>& sink) {
            std::vector<char> buf(1 << 20);
            for (;;) {
                ssize_t r = ::read(in, buf.data(), buf.size());
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) throw Error("cannot read " + src + ": " + strerror(errno));
                if (r == 0) return true;
                if (!sink(buf.data(), (size_t)r)) return false;
            }
        },
        nullptr, media_type);
}

Layer Store::add_blob_stream(
    const std::function<bool(const std::function<bool(const char*, size_t)>&)>& read,
    const Digest* expected, const std::string& media_type) {
    ensure_dirs();
    std::string tmp = temp_path_for(blobs_dir() + "/import");
    int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) throw Error("cannot create " + tmp + ": " + strerror(errno));
    Layer l;
    l.media_type = media_type;
    try {
        Sha256 h;
        const bool ok = read([&](const char* data, size_t n) {
            h.update(data, n);
            write_all(out, data, n, tmp);
            l.size += n;
            return true;
        });
        if (!ok) throw Error("the data ended early");
        l.digest.hex = h.hex();
        if (expected && l.digest.hex != expected->hex)
            throw Error("the body does not hash to " + expected->str());
        if (::fsync(out) != 0) throw Error("cannot fsync " + tmp + ": " + strerror(errno));
    } catch (...) {
        ::close(out);
        ::unlink(tmp.c_str());
        throw;
    }
    ::close(out);
    commit_blob(tmp, l.digest);
    return l;
}

void Store::commit_blob(const std::string& file, const Digest& d) {
    std::string dst = blob_path(d);
    struct stat st {};
    if (::stat(dst.c_str(), &st) == 0) {  // same content already there
        ::unlink(file.c_str());
        return;
    }
    if (::rename(file.c_str(), dst.c_str()) != 0) {
        int e = errno;
        ::unlink(file.c_str());
        throw Error("cannot move blob into " + dst + ": " + strerror(e));
    }
    fsync_dir(blobs_dir());
}

std::string Store::read_blob_text(const Layer& l) const {
    if (l.size > kMaxSmallLayerBytes)
        throw Error("layer " + l.digest.str() + " is too large to read as text");
    std::string data = read_file(blob_path(l.digest), kMaxSmallLayerBytes);
    if (data.size() != l.size || sha256_hex(data) != l.digest.hex)
        throw Error("blob " + l.digest.str() + " is corrupt (digest mismatch)");
    return data;
}

std::optional<Manifest> Store::read_manifest(const ModelName& n, std::string* raw) const {
    std::string path = manifest_path(n);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    std::string text = read_file(path, kMaxManifestBytes);
    Manifest m;
    try {
        m = Manifest::parse(text);
    } catch (const Error& e) {
        throw Error("manifest of " + n.display() + ": " + e.what());
    }
    if (raw) *raw = std::move(text);
    return m;
}

void Store::write_manifest(const ModelName& n, std::string_view raw) {
    Manifest m = Manifest::parse(raw);
    if (!has_blob(m.config.digest, m.config.size))
        throw Error("cannot write manifest: config blob " + m.config.digest.str() + " missing");
    for (const auto& l : m.layers)
        if (!has_blob(l.digest, l.size))
            throw Error("cannot write manifest: blob " + l.digest.str() + " missing");
    write_file_atomic(manifest_path(n), raw);
}

std::vector<Store::Entry> Store::list() const {
    std::vector<Entry> out;
    std::error_code ec;
    fs::path base(manifests_dir());
    if (!fs::is_directory(base, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(base, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it.depth() != 3 || !it->is_regular_file(ec)) continue;
        fs::path rel = fs::relative(it->path(), base, ec);
        std::vector<std::string> parts;
        for (const auto& p : rel) parts.push_back(p.string());
        if (parts.size() != 4 || parts[3].find(".tmp-") != std::string::npos) continue;
        auto name = try_parse_name(parts[0] + "/" + parts[1] + "/" + parts[2] + ":" + parts[3]);
        if (!name || name->manifest_rel() != rel.string()) continue;
        Entry e;
        e.name = *name;
        try {
            std::string raw;
            auto m = read_manifest(*name, &raw);
            if (!m) continue;
            e.id = sha256_hex(raw).substr(0, 12);
            e.size = m->total_size();
        } catch (const Error&) {
            e.id = "(invalid)";
        }
        e.modified = it->last_write_time(ec);
        out.push_back(std::move(e));
    }
    std::sort(out.begin(), out.end(),
              [](const Entry& a, const Entry& b) { return a.modified > b.modified; });
    return out;
}

void Store::remove(const ModelName& n) {
    FileLock lock = lock_exclusive();
    std::string path = manifest_path(n);
    if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT) throw Error("model " + n.display() + " not found");
        throw Error("cannot remove " + path + ": " + strerror(errno));
    }
    fsync_dir(fs::path(path).parent_path().string());
    // Remove now-empty name directories up to manifests/.
    std::error_code ec;
    for (fs::path p = fs::path(path).parent_path(); p != fs::path(manifests_dir());
         p = p.parent_path()) {
        if (!fs::is_empty(p, ec) || ec || !fs::remove(p, ec)) break;
    }
    collect(false);
}

void Store::copy(const ModelName& src, const ModelName& dst) {
    FileLock lock = lock_shared();
    std::string raw;
    auto m = read_manifest(src, &raw);
    if (!m) throw Error("model " + src.display() + " not found");
    write_manifest(dst, raw);
}

Store::PruneResult Store::prune() {
    FileLock lock = lock_exclusive();
    return collect(true);
}

Store::PruneResult Store::collect(bool partials) {
    PruneResult r;
    std::set<std::string> referenced;
    std::error_code ec;
    for (const auto& e : list()) {
        if (e.id == "(invalid)") return r;  // never collect while a manifest is unreadable
        auto m = read_manifest(e.name);
        referenced.insert(m->config.digest.file_name());
        for (const auto& l : m->layers) referenced.insert(l.digest.file_name());
    }
    for (auto it = fs::directory_iterator(blobs_dir(), ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
        std::string name = it->path().filename().string();
        bool is_blob = try_parse_digest(name, true).has_value();
        bool is_partial = name.size() > 8 && name.ends_with("-partial");
        bool is_temp = name.find(".tmp-") != std::string::npos;
        if (is_blob && referenced.count(name)) continue;
        if (!is_blob && !(partials && (is_partial || is_temp))) continue;
        uint64_t size = it->file_size(ec);
        if (ec) size = 0;
        if (fs::remove(it->path(), ec)) {
            r.bytes += size;
            (is_blob ? r.blobs : r.partials)++;
        }
    }
    if (partials) {  // download lock files of blobs that are gone
        for (auto it = fs::directory_iterator(root_ + "/locks", ec);
             !ec && it != fs::directory_iterator(); it.increment(ec))
            fs::remove(it->path(), ec);
    }
    fsync_dir(blobs_dir());
    return r;
}

}  // namespace lokal::store
