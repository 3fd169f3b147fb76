#!/usr/bin/env bash
# The side-by-side table of docs/isa/README.md from the committed JSON lines: one row per kernel, path and family,
# the engine's kernels each followed by ggml-vulkan's counterpart (matmul / ggml mul_mm, attention / ggml flash_attn).
#
#   tools/isa-summary.sh docs/isa/lowrank.jsonl docs/isa/ggml-vulkan.jsonl
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
echo "| kernel | path | family | variants | VGPRs | subgroups/SIMD | spills | LDS bytes | main loop: v_wmma | FMA | FLOP/LDS byte | FLOP/global byte |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
awk -f "$here/isa/summary.awk" "$@" | awk -F'|' '{
  k = $2; gsub(/^ +| +$/, "", k)
  order = (k == "matmul") ? 1 : (k == "ggml mul_mm") ? 2 : (k == "attention") ? 3 : (k == "ggml flash_attn") ? 4 : 5
  print order "\t" k "\t" $4 "\t" $3 "\t" $0
}' | sort -t$'\t' -k1,1n -k2,2 -k3,3r -k4,4r | cut -f5-
