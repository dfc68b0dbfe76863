// Where the read-only test data lives: $LOKAL_SHARED, else ../shared beside the checkout.
#pragma once
#include <cstdlib>
#include <string>

namespace lokal::test {

inline std::string shared_dir() {
    if (const char* env = std::getenv("LOKAL_SHARED"); env && *env) return env;
    return LOKAL_SHARED_DEFAULT;
}

inline std::string shared_path(const std::string& rel) { return shared_dir() + "/" + rel; }

}  // namespace lokal::test
