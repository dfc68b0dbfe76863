// Bounded load test: the built `lokal serve` on loopback, 64 concurrent keep-alive clients,
// 10,000 short requests over the generation, chat, streaming and embedding routes.
// Passes when every answer is a 200 or a 503 with Retry-After (overload), the server
// survives, its queues drain, its resident memory does not grow after warm-up, and it
// exits 0 on SIGTERM. Usage: test_server_load LOKAL_BIN SHARED_DIR [requests] [clients]
// (LOKAL_LOAD_LOG=FILE keeps the server's log.)
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

int free_port() {
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

long rss_kib(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

// One request of the mix, by index: small bodies, 1-2 generated tokens.
struct Call {
    const char* path;
    json body;
};
Call call(size_t i) {
    const std::string word = "Lily " + std::to_string(i % 97);
    switch (i % 5) {
        case 0:
            return {"/api/generate",
                    {{"model", "stories260K"},
                     {"prompt", word},
                     {"raw", true},
                     {"stream", false},
                     {"options", {{"num_predict", 2}}}}};
        case 1:
            return {"/v1/chat/completions",
                    {{"model", "stories260K"},
                     {"messages", {{{"role", "user"}, {"content", word}}}},
                     {"max_tokens", 2}}};
        case 2:
            return {
                "/v1/completions",
                {{"model", "stories260K"}, {"prompt", word}, {"max_tokens", 1}, {"stream", true}}};
        case 3:
            return {"/api/chat",
                    {{"model", "stories260K"},
                     {"messages", {{{"role", "user"}, {"content", word}}}},
                     {"options", {{"num_predict", 2}}}}};
        default:
            return {"/api/embed", {{"model", "stories260K"}, {"input", word}}};
    }
}

// `lokal serve` on `port` in a child process, its log in LOKAL_LOAD_LOG or nowhere. A small
// wait queue so 64 clients overload it: the 503 path is part of the test.
pid_t start_server(const std::string& bin, const std::string& shared, int port) {
    const std::vector<std::string> args = {bin,
                                           "serve",
                                           "--port",
                                           std::to_string(port),
                                           "--models-dir",
                                           shared + "/models",
                                           "-m",
                                           "stories260K",
                                           "-c",
                                           "64",
                                           "-t",
                                           "1",
                                           "--parallel",
                                           "8",
                                           "--max-queue",
                                           "16",
                                           "--keep-alive",
                                           "-1"};
    const pid_t pid = fork();
    if (pid == 0) {
        // One log line per request: 10,000 of them; kept where LOKAL_LOAD_LOG says.
        const char* log = getenv("LOKAL_LOAD_LOG");
        const int null = ::open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(null, 2);
        std::vector<char*> av;
        for (auto& a : args) av.push_back(const_cast<char*>(a.c_str()));
        av.push_back(nullptr);
        execv(bin.c_str(), av.data());
        _exit(127);
    }
    return pid;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s LOKAL_BIN SHARED_DIR [requests] [clients]\n", argv[0]);
        return 2;
    }
    const std::string bin = argv[1], shared = argv[2];
    const size_t total = argc > 3 ? std::stoul(argv[3]) : 10000;
    const int clients = argc > 4 ? std::stoi(argv[4]) : 64;
    // free_port's port is free when asked, not necessarily when the server binds it (another
    // test's connection may take it meanwhile): a server that exits at once is started again
    // on another port.
    int port = 0;
    pid_t pid = -1;
    bool up = false;
    std::unique_ptr<httplib::Client> probe;
    for (int attempt = 0; attempt < 5 && !up; ++attempt) {
        port = free_port();
        pid = start_server(bin, shared, port);
        probe = std::make_unique<httplib::Client>("127.0.0.1", port);
        probe->set_connection_timeout(2, 0);
        probe->set_read_timeout(2, 0);
        bool exited = false;
        for (int i = 0; i < 200 && !up; ++i) {
            if ((exited = waitpid(pid, nullptr, WNOHANG) == pid)) break;  // could not listen
            auto r = probe->Get("/health");
            up = r && r->status == 200;
            if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!up && !exited) {
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
        }
    }
    if (!up) {
        std::printf("FAIL: the server did not start (5 ports tried)\n");
        return 1;
    }
    probe->set_read_timeout(30, 0);
    auto fail = [&](const std::string& why) {
        std::printf("FAIL: %s\n", why.c_str());
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        return 1;
    };

    std::atomic<size_t> next{0}, finished{0};
    std::mutex mu;
    std::map<int, size_t> statuses;  // -1: transport error
    std::vector<std::string> errors;
    std::atomic<long> rss_warm{0};
    const size_t warm_at = total / 5;
    const auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int c = 0; c < clients; ++c)
        ts.emplace_back([&] {
            httplib::Client cl("127.0.0.1", port);
            cl.set_keep_alive(true);
            cl.set_read_timeout(30, 0);
            for (size_t i; (i = next++) < total;) {
                const Call k = call(i);
                auto r = cl.Post(k.path, k.body.dump(), "application/json");
                int st = r ? r->status : -1;
                std::string why;
                if (!r) {
                    why = std::string("transport error ") + httplib::to_string(r.error());
                } else if (st == 503 && r->get_header_value("Retry-After").empty()) {
                    why = "503 without Retry-After";
                    st = -503;
                } else if (st == 200 && k.body.value("stream", false) &&
                           r->body.find("data: [DONE]") == std::string::npos) {
                    why = "stream without [DONE]";
                    st = -200;
                } else if (st != 200 && st != 503) {
                    why = std::to_string(st) + " " + r->body.substr(0, 200);
                }
                {
                    std::lock_guard lk(mu);
                    ++statuses[st];
                    if (!why.empty() && errors.size() < 10)
                        errors.push_back(std::string(k.path) + ": " + why);
                }
                if (++finished == warm_at) rss_warm = rss_kib(pid);
            }
        });
    for (auto& t : ts) t.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const long rss_end = rss_kib(pid);

    std::printf("%zu requests from %d clients in %.1f s (%.0f requests/s)\n", total, clients, secs,
                total / secs);
    for (auto& [st, n] : statuses) std::printf("  status %d: %zu\n", st, n);
    std::printf("  server RSS after %zu requests: %ld KiB, at the end: %ld KiB\n", warm_at,
                rss_warm.load(), rss_end);
    for (auto& e : errors) std::printf("  error: %s\n", e.c_str());

    if (rss_end < 0) return fail("the server died");
    for (auto& [st, n] : statuses)
        if (st != 200 && st != 503) return fail("answers other than 200 and 503");
    if (statuses[200] < total / 2) return fail("fewer than half the requests succeeded");
    // Memory is flat when the last 80% of the requests added at most a few MiB (allocator
    // arenas settle during warm-up; a per-request leak of even 1 KiB would add 8 MiB).
    if (rss_end - rss_warm > 4096) return fail("resident memory grew after warm-up");
    // Queues drained and nothing left running.
    // Queues drained and nothing left running (the gauges follow within a step).
    bool drained = false;
    for (int i = 0; i < 50 && !drained; ++i) {
        auto m = probe->Get("/metrics");
        drained =
            m && m->status == 200 &&
            m->body.find("lokal_running_sequences{model=\"stories260K\"} 0") != std::string::npos &&
            m->body.find("lokal_queue_length{model=\"stories260K\"} 0") != std::string::npos;
        if (!drained) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!drained) return fail("sequences still running or queued after the run");
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::printf("FAIL: no clean exit after SIGTERM\n");
        return 1;
    }
    std::printf("ok\n");
    return 0;
}
