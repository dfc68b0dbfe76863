#!/usr/bin/env bash
# Builds the HTTP API fuzzer (fuzz/http_fuzz.cpp) with clang: libFuzzer, plus ASan and UBSan
# over every layer it runs (server, engine, model, ops, tokenizer, templates, store).
#   fuzz/build_http.sh [build-dir]          (default: build-fuzz-http)
# Then, from the repository root (it loads ../shared/models/stories260K.gguf):
#   mkdir -p /tmp/http-corpus
#   build-fuzz-http/bin/http_fuzz -max_len=4096 -timeout=30 /tmp/http-corpus tests/server/malformed
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/build-fuzz-http}"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link -fno-omit-frame-pointer"
cmake -S "$root" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="${CC_FUZZ:-clang}" -DCMAKE_CXX_COMPILER="${CXX_FUZZ:-clang++}" \
    -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" \
    -DLOKAL_BUILD_TESTS=OFF -DLOKAL_BUILD_BENCH=OFF -DLOKAL_HTTP_LIBFUZZER=ON
cmake --build "$out" --target http_fuzz
