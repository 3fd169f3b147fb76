# JSON lines of tools/isa-report.sh or tools/isa-peer.sh (flat objects) -> a Markdown table, one row per object.
function field(name,   m) {
  if (match($0, "\"" name "\": *(\"[^\"]*\"|[^,}]*)")) {
    m = substr($0, RSTART, RLENGTH); sub("^\"" name "\": *", "", m); gsub("\"", "", m); return m
  }
  return "–"
}
# A define whose value is a long constant list (quantize's DYNAMIC_GRID_STARTS) shown by its start.
function shorten(v,   n, words, i, out) {
  n = split(v, words, " ")
  for (i = 1; i <= n; i++) {
    if (length(words[i]) > 48) words[i] = substr(words[i], 1, 40) "…"
    out = out (i > 1 ? " " : "") words[i]
  }
  return out
}
BEGIN {
  print "| kernel | variant | path | family | VGPRs | SGPRs | spilled V/S | LDS bytes | subgroups/SIMD | instructions | main loop: v_wmma | FMA | LDS loads | global loads | FLOP/LDS byte | FLOP/global byte |"
  print "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
}
{
  loop = field("main_loop") == "true" ? "" : " (no loop)"
  v = shorten(field("variant")); gsub(/\|/, "\\|", v)
  printf "| %s | %s | %s | %s | %s | %s | %s/%s | %s | %s | %s | %s%s | %s | %s | %s | %s | %s |\n", field("kernel"), v, field("path"), field("family"),
    field("vgprs"), field("sgprs"), field("spilled_vgprs"), field("spilled_sgprs"), field("lds_bytes"), field("subgroups_per_simd"),
    field("instructions"), field("wmma"), loop, field("fma"), field("lds_loads"), field("global_loads"), field("flops_per_lds_byte"), field("flops_per_global_byte")
}
