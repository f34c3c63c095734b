#!/usr/bin/env bash
# test.sh — the test command: installs what is missing, builds, and runs every test suite:
#   1. the release build: unit tests and the llama.cpp oracle tests (ctest),
#   2. an ASan+UBSan build: the unit tests again,
#   3. a short libFuzzer run of every parser of outside input.
# Each stage prints ctest's summary; the script fails if any stage fails.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

scripts/setup.sh --deps-only
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"

echo "== release build: unit + oracle tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== ASan + UBSan build: unit tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE=ON >/dev/null
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -L 'unit|emu'

echo "== fuzzing (short run)"
scripts/fuzz.sh "${SL_FUZZ_SECONDS:-60}"
