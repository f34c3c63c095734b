#!/usr/bin/env bash
# fuzz.sh — builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan in
# build-fuzz and runs each for $1 seconds (default 60) with inputs up to 64 KiB. Exits nonzero
# on any crash, sanitizer report, leak, timeout or out-of-memory; the input that caused it is
# left in build-fuzz/artifacts/. Corpora grow across runs in build-fuzz/corpus/<target>.
#
# Seeds: fuzz_gguf starts from valid GGUF files of several shapes and tensor types written by
# `test_gguf --write-seeds DIR` (no binary files are kept in git).
#
# Usage: scripts/fuzz.sh [seconds-per-target]
set -euo pipefail

secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz

if ! command -v clang >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y clang libclang-rt-14-dev ||
            { apt-get update && apt-get install -y clang libclang-rt-14-dev; }
    else
        echo "fuzz.sh: clang not found (install clang and libclang-rt-14-dev)" >&2
        exit 1
    fi
fi

targets=()
for src in "$root"/tests/fuzz/fuzz_*.c; do
    [ -e "$src" ] && targets+=("$(basename "$src" .c)")
done
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz.sh: no tests/fuzz/fuzz_*.c targets" >&2
    exit 1
fi

# SL_FUZZ instruments the library too (-fsanitize=fuzzer-no-link) and links the targets with
# libFuzzer.
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DSL_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$build" "${targets[@]}" test_gguf
mkdir -p "$build/artifacts"

for t in "${targets[@]}"; do
    corpus=$build/corpus/$t
    seeds=$build/seeds/$t
    rm -rf "$seeds"
    mkdir -p "$corpus" "$seeds"
    args=()
    if [ "$t" = fuzz_gguf ]; then
        "$build/test_gguf" --write-seeds "$seeds"
        # tokens that mutation alone reaches slowly
        printf '%s\n' '"GGUF"' '"general.alignment"' '"general.architecture"' \
            '"tokenizer.ggml.tokens"' '"\x02\x00\x00\x00"' '"\x03\x00\x00\x00"' \
            '"\x08\x00\x00\x00"' '"\x09\x00\x00\x00"' '"\x40\x00\x00\x00"' \
            '"\x00\x00\x00\x00\x00\x00\x00\x00"' >"$build/$t.dict"
        args+=(-dict="$build/$t.dict")
    fi
    if [ "$t" = fuzz_chat ]; then
        # our own small templates in the Jinja subset chat templates use, and built-in names
        printf '%s' "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] | trim }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}" >"$seeds/loop"
        printf '%s' "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}[SYS]{{ m.content }}{% elif loop.index0 % 2 == 0 %}[U]{{ m.content }}{% else %}[A]{{ m.content ~ eos_token }}{% endif %}{% endfor %}" >"$seeds/branches"
        printf '%s' "{% set ns = namespace(n=0) %}{% for m in messages | selectattr('role', 'equalto', 'user') %}{% set ns.n = ns.n + 1 %}{{ m.content | length }}{% endfor %}{{ ns.n }}{{ raise_exception('x') if ns.n > 9 }}" >"$seeds/namespace"
        printf '%s' chatml >"$seeds/chatml"
        printf '%s' llama3 >"$seeds/llama3"
    fi
    echo "fuzz.sh: $t for ${secs}s ($(ls "$seeds" | wc -l) seeds, $(ls "$corpus" | wc -l) in corpus)"
    "$build/$t" -max_len=65536 -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" "${args[@]}" \
        "$corpus" "$seeds"
done
echo "fuzz.sh: no crashes"
