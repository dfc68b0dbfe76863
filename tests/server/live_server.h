// A lokal server running in-process on a free loopback port, and response parsers.
#pragma once

#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "server/server.h"

namespace lokal::test {

using json = nlohmann::json;

struct Live {
    explicit Live(server::ServerOptions o) : srv(std::move(o)) {
        port = srv.bind();
        thread = std::thread([this] { srv.run(); });
        for (int i = 0; i < 200 && !srv.running(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ~Live() {
        srv.stop();
        thread.join();
    }
    httplib::Client client() {
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(60, 0);
        return c;
    }
    server::Server srv;
    int port = 0;
    std::thread thread;
};

inline std::vector<json> ndjson(const std::string& body) {
    std::vector<json> out;
    std::istringstream in(body);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(json::parse(line));
    return out;
}

inline std::vector<std::string> sse(const std::string& body) {
    std::vector<std::string> out;
    std::istringstream in(body);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
    return out;
}

// One sample of /metrics, e.g. "lokal_running_sequences{model=\"m\"}"; -1 when absent.
inline double metric(Live& l, const std::string& sample) {
    auto r = l.client().Get("/metrics");
    if (!r) return -1;
    std::istringstream in(r->body);
    for (std::string line; std::getline(in, line);)
        if (line.size() > sample.size() && line.compare(0, sample.size(), sample) == 0 &&
            line[sample.size()] == ' ')
            return std::stod(line.substr(sample.size() + 1));
    return -1;
}

}  // namespace lokal::test
