#!/usr/bin/env bash
# server_overhead.sh — what the server itself costs per streamed token: `sluice serve
# --fake-model` (no weights; a stand-in forward pass that costs next to nothing) under
# `sluice bench serve` at several concurrencies. The server runs pinned to CPU 0, the client
# to CPU 1; the server's CPU time (utime + stime of /proc/PID/stat) over each run, divided by
# the tokens streamed, is the overhead per token. Prints a markdown table.
#
#   benchmarks/server_overhead.sh BUILD_DIR VOCAB.gguf [C ...]     (default C: 1 64 512)
#
# VOCAB.gguf gives the tokenizer (any GGUF: its weights are not read). Each run sends
# max(128, 2·C) prompts of 32 random tokens, 256 output tokens each, all at once (rate inf)
# under --max-concurrency C. PORT (default 8123) picks the port.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BUILD_DIR VOCAB.gguf [C ...]" >&2; exit 2; }
bin=$1/sluice
vocab=$2
shift 2
concs=("$@")
[ ${#concs[@]} -gt 0 ] || concs=(1 64 512)
port=${PORT:-8123}
url=http://127.0.0.1:$port
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pin_srv=(taskset -c 0)
pin_cli=(taskset -c 1)
command -v taskset >/dev/null || { pin_srv=(); pin_cli=(); echo "(taskset missing: not pinned)" >&2; }

"${pin_srv[@]}" "$bin" serve --model "$vocab" --fake-model --port "$port" --max-num-seqs 512 \
  --max-queue 4096 --log-level warn > "$tmp/serve.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do
  curl -fs "$url/health" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/serve.log" >&2; exit 1; }
  sleep 0.1
done
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
loop_cpu() { awk '{print $14 + $15}' "/proc/$pid/task/$pid/stat"; } # the main thread runs the libuv loop
echo "server: $(grep -o 'ready: .*' "$tmp/serve.log" || true)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| concurrency | requests | output tok/s | TTFT mean / p99 (ms) | ITL mean / p99 (ms) | server CPU (s) | server CPU (% of one core) | server CPU per token (µs) | of which loop thread (µs) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in "${concs[@]}"; do
  n=$((2 * c)); [ $n -lt 128 ] && n=128
  c0=$(cpu) l0=$(loop_cpu)
  "${pin_cli[@]}" "$bin" bench serve --url "$url" --num-prompts $n --request-rate inf --max-concurrency "$c" \
    --input-len 32 --output-len 256 --seed 1 --output-json "$tmp/r.json" > "$tmp/bench.out" 2>&1 ||
    { cat "$tmp/bench.out" >&2; exit 1; }
  c1=$(cpu) l1=$(loop_cpu)
  grep 'failed:' "$tmp/bench.out" >&2 || true
  node -e '
    const [f, c, n, dc, dl, hz] = process.argv.slice(1);
    const r = JSON.parse(require("fs").readFileSync(f, "utf8"));
    const cpu = dc / hz, tok = r.total_output_tokens;
    if (r.failed) console.error(`${r.failed} of ${n} requests failed: the row counts the others`);
    const f1 = (x) => x.toFixed(1), f2 = (x) => x.toFixed(2);
    console.log(`| ${c} | ${n} | ${Math.round(r.output_throughput)} | ${f1(r.mean_ttft_ms)} / ${f1(r.p99_ttft_ms)} | ` +
      `${f2(r.mean_itl_ms)} / ${f2(r.p99_itl_ms)} | ${f2(cpu)} | ${Math.round(100 * cpu / r.duration)} | ${f1(cpu * 1e6 / tok)} | ${f1(dl / hz * 1e6 / tok)} |`);
  ' "$tmp/r.json" "$c" $n $((c1 - c0)) $((l1 - l0)) "$hz"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
