#!/usr/bin/env bash
# Install build dependencies (Debian packages only) and build lokal into build/.
# Usage: ./scripts/setup.sh [--no-install] [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(chromium libcpp-httplib-dev libcurl4-openssl-dev libssl-dev docker-registry nginx-light build-essential cmake ninja-build ccache pkg-config clang libclang-rt-dev
          nlohmann-json3-dev libcli11-dev libpcre2-dev libgtest-dev libgmock-dev
          libbenchmark-dev)

install=1
build_type=Release
for arg in "$@"; do
    case "$arg" in
        --no-install) install=0 ;;
        --debug) build_type=Debug ;;
        *) echo "setup.sh: unknown option '$arg' (use --no-install, --debug)" >&2; exit 2 ;;
    esac
done

if [ "$install" = 1 ]; then
    missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" = 0 ] || SUDO="sudo"
        echo "setup.sh: installing ${missing[*]}" >&2
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
    fi
fi

# The npm openai/ollama clients the server tests drive (skipped when npm cannot install them).
if command -v npm >/dev/null 2>&1 && [ ! -d tests/server/npm/node_modules/puppeteer-core ]; then
    (cd tests/server/npm && npm install --no-audit --no-fund >&2) || echo "setup.sh: npm install failed; the npm client tests will be skipped" >&2
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$build_type" >&2
cmake --build build -j"$(nproc)" >&2
