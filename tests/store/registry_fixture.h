// A real CNCF Distribution registry (Debian's docker-registry) on a free loopback port,
// with a config the test writes and its storage in a temporary directory.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "helpers.h"
#include "store/http.h"

namespace lokal::test {

inline int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, (sockaddr*)&a, sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, (sockaddr*)&a, &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

inline const char* registry_binary() {
    if (const char* b = getenv("LOKAL_REGISTRY_BIN")) return b;
    return "/usr/bin/docker-registry";
}

class RegistryProcess {
  public:
    RegistryProcess() {
        if (access(registry_binary(), X_OK) != 0) return;
        for (int attempt = 0; attempt < 3 && !ok_; ++attempt) start();
    }
    ~RegistryProcess() { stop(); }
    bool ok() const { return ok_; }
    std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string storage() const { return dir_.sub("data"); }
    // The registry's file holding a blob's bytes.
    std::string blob_data(const std::string& hex) const {
        return storage() + "/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex +
               "/data";
    }

  private:
    void start() {
        port_ = free_port();
        write_text(dir_.sub("config.yml"),
                   "version: 0.1\n"
                   "log:\n  level: error\n  accesslog:\n    disabled: true\n"
                   "storage:\n  filesystem:\n    rootdirectory: " +
                       storage() +
                       "\n"
                       "  delete:\n    enabled: true\n"
                       "http:\n  addr: " +
                       host() + "\n");
        pid_ = fork();
        if (pid_ == 0) {
            int null = ::open("/dev/null", O_WRONLY);
            dup2(null, 1);
            dup2(null, 2);
            execl(registry_binary(), registry_binary(), "serve", dir_.sub("config.yml").c_str(),
                  (char*)nullptr);
            _exit(127);
        }
        store::HttpOptions o;
        o.connect_timeout_s = 1;
        o.stall_timeout_s = 2;
        store::Http http(o);
        for (int i = 0; i < 100; ++i) {
            try {
                if (http.request("GET", "http://" + host() + "/v2/", {}, nullptr, 4096).status ==
                    200) {
                    ok_ = true;
                    return;
                }
            } catch (const std::exception&) {
            }
            int status;
            if (waitpid(pid_, &status, WNOHANG) == pid_) break;  // died (port taken?)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        stop();
    }
    void stop() {
        if (pid_ > 0) {
            kill(pid_, SIGTERM);
            int status;
            waitpid(pid_, &status, 0);
            pid_ = -1;
        }
    }
    TempDir dir_;
    int port_ = 0;
    pid_t pid_ = -1;
    bool ok_ = false;
};

}  // namespace lokal::test
