// Internal to src/ops: the A/B switches kernels read once (LOKAL_GEMM_STREAM=0 and the like),
// so a benchmark can compare a path with the one it replaced in the same binary.
#pragma once

#include <cstdlib>

namespace lokal {

// True unless the environment variable `name` is set to a value starting with '0'. Callers
// keep the answer in a function-local static: getenv is not for hot paths.
inline bool env_switch(const char* name) {
    const char* e = std::getenv(name);
    return !(e && e[0] == '0');
}

}  // namespace lokal
