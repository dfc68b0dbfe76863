// main() for fuzz targets in builds without libFuzzer (any compiler): replays files, or every
// file of the given directories, through LLVMFuzzerTestOneInput; with --mutate SECONDS it then
// keeps mutating them for that long with a plain random mutator (byte edits, insertions of
// syntax-significant tokens, splices of two inputs). The input in flight is kept in
// ./fuzz_last_input until the run ends, so a crash can be replayed.
// Include once, at the end of a fuzz target's file, under #ifdef LOKAL_FUZZ_STANDALONE.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace lokal::fuzz {

inline std::string mutate(const std::vector<std::string>& pool, std::mt19937& rng) {
    auto pick = [&](size_t n) {
        return (size_t)std::uniform_int_distribution<size_t>(0, n - 1)(rng);
    };
    std::string s = pool[pick(pool.size())];
    static const char* tokens[] = {"{",     "}",       "[",       "]",        "\"",
                                   ",",     ":",       "null",    "true",     "-1",
                                   "1e999", "\\u0000", "\\ud800", "\xff",     "0.5",
                                   "\n",    "\"\"\"",  "{{ x }}", "{%",       "99999999999",
                                   "..",    "/",       "sha256:", "\x01\x7f", "\"n\":"};
    for (int k = 0, n = 1 + (int)pick(4); k < n; ++k) {
        const size_t at = pick(s.size() + 1);
        switch (pick(5)) {
            case 0:
                if (at < s.size()) s[at] = (char)pick(256);
                break;
            case 1:
                if (at < s.size()) s.erase(at, 1 + pick(std::min<size_t>(16, s.size() - at)));
                break;
            case 2:
                s.insert(at, tokens[pick(sizeof tokens / sizeof *tokens)]);
                break;
            case 3: {  // a piece of another input
                const std::string& o = pool[pick(pool.size())];
                s.insert(at, o.substr(pick(o.size() + 1), pick(64)));
                break;
            }
            default:  // repeat a piece of this one
                if (at < s.size()) s.insert(at, s.substr(at, pick(32)));
        }
    }
    return s.size() > 65536 ? s.substr(0, 65536) : s;
}

inline int standalone_main(int argc, char** argv) {
    namespace fs = std::filesystem;
    double mutate_s = 0;
    std::vector<fs::path> inputs;
    for (int i = 1; i < argc; ++i) {
        if (std::string(argv[i]) == "--mutate" && i + 1 < argc) {
            mutate_s = std::atof(argv[++i]);
        } else if (fs::is_directory(argv[i])) {
            for (const auto& e : fs::recursive_directory_iterator(argv[i]))
                if (e.is_regular_file()) inputs.push_back(e.path());
        } else {
            inputs.emplace_back(argv[i]);
        }
    }
    std::sort(inputs.begin(), inputs.end());
    std::vector<std::string> pool;
    for (const auto& p : inputs) {
        std::ifstream f(p, std::ios::binary);
        pool.emplace_back((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(pool.back().data()),
                               pool.back().size());
    }
    std::printf("replayed %zu inputs\n", inputs.size());
    if (pool.empty()) return 1;
    if (mutate_s > 0) {
        std::mt19937 rng(12345);
        const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(mutate_s);
        long n = 0;
        for (; std::chrono::steady_clock::now() < end; ++n) {
            const std::string in = mutate(pool, rng);
            std::ofstream("fuzz_last_input", std::ios::binary) << in;
            LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()), in.size());
        }
        std::remove("fuzz_last_input");
        std::printf("%ld mutated inputs, no failures\n", n);
    }
    return 0;
}

}  // namespace lokal::fuzz

int main(int argc, char** argv) {
    return lokal::fuzz::standalone_main(argc, argv);
}
