#!/usr/bin/env bash
# Measurements on a real GPU in one run, within 8 minutes: on a Linux machine with an NVIDIA, AMD or Intel GPU
# (its Vulkan driver) and PyTorch with PEFT, it runs `lowrank check` (the matmul checks and, with a golden folder,
# every golden case) and lowrank-bench's suites on the GPU, and tools/peft_bench.py on the same GPU through
# PyTorch, writing the records under docs/gpu/<date>-<device>/ (README.md there lists what ran and how it ended).
#
#   tools/gpu-record.sh [--binaries DIR] [--golden DIR] [--out DIR] [--preset NAME] [--dtypes f32,bf16]
#                       [--suites matmul,lora,dora,quant] [--torch-device cuda] [--budget SECONDS] [--dry-run]
#   tools/gpu-record.sh --bundle DIR [--binaries DIR]
#
# Binaries: built here as static release binaries (swift build -c release -Xswiftc -static-stdlib), or taken
# from --binaries DIR (lowrank and lowrank-bench; shared libraries beside them are found through
# LD_LIBRARY_PATH). --bundle DIR builds them (or copies --binaries) into DIR with the shared libraries they load
# that a bare machine may lack (OpenBLAS and its Fortran runtime, the Vulkan loader): the folder to carry to a
# machine without a Swift toolchain, then `tools/gpu-record.sh --binaries DIR` there.
# --dry-run exercises every step without a GPU: any Vulkan device counts (lavapipe), PyTorch runs on the CPU
# (--torch-device cpu), the preset is tiny, runs are few, and the records go to .build/gpu-record unless --out.
# Each step gets what is left of --budget (default 480 s) and is recorded as timed out when it runs past it.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
binaries=""; golden=""; out=""; preset=""; dtypes="f32,bf16"; suites="matmul,lora,dora,quant"; torch_device=""; budget=480
dry_run=0; bundle=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binaries) binaries=$(realpath "$2"); shift 2 ;;
    --golden) golden=$(realpath "$2"); shift 2 ;;
    --out) out=$2; shift 2 ;;
    --preset) preset=$2; shift 2 ;;
    --dtypes) dtypes=$2; shift 2 ;;
    --suites) suites=$2; shift 2 ;;
    --torch-device) torch_device=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --bundle) bundle=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu-record: unknown argument $1" >&2; exit 2 ;;
  esac
done

fail() { echo "gpu-record: $*" >&2; exit 1; }

# The static release binaries, built here unless --binaries names them.
binaries_dir() {
  if [ -n "$binaries" ]; then
    for b in lowrank lowrank-bench; do [ -x "$binaries/$b" ] || fail "$binaries/$b is not an executable"; done
    echo "$binaries"; return
  fi
  command -v swift >/dev/null || fail "no Swift toolchain here: build the binaries elsewhere (--bundle DIR) and pass --binaries DIR"
  swift build -c release --product lowrank -Xswiftc -static-stdlib >&2 || fail "swift build of lowrank failed"
  swift build -c release --product lowrank-bench -Xswiftc -static-stdlib >&2 || fail "swift build of lowrank-bench failed"
  echo "$repo/.build/release"
}

if [ -n "$bundle" ]; then
  from=$(binaries_dir) || exit 1
  mkdir -p "$bundle"
  install -m 755 "$from/lowrank" "$from/lowrank-bench" "$bundle/"
  # What the binaries load beyond the C and C++ runtimes every Linux has, and the Vulkan loader (opened at run time).
  libs=$(ldd "$bundle/lowrank" "$bundle/lowrank-bench" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
    | grep -vE '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' | sort -u)
  vulkan=$(ldconfig -p | awk '$1 == "libvulkan.so.1" {print $NF; exit}')
  [ -n "$vulkan" ] || fail "no libvulkan.so.1 here to bundle"
  for lib in $libs $vulkan; do cp -L "$lib" "$bundle/"; done
  echo "gpu-record: bundled $(ls "$bundle" | wc -l) files into $bundle (run tools/gpu-record.sh --binaries $bundle on the GPU machine)"
  exit 0
fi

if [ $dry_run -eq 1 ]; then
  preset=${preset:-tiny}; torch_device=${torch_device:-cpu}; runs=(--runs 2 --warmup 1 --min-time 0)
else
  preset=${preset:-paper}; torch_device=${torch_device:-cuda}; runs=(--runs 10 --warmup 2 --min-time 0.25)
fi
if [ -z "$golden" ]; then
  for g in "$repo/shared/golden" "$repo/../shared/golden"; do [ -f "$g/spec.json" ] && golden=$(realpath "$g") && break; done
fi
bin=$(binaries_dir) || exit 1
export LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LOWRANK_CACHE_DIR=${LOWRANK_CACHE_DIR:-$repo/.build/gpu-record-cache}
# NVIDIA's container runtime mounts its Vulkan driver's manifest here, outside the loader's search path.
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$nvidia_icd" ]; then export VK_DRIVER_FILES=$nvidia_icd; fi
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }

# The GPU: the first Vulkan device that is not a CPU implementation (any device in a dry run).
devices=$("$bin/lowrank" devices 2>&1) || fail "lowrank devices failed: $devices"
line=$(printf '%s\n' "$devices" | grep -E "^\*? *vulkan:[0-9]+ " | { if [ $dry_run -eq 1 ]; then cat; else grep -v '\[CPU\]'; fi; } | head -1)
[ -n "$line" ] || fail "no Vulkan GPU found (lowrank devices printed:
$devices)"
device=$(echo "$line" | grep -oE 'vulkan:[0-9]+')
name=$(echo "$line" | sed -E 's/^\*? *vulkan:[0-9]+ +//; s/ \[[^]]*\]$//')
slug=$(echo "$name" | tr 'A-Z' 'a-z' | sed -E 's/\(.*//; s/[^a-z0-9]+/-/g; s/^-|-$//g')
if [ -z "$out" ]; then
  if [ $dry_run -eq 1 ]; then out=$repo/.build/gpu-record; else out=$repo/docs/gpu/$(date -u +%Y-%m-%d)-$slug; fi
fi
mkdir -p "$out"
summary=$out/README.md
{
  echo "# $name"
  echo
  echo "Recorded by \`tools/gpu-record.sh\`$([ $dry_run -eq 1 ] && echo ' --dry-run (no GPU: figures are not a GPU'"'"'s)') on $(date -u '+%Y-%m-%d %H:%M UTC'), lowrank $("$bin/lowrank" --version 2>/dev/null), \`$device\`, preset \`$preset\`, PyTorch on \`$torch_device\`."
  echo
  echo '```'
  printf '%s\n' "$devices"
  echo '```'
  echo
  echo "| step | file | status | seconds |"
  echo "| --- | --- | --- | ---: |"
} > "$summary"

status=0
# step NAME FILE COMMAND...: runs COMMAND with what is left of the budget, its output into FILE, and records it.
step() {
  local name=$1 file=$2; shift 2
  local remaining; remaining=$(left)
  if [ "$remaining" -le 5 ]; then
    echo "| $name | – | skipped: out of time | 0 |" >> "$summary"; status=1; return
  fi
  local t0=$SECONDS rc
  echo "gpu-record: $name ($remaining s left)" >&2
  timeout "$remaining" "$@" > "$out/$file" 2> "$out/$file.stderr"
  rc=$?
  [ -s "$out/$file.stderr" ] || rm -f "$out/$file.stderr"
  local what="ok"
  if [ $rc -eq 124 ]; then what="timed out"; status=1; elif [ $rc -ne 0 ]; then what="exit $rc"; status=1; fi
  echo "| $name | \`$file\` | $what | $((SECONDS - t0)) |" >> "$summary"
}

step "lowrank check (matmuls)" check-matmul.txt "$bin/lowrank" check --device "$device"
if [ -n "$golden" ]; then
  step "lowrank check --golden" check-golden.txt "$bin/lowrank" check --device "$device" --golden "$golden"
else
  echo "| lowrank check --golden | – | skipped: no golden folder (--golden DIR) | 0 |" >> "$summary"
fi
IFS=, read -ra suite_list <<< "$suites"
IFS=, read -ra dtype_list <<< "$dtypes"
for dtype in "${dtype_list[@]}"; do
  for suite in "${suite_list[@]}"; do
    step "lowrank-bench --suite $suite --dtype $dtype" "bench-$suite-$dtype.jsonl" \
      "$bin/lowrank-bench" --suite "$suite" --dtype "$dtype" --preset "$preset" --device "$device" "${runs[@]}" --json
  done
  step "peft_bench.py --dtype $dtype" "peft-$dtype.jsonl" \
    python3 "$repo/tools/peft_bench.py" --device "$torch_device" --dtype "$dtype" --preset "$preset" "${runs[@]}" --json
done

# The results side by side: every record's case, median and kernel path.
python3 - "$out" >> "$summary" <<'EOF'
import glob, json, os, sys
rows = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.jsonl"))):
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            rows.append(r)
if rows:
    print("\n| suite | op | variant | dtype | shape | ms median | GFLOP/s | kernel path |")
    print("| --- | --- | --- | --- | --- | ---: | ---: | --- |")
    for r in rows:
        shape = f"{r['T']}x{r['d_in']}x{r['d_out']} r{r['r']}"
        print(f"| {r['suite']} | {r['op']} | {r['variant']} | {r['dtype']} | {shape} | {r['ms_median']:.3f} | {r['gflops']:.1f} | "
              f"{r.get('kernel_paths') or r['backend']} |")
EOF
echo "gpu-record: records in $out ($((SECONDS - start)) s)" >&2
exit $status
