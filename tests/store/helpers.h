// Helpers shared by the store tests: temporary directories and store snapshots.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "shared_path.h"

namespace lokal::test {

namespace fs = std::filesystem;

class TempDir {
  public:
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "lokal-store-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) std::abort();
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string sub(const std::string& rel) const { return path_ + "/" + rel; }

  private:
    std::string path_;
};

inline void write_text(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Every file under the store's blobs/ and manifests/ (partials excluded), with sizes:
// a snapshot to check that a failed command left the store unchanged.
inline std::set<std::string> snapshot(const std::string& root) {
    std::set<std::string> out;
    for (const char* sub : {"blobs", "manifests"}) {
        fs::path p = fs::path(root) / sub;
        std::error_code ec;
        if (!fs::exists(p, ec)) continue;
        for (auto& e : fs::recursive_directory_iterator(p)) {
            if (!e.is_regular_file()) continue;
            std::string rel = fs::relative(e.path(), root).string();
            if (rel.ends_with("-partial")) continue;
            out.insert(rel + " " + std::to_string(e.file_size()));
        }
    }
    return out;
}

inline std::string model_path(const std::string& name) {
    return shared_path("models/" + name);
}

}  // namespace lokal::test
