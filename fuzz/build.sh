#!/usr/bin/env bash
# Builds the GGUF fuzzer with clang (libFuzzer + ASan + UBSan).
#   fuzz/build.sh [output-binary]      (default: build-fuzz/gguf_fuzz)
# Run it with a scratch corpus dir first (libFuzzer writes new inputs there) and the
# malformed corpus as seeds:
#   build-fuzz/gguf_fuzz /tmp/corpus tests/gguf/malformed tests/gguf/seeds
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/build-fuzz/gguf_fuzz}"
cxx="${CXX_FUZZ:-clang++}"
mkdir -p "$(dirname "$out")"
"$cxx" -std=c++20 -g -O1 -Wall -Wextra -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$root/src" \
    "$root/fuzz/gguf_fuzz.cpp" "$root"/src/gguf/*.cpp "$root/src/quant/types.cpp" \
    -o "$out.tmp"
mv "$out.tmp" "$out"
