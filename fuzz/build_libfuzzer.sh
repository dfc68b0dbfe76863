#!/usr/bin/env bash
# Builds the libFuzzer binaries of the fuzz targets that need the whole library stack, with
# clang, ASan and UBSan over every layer they run:
#   http_fuzz   (fuzz/http_fuzz.cpp: the HTTP API against an in-process server)
#   store_fuzz  (fuzz/store_fuzz.cpp: manifests, Modelfiles, names, digests, safetensors)
#   json_schema_fuzz  (fuzz/json_schema_fuzz.cpp: JSON schemas compiled, documents matched)
#   fuzz/build_libfuzzer.sh [build-dir]          (default: build-fuzz)
# Then, from the repository root (http_fuzz loads ../shared/models/stories260K.gguf):
#   mkdir -p /tmp/http-corpus /tmp/store-corpus /tmp/schema-corpus
#   build-fuzz/bin/http_fuzz -max_len=4096 -timeout=30 /tmp/http-corpus tests/server/malformed
#   build-fuzz/bin/store_fuzz -max_len=4096 /tmp/store-corpus tests/store/malformed
#   build-fuzz/bin/json_schema_fuzz -max_len=4096 -timeout=10 /tmp/schema-corpus \
#       tests/engine/malformed_schemas
# (The GGUF and template fuzzers build with the main tree: tests/gguf, tests/template.)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/build-fuzz}"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link -fno-omit-frame-pointer"
cmake -S "$root" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER="${CC_FUZZ:-clang}" -DCMAKE_CXX_COMPILER="${CXX_FUZZ:-clang++}" \
    -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" \
    -DLOKAL_BUILD_TESTS=OFF -DLOKAL_BUILD_BENCH=OFF -DLOKAL_LIBFUZZER=ON
cmake --build "$out" --target http_fuzz store_fuzz json_schema_fuzz
