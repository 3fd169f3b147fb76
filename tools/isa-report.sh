#!/usr/bin/env bash
# GPU machine code of every kernel variant the host can select, without a GPU: the set ShaderTests compiles
# (`lowrank-bench --dump-spirv`, from the typed Kernel types) compiled by Mesa's RADV for RDNA3 (NAVI31), and the
# scalar-path variants also for RDNA2 (NAVI21), the scalar fallback's target; a variant with a `spec` (the
# cooperative-matrix kernel: the tile the engine picks for RDNA3) is compiled with those specialization constants. Prints a Markdown table, or with --json
# one object per variant and family: kernel, variant (its defines), path (coopmat: the SPIR-V declares
# CooperativeMatrixKHR; else scalar), family, wave, vgprs, sgprs, spilled_vgprs, spilled_sgprs, lds_bytes,
# scratch_bytes, subgroups_per_simd, instructions, and over the main loop main_loop, wmma, fma, lds_loads,
# global_loads, flops_per_lds_byte, flops_per_global_byte (tools/isa/radvstats.c says how they are derived).
#
#   tools/isa-report.sh [--json] [--isa-dir DIR]
#
# LOWRANK_BENCH names a built lowrank-bench (default: a debug build of it, built here).
set -euo pipefail
cd "$(dirname "$0")/.."
json=0; isa_dir=()
while [ $# -gt 0 ]; do
  case "$1" in
    --json) json=1; shift ;;
    --isa-dir) mkdir -p "$2"; isa_dir=(--isa-dir "$2"); shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "isa-report: unknown argument $1" >&2; exit 2 ;;
  esac
done
source tools/isa/radv.sh
radv_setup
bench=${LOWRANK_BENCH:-}
if [ -z "$bench" ]; then
  swift build --product lowrank-bench >&2
  bench=.build/debug/lowrank-bench
fi
work=.build/isa
rm -rf "$work/spirv"
"$bench" --dump-spirv "$work/spirv"

# radvstats arguments per family: each file preceded by its variants.jsonl members (kernel, path, variant).
navi31=("${isa_dir[@]}"); navi21=("${isa_dir[@]}")
while IFS= read -r line; do
  file=${line#\{\"file\":\"}; file=${file%%\"*}
  meta=${line#\{\"file\":\"$file\",}; meta=${meta%\}}
  # The specialization constants the variant is measured with (the coopmat kernel's RDNA3 tile), if any.
  spec=; case "$line" in *'"spec":"'*) spec=${line#*\"spec\":\"}; spec=${spec%%\"*} ;; esac
  navi31+=(--spec "$spec" --meta "$meta" "$work/spirv/$file")
  case "$line" in *'"path":"scalar"'*) navi21+=(--spec "$spec" --meta "$meta" "$work/spirv/$file") ;; esac
done < "$work/spirv/variants.jsonl"
{ radv_stats NAVI31 "${navi31[@]}"; radv_stats NAVI21 "${navi21[@]}"; } > "$work/report.jsonl"
if [ $json -eq 1 ]; then cat "$work/report.jsonl"; else awk -f tools/isa/table.awk "$work/report.jsonl"; fi
