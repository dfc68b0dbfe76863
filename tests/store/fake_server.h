// A tiny HTTP/1.1 server on a loopback port for fault-injection tests: each connection
// gets one request, handed to a handler that writes whatever raw bytes it likes (a slow
// body, a stall, a wrong digest). Connections close after each response.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lokal::test {

struct Request {
    std::string method, target, path, query;
    std::map<std::string, std::string> headers;  // lowercase names
    std::string body;
    std::string header(const std::string& k) const {
        auto it = headers.find(k);
        return it == headers.end() ? "" : it->second;
    }
};

class FakeServer {
  public:
    // The handler answers on fd; it may sleep with wait() (which returns early on stop).
    using Handler = std::function<void(const Request&, int fd)>;

    explicit FakeServer(Handler h) : handler_(std::move(h)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        if (::bind(fd_, (sockaddr*)&a, sizeof a) != 0 || ::listen(fd_, 64) != 0) std::abort();
        socklen_t len = sizeof a;
        ::getsockname(fd_, (sockaddr*)&a, &len);
        port_ = ntohs(a.sin_port);
        accept_thread_ = std::thread([this] { accept_loop(); });
    }
    ~FakeServer() {
        stop_ = true;
        accept_thread_.join();
        std::vector<std::thread> ts;
        {
            std::lock_guard<std::mutex> g(mu_);
            ts.swap(conns_);
        }
        for (auto& t : ts) t.join();
        ::close(fd_);
    }
    int port() const { return port_; }
    std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string url() const { return "http://" + host(); }
    bool stopping() const { return stop_; }
    // Sleep up to ms, returning early when the server stops.
    void wait(int ms) const {
        for (int i = 0; i < ms / 10 && !stop_; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::vector<Request> requests() {
        std::lock_guard<std::mutex> g(mu_);
        return log_;
    }

    static bool send_all(int fd, const std::string& s) {
        size_t off = 0;
        while (off < s.size()) {
            ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (w <= 0) return false;
            off += (size_t)w;
        }
        return true;
    }
    static std::string head(int status, const std::string& reason,
                            const std::vector<std::string>& headers, size_t content_length) {
        std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
        for (const auto& h : headers) out += h + "\r\n";
        out +=
            "Content-Length: " + std::to_string(content_length) + "\r\nConnection: close\r\n\r\n";
        return out;
    }
    static void respond(int fd, int status, const std::string& body,
                        const std::vector<std::string>& headers = {}) {
        send_all(fd, head(status, status < 300 ? "OK" : "Error", headers, body.size()) + body);
    }

  private:
    void accept_loop() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            std::lock_guard<std::mutex> g(mu_);
            conns_.emplace_back([this, c] { serve(c); });
        }
    }
    void serve(int c) {
        std::string buf;
        char tmp[4096];
        size_t hdr_end;
        while ((hdr_end = buf.find("\r\n\r\n")) == std::string::npos) {
            pollfd p{c, POLLIN, 0};
            if (stop_ || ::poll(&p, 1, 100) < 0) break;
            if (!(p.revents & POLLIN)) continue;
            ssize_t r = ::recv(c, tmp, sizeof tmp, 0);
            if (r <= 0) break;
            buf.append(tmp, (size_t)r);
        }
        if (hdr_end == std::string::npos) {
            ::close(c);
            return;
        }
        Request req;
        std::string head = buf.substr(0, hdr_end);
        size_t line_end = head.find("\r\n");
        std::string first = head.substr(0, line_end);
        size_t sp1 = first.find(' '), sp2 = first.rfind(' ');
        req.method = first.substr(0, sp1);
        req.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
        size_t q = req.target.find('?');
        req.path = req.target.substr(0, q);
        if (q != std::string::npos) req.query = req.target.substr(q + 1);
        size_t pos = line_end + 2;
        while (pos < head.size()) {
            size_t e = head.find("\r\n", pos);
            if (e == std::string::npos) e = head.size();
            std::string line = head.substr(pos, e - pos);
            size_t colon = line.find(':');
            if (colon != std::string::npos) {
                std::string k = line.substr(0, colon);
                for (char& ch : k) ch = (char)tolower((unsigned char)ch);
                size_t v = colon + 1;
                while (v < line.size() && line[v] == ' ') ++v;
                req.headers[k] = line.substr(v);
            }
            pos = e + 2;
        }
        req.body = buf.substr(hdr_end + 4);
        size_t want =
            req.headers.count("content-length") ? std::stoul(req.headers["content-length"]) : 0;
        while (req.body.size() < want) {
            ssize_t r = ::recv(c, tmp, sizeof tmp, 0);
            if (r <= 0) break;
            req.body.append(tmp, (size_t)r);
        }
        {
            std::lock_guard<std::mutex> g(mu_);
            log_.push_back(req);
        }
        handler_(req, c);
        ::shutdown(c, SHUT_WR);
        ::close(c);
    }

    Handler handler_;
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread accept_thread_;
    std::mutex mu_;
    std::vector<std::thread> conns_;
    std::vector<Request> log_;
};

}  // namespace lokal::test
