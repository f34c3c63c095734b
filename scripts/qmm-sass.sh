#!/usr/bin/env bash
# The static cost of the decode matmul kernel without a GPU: compiles its instantiations for
# sm_90 and prints, per instantiation (format, 8-token column tiles, offsets, steps per scale,
# scale width, blocked or flat plan), the registers and spill bytes ptxas reports and the SASS instructions of the
# main loop per 512-byte weight tile (the count the H100 profile found the kernel bound by), and
# the local-memory loads and stores (spills) inside that loop.
#
#   scripts/qmm-sass.sh [file.cu] [nvcc flags...]     e.g. scripts/qmm-sass.sh -DSL_QMM_BLOCKS4=0
#
# Without a file: the kernel's instantiations, kernels/cuda/qmm_w*_nt*.cu. A file (an earlier
# qmm.cu, from before the kernel moved to qmm_kernel.cuh) is compiled alone.
#
# CUDA 13's toolkit here has no disassembler; Debian's nvidia-cuda-toolkit (11.8, non-free) has
# nvdisasm, which reads sm_90 code once the cubin's ELF header carries the ABI it knows (the
# code itself is the same). The package is fetched once into .deps-sass/ (ignored). A tool for
# development only: no build or test uses it. On a GPU machine scripts/gpu-check.sh's sass step
# counts with the toolkit's own cuobjdump.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == *.cu ]]; then srcs=("$1"); shift; else srcs=(kernels/cuda/qmm_w*_nt*.cu); fi
nvcc=${NVCC:-/usr/local/cuda/bin/nvcc}
dir=.deps-sass
mkdir -p "$dir"
if [ ! -x "$dir/x/usr/bin/nvdisasm" ]; then
    mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache" "$dir/apt/src"
    cat > "$dir/apt/src/non-free.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$PWD/$dir/apt/src"
              -o "Dir::State::Lists=$PWD/$dir/apt/lists" -o "Dir::Cache=$PWD/$dir/apt/cache")
    apt-get "${apt_opts[@]}" update >/dev/null
    (cd "$dir" && apt-get "${apt_opts[@]}" download nvidia-cuda-toolkit >/dev/null 2>&1)
    dpkg-deb -x "$dir"/nvidia-cuda-toolkit_*.deb "$dir/x"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
: >"$out/ptxas.txt"
: >"$out/k.sass"
for src in "${srcs[@]}"; do
    "$nvcc" -I. -Ikernels/cuda -O3 -DNDEBUG -arch=sm_90 -D_GNU_SOURCE -Xptxas -v -cubin -x cu "$@" \
        "$src" -o "$out/k.cubin" >"$out/one.txt" 2>&1 || { cat "$out/one.txt"; exit 1; }
    cat "$out/one.txt" >>"$out/ptxas.txt"
    python3 - "$out" <<'EOF'
import struct, sys
o = sys.argv[1]
b = bytearray(open(o + '/k.cubin', 'rb').read())
# the ELF OS ABI, its version and e_flags (sm_90, virtual sm_90, 64-bit) as CUDA 11-12 wrote them
b[7], b[8] = 0x33, 7
struct.pack_into('<I', b, 48, 0x005a055a)
open(o + '/old.cubin', 'wb').write(b)
EOF
    "$dir/x/usr/bin/nvdisasm" -c "$out/old.cubin" >>"$out/k.sass"
done
python3 - "$out" <<'EOF'
import re, sys
o = sys.argv[1]
regs, cur = {}, None
for line in open(o + '/ptxas.txt'):
    m = re.search(r"Compiling entry function '(\S+)'", line)
    if m: cur, spill = m.group(1), 0; continue
    m = re.search(r"(\d+) bytes spill stores", line)
    if m: spill = int(m.group(1))
    m = re.search(r"Used (\d+) registers", line)
    if m and cur: regs[cur] = (int(m.group(1)), spill); cur = None
funcs, cur = {}, None
for l in open(o + '/k.sass'):
    m = re.match(r'^(_Z\S+qmm_kernel\S+):', l)
    if m: cur = m.group(1); funcs[cur] = []; continue
    if cur:
        m = re.match(r'\s+/\*[0-9a-f]{4}\*/\s+(.*?);', l)
        if m: funcs[cur].append((True, m.group(1).strip()))
        m = re.match(r'^(\.L_x_\d+):', l)
        if m: funcs[cur].append((False, m.group(1)))
if not funcs: sys.exit("qmm-sass.sh: no qmm_kernel in what was compiled (an instantiation file, or a qmm.cu from before 7bdf646)")
print("%-5s %-3s %-5s %-3s %-8s %-5s %5s %6s %6s %6s %6s %6s" % ("form", "NT", "offs", "SPA", "scales", "plan", "regs", "spill", "loop", "tiles", "/tile", "lmem"))
width = {'1': 'two-lvl', '2': 'f16', '4': 'f32'}
for f, body in sorted(funcs.items()):
    k = re.search(r'qmm_kernelILb([01])ELi(\d)ELb([01])ELi(\d)ELi(\d)E(?:Lb([01])E)?', f)
    if not k: continue
    q4, nt, offs, sc, es, flat = k.groups()
    labels = {t: i for i, (ins, t) in enumerate(body) if not ins}
    loops = []  # backward branches' spans (start, end) with their HMMA
    for i, (ins, t) in enumerate(body):
        m = re.search(r'BRA `\((\.L_x_\d+)\)', t) if ins else None
        if m and labels.get(m.group(1), 1 << 30) < i:
            seg = [x for x in body[labels[m.group(1)]:i + 1] if x[0]]
            h = sum('HMMA' in x[1] for x in seg)
            lm = sum(bool(re.match(r'(@!?U?P\d+ )?(LDL|STL)', x[1])) for x in seg)
            if h: loops.append((labels[m.group(1)], i, len(seg), h, lm))
    # the main loop: of the innermost loops with HMMA (none inside them), the one with the most
    inner = [l for l in loops if not any(o is not l and l[0] <= o[0] and o[1] <= l[1] for o in loops)]
    best = max(((n, h, lm) for _, _, n, h, lm in inner), key=lambda v: v[1], default=None)
    per_tile = (4 if q4 == '1' else 2) * int(nt) * (2 if offs == '1' else 1)  # HMMA a tile
    r, sp = regs.get(f, (0, 0))
    n, h, lm = best or (0, 0, 0)
    tiles = h // per_tile if per_tile else 0
    print("%-5s %-3s %-5s %-3d %-8s %-5s %5d %6d %6d %6d %6.1f %6d" % ("QW4" if q4 == '1' else "QW8", nt, "yes" if offs == '1' else "no",
          1 << int(sc), width[es], "flat" if flat == '1' else "block", r, sp, n, tiles, n / tiles if tiles else 0, lm))
EOF
