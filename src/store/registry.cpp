#include "store/registry.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "store/create.h"

namespace lokal::store {

using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxTokenResponse = 64 << 10;
constexpr uint64_t kMaxSmallResponse = 64 << 10;

const char* kAcceptManifest =
    "Accept: application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json";

// A short description of a registry error response.
std::string describe(const HttpResponse& r) {
    std::string out = "HTTP " + std::to_string(r.status);
    json j = json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
        const json& e = j["errors"][0];
        if (e.is_object()) {
            if (e.contains("code") && e["code"].is_string())
                out += " " + e["code"].get<std::string>();
            if (e.contains("message") && e["message"].is_string())
                out += ": " + show_str(e["message"].get<std::string>());
        }
    }
    return out;
}

// Parse `Bearer realm="..",service="..",scope=".."` into scheme and parameters.
std::pair<std::string, std::map<std::string, std::string>> parse_challenge(const std::string& h) {
    std::map<std::string, std::string> params;
    size_t sp = h.find(' ');
    std::string scheme = h.substr(0, sp);
    for (char& c : scheme) c = (char)tolower((unsigned char)c);
    size_t i = sp == std::string::npos ? h.size() : sp + 1;
    while (i < h.size()) {
        while (i < h.size() && (h[i] == ' ' || h[i] == ',')) ++i;
        size_t eq = h.find('=', i);
        if (eq == std::string::npos) break;
        std::string key = h.substr(i, eq - i);
        for (char& c : key) c = (char)tolower((unsigned char)c);
        i = eq + 1;
        std::string val;
        if (i < h.size() && h[i] == '"') {
            ++i;
            while (i < h.size() && h[i] != '"') {
                if (h[i] == '\\' && i + 1 < h.size()) ++i;
                val += h[i++];
            }
            ++i;
        } else {
            while (i < h.size() && h[i] != ',') val += h[i++];
        }
        params[key] = val;
    }
    return {scheme, params};
}

std::string base64(const std::string& s) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < s.size(); i += 3) {
        uint32_t v = (uint8_t)s[i] << 16 | (uint8_t)s[i + 1] << 8 | (uint8_t)s[i + 2];
        out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
    }
    if (i + 1 == s.size()) {
        uint32_t v = (uint8_t)s[i] << 16;
        out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == s.size()) {
        uint32_t v = (uint8_t)s[i] << 16 | (uint8_t)s[i + 1] << 8;
        out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
    }
    return out;
}

bool header_safe(const std::string& s) {
    if (s.empty() || s.size() > 16384) return false;
    for (unsigned char c : s)
        if (c < 0x21 || c > 0x7e) return false;
    return true;
}

// Credentials shared by the threads of one pull or push.
class Auth {
  public:
    explicit Auth(const RegistryOptions& o) : opts_(o) {
        user_ = o.username;
        pass_ = o.password;
        if (user_.empty())
            if (const char* u = std::getenv("LOKAL_REGISTRY_USER")) user_ = u;
        if (pass_.empty())
            if (const char* p = std::getenv("LOKAL_REGISTRY_PASSWORD")) pass_ = p;
    }

    std::vector<std::string> headers(std::vector<std::string> extra = {}) {
        std::lock_guard<std::mutex> g(mu_);
        if (!header_.empty()) extra.push_back(header_);
        return extra;
    }

    // Answer a 401 challenge. Returns false when there is nothing new to try.
    bool authenticate(Http& http, const HttpResponse& r, const std::string& used) {
        std::lock_guard<std::mutex> g(mu_);
        if (header_ != used && !header_.empty()) return true;  // another thread refreshed it
        std::string challenge = r.header("www-authenticate");
        auto [scheme, params] = parse_challenge(challenge);
        if (scheme == "basic") {
            if (user_.empty() || !header_.empty())
                throw Error(
                    "registry requires credentials (set LOKAL_REGISTRY_USER and "
                    "LOKAL_REGISTRY_PASSWORD)");
            header_ = "Authorization: Basic " + base64(user_ + ":" + pass_);
            return true;
        }
        if (scheme != "bearer")
            throw Error("registry answered 401 with an unsupported challenge " +
                        show_str(challenge));
        if (++bearer_attempts_ > 2) throw Error("registry refused the bearer token (HTTP 401)");
        std::string realm = params["realm"];
        bool https = realm.starts_with("https://");
        if (!https && !(opts_.insecure && realm.starts_with("http://")))
            throw Error("refusing token realm " + show_str(realm) +
                        ": must be https (or http with --insecure)");
        std::string url = realm;
        char sep = realm.find('?') == std::string::npos ? '?' : '&';
        if (params.count("service")) {
            url += sep + std::string("service=") + url_encode(params["service"]);
            sep = '&';
        }
        if (params.count("scope")) url += sep + std::string("scope=") + url_encode(params["scope"]);
        std::vector<std::string> hs;
        if (!user_.empty()) hs.push_back("Authorization: Basic " + base64(user_ + ":" + pass_));
        HttpResponse tr = http.request("GET", url, hs, nullptr, kMaxTokenResponse);
        if (tr.status != 200)
            throw Error("token request to " + show_str(realm) + " failed: " + describe(tr));
        json j = json::parse(tr.body, nullptr, false);
        std::string token;
        if (j.is_object()) {
            if (j.contains("token") && j["token"].is_string())
                token = j["token"];
            else if (j.contains("access_token") && j["access_token"].is_string())
                token = j["access_token"];
        }
        if (!header_safe(token)) throw Error("token endpoint returned no usable token");
        header_ = "Authorization: Bearer " + token;
        return true;
    }

  private:
    const RegistryOptions& opts_;
    std::mutex mu_;
    std::string header_, user_, pass_;
    int bearer_attempts_ = 0;
};

HttpOptions http_options(const RegistryOptions& o) {
    HttpOptions h = o.http;
    h.insecure = h.insecure || o.insecure;
    return h;
}

// A request with the auth dance: one retry after answering a 401 challenge.
HttpResponse send(Http& http, Auth& auth, const std::string& method, const std::string& url,
                  const std::vector<std::string>& extra, const std::string* body, uint64_t max) {
    for (int attempt = 0;; ++attempt) {
        auto hs = auth.headers(extra);
        std::string used = hs.size() > extra.size() ? hs.back() : "";
        HttpResponse r = http.request(method, url, hs, body, max);
        if (r.status == 401 && attempt < 3 && auth.authenticate(http, r, used)) continue;
        return r;
    }
}

std::string base_url(const ModelName& n, bool insecure) {
    return std::string(insecure ? "http://" : "https://") + n.host + "/v2/" + n.repository();
}

// Aggregated progress over several concurrent transfers.
struct Progress {
    const ProgressFn* fn = nullptr;
    std::mutex mu;
    uint64_t total = 0;
    std::atomic<bool> cancel{false};
    std::vector<uint64_t> done;  // per blob
    bool report(size_t i, uint64_t d) {
        if (cancel) return false;
        std::lock_guard<std::mutex> g(mu);
        done[i] = d;
        uint64_t sum = 0;
        for (auto v : done) sum += v;
        if (*fn && !(*fn)(sum, total)) cancel = true;
        return !cancel;
    }
};

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

// Download one blob into its -partial file, resuming, and verify size and SHA-256.
// Leaves a complete, verified, fsynced partial file.
void fetch_blob(Store& store, Http& http, Auth& auth, const std::string& url, const Layer& l,
                Progress& prog, size_t index) {
    std::string part = store.partial_path(l.digest);
    Fd f;
    f.fd = ::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f.fd < 0) throw Error("cannot open " + part + ": " + strerror(errno));
    struct stat st {};
    ::fstat(f.fd, &st);
    uint64_t have = (uint64_t)st.st_size;
    if (have > l.size) {
        if (::ftruncate(f.fd, 0) != 0) throw Error("cannot truncate " + part);
        have = 0;
    }
    Sha256 hash;
    {  // hash what an earlier attempt left
        std::vector<char> buf(1 << 20);
        uint64_t pos = 0;
        while (pos < have) {
            ssize_t r =
                ::pread(f.fd, buf.data(), std::min<uint64_t>(buf.size(), have - pos), (off_t)pos);
            if (r <= 0) throw Error("cannot read " + part);
            hash.update(buf.data(), (size_t)r);
            pos += (uint64_t)r;
        }
    }
    ::lseek(f.fd, (off_t)have, SEEK_SET);
    prog.report(index, have);
    for (int attempt = 0; have < l.size; ++attempt) {
        auto hs = auth.headers();
        std::string used = hs.empty() ? "" : hs.back();
        ProgressFn pf = [&](uint64_t d, uint64_t) { return prog.report(index, d); };
        auto res = http.download(
            url, hs, f.fd, have, l.size, [&](const char* p, size_t n) { hash.update(p, n); },
            [&] { hash.reset(); }, pf);
        if (res.status == 401 && attempt < 3 && auth.authenticate(http, res.error_response, used))
            continue;
        if (res.status != 200 && res.status != 206)
            throw Error("blob " + l.digest.str() + ": registry answered " +
                        describe(res.error_response));
        ::fstat(f.fd, &st);
        have = (uint64_t)st.st_size;
        if (have != l.size)
            throw Error("blob " + l.digest.str() + ": transfer ended at " + std::to_string(have) +
                        " of " + std::to_string(l.size) + " bytes (pull again to resume)");
    }
    std::string got = hash.hex();
    if (got != l.digest.hex) {
        ::unlink(part.c_str());
        throw Error("blob " + l.digest.str() +
                    " failed verification: its content hashes to sha256:" + got + "; refused");
    }
    if (::fsync(f.fd) != 0) throw Error("cannot fsync " + part + ": " + strerror(errno));
}

// Run fn(i) for i in [0, n) on up to `parallel` threads; rethrow the first error.
void run_parallel(size_t n, int parallel, Progress& prog, const std::function<void(size_t)>& fn) {
    std::atomic<size_t> next{0};
    std::mutex mu;
    std::exception_ptr first;
    auto worker = [&] {
        for (;;) {
            size_t i = next++;
            if (i >= n || prog.cancel) return;
            try {
                fn(i);
            } catch (...) {
                std::lock_guard<std::mutex> g(mu);
                if (!first) first = std::current_exception();
                prog.cancel = true;
                return;
            }
        }
    };
    std::vector<std::thread> threads;
    int t = std::max(1, std::min<int>(parallel, (int)n));
    for (int k = 1; k < t; ++k) threads.emplace_back(worker);
    worker();
    for (auto& th : threads) th.join();
    if (first) std::rethrow_exception(first);
    if (prog.cancel) throw Error("cancelled");
}

}  // namespace

void pull(Store& store, const ModelName& name, const RegistryOptions& opts) {
    auto say = [&](const std::string& s) {
        if (opts.status) opts.status(s);
    };
    Http http(http_options(opts));
    Auth auth(opts);
    std::string base = base_url(name, opts.insecure);
    say("pulling manifest");
    HttpResponse r = send(http, auth, "GET", base + "/manifests/" + name.tag, {kAcceptManifest},
                          nullptr, kMaxManifestBytes);
    if (r.status == 404)
        throw Error("model " + name.display() + " not found on " + name.host + " (" + describe(r) +
                    ")");
    if (r.status != 200)
        throw Error("manifest of " + name.display() + ": registry answered " + describe(r));
    if (std::string dh = r.header("docker-content-digest"); !dh.empty()) {
        Digest d = parse_digest(dh);
        if (d.hex != sha256_hex(r.body))
            throw Error("manifest digest mismatch: registry says " + d.str() +
                        ", content hashes to sha256:" + sha256_hex(r.body));
    }
    Manifest m = Manifest::parse(r.body);

    FileLock lock = store.lock_shared();
    std::vector<Layer> blobs{m.config};
    std::set<std::string> seen{m.config.digest.hex};
    for (const auto& l : m.layers)
        if (seen.insert(l.digest.hex).second) blobs.push_back(l);
    Progress prog;
    prog.fn = &opts.progress;
    prog.done.assign(blobs.size(), 0);
    for (const auto& l : blobs) prog.total += l.size;
    std::vector<char> fetched(blobs.size(), 0);
    run_parallel(blobs.size(), opts.parallel, prog, [&](size_t i) {
        const Layer& l = blobs[i];
        FileLock bl = store.lock_blob(l.digest);
        if (store.has_blob(l.digest, l.size)) {
            prog.report(i, l.size);
            return;
        }
        Http h(http_options(opts));
        fetch_blob(store, h, auth, base + "/blobs/" + l.digest.str(), l, prog, i);
        fetched[i] = 1;
    });
    say("verifying sha256 digests: ok");
    for (size_t i = 0; i < blobs.size(); ++i) {
        if (!fetched[i]) continue;
        FileLock bl = store.lock_blob(blobs[i].digest);
        if (!store.has_blob(blobs[i].digest, blobs[i].size))
            store.commit_blob(store.partial_path(blobs[i].digest), blobs[i].digest);
        else
            ::unlink(store.partial_path(blobs[i].digest).c_str());
    }
    say("writing manifest");
    store.write_manifest(name, r.body);
}

void push(Store& store, const ModelName& name, const RegistryOptions& opts) {
    auto say = [&](const std::string& s) {
        if (opts.status) opts.status(s);
    };
    std::string raw;
    FileLock lock = store.lock_shared();
    auto m = store.read_manifest(name, &raw);
    if (!m) throw Error("model " + name.display() + " not found");
    Http http(http_options(opts));
    Auth auth(opts);
    std::string base = base_url(name, opts.insecure);
    std::vector<Layer> blobs{m->config};
    std::set<std::string> seen{m->config.digest.hex};
    for (const auto& l : m->layers)
        if (seen.insert(l.digest.hex).second) blobs.push_back(l);
    Progress prog;
    prog.fn = &opts.progress;
    prog.done.assign(blobs.size(), 0);
    for (const auto& l : blobs) prog.total += l.size;
    run_parallel(blobs.size(), opts.parallel, prog, [&](size_t i) {
        const Layer& l = blobs[i];
        if (!store.has_blob(l.digest, l.size))
            throw Error("blob " + l.digest.str() + " is missing from the store");
        Http h(http_options(opts));
        HttpResponse head =
            send(h, auth, "HEAD", base + "/blobs/" + l.digest.str(), {}, nullptr, 0);
        if (head.status == 200) {
            prog.report(i, l.size);
            return;
        }
        std::string empty;
        HttpResponse start =
            send(h, auth, "POST", base + "/blobs/uploads/", {}, &empty, kMaxSmallResponse);
        if (start.status != 202)
            throw Error("cannot start upload of " + l.digest.str() + ": " + describe(start));
        std::string loc = start.header("location");
        if (loc.empty()) throw Error("registry gave no upload location");
        std::string url = resolve_url(base, loc);
        if (!url.starts_with("https://") && !(opts.insecure && url.starts_with("http://")))
            throw Error("refusing upload location " + show_str(url));
        url += (url.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") +
               url_encode(l.digest.str());
        ProgressFn pf = [&](uint64_t d, uint64_t) { return prog.report(i, d); };
        HttpResponse put =
            h.upload_file("PUT", url, auth.headers(), store.blob_path(l.digest), l.size, pf);
        if (put.status != 201 && put.status != 204)
            throw Error("upload of " + l.digest.str() + " failed: " + describe(put));
        prog.report(i, l.size);
    });
    say("pushing manifest");
    HttpResponse r = send(http, auth, "PUT", base + "/manifests/" + name.tag,
                          {"Content-Type: " + m->media_type}, &raw, kMaxSmallResponse);
    if (r.status != 201 && r.status != 200) throw Error("manifest upload failed: " + describe(r));
}

bool is_url(const std::string& s) {
    return s.starts_with("http://") || s.starts_with("https://");
}

ModelName name_from_url(const std::string& url) {
    std::string path = url.substr(0, url.find_first_of("?#"));
    std::string file = path.substr(path.rfind('/') + 1);
    if (file.size() > 5 && (file.ends_with(".gguf") || file.ends_with(".GGUF")))
        file.resize(file.size() - 5);
    std::string model;
    for (char c : file) {
        char l = (char)tolower((unsigned char)c);
        bool ok =
            (l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '.' || l == '_' || l == '-';
        model += ok ? l : '-';
    }
    while (!model.empty() && !isalnum((unsigned char)model[0])) model.erase(0, 1);
    if (model.size() > 80) model.resize(80);
    auto n = try_parse_name(model);
    if (!n) throw Error("cannot derive a model name from " + show_str(url) + "; use --name");
    return *n;
}

ModelName pull_url(Store& store, const std::string& url, const std::string& want_hex,
                   const std::optional<ModelName>& name_opt, const RegistryOptions& opts) {
    if (!is_url(url)) throw Error("not an http(s) URL: " + show_str(url));
    if (url.starts_with("http://") && !opts.insecure)
        throw Error("refusing plain http URL without --insecure: " + show_str(url));
    for (unsigned char c : url)
        if (c <= 0x20 || c >= 0x7f) throw Error("URL has an invalid character: " + show_str(url));
    if (!want_hex.empty() && !is_hex64(want_hex))
        throw Error("--sha256 must be 64 lowercase hex digits, not " + show_str(want_hex));
    ModelName name = name_opt ? *name_opt : name_from_url(url);
    FileLock lock = store.lock_shared();
    Digest key{sha256_hex(url)};
    FileLock bl = store.lock_blob(key);
    std::string part = store.blobs_dir() + "/url-" + key.hex.substr(0, 32) + "-partial";
    Fd f;
    f.fd = ::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f.fd < 0) throw Error("cannot open " + part + ": " + strerror(errno));
    struct stat st {};
    ::fstat(f.fd, &st);
    uint64_t have = (uint64_t)st.st_size;
    ::lseek(f.fd, (off_t)have, SEEK_SET);
    Http http(http_options(opts));
    ProgressFn pf = [&](uint64_t d, uint64_t t) { return !opts.progress || opts.progress(d, t); };
    auto res = http.download(url, {}, f.fd, have, 0, {}, {}, pf);
    if (res.status == 416 && have > 0) {
        // Already complete (or the file changed): fall through to verification.
    } else if (res.status != 200 && res.status != 206) {
        throw Error("download of " + show_str(url) + " failed: HTTP " + std::to_string(res.status));
    }
    if (::fsync(f.fd) != 0) throw Error("cannot fsync " + part + ": " + strerror(errno));
    uint64_t size = 0;
    std::string got = sha256_file(part, &size);
    if (!want_hex.empty() && got != want_hex) {
        ::unlink(part.c_str());
        throw Error("download of " + show_str(url) + " failed verification: sha256 " + got +
                    ", expected " + want_hex + "; refused");
    }
    ModelInfo info;
    try {
        info = inspect_gguf(part);
    } catch (const Error& e) {
        ::unlink(part.c_str());
        throw Error(std::string("download of ") + show_str(url) +
                    " is not a GGUF model: " + e.what());
    }
    Digest d{got};
    store.commit_blob(part, d);
    Layer model{media::kModel, d, size};
    json cfg = {{"model_format", "gguf"},
                {"model_family", info.architecture},
                {"model_families", json::array({info.architecture})},
                {"model_type", info.parameter_size},
                {"file_type", info.quantization},
                {"architecture", "amd64"},
                {"os", "linux"},
                {"rootfs", {{"type", "layers"}, {"diff_ids", json::array({d.str()})}}}};
    Manifest m;
    m.layers = {model};
    m.config = store.add_blob(cfg.dump(), media::kConfig);
    store.write_manifest(name, m.to_json());
    return name;
}

}  // namespace lokal::store
