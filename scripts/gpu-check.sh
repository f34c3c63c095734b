#!/bin/bash
# gpu-check.sh — the prepared GPU validation run (issue "first GPU run"): on a machine with an
# NVIDIA GPU, nvcc, cmake and ninja, but no package registry. Builds for sm_90, runs every
# `gpu` test, the kernel benchmarks, then compute-sanitizer memcheck and racecheck over the
# kernel tests, each step under its own time limit, most important first.
#
#   scripts/gpu-check.sh [OUTDIR]      (OUTDIR defaults to $OUT, else gpu-out/)
#
# GPU_CHECK_ONLY=NAME limits the run to test_cuda_NAME_gpu and bench_cuda_NAME (NAME may be a
# glob), without the sanitizers or, unless GPU_CHECK_E2E=1, the end-to-end runs (a quick
# re-measurement). GPU_CHECK_BUDGET (seconds, default 420) bounds the whole run: each step gets at most what is
# left of it, so the summary always prints inside the device call's limit.
# GPU_CHECK_MATMUL_ARGS passes options to bench_cuda_matmul (--all-sweeps: plan sweeps of every
# form), GPU_CHECK_MATMUL_LIMIT its time limit (seconds, default 240; what it printed before a
# timeout is kept). GPU_CHECK_BLOCKS4_AB=1 also builds the matmul benchmark with the decode
# kernel's earlier register bounds (-DSL_QMM_BLOCKS4=0: 2-3 blocks per SM where it now asks for 4
# up to 8 tokens, 2 where it asks for 3 at 9 to 16) and times its first table both ways, one
# after the other (their rows up to 16 tokens print side by side; the whole tables are in
# logs.tgz).
#
# Dependencies: the Debian packages that ../shared/gpu/fetch-debs.sh downloads into .deps/
# (libuv1 libuv1-dev libcjson1 libcjson-dev node-llhttp libpcre2-dev libpcre2-8-0), unpacked
# here into $DEPS_PREFIX (/opt/deps). OUTDIR gets env.txt, the benchmark tables (bench_*.md)
# and every log in logs.tgz (the device tool returns at most 8 files); a summary prints last.
set -u
out=${1:-${OUT:-gpu-out}}
logs=$(mktemp -d)
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t0=$(date +%s)
summary=()
note() { summary+=("$*"); echo "== $*"; }
budget=${GPU_CHECK_BUDGET:-420}
step() { # step NAME LIMIT_S CMD...: runs CMD with a time limit, log in $logs/NAME.log
    local name=$1 limit=$2
    shift 2
    local s=$(date +%s) left=$((budget - ($(date +%s) - t0)))
    [ $left -lt $limit ] && limit=$left
    if [ $limit -le 5 ]; then note "$name: skipped (budget spent)"; return 1; fi
    timeout --kill-after=5 "$limit" "$@" >"$logs/$name.log" 2>&1
    local rc=$?
    note "$name: rc=$rc in $(($(date +%s) - s)) s"
    return $rc
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  nvcc --version | tail -2; cmake --version | head -1
  # the device copy's git metadata may be stale: a digest of the sources identifies the tree
  echo "sources sha256 $(git ls-files -co --exclude-standard base kernels models scheduler server \
      tests benchmarks CMakeLists.txt | sort | xargs sha256sum | sha256sum | cut -c1-16)"
  date -u; } >"$out/env.txt" 2>&1
cat "$out/env.txt"

prefix=${DEPS_PREFIX:-/opt/deps}
if [ -d .deps ]; then
    mkdir -p $prefix
    for f in .deps/*.deb; do dpkg -x "$f" $prefix; done
fi
step configure 120 cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$prefix/usr \
    -DSL_LLHTTP_SRC=$prefix/usr/share/llhttp -DSL_LLHTTP_INCLUDE=$prefix/usr/share/include/llhttp \
    || { tail -30 "$logs/configure.log"; }
only=${GPU_CHECK_ONLY:-*}
gpu_tests=$(cd tests/kernels && ls test_cuda_$only.c | sed 's/\.c$/_gpu/')
# (bench_cuda_repack times host work only: not worth the GPU's minutes)
benches=$(cd benchmarks && ls bench_cuda_$only.c 2>/dev/null | grep -v bench_cuda_repack | sed 's/\.c$//')
e2e=; { [ -z "${GPU_CHECK_ONLY:-}" ] || [ "${GPU_CHECK_E2E:-0}" = 1 ]; } && e2e=sluice
step build 240 ninja -C build-gpu -j16 $gpu_tests $benches $e2e || tail -40 "$logs/build.log"

# static cost of the matmul kernels: SASS instructions per tensor-core mma and registers, per
# instantiation (the instruction count per tile is what the last profile found the kernel
# bound by); cuobjdump comes with the toolkit
# (the kernel's instantiations are in qmm_w*_nt*.cu)
qmm_o=$(ls build-gpu/CMakeFiles/sluice_cuda.dir/kernels/cuda/qmm_w*_nt*.cu.o 2>/dev/null | tr '\n' ' ')
if command -v cuobjdump >/dev/null && [ -n "$qmm_o" ]; then
    step sass 60 sh -c "for o in $qmm_o; do cuobjdump -sass \$o; done | awk '/Function :/{f=\$3; sub(/.*qmm_kernel/,\"\",f)}
        /^ +\/\*[0-9a-f]+\*\/ /{n[f]++} /HMMA/{h[f]++}
        END{for (k in n) printf \"%6d SASS %4d HMMA %6.1f per HMMA  %s\\n\", n[k], h[k], h[k] ? n[k] / h[k] : 0, k}' | sort -k7;
        for o in $qmm_o; do cuobjdump -res-usage \$o; done | grep -A1 qmm_kernel | grep -o 'REG:[0-9]* STACK:[0-9]*' | tr '\\n' ' '"
    cp "$logs/sass.log" "$out/sass.txt"
fi

step ctest_gpu 120 ctest --test-dir build-gpu -L gpu -R "^($(echo $gpu_tests | tr ' ' '|'))\$" --output-on-failure
tail -15 "$logs/ctest_gpu.log"
for b in $benches; do
    args= limit=240
    [ $b = bench_cuda_matmul ] && args=${GPU_CHECK_MATMUL_ARGS:-} limit=${GPU_CHECK_MATMUL_LIMIT:-240}
    step "$b" "$limit" "build-gpu/$b" $args
    cp "$logs/$b.log" "$out/$b.md"
done
if [ "${GPU_CHECK_BLOCKS4_AB:-0}" = 1 ] && [ -x build-gpu/bench_cuda_matmul ]; then
    step configure_b23 60 cmake -S . -B build-gpu-b23 -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$prefix/usr -DCMAKE_CUDA_FLAGS=-DSL_QMM_BLOCKS4=0 \
        -DSL_LLHTTP_SRC=$prefix/usr/share/llhttp -DSL_LLHTTP_INCLUDE=$prefix/usr/share/include/llhttp
    step build_b23 180 ninja -C build-gpu-b23 -j16 bench_cuda_matmul || tail -20 "$logs/build_b23.log"
    step matmul_b4 90 build-gpu/bench_cuda_matmul --quick --table
    step matmul_b23 90 build-gpu-b23/bench_cuda_matmul --quick --table
    # the rows up to 16 tokens side by side: format, shape, T, µs now, µs with the old bounds
    echo "---- 4 blocks per SM (3 at 9-16 tokens) against the earlier bounds, µs (format | shape | T | now | earlier)"
    paste -d'|' <(grep '^| QW' "$logs/matmul_b4.log") <(grep '^| QW' "$logs/matmul_b23.log") |
        awk -F"|" '$4 <= 16 {print "|" $2 "|" $3 "|" $4 "|" $5 "|" $18 "|"}' | tee "$logs/blocks4_ab.txt"
fi
# end to end: offline throughput of a ~0.6 B-parameter random llama (Llama-3-8B's layer shapes,
# 4 layers) on the CUDA backend, as Q4_0, Q4_K (two-level scales and offsets: what Q4_K_M files
# mostly hold) and Q8_0: batched and one request at a time (after warm-up requests); Q4_0 also
# with the logits downloaded to the host sampler, in batch-invariant mode (one matmul plan for
# every step size, no GEMM, no split-K attention), with the f16 GEMM path never or from 64
# tokens (the default: 256), and without the warm-up
if [ -n "$e2e" ]; then
    for type in Q4_0 Q4_K Q8_0; do
        step mkmodel_$type 120 build-gpu/sluice mkmodel --out /tmp/e2e_$type.gguf --arch llama --type $type \
            --dim 4096 --layers 4 --heads 32 --kv-heads 8 --ff 14336 --vocab 32000
        modes=("" --sequential)
        [ $type = Q4_0 ] && modes+=(--host-sampling --batch-invariant "--sequential --batch-invariant" \
            "--gemm-min-tokens 0" "--sequential --gemm-min-tokens 0" "--gemm-min-tokens 64" \
            "--sequential --gemm-min-tokens 64" "--sequential --no-warmup")
        for mode in "${modes[@]}"; do
            name=e2e_$type$(echo "$mode" | tr -d ' ' | sed 's/--/_/g')
            step "$name" 120 build-gpu/sluice bench throughput --model /tmp/e2e_$type.gguf --device cuda \
                --num-prompts 32 --input-len 128 --output-len 128 $mode
            tail -2 "$logs/$name.log"
        done
    done
fi
# where the decode matmul's time goes: Nsight Compute on its launches (QW4 g32, gate/up, 1, 16
# and 32 tokens, two launches each: the first skipped), when the machine has ncu
if command -v ncu >/dev/null && [ -x build-gpu/bench_cuda_matmul ]; then
    step ncu_qmm 90 ncu --kernel-name regex:qmm_kernel --launch-skip 1 --launch-count 5 \
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
        --section MemoryWorkloadAnalysis build-gpu/bench_cuda_matmul --profile
    cp "$logs/ncu_qmm.log" "$out/ncu_qmm.txt"
fi
[ -n "${GPU_CHECK_ONLY:-}" ] && gpu_tests=  # no sanitizers on a quick run
for t in $gpu_tests; do
    step "memcheck_$t" 120 compute-sanitizer --tool memcheck --error-exitcode 9 "build-gpu/$t"
    tail -3 "$logs/memcheck_$t.log"
done
for t in $gpu_tests; do # the backend's test ran past 90 s under racecheck on the H200
    limit=90; [ $t = test_cuda_backend_gpu ] && limit=180
    step "racecheck_$t" $limit compute-sanitizer --tool racecheck --error-exitcode 9 "build-gpu/$t"
    tail -3 "$logs/racecheck_$t.log"
done

echo
for b in $benches; do echo "---- $b"; cat "$out/$b.md"; done
echo
echo "---- summary ($(($(date +%s) - t0)) s)"
printf '%s\n' "${summary[@]}"
tar -czf "$out/logs.tgz" -C "$logs" .
