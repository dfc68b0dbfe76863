#!/usr/bin/env bash
# The whole test suite: install dependencies, build, run every test (unit tests against
# ../shared reference outputs, CLI contract tests, sanitizer and fuzz smoke runs).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh "$@"
ctest --test-dir build --output-on-failure -j2
