// A small libcurl client for registries and direct downloads: TLS, redirects (bounded),
// proxies from the environment, Range resume, stall timeouts, bounded response bodies.
// Everything that comes back is untrusted; failures throw store::Error with one line.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "store/util.h"

namespace lokal::store {

struct HttpOptions {
    long connect_timeout_s = 20;
    long stall_timeout_s = 30;  // abort when no byte arrives for this long
    int max_redirects = 8;
    bool insecure = false;  // skip TLS verification (and allow http:// registries)
};

struct HttpResponse {
    long status = 0;
    std::map<std::string, std::string> headers;  // lowercase names, last value wins
    std::string body;
    std::string effective_url;
    std::string header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
};

// Called with (bytes now present, bytes expected in all; 0 when unknown). Returning false
// cancels the transfer (store::Error "cancelled").
using ProgressFn = std::function<bool(uint64_t done, uint64_t total)>;

class Http {
  public:
    explicit Http(HttpOptions opts = {});
    ~Http();
    Http(const Http&) = delete;
    Http& operator=(const Http&) = delete;

    // A request whose body is kept in memory, at most max_body bytes (else Error).
    HttpResponse request(const std::string& method, const std::string& url,
                         const std::vector<std::string>& headers, const std::string* body,
                         uint64_t max_body);

    // Upload a file as the request body (PUT/POST).
    HttpResponse upload_file(const std::string& method, const std::string& url,
                             const std::vector<std::string>& headers, const std::string& path,
                             uint64_t size, const ProgressFn& progress);

    struct DownloadResult {
        long status = 0;
        HttpResponse error_response;  // non-2xx: status, headers and a bounded body
        bool restarted = false;       // server ignored Range: the file was truncated
    };
    // GET url appending to fd (open for writing, positioned at `offset`, the bytes already
    // present). Sends Range when offset > 0. `sink` sees every byte written (for hashing);
    // `reset` is called when the server ignores Range and the file restarts at 0. At most
    // `limit` bytes in all (the declared size; 0 = unknown, capped at kMaxBlobBytes) are accepted.
    DownloadResult download(const std::string& url, const std::vector<std::string>& headers, int fd,
                            uint64_t offset, uint64_t limit,
                            const std::function<void(const char*, size_t)>& sink,
                            const std::function<void()>& reset, const ProgressFn& progress);

    const HttpOptions& options() const { return opts_; }

  private:
    void* curl_;
    HttpOptions opts_;
};

// Resolve a possibly relative URL (a Location header) against a base URL.
std::string resolve_url(const std::string& base, const std::string& ref);
// Percent-encode a query value.
std::string url_encode(const std::string& s);

}  // namespace lokal::store
