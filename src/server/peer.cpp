// PeerWatch: notices a client that hung up while its request is computed.
//
// cpp-httplib 0.11 gives handlers neither the socket nor an is_connection_closed(), and a
// non-streaming handler writes nothing until the end, so a vanished client would keep its
// sequence generating to the last token. The request does carry both ends' addresses: the
// connected socket with those addresses is found among our descriptors once, then polled.
// While the handler runs, httplib keeps that descriptor open, so its number cannot be
// reused by another connection.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>

#include "server/server_impl.h"

namespace lokal::server {

namespace {

std::string plain(std::string a) {
    if (a.rfind("::ffff:", 0) == 0 && a.find('.') != std::string::npos) a = a.substr(7);
    return a;
}

// Address and port of a socket end; IPv4-mapped IPv6 written as plain IPv4 as httplib does.
bool endpoint(int fd, bool peer, std::string& addr, int& port) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if ((peer ? getpeername(fd, (sockaddr*)&ss, &len) : getsockname(fd, (sockaddr*)&ss, &len)) != 0)
        return false;
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        auto* a = (sockaddr_in*)&ss;
        inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
        port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        auto* a = (sockaddr_in6*)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
        port = ntohs(a->sin6_port);
    } else {
        return false;
    }
    addr = plain(buf);
    return true;
}

}  // namespace

PeerWatch::PeerWatch(const httplib::Request& req)
    : remote_addr_(plain(req.remote_addr)),
      local_addr_(plain(req.local_addr)),
      remote_port_(req.remote_port),
      local_port_(req.local_port) {}

int PeerWatch::find() const {
    if (remote_port_ <= 0 || local_port_ <= 0) return -1;
    DIR* d = opendir("/proc/self/fd");
    if (!d) return -1;
    int found = -1;
    while (dirent* e = readdir(d)) {
        char* end = nullptr;
        const long fd = std::strtol(e->d_name, &end, 10);
        if (end == e->d_name || *end || fd == dirfd(d)) continue;
        struct stat st {};
        if (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
        std::string la, ra;
        int lp = 0, rp = 0;
        if (!endpoint((int)fd, false, la, lp) || lp != local_port_ || la != local_addr_) continue;
        if (!endpoint((int)fd, true, ra, rp) || rp != remote_port_ || ra != remote_addr_) continue;
        found = (int)fd;
        break;
    }
    closedir(d);
    return found;
}

bool PeerWatch::gone() {
    if (fd_ == -2) fd_ = find();
    if (fd_ < 0) return false;  // not found (not a TCP request): nothing to watch
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
    if (p.revents & POLLIN) {
        // Readable while we owe the answer: either a pipelined request (still there) or
        // the end of the stream (gone).
        char c;
        const ssize_t n = recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return false;
}

}  // namespace lokal::server
