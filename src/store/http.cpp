#include "store/http.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

namespace lokal::store {

namespace {

constexpr size_t kMaxErrorBody = 64 << 10;

std::string redact(const std::string& url) {
    auto q = url.find('?');
    return q == std::string::npos ? url : url.substr(0, q);
}

struct HeaderCtx {
    std::map<std::string, std::string>* headers;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
    auto* h = static_cast<HeaderCtx*>(user);
    std::string line(data, size * n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.starts_with("HTTP/")) {  // a new response (after a redirect or 100-continue)
        h->headers->clear();
        return size * n;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos) return size * n;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = (char)tolower((unsigned char)c);
    size_t v = colon + 1;
    while (v < line.size() && (line[v] == ' ' || line[v] == '\t')) ++v;
    if (h->headers->size() < 256) (*h->headers)[name] = line.substr(v);
    return size * n;
}

struct BodyCtx {
    std::string* body;
    uint64_t max;
    bool too_large = false;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
    auto* b = static_cast<BodyCtx*>(user);
    if (b->body->size() + size * n > b->max) {
        b->too_large = true;
        return 0;
    }
    b->body->append(data, size * n);
    return size * n;
}

struct ProgressCtx {
    const ProgressFn* fn;
    uint64_t base = 0;
    uint64_t total = 0;
    bool upload = false;
    bool cancelled = false;
    // Stall detection: no byte either way for stall_s seconds.
    long stall_s = 0;
    bool stalled = false;
    curl_off_t last_bytes = -1;
    std::chrono::steady_clock::time_point last_change = std::chrono::steady_clock::now();
};

int on_progress(void* user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                curl_off_t ulnow) {
    auto* p = static_cast<ProgressCtx*>(user);
    auto t_now = std::chrono::steady_clock::now();
    if (dlnow + ulnow != p->last_bytes) {
        p->last_bytes = dlnow + ulnow;
        p->last_change = t_now;
    } else if (p->stall_s > 0 && t_now - p->last_change > std::chrono::seconds(p->stall_s)) {
        p->stalled = true;
        return 1;
    }
    if (!p->fn || !*p->fn) return 0;
    uint64_t now = p->upload ? (uint64_t)ulnow : (uint64_t)dlnow;
    uint64_t tot = p->total ? p->total : p->base + (uint64_t)(p->upload ? ultotal : dltotal);
    if (!(*p->fn)(p->base + now, tot)) {
        p->cancelled = true;
        return 1;
    }
    return 0;
}

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

std::string url_encode(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += (char)c;
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string resolve_url(const std::string& base, const std::string& ref) {
    if (ref.starts_with("http://") || ref.starts_with("https://")) return ref;
    auto scheme = base.find("://");
    if (scheme == std::string::npos) return ref;
    size_t host_end = base.find('/', scheme + 3);
    std::string origin = host_end == std::string::npos ? base : base.substr(0, host_end);
    if (ref.starts_with("//")) return base.substr(0, scheme + 1) + ref;
    if (ref.starts_with("/")) return origin + ref;
    std::string dir = base.substr(0, base.rfind('/') + 1);
    return dir + ref;
}

Http::Http(HttpOptions opts) : opts_(opts) {
    global_init();
    curl_ = curl_easy_init();
    if (!curl_) throw Error("cannot initialise libcurl");
}

Http::~Http() {
    curl_easy_cleanup(static_cast<CURL*>(curl_));
}

namespace {

struct Setup {
    curl_slist* list = nullptr;
    ~Setup() { curl_slist_free_all(list); }
};

void setup(CURL* c, const HttpOptions& o, const std::string& url,
           const std::vector<std::string>& headers, Setup& s, HeaderCtx& hctx, ProgressCtx& pctx) {
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)o.max_redirects);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, o.insecure ? "http,https" : "https");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o.connect_timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o.stall_timeout_s + 10);  // backstop
    pctx.stall_s = o.stall_timeout_s;
    curl_easy_setopt(c, CURLOPT_USERAGENT, "lokal/0.1");
    if (o.insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    for (const auto& h : headers) s.list = curl_slist_append(s.list, h.c_str());
    if (s.list) curl_easy_setopt(c, CURLOPT_HTTPHEADER, s.list);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hctx);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &pctx);
}

[[noreturn]] void throw_curl(CURLcode rc, const std::string& url, const HttpOptions& o,
                             const char* errbuf) {
    std::string u = redact(url);
    switch (rc) {
        case CURLE_TOO_MANY_REDIRECTS:
            throw Error("too many redirects fetching " + u + " (a redirect loop?)");
        case CURLE_OPERATION_TIMEDOUT:
            throw Error("server stalled: no data for " + std::to_string(o.stall_timeout_s) +
                        " s from " + u);
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
            throw Error("cannot connect to " + u + ": " +
                        (errbuf[0] ? errbuf : curl_easy_strerror(rc)));
        case CURLE_SSL_CONNECT_ERROR:
            throw Error("TLS handshake with " + u + " failed (" +
                        (errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc)) +
                        "); for a plain-http registry use --insecure");
        case CURLE_UNSUPPORTED_PROTOCOL:
            throw Error("refused URL " + u +
                        ": only http and https (and redirects to https) are allowed");
        default:
            throw Error("transfer failed for " + u + ": " +
                        (errbuf[0] ? std::string(errbuf) : curl_easy_strerror(rc)));
    }
}

}  // namespace

HttpResponse Http::request(const std::string& method, const std::string& url,
                           const std::vector<std::string>& headers, const std::string* body,
                           uint64_t max_body) {
    CURL* c = static_cast<CURL*>(curl_);
    HttpResponse r;
    Setup s;
    HeaderCtx hctx{&r.headers};
    ProgressFn none;
    ProgressCtx pctx{&none};
    setup(c, opts_, url, headers, s, hctx, pctx);
    BodyCtx bctx{&r.body, max_body};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &bctx);
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (method == "HEAD") {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (method != "GET") {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
        if (body) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->size());
        } else {
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        }
    }
    CURLcode rc = curl_easy_perform(c);
    if (pctx.stalled) rc = CURLE_OPERATION_TIMEDOUT;
    if (bctx.too_large)
        throw Error("response from " + redact(url) + " is larger than " + std::to_string(max_body) +
                    " bytes");
    if (rc != CURLE_OK) throw_curl(rc, url, opts_, errbuf);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char* eff = nullptr;
    curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &eff);
    if (eff) r.effective_url = eff;
    return r;
}

namespace {

struct ReadCtx {
    int fd;
    int err = 0;
};

size_t on_read(char* buf, size_t size, size_t n, void* user) {
    auto* r = static_cast<ReadCtx*>(user);
    for (;;) {
        ssize_t got = ::read(r->fd, buf, size * n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            r->err = errno;
            return CURL_READFUNC_ABORT;
        }
        return (size_t)got;
    }
}

}  // namespace

HttpResponse Http::upload_file(const std::string& method, const std::string& url,
                               const std::vector<std::string>& headers, const std::string& path,
                               uint64_t size, const ProgressFn& progress) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error("cannot open " + path + ": " + strerror(errno));
    CURL* c = static_cast<CURL*>(curl_);
    HttpResponse r;
    Setup s;
    HeaderCtx hctx{&r.headers};
    ProgressCtx pctx{&progress, 0, size, true};
    std::vector<std::string> hs = headers;
    hs.push_back("Content-Type: application/octet-stream");
    hs.push_back("Expect:");
    setup(c, opts_, url, hs, s, hctx, pctx);
    ReadCtx rctx{fd};
    BodyCtx bctx{&r.body, kMaxErrorBody};
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &rctx);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &bctx);
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(c);
    if (pctx.stalled) rc = CURLE_OPERATION_TIMEDOUT;
    ::close(fd);
    if (rctx.err) throw Error("cannot read " + path + ": " + strerror(rctx.err));
    if (pctx.cancelled) throw Error("cancelled");
    if (rc != CURLE_OK && !bctx.too_large) throw_curl(rc, url, opts_, errbuf);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    return r;
}

namespace {

struct DownloadCtx {
    CURL* curl = nullptr;
    int fd = -1;
    uint64_t offset = 0;
    uint64_t limit = 0;
    uint64_t written = 0;
    const std::function<void(const char*, size_t)>* sink = nullptr;
    const std::function<void()>* reset = nullptr;
    const std::map<std::string, std::string>* headers = nullptr;
    Http::DownloadResult* result = nullptr;
    ProgressCtx* progress = nullptr;
    bool first = true;
    bool ok_status = false;
    int write_errno = 0;
    bool too_much = false;
    std::string bad_range;
};

size_t on_download(char* data, size_t size, size_t n, void* user) {
    auto* d = static_cast<DownloadCtx*>(user);
    size_t len = size * n;
    if (d->first) {
        d->first = false;
        long status = 0;
        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &status);
        d->result->status = status;
        d->ok_status = status == 200 || status == 206;
        if (status == 206 && d->offset > 0) {
            auto it = d->headers->find("content-range");
            std::string cr = it == d->headers->end() ? "" : it->second;
            unsigned long long start = 0;
            if (sscanf(cr.c_str(), "bytes %llu-", &start) != 1 || start != d->offset) {
                d->bad_range = cr;
                return 0;
            }
        } else if (status == 206) {
            d->bad_range = "unrequested partial content";
            return 0;
        } else if (status == 200 && d->offset > 0) {  // Range ignored: start over
            if (::ftruncate(d->fd, 0) != 0 || ::lseek(d->fd, 0, SEEK_SET) != 0) {
                d->write_errno = errno;
                return 0;
            }
            d->offset = 0;
            d->progress->base = 0;
            d->result->restarted = true;
            if (*d->reset) (*d->reset)();
        }
    }
    if (!d->ok_status) {
        std::string& b = d->result->error_response.body;
        if (b.size() < kMaxErrorBody) b.append(data, std::min(len, kMaxErrorBody - b.size()));
        return len;
    }
    if (d->offset + d->written + len > (d->limit ? d->limit : kMaxBlobBytes)) {
        d->too_much = true;
        return 0;
    }
    const char* p = data;
    size_t left = len;
    while (left) {
        ssize_t w = ::write(d->fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            d->write_errno = errno;
            return 0;
        }
        p += w;
        left -= (size_t)w;
    }
    if (*d->sink) (*d->sink)(data, len);
    d->written += len;
    ProgressCtx* pc = d->progress;
    if (pc->fn && *pc->fn && !(*pc->fn)(d->offset + d->written, pc->total)) {
        pc->cancelled = true;
        return 0;
    }
    return len;
}

}  // namespace

Http::DownloadResult Http::download(const std::string& url, const std::vector<std::string>& headers,
                                    int fd, uint64_t offset, uint64_t limit,
                                    const std::function<void(const char*, size_t)>& sink,
                                    const std::function<void()>& reset,
                                    const ProgressFn& progress) {
    CURL* c = static_cast<CURL*>(curl_);
    DownloadResult res;
    Setup s;
    HeaderCtx hctx{&res.error_response.headers};
    ProgressCtx pctx{&progress, offset, limit, false};
    std::vector<std::string> hs = headers;
    if (offset > 0) hs.push_back("Range: bytes=" + std::to_string(offset) + "-");
    setup(c, opts_, url, hs, s, hctx, pctx);
    DownloadCtx d;
    d.curl = c;
    d.fd = fd;
    d.offset = offset;
    d.limit = limit;
    d.sink = &sink;
    d.reset = &reset;
    d.headers = &res.error_response.headers;
    d.result = &res;
    d.progress = &pctx;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_download);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(c);
    if (pctx.stalled) throw_curl(CURLE_OPERATION_TIMEDOUT, url, opts_, errbuf);
    std::string u = redact(url);
    if (d.write_errno)
        throw Error("cannot write download of " + u + ": " + strerror(d.write_errno));
    if (d.too_much)
        throw Error("server sent more than the declared " +
                    std::to_string(limit ? limit : kMaxBlobBytes) + " bytes for " + u);
    if (!d.bad_range.empty())
        throw Error("server answered Range request with bad Content-Range " +
                    show_str(d.bad_range) + " for " + u);
    if (pctx.cancelled) throw Error("cancelled");
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res.status);
    res.error_response.status = res.status;
    // Some servers (Go's ServeContent) send a wrong Content-Length with 416: the status
    // is what matters there.
    if (rc != CURLE_OK && !(res.status == 416 && rc == CURLE_PARTIAL_FILE))
        throw_curl(rc, url, opts_, errbuf);
    return res;
}

}  // namespace lokal::store
